//! The create/start/state/kill/delete lifecycle, driven through the real binary, as runc does
//! it: what each verb does in each state, and what it refuses.

mod common;
use common::*;

use std::path::Path;
use std::time::Duration;

#[test]
fn run_returns_the_container_exit_status_and_output() {
    let rt = Runtime::new();
    let b = sh("echo hello; exit 7");
    let id = unique_id("exit7");
    let o = rt.run_timeout(&id, &b, &[]);
    assert_eq!(o.status.code(), Some(7), "stderr: {}", stderr(&o));
    assert_eq!(stdout(&o), "hello\n");
    assert!(rt.ids().is_empty(), "run removes the container afterwards");
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn create_then_start_then_delete() {
    let rt = Runtime::new();
    let b = sh("sleep 30");
    let id = unique_id("cycle");
    rt.create(&id, &b);
    let st = rt.state(&id);
    assert_eq!(st["status"], "created");
    let pid = st["pid"].as_i64().unwrap();
    assert!(pid > 0 && Path::new(&format!("/proc/{pid}")).exists());
    rt.ok(&["start", &id]);
    assert_eq!(rt.status(&id), "running");
    rt.ok(&["kill", &id, "KILL"]);
    // A killed container is stopped once its init is gone; delete waits for that.
    rt.ok(&["delete", "--force", &id]);
    assert!(rt.ids().is_empty());
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn create_does_not_run_the_program_until_start() {
    let rt = Runtime::new();
    let b = sh("echo ran > /out/ran");
    let id = unique_id("notyet");
    rt.create(&id, &b);
    assert_eq!(rt.status(&id), "created");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !b.out().join("ran").exists(),
        "the program ran before start"
    );
    rt.ok(&["start", &id]);
    assert!(
        wait_for_file(&b.out().join("ran"), SECS10),
        "program never ran"
    );
    assert!(rt.wait_status(&id, "stopped", SECS10));
    rt.ok(&["delete", &id]);
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn stopped_container_reports_stopped_and_pid_0_until_deleted() {
    let rt = Runtime::new();
    let b = sh("true");
    let id = unique_id("stopped");
    rt.create(&id, &b);
    rt.ok(&["start", &id]);
    assert!(rt.wait_status(&id, "stopped", SECS10));
    let st = rt.state(&id);
    assert_eq!(st["pid"], 0, "runc reports pid 0 once stopped: {st}");
    assert_eq!(
        rt.ids(),
        vec![id.clone()],
        "a stopped container stays listed"
    );
    // Deleting a stopped container needs no --force.
    rt.ok(&["delete", &id]);
    assert!(rt.ids().is_empty());
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn start_of_a_running_container_fails_and_leaves_it_running() {
    let rt = Runtime::new();
    let b = sh("sleep 30");
    let id = unique_id("start2");
    rt.create(&id, &b);
    rt.ok(&["start", &id]);
    let pid = rt.pid(&id);
    let o = rt.berth(&["start", &id]);
    assert!(!o.status.success(), "second start succeeded");
    assert!(stderr(&o).contains(&id) || stderr(&o).contains("running"));
    assert_eq!(rt.status(&id), "running");
    assert_eq!(rt.pid(&id), pid);
}

#[test]
fn start_of_a_stopped_container_fails() {
    let rt = Runtime::new();
    let b = sh("true");
    let id = unique_id("startstopped");
    rt.create(&id, &b);
    rt.ok(&["start", &id]);
    assert!(rt.wait_status(&id, "stopped", SECS10));
    let o = rt.berth(&["start", &id]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("stopped"), "{}", stderr(&o));
}

#[test]
fn start_of_an_unknown_container_fails() {
    let rt = Runtime::new();
    let o = rt.berth(&["start", "no-such-container"]);
    assert_one_error_line(&o, &["no-such-container"]);
}

#[test]
fn delete_of_a_created_container_needs_no_force_and_kills_its_init() {
    // runc deletes a created (never started) container without --force.
    let rt = Runtime::new();
    let b = sh("echo ran > /out/ran");
    let id = unique_id("delcreated");
    rt.create(&id, &b);
    let pid = rt.pid(&id);
    rt.ok(&["delete", &id]);
    assert!(wait_until(SECS5, || !pid_alive(pid)), "init {pid} survived");
    assert!(!b.out().join("ran").exists());
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn delete_of_a_running_container_fails_without_force() {
    let rt = Runtime::new();
    let b = sh("sleep 30");
    let id = unique_id("delrunning");
    rt.create(&id, &b);
    rt.ok(&["start", &id]);
    let o = rt.berth(&["delete", &id]);
    assert!(
        !o.status.success(),
        "delete of a running container succeeded"
    );
    assert_eq!(lines(&stderr(&o)).len(), 1, "{}", stderr(&o));
    assert_eq!(
        rt.status(&id),
        "running",
        "a refused delete changed the container"
    );
    let pid = rt.pid(&id);
    rt.ok(&["delete", "--force", &id]);
    assert!(wait_until(SECS5, || !pid_alive(pid)));
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn kill_of_a_created_container_stops_it() {
    let rt = Runtime::new();
    let b = sh("sleep 30");
    let id = unique_id("killcreated");
    rt.create(&id, &b);
    rt.ok(&["kill", &id, "KILL"]);
    assert!(rt.wait_status(&id, "stopped", SECS10));
    rt.ok(&["delete", &id]);
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn kill_of_a_stopped_container_fails() {
    // runtime-spec: "Attempting to send a signal to a container that is not running MUST have
    // no effect on the container and MUST generate an error." (runc: "container not running")
    let rt = Runtime::new();
    let b = sh("true");
    let id = unique_id("killstopped");
    rt.create(&id, &b);
    rt.ok(&["start", &id]);
    assert!(rt.wait_status(&id, "stopped", SECS10));
    let o = rt.berth(&["kill", &id, "KILL"]);
    assert!(!o.status.success(), "kill of a stopped container succeeded");
    assert_eq!(rt.status(&id), "stopped");
}

#[test]
fn a_killed_container_can_be_deleted_and_its_id_reused() {
    let rt = Runtime::new();
    let b = sh("sleep 30");
    let id = unique_id("reuse");
    rt.create(&id, &b);
    rt.ok(&["start", &id]);
    rt.ok(&["kill", &id, "KILL"]);
    assert!(rt.wait_status(&id, "stopped", SECS10));
    rt.ok(&["delete", &id]);
    rt.create(&id, &b);
    assert_eq!(rt.status(&id), "created");
    rt.ok(&["delete", &id]);
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn config_changes_after_create_do_not_affect_the_container() {
    // runtime-spec lifecycle step 2: "Any updates to config.json after this step MUST NOT
    // affect the container."
    let rt = Runtime::new();
    let mut b = sh("echo first > /out/which");
    let id = unique_id("frozencfg");
    rt.create(&id, &b);
    b.args(&["sh", "-c", "echo second > /out/which"]);
    rt.ok(&["start", &id]);
    assert!(wait_for_file(&b.out().join("which"), SECS10));
    assert!(rt.wait_status(&id, "stopped", SECS10));
    assert_eq!(b.read_out("which"), "first\n");
}

#[test]
fn containers_are_independent() {
    let rt = Runtime::new();
    let b = sh("sleep 30");
    let (a, c) = (unique_id("indep-a"), unique_id("indep-c"));
    rt.create(&a, &b);
    rt.create(&c, &b);
    rt.ok(&["start", &a]);
    assert_eq!(rt.status(&a), "running");
    assert_eq!(rt.status(&c), "created");
    rt.ok(&["delete", "--force", &a]);
    assert_eq!(rt.status(&c), "created");
    let mut ids = rt.ids();
    ids.sort();
    assert_eq!(ids, vec![c.clone()]);
    rt.ok(&["delete", &c]);
    assert_nothing_left(&rt, &a, &b);
    assert_nothing_left(&rt, &c, &b);
}

#[test]
fn the_container_gets_its_own_cgroup_removed_at_delete() {
    let rt = Runtime::new();
    let b = sh("sleep 30");
    let id = unique_id("cgroup");
    rt.create(&id, &b);
    let pid = rt.pid(&id);
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        cg.lines().any(|l| l.ends_with(&format!("/{id}"))),
        "init is not in a cgroup named after the container:\n{cg}"
    );
    rt.ok(&["delete", "--force", &id]);
    assert_nothing_left(&rt, &id, &b);
}
