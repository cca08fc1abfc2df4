//! Fault injection (issue 15 §1): every named point of `src/fault.rs`'s STEPS, with each action
//! BERTH_FAULT has (`exit`, `kill`, `errno`), on the command that reaches it; then random-delay
//! SIGKILLs of create/start/run -d/exec/delete. After each trial `state` and `list` must answer
//! sensibly, and `delete --force` must leave no state directory, cgroup, mount or process.
//! An injected error must name its step, and the failed command must have undone its work.
//!
//! BERTH_FAULT exists only in debug builds of Berth; against another runtime
//! (BERTH_TEST_RUNTIME) these tests print SKIP.

mod common;
use common::*;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The step list, read from its one place (`pub const STEPS` in src/fault.rs).
fn steps() -> Vec<&'static str> {
    let src = include_str!("../src/fault.rs");
    let start = src
        .find("pub const STEPS: &[&str] = &[")
        .expect("STEPS in src/fault.rs");
    let body = &src[start..];
    let body = &body[..body.find("];").expect("end of STEPS")];
    body.lines()
        .filter_map(|l| l.trim().strip_prefix('"')?.split('"').next())
        .collect()
}

/// Whether the runtime under test is Berth's debug build (the only one with BERTH_FAULT).
fn skip(test: &str) -> bool {
    let custom = std::env::var_os("BERTH_TEST_RUNTIME").is_some_and(|r| !r.is_empty());
    if custom || !cfg!(debug_assertions) {
        println!("SKIP: {test}: BERTH_FAULT needs a debug build of Berth");
        return true;
    }
    false
}

const ACTIONS: [&str; 3] = ["exit", "kill", "errno"];

/// One shared bundle per test: every trial's container runs a program whose command line
/// names the bundle, so a process left by any trial is found by the later ones' checks too.
fn bundle(userns: bool) -> Bundle {
    let mut b = Bundle::busybox();
    let mark = b.path_str().to_string();
    b.config["process"]["args"] = json!(["sh", "-c", format!("sleep 30; true # {mark}")]);
    if userns {
        b.namespace("user", None).edit(|c| {
            let map = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
            c["linux"]["uidMappings"] = map.clone();
            c["linux"]["gidMappings"] = map;
        });
    }
    // Every resource this host's cgroups can take, so that each "cgroup:*-written" point is
    // reached; and parent-side hooks, for "create:hooks-run".
    let mut res = json!({
        "memory": {"limit": 256 << 20},
        "cpu": {"shares": 512, "cpus": "0", "mems": "0"},
        "pids": {"limit": 100},
        "devices": [{"allow": false, "access": "rwm"}],
    });
    if let Some((major, minor)) = a_block_device() {
        res["blockIO"] = json!({"throttleReadBpsDevice": [
            {"major": major, "minor": minor, "rate": 1 << 30}
        ]});
    }
    if hierarchy_has("hugetlb") && Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").exists() {
        res["hugepageLimits"] = json!([{"pageSize": "2MB", "limit": 64 << 20}]);
    }
    if hierarchy_has("net_cls") {
        res["network"] = json!({"classID": 1048577});
    }
    if hierarchy_has("net_prio") {
        res["network"]["priorities"] = json!([{"name": "lo", "priority": 1}]);
    }
    b.edit(|c| {
        c["linux"]["resources"] = res;
        c["hooks"] = json!({
            "prestart": [{"path": "/bin/true"}],
            "createRuntime": [{"path": "/bin/true"}],
        });
    });
    b
}

/// Whether some cgroup hierarchy (v1 mount or cgroup2 controller list) has `controller`.
fn hierarchy_has(controller: &str) -> bool {
    cgroup_hierarchies().iter().any(|h| {
        let name = h.file_name().map(|n| n.to_string_lossy().into_owned());
        name.is_some_and(|n| n.split(',').any(|c| c == controller))
            || std::fs::read_to_string(h.join("cgroup.controllers"))
                .is_ok_and(|c| c.split_whitespace().any(|c| c == controller))
    })
}

/// (major, minor) of a block device blkio can throttle, if the host has one.
fn a_block_device() -> Option<(u64, u64)> {
    if !hierarchy_has("blkio") && !hierarchy_has("io") {
        return None;
    }
    let mut devs: Vec<String> = std::fs::read_dir("/sys/block")
        .ok()?
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("dev")).ok())
        .collect();
    devs.sort();
    let (ma, mi) = devs.first()?.trim().split_once(':')?;
    Some((ma.parse().ok()?, mi.parse().ok()?))
}

/// Steps this host may not reach (no such controller): a trial that does not reach them says
/// SKIP instead of failing.
fn optional(step: &str) -> bool {
    match step {
        "cgroup:net-cls-written" => !hierarchy_has("net_cls"),
        "cgroup:net-prio-written" => !hierarchy_has("net_prio"),
        "cgroup:hugetlb-written" => !hierarchy_has("hugetlb"),
        "cgroup:blkio-written" => a_block_device().is_none(),
        "cgroup:dir-made" => !cgroup_hierarchies()
            .iter()
            .any(|h| !h.join("cgroup.controllers").exists()),
        _ => false,
    }
}

/// What a trial ran: the command's exit status and its stderr.
struct Ran {
    status: ExitStatus,
    stderr: String,
}

/// `berth --root R ARGS…` with `env`, its output in files beside the bundle (a container keeps
/// inherited pipes open), as a child to wait for or kill.
fn spawn(rt: &Runtime, b: &Bundle, args: &[&str], env: Option<&str>, tag: &str) -> (Child, String) {
    let err = b.path().join(format!("{tag}.stderr"));
    let mut cmd = rt.cmd();
    cmd.args(args)
        .stdout(std::fs::File::create(b.path().join(format!("{tag}.stdout"))).unwrap())
        .stderr(std::fs::File::create(&err).unwrap());
    if let Some(f) = env {
        cmd.env("BERTH_FAULT", f);
    } else {
        cmd.env_remove("BERTH_FAULT");
    }
    (cmd.spawn().expect("spawn berth"), err.display().to_string())
}

fn wait(mut child: Child, err: &str, what: &str) -> Ran {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let stderr = std::fs::read_to_string(err).unwrap_or_default();
            return Ran { status, stderr };
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: did not finish within 30 s");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn berth_env(rt: &Runtime, b: &Bundle, args: &[&str], env: Option<&str>) -> Ran {
    let (child, err) = spawn(rt, b, args, env, "cmd");
    wait(child, &err, &format!("{env:?} berth {args:?}"))
}

fn must(rt: &Runtime, b: &Bundle, args: &[&str]) {
    let r = berth_env(rt, b, args, None);
    assert!(
        r.status.success(),
        "berth {args:?}: {}: {}",
        r.status,
        r.stderr
    );
}

/// The commands (before the one under test) that bring a container to where `step` is
/// reached, and that command.
fn scenario(step: &str, b: &Bundle, id: &str, pid_file: &str) -> (Vec<Vec<String>>, Vec<String>) {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let bp = b.path_str();
    let create = s(&["create", "--pid-file", pid_file, "--bundle", bp, id]);
    let exec = s(&[
        "exec",
        "--detach",
        "--pid-file",
        pid_file,
        id,
        "sh",
        "-c",
        &format!("sleep 30; true # exec {bp}"),
    ]);
    match step.split(':').next().unwrap() {
        "create" | "cgroup" => (vec![], create),
        "start" => (vec![create], s(&["start", id])),
        "run" => (vec![], s(&["run", "--detach", "--bundle", bp, id])),
        "exec" => (vec![create, s(&["start", id])], exec),
        "delete" => (
            vec![create, s(&["start", id])],
            s(&["delete", "--force", id]),
        ),
        other => panic!("no scenario for steps of {other:?}"),
    }
}

/// `state ID` answers by what is on disk: the JSON of a container with state, "interrupted"
/// for a directory without state.json, "does not exist" without a directory.
fn check_state(rt: &Runtime, b: &Bundle, id: &str, ctx: &str) {
    let dir = rt.root.path().join(id);
    let has_dir = dir.is_dir();
    let has_state = dir.join("state.json").exists();
    let o = rt.berth(&["state", id]);
    let err = stderr(&o);
    if has_state {
        assert!(o.status.success(), "{ctx}: state failed: {err}");
        let v: Value = serde_json::from_slice(&o.stdout).expect("state JSON");
        assert_eq!(v["id"], id, "{ctx}");
        let status = v["status"].as_str().unwrap_or_default();
        assert!(
            ["created", "running", "stopped"].contains(&status),
            "{ctx}: state says {status}"
        );
        assert_eq!(v["bundle"], b.path_str(), "{ctx}");
    } else {
        let want = if has_dir {
            "interrupted"
        } else {
            "does not exist"
        };
        assert_one_error_line(&o, &[want]);
    }
    assert!(
        !err.contains("corrupt") && !err.contains("panick"),
        "{ctx}: {err}"
    );
    // `list` works and shows the container exactly when its directory exists.
    let o = rt.berth(&["list", "--format", "json"]);
    assert!(o.status.success(), "{ctx}: list failed: {}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("list JSON");
    let listed = v
        .as_array()
        .is_some_and(|a| a.iter().any(|c| c["id"] == id));
    assert_eq!(listed, has_dir, "{ctx}: list: {v}");
}

/// `delete --force` succeeds and nothing of the container is left.
fn clean_up(rt: &Runtime, b: &Bundle, id: &str, ctx: &str) {
    let o = rt.berth(&["delete", "--force", id]);
    assert!(o.status.success(), "{ctx}: delete --force: {}", stderr(&o));
    assert_nothing_left(rt, id, b);
    assert!(
        std::fs::read_dir(rt.root.path()).unwrap().next().is_none(),
        "{ctx}: the root is not empty: {:?}",
        std::fs::read_dir(rt.root.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect::<Vec<_>>()
    );
}

/// One trial: `step` with `action`. Returns whether the point was reached.
fn trial(rt: &Runtime, b: &Bundle, step: &str, action: &str, n: usize) -> bool {
    let id = format!("f{n}-{}", std::process::id());
    rt.track(&id);
    let ctx = format!("{step}:{action}");
    let pid_file = b.path().join(format!("{id}.pid")).display().to_string();
    let (before, cmd) = scenario(step, b, &id, &pid_file);
    for args in &before {
        must(rt, b, &args.iter().map(String::as_str).collect::<Vec<_>>());
    }
    let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let r = berth_env(rt, b, &args, Some(&ctx));
    let reached = r
        .stderr
        .contains(&format!("berth: fault injected at {step}\n"));
    if reached {
        match action {
            "exit" => assert_eq!(r.status.code(), Some(99), "{ctx}: {}", r.stderr),
            "kill" => assert_eq!(
                r.status.signal(),
                Some(libc::SIGKILL),
                "{ctx}: {}",
                r.stderr
            ),
            _ => {
                assert!(!r.status.success(), "{ctx}: succeeded");
                let l = lines(&r.stderr);
                assert_eq!(
                    l.len(),
                    2,
                    "{ctx}: marker and one error line:\n{}",
                    r.stderr
                );
                assert!(
                    l[1].contains(&format!("{step} (injected fault)")) && l[1].contains("No space"),
                    "{ctx}: the error does not name the step: {}",
                    l[1]
                );
                errno_undone(rt, b, step, &id, &ctx);
            }
        }
    } else {
        assert!(
            r.status.success(),
            "{ctx}: failed without reaching the point: {}",
            r.stderr
        );
    }
    assert!(!r.stderr.contains("panicked"), "{ctx}: {}", r.stderr);
    check_state(rt, b, &id, &ctx);
    clean_up(rt, b, &id, &ctx);
    let _ = std::fs::remove_file(&pid_file);
    reached
}

/// After an injected error, the failed command's own work is undone: a failed create or run
/// leaves nothing at all; a failed exec leaves no process of its own.
fn errno_undone(rt: &Runtime, b: &Bundle, step: &str, id: &str, ctx: &str) {
    if ["create", "cgroup", "run"].contains(&step.split(':').next().unwrap()) {
        let mut t = Vec::new();
        let clean = wait_until(Duration::from_secs(2), || {
            t = traces(rt, id, b);
            t.is_empty()
        });
        assert!(clean, "{ctx}: the failed command left:\n{}", t.join("\n"));
    }
    if step.starts_with("exec:") {
        let mark = format!("# exec {}", b.path_str());
        let mut left = Vec::new();
        let gone = wait_until(Duration::from_secs(2), || {
            left = processes()
                .into_iter()
                .filter(|(_, c)| c.contains(&mark))
                .collect();
            left.is_empty()
        });
        assert!(gone, "{ctx}: the failed exec left its process: {left:?}");
    }
}

/// Every step of one command family, with each action.
fn all_trials(test: &str, families: &[&str], userns: bool, only: Option<&str>) {
    if skip(test) {
        return;
    }
    let rt = Runtime::new();
    let b = bundle(userns);
    let mut n = 0;
    for step in steps() {
        let family = step.split(':').next().unwrap();
        if !families.contains(&family) || only.is_some_and(|o| o != step) {
            continue;
        }
        if only.is_none() && step == "create:id-maps-written" {
            continue; // its own test, with a user namespace
        }
        let mut reached = 0;
        for action in ACTIONS {
            n += 1;
            reached += trial(&rt, &b, step, action, n) as usize;
        }
        if reached == 0 && optional(step) {
            println!("SKIP: {step}: not reached on this host (no such controller)");
        } else {
            assert_eq!(reached, ACTIONS.len(), "{step}: not reached by every trial");
        }
    }
    println!("{test}: {n} trials");
}

#[test]
fn faults_in_create() {
    all_trials("faults_in_create", &["create", "cgroup"], false, None);
}

#[test]
fn faults_in_create_with_a_user_namespace() {
    if skip_without_namespace("faults_in_create_with_a_user_namespace", "user") {
        return;
    }
    all_trials(
        "faults_in_create_with_a_user_namespace",
        &["create"],
        true,
        Some("create:id-maps-written"),
    );
}

#[test]
fn faults_in_start_run_exec_and_delete() {
    all_trials(
        "faults_in_start_run_exec_and_delete",
        &["start", "run", "exec", "delete"],
        false,
        None,
    );
}

/// Every `fault::point("…")` in the sources names a step of STEPS, and every step has a point.
#[test]
fn every_fault_point_is_listed_and_every_step_placed() {
    let mut found = std::collections::BTreeSet::new();
    fn walk(dir: &Path, found: &mut std::collections::BTreeSet<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, found);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let s = std::fs::read_to_string(&p).unwrap();
                for part in s.split("fault::point(\"").skip(1) {
                    found.insert(part.split('"').next().unwrap().to_string());
                }
            }
        }
    }
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut found,
    );
    let listed: std::collections::BTreeSet<String> =
        steps().into_iter().map(str::to_string).collect();
    assert!(listed.len() > 20, "STEPS parsed: {listed:?}");
    assert_eq!(found, listed, "points in src/ vs STEPS in src/fault.rs");
}

// -- random-delay SIGKILLs --------------------------------------------------------------------

/// A small deterministic generator (xorshift64*), seeded from BERTH_FAULT_SEED or the clock.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// N random trials: one of create, start, run -d, exec, delete is SIGKILLed 0–15 ms after it
/// started; then the same checks as above. BERTH_FAULT_TRIALS sets N (default 100); the seed
/// is printed, and BERTH_FAULT_SEED replays it.
#[test]
fn random_sigkills() {
    if skip("random_sigkills") {
        return;
    }
    let seed = test_seed("BERTH_FAULT_SEED");
    let trials: usize = std::env::var("BERTH_FAULT_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    println!("random_sigkills: seed {seed} (replay with BERTH_FAULT_SEED={seed}), {trials} trials");
    let mut rng = Rng(seed);
    let rt = Runtime::new();
    let b = bundle(false);
    let families = ["create", "start", "run", "exec", "delete"];
    let t0 = Instant::now();
    let mut killed_midway = 0;
    for n in 0..trials {
        let family = families[(rng.next() % families.len() as u64) as usize];
        let delay = Duration::from_micros(rng.next() % 15_000);
        let id = format!("r{n}-{}", std::process::id());
        rt.track(&id);
        let ctx = format!("seed {seed} trial {n}: {family} killed after {delay:?}");
        let pid_file = b.path().join(format!("{id}.pid")).display().to_string();
        let (before, cmd) = scenario(&format!("{family}:"), &b, &id, &pid_file);
        for args in &before {
            must(
                &rt,
                &b,
                &args.iter().map(String::as_str).collect::<Vec<_>>(),
            );
        }
        let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let (mut child, err) = spawn(&rt, &b, &args, None, "rand");
        std::thread::sleep(delay);
        // SAFETY: kill(2) on our own child, not yet reaped (its pid cannot be reused).
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let status = child.wait().unwrap();
        let stderr = std::fs::read_to_string(&err).unwrap_or_default();
        killed_midway += (status.signal() == Some(libc::SIGKILL)) as usize;
        assert!(
            status.success() || status.signal() == Some(libc::SIGKILL),
            "{ctx}: {status}: {stderr}"
        );
        check_state(&rt, &b, &id, &ctx);
        clean_up(&rt, &b, &id, &ctx);
        let _ = std::fs::remove_file(&pid_file);
    }
    println!(
        "random_sigkills: {trials} trials, {killed_midway} killed before finishing, {:?}",
        t0.elapsed()
    );
}

/// The fault hook is absent from release builds: BERTH_FAULT is not even read (its name is
/// not in the binary). Built only when a release binary exists (scripts build debug).
#[test]
fn release_binary_has_no_fault_hook() {
    let release =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("target/x86_64-unknown-linux-gnu/release/berth");
    let release = std::env::var_os("CARGO_TARGET_DIR")
        .map(|d| Path::new(&d).join("x86_64-unknown-linux-gnu/release/berth"))
        .filter(|p| p.exists())
        .unwrap_or(release);
    if !release.exists() {
        println!("SKIP: release_binary_has_no_fault_hook: no release build at {release:?}");
        return;
    }
    let bin = std::fs::read(&release).unwrap();
    for needle in ["BERTH_FAULT", "fault injected", "create:state-saved"] {
        assert!(
            !bin.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{release:?} contains {needle:?}"
        );
    }
    // Its counterpart: the debug build has it (so the search above is not vacuous).
    let debug = std::fs::read(env!("CARGO_BIN_EXE_berth")).unwrap();
    assert!(debug.windows(11).any(|w| w == b"BERTH_FAULT"));
}

/// Found by the `exec:pid-file-written` errno trial: an `exec` whose pid file cannot be
/// written reports the error and must not leave the process it started running (runc
/// terminates it). Here the failure is a real one: the pid file's directory does not exist.
#[test]
fn an_exec_with_an_unwritable_pid_file_leaves_no_process() {
    let rt = Runtime::new();
    let b = bundle(false);
    let id = unique_id("exec-pidf");
    rt.track(&id);
    must(&rt, &b, &["run", "--detach", "--bundle", b.path_str(), &id]);
    let pf = b.path().join("no/such/dir/pid");
    let mark = format!("sleep 30; true # exec {}", b.path_str());
    let args = [
        "exec",
        "--detach",
        "--pid-file",
        pf.to_str().unwrap(),
        &id,
        "sh",
        "-c",
        &mark,
    ];
    let r = berth_env(&rt, &b, &args, None);
    assert!(!r.status.success(), "exec succeeded");
    assert_eq!(lines(&r.stderr).len(), 1, "one error line: {}", r.stderr);
    assert!(r.stderr.contains("--pid-file"), "{}", r.stderr);
    errno_undone(&rt, &b, "exec:pid-file-written", &id, "exec --pid-file");
    clean_up(&rt, &b, &id, "exec --pid-file");
}

/// Found by `random_sigkills` (a create killed 6–10 ms in): a create killed between making its
/// directory under a temporary name and renaming it to the id leaves `:new-<pid>-<time>`, and
/// no id to delete it by. `delete --force` removes such directories of dead creators.
#[test]
fn delete_removes_the_directory_of_a_create_killed_before_it_had_an_id() {
    let rt = Runtime::new();
    let b = bundle(false);
    let id = unique_id("new-dir");
    let mut dead = std::process::Command::new("true").spawn().unwrap();
    let pid = dead.id();
    dead.wait().unwrap();
    let stale = rt
        .root
        .path()
        .join(format!(":new-{pid}-2026-01-01T00:00:00Z"));
    std::fs::create_dir_all(&stale).unwrap();
    must(&rt, &b, &["delete", "--force", &id]);
    assert!(!stale.exists(), "{stale:?} is left");
    clean_up(&rt, &b, &id, "stale :new- directory");
}
