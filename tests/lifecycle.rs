//! The create/start/state/kill/delete lifecycle, driven through the real binary.

mod common;
use common::*;

#[test]
fn run_returns_the_container_exit_status_and_output() {
    let rt = Runtime::new();
    let b = Bundle::sh("echo hello; exit 7");
    let o = rt.run(&unique_id("exit7"), &b);
    assert_eq!(o.status.code(), Some(7), "stderr: {}", stderr(&o));
    assert_eq!(stdout(&o), "hello\n");
    assert!(rt.ids().is_empty(), "run removes the container afterwards");
}

#[test]
fn create_then_start_then_delete() {
    let rt = Runtime::new();
    let b = Bundle::sh("sleep 30");
    let id = unique_id("cycle");
    let bundle = b.path().to_str().unwrap();
    rt.ok(&["create", "--bundle", bundle, &id]);
    let st = rt.state(&id);
    assert_eq!(st["status"], "created");
    let pid = st["pid"].as_i64().unwrap();
    assert!(pid > 0 && std::path::Path::new(&format!("/proc/{pid}")).exists());
    rt.ok(&["start", &id]);
    assert_eq!(rt.state(&id)["status"], "running");
    rt.ok(&["kill", &id, "KILL"]);
    // A killed container is stopped once its init is gone; delete waits for that.
    rt.ok(&["delete", "--force", &id]);
    assert!(rt.ids().is_empty());
}
