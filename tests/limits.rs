//! Input bounds (issue 15 §3): every JSON document Berth reads (config.json with its seccomp
//! profile, `exec --process`, `update --resources`, state.json) is refused past its bounds
//! (65,536 entries in an array or object, 64 levels of nesting, 2^20 values, 32 MiB; 8,192
//! seccomp rules per architecture) with one line naming the JSON path and a non-zero exit,
//! before anything is allocated or created; configs of a real size still run.

mod common;
use common::*;

use std::io::Write;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The script of a bundle that must not run: it leaves /out/ran.
const RAN: &str = "echo ran > /out/ran";

/// `create` of `b` must fail with one line holding every needle, exit 1, without the program
/// having run, and leave the root empty and nothing else behind.
fn refused(name: &str, b: &Bundle, needles: &[&str]) {
    let rt = Runtime::new();
    let id = unique_id(name);
    let d = rt.create_detached(&id, b, &[]);
    let err = d.stderr();
    assert_eq!(
        d.status.code(),
        Some(1),
        "{name}: {}; stderr: {err}",
        d.status
    );
    let l = lines(&err);
    assert_eq!(l.len(), 1, "{name}: expected one error line, got:\n{err}");
    for n in needles {
        assert!(l[0].contains(n), "{name}: error line lacks {n:?}: {}", l[0]);
    }
    assert!(!b.out().join("ran").exists(), "{name}: the program ran");
    assert_root_empty(&rt);
    assert_nothing_left(&rt, &id, b);
}

/// Nothing at all under the runtime's `--root`.
fn assert_root_empty(rt: &Runtime) {
    let left: Vec<_> = std::fs::read_dir(rt.root.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left in the root: {left:?}");
}

fn bundle(f: impl FnOnce(&mut Value)) -> Bundle {
    let mut b = sh(RAN);
    b.edit(f);
    b
}

/// `n` numbered entries `E<i>=<i>`.
fn env(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("E{i}={i}")).collect()
}

/// `[[[…0…]]]`, `depth` arrays deep.
fn nested(depth: usize) -> Value {
    (0..depth).fold(json!(0), |v, _| json!([v]))
}

#[test]
fn config_arrays_and_objects_past_the_bound_are_refused() {
    let b = bundle(|c| c["process"]["env"] = json!(env(100_000)));
    refused(
        "lim-env",
        &b,
        &["config.json: process.env: 100000 entries, at most 65536 are accepted"],
    );
    let b = bundle(|c| {
        let m = &mut c["mounts"];
        m[0]["options"] = json!(vec!["nosuid"; 70_000]);
    });
    refused(
        "lim-mountopts",
        &b,
        &["config.json: mounts[0].options: 70000 entries, at most 65536 are accepted"],
    );
    let b = bundle(|c| {
        let a: serde_json::Map<String, Value> = (0..65_537)
            .map(|i| (format!("org.example/k{i}"), json!("v")))
            .collect();
        c["annotations"] = Value::Object(a);
    });
    refused(
        "lim-annotations",
        &b,
        &["config.json: annotations: 65537 keys, at most 65536 are accepted"],
    );
}

#[test]
fn config_nesting_and_size_past_the_bound_are_refused() {
    // An unknown (vendor) field is ignored by the typed parse, but still bounded. serde_json
    // alone would take 127 levels here and say "recursion limit exceeded" beyond.
    let b = bundle(|c| c["org.example.vendor"] = nested(100));
    let path = format!("org.example.vendor{}", "[0]".repeat(63));
    refused(
        "lim-depth",
        &b,
        &[&format!(
            "config.json: {path}: 65 levels of nested arrays and objects, at most 64 are accepted"
        )],
    );
    // 17 arrays of 65,536 entries: each within the bound, more than 2^20 values in all.
    let b = bundle(|c| {
        for i in 0..17 {
            c[format!("org.example.v{i}")] = json!(vec![0; 65_536]);
        }
    });
    refused(
        "lim-values",
        &b,
        &[
            "config.json: org.example.v",
            "more than 1048576 JSON values",
        ],
    );
}

/// A config as large as real engines write (Kubernetes pods with thousands of env entries and
/// annotations) is far below the bounds and runs.
#[test]
fn a_config_of_a_real_size_runs() {
    let rt = Runtime::new();
    let mut b = sh("echo $E0 $E19999 > /out/env");
    b.edit(|c| {
        let mut e = env(20_000);
        e.push("PATH=/bin".into());
        c["process"]["env"] = json!(e);
        let a: serde_json::Map<String, Value> = (0..5_000)
            .map(|i| (format!("org.example/k{i}"), json!("v")))
            .collect();
        c["annotations"] = Value::Object(a);
        c["org.example.vendor"] = nested(60);
    });
    let id = unique_id("lim-real");
    let o = rt.run_timeout(&id, &b, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(b.read_out("env").trim(), "0 19999");
    rt.ok(&["delete", "--force", &id]);
    assert_nothing_left(&rt, &id, &b);
}

/// 9,000 rules of docker's three architectures: refused at once, where libseccomp would take
/// its time (quadratic in the rules) and the filter be loaded.
#[test]
fn seccomp_profiles_past_the_rule_bound_are_refused_quickly() {
    let profile = |names: usize| {
        json!({"defaultAction": "SCMP_ACT_ERRNO",
               "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
               "syscalls": [{"names": ["exit_group", "exit"], "action": "SCMP_ACT_ALLOW"},
                            {"names": vec!["getpid"; names], "action": "SCMP_ACT_ALLOW"}]})
    };
    let b = bundle(|c| c["linux"]["seccomp"] = profile(3_000));
    let t = Instant::now();
    refused(
        "lim-seccomp",
        &b,
        &[
            "error: linux.seccomp.syscalls: 3002 rules",
            "for 3 architectures make 9006, at most 8192 are accepted",
        ],
    );
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
}

/// A started container whose init sleeps, for `exec` and `update`.
struct Running {
    rt: Runtime,
    bundle: Bundle,
    id: String,
}

fn running(name: &str) -> Running {
    let rt = Runtime::new();
    let bundle = sh("sleep 1000");
    let id = unique_id(name);
    rt.create(&id, &bundle);
    rt.ok(&["start", &id]);
    Running { rt, bundle, id }
}

impl Running {
    /// Writes `body` beside the bundle and returns its path.
    fn file(&self, name: &str, body: &[u8]) -> String {
        let f = self.bundle.path().join(name);
        std::fs::write(&f, body).unwrap();
        f.to_str().unwrap().to_string()
    }

    /// The pids of the container's cgroup (the init, and whatever an exec left).
    fn pids(&self) -> Vec<String> {
        let o = self.rt.ok(&["ps", "--format", "json", &self.id]);
        let v: Value = serde_json::from_str(&o).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| p.to_string())
            .collect()
    }

    /// Deletes the container; the root must then be empty.
    fn finish(self) {
        self.rt.ok(&["delete", "--force", &self.id]);
        assert_root_empty(&self.rt);
        assert_nothing_left(&self.rt, &self.id, &self.bundle);
    }
}

/// A sparse file of `len` bytes (zeros: not JSON, but its size is refused before it is read).
fn sparse(path: &str, len: u64) {
    std::fs::File::create(path).unwrap().set_len(len).unwrap();
}

#[test]
fn exec_process_files_past_the_bounds_are_refused() {
    let c = running("lim-exec");
    let before = c.pids();
    let exec = |f: &str| c.rt.berth(&["exec", "--process", f, &c.id]);
    let args = vec!["sh"; 100_000];
    let f = c.file(
        "args.json",
        json!({"cwd": "/", "args": args}).to_string().as_bytes(),
    );
    assert_one_error_line(
        &exec(&f),
        &[&format!(
            "--process {f}: process.args: 100000 entries, at most 65536 are accepted"
        )],
    );
    let f = c.file(
        "deep.json",
        json!({"cwd": "/", "args": ["true"], "x": nested(200)})
            .to_string()
            .as_bytes(),
    );
    assert_one_error_line(
        &exec(&f),
        &[
            &format!("--process {f}: process.x[0]"),
            "65 levels of nested",
        ],
    );
    let f = c.file("big.json", b"");
    sparse(&f, (32 << 20) + 1);
    assert_one_error_line(
        &exec(&f),
        &[&format!("--process {f}: larger than 33554432 bytes")],
    );
    assert_eq!(c.pids(), before, "exec left a process");
    assert_eq!(c.rt.status(&c.id), "running");
    c.finish();
}

#[test]
fn update_resources_past_the_bounds_are_refused() {
    let c = running("lim-update");
    let cfg = || std::fs::read(c.rt.root.path().join(&c.id).join("config.json")).unwrap();
    let stored = cfg();
    let dev = json!({"major": 8, "minor": 0, "rate": 1});
    let body =
        json!({"pids": {"limit": 7}, "blockIO": {"throttleReadBpsDevice": vec![dev; 100_000]}})
            .to_string();
    let want = "--resources: blockIO.throttleReadBpsDevice: 100000 entries, at most 65536 are \
                accepted";
    let f = c.file("r.json", body.as_bytes());
    let o = c.rt.berth(&["update", "--resources", &f, &c.id]);
    assert_one_error_line(&o, &[want]);
    assert_eq!(o.status.code(), Some(1));
    // On standard input, as containerd and docker pass it.
    let mut child =
        c.rt.cmd()
            .args(["update", "--resources", "-", &c.id])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Berth may stop reading before the end: a closed pipe is fine.
    let _ = stdin.write_all(body.as_bytes());
    drop(stdin);
    let o: Output = child.wait_with_output().unwrap();
    assert_one_error_line(&o, &[want]);
    let f = c.file("big.json", b"");
    sparse(&f, (32 << 20) + 1);
    assert_one_error_line(
        &c.rt.berth(&["update", "--resources", &f, &c.id]),
        &["--resources: larger than 33554432 bytes"],
    );
    assert_eq!(cfg(), stored, "the stored config changed");
    c.finish();
}

/// state.json is Berth's own, but read back as any input: a corrupt one past the bounds is
/// named, not allocated.
#[test]
fn state_json_past_the_bounds_is_named() {
    let rt = Runtime::new();
    let id = unique_id("lim-state");
    let dir = rt.root.path().join(&id);
    std::fs::create_dir_all(&dir).unwrap();
    let state = json!({"id": id, "pid": 1, "start_time": 1, "bundle": "/b", "rootfs": "/r",
                       "created": "", "annotations": {"x": "y"},
                       "org.example": vec![0; 100_000]});
    std::fs::write(dir.join("state.json"), state.to_string()).unwrap();
    let o = rt.berth(&["state", &id]);
    assert_one_error_line(
        &o,
        &[
            "is corrupt",
            "org.example: 100000 entries, at most 65536 are accepted",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    std::fs::remove_dir_all(&dir).unwrap();
    assert_root_empty(&rt);
}
