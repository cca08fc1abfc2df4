//! linux.namespaces seen from inside the container (and from the host): new namespaces of each
//! type, joining an existing one by path, and sharing the host's when a type is absent.

mod common;
use common::*;

use serde_json::json;

fn host_ns(ns: &str) -> String {
    ns_link(std::process::id() as i32, ns)
}

#[test]
fn pid_namespace_makes_the_process_pid_1_and_hides_the_host() {
    let rt = Runtime::new();
    let b = sh("echo pid=$$; ls /proc | grep -c '^[0-9]'");
    let out = rt.run_stdout("pidns", &b);
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "pid=1", "{out}");
    // The shell, ls, grep: nothing of the host.
    let n: u32 = l[1].trim().parse().unwrap();
    assert!(n <= 4, "the container sees {n} processes: {out}");
}

#[test]
fn ps_shows_the_process_as_pid_1() {
    let rt = Runtime::new();
    let mut b = sh("");
    b.args(&["ps", "-o", "pid,comm"]);
    let out = rt.run_stdout("ps", &b);
    let rows: Vec<Vec<&str>> = out
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows, [["1", "ps"]], "{out}");
}

#[test]
fn network_namespace_has_only_loopback() {
    let rt = Runtime::new();
    let b = sh("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; readlink /proc/self/ns/net");
    let out = rt.run_stdout("netns", &b);
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(&l[..l.len() - 1], ["lo"], "{out}");
    assert_ne!(l[l.len() - 1], host_ns("net"));
}

#[test]
fn ipc_uts_mount_cgroup_namespaces_are_new() {
    let rt = Runtime::new();
    let mut b = sh("for n in ipc uts mnt cgroup pid net; do readlink /proc/self/ns/$n; done");
    for n in ["ipc", "uts", "mount", "cgroup", "pid", "network"] {
        b.namespace(n, None);
    }
    let out = rt.run_stdout("newns", &b);
    let l: Vec<&str> = out.lines().collect();
    for (i, n) in ["ipc", "uts", "mnt", "cgroup", "pid", "net"]
        .iter()
        .enumerate()
    {
        assert!(l[i].starts_with(&format!("{n}:[")), "{out}");
        assert_ne!(l[i], host_ns(n), "{n} namespace is the host's");
    }
}

#[test]
fn an_absent_namespace_type_is_shared_with_the_host() {
    let rt = Runtime::new();
    let mut b = sh("readlink /proc/self/ns/net; readlink /proc/self/ns/ipc");
    b.without_namespace("network").without_namespace("ipc");
    let out = rt.run_stdout("sharedns", &b);
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], host_ns("net"));
    assert_eq!(l[1], host_ns("ipc"));
}

#[test]
fn uts_namespace_sets_hostname_and_domainname() {
    let rt = Runtime::new();
    let mut b = sh("hostname; cat /proc/sys/kernel/domainname");
    b.edit(|c| {
        c["hostname"] = json!("box-name");
        c["domainname"] = json!("example.test");
    });
    let host_before = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let out = rt.run_stdout("uts", &b);
    assert_eq!(out, "box-name\nexample.test\n");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        host_before,
        "the host's hostname changed"
    );
}

#[test]
fn mount_namespace_keeps_container_mounts_off_the_host() {
    let rt = Runtime::new();
    let mut b =
        sh("mount -t tmpfs none /tmp && touch /tmp/x && grep -c ' /tmp ' /proc/self/mountinfo");
    b.edit(|c| {
        for set in ["bounding", "effective", "permitted"] {
            c["process"]["capabilities"][set]
                .as_array_mut()
                .unwrap()
                .push(json!("CAP_SYS_ADMIN"));
        }
    });
    let id = unique_id("mntns");
    let o = rt.run_timeout(&id, &b, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "1");
    assert!(
        !b.rootfs().join("tmp/x").exists(),
        "the tmpfs reached the host's rootfs"
    );
    assert_nothing_left(&rt, &id, &b);
}

/// A bundle with a new user namespace mapping container 0..65536 to host 100000..165536. The
/// bundle must be reachable by the mapped root.
fn userns_bundle(script: &str) -> Bundle {
    use std::os::unix::fs::PermissionsExt;
    let mut b = sh(script);
    b.namespace("user", None);
    b.edit(|c| {
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    });
    std::fs::set_permissions(b.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(b.out(), std::fs::Permissions::from_mode(0o777)).unwrap();
    b
}

#[test]
fn user_namespace_maps_ids() {
    let rt = Runtime::new();
    let b = userns_bundle(
        "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map; touch /out/made-inside",
    );
    let out = rt.run_stdout("userns", &b);
    let l: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(l[0], ["0"], "{out}");
    assert_eq!(l[1], ["0"], "{out}");
    assert_eq!(l[2], ["0", "100000", "65536"], "uid_map: {out}");
    assert_eq!(l[3], ["0", "100000", "65536"], "gid_map: {out}");
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(b.out().join("made-inside")).unwrap();
    assert_eq!(
        (m.uid(), m.gid()),
        (100000, 100000),
        "container root is host 100000"
    );
}

#[test]
fn user_namespace_process_is_unprivileged_on_the_host() {
    let rt = Runtime::new();
    let b = userns_bundle("touch /out/ready; sleep 30");
    let id = unique_id("usernshost");
    rt.create(&id, &b);
    rt.ok(&["start", &id]);
    assert!(wait_for_file(&b.out().join("ready"), SECS10));
    let pid = rt.pid(&id);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(
        uid.split_whitespace().collect::<Vec<_>>(),
        ["Uid:", "100000", "100000", "100000", "100000"],
        "{uid}"
    );
    assert_ne!(ns_link(pid, "user"), host_ns("user"));
    rt.ok(&["delete", "--force", &id]);
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn cgroup_namespace_roots_the_containers_cgroup() {
    let rt = Runtime::new();
    let mut b = sh("cat /proc/self/cgroup");
    b.namespace("cgroup", None);
    let out = rt.run_stdout("cgroupns", &b);
    for l in out.lines() {
        assert!(
            l.ends_with(":/"),
            "cgroup path not rooted at the container: {l}"
        );
    }
}

#[test]
fn time_namespace_applies_time_offsets() {
    if skip_without_namespace("time_namespace_applies_time_offsets", "time") {
        return;
    }
    let rt = Runtime::new();
    let mut b = sh("cut -d' ' -f1 /proc/uptime");
    b.namespace("time", None);
    b.edit(|c| {
        c["linux"]["timeOffsets"] = json!({
            "boottime": {"secs": 1_000_000, "nanosecs": 0},
            "monotonic": {"secs": 500_000, "nanosecs": 0}
        })
    });
    let host: f64 = std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let out = rt.run_stdout("timens", &b);
    let inside: f64 = out.trim().parse().expect(&out);
    let shift = inside - host;
    assert!(
        (999_990.0..1_000_100.0).contains(&shift),
        "boottime shifted by {shift} s, not 1000000"
    );
}

#[test]
fn joining_another_containers_network_namespace_by_path() {
    let rt = Runtime::new();
    let mut a = sh("sleep 30");
    a.edit(|c| c["hostname"] = json!("owner-host"));
    let ida = unique_id("nsowner");
    rt.create(&ida, &a);
    let pa = rt.pid(&ida);
    let a_net = ns_link(pa, "net");
    let mut b = sh("readlink /proc/self/ns/net; readlink /proc/self/ns/uts; hostname");
    b.namespace("network", Some(&format!("/proc/{pa}/ns/net")));
    b.namespace("uts", Some(&format!("/proc/{pa}/ns/uts")));
    b.edit(|c| drop(c.as_object_mut().unwrap().remove("hostname")));
    let out = rt.run_stdout("nsjoiner", &b);
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], a_net, "B is not in A's network namespace");
    assert_eq!(l[1], ns_link(pa, "uts"), "B is not in A's uts namespace");
    assert_eq!(l[2], "owner-host", "B sees A's hostname");
    assert_eq!(rt.status(&ida), "created", "A was disturbed");
    rt.ok(&["delete", &ida]);
}

#[test]
fn joining_another_containers_pid_namespace_by_path() {
    let rt = Runtime::new();
    let a = sh("sleep 30");
    let ida = unique_id("pidowner");
    rt.create(&ida, &a);
    rt.ok(&["start", &ida]);
    let pa = rt.pid(&ida);
    let mut b = sh("readlink /proc/self/ns/pid; echo pid=$$");
    b.namespace("pid", Some(&format!("/proc/{pa}/ns/pid")));
    let out = rt.run_stdout("pidjoiner", &b);
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], ns_link(pa, "pid"));
    assert_ne!(l[1], "pid=1", "a joiner is not the namespace's init");
    rt.ok(&["delete", "--force", &ida]);
}
