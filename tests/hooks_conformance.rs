//! What a hook inherits from the runtime, kind by kind, where the runtime-spec is silent and runc
//! sets the behaviour: its fds (only its stdio), its working directory (the bundle, or the
//! root filesystem for createContainer), its environment (the runtime's when it has no `env`);
//! and what the spec does say: hooks of a kind run in the listed order, and a failing poststart
//! or poststop hook is a warning while the lifecycle goes on.

mod common;
use common::*;

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

const KINDS: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// The hooks the runtime runs itself, in its own namespaces.
const RUNTIME_KINDS: [&str; 4] = ["prestart", "createRuntime", "poststart", "poststop"];

/// Where a hook of `kind` writes a file `name` that the test reads at `bundle.out()/name`:
/// startContainer runs after pivot_root and reaches it through the container's `/out`.
fn hook_file(b: &Bundle, kind: &str, name: &str) -> String {
    if kind == "startContainer" {
        format!("/out/{name}")
    } else {
        b.out().join(name).display().to_string()
    }
}

/// A hook running `sh -c SCRIPT` with busybox, which is both on the host and in the rootfs
/// (startContainer resolves its path in the container).
fn sh_hook(script: &str) -> Value {
    json!({"path": "/bin/busybox", "args": ["sh", "-c", script]})
}

/// Sets `hooks` to one `sh_hook(script(kind))` per kind in `kinds`.
fn hook_each(b: &mut Bundle, kinds: &[&str], script: impl Fn(&str) -> String) {
    let hooks: serde_json::Map<String, Value> = kinds
        .iter()
        .map(|k| (k.to_string(), json!([sh_hook(&script(k))])))
        .collect();
    b.edit(|c| c["hooks"] = Value::Object(hooks));
}

/// `berth run` of `b` to completion; panics unless it succeeded.
fn run_ok(rt: &Runtime, name: &str, b: &Bundle) -> String {
    let id = unique_id(name);
    let o = rt.run_timeout(&id, b, &[]);
    assert!(
        o.status.success(),
        "{name}: {}\nstdout: {}\nstderr: {}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    id
}

/// Asserts, for each of `kinds`, that the file `<kind>.<ext>` its hook left in `/out` holds
/// `want(kind)` (trimmed).
fn assert_each_left(b: &Bundle, kinds: &[&str], ext: &str, want: impl Fn(&str) -> String) {
    for kind in kinds {
        assert_eq!(
            b.read_out(&format!("{kind}.{ext}")).trim(),
            want(kind),
            "{kind} hook: {ext}"
        );
    }
}

#[test]
fn hooks_of_every_kind_get_only_their_stdio() {
    // Nothing of the runtime's (its lock, sync sockets, fds its caller left open) reaches a
    // hook: `ls /proc/self/fd` finds stdin (the state), stdout, stderr and its own dir fd.
    let rt = Runtime::new();
    let mut b = sh("true");
    let files: Vec<(&str, String)> = KINDS
        .iter()
        .map(|k| (*k, hook_file(&b, k, &format!("{k}.fds"))))
        .collect();
    hook_each(&mut b, &KINDS, |k| {
        let f = &files.iter().find(|(kind, _)| *kind == k).unwrap().1;
        format!("exec ls /proc/self/fd > {f}")
    });
    // The caller leaves fd 9 open (not close-on-exec) across its exec of the runtime.
    let id = unique_id("hookfds");
    rt.track(&id);
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg("exec 9</dev/null; exec \"$@\"")
        .arg("sh")
        .arg(berth_bin())
        .args([
            "--root",
            rt.root_str(),
            "run",
            "--bundle",
            b.path_str(),
            &id,
        ]);
    let o = output_timeout(cmd, Duration::from_secs(30));
    assert!(o.status.success(), "{}", stderr(&o));
    for kind in KINDS {
        let ls = b.read_out(&format!("{kind}.fds"));
        assert_eq!(
            fd_list(&ls),
            [0, 1, 2],
            "{kind} hook has fds other than its stdio: {ls:?}"
        );
    }
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn create_container_hooks_run_in_the_root_filesystem() {
    // As runc runs them: a relative path in a createContainer hook is in the rootfs.
    let rt = Runtime::new();
    let mut b = sh("true");
    hook_each(&mut b, &["createContainer"], |_| {
        "mkdir -p lib && echo here > ./lib/x".to_string()
    });
    let id = run_ok(&rt, "hookccwd", &b);
    assert_eq!(
        std::fs::read_to_string(b.rootfs().join("lib/x"))
            .ok()
            .as_deref(),
        Some("here\n"),
        "createContainer's ./lib/x is not ROOTFS/lib/x (bundle has lib/x: {})",
        b.path().join("lib/x").exists()
    );
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn runtime_hooks_run_in_the_bundle_directory() {
    // runc runs prestart, createRuntime, poststart and (under `run`) poststop in the bundle,
    // whatever the caller's working directory (here the test's, not the bundle).
    let rt = Runtime::new();
    let mut b = sh("true");
    let out = b.out();
    hook_each(&mut b, &RUNTIME_KINDS, |k| {
        format!("pwd -P > {}/{k}.cwd", out.display())
    });
    let id = run_ok(&rt, "hookcwd", &b);
    let bundle = std::fs::canonicalize(b.path()).unwrap();
    assert_ne!(std::env::current_dir().unwrap(), bundle);
    assert_each_left(&b, &RUNTIME_KINDS, "cwd", |_| bundle.display().to_string());
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn a_hook_without_env_gets_the_runtimes_environment_and_one_with_env_exactly_it() {
    // runc (and crun) leave a hook with no `env` field the runtime's own environment; an `env`
    // field, even an empty one, is the whole environment.
    let rt = Runtime::new();
    let mut b = sh("true");
    let out = b.out();
    let probe = format!("probe-{}", std::process::id());
    let mut hooks: serde_json::Map<String, Value> = RUNTIME_KINDS
        .iter()
        .map(|k| {
            let script = format!("echo \"$HOOK_PROBE|$PATH\" > {}/{k}.env", out.display());
            (k.to_string(), json!([sh_hook(&script)]))
        })
        .collect();
    let empty = json!({"path": "/bin/busybox", "env": [],
        "args": ["sh", "-c", format!("echo \"${{HOOK_PROBE-unset}}\" > {}/empty.env", out.display())]});
    hooks["prestart"].as_array_mut().unwrap().push(empty);
    b.edit(|c| c["hooks"] = Value::Object(hooks));
    let id = unique_id("hookenvin");
    rt.track(&id);
    let mut cmd = rt.cmd();
    cmd.env("HOOK_PROBE", &probe)
        .args(["run", "--bundle", b.path_str(), &id]);
    let o = output_timeout(cmd, Duration::from_secs(30));
    assert!(o.status.success(), "{}", stderr(&o));
    let path = std::env::var("PATH").unwrap_or_default();
    // Without env: the caller's HOOK_PROBE and PATH.
    assert_each_left(&b, &RUNTIME_KINDS, "env", |_| format!("{probe}|{path}"));
    assert_eq!(
        b.read_out("empty.env").trim(),
        "unset",
        "a hook with env [] got the runtime's environment"
    );
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn hooks_of_each_kind_run_in_the_listed_order() {
    let rt = Runtime::new();
    let mut b = sh("true");
    let hooks: serde_json::Map<String, Value> = KINDS
        .iter()
        .map(|k| {
            let log = hook_file(&b, k, &format!("{k}.order"));
            let list: Vec<Value> = (0..3)
                .map(|i| sh_hook(&format!("sleep 0.0{}; echo {i} >> {log}", 3 - i)))
                .collect();
            (k.to_string(), Value::Array(list))
        })
        .collect();
    b.edit(|c| c["hooks"] = Value::Object(hooks));
    let id = run_ok(&rt, "hookorder", &b);
    assert_each_left(&b, &KINDS, "order", |_| "0\n1\n2".to_string());
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn failing_poststart_and_poststop_hooks_warn_and_run_goes_on() {
    // runtime-spec lifecycle steps 9 and 12: the runtime logs a warning, the remaining hooks
    // and the lifecycle go on as if the hook had succeeded. (runc 1.1.5 fails `run` and kills
    // the container at a failing poststart hook, and fails `run` at a failing poststop hook;
    // the spec is explicit here, so Berth follows it.)
    let rt = Runtime::new();
    let mut b = sh("echo main > /out/main; exit 3");
    let out = b.out();
    let after = |k: &str| sh_hook(&format!("touch {}/{k}.after", out.display()));
    b.edit(|c| {
        c["hooks"] = json!({
            "poststart": [sh_hook("echo poststart-oops >&2; exit 5"), after("poststart")],
            "poststop": [sh_hook("exit 6"), after("poststop")],
        })
    });
    let id = unique_id("hookwarn");
    let o = rt.run_timeout(&id, &b, &[]);
    let err = stderr(&o);
    assert_eq!(
        o.status.code(),
        Some(3),
        "run's status is the program's: {err}"
    );
    assert_eq!(b.read_out("main"), "main\n", "the program did not run");
    for kind in ["poststart", "poststop"] {
        assert!(
            out.join(format!("{kind}.after")).exists(),
            "the {kind} hook after the failing one did not run"
        );
        assert!(
            err.lines()
                .any(|l| l.contains(kind) && l.contains("hook #0")),
            "no warning for the failing {kind} hook: {err}"
        );
    }
    assert_nothing_left(&rt, &id, &b);
}
