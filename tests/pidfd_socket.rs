//! `--pidfd-socket` (runc 1.2) on create, run and exec: a pidfd of the init / the exec'd
//! process arrives over the socket with runc's data (`standard` / `setns`), and works as one.

mod common;

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use common::*;

/// A listening socket for `--pidfd-socket` (the harness's console socket receives one fd with
/// its data, which is what runc sends here too).
fn listener() -> ConsoleSocket {
    ConsoleSocket::new()
}

/// The message: its data and its fd.
fn receive(l: &ConsoleSocket) -> (String, OwnedFd) {
    let (fd, data) = l.recv_master(SECS5);
    (data, fd)
}

fn pid_of(fd: &OwnedFd) -> i32 {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("Pid:\t"))
        .expect("a pidfd")
        .parse()
        .unwrap()
}

fn signal(fd: &OwnedFd, sig: i32) {
    // SAFETY: pidfd_send_signal with a valid pidfd and a null siginfo.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    assert_eq!(
        r,
        0,
        "pidfd_send_signal: {}",
        std::io::Error::last_os_error()
    );
}

fn exits(fd: &OwnedFd) -> bool {
    use nix::poll::{poll, PollFd, PollFlags};
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    poll(&mut fds, 5000u16).unwrap() == 1
}

#[test]
fn create_sends_the_inits_pidfd_as_standard() {
    let rt = Runtime::new();
    let b = Bundle::sh("sleep 100");
    let id = unique_id("pidfd-create");
    let l = listener();
    let sock = l.path();
    rt.track(&id);
    rt.ok(&[
        "create",
        "--pidfd-socket",
        sock.to_str().unwrap(),
        "--bundle",
        b.path_str(),
        &id,
    ]);
    let (data, fd) = receive(&l);
    assert_eq!(data, "standard");
    assert_eq!(pid_of(&fd), rt.pid(&id));
    rt.ok(&["start", &id]);
    signal(&fd, libc::SIGKILL);
    assert!(exits(&fd), "the init did not die");
    assert!(rt.wait_status(&id, "stopped", SECS5));
    rt.ok(&["delete", &id]);
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn run_sends_the_inits_pidfd_and_a_signal_through_it_ends_the_run() {
    let rt = Runtime::new();
    let b = Bundle::sh("trap 'exit 42' TERM; while :; do sleep 0.1; done");
    let id = unique_id("pidfd-run");
    let l = listener();
    let sock = l.path();
    rt.track(&id);
    let mut cmd = rt.cmd();
    cmd.args([
        "run",
        "--pidfd-socket",
        sock.to_str().unwrap(),
        "--bundle",
        b.path_str(),
        &id,
    ]);
    let mut child = cmd.spawn().unwrap();
    let (data, fd) = receive(&l);
    assert_eq!(data, "standard");
    assert!(wait_until(SECS5, || rt
        .berth(&["state", &id])
        .status
        .success()
        && rt.status(&id) == "running"));
    assert_eq!(pid_of(&fd), rt.pid(&id));
    signal(&fd, libc::SIGTERM);
    assert_eq!(child.wait().unwrap().code(), Some(42), "the trap ran");
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn exec_sends_the_processs_pidfd_as_setns() {
    let rt = Runtime::new();
    let b = Bundle::sh("sleep 100");
    let id = unique_id("pidfd-exec");
    rt.track(&id);
    rt.ok(&["run", "-d", "--bundle", b.path_str(), &id]);
    let l = listener();
    let sock = l.path();
    let pidfile = b.path().join("exec.pid");
    rt.ok(&[
        "exec",
        "-d",
        "--pidfd-socket",
        sock.to_str().unwrap(),
        "--pid-file",
        pidfile.to_str().unwrap(),
        &id,
        "sleep",
        "100",
    ]);
    let (data, fd) = receive(&l);
    assert_eq!(data, "setns");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(pid_of(&fd), pid);
    assert_ne!(pid, rt.pid(&id));
    signal(&fd, libc::SIGKILL);
    assert!(exits(&fd), "the exec'd process did not die");
    assert!(pid_alive(rt.pid(&id)), "the init is untouched");
    rt.ok(&["delete", "--force", &id]);
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn a_missing_socket_is_one_line_and_leaves_nothing() {
    let rt = Runtime::new();
    let b = Bundle::sh("sleep 100");
    let gone = b.path().join("no-such.sock");
    let gone = gone.to_str().unwrap();
    for verb in ["create", "run"] {
        let id = unique_id(&format!("pidfd-missing-{verb}"));
        let o = rt.berth(&[verb, "--pidfd-socket", gone, "--bundle", b.path_str(), &id]);
        assert_one_error_line(&o, &[&format!("--pidfd-socket {gone}"), "No such file"]);
        assert_nothing_left(&rt, &id, &b);
    }
    let id = unique_id("pidfd-missing-exec");
    rt.track(&id);
    rt.ok(&["run", "-d", "--bundle", b.path_str(), &id]);
    let before = rt.berth(&["ps", "-f", "json", &id]);
    let o = rt.berth(&["exec", "-d", "--pidfd-socket", gone, &id, "sleep", "100"]);
    assert_eq!(o.status.code(), Some(255));
    assert_one_error_line(&o, &[&format!("--pidfd-socket {gone}"), "No such file"]);
    assert_eq!(
        stdout(&rt.berth(&["ps", "-f", "json", &id])),
        stdout(&before),
        "no process left"
    );
    rt.ok(&["delete", "--force", &id]);
    assert_nothing_left(&rt, &id, &b);
}
