//! `--trace` and `BERTH_TRACE=1`: one `trace` line per step with its offset and duration, a
//! summary line at the end, in the `--log` file's format; nothing when off.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// `berth --trace --log LOG [--log-format json] ARGS…` (no --trace when `trace` is false).
fn traced(rt: &Runtime, trace: bool, log: &Path, json: bool, args: &[&str]) -> Command {
    let mut c = rt.cmd();
    c.env_remove("BERTH_TRACE");
    c.args(global_flags(trace, log, json)).args(args);
    c
}

/// `[--trace] --log LOG [--log-format json]`.
fn global_flags(trace: bool, log: &Path, json: bool) -> Vec<String> {
    let mut f = Vec::new();
    if trace {
        f.push("--trace".to_string());
    }
    f.extend(["--log".to_string(), log.to_str().unwrap().to_string()]);
    if json {
        f.extend(["--log-format".to_string(), "json".to_string()]);
    }
    f
}

/// `berth --trace --log LOG --log-format json ARGS…`, which must succeed; its trace lines.
fn traced_ok(rt: &Runtime, log: &Path, args: &[&str]) -> Vec<Value> {
    let o = capture(&mut traced(rt, true, log, true, args));
    assert!(o.status.success(), "berth {args:?}: {o:?}");
    trace_lines(log)
}

/// [`traced`] `run --bundle B ID` for a fresh id named after `name`.
fn traced_run(
    rt: &Runtime,
    trace: bool,
    log: &Path,
    json: bool,
    b: &Bundle,
    name: &str,
) -> Command {
    let id = unique_id(name);
    rt.track(&id);
    traced(
        rt,
        trace,
        log,
        json,
        &["run", "--bundle", b.path_str(), &id],
    )
}

fn json_lines(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn trace_lines(log: &Path) -> Vec<Value> {
    json_lines(log)
        .into_iter()
        .filter(|v| v["level"] == "trace")
        .collect()
}

fn steps(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .filter(|v| v["step"] != "total")
        .map(|v| v["step"].as_str().expect("step is a string").to_string())
        .collect()
}

/// Every step line has integer offset_us/duration_us and a msg naming them; per process the
/// offsets never decrease; exactly one summary line, the last, counting the command's own steps.
fn check_shape(lines: &[Value]) {
    let mut last: BTreeMap<u64, u64> = BTreeMap::new();
    let mut own = 0;
    let summary: Vec<&Value> = lines.iter().filter(|v| v["step"] == "total").collect();
    assert_eq!(summary.len(), 1, "one summary line: {lines:#?}");
    let summary = summary[0];
    assert_eq!(lines.last(), Some(summary), "the summary comes last");
    let main_pid = summary["pid"].as_u64().expect("pid");
    for v in lines.iter().filter(|v| v["step"] != "total") {
        let step = v["step"].as_str().unwrap();
        let off = v["offset_us"]
            .as_u64()
            .unwrap_or_else(|| panic!("offset_us: {v}"));
        let dur = v["duration_us"]
            .as_u64()
            .unwrap_or_else(|| panic!("duration_us: {v}"));
        let msg = v["msg"].as_str().unwrap();
        assert!(
            msg.starts_with(&format!("trace: {step} +{off}us {dur}us")),
            "{msg}"
        );
        assert!(v["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{v}");
        let pid = v["pid"].as_u64().expect("pid");
        let prev = last.insert(pid, off).unwrap_or(0);
        assert!(
            off >= prev,
            "offsets decrease in pid {pid}: {prev} then {v}"
        );
        if pid == main_pid {
            own += 1;
        }
    }
    let total = summary["total_us"].as_u64().expect("total_us");
    assert_eq!(summary["steps"].as_u64(), Some(own), "{summary}");
    assert_eq!(
        summary["msg"].as_str().unwrap(),
        format!("trace: total {total}us, {own} steps")
    );
    let max_end = lines
        .iter()
        .filter(|v| v["pid"].as_u64() == Some(main_pid) && v["step"] != "total")
        .map(|v| v["offset_us"].as_u64().unwrap() + v["duration_us"].as_u64().unwrap())
        .max()
        .unwrap_or(0);
    assert!(
        total >= max_end,
        "total {total} < last step's end {max_end}"
    );
}

fn run_output(o: &Output) -> (String, Option<i32>) {
    (stdout(o), o.status.code())
}

#[test]
fn run_with_trace_logs_each_step_as_json() {
    let rt = Runtime::new();
    let b = sh("echo out-$((6*7)); exit 3");
    let log = b.path().join("trace.log");
    let o = capture(&mut traced_run(&rt, true, &log, true, &b, "trace-json"));
    assert_eq!(run_output(&o), ("out-42\n".to_string(), Some(3)), "{o:?}");
    assert_eq!(stderr(&o), "", "nothing on stderr with --log");
    let lines = trace_lines(&log);
    check_shape(&lines);
    let s = steps(&lines);
    for want in [
        "config",
        "validate",
        "state-dir",
        "cgroup",
        "clone",
        "resources",
        "mounts",
        "pivot-root",
        "rootfs-finish",
        "start-wait",
        "exec-prepare",
        "start",
        "wait",
        "kill",
        "cgroup-remove",
        "state-remove",
    ] {
        assert!(s.iter().any(|x| x == want), "no {want:?} step in {s:?}");
    }
    // The init's steps come from the init (another pid), and the mounts line counts them.
    let pid_of = |step: &str| {
        lines
            .iter()
            .find(|v| v["step"] == step)
            .map(|v| v["pid"].clone())
            .unwrap()
    };
    assert_ne!(pid_of("mounts"), pid_of("clone"));
    let mounts = lines.iter().find(|v| v["step"] == "mounts").unwrap();
    let want = b.config["mounts"].as_array().unwrap().len() as u64;
    assert_eq!(mounts["count"].as_u64(), Some(want), "{mounts}");
    // The same run without --trace: the same output and status, and no trace line.
    let log2 = b.path().join("plain.log");
    let o2 = capture(&mut traced_run(&rt, false, &log2, true, &b, "trace-off"));
    assert_eq!(run_output(&o2), run_output(&o));
    assert!(trace_lines(&log2).is_empty());
}

#[test]
fn text_lines_are_logrus_style() {
    let rt = Runtime::new();
    let b = sh("true");
    let log = b.path().join("trace.log");
    let o = capture(&mut traced_run(&rt, true, &log, false, &b, "trace-text"));
    assert!(o.status.success(), "{o:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    let re_step = |l: &str| -> Option<(String, u64, u64)> {
        let rest = l.strip_prefix("time=\"")?;
        let (time, rest) = rest.split_once("\" level=trace msg=\"trace: ")?;
        if !time.ends_with('Z') {
            return None;
        }
        let (msg, fields) = rest.split_once('"')?;
        let mut w = msg.split(' ');
        let step = w.next()?.to_string();
        let off = w
            .next()?
            .strip_prefix('+')?
            .strip_suffix("us")?
            .parse()
            .ok()?;
        let dur = w.next()?.strip_suffix("us")?.parse().ok()?;
        if step != "total" {
            assert!(fields.contains(&format!(" step={step}")), "{l}");
            assert!(fields.contains(&format!(" offset_us={off}")), "{l}");
        }
        Some((step, off, dur))
    };
    let mut n = 0;
    for l in text.lines() {
        if l.contains("msg=\"trace: total ") {
            assert!(l.contains(" level=trace "), "{l}");
            continue;
        }
        let (step, ..) = re_step(l).unwrap_or_else(|| panic!("not a trace line: {l}"));
        assert!(!step.is_empty());
        n += 1;
    }
    assert!(n >= 10, "only {n} trace lines:\n{text}");
    assert_eq!(
        text.lines()
            .filter(|l| l.contains("msg=\"trace: total "))
            .count(),
        1,
        "{text}"
    );
}

#[test]
fn berth_trace_env_turns_it_on_only_with_1() {
    let rt = Runtime::new();
    let b = sh("true");
    let run = |value: Option<&str>, tag: &str| -> Vec<Value> {
        let log = b.path().join(format!("{tag}.log"));
        let id = unique_id(tag);
        rt.track(&id);
        let mut c = traced(
            &rt,
            false,
            &log,
            true,
            &["run", "--bundle", b.path_str(), &id],
        );
        if let Some(v) = value {
            c.env("BERTH_TRACE", v);
        }
        let o = capture(&mut c);
        assert!(o.status.success(), "{o:?}");
        trace_lines(&log)
    };
    let on = run(Some("1"), "env-on");
    check_shape(&on);
    assert!(steps(&on).iter().any(|s| s == "mounts"), "{on:#?}");
    assert!(run(Some("0"), "env-zero").is_empty());
    assert!(run(Some("yes"), "env-yes").is_empty());
    assert!(run(None, "env-unset").is_empty());
}

#[test]
fn without_log_trace_lines_go_to_stderr() {
    let rt = Runtime::new();
    let b = sh("echo hello");
    let id = unique_id("trace-stderr");
    rt.track(&id);
    let o = capture(rt.cmd().env_remove("BERTH_TRACE").args([
        "--trace",
        "run",
        "--bundle",
        b.path_str(),
        &id,
    ]));
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&o), "hello\n");
    let err = stderr(&o);
    let l = lines(&err);
    assert!(
        l.iter().all(|l| l.contains(" level=trace msg=\"trace: ")),
        "{err}"
    );
    assert!(l.iter().any(|l| l.ends_with(" step=clone")), "{err}");
    // The init's own steps need --log: its stderr is the container's.
    assert!(!l.iter().any(|l| l.ends_with(" step=mounts")), "{err}");
    assert!(l.last().unwrap().contains("msg=\"trace: total "), "{err}");
}

#[test]
fn exec_and_delete_have_their_own_steps() {
    let rt = Runtime::new();
    let b = sh("sleep 100");
    let id = unique_id("trace-exec");
    rt.create(&id, &b);
    rt.ok(&["start", &id]);
    let log = b.path().join("exec.log");
    let o = capture(&mut traced(
        &rt,
        true,
        &log,
        true,
        &["exec", &id, "sh", "-c", "echo in-$((2+3))"],
    ));
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&o), "in-5\n");
    let lines = trace_lines(&log);
    check_shape(&lines);
    let s = steps(&lines);
    for want in [
        "load",
        "config",
        "exec",
        "join",
        "settings",
        "exec-prepare",
        "wait",
    ] {
        assert!(
            s.iter().any(|x| x == want),
            "exec: no {want:?} step in {s:?}"
        );
    }
    let lines = traced_ok(
        &rt,
        &b.path().join("delete.log"),
        &["delete", "--force", &id],
    );
    check_shape(&lines);
    assert_eq!(
        steps(&lines),
        ["kill", "cgroup-remove", "state-remove"],
        "{lines:#?}"
    );
    assert_nothing_left(&rt, &id, &b);
}

/// `berth --trace create` of `b`, which must fail with one error line containing `needle` (and
/// one error line in the log); returns the id and the steps logged.
fn failed_create(rt: &Runtime, b: &Bundle, name: &str, needle: &str) -> (String, Vec<String>) {
    let log = b.path().join(format!("{name}.log"));
    let id = unique_id(name);
    rt.track(&id);
    let create = ["create", "--bundle", b.path_str(), &id];
    let o = capture(&mut traced(rt, true, &log, true, &create));
    assert_one_error_line(&o, &[needle]);
    let all = json_lines(&log);
    let errors = all.iter().filter(|v| v["level"] == "error").count();
    assert_eq!(errors, 1, "{all:#?}");
    let lines = trace_lines(&log);
    check_shape(&lines);
    (id, steps(&lines))
}

#[test]
fn a_failing_create_logs_its_steps_up_to_the_failure() {
    let rt = Runtime::new();
    let b = sh("true");
    std::fs::remove_dir_all(b.rootfs()).unwrap();
    let (id, s) = failed_create(&rt, &b, "trace-fail", "rootfs");
    assert!(s.iter().any(|x| x == "config"), "{s:?}");
    // It failed before its first side effect: nothing was made, nothing to undo.
    assert!(!s.iter().any(|x| x == "state-dir" || x == "clone"), "{s:?}");
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn a_create_failing_in_the_init_logs_the_init_steps_and_undoes_everything() {
    let rt = Runtime::new();
    // A program the init does not find in the rootfs: the init fails in its settings step,
    // after the mounts and pivot_root.
    let mut b = sh("true");
    b.args(&["/nonexistent-berth-trace"]);
    let (id, s) = failed_create(&rt, &b, "trace-fail-init", "nonexistent-berth-trace");
    for want in [
        "config",
        "state-dir",
        "cgroup",
        "clone",
        "mounts",
        "pivot-root",
        "settings",
        "undo",
    ] {
        assert!(s.iter().any(|x| x == want), "no {want:?} step in {s:?}");
    }
    // Nothing after the failure: no READY, no state saved.
    assert!(!s.iter().any(|x| x == "state-save"), "{s:?}");
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn seccomp_step_tells_a_compile_from_a_cache_hit() {
    let rt = Runtime::new();
    let mut b = sh("echo filtered");
    b.edit(|c| {
        c["linux"]["seccomp"] = serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["kexec_load"], "action": "SCMP_ACT_ERRNO"}]
        });
    });
    let cache = tempfile::tempdir().unwrap();
    let mut details = Vec::new();
    for (i, nnp) in [(0, true), (1, false)] {
        b.edit(|c| c["process"]["noNewPrivileges"] = nnp.into());
        let log = b.path().join(format!("seccomp{i}.log"));
        let id = unique_id(&format!("trace-seccomp{i}"));
        rt.track(&id);
        let mut c = traced(
            &rt,
            true,
            &log,
            true,
            &["run", "--bundle", b.path_str(), &id],
        );
        let o = capture(c.env("BERTH_SECCOMP_CACHE", cache.path()));
        assert_eq!(run_output(&o), ("filtered\n".to_string(), Some(0)), "{o:?}");
        let lines = trace_lines(&log);
        check_shape(&lines);
        let sc: Vec<&Value> = lines.iter().filter(|v| v["step"] == "seccomp").collect();
        assert_eq!(sc.len(), 1, "{lines:#?}");
        details.push(sc[0]["detail"].as_str().unwrap().to_string());
        // The identity steps are traced only where the filter comes after them (NNP).
        let identity = steps(&lines).iter().any(|s| s == "identity");
        assert_eq!(identity, nnp, "{lines:#?}");
    }
    assert_eq!(details, ["compiled", "cache hit"]);
}

#[test]
fn a_reexec_keeps_the_clock_and_the_count() {
    let rt = Runtime::new();
    // The host's pid namespace: the container's processes see Berth's, so Berth re-executes
    // from a read-only copy of itself (see selfprotect) before it makes anything.
    let mut b = sh("echo shared");
    b.without_namespace("pid");
    let log = b.path().join("reexec.log");
    let id = unique_id("trace-reexec");
    rt.track(&id);
    let run = ["--debug", "run", "--bundle", b.path_str(), &id];
    let o = capture(&mut traced(&rt, true, &log, true, &run));
    assert_eq!(run_output(&o), ("shared\n".to_string(), Some(0)), "{o:?}");
    let all = json_lines(&log);
    assert!(
        all.iter().any(|v| v["msg"]
            .as_str()
            .is_some_and(|m| m.starts_with("re-executing from a read-only copy"))),
        "no re-exec: {all:#?}"
    );
    let lines = trace_lines(&log);
    // One summary, offsets on from the first image's start, the count carried over.
    check_shape(&lines);
    let s = steps(&lines);
    let at = |name: &str| s.iter().position(|x| x == name);
    let reexec = at("reexec").unwrap_or_else(|| panic!("no reexec step: {s:?}"));
    assert_eq!(s.iter().filter(|x| *x == "config").count(), 2, "{s:?}");
    assert!(
        at("config") < Some(reexec) && at("clone") > Some(reexec),
        "{s:?}"
    );
}

#[test]
fn create_and_start_apart_and_hooks() {
    let rt = Runtime::new();
    let mut b = sh("sleep 100");
    let hook = serde_json::json!([{"path": "/bin/true"}]);
    b.edit(|c| {
        c["hooks"] = serde_json::json!({
            "createRuntime": hook, "createContainer": hook, "poststart": hook, "poststop": hook
        });
    });
    let id = unique_id("trace-apart");
    rt.track(&id);
    let create_log = b.path().join("create.log");
    let mut create = global_flags(true, &create_log, true);
    create.extend(["create", "--bundle", b.path_str(), &id].map(String::from));
    let create: Vec<&str> = create.iter().map(String::as_str).collect();
    let c = rt.detached(&create, b.path(), "create");
    c.assert_ok();
    let created = steps(&trace_lines(&create_log));
    for want in ["hook:createRuntime", "hook:createContainer", "state-save"] {
        assert!(
            created.iter().any(|x| x == want),
            "no {want:?} in {created:?}"
        );
    }
    assert!(!created.iter().any(|x| x == "start"), "{created:?}");
    let start_log = b.path().join("start.log");
    let lines = traced_ok(&rt, &start_log, &["start", &id]);
    check_shape(&lines);
    assert_eq!(steps(&lines), ["start", "hook:poststart"], "{lines:#?}");
    // The released init logs the rest of its steps to the file it inherited: create's.
    assert!(
        wait_until(Duration::from_secs(5), || {
            steps(&trace_lines(&create_log))
                .iter()
                .any(|x| x == "exec-prepare")
        }),
        "{:#?}",
        trace_lines(&create_log)
    );
    // Those come after create's summary, from the init.
    let all = trace_lines(&create_log);
    let total = all.iter().position(|v| v["step"] == "total").unwrap();
    check_shape(&all[..=total]);
    let create_pid = &all[total]["pid"];
    assert!(
        all[total + 1..].iter().all(|v| &v["pid"] != create_pid),
        "{all:#?}"
    );
    let s = steps(&traced_ok(
        &rt,
        &b.path().join("delete.log"),
        &["delete", "-f", &id],
    ));
    assert_eq!(s.last().map(String::as_str), Some("hook:poststop"), "{s:?}");
    assert_nothing_left(&rt, &id, &b);
}
