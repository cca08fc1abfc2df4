//! SCMP_ACT_NOTIFY end to end: a forked child loads a filter that sends mkdir/mkdirat to an
//! agent; the test (playing the runtime) takes the notify fd from the child with pidfd_getfd
//! and hands it to an in-test agent thread with `send_listener`; the agent answers the child's
//! syscalls through SECCOMP_IOCTL_NOTIF_RECV/SEND.

mod common;

use std::io::Read;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;

use std::thread;
use std::time::{Duration, Instant};

use berth_seccomp::{compile, send_listener};
use common::{cstr, errno, profile, spawn_child, sys, wait, Outcome, TempDir};

#[repr(C)]
#[derive(Clone, Copy)]
struct SeccompData {
    nr: i32,
    arch: u32,
    instruction_pointer: u64,
    args: [u64; 6],
}

#[repr(C)]
struct SeccompNotif {
    id: u64,
    pid: u32,
    flags: u32,
    data: SeccompData,
}

#[repr(C)]
struct SeccompNotifResp {
    id: u64,
    val: i64,
    error: i32,
    flags: u32,
}

// _IOWR('!', 0, struct seccomp_notif) and _IOWR('!', 1, struct seccomp_notif_resp).
const NOTIF_RECV: libc::c_ulong =
    0xc000_0000 | ((size_of::<SeccompNotif>() as libc::c_ulong) << 16) | 0x2100;
const NOTIF_SEND: libc::c_ulong =
    0xc000_0000 | ((size_of::<SeccompNotifResp>() as libc::c_ulong) << 16) | 0x2101;

/// What the agent saw.
#[derive(Debug)]
struct Report {
    state: serde_json::Value,
    /// (pid, syscall nr) of each notification.
    calls: Vec<(u32, i32)>,
}

const METADATA: &str = "agent-metadata-42";

#[test]
fn notify_agent_answers_the_childs_mkdir() {
    let dir = TempDir::new("notify");
    let sock_path = dir.path().join("agent.sock");
    let listener = UnixListener::bind(&sock_path).unwrap();

    let c = compile(&profile(&format!(
        r#"{{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":{sock:?},"listenerMetadata":"{METADATA}",
            "syscalls":[{{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_NOTIFY"}}]}}"#,
        sock = sock_path.to_str().unwrap()
    )))
    .unwrap();
    assert!(c.uses_notify());

    let faked = cstr(&dir.path().join("faked"));
    let refused = cstr(&dir.path().join("refused"));
    let (to_parent_r, to_parent_w) = pipe();
    let (to_child_r, to_child_w) = pipe();

    let pid = spawn_child(|| {
        if !common::no_new_privs() {
            return 90;
        }
        let fd = match c.load() {
            Ok(Some(fd)) => fd,
            _ => return 91,
        };
        // The notify fd is close-on-exec.
        // SAFETY: F_GETFD on an fd we own.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) } & libc::FD_CLOEXEC == 0 {
            return 92;
        }
        // Tell the "runtime" the fd number (write is never notified), and wait until it has
        // its copy; then drop ours, so that an agent that goes away can't leave us hanging.
        let raw = fd.as_raw_fd().to_ne_bytes();
        if sys(
            libc::SYS_write,
            [
                to_parent_w.as_raw_fd() as u64,
                raw.as_ptr() as u64,
                4,
                0,
                0,
                0,
            ],
        ) != Ok(4)
        {
            return 93;
        }
        let mut ack = [0u8; 1];
        if sys(
            libc::SYS_read,
            [
                to_child_r.as_raw_fd() as u64,
                ack.as_mut_ptr() as u64,
                1,
                0,
                0,
                0,
            ],
        ) != Ok(1)
        {
            return 94;
        }
        drop(fd);
        let at = libc::AT_FDCWD as i64 as u64;
        // The agent fakes success: 0, and nothing was created.
        if sys(
            libc::SYS_mkdirat,
            [at, faked.as_ptr() as u64, 0o700, 0, 0, 0],
        ) != Ok(0)
        {
            return 1;
        }
        if sys(
            libc::SYS_faccessat,
            [at, faked.as_ptr() as u64, libc::F_OK as u64, 0, 0, 0],
        ) != Err(libc::ENOENT)
        {
            return 2;
        }
        // The agent refuses with a specific errno.
        if sys(
            libc::SYS_mkdirat,
            [at, refused.as_ptr() as u64, 0o700, 0, 0, 0],
        ) != Err(libc::EOPNOTSUPP)
        {
            return 3;
        }
        0
    });
    drop(to_parent_w);
    drop(to_child_r);

    let agent = thread::spawn(move || agent(listener));

    // Playing the runtime: fetch the child's notify fd and send it to the agent.
    let mut num = [0u8; 4];
    (&std::fs::File::from(to_parent_r))
        .read_exact(&mut num)
        .expect("child reports its notify fd");
    let child_fd = i32::from_ne_bytes(num);
    let notify_fd = pidfd_getfd(pid, child_fd);
    let state = serde_json::json!({
        "ociVersion": "1.2.0", "id": "ctr-1", "status": "creating", "pid": pid,
        "bundle": "/bundles/ctr-1", "annotations": {"k": "v"}
    });
    send_listener(
        &sock_path,
        Some(METADATA),
        notify_fd.as_fd(),
        pid,
        &serde_json::to_vec(&state).unwrap(),
    )
    .unwrap();
    drop(notify_fd);
    let one = [1u8];
    // SAFETY: writes one byte from a live buffer to our pipe.
    assert_eq!(
        unsafe { libc::write(to_child_w.as_raw_fd(), one.as_ptr().cast(), 1) },
        1
    );

    let outcome = wait(pid);
    let report = agent.join().unwrap().unwrap();
    assert_eq!(outcome, Outcome::Exited(0));

    assert_eq!(report.state["ociVersion"], "1.2.0");
    assert_eq!(report.state["fds"], serde_json::json!(["seccompFd"]));
    assert_eq!(report.state["pid"], pid);
    assert_eq!(report.state["metadata"], METADATA);
    assert_eq!(report.state["state"], state);
    assert_eq!(
        report.calls,
        vec![
            (pid as u32, libc::SYS_mkdirat as i32),
            (pid as u32, libc::SYS_mkdirat as i32)
        ]
    );
    assert!(!dir.path().join("faked").exists());
    assert!(!dir.path().join("refused").exists());
}

#[test]
fn send_listener_errors_name_the_listener_path() {
    let dir = TempDir::new("nolistener");
    let missing = dir.path().join("nobody-listens.sock");
    let (r, _w) = pipe();
    let e = send_listener(&missing, None, r.as_fd(), 1, br#"{"pid":1}"#).unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("linux.seccomp.listenerPath: "), "{msg}");
    assert!(
        msg.contains("failed to connect with seccomp agent"),
        "{msg}"
    );
}

/// The agent: accept one connection, take the state and the fd, answer two notifications
/// (first a fake success, then EOPNOTSUPP).
fn agent(listener: UnixListener) -> Result<Report, String> {
    let (conn, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
    let (payload, fd) = recv_with_fd(conn.as_fd())?;
    let mut rest = Vec::new();
    (&conn)
        .read_to_end(&mut rest)
        .map_err(|e| format!("read: {e}"))?;
    let mut all = payload;
    all.extend_from_slice(&rest);
    let state: serde_json::Value =
        serde_json::from_slice(&all).map_err(|e| format!("state JSON: {e}"))?;

    let mut calls = Vec::new();
    for answer in [(0i64, 0i32), (0, -libc::EOPNOTSUPP)] {
        wait_readable(fd.as_fd())?;
        // SAFETY: the kernel wants a zeroed struct; all-zero is valid for it.
        let mut req: SeccompNotif = unsafe { zeroed() };
        // SAFETY: NOTIF_RECV fills `req`, which is live and of the size the number encodes.
        if unsafe { libc::ioctl(fd.as_raw_fd(), NOTIF_RECV, &mut req) } != 0 {
            return Err(format!("NOTIF_RECV: errno {}", errno()));
        }
        calls.push((req.pid, req.data.nr));
        let resp = SeccompNotifResp {
            id: req.id,
            val: answer.0,
            error: answer.1,
            flags: 0,
        };
        // SAFETY: NOTIF_SEND reads `resp`, which is live and of the encoded size.
        if unsafe { libc::ioctl(fd.as_raw_fd(), NOTIF_SEND, &resp) } != 0 {
            return Err(format!("NOTIF_SEND: errno {}", errno()));
        }
    }
    Ok(Report { state, calls })
}

fn wait_readable(fd: BorrowedFd<'_>) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one live pollfd.
        let r = unsafe { libc::poll(&mut p, 1, 100) };
        if r > 0 {
            if p.revents & libc::POLLIN != 0 {
                return Ok(());
            }
            return Err(format!("notify fd: revents {:#x}", p.revents));
        }
    }
    Err("no notification within 20 s".into())
}

fn recv_with_fd(sock: BorrowedFd<'_>) -> Result<(Vec<u8>, OwnedFd), String> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is valid.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of::<[u64; 8]>() as _;
    // SAFETY: every pointer in `msg` refers to live buffers of the stated sizes.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(format!("recvmsg: errno {}", errno()));
    }
    // SAFETY: the kernel filled msg_control; CMSG_FIRSTHDR/CMSG_DATA stay within it.
    let fd = unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null()
            || (*cmsg).cmsg_level != libc::SOL_SOCKET
            || (*cmsg).cmsg_type != libc::SCM_RIGHTS
        {
            return Err("no SCM_RIGHTS in the first message".into());
        }
        let raw = libc::CMSG_DATA(cmsg).cast::<libc::c_int>().read_unaligned();
        OwnedFd::from_raw_fd(raw)
    };
    buf.truncate(n as usize);
    Ok((buf, fd))
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds that we then own.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: just created, owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn pidfd_getfd(pid: libc::pid_t, fd: i32) -> OwnedFd {
    let pidfd = sys(libc::SYS_pidfd_open, [pid as u64, 0, 0, 0, 0, 0]).expect("pidfd_open");
    // SAFETY: pidfd_open returned a new fd.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
    let got = sys(
        libc::SYS_pidfd_getfd,
        [pidfd.as_raw_fd() as u64, fd as u64, 0, 0, 0, 0],
    )
    .expect("pidfd_getfd");
    // SAFETY: pidfd_getfd returned a new (close-on-exec) fd.
    unsafe { OwnedFd::from_raw_fd(got as i32) }
}
