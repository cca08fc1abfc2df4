//! Berth next to runc 1.1 (installed as /usr/sbin/runc): what engines and users see from the
//! command line — `spec` output, help and version, error phrases, `--debug` log lines.

mod common;
use common::*;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

const RUNC: &str = "/usr/sbin/runc";

fn runc_present() -> bool {
    Path::new(RUNC).exists()
}

/// Runs `<bin> spec [extra]` in a fresh directory; returns the raw config.json.
fn spec_text(bin: &Path, extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(bin)
        .current_dir(dir.path())
        .arg("spec")
        .args(extra)
        .output()
        .unwrap();
    assert!(o.status.success(), "{} spec: {}", bin.display(), stderr(&o));
    std::fs::read_to_string(dir.path().join("config.json")).unwrap()
}

// ---- spec --------------------------------------------------------------------------------

/// `berth spec` writes runc 1.1's config field by field, except the differences documented in
/// src/cli/spec.rs, which are applied to runc's output here before comparing.
#[test]
fn spec_matches_runc_except_documented_differences() {
    if !runc_present() {
        println!("SKIP: {RUNC} not installed");
        return;
    }
    for extra in [&[][..], &["--rootless"][..]] {
        let berth_text = spec_text(&berth_bin(), extra);
        let runc_text = spec_text(Path::new(RUNC), extra);
        assert!(
            berth_text.starts_with("{\n\t\"") && berth_text.ends_with("}\n"),
            "tab-indented like runc's: {berth_text:.40}"
        );
        let berth: Value = serde_json::from_str(&berth_text).unwrap();
        let mut want: Value = serde_json::from_str(&runc_text).unwrap();
        // The documented differences.
        want["ociVersion"] = berth["ociVersion"].clone();
        assert_eq!(want["hostname"], "runc");
        want["hostname"] = "berth".into();
        let ns = want["linux"]["namespaces"].as_array_mut().unwrap();
        if !ns.iter().any(|n| n["type"] == "cgroup") {
            // runc adds it only on a cgroup v2 host, after "mount".
            let at = ns.iter().position(|n| n["type"] == "mount").unwrap() + 1;
            ns.insert(at, serde_json::json!({"type": "cgroup"}));
        }
        let caps = want["process"]["capabilities"].as_object_mut().unwrap();
        assert!(caps.remove("ambient").is_some(), "runc 1.1 writes ambient");
        if !extra.is_empty() {
            let mounts = want["mounts"].as_array_mut().unwrap();
            let n = mounts.len();
            mounts.retain(|m| m["destination"] != "/sys/fs/cgroup");
            assert_eq!(
                mounts.len(),
                n - 1,
                "runc's rootless spec mounts /sys/fs/cgroup"
            );
        }
        assert_eq!(berth, want, "berth spec {extra:?} vs runc spec {extra:?}");
    }
}

// ---- help and version --------------------------------------------------------------------

/// runc 1.1.5's verbs (`runc --help`) that Berth does not implement (none since checkpoint and
/// restore came).
const RUNC_VERBS_BERTH_LACKS: &[&str] = &[];

/// The verbs `runc --help` lists (the COMMANDS section, without `help, h`).
fn runc_verbs() -> Vec<String> {
    let o = Command::new(RUNC).arg("--help").output().unwrap();
    let out = stdout(&o);
    out.lines()
        .skip_while(|l| !l.starts_with("COMMANDS:"))
        .skip(1)
        .take_while(|l| l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .map(|v| v.trim_end_matches(',').to_string())
        .filter(|v| v != "help")
        .collect()
}

#[test]
fn help_is_printed_for_berth_and_every_runc_verb() {
    let o = Command::new(berth_bin()).arg("-h").output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let top = stdout(&o);
    assert!(top.contains("Usage: "), "{top}");
    let verbs = if runc_present() {
        runc_verbs()
    } else {
        println!("SKIP (partly): {RUNC} not installed; checking Berth's own verb list");
        [
            "create", "start", "run", "state", "kill", "delete", "list", "spec",
        ]
        .map(String::from)
        .to_vec()
    };
    assert!(verbs.len() > 10, "runc --help parsed: {verbs:?}");
    for v in &verbs {
        if RUNC_VERBS_BERTH_LACKS.contains(&v.as_str()) {
            continue;
        }
        let o = Command::new(berth_bin()).args([v, "-h"]).output().unwrap();
        assert!(o.status.success(), "berth {v} -h: {}", stderr(&o));
        let out = stdout(&o);
        assert!(
            out.contains(&format!("Usage: berth {v}")),
            "berth {v} -h: {out}"
        );
        assert!(
            top.contains(&format!("  {v} ")),
            "berth -h lists {v}: {top}"
        );
    }
    // What Berth lacks is refused as a usage error, on one line.
    for v in RUNC_VERBS_BERTH_LACKS {
        let o = Command::new(berth_bin()).args([v, "-h"]).output().unwrap();
        assert_one_error_line(&o, &["unrecognized subcommand", v]);
    }
}

#[test]
fn version_subcommand_prints_what_the_flag_prints() {
    let flag = Command::new(berth_bin()).arg("--version").output().unwrap();
    let short = Command::new(berth_bin()).arg("-v").output().unwrap();
    let verb = Command::new(berth_bin()).arg("version").output().unwrap();
    assert!(verb.status.success(), "berth version: {}", stderr(&verb));
    assert!(stdout(&flag).contains("version "), "{}", stdout(&flag));
    assert_eq!(stdout(&verb), stdout(&flag));
    assert_eq!(stdout(&short), stdout(&flag));
}

// ---- error wording -----------------------------------------------------------------------

/// A started container whose init sleeps (deleted with the runtime).
fn sleeping(rt: &Runtime, name: &str) -> String {
    let b = Bundle::sh("sleep 1000");
    let id = unique_id(name);
    rt.create(&id, &b);
    rt.ok(&["start", &id]);
    id
}

#[test]
fn exec_into_a_paused_container_uses_runcs_phrase() {
    let rt = Runtime::new();
    let id = sleeping(&rt, "rc-paused");
    rt.ok(&["pause", &id]);
    let o = rt.berth(&["exec", &id, "true"]);
    rt.ok(&["resume", &id]);
    assert_one_error_line(
        &o,
        &["cannot exec in a paused container", "--ignore-paused"],
    );
    rt.ok(&["delete", "--force", &id]);
}

#[test]
fn exec_cgroup_outside_the_container_uses_runcs_phrase() {
    let rt = Runtime::new();
    let id = sleeping(&rt, "rc-subcg");
    let o = rt.berth(&["exec", "--cgroup", "../escape", &id, "true"]);
    assert_one_error_line(&o, &["is not a sub cgroup path", "--cgroup"]);
    rt.ok(&["delete", "--force", &id]);
}

#[test]
fn seccomp_agent_nobody_listens_on_uses_runcs_phrase() {
    let rt = Runtime::new();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    // The socket file exists, but its listener is gone: connect() is refused.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let mut b = Bundle::sh("true");
    b.edit(|c| {
        c["linux"]["seccomp"] = serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": sock,
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]});
    });
    let id = unique_id("rc-agent");
    // The notify fd is handed over during `create`, as runc does.
    rt.track(&id);
    let o = rt.berth(&["create", "--bundle", b.path_str(), &id]);
    assert_one_error_line(
        &o,
        &[
            "failed to connect with seccomp agent",
            "linux.seccomp.listenerPath",
        ],
    );
    assert_nothing_left(&rt, &id, &b);
}

/// runc's fatal error on stderr is a logrus line with `level=error`; Berth's one line carries
/// the word too (`berth: error: …`), for usage errors as well as runtime ones.
#[test]
fn fatal_errors_on_stderr_say_error() {
    let rt = Runtime::new();
    let o = rt.berth(&["state", "no-such-container-rc"]);
    assert_one_error_line(&o, &["berth: error: ", "does not exist"]);
    let o = rt.berth(&["list", "--bogus-flag"]);
    assert_one_error_line(&o, &["berth: error: ", "--bogus-flag"]);
    let o = rt.berth(&[]);
    assert_one_error_line(&o, &["berth: error: ", "no command"]);
}

// ---- --debug -----------------------------------------------------------------------------

/// The `--log` file's lines as JSON values.
fn json_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn debug_msgs(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .filter(|v| v["level"] == "debug")
        .map(|v| v["msg"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn debug_logs_each_command_and_its_steps() {
    let rt = Runtime::new();
    let logs = tempfile::tempdir().unwrap();
    let mut b = Bundle::sh("sleep 1000");
    b.edit(|c| c["hooks"] = serde_json::json!({"createRuntime": [{"path": "/bin/true"}]}));
    let id = unique_id("rc-debug");
    rt.track(&id);
    let run = |verb: &str, args: &[&str], debug: bool| -> Vec<Value> {
        let log = logs.path().join(format!("{verb}-{debug}.log"));
        let mut cmd = rt.cmd();
        if debug {
            cmd.arg("--debug");
        }
        cmd.arg("--log")
            .arg(&log)
            .args(["--log-format", "json", verb]);
        let o = capture(cmd.args(args));
        assert!(o.status.success(), "{verb}: {}", stderr(&o));
        json_lines(&log)
    };
    let bundle = b.path_str().to_string();
    let steps = [
        ("create", vec!["--bundle", &bundle, &id]),
        ("start", vec![&id]),
        ("state", vec![&id]),
        ("kill", vec![&id, "KILL"]),
        ("delete", vec!["--force", &id]),
    ];
    for (verb, args) in &steps {
        let msgs = debug_msgs(&run(verb, args, true));
        let has = |needle: &str| msgs.iter().any(|m| m.contains(needle));
        assert!(
            msgs.first()
                .is_some_and(|m| m.starts_with("command line: ") && m.contains(verb)),
            "{verb}: the command line comes first: {msgs:?}"
        );
        assert!(has(&format!("{verb} {id}: ")), "{verb}: its step: {msgs:?}");
        assert!(has("exit status 0"), "{verb}: {msgs:?}");
        match *verb {
            "create" => {
                assert!(has("running createRuntime hook 0: /bin/true"), "{msgs:?}");
                assert!(has("state directory ") && has("init pid "), "{msgs:?}");
            }
            "kill" => assert!(has("signal 9 to init pid "), "{msgs:?}"),
            _ => {}
        }
        if *verb == "kill" {
            assert!(rt.wait_status(&id, "stopped", std::time::Duration::from_secs(5)));
        }
    }
    assert_nothing_left(&rt, &id, &b);
    // Without --debug: no debug line.
    let id2 = unique_id("rc-nodebug");
    rt.track(&id2);
    let quiet = [
        run("create", &["--bundle", &bundle, &id2], false),
        run("state", &[&id2], false),
        run("delete", &["--force", &id2], false),
    ];
    for lines in &quiet {
        assert!(debug_msgs(lines).is_empty(), "{lines:?}");
    }
    assert_nothing_left(&rt, &id2, &b);
}

/// Text format, no --log: logrus-style debug lines on stderr.
#[test]
fn debug_text_lines_go_to_stderr() {
    let rt = Runtime::new();
    let o = capture(rt.cmd().args(["--debug", "state", "no-such-rc-debug"]));
    let err = stderr(&o);
    let debug: Vec<&str> = err
        .lines()
        .filter(|l| l.contains(" level=debug "))
        .collect();
    assert!(
        debug
            .iter()
            .any(|l| l.contains("msg=\"command line: ") && l.starts_with("time=\"")),
        "{err}"
    );
    assert!(err.contains("does not exist"), "{err}");
}
