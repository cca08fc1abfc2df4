//! SCMP_ACT_NOTIFY end to end, against a seccomp agent written here: a unix-socket listener
//! that receives the container process state and the notify fd (SCM_RIGHTS), then answers
//! every notified system call (mkdir/mkdirat with a made-up success, anything else with
//! "continue"), so the container's output proves the agent handled its calls.
//!
//! As with runc, the fd reaches the agent during `create` (the filter is loaded there), for an
//! `exec` too, and the message is the runtime spec's "container process state" in runc's
//! layout. Run with BERTH_TEST_RUNTIME=/usr/sbin/runc to see runc pass all but the two tests
//! with NOTIFY on `write`, which runc 1.1 refuses ("SCMP_ACT_NOTIFY cannot be used for the
//! write syscall"): Berth hands the fd over without a system call the filter traps.

mod common;
use common::*;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

/// What the agent got on one connection.
struct Received {
    /// The message as sent (to check the field order).
    raw: String,
    json: Value,
    /// How many fds came with it.
    fds: usize,
}

/// A seccomp agent listening at `path` for as long as the test runs.
struct Agent {
    _dir: tempfile::TempDir,
    path: PathBuf,
    conns: mpsc::Receiver<Received>,
    /// The system call numbers notified to the agent, over all its fds.
    seen: Arc<Mutex<Vec<i32>>>,
}

const SECCOMP_IOCTL_NOTIF_RECV: libc::c_ulong = 0xc050_2100; // struct seccomp_notif: 80 bytes
const SECCOMP_IOCTL_NOTIF_SEND: libc::c_ulong = 0xc018_2101; // seccomp_notif_resp: 24 bytes
const SECCOMP_USER_NOTIF_FLAG_CONTINUE: u64 = 1;

impl Agent {
    fn start() -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let (tx, conns) = mpsc::channel();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        // Ends with the test process (blocked in accept).
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (received, fds) = receive(conn);
                for fd in fds {
                    let seen = seen2.clone();
                    std::thread::spawn(move || answer(fd, &seen));
                }
                if tx.send(received).is_err() {
                    return;
                }
            }
        });
        Agent {
            _dir: dir,
            path,
            conns,
            seen,
        }
    }

    /// The next connection's message, waiting up to `timeout`.
    fn next(&self, timeout: Duration) -> Option<Received> {
        self.conns.recv_timeout(timeout).ok()
    }

    fn saw(&self, nr: i64) -> bool {
        self.seen.lock().unwrap().iter().any(|&n| n as i64 == nr)
    }

    /// A profile that lets everything through but sends `names` to this agent.
    fn profile(&self, names: &[&str]) -> Value {
        json!({"defaultAction": "SCMP_ACT_ALLOW",
               "listenerPath": self.path, "listenerMetadata": "meta-1",
               "syscalls": [{"names": names, "action": "SCMP_ACT_NOTIFY"}]})
    }
}

/// One connection: a recvmsg with room for fds, then the rest until the runtime closes it.
fn receive(conn: std::os::unix::net::UnixStream) -> (Received, Vec<OwnedFd>) {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::io::{IoSliceMut, Read};
    let mut buf = vec![0u8; 64 * 1024];
    let mut cmsg = nix::cmsg_space!([RawFd; 4]);
    let (n, fds) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .unwrap();
        let mut fds = Vec::new();
        for c in msg.cmsgs().unwrap() {
            if let ControlMessageOwned::ScmRights(v) = c {
                // SAFETY: SCM_RIGHTS just installed these fds in this process; nobody else
                // owns them.
                fds.extend(v.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
            }
        }
        (msg.bytes, fds)
    };
    let mut raw = buf[..n].to_vec();
    let mut conn = conn;
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = conn.read_to_end(&mut raw);
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let json = serde_json::from_str(&raw).unwrap_or(Value::Null);
    let fds_n = fds.len();
    (
        Received {
            raw,
            json,
            fds: fds_n,
        },
        fds,
    )
}

/// Answers notifications on `fd` until no process uses the filter any more.
fn answer(fd: OwnedFd, seen: &Mutex<Vec<i32>>) {
    loop {
        // struct seccomp_notif: id, pid, flags, data { nr, arch, ip, args[6] }; zeroed, as
        // the kernel insists.
        let mut req = [0u64; 10];
        // SAFETY: RECV fills a seccomp_notif, which `req` is large enough to hold.
        if unsafe { libc::ioctl(fd.as_raw_fd(), SECCOMP_IOCTL_NOTIF_RECV, req.as_mut_ptr()) } != 0 {
            return;
        }
        let nr = (req[2] & 0xffff_ffff) as u32 as i32;
        seen.lock().unwrap().push(nr);
        // struct seccomp_notif_resp: id, val, error (i32), flags (u32).
        let resp: [u64; 3] = if nr as i64 == libc::SYS_mkdir || nr as i64 == libc::SYS_mkdirat {
            [req[0], 0, 0] // "done", without doing it
        } else {
            [req[0], 0, SECCOMP_USER_NOTIF_FLAG_CONTINUE << 32]
        };
        // SAFETY: SEND reads a seccomp_notif_resp from `resp`.
        unsafe { libc::ioctl(fd.as_raw_fd(), SECCOMP_IOCTL_NOTIF_SEND, resp.as_ptr()) };
    }
}

/// The script whose output shows that the agent, not the kernel, answered mkdir.
const MKDIR: &str = "mkdir /made-up; echo made=$?; test -d /made-up && echo exists || echo absent";

fn bundle(script: &str, seccomp: Value, nnp: bool) -> Bundle {
    let mut b = sh(script);
    b.edit(|c| {
        c["linux"]["seccomp"] = seccomp;
        c["process"]["noNewPrivileges"] = json!(nnp);
        c["annotations"] = json!({"berth.test/notify": "yes"});
    });
    b
}

/// Positions of `keys` (their first occurrence as `"key":`) in `raw`, which must be ascending.
fn assert_key_order(raw: &str, keys: &[&str]) {
    let pos: Vec<usize> = keys
        .iter()
        .map(|k| {
            raw.find(&format!("\"{k}\":"))
                .unwrap_or_else(|| panic!("no {k} in {raw}"))
        })
        .collect();
    assert!(
        pos.windows(2).all(|w| w[0] < w[1]),
        "fields must come in the order {keys:?}: {raw}"
    );
}

/// The container process state, checked field by field against what runc 1.1 sends.
fn check_process_state(r: &Received, id: &str, b: &Bundle, status: &str) {
    assert_eq!(r.fds, 1, "one fd attached: {}", r.raw);
    let v = &r.json;
    assert_key_order(&r.raw, &["ociVersion", "fds", "pid", "metadata", "state"]);
    let state_at = r.raw.find("\"state\":").unwrap();
    assert_key_order(
        &r.raw[state_at..],
        &["ociVersion", "id", "status", "pid", "bundle", "annotations"],
    );
    assert!(v["ociVersion"].is_string(), "{}", r.raw);
    assert_eq!(v["fds"], json!(["seccompFd"]));
    assert!(v["pid"].as_i64().unwrap_or(0) > 0, "{}", r.raw);
    assert_eq!(v["metadata"], "meta-1");
    let s = &v["state"];
    assert_eq!(s["ociVersion"], v["ociVersion"]);
    assert_eq!(s["id"], id);
    assert_eq!(s["status"], status);
    assert!(s["pid"].as_i64().unwrap_or(0) > 0, "{}", r.raw);
    assert_eq!(
        s["bundle"].as_str().map(PathBuf::from),
        Some(b.path().canonicalize().unwrap())
    );
    assert_eq!(s["annotations"], json!({"berth.test/notify": "yes"}));
    assert_eq!(s.as_object().unwrap().len(), 6, "runc's fields only: {s}");
    assert_eq!(v.as_object().unwrap().len(), 5, "runc's fields only: {v}");
}

#[test]
fn the_agent_gets_the_fd_during_create_and_answers_the_containers_calls() {
    for nnp in [true, false] {
        let agent = Agent::start();
        let rt = Runtime::new();
        let b = bundle(
            &format!("({MKDIR}) > /out/log 2>&1"),
            agent.profile(&["mkdir", "mkdirat"]),
            nnp,
        );
        let id = unique_id(&format!("nfy-create-{nnp}"));
        create_then_start(&agent, &rt, &b, &id, &format!("nnp={nnp}"));
        assert!(agent.saw(libc::SYS_mkdir) || agent.saw(libc::SYS_mkdirat));
        assert!(agent.next(Duration::ZERO).is_none(), "one connection only");
    }
}

/// `create` (by whose end the agent must have the fd: an agent may wait for it before it lets
/// anything go on), the process state checked, then `start`; the container's log shows that
/// the agent answered its mkdir.
fn create_then_start(agent: &Agent, rt: &Runtime, b: &Bundle, id: &str, what: &str) {
    rt.create(id, b);
    let r = agent
        .next(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("{what}: no fd reached the agent during create"));
    check_process_state(&r, id, b, "creating");
    assert_eq!(r.json["pid"], rt.pid(id), "the init's pid");
    assert_eq!(r.json["state"]["pid"], rt.pid(id));
    rt.ok(&["start", id]);
    assert!(rt.wait_status(id, "stopped", Duration::from_secs(10)));
    assert_eq!(b.read_out("log"), "made=0\nabsent\n", "{what}");
    rt.ok(&["delete", id]);
}

#[test]
fn run_hands_the_fd_over_and_the_container_runs() {
    let agent = Agent::start();
    let rt = Runtime::new();
    let b = bundle(MKDIR, agent.profile(&["mkdir", "mkdirat"]), true);
    let id = unique_id("nfy-run");
    let o = rt.run_timeout(&id, &b, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "made=0\nabsent\n");
    let r = agent
        .next(Duration::from_secs(5))
        .expect("the agent got the fd");
    check_process_state(&r, &id, &b, "creating");
    assert_eq!(r.json["pid"], r.json["state"]["pid"]);
}

/// NOTIFY on `write` and on the other calls Berth makes after loading the filter (runc 1.1
/// refuses `write`): the fd goes over a call the filter lets through, and the agent, which
/// has it by then, answers the rest.
#[test]
fn notify_on_write_and_the_runtimes_own_calls_works() {
    let own = [
        "write",
        "read",
        "close",
        "fcntl",
        "prctl",
        "capset",
        "setresuid",
        "setresgid",
        "setgroups",
        "accept4",
        "recvfrom",
        "shutdown",
        "execve",
        "mkdir",
        "mkdirat",
    ];
    for (names, how) in [
        (&["write"][..], "create"),
        (&own[..], "create"),
        (&own[..], "run"),
    ] {
        for nnp in [true, false] {
            let what = format!("{names:?} {how} nnp={nnp}");
            let agent = Agent::start();
            let rt = Runtime::new();
            let b = bundle(&format!("({MKDIR}) > /out/log"), agent.profile(names), nnp);
            let id = unique_id(&format!("nfy-own-{}-{how}-{nnp}", names.len()));
            if how == "create" {
                let d = rt.create_detached(&id, &b, &[]);
                assert!(d.status.success(), "{what}: {}", d.stderr());
                rt.ok(&["start", &id]);
                assert!(rt.wait_status(&id, "stopped", Duration::from_secs(10)));
            } else {
                let o = rt.run_timeout(&id, &b, &[]);
                assert!(o.status.success(), "{what}: {}", stderr(&o));
            }
            let r = agent
                .next(Duration::from_secs(5))
                .expect("the agent got the fd");
            assert_eq!(r.fds, 1, "{what}");
            // Written through the agent (it let each write go on).
            assert!(agent.saw(libc::SYS_write), "{what}: no write notified");
            let want = if names.len() > 1 {
                "made=0\nabsent\n"
            } else {
                "made=1\nabsent\n"
            };
            assert_eq!(b.read_out("log"), want, "{what}");
            let _ = rt.berth(&["delete", "--force", &id]);
        }
    }
}

#[test]
fn a_missing_agent_fails_create_with_one_error_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rt = Runtime::new();
    let b = bundle(
        "true",
        json!({"defaultAction": "SCMP_ACT_ALLOW",
               "listenerPath": dir.path().join("nobody.sock"),
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]}),
        true,
    );
    let id = unique_id("nfy-missing");
    rt.track(&id);
    let o = rt.berth(&["create", "--bundle", b.path_str(), &id]);
    // runc: "failed to connect with seccomp agent specified in the seccomp profile: dial unix
    // …: connect: no such file or directory".
    let err = stderr(&o);
    assert!(!o.status.success(), "create must fail: {err}");
    assert!(
        err.contains("failed to connect with seccomp agent"),
        "runc's phrase: {err}"
    );
    if !err.contains("level=error") {
        // Berth's own line names the field (runc's is a logrus line).
        assert_one_error_line(&o, &["linux.seccomp.listenerPath", "nobody.sock"]);
    }
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn exec_hands_its_own_fd_with_its_pid() {
    let agent = Agent::start();
    let rt = Runtime::new();
    let b = bundle("sleep 100", agent.profile(&["mkdir", "mkdirat"]), false);
    let id = unique_id("nfy-exec");
    let d = rt.detached(
        &["run", "-d", "--bundle", b.path_str(), &id],
        b.path(),
        "run",
    );
    assert!(d.status.success(), "{}", d.stderr());
    let first = agent.next(Duration::from_secs(5)).expect("the init's fd");
    let init = rt.pid(&id);
    assert_eq!(first.json["pid"], init);
    let pid_file = b.path().join("exec.pid");
    let o = rt.berth(&[
        "exec",
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
        "sh",
        "-c",
        MKDIR,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "made=0\nabsent\n", "{}", stderr(&o));
    let r = agent.next(Duration::from_secs(5)).expect("the exec's fd");
    check_process_state(&r, &id, &b, "running");
    let exec_pid: i64 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(r.json["pid"], exec_pid, "the exec'd process's pid");
    assert_eq!(r.json["state"]["pid"], init, "the container's init");
    rt.ok(&["delete", "--force", &id]);
}

/// A filter that sends sendmsg to the agent: the fd goes over by number (write), the parent
/// takes it with pidfd_getfd while the init waits (read) for the word that it has.
#[test]
fn notify_on_sendmsg_hands_the_fd_over_by_number() {
    for nnp in [true, false] {
        let agent = Agent::start();
        let rt = Runtime::new();
        let b = bundle(
            &format!("({MKDIR}) > /out/log"),
            agent.profile(&["sendmsg", "read", "mkdir", "mkdirat"]),
            nnp,
        );
        let id = unique_id(&format!("nfy-bynum-{nnp}"));
        create_then_start(&agent, &rt, &b, &id, &format!("nnp={nnp}"));
    }
}

/// Neither sendmsg nor write would get the fd out without the agent, which does not have it
/// yet: one error naming linux.seccomp before anything runs, nothing left.
#[test]
fn a_profile_that_traps_every_way_out_is_refused() {
    let agent = Agent::start();
    let rt = Runtime::new();
    let b = bundle("true", agent.profile(&["sendmsg", "write"]), true);
    let id = unique_id("nfy-noway");
    rt.track(&id);
    let o = rt.berth(&["create", "--bundle", b.path_str(), &id]);
    assert_one_error_line(&o, &["linux.seccomp", "sendmsg", "write"]);
    assert_nothing_left(&rt, &id, &b);
    assert!(agent.next(Duration::ZERO).is_none());
}
