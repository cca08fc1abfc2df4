//! `linux.memoryPolicy` (runtime-spec 1.3), seen from inside the container: the policy the
//! kernel reports in /proc/self/numa_maps for the container's processes (its init's program and
//! an `exec`'d one), the refusals at `create` (one line naming the field, nothing left behind),
//! and nodes this host does not have.

mod common;
use common::*;

use serde_json::{json, Value};

/// The policy of the first mapping of a process that reads its own numa_maps (`head`): the
/// task policy, which every mapping without one of its own follows.
const SHOW_POLICY: &str = "head -n 1 /proc/self/numa_maps | cut -d ' ' -f 2";

fn with_policy(policy: Value) -> Bundle {
    let mut b = Bundle::sh(SHOW_POLICY);
    b.edit(|c| c["linux"]["memoryPolicy"] = policy);
    b
}

fn policy_seen(name: &str, policy: Value) -> String {
    let rt = Runtime::new();
    rt.run_stdout(name, &with_policy(policy)).trim().to_string()
}

/// The highest memory node this host could have, plus one: a node it does not have.
fn absent_node() -> u32 {
    let possible =
        std::fs::read_to_string("/sys/devices/system/node/possible").unwrap_or_else(|_| "0".into());
    let last = possible
        .trim()
        .rsplit([',', '-'])
        .next()
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(0);
    last + 1
}

#[test]
fn interleave_is_the_container_s_policy() {
    assert_eq!(
        policy_seen(
            "mpol-interleave",
            json!({"mode": "MPOL_INTERLEAVE", "nodes": "0"})
        ),
        "interleave:0"
    );
}

#[test]
fn bind_with_static_nodes() {
    assert_eq!(
        policy_seen(
            "mpol-bind",
            json!({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]})
        ),
        "bind=static:0"
    );
}

#[test]
fn default_mode_without_nodes_is_the_default_policy() {
    assert_eq!(
        policy_seen("mpol-default", json!({"mode": "MPOL_DEFAULT"})),
        "default"
    );
}

#[test]
fn preferred_without_nodes_is_local_allocation() {
    assert_eq!(
        policy_seen("mpol-local", json!({"mode": "MPOL_PREFERRED"})),
        "local"
    );
}

#[test]
fn exec_d_processes_get_the_policy_too() {
    let rt = Runtime::new();
    let id = unique_id("mpol-exec");
    let mut b = Bundle::sh("sleep 1000");
    b.edit(|c| {
        c["linux"]["memoryPolicy"] =
            json!({"mode": "MPOL_PREFERRED", "nodes": "0", "flags": ["MPOL_F_RELATIVE_NODES"]})
    });
    rt.create(&id, &b);
    rt.ok(&["start", &id]);
    let out = rt.ok(&["exec", &id, "sh", "-c", SHOW_POLICY]);
    assert_eq!(out.trim(), "prefer=relative:0");
    rt.ok(&["delete", "--force", &id]);
}

#[test]
fn nodes_the_host_lacks_are_dropped_while_one_is_left() {
    // As runc 1.3 (which passes the mask to the kernel): nodes 0 and one this host does not
    // have bind to node 0.
    let n = absent_node();
    assert_eq!(
        policy_seen(
            "mpol-partial",
            json!({"mode": "MPOL_BIND", "nodes": format!("0,{n}")})
        ),
        "bind:0"
    );
}

#[test]
fn only_nodes_the_host_lacks_fail_create_and_leave_nothing() {
    let rt = Runtime::new();
    let id = unique_id("mpol-absent");
    let n = absent_node();
    let b = with_policy(json!({"mode": "MPOL_BIND", "nodes": n.to_string()}));
    let o = rt.run(&id, &b);
    assert_one_error_line(
        &o,
        &[
            "linux.memoryPolicy",
            "set_mempolicy(MPOL_BIND",
            "Invalid argument",
            "memory nodes this host allows",
        ],
    );
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn bad_policies_are_refused_at_create_naming_the_field() {
    let cases = [
        (
            json!({"mode": "INTERLEAVE", "nodes": "0"}),
            "linux.memoryPolicy.mode",
        ),
        (json!({"nodes": "0-7"}), "linux.memoryPolicy"),
        (
            json!({"mode": "MPOL_PREFERRED", "nodes": "0", "flags": ["MPOL_F_RELATIVE_NODES", "badflag"]}),
            "linux.memoryPolicy.flags[1]",
        ),
        (
            json!({"mode": "MPOL_DEFAULT", "nodes": "0-7"}),
            "linux.memoryPolicy.nodes: MPOL_DEFAULT takes no nodes (got 8)",
        ),
        (
            json!({"mode": "MPOL_BIND", "nodes": "0-9876543210"}),
            "linux.memoryPolicy.nodes: node 9876543210 is too large",
        ),
        (
            json!({"mode": "MPOL_INTERLEAVE"}),
            "linux.memoryPolicy.nodes: MPOL_INTERLEAVE needs at least one node",
        ),
        (
            json!({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES"]}),
            "linux.memoryPolicy.flags: MPOL_F_STATIC_NODES and MPOL_F_RELATIVE_NODES",
        ),
    ];
    let rt = Runtime::new();
    for (i, (policy, needle)) in cases.into_iter().enumerate() {
        let id = unique_id(&format!("mpol-bad{i}"));
        let b = with_policy(policy.clone());
        let o = rt.run(&id, &b);
        assert_one_error_line(&o, &[needle]);
        assert_nothing_left(&rt, &id, &b);
    }
}

#[test]
fn features_lists_the_modes_and_flags_and_each_mode_works() {
    let rt = Runtime::new();
    let f: Value = serde_json::from_str(&rt.ok(&["features"])).unwrap();
    let mp = &f["linux"]["memoryPolicy"];
    let names = |key: &str| -> Vec<String> {
        mp[key]
            .as_array()
            .unwrap_or_else(|| panic!("linux.memoryPolicy.{key}: {mp}"))
            .iter()
            .map(|m| m.as_str().unwrap().to_string())
            .collect()
    };
    let (modes, flags) = (names("modes"), names("flags"));
    assert!(
        modes.iter().any(|m| m == "MPOL_BIND") && modes.iter().any(|m| m == "MPOL_DEFAULT"),
        "{modes:?}"
    );
    assert!(
        flags.iter().any(|f| f == "MPOL_F_STATIC_NODES"),
        "{flags:?}"
    );
    // Every mode claimed is one the kernel and Berth take.
    for (i, mode) in modes.iter().enumerate() {
        let nodes = if matches!(mode.as_str(), "MPOL_DEFAULT" | "MPOL_LOCAL") {
            json!(null)
        } else {
            json!("0")
        };
        let mut policy = json!({ "mode": mode });
        if !nodes.is_null() {
            policy["nodes"] = nodes;
        }
        let seen = policy_seen(&format!("mpol-feat{i}"), policy);
        assert!(!seen.is_empty(), "{mode}: {seen}");
        if mode != "MPOL_DEFAULT" {
            assert_ne!(seen, "default", "{mode} was not applied");
        }
    }
}
