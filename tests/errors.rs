//! Bad input: each mistake gives exactly one clear error line that names the field by its JSON
//! path, a non-zero exit, and leaves NOTHING behind (no state directory, no cgroup, no mount,
//! no process). runtime-spec "Errors": "generating an error MUST leave the state of the
//! environment as if the operation were never attempted".

mod common;
use common::*;

use serde_json::{json, Value};

/// One bad config: a name, how to break the default bundle, and what the error line must say.
struct Case {
    name: &'static str,
    edit: fn(&mut Bundle),
    needles: &'static [&'static str],
}

fn set(b: &mut Bundle, f: impl FnOnce(&mut Value)) {
    b.edit(f);
}

const CASES: &[Case] = &[
    Case {
        name: "malformed-json",
        edit: |b| std::fs::write(b.path().join("config.json"), "{\"ociVersion\": ").unwrap(),
        needles: &["config.json", "line 1"],
    },
    Case {
        name: "wrong-type",
        edit: |b| {
            set(b, |c| {
                c["linux"]["resources"]["memory"] = json!({"limit": "lots"})
            })
        },
        needles: &["linux.resources.memory.limit", "lots"],
    },
    Case {
        name: "wrong-type-in-array",
        edit: |b| set(b, |c| c["mounts"][1]["options"] = json!("nosuid")),
        needles: &["mounts[1].options"],
    },
    Case {
        name: "unknown-rlimit",
        edit: |b| {
            set(b, |c| {
                c["process"]["rlimits"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "RLIMIT_FOO", "hard": 1, "soft": 1}))
            })
        },
        needles: &["process.rlimits[1].type", "RLIMIT_FOO"],
    },
    Case {
        // An unknown name in capability form is ignored with a warning (tests/caps_sysctl.rs).
        name: "not-a-capability-name",
        edit: |b| {
            set(b, |c| {
                c["process"]["capabilities"]["bounding"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!("CAP NOPE"))
            })
        },
        needles: &["process.capabilities.bounding[3]", "CAP NOPE"],
    },
    Case {
        name: "unknown-namespace",
        edit: |b| set(b, |c| c["linux"]["namespaces"][0]["type"] = json!("pidx")),
        needles: &["linux.namespaces[0].type", "pidx"],
    },
    Case {
        name: "missing-rootfs",
        edit: |b| set(b, |c| c["root"]["path"] = json!("no-such-rootfs")),
        needles: &["root.path", "no-such-rootfs"],
    },
    Case {
        name: "missing-root",
        edit: |b| set(b, |c| drop(c.as_object_mut().unwrap().remove("root"))),
        needles: &["root"],
    },
    Case {
        name: "relative-cwd",
        edit: |b| set(b, |c| c["process"]["cwd"] = json!("tmp")),
        needles: &["process.cwd", "tmp"],
    },
    Case {
        name: "missing-args",
        edit: |b| {
            set(b, |c| {
                c["process"].as_object_mut().unwrap().remove("args");
            })
        },
        needles: &["process.args"],
    },
    Case {
        name: "empty-args",
        edit: |b| set(b, |c| c["process"]["args"] = json!([])),
        needles: &["process.args"],
    },
    Case {
        name: "missing-process",
        edit: |b| set(b, |c| drop(c.as_object_mut().unwrap().remove("process"))),
        needles: &["process"],
    },
    Case {
        name: "env-without-equals",
        edit: |b| {
            set(b, |c| {
                c["process"]["env"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!("JUSTANAME"))
            })
        },
        needles: &["process.env[2]", "JUSTANAME"],
    },
    Case {
        name: "rlimit-soft-above-hard",
        edit: |b| {
            set(b, |c| {
                c["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "hard": 10, "soft": 20}])
            })
        },
        needles: &["process.rlimits[0]"],
    },
    Case {
        name: "oom-score-adj-out-of-range",
        edit: |b| set(b, |c| c["process"]["oomScoreAdj"] = json!(5000)),
        needles: &["process.oomScoreAdj", "5000"],
    },
    Case {
        name: "hostname-without-uts",
        edit: |b| {
            b.without_namespace("uts");
            set(b, |c| c["hostname"] = json!("box"));
        },
        needles: &["hostname", "UTS"],
    },
    Case {
        name: "duplicate-namespace",
        edit: |b| {
            set(b, |c| {
                c["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "pid"}))
            })
        },
        needles: &["linux.namespaces[6]", "duplicate"],
    },
    Case {
        name: "relative-namespace-path",
        edit: |b| {
            b.namespace("network", Some("proc/1/ns/net"));
        },
        needles: &["linux.namespaces[5].path"],
    },
    Case {
        name: "missing-namespace-path",
        edit: |b| {
            b.namespace("network", Some("/no/such/netns"));
        },
        needles: &["linux.namespaces[5].path", "/no/such/netns"],
    },
    Case {
        name: "uid-mappings-without-user-ns",
        edit: |b| {
            set(b, |c| {
                c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
                c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
            })
        },
        needles: &["linux.uidMappings", "user namespace"],
    },
    Case {
        name: "user-ns-without-mappings",
        edit: |b| {
            b.namespace("user", None);
        },
        needles: &["linux.uidMappings"],
    },
    Case {
        name: "relative-hook-path",
        edit: |b| {
            set(b, |c| {
                c["hooks"] = json!({"prestart": [{"path": "bin/true"}]})
            })
        },
        needles: &["hooks.prestart[0].path"],
    },
    Case {
        name: "relative-mount-destination",
        edit: |b| {
            set(b, |c| {
                c["mounts"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"destination": "mnt", "type": "tmpfs", "source": "tmpfs"}))
            })
        },
        needles: &["].destination", "mnt"],
    },
    Case {
        name: "bind-mount-missing-source",
        edit: |b| {
            set(b, |c| {
                c["mounts"].as_array_mut().unwrap().push(json!({
                    "destination": "/mnt", "type": "bind", "source": "/no/such/dir",
                    "options": ["rbind"]}))
            })
        },
        needles: &["].source", "/no/such/dir"],
    },
    Case {
        name: "host-sysctl",
        edit: |b| set(b, |c| c["linux"]["sysctl"] = json!({"kernel.panic": "1"})),
        needles: &["linux.sysctl[\"kernel.panic\"]"],
    },
    Case {
        name: "net-sysctl-without-netns",
        edit: |b| {
            b.without_namespace("network");
            set(b, |c| {
                c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"})
            });
        },
        needles: &["linux.sysctl[\"net.ipv4.ip_forward\"]"],
    },
    Case {
        name: "time-offsets-without-time-ns",
        edit: |b| {
            set(b, |c| {
                c["linux"]["timeOffsets"] = json!({"boottime": {"secs": 100, "nanosecs": 0}})
            })
        },
        needles: &["linux.timeOffsets"],
    },
    Case {
        name: "unsupported-oci-version",
        edit: |b| set(b, |c| c["ociVersion"] = json!("2.0.0")),
        needles: &["ociVersion", "2.0.0"],
    },
    Case {
        name: "missing-config",
        edit: |b| std::fs::remove_file(b.path().join("config.json")).unwrap(),
        needles: &["config.json"],
    },
    Case {
        name: "terminal-without-console-socket",
        edit: |b| set(b, |c| c["process"]["terminal"] = json!(true)),
        needles: &["terminal", "--console-socket"],
    },
    Case {
        // Found at create by runc too ("exec: ...: no such file or directory").
        name: "missing-executable",
        edit: |b| {
            b.args(&["/no/such/program"]);
        },
        needles: &["process.args[0]", "/no/such/program"],
    },
    Case {
        name: "program-not-in-path",
        edit: |b| {
            b.args(&["no-such-program"]);
        },
        needles: &["process.args[0]", "no-such-program"],
    },
];

/// Cases that are errors for `run` only when it detaches: in the foreground, `run` relays the
/// terminal itself (as `runc run` does).
const ERRORS_ONLY_DETACHED: &[&str] = &["terminal-without-console-socket"];

fn check(case: &Case, verb: &str) {
    let rt = Runtime::new();
    let mut b = sh("echo ran > /out/ran");
    (case.edit)(&mut b);
    // The create and run tables run in parallel: their ids (and so cgroup paths) must differ.
    let id = unique_id(&format!("{}-{verb}", case.name));
    let mut args = vec![verb];
    if verb == "run" && ERRORS_ONLY_DETACHED.contains(&case.name) {
        args.push("--detach");
    }
    args.extend_from_slice(&["--bundle", b.path_str(), &id]);
    let d = rt.detached(&args, b.path(), &format!("{id}-{verb}"));
    let err = d.stderr();
    assert!(
        !d.status.success(),
        "{}: {verb} succeeded; stderr: {err}",
        case.name
    );
    let l = lines(&err);
    assert_eq!(
        l.len(),
        1,
        "{}: expected exactly one error line, got:\n{err}",
        case.name
    );
    for n in case.needles {
        assert!(
            l[0].contains(n),
            "{}: error lacks {n:?}: {}",
            case.name,
            l[0]
        );
    }
    assert!(
        !b.out().join("ran").exists(),
        "{}: the program ran",
        case.name
    );
    assert_nothing_left(&rt, &id, &b);
}

/// Runs every case, reporting all the failures at once.
fn check_all(verb: &str) {
    let mut failed = Vec::new();
    for case in CASES {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(case, verb)));
        if let Err(e) = r {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failed.push(format!("{}: {msg}", case.name));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} bad configs mishandled by `{verb}`:\n{}",
        failed.len(),
        CASES.len(),
        failed.join("\n")
    );
}

#[test]
fn bad_configs_fail_create_with_one_line_naming_the_field_and_leave_nothing() {
    check_all("create");
}

#[test]
fn bad_configs_fail_run_with_one_line_naming_the_field_and_leave_nothing() {
    check_all("run");
}

#[test]
fn missing_bundle_directory() {
    let rt = Runtime::new();
    let o = rt.berth(&["create", "--bundle", "/no/such/bundle", "x1"]);
    assert_one_error_line(&o, &["/no/such/bundle"]);
    assert!(rt.ids().is_empty());
}

#[test]
fn unknown_id_for_every_verb() {
    let rt = Runtime::new();
    for args in [
        &["state", "ghost"][..],
        &["start", "ghost"],
        &["kill", "ghost"],
        &["kill", "ghost", "KILL"],
        &["delete", "ghost"],
    ] {
        let o = rt.berth(args);
        assert_one_error_line(&o, &["ghost"]);
    }
}

#[test]
fn invalid_id_for_every_verb() {
    let rt = Runtime::new();
    for verb in ["state", "start", "kill", "delete"] {
        let o = rt.berth(&[verb, "../x"]);
        assert_one_error_line(&o, &["../x"]);
    }
}

#[test]
fn bad_signal() {
    let rt = Runtime::new();
    let b = sh("sleep 30");
    let id = unique_id("badsig");
    rt.create(&id, &b);
    let o = rt.berth(&["kill", &id, "SIGNOPE"]);
    assert_one_error_line(&o, &["SIGNOPE"]);
    assert_eq!(rt.status(&id), "created");
    rt.ok(&["delete", &id]);
}

#[test]
fn bad_flag() {
    let rt = Runtime::new();
    let o = rt.berth(&["create", "--no-such-flag", "x"]);
    assert_eq!(o.status.code(), Some(1));
    assert_one_error_line(&o, &["--no-such-flag"]);
    let o = rt.berth(&["kill"]);
    assert_one_error_line(&o, &["ID"]);
}

#[test]
fn errors_go_to_the_log_file_as_the_last_json_line() {
    // containerd's shim reads the last "error" line of --log to tell its user what failed.
    let rt = Runtime::new();
    let mut b = sh("true");
    b.edit(|c| c["process"]["cwd"] = json!("relative"));
    let log = b.path().join("berth.log");
    let id = unique_id("logged");
    let d = rt.detached(
        &[
            "--log",
            log.to_str().unwrap(),
            "--log-format",
            "json",
            "create",
            "--bundle",
            b.path_str(),
            &id,
        ],
        b.path(),
        &id,
    );
    assert!(!d.status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "error");
    assert!(
        last["msg"].as_str().unwrap().contains("process.cwd"),
        "{last}"
    );
    assert_nothing_left(&rt, &id, &b);
}
