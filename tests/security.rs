//! Security properties a container must have whatever its config: no host fd reaches it, no
//! host environment leaks into it, and its working directory can never be outside its root
//! (the CVE-2024-21626 class, where a leaked fd let `cwd: /proc/self/fd/N` escape).

mod common;
use common::*;

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::time::Duration;

use serde_json::json;

/// Makes fds `targets` in the child copies of `from` without close-on-exec (via high fds, so a
/// dup2 onto itself cannot keep O_CLOEXEC).
fn leak_fds(cmd: &mut std::process::Command, from: i32, targets: &'static [i32]) {
    // SAFETY: only async-signal-safe fcntl/dup2/close calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let tmp = libc::fcntl(from, libc::F_DUPFD, 200);
            if tmp < 0 {
                return Err(std::io::Error::last_os_error());
            }
            for t in targets {
                if libc::dup2(tmp, *t) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            libc::close(tmp);
            Ok(())
        });
    }
}

#[test]
fn only_stdio_reaches_the_container() {
    let rt = Runtime::new();
    let b = sh("exec ls /proc/self/fd");
    let id = unique_id("fds");
    let o = rt.run_timeout(&id, &b, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fd_list(&stdout(&o)), [0, 1, 2], "{}", stdout(&o));
}

#[test]
fn fds_inherited_by_the_runtime_do_not_reach_the_container() {
    // An engine that forgets O_CLOEXEC on its own fds must not leak them into containers.
    let rt = Runtime::new();
    let b = sh("exec ls /proc/self/fd");
    let id = unique_id("inheritedfds");
    let f = std::fs::File::open("/etc/hostname").unwrap();
    let mut cmd = rt.cmd();
    cmd.args(["run", "--bundle", b.path_str(), &id]);
    leak_fds(&mut cmd, f.as_raw_fd(), &[3, 4, 9, 40]);
    let o = output_timeout(cmd, Duration::from_secs(30));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fd_list(&stdout(&o)), [0, 1, 2], "{}", stdout(&o));
}

#[test]
fn the_log_file_does_not_reach_the_container() {
    let rt = Runtime::new();
    let b = sh("exec ls /proc/self/fd");
    let id = unique_id("logfd");
    let log = b.path().join("berth.log");
    let o = rt.berth(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "run",
        "--bundle",
        b.path_str(),
        &id,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fd_list(&stdout(&o)), [0, 1, 2], "{}", stdout(&o));
}

#[test]
fn a_created_containers_init_holds_no_directory_fd() {
    // While `created`, the init waits in the runtime's code: it must hold no directory fd of
    // the host (what CVE-2024-21626 reached through /proc/self/fd/N).
    let rt = Runtime::new();
    let b = sh("true");
    let id = unique_id("initfds");
    rt.create(&id, &b);
    let pid = rt.pid(&id);
    let mut bad = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        let n: i32 = e.file_name().to_string_lossy().parse().unwrap();
        let target = std::fs::read_link(e.path()).unwrap_or_default();
        if std::fs::metadata(e.path()).is_ok_and(|m| m.is_dir()) {
            bad.push(format!("{n} -> {}", target.display()));
        }
    }
    assert!(
        bad.is_empty(),
        "the waiting init holds directories: {bad:?}"
    );
    rt.ok(&["delete", &id]);
}

#[test]
fn the_runtimes_environment_does_not_reach_the_container() {
    let rt = Runtime::new();
    let b = sh("env");
    let id = unique_id("envleak");
    let mut cmd = rt.cmd();
    cmd.env("BERTH_TEST_SECRET", "s3cret")
        .env("LISTEN_PID", "1")
        .args(["run", "--bundle", b.path_str(), &id]);
    let o = output_timeout(cmd, Duration::from_secs(30));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stdout(&o).contains("s3cret"), "{}", stdout(&o));
    assert!(!stdout(&o).contains("LISTEN_PID"), "{}", stdout(&o));
}

/// A directory on the host with a marker file, to recognise a cwd that escaped.
fn host_dir_with_marker() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("HOST-MARKER"), "host").unwrap();
    d
}

#[test]
fn cwd_through_a_preserved_host_fd_is_refused() {
    // CVE-2024-21626 class: a host directory fd reachable at exec time and a cwd of
    // /proc/self/fd/N would put the process outside its root. runc >= 1.1.12 refuses it.
    let rt = Runtime::new();
    let host = host_dir_with_marker();
    let mut b = sh("pwd; ls");
    b.edit(|c| c["process"]["cwd"] = json!("/proc/self/fd/3"));
    let id = unique_id("cwdescape");
    let dir = std::fs::File::open(host.path()).unwrap();
    let mut cmd = rt.cmd();
    cmd.args(["run", "--preserve-fds", "1", "--bundle", b.path_str(), &id]);
    leak_fds(&mut cmd, dir.as_raw_fd(), &[3]);
    let o = output_timeout(cmd, Duration::from_secs(30));
    assert!(
        !stdout(&o).contains("HOST-MARKER"),
        "the process ran in a host directory:\n{}",
        stdout(&o)
    );
    assert!(!o.status.success(), "run succeeded: {}", stdout(&o));
    assert!(stderr(&o).contains("process.cwd"), "{}", stderr(&o));
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn cwd_through_any_runtime_fd_never_escapes() {
    // Whatever fds the runtime itself holds when it enters the cwd, /proc/self/fd/N must never
    // land the process outside its root: each attempt either fails or runs inside.
    let rt = Runtime::new();
    let mut escaped = Vec::new();
    for n in 3..16 {
        let mut b = sh("pwd; ls -a");
        std::fs::write(b.path().join("HOST-MARKER"), "bundle").unwrap();
        std::fs::write(rt.root.path().join("HOST-MARKER"), "root").unwrap();
        b.edit(|c| c["process"]["cwd"] = json!(format!("/proc/self/fd/{n}")));
        let id = unique_id(&format!("cwdfd{n}"));
        let o = rt.run_timeout(&id, &b, &[]);
        let out = stdout(&o);
        if out.contains("HOST-MARKER") || out.contains("(unreachable)") {
            escaped.push(format!("fd {n}: {out}"));
        }
        let _ = rt.berth(&["delete", "--force", &id]);
    }
    assert!(
        escaped.is_empty(),
        "cwd escaped the container:\n{}",
        escaped.join("\n")
    );
}

#[test]
fn a_symlinked_cwd_is_resolved_inside_the_container() {
    // A cwd whose path is a symlink to an absolute host path resolves in the container's root.
    let rt = Runtime::new();
    let host = host_dir_with_marker();
    let mut b = sh("pwd -P; ls");
    std::os::unix::fs::symlink(host.path(), b.rootfs().join("link")).unwrap();
    std::fs::create_dir_all(b.rootfs().join(host.path().strip_prefix("/").unwrap())).unwrap();
    b.edit(|c| c["process"]["cwd"] = json!("/link"));
    let id = unique_id("cwdlink");
    let o = rt.run_timeout(&id, &b, &[]);
    assert!(!stdout(&o).contains("HOST-MARKER"), "{}", stdout(&o));
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn the_container_cannot_see_the_runtimes_state() {
    let rt = Runtime::new();
    let b = sh("ls / ; ls -a /proc/1/fd");
    let id = unique_id("nostate");
    let o = rt.run_timeout(&id, &b, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        !out.contains("state.json") && !out.contains("start.sock"),
        "{out}"
    );
    assert!(!out.contains(rt.root_str()), "{out}");
}

/// CVE-2022-29162 (runc exec) / CVE-2022-27650 (crun): processes must not get inheritable
/// capabilities they were not given, or a file with inheritable file capabilities could raise
/// them past the container's permitted set.
#[test]
fn no_inheritable_capabilities_unless_asked_for_run_and_exec() {
    let rt = Runtime::new();
    let b = Bundle::sh("grep CapInh /proc/self/status; sleep 100");
    let id = unique_id("capinh");
    rt.create(&id, &b);
    rt.ok(&["start", &id]);
    let o = rt.berth(&["exec", &id, "grep", "CapInh", "/proc/self/status"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "CapInh:\t0000000000000000");
    let init = std::fs::read_to_string(format!("/proc/{}/status", rt.state(&id)["pid"])).unwrap();
    assert!(init.contains("CapInh:\t0000000000000000"), "{init}");
    rt.ok(&["delete", "--force", &id]);
}
