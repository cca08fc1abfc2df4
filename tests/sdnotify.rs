//! sd_notify: with $NOTIFY_SOCKET set, the container gets /run/notify/notify.sock, and `start`
//! / `run` relay its messages to the host socket, returning only once it reported READY=1.
//! The container side is a tiny static Rust program compiled by the test (busybox cannot
//! write to a unix datagram socket).

mod common;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;

const HELPER: &str = r#"
use std::os::unix::net::UnixDatagram;
fn main() {
    let mut args = std::env::args().skip(1);
    let delay: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    std::thread::sleep(std::time::Duration::from_millis(delay));
    let path = std::env::var("NOTIFY_SOCKET").expect("NOTIFY_SOCKET");
    let s = UnixDatagram::unbound().expect("socket");
    for m in args {
        if let Err(e) = s.send_to(m.as_bytes(), &path) { eprintln!("send: {e}"); }
    }
    std::thread::sleep(std::time::Duration::from_secs(1000));
}
"#;

/// The helper, compiled once per test process (static, so it runs in a busybox rootfs).
fn helper() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sdnotify-helper");
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("helper.rs");
        std::fs::write(&src, HELPER).unwrap();
        let bin = dir.join(format!("helper-{}", std::process::id()));
        let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
        let o = std::process::Command::new(rustc)
            .args([
                "--edition",
                "2021",
                "-C",
                "opt-level=1",
                "-C",
                "strip=symbols",
            ])
            .args([
                "-C",
                "target-feature=+crt-static",
                "--target",
                "x86_64-unknown-linux-gnu",
            ])
            .arg("-o")
            .arg(&bin)
            .arg(&src)
            .output()
            .expect("run rustc");
        assert!(o.status.success(), "rustc: {}", stderr(&o));
        bin
    })
}

/// A bundle whose process is the helper: after `delay_ms`, one datagram per message.
fn notifying_bundle(delay_ms: u64, msgs: &[&str]) -> Bundle {
    let mut b = Bundle::busybox();
    std::fs::copy(helper(), b.rootfs().join("bin/notify-helper")).unwrap();
    let mut args = vec!["/bin/notify-helper".to_string(), delay_ms.to_string()];
    args.extend(msgs.iter().map(|m| m.to_string()));
    b.edit(|c| c["process"]["args"] = serde_json::json!(args));
    b
}

/// The host side: a datagram socket standing for systemd's. Each message received is kept
/// with the time it arrived and the fds it carried (the barrier's pipe is closed at once).
struct Host {
    sock: UnixDatagram,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let sock = UnixDatagram::bind(&path).unwrap();
        Host {
            sock,
            path,
            _dir: dir,
        }
    }

    /// Receives `n` messages on a thread, as systemd would while Berth waits (the barrier's
    /// fd is closed as soon as it arrives).
    fn collect(&self, n: usize) -> std::thread::JoinHandle<Vec<(String, usize, Instant)>> {
        let me = Host {
            sock: self.sock.try_clone().unwrap(),
            path: self.path.clone(),
            _dir: tempfile::tempdir().unwrap(),
        };
        std::thread::spawn(move || {
            (0..n)
                .map_while(|_| me.recv(Duration::from_secs(10)))
                .collect()
        })
    }

    fn env(&self) -> (&str, &str) {
        ("NOTIFY_SOCKET", self.path.to_str().unwrap())
    }

    /// The next message within `timeout`: (text, number of fds, when).
    fn recv(&self, timeout: Duration) -> Option<(String, usize, Instant)> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        self.sock.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = [0u8; 4096];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 4]);
        let msg = recvmsg::<()>(
            self.sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .ok()?;
        let mut fds = Vec::new();
        for c in msg.cmsgs().unwrap() {
            if let ControlMessageOwned::ScmRights(f) = c {
                // SAFETY: fds just received, ours to close.
                fds.extend(f.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
            }
        }
        let n = msg.bytes;
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        Some((text, fds.len(), Instant::now()))
    }
}

#[test]
fn create_start_relays_ready_with_mainpid_and_start_waits_for_it() {
    let rt = Runtime::new();
    let host = Host::new();
    let b = notifying_bundle(1500, &["STATUS=starting", "MAINPID=1\nREADY=1\nSTATUS=up"]);
    let id = unique_id("sdn-start");
    rt.track(&id);
    let (k, v) = host.env();
    let o = capture(
        rt.cmd()
            .env(k, v)
            .args(["create", "--bundle", b.path_str(), &id]),
    );
    assert!(o.status.success(), "create: {}", stderr(&o));
    let notify_dir = rt.root.path().join(&id).join("notify");
    assert!(notify_dir.is_dir(), "no notify directory in the state dir");
    let pid = rt.pid(&id);
    let rx = host.collect(4);
    let t0 = Instant::now();
    let o = capture(rt.cmd().env(k, v).args(["start", &id]));
    let returned = Instant::now();
    assert!(o.status.success(), "start: {}", stderr(&o));
    assert!(
        returned - t0 >= Duration::from_millis(1400),
        "start returned after {:?}, before the container was ready",
        returned - t0
    );
    assert!(
        returned - t0 < Duration::from_secs(10),
        "start waited for the barrier's timeout"
    );
    let got = rx.join().unwrap();
    let texts: Vec<&str> = got.iter().map(|m| m.0.as_str()).collect();
    assert_eq!(
        texts,
        [
            "STATUS=starting\n",
            "READY=1\nSTATUS=up\n",
            &format!("MAINPID={pid}\n"),
            "BARRIER=1"
        ]
    );
    assert_eq!(got[3].1, 1, "the barrier carries one fd");
    assert!(got[1].2 <= returned, "READY arrived after start returned");
    // Inside: the socket, on runc's path, a read-only bind mount of the state dir's notify/.
    let o = rt.berth(&["exec", &id, "sh", "-c", "cat /proc/1/environ | tr '\\0' '\\n'; grep ' /run/notify ' /proc/self/mountinfo; ls -l /run/notify"]);
    let out = stdout(&o);
    assert!(
        out.contains("NOTIFY_SOCKET=/run/notify/notify.sock"),
        "{out}"
    );
    let mnt = out
        .lines()
        .find(|l| l.contains(" /run/notify "))
        .expect(&out);
    assert!(
        mnt.contains(" ro,") && mnt.contains("nosuid") && mnt.contains("noexec"),
        "{mnt}"
    );
    assert!(
        out.contains("srwxrwxrwx") && out.contains("notify.sock"),
        "{out}"
    );
    rt.ok(&["delete", "--force", &id]);
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn run_detached_waits_for_ready_and_names_the_init() {
    let rt = Runtime::new();
    let host = Host::new();
    let b = notifying_bundle(1000, &["READY=1"]);
    let id = unique_id("sdn-rund");
    rt.track(&id);
    let (k, v) = host.env();
    let rx = host.collect(3);
    let t0 = Instant::now();
    let o = capture(
        rt.cmd()
            .env(k, v)
            .args(["run", "-d", "--bundle", b.path_str(), &id]),
    );
    assert!(o.status.success(), "run -d: {}", stderr(&o));
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "returned before READY: {took:?}"
    );
    assert!(
        took < Duration::from_secs(10),
        "waited for the barrier's timeout"
    );
    let pid = rt.pid(&id);
    let got: Vec<String> = rx.join().unwrap().into_iter().map(|m| m.0).collect();
    assert_eq!(got, ["READY=1\n", &format!("MAINPID={pid}\n"), "BARRIER=1"]);
    rt.ok(&["delete", "--force", &id]);
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn foreground_run_names_itself_as_mainpid() {
    let rt = Runtime::new();
    let host = Host::new();
    let b = notifying_bundle(300, &["READY=1"]);
    let id = unique_id("sdn-runf");
    rt.track(&id);
    let (k, v) = host.env();
    let mut child = rt
        .cmd()
        .env(k, v)
        .args(["run", "--bundle", b.path_str(), &id])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let got = host.collect(3).join().unwrap();
    let r = got.first().cloned();
    let m = got.get(1).cloned();
    // The helper sleeps: end it, and `run` with it.
    assert!(wait_until(SECS5, || rt
        .berth(&["state", &id])
        .status
        .success()));
    rt.ok(&["kill", &id, "KILL"]);
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(137));
    assert_eq!(r.map(|r| r.0).as_deref(), Some("READY=1\n"));
    assert_eq!(m.map(|m| m.0), Some(format!("MAINPID={}\n", child.id())));
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn start_returns_when_the_init_exits_before_ready() {
    let rt = Runtime::new();
    let host = Host::new();
    let b = Bundle::sh("sleep 0.3");
    let id = unique_id("sdn-exit");
    rt.track(&id);
    let (k, v) = host.env();
    let o = capture(
        rt.cmd()
            .env(k, v)
            .args(["create", "--bundle", b.path_str(), &id]),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = capture(rt.cmd().env(k, v).args(["start", &id]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        host.recv(Duration::from_millis(200)).is_none(),
        "nothing to relay"
    );
    rt.ok(&["delete", "--force", &id]);
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn unreachable_host_socket_and_missing_notify_dir_are_errors_before_start() {
    let rt = Runtime::new();
    let b = Bundle::sh("sleep 100");
    // Created without NOTIFY_SOCKET, started with it: refused, still created.
    let id = unique_id("sdn-nodir");
    rt.track(&id);
    let o = capture(rt.cmd().env_remove("NOTIFY_SOCKET").args([
        "create",
        "--bundle",
        b.path_str(),
        &id,
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let host = Host::new();
    let (k, v) = host.env();
    let o = capture(rt.cmd().env(k, v).args(["start", &id]));
    assert_one_error_line(&o, &["NOTIFY_SOCKET", "created without NOTIFY_SOCKET"]);
    assert_eq!(rt.status(&id), "created");
    rt.ok(&["delete", "--force", &id]);
    // A host socket nobody listens on: start fails while the container is still created.
    let id = unique_id("sdn-nohost");
    rt.track(&id);
    let gone = "/nonexistent/berth-sdnotify.sock";
    let o = capture(rt.cmd().env("NOTIFY_SOCKET", gone).args([
        "create",
        "--bundle",
        b.path_str(),
        &id,
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = capture(rt.cmd().env("NOTIFY_SOCKET", gone).args(["start", &id]));
    assert_one_error_line(&o, &[&format!("NOTIFY_SOCKET {gone}: connect")]);
    assert_eq!(rt.status(&id), "created");
    rt.ok(&["delete", "--force", &id]);
    // `run`: the same error, and nothing left.
    let id = unique_id("sdn-norun");
    let o = capture(rt.cmd().env("NOTIFY_SOCKET", gone).args([
        "run",
        "-d",
        "--bundle",
        b.path_str(),
        &id,
    ]));
    assert_one_error_line(&o, &[&format!("NOTIFY_SOCKET {gone}: connect")]);
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn without_notify_socket_the_container_gets_nothing() {
    let rt = Runtime::new();
    let b =
        Bundle::sh("echo env:${NOTIFY_SOCKET:-none}; test -e /run/notify && echo mounted; true");
    let id = unique_id("sdn-none");
    let o =
        capture(
            rt.cmd()
                .env_remove("NOTIFY_SOCKET")
                .args(["run", "--bundle", b.path_str(), &id]),
        );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "env:none\n");
}
