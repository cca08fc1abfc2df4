//! `berth exec`: a new process inside a running container, driven through the real binary.
//! Effects are checked from inside (the exec'd process's output) and outside (/proc of the
//! container's init and of the exec'd process).

mod common;
use common::*;

use std::io::{IoSliceMut, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

/// A started container whose init sleeps; removed (with everything exec'd into it) when the
/// runtime is dropped.
struct Running {
    rt: Runtime,
    bundle: Bundle,
    id: String,
    pid: i32,
}

fn start(name: &str, mut b: Bundle, edit: impl FnOnce(&mut Value)) -> Running {
    b.edit(edit);
    let rt = Runtime::new();
    let id = unique_id(name);
    rt.create(&id, &b);
    rt.ok(&["start", &id]);
    let pid = rt.state(&id)["pid"].as_i64().unwrap() as i32;
    Running {
        rt,
        bundle: b,
        id,
        pid,
    }
}

fn running(name: &str) -> Running {
    start(name, Bundle::sh("sleep 1000"), |_| {})
}

impl Running {
    /// `berth exec ARGS… ID COMMAND…`, captured.
    fn exec(&self, flags: &[&str], cmd: &[&str]) -> Output {
        let mut args = vec!["exec"];
        args.extend_from_slice(flags);
        args.push(&self.id);
        args.extend_from_slice(cmd);
        self.rt.berth(&args)
    }

    /// `berth exec -d --pid-file F FLAGS… ID COMMAND…`; returns the process's host pid. Its
    /// stdio is /dev/null and a file: a detached process would hold a pipe open.
    fn exec_detached(&self, flags: &[&str], cmd: &[&str]) -> i32 {
        self.exec_detached_with(flags, cmd, |_| {})
    }

    fn exec_detached_with(
        &self,
        flags: &[&str],
        cmd: &[&str],
        prepare: impl FnOnce(&mut std::process::Command),
    ) -> i32 {
        let pf = self.bundle.path().join("exec.pid");
        let _ = std::fs::remove_file(&pf);
        let log = self.bundle.path().join("exec.stderr");
        let mut c = self.rt.cmd();
        c.args(["exec", "-d", "--pid-file", pf.to_str().unwrap()])
            .args(flags)
            .arg(&self.id)
            .args(cmd)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        prepare(&mut c);
        let st = c.status().unwrap();
        assert!(
            st.success(),
            "exec -d {flags:?} {cmd:?}: {st}: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        assert!(
            !self.bundle.path().join(".exec.pid.tmp").exists(),
            "the atomic pid file leaves no temporary"
        );
        std::fs::read_to_string(&pf)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// Like `exec`, but the process must succeed; returns its stdout.
    fn sh(&self, script: &str) -> String {
        let o = self.exec(&[], &["sh", "-c", script]);
        assert!(
            o.status.success(),
            "exec {script:?}: {}\nstdout: {}\nstderr: {}",
            o.status,
            stdout(&o),
            stderr(&o)
        );
        stdout(&o)
    }
}

fn ns_link(pid: impl std::fmt::Display, ns: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

const NAMESPACES: [&str; 8] = ["cgroup", "ipc", "mnt", "net", "pid", "user", "uts", "time"];

/// The namespace kinds of [`NAMESPACES`] that this kernel has (time namespaces need 5.6+).
fn namespaces_here() -> Vec<&'static str> {
    NAMESPACES
        .into_iter()
        .filter(|n| kernel_has_namespace(n))
        .collect()
}

fn namespaces_seen_inside(c: &Running) -> Vec<(String, String)> {
    let script = namespaces_here()
        .iter()
        .map(|n| format!("echo {n} $(readlink /proc/self/ns/{n});"))
        .collect::<String>();
    c.sh(&script)
        .lines()
        .map(|l| {
            let (n, v) = l.split_once(' ').unwrap();
            (n.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn exec_runs_in_every_namespace_of_the_container() {
    let c = running("ns");
    let inside = namespaces_seen_inside(&c);
    assert_eq!(inside.len(), namespaces_here().len());
    for (n, link) in &inside {
        assert_eq!(link, &ns_link(c.pid, n), "{n} namespace");
    }
    // The container has its own mount, pid, net, ipc, uts and cgroup namespaces: the exec'd
    // process is not in the host's.
    for n in ["mnt", "pid", "net", "ipc", "uts", "cgroup"] {
        assert_ne!(ns_link(c.pid, n), ns_link("self", n), "{n}");
    }
}

#[test]
fn exec_joins_user_and_time_namespaces() {
    if skip_without_namespace("exec_joins_user_and_time_namespaces", "time") {
        return;
    }
    let c = start("userns", Bundle::sh("sleep 1000"), |cfg| {
        let ns = cfg["linux"]["namespaces"].as_array_mut().unwrap();
        ns.push(json!({"type": "user"}));
        ns.push(json!({"type": "time"}));
        let map = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        cfg["linux"]["uidMappings"] = map.clone();
        cfg["linux"]["gidMappings"] = map;
    });
    for n in ["user", "time"] {
        assert_ne!(
            ns_link(c.pid, n),
            ns_link("self", n),
            "container has its own {n}"
        );
    }
    for (n, link) in namespaces_seen_inside(&c) {
        assert_eq!(link, ns_link(c.pid, &n), "{n} namespace");
    }
    // Root inside is the mapped uid outside.
    let pid = c.exec_detached(&[], &["sleep", "100"]);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        status.lines().any(|l| l.starts_with("Uid:\t100000\t")),
        "{status}"
    );
    assert_eq!(c.sh("id -u"), "0\n");
}

#[test]
fn exit_status_is_the_process_status() {
    let c = running("exit");
    let o = c.exec(&[], &["sh", "-c", "echo out; echo err >&2; exit 7"]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert_eq!(stdout(&o), "out\n");
    assert_eq!(stderr(&o), "err\n");
    let o = c.exec(&[], &["sh", "-c", "kill -KILL $$"]);
    assert_eq!(o.status.code(), Some(128 + 9), "{}", stderr(&o));
    let o = c.exec(&[], &["true"]);
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn signals_sent_to_berth_reach_the_process() {
    let c = running("signal");
    let mut child =
        c.rt.cmd()
            .args(["exec", &c.id, "sh", "-c", "echo ready; exec sleep 100"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    let mut line = [0u8; 6];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut line)
        .unwrap();
    assert_eq!(&line, b"ready\n");
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(128 + 15), "{}", stderr(&o));
}

#[test]
fn environment_cwd_and_user_come_from_the_flags() {
    let c = running("ident");
    let o = c.exec(
        &[
            "-u",
            "1000:1000",
            "-g",
            "20",
            "--cwd",
            "/tmp",
            "-e",
            "FOO=bar",
            "--env",
            "PATH=/bin",
        ],
        &["sh", "-c", "id; pwd; echo $FOO $PATH $HOME"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let mut lines = out.lines();
    let id = lines.next().unwrap();
    assert!(id.starts_with("uid=1000(user) gid=1000(user)"), "{id}");
    assert!(id.contains("20"), "additional gid 20: {id}");
    assert_eq!(lines.next(), Some("/tmp"));
    assert_eq!(lines.next(), Some("bar /bin /home/user"));
    // Without flags: the container's own process settings (root, cwd /).
    assert_eq!(c.sh("id -u; pwd"), "0\n/\n");
}

#[test]
fn cap_flag_adds_a_capability_and_no_new_privs_is_set() {
    let c = running("caps");
    // CAP_SYS_TIME (25) is not in the default set.
    let eff = |o: &Output| -> u64 {
        assert!(o.status.success(), "{}", stderr(o));
        u64::from_str_radix(stdout(o).trim(), 16).unwrap()
    };
    let script = ["sh", "-c", "grep CapEff /proc/self/status | cut -f2"];
    assert_eq!(eff(&c.exec(&[], &script)) & (1 << 25), 0);
    assert_ne!(
        eff(&c.exec(&["--cap", "CAP_SYS_TIME"], &script)) & (1 << 25),
        0
    );
    let o = c.exec(
        &["--no-new-privs"],
        &["sh", "-c", "grep NoNewPrivs /proc/self/status"],
    );
    assert_eq!(stdout(&o), "NoNewPrivs:\t1\n", "{}", stderr(&o));
    // An unknown name in capability form is ignored with a warning (tests/caps_sysctl.rs).
    let o = c.exec(&["--cap", "CAP-BOGUS"], &["true"]);
    assert_eq!(o.status.code(), Some(255));
    assert!(
        stderr(&o).contains("not a capability name"),
        "{}",
        stderr(&o)
    );
}

fn write_process(dir: &Path, p: Value) -> PathBuf {
    let f = dir.join("process.json");
    std::fs::write(&f, serde_json::to_vec(&p).unwrap()).unwrap();
    f
}

#[test]
fn process_json_is_run_as_given() {
    let c = running("procjson");
    let f = write_process(
        c.bundle.path(),
        json!({
            "args": ["sh", "-c", "echo $X; pwd; id -u; id -g"],
            "env": ["PATH=/bin", "X=from-json"],
            "cwd": "/tmp",
            "user": {"uid": 1000, "gid": 1000},
            "terminal": false
        }),
    );
    let o = c.exec(&["--process", f.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "from-json\n/tmp\n1000\n1000\n");
}

/// runc's process type has a plain `user`: a `--process` file without one runs as 0:0.
#[test]
fn process_json_without_user_runs_as_root() {
    let c = running("procjsonnouser");
    let f = write_process(
        c.bundle.path(),
        json!({"args": ["sh", "-c", "id -u; id -g"], "env": ["PATH=/bin"], "cwd": "/"}),
    );
    let o = c.exec(&["--process", f.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "0\n0\n");
}

#[test]
fn process_json_without_capabilities_gets_the_container_ones() {
    let c = running("procjsoncaps");
    let script = "grep -E '^Cap(Eff|Bnd)' /proc/self/status";
    let container_caps = c.sh(script);
    let f = write_process(
        c.bundle.path(),
        json!({
            "args": ["sh", "-c", script],
            "env": ["PATH=/bin"],
            "cwd": "/",
            "user": {"uid": 0, "gid": 0}
        }),
    );
    let o = c.exec(&["-p", f.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), container_caps, "never the full root set");
    assert!(!container_caps.contains("000001ff"), "{container_caps}");
}

#[test]
fn bad_process_json_names_the_field() {
    let c = running("badjson");
    for (body, want) in [
        (
            json!({"args": [], "cwd": "/", "user": {"uid": 0, "gid": 0}}),
            "process.args",
        ),
        (
            json!({"args": ["true"], "cwd": "rel", "user": {"uid": 0, "gid": 0}}),
            "process.cwd",
        ),
        (
            json!({"args": ["true"], "cwd": "/", "user": {"uid": -1, "gid": 0}}),
            "process.user.uid",
        ),
        (
            json!({"args": ["true"], "cwd": "/", "user": {"uid": 0, "gid": 0},
                   "capabilities": {"bounding": ["CAP-NOPE"]}}),
            "process.capabilities.bounding[0]",
        ),
    ] {
        let f = write_process(c.bundle.path(), body);
        let o = c.exec(&["-p", f.to_str().unwrap()], &[]);
        assert_eq!(o.status.code(), Some(255));
        let e = stderr(&o);
        assert!(e.contains(want), "want {want}: {e}");
        assert_eq!(e.lines().count(), 1, "one clear line: {e}");
    }
}

#[test]
fn setup_errors_are_one_clear_line() {
    let c = running("errors");
    for (flags, cmd, want) in [
        (
            &[][..],
            &["no-such-program"][..],
            "executable file not found",
        ),
        (&["--cwd", "/no/such/dir"], &["true"], "process.cwd"),
        (&["-u", "bob"], &["true"], "--user \"bob\""),
        (&[], &[], "no command"),
    ] {
        let o = c.exec(flags, cmd);
        assert_eq!(o.status.code(), Some(255), "{flags:?} {cmd:?}");
        let e = stderr(&o);
        assert!(e.contains(want), "want {want}: {e}");
        assert_eq!(e.lines().count(), 1, "{e}");
    }
}

/// Accepts one connection on `listener` and receives one fd over it (SCM_RIGHTS), with the
/// message's bytes.
fn recv_fd(listener: &UnixListener) -> (String, OwnedFd) {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let (conn, _) = listener.accept().unwrap();
    let mut name = [0u8; 64];
    let mut iov = [IoSliceMut::new(&mut name)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .unwrap();
    let mut fd = None;
    for c in msg.cmsgs().unwrap() {
        if let ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: the fd was just received and belongs to nobody else.
            fd = Some(unsafe { OwnedFd::from_raw_fd(fds[0]) });
        }
    }
    let n = msg.bytes;
    let name = String::from_utf8_lossy(&name[..n]).into_owned();
    (name, fd.expect("an fd in SCM_RIGHTS"))
}

/// Receives the pty master over a console socket and reads everything the process writes to
/// its terminal.
fn console_receiver(path: &Path) -> std::thread::JoinHandle<(String, Vec<u8>)> {
    let listener = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        let (name, master) = recv_fd(&listener);
        let mut f = std::fs::File::from(master);
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        // EIO once the last slave fd is closed.
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        (name, out)
    })
}

#[test]
fn tty_goes_through_the_console_socket() {
    let c = running("tty");
    // The minimal rootfs does not create /dev/ptmx yet (the rootfs rewrite does).
    c.sh("[ -e /dev/ptmx ] || ln -s pts/ptmx /dev/ptmx");
    let sock = c.bundle.path().join("console.sock");
    let rx = console_receiver(&sock);
    let o = c.exec(
        &["-t", "--console-socket", sock.to_str().unwrap()],
        &[
            "sh",
            "-c",
            "tty; [ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo all-stdio-on-tty",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let (name, out) = rx.join().unwrap();
    assert_eq!(name, "/dev/ptmx");
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("/dev/pts/"), "{out:?}");
    assert!(out.contains("all-stdio-on-tty"), "{out:?}");
    // The container's console is untouched by an exec.
    assert!(c.sh("[ -e /dev/console ] && echo bound || echo none") == "none\n");
    // --tty --detach without a console socket is refused before anything runs (in the
    // foreground, Berth relays the pty itself: tests/console_exec.rs).
    let o = c.exec(&["-d", "-t"], &["true"]);
    assert_eq!(o.status.code(), Some(255));
    assert!(stderr(&o).contains("--console-socket"), "{}", stderr(&o));
}

fn pidfd(pid: i32) -> OwnedFd {
    // SAFETY: pidfd_open with integer arguments; a new fd on success.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    assert!(
        fd >= 0,
        "pidfd_open {pid}: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a fresh fd.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

/// Waits (bounded) until the process behind `fd` has exited.
fn wait_exit(fd: &OwnedFd, ms: u16) -> bool {
    use nix::poll::{poll, PollFd, PollFlags};
    use std::os::fd::AsFd;
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    poll(&mut fds, ms).unwrap() == 1
}

#[test]
fn detach_writes_the_pid_file_and_the_process_lives_in_the_container() {
    let c = running("detach");
    let pid = c.exec_detached(&[], &["sleep", "100"]);
    for n in namespaces_here() {
        assert_eq!(ns_link(pid, n), ns_link(c.pid, n), "{n}");
    }
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        cg.lines().any(|l| l.ends_with(&format!(":/{}", c.id))),
        "in the container's cgroup: {cg}"
    );
    let cmd = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert_eq!(cmd, "sleep\x00100\x00");
    // Deleting the container takes the exec'd process with it.
    let fd = pidfd(pid);
    c.rt.ok(&["delete", "--force", &c.id]);
    assert!(
        wait_exit(&fd, 5000),
        "exec'd process outlived its container"
    );
}

#[test]
fn pidfd_socket_receives_a_pidfd_of_the_process() {
    let c = running("pidfd");
    let sock = c.bundle.path().join("pidfd.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let rx = std::thread::spawn(move || recv_fd(&listener));
    let pid = c.exec_detached(
        &["--pidfd-socket", sock.to_str().unwrap()],
        &["sleep", "100"],
    );
    let (_, fd) = rx.join().unwrap();
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).unwrap();
    assert!(
        info.lines().any(|l| l == format!("Pid:\t{pid}")),
        "a pidfd of {pid}: {info}"
    );
    // It works as one: SIGKILL through it, then it reports the exit.
    // SAFETY: pidfd_send_signal with a valid pidfd and a null siginfo.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    assert_eq!(r, 0);
    assert!(wait_exit(&fd, 5000));
}

#[test]
fn no_host_fd_reaches_the_process() {
    let c = running("fds");
    let secret = c.bundle.path().join("secret");
    std::fs::write(&secret, "passed-through\n").unwrap();
    // Berth is handed an inheritable fd 3 (as from a leaky caller); returns the fds of the
    // detached exec'd process, read from the host.
    let open_fds = |preserve: &[&str]| -> Vec<String> {
        let f = std::fs::File::open(&secret).unwrap();
        let raw = f.as_raw_fd();
        let pid = c.exec_detached_with(preserve, &["sleep", "100"], |cmd| as_fd3(cmd, raw));
        let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        fds.sort();
        let fd = pidfd(pid);
        // SAFETY: kill(2) of the process we just started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        assert!(wait_exit(&fd, 5000));
        fds
    };
    assert_eq!(open_fds(&[]), ["0", "1", "2"]);
    assert_eq!(open_fds(&["--preserve-fds", "1"]), ["0", "1", "2", "3"]);
    // A preserved fd is the caller's file, readable inside.
    let f = std::fs::File::open(&secret).unwrap();
    let raw = f.as_raw_fd();
    let mut cmd = c.rt.cmd();
    cmd.args(["exec", "--preserve-fds", "1", &c.id, "sh", "-c", "cat <&3"]);
    as_fd3(&mut cmd, raw);
    let o = cmd.output().unwrap();
    assert_eq!(stdout(&o), "passed-through\n", "{}", stderr(&o));
    // Asking to preserve fds Berth was not given is refused.
    let o = c.exec(&["--preserve-fds", "5"], &["true"]);
    assert_eq!(o.status.code(), Some(255));
    assert!(
        stderr(&o).contains("--preserve-fds 5: fd"),
        "{}",
        stderr(&o)
    );
}

/// Makes `raw` the child's inheritable fd 3.
fn as_fd3(cmd: &mut std::process::Command, raw: RawFd) {
    // SAFETY: only async-signal-safe dup2/fcntl run between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let r = if raw == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(raw, 3)
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn exec_cannot_reach_the_host_through_proc() {
    let c = running("dumpable");
    // A process exec'd by Berth is a normal, dumpable program again after execve, but its
    // root and cwd are the container's, never a host path.
    let out = c.sh("readlink /proc/self/root; readlink /proc/self/cwd; pwd");
    assert_eq!(out, "/\n/\n/\n");
    // The cwd is checked inside the container: a path that only exists on the host fails.
    let host_only = c.bundle.path().to_str().unwrap().to_string();
    let o = c.exec(&["--cwd", &host_only], &["true"]);
    assert_eq!(o.status.code(), Some(255));
    assert!(stderr(&o).contains("process.cwd"), "{}", stderr(&o));
}

#[test]
fn exec_into_a_created_container_is_allowed_as_runc_does() {
    let b = Bundle::sh("sleep 1000");
    let rt = Runtime::new();
    let id = unique_id("created");
    rt.create(&id, &b);
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    let o = rt.berth(&["exec", &id, "sh", "-c", "readlink /proc/self/ns/pid"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), ns_link(pid, "pid"));
    assert_eq!(rt.state(&id)["status"], "created", "exec does not start it");
}

#[test]
fn exec_into_a_stopped_or_unknown_container_is_a_clear_error() {
    let rt = Runtime::new();
    let b = Bundle::sh("true");
    let id = unique_id("stopped");
    rt.create(&id, &b);
    let pid = rt.state(&id)["pid"].as_i64().unwrap() as i32;
    let fd = pidfd(pid);
    rt.ok(&["start", &id]);
    assert!(wait_exit(&fd, 5000));
    let o = rt.berth(&["exec", &id, "true"]);
    assert_eq!(o.status.code(), Some(255));
    assert_eq!(
        stderr(&o),
        format!("berth: error: exec failed: container {id:?} is stopped: cannot exec into it\n")
    );
    let o = rt.berth(&["exec", "no-such-container", "true"]);
    assert_eq!(o.status.code(), Some(255));
    assert!(
        stderr(&o).contains("container \"no-such-container\" does not exist"),
        "{}",
        stderr(&o)
    );
    let o = rt.berth(&["exec", "../bad", "true"]);
    assert_eq!(o.status.code(), Some(255));
    assert!(
        stderr(&o).contains("invalid container id"),
        "{}",
        stderr(&o)
    );
}

/// Freezes a container through the v1 freezer directly (independent of `berth pause`), and
/// thaws it on drop, pass or fail, so the container can be deleted.
struct Frozen(PathBuf);

impl Frozen {
    fn new(id: &str) -> Frozen {
        let state = PathBuf::from(format!("/sys/fs/cgroup/freezer/{id}/freezer.state"));
        std::fs::write(&state, "FROZEN").unwrap();
        Frozen(state)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.0, "THAWED");
    }
}

#[test]
fn ignore_paused_runs_once_the_container_is_thawed() {
    let c = running("paused");
    let frozen = Frozen::new(&c.id);
    let mut child: Child =
        c.rt.cmd()
            .args(["exec", "--ignore-paused", &c.id, "echo", "thawed"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    // It joins the frozen cgroup and cannot run yet.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "ran in a frozen container"
    );
    drop(frozen);
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "thawed\n");
}

#[test]

fn exec_into_a_paused_container_is_refused() {
    let c = running("refused");
    let _frozen = Frozen::new(&c.id);
    let o = c.exec(&[], &["true"]);
    assert_eq!(o.status.code(), Some(255));
    assert!(
        stderr(&o).contains("is paused: cannot exec into it (resume it, or use --ignore-paused)"),
        "{}",
        stderr(&o)
    );
}

/// Sub-cgroups made by the test in every v1 hierarchy, removed on drop (before the container's
/// cgroup is).
struct SubCgroups(Vec<PathBuf>);

impl Drop for SubCgroups {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = std::fs::remove_dir(d);
        }
    }
}

fn v1_hierarchies() -> Vec<(PathBuf, String)> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let mut post = post.split(' ');
            (post.next()? == "cgroup").then_some(())?;
            let opts = post.nth(1)?.to_string();
            Some((PathBuf::from(pre.split(' ').nth(4)?), opts))
        })
        .collect()
}

#[test]
fn cgroup_flag_places_the_process_in_a_sub_cgroup() {
    // An absolute cgroupsPath puts the container at <hierarchy>/<id> in every hierarchy (without
    // one, runc's placement is relative to the runtime's own cgroup, which differs by host).
    let id = unique_id("subcg");
    let c = start("subcg", Bundle::sh("sleep 1000"), |cfg| {
        cfg["linux"]["cgroupsPath"] = serde_json::json!(format!("/{id}"))
    });
    let mut subs = SubCgroups(Vec::new());
    for (h, _) in v1_hierarchies() {
        for s in ["all", "only-pids"] {
            let d = h.join(&c.id).join(s);
            if s == "all" || h.ends_with("pids") {
                std::fs::create_dir(&d).unwrap();
                // A new cpuset cgroup starts with no cpus or memory nodes.
                for f in ["cpuset.cpus", "cpuset.mems"] {
                    if let Ok(v) = std::fs::read_to_string(h.join(&c.id).join(f)) {
                        std::fs::write(d.join(f), v.trim()).unwrap();
                    }
                }
                subs.0.push(d);
            }
        }
    }
    // On a hybrid host the container also has a cgroup in the unified hierarchy.
    let unified = std::path::Path::new("/sys/fs/cgroup/unified").join(&c.id);
    if unified.is_dir() {
        let d = unified.join("all");
        std::fs::create_dir(&d).unwrap();
        subs.0.push(d);
    }
    let cgroup_of = |flags: &[&str]| -> String {
        let pid = c.exec_detached(flags, &["sleep", "100"]);
        let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let fd = pidfd(pid);
        // SAFETY: kill(2) of the process we just started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        assert!(wait_exit(&fd, 5000));
        cg
    };
    let cg = cgroup_of(&["--cgroup", "all"]);
    for l in cg.lines().filter(|l| !l.starts_with("0::")) {
        assert!(l.ends_with(&format!(":/{}/all", c.id)), "{cg}");
    }
    let cg = cgroup_of(&["--cgroup", "pids:only-pids"]);
    for l in cg.lines().filter(|l| !l.starts_with("0::")) {
        let want = if l.contains(":pids:") {
            format!(":/{}/only-pids", c.id)
        } else {
            format!(":/{}", c.id)
        };
        assert!(l.ends_with(&want), "{l} in {cg}");
    }
    // A sub-cgroup that does not exist, or one outside the container's, is refused.
    let o = c.exec(&["--cgroup", "pids:missing"], &["true"]);
    assert_eq!(o.status.code(), Some(255));
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    let o = c.exec(&["--cgroup", "../escape"], &["true"]);
    assert_eq!(o.status.code(), Some(255));
    assert!(stderr(&o).contains("must stay inside"), "{}", stderr(&o));
    drop(subs);
}

#[test]
fn exec_is_fast_enough_for_probes() {
    let c = running("fast");
    let n = 20;
    let t = std::time::Instant::now();
    for _ in 0..n {
        let o = c.exec(&[], &["true"]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let per = t.elapsed() / n;
    eprintln!("exec true: {per:?} per exec (debug build, includes busybox)");
    assert!(per < Duration::from_millis(250), "{per:?}");
}
