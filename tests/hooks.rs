//! OCI hooks (runtime-spec config.md "POSIX-platform Hooks", runtime.md "Lifecycle"): each
//! kind runs at its step, in the right namespace, with the state JSON on stdin (right status,
//! right pid), its own args and env; failures are errors or warnings as the spec says.

mod common;
use common::*;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A hook that appends one JSON line `{"kind", "state", "args", "env", "mnt", "pidns"}` to
/// `$LOG`. It runs busybox's sh, which exists both on the host (/bin/busybox) and in the
/// container's rootfs, since startContainer hooks resolve their path in the container.
fn recording_hook(kind: &str, log: &Path) -> Value {
    let script = r#"state=$(cat); printf '{"kind":"%s","state":%s,"args":"%s %s","env":"%s","mnt":"%s","pidns":"%s"}\n' "$KIND" "$state" "$0" "$1" "$(env | grep -v '^PWD=' | sort | tr '\n' ' ')" "$(readlink /proc/self/ns/mnt)" "$(readlink /proc/self/ns/pid)" >> "$LOG""#;
    json!({
        "path": "/bin/busybox",
        "args": ["sh", "-c", script, "first", "second"],
        "env": [format!("KIND={kind}"), format!("LOG={}", log.display())],
    })
}

const KINDS: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// A bundle with a recording hook of every kind; returns it and the host path of the log.
fn hooked(script: &str) -> (Bundle, std::path::PathBuf) {
    let mut b = sh(script);
    let host_log = b.out().join("hooks.log");
    let hooks: serde_json::Map<String, Value> = KINDS
        .iter()
        .map(|k| {
            // startContainer runs after pivot_root: the log is reached through /out.
            let log = if *k == "startContainer" {
                Path::new("/out/hooks.log").to_path_buf()
            } else {
                host_log.clone()
            };
            (k.to_string(), json!([recording_hook(k, &log)]))
        })
        .collect();
    b.edit(|c| c["hooks"] = Value::Object(hooks));
    (b, host_log)
}

fn records(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad hook line {l}: {e}")))
        .collect()
}

fn record<'a>(recs: &'a [Value], kind: &str) -> &'a Value {
    recs.iter()
        .find(|r| r["kind"] == kind)
        .unwrap_or_else(|| panic!("{kind} hook did not run; ran: {recs:?}"))
}

#[test]
fn every_hook_runs_once_in_spec_order() {
    let rt = Runtime::new();
    let (b, log) = hooked("echo main > /out/main");
    let id = unique_id("order");
    rt.create(&id, &b);
    let kinds = |l: &Path| -> Vec<String> {
        records(l)
            .iter()
            .map(|r| r["kind"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        kinds(&log),
        ["prestart", "createRuntime", "createContainer"]
    );
    rt.ok(&["start", &id]);
    assert_eq!(
        kinds(&log),
        [
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart"
        ],
        "startContainer runs before the program, poststart before start returns"
    );
    assert!(wait_for_file(&b.out().join("main"), SECS10));
    assert!(rt.wait_status(&id, "stopped", SECS10));
    rt.ok(&["delete", &id]);
    assert_eq!(kinds(&log), KINDS);
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn hooks_see_the_state_with_the_status_and_pid_of_their_step() {
    let rt = Runtime::new();
    let (b, log) = hooked("sleep 30");
    let id = unique_id("hookstate");
    rt.create(&id, &b);
    rt.ok(&["start", &id]);
    let host_pid = rt.pid(&id);
    rt.ok(&["delete", "--force", &id]);
    let recs = records(&log);
    let bundle = std::fs::canonicalize(b.path()).unwrap();
    for kind in KINDS {
        let st = &record(&recs, kind)["state"];
        assert_eq!(st["id"], id.as_str(), "{kind}: {st}");
        assert_eq!(st["bundle"], bundle.to_str().unwrap(), "{kind}: {st}");
        assert!(
            st["ociVersion"].as_str().unwrap().starts_with("1."),
            "{kind}"
        );
    }
    let status = |k: &str| record(&recs, k)["state"]["status"].clone();
    let pid = |k: &str| record(&recs, k)["state"]["pid"].clone();
    // runtime-spec lifecycle: prestart/createRuntime/createContainer during create
    // ("creating"), startContainer before the program runs ("created"), poststart after it
    // ("running"), poststop after the container is gone ("stopped").
    assert_eq!(status("prestart"), "creating");
    assert_eq!(status("createRuntime"), "creating");
    assert_eq!(status("createContainer"), "creating");
    assert_eq!(status("startContainer"), "created");
    assert_eq!(status("poststart"), "running");
    assert_eq!(status("poststop"), "stopped");
    // "For hooks executed in the runtime namespace, it is the pid as seen by the runtime. For
    // hooks executed in the container namespace, it is the pid as seen by the container."
    assert_eq!(pid("prestart"), host_pid);
    assert_eq!(pid("createRuntime"), host_pid);
    assert_eq!(pid("poststart"), host_pid);
    assert_eq!(pid("createContainer"), 1, "container pid namespace");
    assert_eq!(pid("startContainer"), 1, "container pid namespace");
    let p = pid("poststop");
    assert!(
        p.is_null() || p == 0,
        "poststop pid {p}: the process is gone"
    );
}

#[test]
fn hooks_run_in_the_namespaces_the_spec_says() {
    let rt = Runtime::new();
    let (b, log) = hooked("sleep 30");
    let id = unique_id("hookns");
    rt.create(&id, &b);
    let pid = rt.pid(&id);
    let (cmnt, cpid) = (ns_link(pid, "mnt"), ns_link(pid, "pid"));
    let (hmnt, hpid) = (ns_link(1, "mnt"), ns_link(1, "pid"));
    let me = std::process::id() as i32;
    let (mymnt, mypid) = (ns_link(me, "mnt"), ns_link(me, "pid"));
    rt.ok(&["start", &id]);
    rt.ok(&["delete", "--force", &id]);
    let recs = records(&log);
    for kind in ["prestart", "createRuntime", "poststart", "poststop"] {
        let r = record(&recs, kind);
        assert!(
            r["mnt"] == mymnt.as_str() || r["mnt"] == hmnt.as_str(),
            "{kind} hook is not in the runtime's mount namespace: {r}"
        );
        assert!(
            r["pidns"] == mypid.as_str() || r["pidns"] == hpid.as_str(),
            "{kind}: {r}"
        );
    }
    for kind in ["createContainer", "startContainer"] {
        let r = record(&recs, kind);
        assert_eq!(
            r["mnt"],
            cmnt.as_str(),
            "{kind} is not in the container's mount ns"
        );
        assert_eq!(
            r["pidns"],
            cpid.as_str(),
            "{kind} is not in the container's pid ns"
        );
    }
}

#[test]
fn hooks_get_exactly_their_args_and_env() {
    let rt = Runtime::new();
    let (b, log) = hooked("true");
    let id = unique_id("hookenv");
    let o = rt.run_timeout(&id, &b, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let recs = records(&log);
    for kind in KINDS {
        let r = record(&recs, kind);
        assert_eq!(r["args"], "first second", "{kind}: $0 $1");
        let env = r["env"].as_str().unwrap();
        let vars: Vec<&str> = env
            .split_whitespace()
            // busybox sh adds SHLVL, and its default PATH when none is set.
            .filter(|v| !v.starts_with("SHLVL=") && *v != "PATH=/sbin:/usr/sbin:/bin:/usr/bin")
            .collect();
        assert_eq!(
            vars.len(),
            2,
            "{kind}: only the hook's env is passed: {env}"
        );
        assert!(vars[0] == format!("KIND={kind}"), "{kind}: {env}");
        assert!(vars[1].starts_with("LOG="), "{kind}: {env}");
    }
}

#[test]
fn prestart_hook_can_reach_the_containers_network_namespace() {
    // The classic use of prestart/createRuntime: configure the container's netns through
    // /proc/<state.pid>/ns/net before the program runs.
    let rt = Runtime::new();
    let mut b = sh("readlink /proc/self/ns/net > /out/netns");
    let out = b.out();
    let script = format!(
        "pid=$(sed 's/.*\"pid\":\\([0-9]*\\).*/\\1/'); readlink /proc/$pid/ns/net > {}/hook-netns",
        out.display()
    );
    b.edit(|c| {
        c["hooks"] = json!({"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", script]}]})
    });
    let id = unique_id("netnshook");
    let o = rt.run_timeout(&id, &b, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let hook = b.read_out("hook-netns");
    assert!(hook.starts_with("net:["), "{hook}");
    assert_eq!(hook, b.read_out("netns"));
    assert_ne!(
        hook.trim(),
        ns_link(1, "net"),
        "the container shares the host netns"
    );
}

#[test]
fn failing_create_runtime_hook_fails_create_and_leaves_nothing() {
    let rt = Runtime::new();
    let mut b = sh("echo ran > /out/ran");
    let poststop = b.out().join("poststop");
    b.edit(|c| {
        c["hooks"] = json!({
            "createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "echo hook-said-no >&2; exit 3"]}],
            "poststop": [{"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {}", poststop.display())]}]
        })
    });
    let id = unique_id("badhook");
    let d = rt.create_detached(&id, &b, &[]);
    assert!(
        !d.status.success(),
        "create succeeded despite a failing hook"
    );
    let err = d.stderr();
    assert_eq!(lines(&err).len(), 1, "{err}");
    assert!(err.contains("createRuntime"), "{err}");
    assert!(
        err.contains("hook-said-no"),
        "the hook's stderr is quoted: {err}"
    );
    assert!(!b.out().join("ran").exists());
    assert_nothing_left(&rt, &id, &b);
    // runtime-spec lifecycle step 4: "stop the container, and continue the lifecycle at step
    // 12" — destroy, then poststop hooks (runc runs them too).
    let st: Value = serde_json::from_str(&std::fs::read_to_string(&poststop).unwrap_or_default())
        .unwrap_or_else(|_| panic!("poststop hooks did not run after the failed create"));
    assert_eq!(st["status"], "stopped");
}

#[test]
fn failing_prestart_hook_fails_create_and_leaves_nothing() {
    let rt = Runtime::new();
    let mut b = sh("true");
    b.edit(|c| c["hooks"] = json!({"prestart": [{"path": "/bin/false"}]}));
    let id = unique_id("badprestart");
    let d = rt.create_detached(&id, &b, &[]);
    assert!(!d.status.success());
    assert!(d.stderr().contains("prestart"), "{}", d.stderr());
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn failing_create_container_hook_fails_create_and_leaves_nothing() {
    let rt = Runtime::new();
    let mut b = sh("true");
    b.edit(|c| {
        c["hooks"] =
            json!({"createContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 5"]}]})
    });
    let id = unique_id("badcc");
    let d = rt.create_detached(&id, &b, &[]);
    assert!(!d.status.success());
    assert_eq!(lines(&d.stderr()).len(), 1, "{}", d.stderr());
    assert!(d.stderr().contains("createContainer"), "{}", d.stderr());
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn failing_start_container_hook_fails_start_and_the_program_never_runs() {
    let rt = Runtime::new();
    let mut b = sh("echo ran > /out/ran");
    b.edit(|c| {
        c["hooks"] =
            json!({"startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 6"]}]})
    });
    let id = unique_id("badsc");
    rt.create(&id, &b);
    let o = rt.berth(&["start", &id]);
    assert!(
        !o.status.success(),
        "start succeeded despite a failing startContainer hook"
    );
    assert!(stderr(&o).contains("startContainer"), "{}", stderr(&o));
    assert!(rt.wait_status(&id, "stopped", SECS10));
    assert!(!b.out().join("ran").exists(), "the program ran");
    rt.berth(&["delete", "--force", &id]);
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn failing_poststart_hook_only_warns() {
    // runtime-spec lifecycle step 9: "the runtime MUST log a warning, but the remaining hooks
    // and lifecycle continue as if the hook had succeeded."
    let rt = Runtime::new();
    let mut b = sh("sleep 30");
    let second = b.out().join("second-poststart");
    b.edit(|c| {
        c["hooks"] = json!({"poststart": [
            {"path": "/bin/sh", "args": ["sh", "-c", "exit 4"]},
            {"path": "/bin/sh", "args": ["sh", "-c", format!("touch {}", second.display())]}
        ]})
    });
    let id = unique_id("badpoststart");
    rt.create(&id, &b);
    let o = rt.berth(&["start", &id]);
    assert!(
        o.status.success(),
        "a failing poststart hook failed start: {}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("poststart"),
        "no warning: {}",
        stderr(&o)
    );
    assert_eq!(rt.status(&id), "running");
    assert!(second.exists(), "the remaining poststart hooks did not run");
    rt.ok(&["delete", "--force", &id]);
}

#[test]
fn failing_poststop_hook_only_warns() {
    let rt = Runtime::new();
    let mut b = sh("true");
    let second = b.out().join("second-poststop");
    b.edit(|c| {
        c["hooks"] = json!({"poststop": [
            {"path": "/bin/false"},
            {"path": "/bin/sh", "args": ["sh", "-c", format!("touch {}", second.display())]}
        ]})
    });
    let id = unique_id("badpoststop");
    rt.create(&id, &b);
    rt.ok(&["start", &id]);
    assert!(rt.wait_status(&id, "stopped", SECS10));
    let o = rt.berth(&["delete", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("poststop"),
        "no warning: {}",
        stderr(&o)
    );
    assert!(second.exists(), "the remaining poststop hooks did not run");
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn a_hanging_hook_is_killed_at_its_timeout() {
    let rt = Runtime::new();
    let mut b = sh("true");
    let pidfile = b.out().join("hook.pid");
    let script = format!("echo $$ > {}; exec sleep 60", pidfile.display());
    b.edit(|c| {
        c["hooks"] =
            json!({"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", script], "timeout": 1}]})
    });
    let id = unique_id("hookto");
    let t = Instant::now();
    let d = rt.create_detached(&id, &b, &[]);
    assert!(!d.status.success());
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "took {:?}",
        t.elapsed()
    );
    assert!(
        d.stderr().contains("timed out") || d.stderr().contains("timeout"),
        "{}",
        d.stderr()
    );
    let hook: i32 = b.read_out("hook.pid").trim().parse().unwrap();
    assert!(
        wait_until(SECS5, || !pid_alive(hook)),
        "the hook {hook} is still running"
    );
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn a_missing_hook_binary_fails_create() {
    let rt = Runtime::new();
    let mut b = sh("true");
    b.edit(|c| c["hooks"] = json!({"createRuntime": [{"path": "/nonexistent/hook"}]}));
    let id = unique_id("hookmissing");
    let d = rt.create_detached(&id, &b, &[]);
    assert!(!d.status.success());
    assert!(d.stderr().contains("/nonexistent/hook"), "{}", d.stderr());
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn poststop_runs_at_delete_after_the_container_is_gone() {
    let rt = Runtime::new();
    let mut b = sh("sleep 30");
    let out = b.out().join("poststop");
    let id = unique_id("poststop");
    // The hook also records which cgroup directories of the container still exist.
    let script = format!(
        "cat > {0}; for d in /sys/fs/cgroup/*/; do [ -d \"$d$ID\" ] && echo \"$d$ID\"; done > {0}.cg; true",
        out.display()
    );
    b.edit(|c| {
        c["hooks"] = json!({"poststop": [{"path": "/bin/sh", "args": ["sh", "-c", script],
            "env": [format!("ID={id}")]}]})
    });
    rt.create(&id, &b);
    rt.ok(&["start", &id]);
    assert!(!out.exists(), "poststop ran before delete");
    rt.ok(&["delete", "--force", &id]);
    let st: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(st["id"], id.as_str());
    assert_eq!(st["status"], "stopped");
    let cg = std::fs::read_to_string(out.with_extension("cg")).unwrap_or_default();
    assert!(
        cg.trim().is_empty(),
        "cgroup still present during poststop: {cg}"
    );
}

#[test]
fn hook_output_does_not_reach_the_runtimes_stdout() {
    // Engines parse the runtime's stdout (e.g. `state`); hooks must not write into it.
    let rt = Runtime::new();
    let mut b = sh("true");
    b.edit(|c| {
        c["hooks"] = json!({"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "echo noise; echo noise >&2"]}]})
    });
    let id = unique_id("hooknoise");
    let d = rt.create_detached(&id, &b, &[]);
    d.assert_ok();
    assert!(!d.stdout().contains("noise"), "{}", d.stdout());
    assert!(!d.stderr().contains("noise"), "{}", d.stderr());
    rt.ok(&["delete", &id]);
}
