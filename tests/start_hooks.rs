//! startContainer hooks run in the container as its process would, right before its execve
//! (as runc runs them): under its seccomp filter, as its user, and, without an `env` of their
//! own, with `process.env`.

mod common;
use common::*;
use serde_json::{json, Value};

fn with_start_hook(b: &mut Bundle, hook: Value) {
    b.edit(|c| c["hooks"] = json!({"startContainer": [hook]}));
}

#[test]
fn a_start_container_hook_runs_under_the_containers_seccomp_filter() {
    let mkdir_denied = json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]});
    for nnp in [false, true] {
        let rt = Runtime::new();
        let mut b = Bundle::sh("ls -d /dev/shm/hooked");
        with_start_hook(
            &mut b,
            json!({"path": "/bin/mkdir", "args": ["mkdir", "/dev/shm/hooked"]}),
        );
        b.edit(|c| c["process"]["noNewPrivileges"] = json!(nnp));
        // Without a profile the hook's mkdir works and the process sees its directory.
        let id = unique_id(&format!("sh-seccomp-{nnp}"));
        let o = rt.run_timeout(&id, &b, &[]);
        assert!(o.status.success(), "nnp={nnp}: {}", stderr(&o));
        assert_eq!(stdout(&o), "/dev/shm/hooked\n");
        // With one that denies mkdir, the hook fails and so does the start, as with runc.
        b.edit(|c| c["linux"]["seccomp"] = mkdir_denied.clone());
        let id = unique_id(&format!("sh-seccomp2-{nnp}"));
        let o = rt.run_timeout(&id, &b, &[]);
        assert_one_error_line(&o, &["startContainer", "/bin/mkdir"]);
        assert_eq!(stdout(&o), "", "nnp={nnp}: the process must not run");
        assert_nothing_left(&rt, &id, &b);
    }
}

#[test]
fn a_start_container_hook_without_env_gets_the_process_environment_and_user() {
    let rt = Runtime::new();
    let mut b = Bundle::sh("cat /dev/shm/seen");
    with_start_hook(
        &mut b,
        json!({"path": "/bin/sh", "args": ["sh", "-c", "echo \"$FOO $(id -u)\" > /dev/shm/seen"]}),
    );
    b.edit(|c| {
        c["process"]["env"] = json!(["PATH=/bin", "FOO=from-process-env"]);
        c["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    });
    let id = unique_id("sh-env");
    let o = rt.run_timeout(&id, &b, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "from-process-env 1000\n");
    // A hook with an `env` of its own gets exactly that.
    with_start_hook(
        &mut b,
        json!({"path": "/bin/sh", "args": ["sh", "-c", "echo \"${FOO:-unset} $BAR\" > /dev/shm/seen"],
               "env": ["BAR=own"]}),
    );
    let id = unique_id("sh-env2");
    let o = rt.run_timeout(&id, &b, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "unset own\n");
    assert_nothing_left(&rt, &id, &b);
}
