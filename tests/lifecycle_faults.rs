//! Lifecycle faults (issue 15): failures after the init exists, commands racing on one
//! container, a `start` killed half-way, large states, interrupted creates in `list`. Each
//! test drives the real binary and checks that the host is left as the runtime says.

mod common;
use common::*;

use std::process::Output;

/// Runs a command whose container may outlive it (output in files beside the bundle, see
/// [`Runtime::detached`]) and returns what it printed.
fn detached_output(rt: &Runtime, args: &[&str], b: &Bundle) -> Output {
    let d = rt.detached(args, b.path(), args[0]);
    Output {
        status: d.status,
        stdout: d.stdout().into_bytes(),
        stderr: d.stderr().into_bytes(),
    }
}

// -- 1. A create that fails after its init exists undoes everything. ----------------------

/// `create`/`run` with a pid file that cannot be written: the init already exists when the
/// pid file is written, so the failure must kill it and remove its cgroups and state.
fn unwritable_pid_file(verb: &str, name: &str) {
    let rt = Runtime::new();
    let id = unique_id(name);
    // Not a lone command, so that the id stays on the program's command line too.
    let b = sh(&format!("touch /out/ran; sleep 30; true # {id}"));
    let pf = b.path().join("no/such/dir/pid");
    let mut args = vec![verb, "--pid-file", pf.to_str().unwrap()];
    if verb == "run" {
        args.push("--detach");
    }
    args.extend_from_slice(&["--bundle", b.path_str(), &id]);
    let o = detached_output(&rt, &args, &b);
    assert_one_error_line(&o, &["--pid-file"]);
    assert!(!b.out().join("ran").exists(), "the program ran");
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn create_with_an_unwritable_pid_file_leaves_nothing() {
    unwritable_pid_file("create", "pidf-create");
}

#[test]
fn run_with_an_unwritable_pid_file_leaves_nothing() {
    unwritable_pid_file("run", "pidf-run");
}
