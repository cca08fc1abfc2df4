//! linux.seccomp end to end: profiles are compiled by Berth and loaded in the container's
//! init in the right order with capabilities, the uid switch and no_new_privileges.
//! The docker profile is the `linux.seccomp` object docker 20.10.24 sends (see
//! seccomp/tests/fixtures/README.md).

mod common;
use common::*;
use serde_json::{json, Value};

fn bundle(script: &str, seccomp: Value) -> Bundle {
    let mut b = Bundle::sh(script);
    b.edit(|c| {
        c["linux"]["seccomp"] = seccomp;
    });
    b
}

fn docker_profile() -> Value {
    serde_json::from_str(include_str!("fixtures/docker-20.10-default.json")).unwrap()
}

#[test]
fn errno_action_returns_the_asked_errno() {
    let rt = Runtime::new();
    let b = bundle(
        "mkdir /dev/shm/x; echo rc=$?",
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
        ]}),
    );
    let o = rt.run(&unique_id("sc-errno"), &b);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("rc=1"), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("Function not implemented")
            || stdout(&o).contains("Function not implemented"),
        "ENOSYS (38) must be reported: {} {}",
        stdout(&o),
        stderr(&o)
    );
}

#[test]
fn kill_process_action_kills_with_sigsys() {
    let rt = Runtime::new();
    let b = bundle(
        "sync; echo status=$?",
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["sync"], "action": "SCMP_ACT_KILL_PROCESS"}
        ]}),
    );
    let o = rt.run(&unique_id("sc-kill"), &b);
    assert!(
        stdout(&o).contains("status=159"),
        "128+SIGSYS expected: {}",
        stdout(&o)
    );
}

#[test]
fn argument_filters_match_only_the_asked_values() {
    let rt = Runtime::new();
    // personality(0xffffffff) only queries; block it, but not personality(PER_LINUX).
    let b = bundle(
        "setarch linux32 true; echo linux32=$?; true; echo ok",
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}
        ]}),
    );
    let o = rt.run(&unique_id("sc-args"), &b);
    let out = stdout(&o);
    assert!(
        out.contains("linux32=1"),
        "PER_LINUX32 (8) is blocked: {out} {}",
        stderr(&o)
    );
    assert!(out.contains("ok"), "{out}");
}

#[test]
fn docker_default_profile_runs_a_busybox_workload() {
    for nnp in [true, false] {
        let rt = Runtime::new();
        let mut b = bundle(
            "echo hi > /dev/shm/f && cat /dev/shm/f && ls / >/dev/null && ps >/dev/null && id -u",
            docker_profile(),
        );
        b.edit(|c| c["process"]["noNewPrivileges"] = json!(nnp));
        let o = rt.run(&unique_id("sc-docker"), &b);
        assert!(o.status.success(), "nnp={nnp}: {}", stderr(&o));
        assert_eq!(stdout(&o), "hi\n0\n", "nnp={nnp}");
    }
}

#[test]
fn docker_profile_blocks_what_docker_blocks() {
    let rt = Runtime::new();
    // unshare(CLONE_NEWUSER) is refused by docker's profile without CAP_SYS_ADMIN.
    let b = bundle("unshare -U true; echo rc=$?", docker_profile());
    let o = rt.run(&unique_id("sc-block"), &b);
    assert!(stdout(&o).contains("rc=1"), "{} {}", stdout(&o), stderr(&o));
}

#[test]
fn profile_works_for_a_non_root_user_without_nnp() {
    let rt = Runtime::new();
    let mut b = bundle(
        "id -u; mkdir /dev/shm/y; echo rc=$?",
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}
        ]}),
    );
    b.edit(|c| {
        c["process"]["user"] = json!({"uid": 1000, "gid": 1000});
        c["process"]["noNewPrivileges"] = json!(false);
    });
    let o = rt.run(&unique_id("sc-user"), &b);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "1000\nrc=1\n");
}

#[test]
fn bad_profiles_name_the_json_path_and_leave_nothing() {
    let rt = Runtime::new();
    for (profile, path) in [
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_BOGUS"}]}),
            "linux.seccomp.syscalls[0].action",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]}]}),
            "linux.seccomp.syscalls[0].args[0].index",
        ),
    ] {
        let b = bundle("true", profile);
        let o = rt.run(&unique_id("sc-bad"), &b);
        assert!(!o.status.success());
        let err = stderr(&o);
        assert!(err.contains(path), "error must name {path}: {err}");
        assert_eq!(err.lines().count(), 1, "one error line: {err}");
        assert!(rt.ids().is_empty());
        assert_eq!(std::fs::read_dir(rt.root.path()).unwrap().count(), 0);
    }
}

/// A minimal seccomp agent: receives the notify fd and the container's process state over a
/// unix socket (SCM_RIGHTS), then answers every notified syscall with EACCES.
fn agent(listener: std::os::unix::net::UnixListener) -> std::thread::JoinHandle<Value> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::io::IoSliceMut;
    use std::os::fd::AsRawFd;
    std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 4]);
        let (n, fd) = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg = recvmsg::<()>(
                conn.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::empty(),
            )
            .unwrap();
            let fd = msg
                .cmsgs()
                .unwrap()
                .find_map(|c| match c {
                    ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
                    _ => None,
                })
                .expect("notify fd attached");
            (msg.bytes, fd)
        };
        let state: Value = serde_json::from_slice(&buf[..n]).unwrap();
        // struct seccomp_notif (80 bytes) and struct seccomp_notif_resp (24 bytes).
        const RECV: libc::c_ulong = 0xc050_2100;
        const SEND: libc::c_ulong = 0xc018_2101;
        loop {
            let mut req = [0u64; 10];
            // SAFETY: RECV fills a seccomp_notif, which `req` is large enough to hold.
            if unsafe { libc::ioctl(fd, RECV, req.as_mut_ptr()) } != 0 {
                break; // the filter's last user exited
            }
            let mut resp = [0u64; 3];
            resp[0] = req[0]; // id
            resp[2] = (-libc::EACCES) as u32 as u64; // error, flags = 0
                                                     // SAFETY: SEND reads a seccomp_notif_resp from `resp`.
            unsafe { libc::ioctl(fd, SEND, resp.as_ptr()) };
        }
        unsafe { libc::close(fd) };
        state
    })
}

#[test]
fn notify_hands_the_fd_to_the_agent_which_answers_syscalls() {
    let rt = Runtime::new();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let handle = agent(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let b = bundle(
        "mkdir /dev/shm/z; echo rc=$?",
        json!({"defaultAction": "SCMP_ACT_ALLOW",
               "listenerPath": sock, "listenerMetadata": "hello-agent",
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]}),
    );
    let id = unique_id("sc-notify");
    let o = rt.run(&id, &b);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "rc=1\n");
    assert!(stderr(&o).contains("Permission denied"), "{}", stderr(&o));
    let state = handle.join().unwrap();
    assert_eq!(state["fds"], json!(["seccompFd"]));
    assert_eq!(state["metadata"], "hello-agent");
    assert_eq!(state["state"]["id"], id.as_str());
}

#[test]
fn exec_runs_under_the_containers_profile() {
    let rt = Runtime::new();
    let b = bundle(
        "sleep 100",
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
        ]}),
    );
    let id = unique_id("sc-exec");
    rt.ok(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    rt.ok(&["start", &id]);
    // The filter create kept for exec; then, with that copy damaged, the profile compiled again.
    let stored = rt.root.path().join(&id).join("seccomp.bpf");
    assert!(stored.is_file(), "create keeps the compiled filter");
    for round in ["stored copy", "damaged copy"] {
        let o = rt.berth(&["exec", &id, "sh", "-c", "mkdir /dev/shm/e; echo rc=$?"]);
        assert_eq!(stdout(&o), "rc=1\n", "{round}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("Function not implemented"),
            "{round}: {}",
            stderr(&o)
        );
        let mut b = std::fs::read(&stored).unwrap();
        let last = b.len() - 1;
        b[last] ^= 0xff;
        std::fs::write(&stored, b).unwrap();
    }
    rt.ok(&["delete", "--force", &id]);
}
