//! `linux.netDevices` (runtime-spec 1.3): host interfaces the test makes (veth pairs; dummy
//! where the kernel has it) moved into the container, seen from inside (busybox `ip`: the new
//! name, the global addresses, the MTU, the link up) and from the host afterwards (runc 1.3's
//! lifecycle: nothing is moved back on delete; a device in the container's own namespace dies
//! with it when virtual, one in a namespace given by path stays there). A failed `create` gives
//! the device back as it was. Every interface and namespace is removed in a Drop guard.

mod common;
use common::*;

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{json, Value};

/// `ip ARGS…` on the host; true when it succeeded.
fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn ip_out(args: &[&str]) -> String {
    Command::new("ip")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn ip_ok(args: &[&str]) {
    let o = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        o.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A name of at most 15 bytes, unique to this test process and call.
fn unique_ifname(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("b{}{tag}{n}", std::process::id() % 100_000)
}

/// Interfaces and named network namespaces the test made: removed on drop, pass or fail.
#[derive(Default)]
struct Made {
    links: Vec<String>,
    netns: Vec<String>,
}

impl Drop for Made {
    fn drop(&mut self) {
        for l in &self.links {
            let _ = ip(&["link", "del", l]);
        }
        for n in &self.netns {
            let _ = ip(&["netns", "del", n]);
        }
    }
}

impl Made {
    /// A veth pair `a`–`b` on the host; `a` up, with `addrs`.
    fn veth(&mut self, addrs: &[&[&str]]) -> (String, String) {
        let (a, b) = (unique_ifname("v"), unique_ifname("p"));
        ip_ok(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
        self.links.push(a.clone());
        self.links.push(b.clone());
        for addr in addrs {
            let mut args = vec!["addr", "add"];
            args.extend_from_slice(addr);
            args.extend_from_slice(&["dev", &a]);
            ip_ok(&args);
        }
        ip_ok(&["link", "set", &a, "up"]);
        (a, b)
    }

    /// A named network namespace (`ip netns add`); returns its path.
    fn netns(&mut self) -> (String, String) {
        let n = format!("berth-nd-{}-{}", std::process::id(), self.netns.len());
        ip_ok(&["netns", "add", &n]);
        self.netns.push(n.clone());
        (n.clone(), format!("/var/run/netns/{n}"))
    }
}

fn link_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

/// The bundle running `script`, moving `devices` (a netDevices object).
fn bundle(script: &str, devices: Value) -> Bundle {
    let mut b = Bundle::sh(script);
    b.edit(|c| c["linux"]["netDevices"] = devices);
    b
}

#[test]
fn a_veth_end_moves_in_renamed_with_its_global_addresses_mtu_and_up() {
    let mut made = Made::default();
    let (a, b) = made.veth(&[
        &["10.213.7.1/24"],
        &["fd00:213:7::1/64"],
        &["169.254.213.7/16", "scope", "link"],
    ]);
    ip_ok(&["link", "set", &a, "mtu", "1400"]);
    let rt = Runtime::new();
    let out = rt.run_stdout(
        "nd-veth",
        &bundle(
            "ip addr show dev ctr0; ls /sys/class/net",
            json!({ a.clone(): {"name": "ctr0"} }),
        ),
    );
    assert!(out.contains("ctr0"), "{out}");
    assert!(out.contains("inet 10.213.7.1/24"), "{out}");
    assert!(out.contains("inet6 fd00:213:7::1/64"), "{out}");
    // As runc 1.3: only permanent addresses of global scope are carried over.
    assert!(!out.contains("169.254.213.7"), "{out}");
    assert!(out.contains("mtu 1400"), "{out}");
    let flags = out
        .lines()
        .find(|l| l.contains("ctr0") && l.contains('<'))
        .unwrap_or_default();
    assert!(flags.contains(",UP") || flags.contains("<UP"), "{out}");
    assert!(
        !out.lines().any(|l| l.trim() == a),
        "old name inside: {out}"
    );
    // The container's own namespace died with it: the kernel destroys virtual devices there
    // (a veth with its peer), which runc 1.3 leaves to it too.
    assert!(
        wait_until(SECS5, || !link_exists(&a) && !link_exists(&b)),
        "{a} or its peer {b} is still on the host"
    );
}

#[test]
fn a_dummy_moves_in_under_its_own_name() {
    let mut made = Made::default();
    let d = unique_ifname("d");
    if !ip(&["link", "add", &d, "type", "dummy"]) {
        println!("SKIP: a_dummy_moves_in_under_its_own_name: this kernel has no dummy links");
        // The error path instead: a device that is not on the host.
        let rt = Runtime::new();
        let id = unique_id("nd-nodummy");
        let b = bundle("true", json!({ d.clone(): {} }));
        let o = rt.run(&id, &b);
        assert_one_error_line(
            &o,
            &[&format!(
                "linux.netDevices.{d}: no such network interface on the host"
            )],
        );
        assert_nothing_left(&rt, &id, &b);
        return;
    }
    made.links.push(d.clone());
    ip_ok(&["addr", "add", "10.213.8.1/32", "dev", &d]);
    let rt = Runtime::new();
    let out = rt.run_stdout(
        "nd-dummy",
        &bundle(&format!("ip addr show dev {d}"), json!({ d.clone(): {} })),
    );
    assert!(out.contains("inet 10.213.8.1/32"), "{out}");
    assert!(
        wait_until(SECS5, || !link_exists(&d)),
        "{d} still on the host"
    );
}

#[test]
fn in_a_namespace_given_by_path_the_device_stays_after_delete() {
    let mut made = Made::default();
    let (a, _b) = made.veth(&[&["10.213.9.1/24"]]);
    let (ns, path) = made.netns();
    let rt = Runtime::new();
    let id = unique_id("nd-path");
    let mut b = bundle("sleep 1000", json!({ a.clone(): {"name": "eth7"} }));
    b.namespace("network", Some(&path));
    rt.create(&id, &b);
    assert!(!link_exists(&a), "{a} still on the host after create");
    rt.ok(&["start", &id]);
    let inside = rt.ok(&["exec", &id, "ip", "addr", "show", "dev", "eth7"]);
    assert!(inside.contains("inet 10.213.9.1/24"), "{inside}");
    rt.ok(&["delete", "--force", &id]);
    // runc 1.3: the namespace's owner decides; nothing is moved back.
    let there = ip_out(&["netns", "exec", &ns, "ip", "addr", "show", "dev", "eth7"]);
    assert!(there.contains("inet 10.213.9.1/24"), "{there}");
    assert!(!link_exists(&a));
}

#[test]
fn a_failed_create_gives_the_device_back_as_it_was() {
    let mut made = Made::default();
    let (a, _b) = made.veth(&[&["10.213.10.1/24"]]);
    let rt = Runtime::new();
    let id = unique_id("nd-fail");
    let mut b = bundle("true", json!({ a.clone(): {"name": "ctr0"} }));
    b.args(&["/nonexistent"]);
    let o = rt.run(&id, &b);
    assert_one_error_line(&o, &["/nonexistent"]);
    assert_nothing_left(&rt, &id, &b);
    let host = ip_out(&["addr", "show", "dev", &a]);
    assert!(host.contains("inet 10.213.10.1/24"), "{host}");
    assert!(host.contains(",UP") || host.contains("<UP"), "{host}");
}

#[test]
fn a_name_taken_in_the_target_namespace_fails_and_leaves_the_device() {
    let mut made = Made::default();
    let (a, b_end) = made.veth(&[&["10.213.11.1/24"]]);
    let (ns, path) = made.netns();
    // The peer goes into the namespace first, under the name asked for the other end.
    ip_ok(&["link", "set", &b_end, "netns", &ns, "name", "eth0"]);
    let rt = Runtime::new();
    let id = unique_id("nd-clash");
    let mut b = bundle("true", json!({ a.clone(): {"name": "eth0"} }));
    b.namespace("network", Some(&path));
    let o = rt.run(&id, &b);
    assert_one_error_line(
        &o,
        &[
            &format!("linux.netDevices.{a}"),
            "the container's network namespace already has a device named \"eth0\"",
        ],
    );
    assert_nothing_left(&rt, &id, &b);
    let host = ip_out(&["addr", "show", "dev", &a]);
    assert!(host.contains("inet 10.213.11.1/24"), "{host}");
}

/// The network namespace of a bad-config case.
enum Net {
    New,
    Absent,
    Host,
}

#[test]
fn bad_configs_name_the_device_and_leave_nothing() {
    let mut made = Made::default();
    let (a, b_end) = made.veth(&[]);
    let rt = Runtime::new();
    let missing = unique_ifname("m");
    // (netDevices, the network namespace: new, none, or the host's by path, what the error says)
    let cases = [
        (
            json!({ missing.clone(): {} }),
            Net::New,
            format!("linux.netDevices.{missing}: no such network interface on the host"),
        ),
        (
            json!({ a.clone(): {} }),
            Net::Absent,
            format!("linux.netDevices.{a}: moving a network device needs a network namespace"),
        ),
        (
            json!({ a.clone(): {} }),
            Net::Host,
            format!(
                "linux.netDevices.{a}: the network namespace at /proc/self/ns/net is the host's"
            ),
        ),
        (
            json!({ a.clone(): {"name": "eth0"}, b_end.clone(): {"name": "eth0"} }),
            Net::New,
            "is also the name of linux.netDevices.".to_string(),
        ),
        (
            json!({ a.clone(): {"name": "e:0"} }),
            Net::New,
            format!("linux.netDevices.{a}.name: \"e:0\" is not an interface name"),
        ),
    ];
    for (i, (devices, net, needle)) in cases.into_iter().enumerate() {
        let id = unique_id(&format!("nd-bad{i}"));
        let mut b = bundle("true", devices);
        match net {
            Net::New => {}
            Net::Absent => {
                b.without_namespace("network");
            }
            Net::Host => {
                b.namespace("network", Some("/proc/self/ns/net"));
            }
        }
        let o = rt.run(&id, &b);
        assert_one_error_line(&o, &[&needle]);
        assert_nothing_left(&rt, &id, &b);
        assert!(
            link_exists(&a) && link_exists(&b_end),
            "case {i} moved a device"
        );
    }
}

#[test]
fn features_claims_net_devices_and_they_move() {
    let rt = Runtime::new();
    let f: Value = serde_json::from_str(&rt.ok(&["features"])).unwrap();
    assert_eq!(f["linux"]["netDevices"]["enabled"], true, "{f}");
    let mut made = Made::default();
    let (a, _b) = made.veth(&[]);
    let out = rt.run_stdout(
        "nd-feat",
        &bundle("ls /sys/class/net", json!({ a.clone(): {} })),
    );
    assert!(out.lines().any(|l| l.trim() == a), "{out}");
}
