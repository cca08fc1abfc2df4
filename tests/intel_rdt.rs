//! `linux.intelRdt` on this host, which has no resctrl mounted at /sys/fs/resctrl (no Intel RDT
//! hardware in the VM): `create` refuses it with one error line naming the field, and leaves
//! nothing behind (empty root, no cgroup, no process); `features` says it is not enabled. The
//! group, schemata and tasks writes where resctrl is mounted are unit-tested against a fake
//! tree in src/resctrl/.

mod common;
use common::*;

use serde_json::json;

/// Whether /proc/self/mountinfo shows a resctrl filesystem at /sys/fs/resctrl.
fn resctrl_mounted() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let fstype = f.iter().position(|x| *x == "-").and_then(|i| f.get(i + 1));
            f.get(4) == Some(&"/sys/fs/resctrl") && fstype == Some(&"resctrl")
        })
}

#[test]
fn without_resctrl_intel_rdt_is_one_error_and_leaves_nothing() {
    if resctrl_mounted() {
        println!("SKIP: resctrl is mounted here; the refusal needs a host without it");
        return;
    }
    let rt = Runtime::new();
    for (i, rdt) in [
        json!({"closID": "gold"}),
        json!({"l3CacheSchema": "L3:0=f"}),
        json!({"schemata": ["MB:0=50"]}),
    ]
    .into_iter()
    .enumerate()
    {
        let id = unique_id(&format!("rdt-none{i}"));
        let mut b = sh("true");
        b.edit(|c| c["linux"]["intelRdt"] = rdt.clone());
        for cmd in ["create", "run"] {
            rt.track(&id);
            let o = rt.berth(&[cmd, "--bundle", b.path_str(), &id]);
            assert_one_error_line(&o, &["linux.intelRdt", "resctrl is not mounted"]);
            assert_nothing_left(&rt, &id, &b);
        }
    }
    assert!(rt.ids().is_empty());
    let entries: Vec<_> = std::fs::read_dir(rt.root.path()).unwrap().collect();
    assert!(entries.is_empty(), "root not empty: {entries:?}");
}

#[test]
fn features_reports_intel_rdt_as_the_host_has_it() {
    let rt = Runtime::new();
    let f: serde_json::Value = serde_json::from_str(&rt.ok(&["features"])).unwrap();
    assert_eq!(f["linux"]["intelRdt"]["enabled"], resctrl_mounted());
}
