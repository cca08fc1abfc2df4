//! `--systemd-cgroup` on a host without systemd: every refusal is one line naming its field,
//! before anything is made. The driver against a real systemd is tested in a systemd "node"
//! (integration/systemd.sh), which boots one as PID 1 of a privileged container.

mod common;

use common::*;
use serde_json::json;

/// A bus address nobody listens on: the tests never depend on what the machine runs.
const NO_BUS: &str = "unix:path=/nonexistent/berth-test-system-bus";

fn refused(edit: impl FnOnce(&mut serde_json::Value), needles: &[&str]) {
    let id = unique_id("sdbad");
    let rt = Runtime::new();
    let mut b = Bundle::busybox();
    b.args(&["true"]).edit(edit);
    let o = capture(rt.cmd().env("DBUS_SYSTEM_BUS_ADDRESS", NO_BUS).args([
        "--systemd-cgroup",
        "run",
        "--bundle",
        b.path_str(),
        &id,
    ]));
    assert_one_error_line(&o, needles);
    assert_nothing_left(&rt, &id, &b);
    // Nor the unit's cgroup, in any hierarchy (the fs driver's share of it included).
    for h in cgroup_hierarchies() {
        let d = h.join("system.slice").join(format!("berth-{id}.scope"));
        assert!(!d.exists(), "{} was left", d.display());
    }
}

#[test]
fn malformed_systemd_cgroups_path_names_the_field_and_the_form() {
    for bad in [
        "foo",
        "a:b",
        "/kubepods/c1",
        "kube--pods.slice:p:n",
        "x.slice:p:",
    ] {
        refused(
            |c| c["linux"]["cgroupsPath"] = json!(bad),
            &["linux.cgroupsPath", bad],
        );
    }
    refused(
        |c| c["linux"]["cgroupsPath"] = json!("a:b"),
        &["slice:prefix:name"],
    );
}

#[test]
fn unknown_or_mistyped_unit_property_annotation_is_refused() {
    refused(
        |c| c["annotations"] = json!({"org.systemd.property.NoSuchThing": "1"}),
        &[
            "annotations[\"org.systemd.property.NoSuchThing\"]",
            "not a unit property",
        ],
    );
    refused(
        |c| c["annotations"] = json!({"org.systemd.property.TasksMax": "many"}),
        &["annotations[\"org.systemd.property.TasksMax\"]", "number"],
    );
}

#[test]
fn unreachable_systemd_is_one_line_and_leaves_nothing() {
    refused(
        |c| c["linux"]["cgroupsPath"] = json!("system.slice:berth:x"),
        &[
            "systemd cgroup driver",
            "cannot reach systemd",
            "/nonexistent/berth-test-system-bus",
        ],
    );
    // The same without a cgroupsPath (the default unit).
    refused(|_| {}, &["cannot reach systemd"]);
}
