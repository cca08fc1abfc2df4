//! process.terminal with --console-socket, as containerd, podman (conmon) and CRI-O use it:
//! the pty master arrives over the socket (SCM_RIGHTS), the container's stdio is the pty's
//! slave (its controlling terminal), and process.consoleSize is applied.
//! The container needs /dev/ptmx (a link to its own /dev/pts/ptmx) and a devpts instance of
//! its own, which the rootfs setup provides.

mod common;
use common::*;

use std::os::fd::OwnedFd;

use serde_json::json;

/// A terminal bundle running `script`.
fn tty(script: &str) -> Bundle {
    let mut b = sh(script);
    b.edit(|c| c["process"]["terminal"] = json!(true));
    b
}

/// `create --console-socket` then `start`; returns the pty master.
fn create_with_console(rt: &Runtime, id: &str, b: &Bundle) -> OwnedFd {
    let sock = ConsoleSocket::new();
    let d = rt.create_detached(id, b, &["--console-socket", &sock.path_str()]);
    assert!(d.status.success(), "create failed: {}", d.stderr());
    let (master, name) = sock.recv_master(SECS10);
    assert!(!name.is_empty(), "the fd arrives with a name");
    // The master is a pty master: TIOCGPTN answers on it.
    let mut n: libc::c_uint = 0;
    use std::os::fd::AsRawFd;
    // SAFETY: TIOCGPTN writes one unsigned int to a valid pointer.
    let r = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut n) };
    assert_eq!(r, 0, "the received fd is not a pty master");
    master
}

#[test]
fn the_pty_master_arrives_over_the_console_socket_and_carries_the_output() {
    let rt = Runtime::new();
    let b = tty("echo hello-from-the-tty; tty; [ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo all-ttys");
    let id = unique_id("ttyout");
    let master = create_with_console(&rt, &id, &b);
    rt.ok(&["start", &id]);
    let out = read_until(&master, "all-ttys", SECS10);
    assert!(out.contains("hello-from-the-tty"), "{out:?}");
    assert!(
        out.contains("/dev/pts/0"),
        "stdio is the container's own pty 0: {out:?}"
    );
    assert!(out.contains("all-ttys"), "{out:?}");
    assert!(rt.wait_status(&id, "stopped", SECS10));
    rt.ok(&["delete", &id]);
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn input_written_to_the_master_reaches_the_process() {
    let rt = Runtime::new();
    let b = tty("stty -echo; echo ready; read line; echo \"got:$line\"");
    let id = unique_id("ttyin");
    let master = create_with_console(&rt, &id, &b);
    rt.ok(&["start", &id]);
    assert!(read_until(&master, "ready", SECS10).contains("ready"));
    nix::unistd::write(&master, b"typed\n").unwrap();
    let out = read_until(&master, "got:typed", SECS10);
    assert!(out.contains("got:typed"), "{out:?}");
    rt.ok(&["delete", "--force", &id]);
}

#[test]
fn console_size_is_applied() {
    let rt = Runtime::new();
    let mut b = tty("stty size");
    b.edit(|c| c["process"]["consoleSize"] = json!({"height": 40, "width": 100}));
    let id = unique_id("ttysize");
    let master = create_with_console(&rt, &id, &b);
    rt.ok(&["start", &id]);
    let out = read_until(&master, "40 100", SECS10);
    assert!(out.contains("40 100"), "stty size printed {out:?}");
    rt.ok(&["delete", "--force", &id]);
}

#[test]
fn the_terminal_is_the_controlling_terminal_and_dev_console() {
    let rt = Runtime::new();
    // /proc/self/stat field 7 is tty_nr: non-zero when there is a controlling terminal.
    let b = tty("set -- $(cat /proc/self/stat); echo tty_nr=$7; \
         [ -c /dev/console ] && echo console-is-a-char-device");
    let id = unique_id("ttyctl");
    let master = create_with_console(&rt, &id, &b);
    rt.ok(&["start", &id]);
    let out = read_until(&master, "console-is", SECS10);
    assert!(
        !out.contains("tty_nr=0"),
        "no controlling terminal: {out:?}"
    );
    assert!(out.contains("tty_nr="), "{out:?}");
    assert!(out.contains("console-is-a-char-device"), "{out:?}");
    rt.ok(&["delete", "--force", &id]);
}

#[test]
fn run_detached_with_a_terminal() {
    let rt = Runtime::new();
    let b = tty("echo detached-tty; sleep 30");
    let id = unique_id("ttydetach");
    let sock = ConsoleSocket::new();
    rt.detached(
        &[
            "run",
            "-d",
            "--console-socket",
            &sock.path_str(),
            "--bundle",
            b.path_str(),
            &id,
        ],
        b.path(),
        &id,
    )
    .assert_ok();
    let (master, _) = sock.recv_master(SECS10);
    let out = read_until(&master, "detached-tty", SECS10);
    assert!(out.contains("detached-tty"), "{out:?}");
    assert_eq!(rt.status(&id), "running");
    rt.ok(&["delete", "--force", &id]);
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn console_socket_that_does_not_exist_fails_create_cleanly() {
    let rt = Runtime::new();
    let b = tty("true");
    let id = unique_id("ttynosock");
    let d = rt.create_detached(&id, &b, &["--console-socket", "/no/such/socket"]);
    assert!(!d.status.success());
    assert_eq!(lines(&d.stderr()).len(), 1, "{}", d.stderr());
    assert!(d.stderr().contains("/no/such/socket"), "{}", d.stderr());
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn run_in_the_foreground_relays_the_terminal_itself() {
    // No --console-socket: `berth run` receives the pty master and copies it to its own stdout,
    // as `runc run` does for a process with a terminal.
    let rt = Runtime::new();
    let mut b = Bundle::sh("tty; echo relayed; exit 5");
    b.edit(|c| c["process"]["terminal"] = serde_json::json!(true));
    let o = rt.run(&unique_id("ttyrelay"), &b);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("/dev/pts/0"), "{out:?}");
    assert!(
        out.contains("relayed\r\n"),
        "output goes through the pty: {out:?}"
    );
}

#[test]
fn run_detached_with_a_terminal_needs_a_console_socket() {
    let rt = Runtime::new();
    let mut b = Bundle::sh("true");
    b.edit(|c| c["process"]["terminal"] = serde_json::json!(true));
    let o = rt.berth(&[
        "run",
        "-d",
        "--bundle",
        b.path().to_str().unwrap(),
        &unique_id("ttyd"),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--console-socket"), "{}", stderr(&o));
    assert!(rt.ids().is_empty());
}
