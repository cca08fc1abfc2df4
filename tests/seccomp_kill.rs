//! A seccomp profile that kills one of the calls the runtime itself makes after loading the
//! filter (without no_new_privileges the filter comes before the identity switch and capset):
//! the container cannot start, and `start` says so instead of reporting success while the
//! init dies. runc 1.1 (BERTH_TEST_RUNTIME=/usr/sbin/runc) passes for capset killed with
//! KILL_PROCESS: its init dies in `create` and its `start` fails with "cannot start a container
//! that has stopped"; Berth's error names linux.seccomp and the call.

mod common;
use common::*;

use serde_json::json;
use std::time::Duration;

#[test]
fn a_profile_killing_the_runtimes_own_calls_fails_start_and_says_why() {
    for call in ["capset", "setresuid"] {
        for action in [
            "SCMP_ACT_KILL_PROCESS",
            "SCMP_ACT_KILL_THREAD",
            "SCMP_ACT_TRAP",
        ] {
            let what = format!("{call} {action}");
            if (call, action) != ("capset", "SCMP_ACT_KILL_PROCESS")
                && berth_bin().ends_with("runc")
            {
                // runc switches ids with setuid(2), not setresuid; a killed thread of its Go
                // runtime hangs its `create`.
                println!("SKIP: {what}: not a call runc 1.1 makes, or it hangs");
                continue;
            }
            let rt = Runtime::new();
            let mut b = sh("echo ran > /out/ran");
            b.edit(|c| {
                c["process"]["noNewPrivileges"] = json!(false);
                c["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [{"names": [call], "action": action}]});
            });
            let id = unique_id(&format!("sck-{call}-{}", action.len()));
            rt.create(&id, &b);
            let o = rt.berth(&["start", &id]);
            let err = stderr(&o);
            assert!(!o.status.success(), "{what}: start must fail: {err}");
            if !err.contains("level=error") {
                assert_one_error_line(&o, &["linux.seccomp", call]);
            }
            assert!(
                rt.wait_status(&id, "stopped", Duration::from_secs(5)),
                "{what}: {}",
                rt.status(&id)
            );
            assert!(!b.out().join("ran").exists(), "{what}: nothing ran");
            rt.ok(&["delete", "--force", &id]);
            assert_nothing_left(&rt, &id, &b);
        }
    }
}

/// The same call under no_new_privileges, where the filter comes after it: the container runs.
#[test]
fn with_no_new_privileges_the_same_profile_runs() {
    let rt = Runtime::new();
    let mut b = sh("echo ran > /out/ran");
    b.edit(|c| {
        c["process"]["noNewPrivileges"] = json!(true);
        c["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["capset", "setresuid"], "action": "SCMP_ACT_KILL_PROCESS"}]});
    });
    let o = rt.run_timeout(&unique_id("sck-nnp"), &b, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(b.read_out("ran"), "ran\n");
}
