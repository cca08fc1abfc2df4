//! Terminals beyond `--console-socket`: `exec -t` relayed on Berth's own terminal (as `runc exec
//! -t` does without a console socket), the pty's owner (the process's uid, as runc chowns it),
//! and the /dev/console mount target, which must never be a symlink followed out of the
//! container's /dev (the CVE-2025-52565 class).
//!
//! Berth gets a real terminal here: a pty the test opens, which becomes Berth's stdio and
//! controlling terminal (in a new session), with a size the test chooses.

mod common;
use common::*;

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use nix::fcntl::OFlag;
use serde_json::json;

// ───────────────────────────── a terminal for Berth ─────────────────────────────

/// A pty whose slave is a command's stdio and controlling terminal.
struct Term {
    master: OwnedFd,
    child: Child,
    /// Everything read from the master so far.
    seen: String,
}

/// A new pty pair (both ends close-on-exec, so no other test's child inherits them), sized
/// `rows` x `cols`.
fn open_pty(rows: u16, cols: u16) -> (OwnedFd, OwnedFd) {
    let master =
        nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).unwrap();
    nix::pty::grantpt(&master).unwrap();
    nix::pty::unlockpt(&master).unwrap();
    let name = nix::pty::ptsname_r(&master).unwrap();
    let slave = nix::fcntl::open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .unwrap();
    let master: OwnedFd = master.into();
    set_size(&master, rows, cols);
    (master, slave)
}

fn set_size(fd: &OwnedFd, rows: u16, cols: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from a valid pointer.
    assert_eq!(
        unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) },
        0
    );
}

/// The command runs in a new session, without a controlling terminal (so that `/dev/tty`
/// is not the terminal of whoever runs the tests).
fn new_session(cmd: &mut Command) {
    // SAFETY: setsid is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        })
    };
}

/// Gives `cmd` a pipe holding `data` (then end of file) as its stdin.
fn piped_stdin(cmd: &mut Command, data: &[u8]) {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
    nix::unistd::write(&w, data).unwrap();
    cmd.stdin(Stdio::from(r));
}

impl Term {
    /// Spawns `cmd` (consumed, so that its copies of the slave are closed) on a new
    /// `rows` x `cols` terminal: its stdio and controlling terminal.
    fn spawn(cmd: Command, rows: u16, cols: u16) -> Term {
        Term::start(cmd, rows, cols, None)
    }

    /// Like [`Term::spawn`], but stdin is a pipe holding `input`, and the terminal is only
    /// stdout and stderr (not the controlling terminal).
    fn spawn_piped(cmd: Command, rows: u16, cols: u16, input: &[u8]) -> Term {
        Term::start(cmd, rows, cols, Some(input))
    }

    fn start(mut cmd: Command, rows: u16, cols: u16, input: Option<&[u8]>) -> Term {
        let (master, slave) = open_pty(rows, cols);
        match input {
            Some(data) => piped_stdin(&mut cmd, data),
            None => {
                cmd.stdin(Stdio::from(slave.try_clone().unwrap()));
            }
        }
        cmd.stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        let ctty = input.is_none();
        // SAFETY: setsid and ioctl are async-signal-safe; fd 0 is the pty slave when `ctty`.
        unsafe {
            cmd.pre_exec(move || {
                libc::setsid();
                if ctty {
                    libc::ioctl(0, libc::TIOCSCTTY, 0);
                }
                Ok(())
            })
        };
        let child = cmd.spawn().expect("spawn the runtime");
        drop(cmd);
        Term {
            master,
            child,
            seen: String::new(),
        }
    }

    /// Reads until `want` has appeared (or 10 s passed); returns everything seen so far.
    fn read_until(&mut self, want: &str) -> &str {
        if !self.seen.contains(want) {
            let more = read_until(&self.master, want, SECS10);
            self.seen.push_str(&more);
        }
        &self.seen
    }

    fn write(&self, data: &[u8]) {
        nix::unistd::write(&self.master, data).unwrap();
    }

    /// The terminal's local modes (ICANON, ECHO, …) as the slave has them now.
    fn lflags(&self) -> nix::sys::termios::LocalFlags {
        nix::sys::termios::tcgetattr(&self.master)
            .unwrap()
            .local_flags
    }

    /// Waits (at most 30 s, then kills) for the command to exit; reads what is left.
    fn finish(&mut self) -> ExitStatus {
        let mut status = None;
        wait_until(Duration::from_secs(30), || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        let Some(status) = status else {
            let _ = self.child.kill();
            let _ = self.child.wait();
            panic!(
                "the runtime did not exit; its terminal showed {:?}",
                self.seen
            );
        };
        // The runtime has exited: nobody holds the slave, so this ends at EIO.
        let rest = read_until(&self.master, "\u{0}never", Duration::from_secs(2));
        self.seen.push_str(&rest);
        status
    }
}

/// A started container whose init sleeps, without a terminal of its own.
fn sleeping(rt: &Runtime, name: &str) -> (String, Bundle) {
    let b = Bundle::sh("sleep 1000");
    let id = unique_id(name);
    rt.create(&id, &b);
    rt.ok(&["start", &id]);
    (id, b)
}

/// `delete --force`, then nothing of the container may be left.
fn remove(rt: &Runtime, id: &str, b: &Bundle) {
    rt.ok(&["delete", "--force", id]);
    assert_nothing_left(rt, id, b);
}

/// `berth exec FLAGS… ID sh -c SCRIPT`.
fn exec_cmd(rt: &Runtime, flags: &[&str], id: &str, script: &str) -> Command {
    let mut c = rt.cmd();
    c.arg("exec").args(flags).arg(id).args(["sh", "-c", script]);
    c
}

// ───────────────────────────── 1. exec -t without --console-socket ─────────────────────────────

#[test]
fn exec_tty_relays_the_pty_on_berths_own_terminal() {
    let rt = Runtime::new();
    let (id, b) = sleeping(&rt, "xtty");
    let script = "stty -echo; tty; echo size=$(stty size); echo ready; read l; echo got:$l; \
                  i=0; while [ \"$(stty size)\" != '40 120' ] && [ $i -lt 100 ]; do \
                  sleep 0.05; i=$((i+1)); done; echo resized=$(stty size); exit 7";
    let mut t = Term::spawn(exec_cmd(&rt, &["-t"], &id, script), 33, 111);
    let cooked = t.lflags();
    let out = t.read_until("ready").to_string();
    assert!(out.contains("/dev/pts/"), "tty inside: {out:?}");
    assert!(
        out.contains("size=33 111"),
        "the pty has the size of Berth's terminal: {out:?}"
    );
    // While Berth relays, its own terminal is raw (so keys reach the process unchanged).
    assert!(
        !t.lflags().contains(nix::sys::termios::LocalFlags::ICANON),
        "Berth's terminal is not in raw mode"
    );
    t.write(b"typed\r");
    let out = t.read_until("got:typed").to_string();
    assert!(
        out.contains("got:typed"),
        "input reaches the process: {out:?}"
    );
    // A resize of Berth's terminal (SIGWINCH) reaches the container's pty.
    set_size(&t.master, 40, 120);
    let status = t.finish();
    assert!(
        t.seen.contains("resized=40 120"),
        "SIGWINCH resizes the pty: {:?}",
        t.seen
    );
    assert_eq!(
        status.code(),
        Some(7),
        "the process's exit status: {:?}",
        t.seen
    );
    assert_eq!(
        t.lflags(),
        cooked,
        "Berth's terminal is restored when it exits"
    );
    remove(&rt, &id, &b);
}

#[test]
fn exec_tty_with_stdin_not_a_terminal() {
    // runc takes the size (and raw mode) from the first of stderr, stdout, stdin that is a
    // terminal: here Berth's stdout and stderr are, its stdin is a pipe.
    let rt = Runtime::new();
    let (id, b) = sleeping(&rt, "xttypipe");
    let script = "tty; echo size=$(stty size); read l; echo got:$l; exit 3";
    let mut t = Term::spawn_piped(exec_cmd(&rt, &["-t"], &id, script), 20, 70, b"hello\n");
    let status = t.finish();
    assert!(t.seen.contains("/dev/pts/"), "{:?}", t.seen);
    assert!(t.seen.contains("size=20 70"), "{:?}", t.seen);
    assert!(
        t.seen.contains("got:hello"),
        "stdin is relayed: {:?}",
        t.seen
    );
    assert_eq!(status.code(), Some(3), "{:?}", t.seen);
    remove(&rt, &id, &b);
}

#[test]
fn exec_tty_without_any_terminal() {
    // No terminal at all (pipes, no controlling terminal): the pty keeps its default size and
    // the relay still copies stdin to it and it to stdout. (runc 1.1.5 fails here with "open
    // /dev/tty: no such device or address"; Berth relays, as its `run` does.)
    let rt = Runtime::new();
    let (id, b) = sleeping(&rt, "xttynone");
    let script = "tty; echo size=$(stty size 2>/dev/null); read l; echo got:$l; exit 4";
    let mut cmd = exec_cmd(&rt, &["-t"], &id, script);
    piped_stdin(&mut cmd, b"piped\n");
    new_session(&mut cmd);
    let o = output_timeout(cmd, Duration::from_secs(30));
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(4), "{out:?} {}", stderr(&o));
    assert!(out.contains("/dev/pts/"), "{out:?}");
    // The default size, 0x0 (for which busybox's `stty size` prints nothing).
    let size = out.lines().find_map(|l| l.strip_prefix("size="));
    assert!(
        matches!(size.map(str::trim), Some("" | "0 0")),
        "default size: {out:?}"
    );
    assert!(out.contains("got:piped\r\n"), "through the pty: {out:?}");
    remove(&rt, &id, &b);
}

#[test]
fn exec_detached_with_tty_still_needs_a_console_socket() {
    let rt = Runtime::new();
    let (id, b) = sleeping(&rt, "xttyd");
    let o = rt.berth(&["exec", "-d", "-t", &id, "true"]);
    assert_eq!(o.status.code(), Some(255));
    // runc: "cannot allocate tty if runc will detach without setting console socket".
    assert_one_error_line(&o, &["cannot allocate tty", "detach", "console"]);
    remove(&rt, &id, &b);
}

// ───────────────────────────── 2. the pty's owner ─────────────────────────────

/// The gid the default spec's /dev/pts mount gives every pty (`gid=5`, the tty group).
fn devpts_gid(b: &Bundle) -> String {
    b.config["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == "/dev/pts")
        .and_then(|m| m["options"].as_array())
        .and_then(|o| {
            o.iter()
                .filter_map(|v| v.as_str()?.strip_prefix("gid="))
                .next()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "0".into())
}

#[test]
fn exec_tty_belongs_to_the_exec_user() {
    // runc chowns the pty to the process's uid and keeps the gid devpts gave it (the mount's
    // gid= option): `1000:5` with the default spec.
    let rt = Runtime::new();
    let (id, b) = sleeping(&rt, "xttyown");
    let script = "echo owner=$(stat -c %u:%g $(tty)) id=$(id -u):$(id -g)";
    let mut t = Term::spawn(
        exec_cmd(&rt, &["-t", "--user", "1000:1000"], &id, script),
        24,
        80,
    );
    let status = t.finish();
    assert!(status.success(), "{:?}", t.seen);
    let want = format!("owner=1000:{} id=1000:1000", devpts_gid(&b));
    assert!(t.seen.contains(&want), "want {want:?}: {:?}", t.seen);
    remove(&rt, &id, &b);
}

/// Runs a terminal bundle (user 1000:1000) with `create --console-socket` + `start`; returns
/// what its terminal showed.
fn init_console_owner(edit: impl FnOnce(&mut serde_json::Value)) -> (String, Bundle) {
    let mut b = Bundle::sh(
        "echo tty=$(stat -c %u:%g $(tty)) console=$(stat -c %u:%g /dev/console) \
         id=$(id -u):$(id -g); echo end; sleep 1",
    );
    // (`sleep 1`: output written just before the pty's last slave closes can be lost to the
    // master's reader under load, which read "" once in a full CI run.)
    b.edit(|c| {
        c["process"]["terminal"] = json!(true);
        c["process"]["user"] = json!({"uid": 1000, "gid": 1000});
        edit(c);
    });
    (run_on_console_socket(&b, "ttyowner"), b)
}

/// `create --console-socket` + `start` of a bundle whose process ends by printing "end";
/// returns what its terminal showed, once the container is deleted and nothing is left.
fn run_on_console_socket(b: &Bundle, name: &str) -> String {
    let rt = Runtime::new();
    let id = unique_id(name);
    let sock = ConsoleSocket::new();
    rt.create_detached(&id, b, &["--console-socket", &sock.path_str()])
        .assert_ok();
    let (master, _) = sock.recv_master(SECS10);
    rt.ok(&["start", &id]);
    let out = read_until(&master, "end", SECS10);
    assert!(rt.wait_status(&id, "stopped", SECS10), "{out:?}");
    rt.ok(&["delete", &id]);
    assert_nothing_left(&rt, &id, b);
    out
}

#[test]
fn the_init_console_belongs_to_the_process_user() {
    let (out, b) = init_console_owner(|_| {});
    let g = devpts_gid(&b);
    assert_eq!(g, "5", "the default spec's devpts has gid=5");
    let want = format!("tty=1000:{g} console=1000:{g} id=1000:1000");
    assert!(out.contains(&want), "want {want:?}: {out:?}");
}

#[test]
fn without_a_devpts_gid_the_console_keeps_gid_0() {
    // Without gid=, devpts gives the pty the gid of whoever opened ptmx (the runtime, root);
    // runc changes the uid only.
    let (out, b) = init_console_owner(|c| {
        for m in c["mounts"].as_array_mut().unwrap() {
            if m["destination"] == "/dev/pts" {
                let o = m["options"].as_array_mut().unwrap();
                o.retain(|v| !v.as_str().unwrap().starts_with("gid="));
            }
        }
    });
    assert_eq!(devpts_gid(&b), "0");
    assert!(
        out.contains("tty=1000:0 console=1000:0 id=1000:1000"),
        "{out:?}"
    );
}
// ───────────────────────────── 3. CVE-2025-52565: the /dev/console target ─────────────────────────────

const VICTIM: &str = "host file, not to be touched\n";

/// A terminal bundle whose /out (a host directory) holds `victim`, a host file the attacks
/// aim the console at. The container, if it runs, reports what it sees at /out/victim and
/// /dev/console.
fn attack_bundle() -> Bundle {
    let mut b = sh(
        "echo victim=$(stat -c %F /out/victim) console=$(stat -c %F /dev/console); \
         grep -c ' /out/victim ' /proc/self/mountinfo; cat /out/victim; echo end",
    );
    b.edit(|c| c["process"]["terminal"] = json!(true));
    std::fs::write(b.out().join("victim"), VICTIM).unwrap();
    b
}

/// Without the config's /dev tmpfs the container uses the rootfs's own /dev.
fn without_dev_mount(b: &mut Bundle) {
    b.edit(|c| {
        c["mounts"]
            .as_array_mut()
            .unwrap()
            .retain(|m| m["destination"] != "/dev")
    });
}

/// Creates the container; asserts the host file is untouched and not mounted over, then that
/// the runtime refused with one line naming /dev/console, and that nothing is left.
fn assert_console_attack_fails(b: &Bundle, name: &str) {
    let rt = Runtime::new();
    let id = unique_id(name);
    let sock = ConsoleSocket::new();
    let d = rt.create_detached(&id, b, &["--console-socket", &sock.path_str()]);
    let victim = b.out().join("victim");
    let meta = std::fs::symlink_metadata(&victim).unwrap();
    assert!(meta.is_file(), "the host file is still a regular file");
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        VICTIM,
        "the runtime wrote to the host file through /dev/console"
    );
    if d.status.success() {
        // Then the console must not have landed on the host file: look from inside.
        let (master, _) = sock.recv_master(SECS10);
        rt.ok(&["start", &id]);
        let out = read_until(&master, "end", SECS10);
        rt.berth(&["delete", "--force", &id]);
        panic!("the runtime followed the /dev/console symlink; the container saw {out:?}");
    }
    assert_refused(&rt, &id, b, &d, "symlink");
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mi.contains(victim.to_str().unwrap()),
        "mounted over on the host"
    );
}

/// `create` failed with one line naming /dev/console and `what` it found there, and left
/// nothing behind.
fn assert_refused(rt: &Runtime, id: &str, b: &Bundle, d: &Detached, what: &str) {
    let err = d.stderr();
    assert!(!d.status.success(), "/dev/console as {what} is refused");
    assert_eq!(lines(&err).len(), 1, "one error line: {err}");
    assert!(err.contains("/dev/console"), "{err}");
    assert!(err.contains(what), "{err}");
    assert_nothing_left(rt, id, b);
}

#[test]
fn console_symlink_in_the_images_dev_is_refused() {
    // The image's /dev/console points at a path that, from inside the container, is the host
    // directory bound at /out.
    let mut b = attack_bundle();
    without_dev_mount(&mut b);
    std::os::unix::fs::symlink("/out/victim", b.rootfs().join("dev/console")).unwrap();
    assert_console_attack_fails(&b, "conabs");
}

#[test]
fn relative_console_symlink_is_refused() {
    // ../../out/victim from the rootfs's /dev is the host file both on the host
    // (bundle/rootfs/dev/../../out) and inside the container (/dev/../../out = /out).
    let mut b = attack_bundle();
    without_dev_mount(&mut b);
    std::os::unix::fs::symlink("../../out/victim", b.rootfs().join("dev/console")).unwrap();
    assert!(Path::new(&b.rootfs().join("dev/console")).exists());
    assert_console_attack_fails(&b, "conrel");
}

#[test]
fn console_swapped_for_a_symlink_during_setup_is_refused() {
    // The race: /dev (the config's tmpfs) is mounted, and before the console is set up
    // something swaps a symlink in at /dev/console. A createContainer hook runs exactly there
    // (in the container's mount namespace, after the mounts, before pivot_root).
    let mut b = attack_bundle();
    let target = b.rootfs().join("dev/console");
    b.edit(|c| {
        c["hooks"] = json!({"createContainer": [{
            "path": "/bin/sh",
            "args": ["sh", "-c", format!("ln -sf /out/victim {}", target.display())],
        }]})
    });
    assert_console_attack_fails(&b, "conrace");
}

#[test]
fn console_over_an_image_node_that_is_not_a_file_is_refused() {
    let mut b = attack_bundle();
    without_dev_mount(&mut b);
    nix::unistd::mkfifo(
        &b.rootfs().join("dev/console"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let rt = Runtime::new();
    let id = unique_id("confifo");
    let sock = ConsoleSocket::new();
    let d = rt.create_detached(&id, &b, &["--console-socket", &sock.path_str()]);
    assert_refused(&rt, &id, &b, &d, "fifo");
}

#[test]
fn console_over_an_image_regular_file_is_the_pty() {
    // The verified case: the image's /dev/console is a plain file; the pty is mounted on it.
    let mut b = attack_bundle();
    without_dev_mount(&mut b);
    std::fs::write(b.rootfs().join("dev/console"), "").unwrap();
    let out = run_on_console_socket(&b, "confile");
    assert!(
        out.contains("victim=regular file console=character special file"),
        "{out:?}"
    );
    assert!(out.contains(VICTIM.trim()), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(b.out().join("victim")).unwrap(),
        VICTIM
    );
}
