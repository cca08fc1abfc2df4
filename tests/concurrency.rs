//! Concurrency on one --root (issue 15 §2): many Berth commands at once on one state root,
//! on distinct containers and on one. Each test ends with an empty root and nothing left.

mod common;
use common::*;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// `berth --root R ARGS…` for a thread of its own, output in temporary files (a created
/// container keeps inherited pipes open).
fn berth_in(root: &str, args: &[&str]) -> Output {
    let mut c = Command::new(berth_bin());
    c.arg("--root").arg(root).args(args).stdin(Stdio::null());
    capture(&mut c)
}

/// Runs `n` commands at once (one thread each, released together) and returns their outputs.
fn storm(root: &str, n: usize, args: impl Fn(usize) -> Vec<String> + Sync) -> Vec<Output> {
    let barrier = std::sync::Barrier::new(n);
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..n)
            .map(|i| {
                let (barrier, args) = (&barrier, &args);
                s.spawn(move || {
                    let a = args(i);
                    barrier.wait();
                    berth_in(root, &a.iter().map(String::as_str).collect::<Vec<_>>())
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn bundle(id_mark: &str) -> Bundle {
    sh(&format!("echo ran >> /out/ran; sleep 30; true # {id_mark}"))
}

/// Nothing left under the root, and nothing of `ids` on the host.
fn assert_root_empty(rt: &Runtime, b: &Bundle, ids: &[String]) {
    for id in ids {
        assert_nothing_left(rt, id, b);
    }
    let left: Vec<_> = std::fs::read_dir(rt.root.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "root not empty: {left:?}");
}

fn assert_sane(o: &Output, what: &str) {
    let err = stderr(o);
    assert!(
        !err.contains("panicked") && !err.contains("corrupt"),
        "{what}: {err}"
    );
    assert!(
        o.status.code().is_some(),
        "{what}: killed by a signal: {}",
        o.status
    );
}

#[test]
fn fifty_parallel_creates_of_distinct_ids_all_succeed_and_are_listed_then_fifty_deletes() {
    let rt = Runtime::new();
    let b = bundle(rt.root_str());
    let root = rt.root_str().to_string();
    let ids: Vec<String> = (0..50).map(|i| unique_id(&format!("par{i}"))).collect();
    for id in &ids {
        rt.track(id);
    }
    let outs = storm(&root, 50, |i| {
        vec![
            "create".into(),
            "--bundle".into(),
            b.path_str().into(),
            ids[i].clone(),
        ]
    });
    for (id, o) in ids.iter().zip(&outs) {
        assert!(o.status.success(), "create {id}: {}", stderr(o));
    }
    let mut listed = rt.ids();
    listed.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(listed, want);
    for id in &ids {
        assert_eq!(rt.status(id), "created", "{id}");
    }
    let outs = storm(&root, 50, |i| vec!["delete".into(), ids[i].clone()]);
    for (id, o) in ids.iter().zip(&outs) {
        assert!(o.status.success(), "delete {id}: {}", stderr(o));
    }
    assert_root_empty(&rt, &b, &ids);
}

#[test]
fn twenty_parallel_creates_of_one_id_exactly_one_wins() {
    let rt = Runtime::new();
    let b = bundle(rt.root_str());
    let root = rt.root_str().to_string();
    let id = unique_id("one-id");
    rt.track(&id);
    let outs = storm(&root, 20, |_| {
        vec![
            "create".into(),
            "--bundle".into(),
            b.path_str().into(),
            id.clone(),
        ]
    });
    let won = outs.iter().filter(|o| o.status.success()).count();
    assert_eq!(won, 1, "winners: {won}");
    for o in outs.iter().filter(|o| !o.status.success()) {
        assert_one_error_line(o, &["already exists"]);
    }
    assert_eq!(rt.ids(), vec![id.clone()]);
    assert_eq!(rt.status(&id), "created");
    rt.ok(&["delete", &id]);
    assert_root_empty(&rt, &b, &[id]);
}

#[test]
fn ten_parallel_starts_of_one_container_run_its_process_once() {
    let rt = Runtime::new();
    let b = bundle(rt.root_str());
    let root = rt.root_str().to_string();
    let id = unique_id("starts");
    rt.create(&id, &b);
    let outs = storm(&root, 10, |_| vec!["start".into(), id.clone()]);
    let won = outs.iter().filter(|o| o.status.success()).count();
    assert_eq!(won, 1, "starts that succeeded: {won}");
    for o in outs.iter().filter(|o| !o.status.success()) {
        // runc: "cannot start an already running container" (or a stopped one, if it ended).
        assert_one_error_line(o, &["cannot start"]);
    }
    let ran = b.out().join("ran");
    assert!(wait_for_file(&ran, SECS10), "the process never ran");
    std::thread::sleep(Duration::from_millis(300));
    let lines = std::fs::read_to_string(&ran).unwrap();
    assert_eq!(lines, "ran\n", "the process ran more than once");
    rt.ok(&["delete", "--force", &id]);
    assert_root_empty(&rt, &b, &[id]);
}

#[test]
fn kill_delete_state_exec_storms_on_one_container() {
    let rt = Runtime::new();
    let b = bundle(rt.root_str());
    let root = rt.root_str().to_string();
    for round in 0..3 {
        let id = unique_id(&format!("storm{round}"));
        rt.track(&id);
        rt.ok(&["run", "--detach", "--bundle", b.path_str(), &id]);
        let verbs = [
            "state", "kill", "exec", "state", "kill", "exec", "delete", "state",
        ];
        let n = 24;
        let outs = storm(&root, n, |i| {
            let v = verbs_of(i, round, &verbs);
            let mut a: Vec<String> = vec![v.into()];
            match v {
                "kill" => a.extend([id.clone(), "0".into()]),
                "exec" => a.extend([id.clone(), "true".into()]),
                // the last one forces: every storm ends with the container gone
                "delete" if i >= n - verbs.len() => a.extend(["--force".into(), id.clone()]),
                _ => a.push(id.clone()),
            }
            a
        });
        for (i, o) in outs.iter().enumerate() {
            let what = format!("round {round} command {i}");
            assert_sane(o, &what);
            // An exec'd process killed by a concurrent `delete --force` exits 128+9, as its
            // exec reports it (no error of Berth's).
            let killed_exec = verbs_of(i, round, &verbs) == "exec" && o.status.code() == Some(137);
            if !o.status.success() && !killed_exec {
                // Failures are one clear line: the container moved on (deleted, not running).
                assert_one_error_line(o, &[]);
                let e = stderr(o);
                assert!(
                    e.contains("does not exist")
                        || e.contains("cannot")
                        || e.contains("stopped")
                        || e.contains("stopping")
                        || e.contains("running"),
                    "{what}: {e}"
                );
            }
        }
        let _ = rt.berth(&["delete", "--force", &id]);
        assert_nothing_left(&rt, &id, &b);
    }
    assert_root_empty(&rt, &b, &[]);
}

fn verbs_of<'a>(i: usize, round: usize, verbs: &[&'a str]) -> &'a str {
    verbs[(i + round) % verbs.len()]
}
