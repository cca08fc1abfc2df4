//! Id-mapped bind mounts (`mounts[].uidMappings`/`gidMappings`, `idmap`, `ridmap`) on the real
//! kernel: what the container sees and writes through them, with and without its own user
//! namespace, recursive and not, a filesystem that refuses, and configs refused before any side
//! effect. Every case leaves nothing behind.
//!
//! The direction is the kernel's (and runc's): a mapping `containerID C, hostID H` shows a file
//! owned by C on disk as owned by H. In a container whose user namespace maps C to H as well,
//! that is C again: the host's ownership shows through unchanged.

mod common;
#[path = "common/mountinfo.rs"]
mod mountinfo;

use std::collections::HashMap;
use std::os::unix::fs::{chown, MetadataExt, PermissionsExt};
use std::path::Path;

use common::*;
use mountinfo::{must, HostMount};
use serde_json::{json, Value};

const HOST: u32 = 100000;

fn map() -> Value {
    json!([{"containerID": 0, "hostID": HOST, "size": 65536}])
}

fn overflow() -> String {
    std::fs::read_to_string("/proc/sys/kernel/overflowuid")
        .unwrap()
        .trim()
        .to_string()
}

/// The kernel release as (major, minor).
fn kernel() -> (u32, u32) {
    let r = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut it = r.trim().split(['.', '-']).map(|p| p.parse().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// Id-mapped mounts of ext4 need 5.12 (and a user namespace when asked); of tmpfs, 6.3.
fn skip(test: &str, need: (u32, u32), userns: bool) -> bool {
    if kernel() < need {
        println!(
            "SKIP: {test}: kernel {:?} is older than {need:?} (id-mapped mounts)",
            kernel()
        );
        return true;
    }
    userns && skip_without_namespace(test, "user")
}

/// The container gets a user namespace mapping 0 → HOST (65536 ids).
fn userns(b: &mut Bundle) {
    b.namespace("user", None).edit(|c| {
        c["linux"]["uidMappings"] = map();
        c["linux"]["gidMappings"] = map();
    });
}

/// Adds a bind mount of `src` at `dest` (created in the rootfs: in a user namespace the rootfs'
/// owner is unmapped), with the mount's own mappings when `mapped`.
fn bind(b: &mut Bundle, dest: &str, src: &Path, options: &[&str], mapped: bool) {
    std::fs::create_dir_all(b.rootfs().join(dest.trim_start_matches('/'))).unwrap();
    let mut m = json!({"destination": dest, "type": "bind", "source": src, "options": options});
    if mapped {
        m["uidMappings"] = map();
        m["gidMappings"] = map();
    }
    b.edit(|c| c["mounts"].as_array_mut().unwrap().push(m));
}

/// A source directory (mode 755) with `root-owned` (0:0) and `host-owned` (HOST:HOST).
fn source() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("berth-test-idmap-")
        .tempdir_in(std::env::temp_dir())
        .unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(d.path().join("root-owned"), "r\n").unwrap();
    std::fs::write(d.path().join("host-owned"), "h\n").unwrap();
    chown(d.path().join("host-owned"), Some(HOST), Some(HOST)).unwrap();
    d
}

/// `stat -c '%n %u %g'` lines of the output → path → "uid gid".
fn owners(out: &str) -> HashMap<String, String> {
    out.lines()
        .filter(|l| l.starts_with('/') && l.split(' ').count() == 3)
        .filter_map(|l| l.split_once(' '))
        .map(|(p, ids)| (p.to_string(), ids.to_string()))
        .collect()
}

/// Runs `b` to completion as `name`; returns its stdout; asserts it left nothing.
fn run_ok(rt: &Runtime, name: &str, b: &Bundle) -> String {
    let id = unique_id(name);
    let o = rt.run_timeout(&id, b, &[]);
    assert!(o.status.success(), "{name}: {}", stderr(&o));
    assert_nothing_left(rt, &id, b);
    stdout(&o)
}

/// `run` of a bundle that `add` gives one more mount (mounts[7]) fails with one line holding
/// `needles`, runs nothing and leaves nothing behind.
fn assert_refused(name: &str, add: impl FnOnce(&mut Bundle), needles: &[&str]) {
    let rt = Runtime::new();
    let mut b = Bundle::sh("echo SHOULD-NOT-RUN");
    assert_eq!(b.config["mounts"].as_array().unwrap().len(), 7);
    add(&mut b);
    let id = unique_id(&format!("idmap-{name}"));
    let o = rt.run_timeout(&id, &b, &[]);
    assert_one_error_line(&o, needles);
    assert!(!stdout(&o).contains("SHOULD-NOT-RUN"));
    assert!(rt.ids().is_empty(), "{name}: berth list is not empty");
    assert_nothing_left(&rt, &id, &b);
}

fn assert_owner(seen: &HashMap<String, String>, path: &str, id: &str, all: &str) {
    assert_eq!(
        seen.get(path).map(String::as_str),
        Some(format!("{id} {id}").as_str()),
        "owner of {path} in:\n{all}"
    );
}

#[test]
fn an_idmapped_bind_shows_the_hosts_ownership_to_a_user_namespace_and_writes_back_as_it() {
    if skip("idmap-userns", (5, 12), true) {
        return;
    }
    let rt = Runtime::new();
    let src = source();
    let mut b = Bundle::sh(
        "stat -c '%n %u %g' /idm/root-owned /idm/host-owned /opt-idmap/root-owned \
         /plain/root-owned /plain/host-owned; \
         touch /idm/made-inside && stat -c '%n %u %g' /idm/made-inside; \
         cat /proc/self/mountinfo",
    );
    userns(&mut b);
    bind(&mut b, "/idm", src.path(), &["bind"], true);
    // `idmap` without mappings takes the container's (linux.uidMappings/gidMappings).
    bind(&mut b, "/opt-idmap", src.path(), &["bind", "idmap"], false);
    bind(&mut b, "/plain", src.path(), &["bind"], false);
    let out = run_ok(&rt, "idmap-userns", &b);
    let seen = owners(&out);
    let nobody = overflow();
    // Through the id-mapped mount, the host's ownership shows unchanged…
    assert_owner(&seen, "/idm/root-owned", "0", &out);
    assert_owner(&seen, "/opt-idmap/root-owned", "0", &out);
    // …and an id outside the mapping (on disk) is the overflow id.
    assert_owner(&seen, "/idm/host-owned", &nobody, &out);
    // Through a plain bind, the user namespace alone shifts it (the contrast).
    assert_owner(&seen, "/plain/root-owned", &nobody, &out);
    assert_owner(&seen, "/plain/host-owned", "0", &out);
    // What the container's root creates lands on disk as the host's root.
    assert_owner(&seen, "/idm/made-inside", "0", &out);
    let md = std::fs::metadata(src.path().join("made-inside")).unwrap();
    assert_eq!((md.uid(), md.gid()), (0, 0));
    let mi = mountinfo::parse(&out);
    assert!(must(&mi, "/idm").has("idmapped"), "{out}");
    assert!(must(&mi, "/opt-idmap").has("idmapped"), "{out}");
    assert!(!must(&mi, "/plain").has("idmapped"), "{out}");
}

/// runc's "[no userns]" case: the mount's mapping alone shifts ownership, and the container's
/// root (host uid 0, outside the mapping) cannot create files there.
#[test]
fn without_a_user_namespace_the_mount_mapping_alone_shifts_ownership() {
    if skip("idmap-no-userns", (5, 12), false) {
        return;
    }
    let rt = Runtime::new();
    let src = source();
    let mut b = Bundle::sh(
        "stat -c '%n %u %g' /idm/root-owned /idm/host-owned; \
         touch /idm/new 2>&1 || echo TOUCH-REFUSED",
    );
    bind(&mut b, "/idm", src.path(), &["rbind"], true);
    let out = run_ok(&rt, "idmap-no-userns", &b);
    let seen = owners(&out);
    assert_owner(&seen, "/idm/root-owned", &HOST.to_string(), &out);
    assert_owner(&seen, "/idm/host-owned", &overflow(), &out);
    assert!(out.contains("TOUCH-REFUSED"), "{out}");
    assert!(!src.path().join("new").exists());
}

/// With `rbind`, `ridmap` id-maps every mount of the tree; `idmap` only its top.
#[test]
fn ridmap_maps_submounts_and_idmap_only_the_top_mount() {
    if skip("ridmap", (6, 3), true) {
        return;
    }
    let rt = Runtime::new();
    let src = source();
    let nested = src.path().join("nested");
    std::fs::create_dir(&nested).unwrap();
    let sub = HostMount::tmpfs_at(&nested, "mode=755");
    std::fs::write(nested.join("inner"), "i\n").unwrap();
    let mut b = Bundle::sh(
        "stat -c '%n %u %g' /r/root-owned /r/nested/inner /n/root-owned /n/nested/inner; \
         cat /proc/self/mountinfo",
    );
    userns(&mut b);
    bind(&mut b, "/r", src.path(), &["rbind", "ridmap"], true);
    bind(&mut b, "/n", src.path(), &["rbind", "idmap"], true);
    let out = run_ok(&rt, "ridmap", &b);
    drop(sub);
    let seen = owners(&out);
    assert_owner(&seen, "/r/root-owned", "0", &out);
    assert_owner(&seen, "/r/nested/inner", "0", &out);
    assert_owner(&seen, "/n/root-owned", "0", &out);
    assert_owner(&seen, "/n/nested/inner", &overflow(), &out);
    let mi = mountinfo::parse(&out);
    for (dest, mapped) in [
        ("/r", true),
        ("/r/nested", true),
        ("/n", true),
        ("/n/nested", false),
    ] {
        assert_eq!(must(&mi, dest).has("idmapped"), mapped, "{dest}:\n{out}");
    }
}

/// procfs and sysfs do not allow id-mapped mounts: the mount is named, nothing is left behind.
#[test]
fn a_filesystem_that_refuses_idmapping_is_named() {
    if skip("idmap-refused", (5, 12), false) {
        return;
    }
    for (name, src, options) in [
        ("proc", "/proc", &["bind"][..]),
        ("sys", "/sys", &["rbind", "ridmap"][..]),
    ] {
        assert_refused(
            &format!("refused-{name}"),
            |b| bind(b, "/m", Path::new(src), options, true),
            &[
                &format!("mounts[7].source: {src}:"),
                "does not support id-mapped mounts",
            ],
        );
    }
}

/// Configs the kernel would refuse, or that make no sense, fail validation naming the field.
#[test]
fn bad_idmap_configs_fail_naming_the_field_and_leave_nothing() {
    let one = |c: u32, h: u32, s: u32| json!([{"containerID": c, "hostID": h, "size": s}]);
    let m = |options: &[&str], uid: Option<Value>, gid: Option<Value>| {
        let mut m =
            json!({"destination": "/m", "type": "bind", "source": "/tmp", "options": options});
        if let Some(u) = uid {
            m["uidMappings"] = u;
        }
        if let Some(g) = gid {
            m["gidMappings"] = g;
        }
        m
    };
    let tmpfs = json!({"destination": "/m", "type": "tmpfs", "source": "tmpfs",
        "uidMappings": map(), "gidMappings": map()});
    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        (
            "tmpfs",
            tmpfs,
            vec!["mounts[7].uidMappings", "only supported for bind-mounts"],
        ),
        (
            "uid-only",
            m(&["bind"], Some(map()), None),
            vec!["mounts[7].gidMappings", "both uid and gid mappings"],
        ),
        (
            "size0",
            m(&["bind"], Some(one(0, HOST, 0)), Some(map())),
            vec!["mounts[7].uidMappings[0].size", "at least 1"],
        ),
        (
            "overflow",
            m(&["bind"], Some(map()), Some(one(0, u32::MAX - 5, 10))),
            vec![
                "mounts[7].gidMappings[0]",
                "hostID",
                "runs past the last id",
            ],
        ),
        (
            "overlap",
            m(
                &["bind"],
                Some(json!([{"containerID": 0, "hostID": HOST, "size": 100},
                            {"containerID": 50, "hostID": 300000, "size": 100}])),
                Some(map()),
            ),
            vec!["mounts[7].uidMappings[1]", "overlaps uidMappings[0]"],
        ),
        (
            "no-userns",
            m(&["bind", "idmap"], None, None),
            vec!["mounts[7].options[1]", "no user namespace"],
        ),
    ];
    for (name, mount, needles) in cases {
        assert_refused(
            &format!("bad-{name}"),
            |b| {
                b.edit(|c| c["mounts"].as_array_mut().unwrap().push(mount));
            },
            &needles,
        );
    }
}
