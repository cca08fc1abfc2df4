//! While a container is `created`, its waiting init holds only stdio, the preserved fds and
//! Berth's own sockets: nothing else its caller left open (a host directory, a file, a pipe),
//! as runc's init, which only gets the fds it is handed.

mod common;
use common::*;

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;

/// `berth create` with the caller's `fds` (source, number) open and inheritable, as from a
/// leaky caller; the container's stdio goes to files beside the bundle.
fn create_with_fds(rt: &Runtime, id: &str, b: &Bundle, extra: &[&str], fds: &[(RawFd, RawFd)]) {
    rt.track(id);
    let mut cmd = rt.cmd();
    cmd.arg("create")
        .args(extra)
        .args(["--bundle", b.path_str(), id])
        .stdout(std::fs::File::create(b.path().join("out.stdout")).unwrap())
        .stderr(std::fs::File::create(b.path().join("out.stderr")).unwrap());
    // Sources are first moved above any target, so that no dup2 is a no-op or clobbers one.
    let high: Vec<std::os::fd::OwnedFd> = fds
        .iter()
        .map(|&(from, _)| {
            // SAFETY: F_DUPFD_CLOEXEC returns a new fd (or -1), which we then own.
            let fd = unsafe { libc::fcntl(from, libc::F_DUPFD_CLOEXEC, 100) };
            assert!(fd >= 100, "{}", std::io::Error::last_os_error());
            unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }
        })
        .collect();
    let fds: Vec<(RawFd, RawFd)> = high
        .iter()
        .zip(fds)
        .map(|(h, &(_, to))| (h.as_raw_fd(), to))
        .collect();
    // SAFETY: only dup2, which is async-signal-safe, runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            for &(from, to) in &fds {
                if libc::dup2(from, to) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let st = cmd.status().unwrap();
    assert!(
        st.success(),
        "create: {st}: {}",
        std::fs::read_to_string(b.path().join("out.stderr")).unwrap_or_default()
    );
}

/// fd number → link target of every fd of `pid`, read from the host.
fn fds_of(pid: i32) -> Vec<(i32, String)> {
    let mut v: Vec<(i32, String)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            Some((n, target.to_string_lossy().into_owned()))
        })
        .collect();
    v.sort();
    v
}

/// Asserts that `pid` holds stdio, `preserved` (fd → path) and otherwise only sockets.
fn assert_only_expected(pid: i32, preserved: &[(i32, &Path)], leaked: &Path) {
    let fds = fds_of(pid);
    for (n, target) in &fds {
        if *n <= 2 {
            continue;
        }
        if let Some((_, p)) = preserved.iter().find(|(f, _)| f == n) {
            assert_eq!(target, &p.to_string_lossy(), "preserved fd {n}: {fds:?}");
            continue;
        }
        assert_ne!(
            target,
            &leaked.to_string_lossy(),
            "the caller's fd reached the created init: {fds:?}"
        );
        assert!(
            target.starts_with("socket:"),
            "fd {n} -> {target}: only Berth's sockets may remain: {fds:?}"
        );
    }
    for (f, _) in preserved {
        assert!(fds.iter().any(|(n, _)| n == f), "fd {f} preserved: {fds:?}");
    }
}

#[test]
fn a_created_init_holds_none_of_the_callers_fds() {
    let rt = Runtime::new();
    let b = Bundle::sh("ls /proc/self/fd");
    let id = unique_id("fdh-create");
    let host_dir = b.path().to_path_buf();
    let dir = std::fs::File::open(&host_dir).unwrap();
    create_with_fds(&rt, &id, &b, &[], &[(dir.as_raw_fd(), 5)]);
    assert_only_expected(rt.pid(&id), &[], &host_dir);
    rt.ok(&["start", &id]);
    assert!(rt.wait_status(&id, "stopped", SECS10));
    let out = std::fs::read_to_string(b.path().join("out.stdout")).unwrap();
    assert_eq!(fd_list(&out), [0, 1, 2], "{out}");
    rt.ok(&["delete", &id]);
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn a_preserved_fd_survives_to_the_process_and_the_others_do_not() {
    let rt = Runtime::new();
    let b = Bundle::sh("cat <&3; ls /proc/self/fd");
    let id = unique_id("fdh-preserve");
    let secret = b.path().join("secret");
    std::fs::write(&secret, "passed-through\n").unwrap();
    let file = std::fs::File::open(&secret).unwrap();
    let host_dir = b.path().to_path_buf();
    let dir = std::fs::File::open(&host_dir).unwrap();
    create_with_fds(
        &rt,
        &id,
        &b,
        &["--preserve-fds", "1"],
        &[(file.as_raw_fd(), 3), (dir.as_raw_fd(), 5)],
    );
    assert_only_expected(rt.pid(&id), &[(3, &secret)], &host_dir);
    rt.ok(&["start", &id]);
    assert!(rt.wait_status(&id, "stopped", SECS10));
    let out = std::fs::read_to_string(b.path().join("out.stdout")).unwrap();
    let (first, rest) = out.split_once('\n').unwrap_or_default();
    assert_eq!(first, "passed-through", "{out}");
    assert_eq!(fd_list(rest), [0, 1, 2, 3], "{out}");
    rt.ok(&["delete", &id]);
    assert_nothing_left(&rt, &id, &b);
}
