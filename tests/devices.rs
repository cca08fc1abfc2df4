//! Device nodes: the default set, `linux.devices` with mode and owner, /dev/ptmx and the
//! /dev links, no nodes when /dev is bind-mounted, host devices bound in a user namespace.

mod common;
#[path = "common/mountinfo.rs"]
mod mountinfo;

use common::*;
use serde_json::json;

/// `stat` of each path as "type major:minor mode uid:gid" (busybox prints major/minor in hex).
const STAT: &str = "stat -c '%n %F %t:%T %a %u:%g'";

#[test]
fn the_default_devices_and_links_exist() {
    let rt = Runtime::new();
    let b = Bundle::sh(&format!(
        "{STAT} /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty; \
         for l in ptmx fd stdin stdout stderr; do echo $l $(readlink /dev/$l); done; \
         [ -e /dev/core -o -L /dev/core ] && echo core $(readlink /dev/core); \
         echo hi > /dev/null && head -c 4 /dev/zero | wc -c"
    ));
    let out = rt.run_stdout("defaults", &b);
    for (dev, num) in [
        ("null", "1:3"),
        ("zero", "1:5"),
        ("full", "1:7"),
        ("random", "1:8"),
        ("urandom", "1:9"),
        ("tty", "5:0"),
    ] {
        let want = format!("/dev/{dev} character special file {num} 666 0:0");
        assert!(out.contains(&want), "missing {want:?} in:\n{out}");
    }
    for l in [
        "ptmx pts/ptmx",
        "fd /proc/self/fd",
        "stdin /proc/self/fd/0",
        "stdout /proc/self/fd/1",
        "stderr /proc/self/fd/2",
    ] {
        assert!(out.lines().any(|x| x == l), "missing link {l:?} in:\n{out}");
    }
    let kcore = std::path::Path::new("/proc/kcore").exists();
    assert_eq!(
        out.contains("core /proc/kcore"),
        kcore,
        "/dev/core iff /proc/kcore:\n{out}"
    );
    assert!(out.ends_with("4\n"), "{out}");
}

#[test]
fn configured_devices_get_their_mode_owner_and_directories() {
    let rt = Runtime::new();
    let mut b = Bundle::sh(&format!(
        "{STAT} /dev/mynull /dev/net/tun /dev/fifo /dev/zero; stat -c '%a' /dev/net"
    ));
    b.edit(|c| {
        c["linux"]["devices"] = json!([
            {"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600, "uid": 1000, "gid": 10},
            {"path": "/dev/net/tun", "type": "c", "major": 10, "minor": 200, "fileMode": 0o620},
            {"path": "/dev/fifo", "type": "p", "fileMode": 0o640, "uid": 1, "gid": 2},
            // A redefinition of a default device wins over the default.
            {"path": "/dev/zero", "type": "c", "major": 1, "minor": 5, "fileMode": 0o444}
        ]);
    });
    let out = rt.run_stdout("configured", &b);
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "/dev/mynull character special file 1:3 600 1000:10");
    assert_eq!(l[1], "/dev/net/tun character special file a:c8 620 0:0");
    assert_eq!(l[2], "/dev/fifo fifo 0:0 640 1:2");
    assert_eq!(l[3], "/dev/zero character special file 1:5 444 0:0");
    assert_eq!(l[4], "755");
}

#[test]
fn a_bound_dev_gets_no_device_nodes() {
    let rt = Runtime::new();
    let hostdev = tempfile::tempdir().unwrap();
    std::fs::write(hostdev.path().join("marker"), "host dev\n").unwrap();
    let mut b = Bundle::sh("cat /dev/marker; ls /dev");
    b.edit(|c| {
        let m = c["mounts"].as_array_mut().unwrap();
        m.retain(|m| !m["destination"].as_str().unwrap().starts_with("/dev"));
        m.push(json!({"destination": "/dev", "type": "bind", "source": hostdev.path(), "options": ["rbind", "rw"]}));
        c["linux"]["maskedPaths"] = json!([]);
    });
    let out = rt.run_stdout("bound-dev", &b);
    assert_eq!(out, "host dev\nmarker\n");
    let left: Vec<_> = std::fs::read_dir(hostdev.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        left,
        ["marker"],
        "nodes or links were made in the bound /dev"
    );
}

#[test]
fn in_a_user_namespace_devices_are_the_hosts_bound() {
    let rt = Runtime::new();
    let mut b = Bundle::sh(&format!(
        "{STAT} /dev/null /dev/tty; echo x > /dev/null && echo NULL-OK; cat /proc/self/mountinfo"
    ));
    b.namespace("user", None).edit(|c| {
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    });
    let out = rt.run_stdout("userns", &b);
    assert!(
        out.contains("/dev/null character special file 1:3"),
        "{out}"
    );
    assert!(out.contains("/dev/tty character special file 5:0"), "{out}");
    assert!(out.contains("NULL-OK"), "{out}");
    let mi = mountinfo::parse(&out);
    for d in [
        "/dev/null",
        "/dev/zero",
        "/dev/full",
        "/dev/random",
        "/dev/urandom",
        "/dev/tty",
    ] {
        let e = mountinfo::must(&mi, d);
        assert_eq!(e.fstype, "devtmpfs", "{d} is the host's node bound: {e:?}");
    }
}

#[test]
fn bad_devices_fail_naming_the_field_and_leave_nothing() {
    let rt = Runtime::new();
    let mut b = Bundle::sh("echo SHOULD-NOT-RUN");
    b.edit(|c| {
        c["linux"]["devices"] = json!([
            {"path": "/dev/ok", "type": "c", "major": 1, "minor": 3},
            {"path": "/dev/all", "type": "a"}
        ]);
    });
    let id = unique_id("baddev");
    let o = rt.run_timeout(&id, &b, &[]);
    assert_one_error_line(&o, &["linux.devices[1].type"]);
    assert!(rt.ids().is_empty());
    assert_nothing_left(&rt, &id, &b);
}
