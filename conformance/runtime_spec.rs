//! OCI runtime-spec conformance: table-driven checks of the requirements of runtime.md
//! (State, Lifecycle, Errors, Warnings, Operations) and config.md (POSIX-platform Hooks),
//! driving the real binary. README.md beside this file maps each test to its spec section.
//!
//! Run: `cargo test --test conformance`. Set BERTH_TEST_RUNTIME=/usr/sbin/runc to run the same
//! table against runc (README.md lists where runc 1.1 departs from the spec).

#[path = "../tests/common/mod.rs"]
mod common;
use common::*;

use std::path::Path;

use serde_json::{json, Value};

// ---- State (runtime.md "State") ----------------------------------------------------------

/// Checks the required properties of a state document for `status`.
fn check_state(st: &Value, id: &str, status: &str, bundle: &Path) {
    assert!(
        st["ociVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.")),
        "ociVersion: {st}"
    );
    assert_eq!(st["id"], id, "id: {st}");
    assert_eq!(st["status"], status, "status: {st}");
    let b = st["bundle"].as_str().expect("bundle is REQUIRED");
    assert!(Path::new(b).is_absolute(), "bundle must be absolute: {b}");
    assert_eq!(Path::new(b), std::fs::canonicalize(bundle).unwrap());
    if status == "created" || status == "running" {
        // "pid (int, REQUIRED when status is created or running on Linux)"
        let pid = st["pid"].as_i64().expect("pid is REQUIRED");
        assert!(
            pid > 0 && pid_alive(pid as i32),
            "pid {pid} is not a live process"
        );
    }
    if let Some(a) = st.get("annotations") {
        assert!(a.is_object() || a.is_null(), "annotations is a map: {st}");
    }
}

#[test]
fn state_has_the_required_properties_in_every_status() {
    let rt = Runtime::new();
    let mut b = sh("read x < /out/fifo");
    b.edit(|c| c["annotations"] = json!({"org.opencontainers.test": "yes"}));
    nix::unistd::mkfifo(
        &b.out().join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o666),
    )
    .unwrap();
    let id = unique_id("state");
    rt.create(&id, &b);
    let st = rt.state(&id);
    check_state(&st, &id, "created", b.path());
    assert_eq!(st["annotations"]["org.opencontainers.test"], "yes");
    rt.ok(&["start", &id]);
    check_state(&rt.state(&id), &id, "running", b.path());
    // Release the process: it exits.
    std::fs::write(b.out().join("fifo"), "go\n").unwrap();
    assert!(rt.wait_status(&id, "stopped", SECS10));
    check_state(&rt.state(&id), &id, "stopped", b.path());
    rt.ok(&["delete", &id]);
}

// ---- Operations × statuses (runtime.md "Operations", "Lifecycle") -------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
enum From {
    Created,
    Running,
    Stopped,
    Missing,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum After {
    /// The operation fails and the container is unchanged.
    Error,
    /// The operation succeeds; the container then has this status.
    Now(&'static str),
    /// The operation succeeds; the container no longer exists.
    Gone,
}

/// (from, operation, expected): every lifecycle operation in every status.
const TRANSITIONS: &[(From, &[&str], After)] = &[
    // "Attempting to start a container that does not exist MUST generate an error."
    (From::Missing, &["start"], After::Error),
    (From::Missing, &["state"], After::Error),
    (From::Missing, &["kill", "KILL"], After::Error),
    // "Attempting to delete a container that does not exist MUST generate an error."
    (From::Missing, &["delete"], After::Error),
    // runc: delete --force of a missing container succeeds (engines rely on it).
    (From::Missing, &["delete", "--force"], After::Gone),
    // start: "the status property of this container MUST be running".
    (From::Created, &["start"], After::Now("running")),
    (From::Created, &["state"], After::Now("created")),
    (From::Created, &["kill", "KILL"], After::Now("stopped")),
    (From::Created, &["delete"], After::Gone),
    (From::Created, &["delete", "--force"], After::Gone),
    // "Attempting to start an already started container MUST have no effect on the container
    // and MUST generate an error."
    (From::Running, &["start"], After::Error),
    (From::Running, &["state"], After::Now("running")),
    (From::Running, &["kill", "KILL"], After::Now("stopped")),
    // "Attempting to delete a container whose process is still running MUST generate an error."
    (From::Running, &["delete"], After::Error),
    (From::Running, &["delete", "--force"], After::Gone),
    (From::Stopped, &["start"], After::Error),
    (From::Stopped, &["state"], After::Now("stopped")),
    // "Attempting to send a signal to a container that is not running MUST have no effect on
    // the container and MUST generate an error."
    (From::Stopped, &["kill", "KILL"], After::Error),
    (From::Stopped, &["delete"], After::Gone),
    (From::Stopped, &["delete", "--force"], After::Gone),
];

fn status_name(f: From) -> &'static str {
    match f {
        From::Created => "created",
        From::Running => "running",
        From::Stopped => "stopped",
        From::Missing => "missing",
    }
}

/// Brings a new container to `from`.
fn prepare(rt: &Runtime, id: &str, from: From) -> Bundle {
    let b = if from == From::Stopped {
        sh("true")
    } else {
        sh("sleep 60")
    };
    if from == From::Missing {
        return b;
    }
    rt.create(id, &b);
    if from != From::Created {
        rt.ok(&["start", id]);
    }
    if from == From::Stopped {
        assert!(rt.wait_status(id, "stopped", SECS10));
    }
    assert_eq!(rt.status(id), status_name(from));
    b
}

#[test]
fn every_operation_in_every_status() {
    let mut failures = Vec::new();
    for (i, (from, op, want)) in TRANSITIONS.iter().enumerate() {
        let rt = Runtime::new();
        let id = unique_id(&format!("t{i}"));
        let b = prepare(&rt, &id, *from);
        let mut args: Vec<&str> = op.to_vec();
        // The id goes after the verb's flags and before kill's signal.
        let at = if op[0] == "kill" { 1 } else { args.len() };
        args.insert(at, &id);
        let o = rt.berth(&args);
        let status_after = || {
            let s = rt.berth(&["state", &id]);
            s.status
                .success()
                .then(|| serde_json::from_slice::<Value>(&s.stdout).unwrap()["status"].clone())
        };
        let label = format!("{} + {op:?}", status_name(*from));
        match want {
            After::Error => {
                if o.status.success() {
                    failures.push(format!("{label}: succeeded, MUST fail"));
                }
                let now = status_after();
                let before = (*from != From::Missing).then(|| json!(status_name(*from)));
                if now != before {
                    failures.push(format!(
                        "{label}: a failed operation changed {before:?} to {now:?}"
                    ));
                }
            }
            After::Now(s) => {
                if !o.status.success() {
                    failures.push(format!("{label}: failed: {}", stderr(&o)));
                }
                let ok = rt.wait_status(&id, s, SECS10);
                if !ok {
                    failures.push(format!("{label}: status is not {s}"));
                }
            }
            After::Gone => {
                if !o.status.success() {
                    failures.push(format!("{label}: failed: {}", stderr(&o)));
                }
                if status_after().is_some() {
                    failures.push(format!("{label}: the container still exists"));
                }
                if *from != From::Missing {
                    let t = traces(&rt, &id, &b);
                    if !t.is_empty() && !wait_until(SECS5, || traces(&rt, &id, &b).is_empty()) {
                        failures.push(format!("{label}: resources left: {t:?}"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn create_with_an_id_in_use_fails_and_creates_nothing() {
    // Create: "If the ID provided is not unique ... the implementation MUST generate an error
    // and a new container MUST NOT be created."
    let rt = Runtime::new();
    let b = sh("sleep 60");
    let other = sh("echo second > /out/second");
    let id = unique_id("dupid");
    rt.create(&id, &b);
    let pid = rt.pid(&id);
    let d = rt.create_detached(&id, &other, &[]);
    assert!(!d.status.success());
    assert_eq!(rt.pid(&id), pid);
    assert_eq!(
        rt.state(&id)["bundle"],
        std::fs::canonicalize(b.path()).unwrap().to_str().unwrap()
    );
    rt.ok(&["start", &id]);
    assert!(!other.out().join("second").exists());
    rt.ok(&["delete", "--force", &id]);
}

#[test]
fn an_id_may_be_reused_after_delete() {
    // Delete: "Once a container is deleted its ID MAY be used by a subsequent container."
    let rt = Runtime::new();
    let b = sh("true");
    let id = unique_id("reuse");
    for _ in 0..2 {
        rt.create(&id, &b);
        rt.ok(&["delete", &id]);
    }
}

// ---- Lifecycle steps 2, 8, 10 ------------------------------------------------------------

#[test]
fn create_does_not_run_the_program_and_later_config_changes_have_no_effect() {
    // Lifecycle 2: "the user-specified program MUST NOT be run at this time. Any updates to
    // config.json after this step MUST NOT affect the container."
    let rt = Runtime::new();
    let mut b = sh("echo original > /out/ran");
    let id = unique_id("step2");
    rt.create(&id, &b);
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(!b.out().join("ran").exists(), "the program ran at create");
    b.args(&["sh", "-c", "echo changed > /out/ran"]);
    rt.ok(&["start", &id]);
    assert!(wait_for_file(&b.out().join("ran"), SECS10));
    assert!(rt.wait_status(&id, "stopped", SECS10));
    assert_eq!(b.read_out("ran"), "original\n");
    rt.ok(&["delete", &id]);
}

#[test]
fn kill_sends_the_signal_to_the_container_process() {
    // Kill: "This operation MUST send the specified signal to the container process."
    let rt = Runtime::new();
    let b = sh(
        "trap 'echo got-usr1 > /out/sig; exit 0' USR1; touch /out/ready; \
                while :; do sleep 0.1; done",
    );
    let id = unique_id("killsig");
    rt.create(&id, &b);
    rt.ok(&["start", &id]);
    assert!(wait_for_file(&b.out().join("ready"), SECS10));
    rt.ok(&["kill", &id, "USR1"]);
    assert!(wait_for_file(&b.out().join("sig"), SECS10));
    // Lifecycle 10: once the process has exited, the status MUST be stopped.
    assert!(rt.wait_status(&id, "stopped", SECS10));
    rt.ok(&["delete", &id]);
}

// ---- Errors (runtime.md "Errors") ----------------------------------------------------------

#[test]
fn a_failed_create_leaves_the_environment_as_it_was() {
    // "generating an error MUST leave the state of the environment as if the operation were
    // never attempted". One failure per stage: validation, runtime setup, hooks.
    type Edit = fn(&mut Bundle);
    let stages: &[(&str, Edit)] = &[
        ("validation", |b| {
            b.edit(|c| c["process"]["cwd"] = json!("relative"));
        }),
        ("mount", |b| {
            b.edit(|c| {
                c["mounts"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"destination": "/mnt", "type": "nosuchfs", "source": "none"}))
            });
        }),
        ("createRuntime hook", |b| {
            b.edit(|c| c["hooks"] = json!({"createRuntime": [{"path": "/bin/false"}]}));
        }),
        ("createContainer hook", |b| {
            b.edit(|c| c["hooks"] = json!({"createContainer": [{"path": "/bin/false"}]}));
        }),
    ];
    for (stage, edit) in stages {
        let rt = Runtime::new();
        let mut b = sh("true");
        edit(&mut b);
        let id = unique_id("errstage");
        let d = rt.create_detached(&id, &b, &[]);
        assert!(!d.status.success(), "{stage}: create succeeded");
        assert_nothing_left(&rt, &id, &b);
    }
}

// ---- Hooks (config.md "POSIX-platform Hooks", runtime.md "Lifecycle" 3-9, 13) -------------

/// Which pid a hook's state carries ("For hooks executed in the runtime namespace, it is the
/// pid as seen by the runtime. For hooks executed in the container namespace, it is the pid
/// as seen by the container.")
#[derive(Clone, Copy, PartialEq, Debug)]
enum Pid {
    Runtime,
    Container,
    Absent,
}

/// What a failing hook of this kind does.
#[derive(Clone, Copy, PartialEq, Debug)]
enum OnFailure {
    /// "generate an error, stop the container, and continue the lifecycle at step 12"
    FailCreate,
    FailStart,
    /// "log a warning, but the remaining hooks and lifecycle continue"
    Warn,
}

/// (hook, status on stdin, pid, runs in the container's namespaces, on failure)
const HOOKS: &[(&str, &str, Pid, bool, OnFailure)] = &[
    (
        "prestart",
        "creating",
        Pid::Runtime,
        false,
        OnFailure::FailCreate,
    ),
    (
        "createRuntime",
        "creating",
        Pid::Runtime,
        false,
        OnFailure::FailCreate,
    ),
    (
        "createContainer",
        "creating",
        Pid::Container,
        true,
        OnFailure::FailCreate,
    ),
    (
        "startContainer",
        "created",
        Pid::Container,
        true,
        OnFailure::FailStart,
    ),
    ("poststart", "running", Pid::Runtime, false, OnFailure::Warn),
    ("poststop", "stopped", Pid::Absent, false, OnFailure::Warn),
];

/// A hook that appends `KIND <mnt ns> <state JSON>` to LOG.
fn logging_hook(kind: &str, log: &str) -> Value {
    json!({
        "path": "/bin/busybox",
        "args": ["sh", "-c",
            "printf '%s %s %s\\n' \"$KIND\" \"$(readlink /proc/self/ns/mnt)\" \"$(cat)\" >> \"$LOG\""],
        "env": [format!("KIND={kind}"), format!("LOG={log}")]
    })
}

#[test]
fn hooks_run_in_order_with_the_state_their_step_requires() {
    let rt = Runtime::new();
    let mut b = sh("echo program >> /out/hooks.log");
    let host_log = b.out().join("hooks.log");
    let hooks: serde_json::Map<String, Value> = HOOKS
        .iter()
        .map(|(kind, ..)| {
            // startContainer resolves paths after pivot_root; the others see the host's files.
            let log = if *kind == "startContainer" {
                "/out/hooks.log".to_string()
            } else {
                host_log.display().to_string()
            };
            (kind.to_string(), json!([logging_hook(kind, &log)]))
        })
        .collect();
    b.edit(|c| c["hooks"] = Value::Object(hooks));
    let id = unique_id("hooktable");
    rt.create(&id, &b);
    let pid = rt.pid(&id);
    let container_mnt = ns_link(pid, "mnt");
    rt.ok(&["start", &id]);
    assert!(rt.wait_status(&id, "stopped", SECS10));
    rt.ok(&["delete", &id]);
    let log = std::fs::read_to_string(&host_log).unwrap();
    let entries: Vec<(String, String, Value)> = log
        .lines()
        .map(|l| {
            let mut it = l.splitn(3, ' ');
            let kind = it.next().unwrap().to_string();
            if kind == "program" {
                return (kind, String::new(), Value::Null);
            }
            let mnt = it.next().unwrap().to_string();
            let st = serde_json::from_str(it.next().unwrap_or(""))
                .unwrap_or_else(|e| panic!("{kind}: state on stdin is not JSON ({e}): {l}"));
            (kind, mnt, st)
        })
        .collect();
    let order: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    // Lifecycle 3, 4, 5, 7, 8 (program), 9, 13. The program and poststart may interleave:
    // poststart runs after the program has been started.
    let hooks_only: Vec<&str> = order.iter().copied().filter(|k| *k != "program").collect();
    let want: Vec<&str> = HOOKS.iter().map(|h| h.0).collect();
    assert_eq!(hooks_only, want, "hook order");
    let prog = order.iter().position(|k| *k == "program").unwrap();
    let sc = order.iter().position(|k| *k == "startContainer").unwrap();
    assert!(sc < prog, "startContainer must run before the program");
    let mut failures = Vec::new();
    for (kind, status, pid_rule, inside, _) in HOOKS {
        let (_, mnt, st) = entries.iter().find(|e| e.0 == *kind).unwrap();
        if st["status"] != *status {
            failures.push(format!("{kind}: status {} (want {status})", st["status"]));
        }
        if st["id"] != id.as_str() {
            failures.push(format!("{kind}: id {}", st["id"]));
        }
        let p = &st["pid"];
        let pid_ok = match pid_rule {
            Pid::Runtime => *p == pid,
            Pid::Container => *p == 1,
            Pid::Absent => p.is_null() || *p == 0,
        };
        if !pid_ok {
            failures.push(format!(
                "{kind}: pid {p} (want {pid_rule:?}; runtime pid {pid})"
            ));
        }
        let in_container = *mnt == container_mnt;
        if in_container != *inside {
            failures.push(format!(
                "{kind}: in the container's mount namespace: {in_container}"
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn a_failing_hook_has_the_consequence_its_step_requires() {
    let mut failures = Vec::new();
    for (kind, _, _, _, on_failure) in HOOKS {
        let rt = Runtime::new();
        let mut b = sh("echo ran > /out/ran; sleep 60");
        let after = b.out().join("after");
        // The failing hook, then a second one of the same kind that must still run when
        // failures only warn.
        b.edit(|c| {
            c["hooks"] = json!({ *kind: [
                {"path": "/bin/false"},
                {"path": "/bin/busybox", "args": ["touch", if *kind == "startContainer" {
                    "/out/after".to_string() } else { after.display().to_string() }]}
            ]})
        });
        let id = unique_id("hookfail");
        let created = rt.create_detached(&id, &b, &[]);
        let started = created.status.success().then(|| rt.berth(&["start", &id]));
        let deleted = rt.berth(&["delete", "--force", &id]);
        let ran = b.out().join("ran").exists();
        let outcome = match (created.status.success(), &started) {
            (false, _) => OnFailure::FailCreate,
            (true, Some(s)) if !s.status.success() => OnFailure::FailStart,
            _ => OnFailure::Warn,
        };
        if outcome != *on_failure {
            failures.push(format!("{kind}: {outcome:?}, want {on_failure:?}"));
        }
        if *on_failure != OnFailure::Warn && ran {
            failures.push(format!("{kind}: the program ran after the hook failed"));
        }
        if *on_failure == OnFailure::Warn {
            if !after.exists() {
                failures.push(format!(
                    "{kind}: the hooks after the failing one did not run"
                ));
            }
            let warned = started.as_ref().map(stderr).unwrap_or_default() + &stderr(&deleted);
            if !warned.contains(kind) {
                failures.push(format!("{kind}: no warning naming the hook: {warned}"));
            }
        }
        if !deleted.status.success() {
            failures.push(format!(
                "{kind}: delete --force failed: {}",
                stderr(&deleted)
            ));
        }
        if !wait_until(SECS5, || traces(&rt, &id, &b).is_empty()) {
            failures.push(format!("{kind}: left {:?}", traces(&rt, &id, &b)));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn hook_timeout_is_enforced() {
    // config.md: "timeout (int, OPTIONAL) is the number of seconds before aborting the hook."
    let rt = Runtime::new();
    let mut b = sh("true");
    b.edit(|c| {
        c["hooks"] = json!({"createRuntime": [
            {"path": "/bin/sleep", "args": ["sleep", "60"], "timeout": 1}]})
    });
    let id = unique_id("hooktimeout");
    let t = std::time::Instant::now();
    let d = rt.create_detached(&id, &b, &[]);
    assert!(!d.status.success());
    assert!(t.elapsed().as_secs() < 15, "took {:?}", t.elapsed());
    assert_nothing_left(&rt, &id, &b);
}
