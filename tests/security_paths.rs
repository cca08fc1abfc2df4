//! Paths inside the rootfs cannot lead out of it: symlinked mount destinations (the
//! CVE-2021-30465 class), a symlinked /dev, /proc magic links, a fake /dev/null used for
//! masking (the 2025 runc advisories), and sysctl writes that must reach a real procfs.
//!
//! Escapes are made observable on the host: the target directory is a *shared* host mount and
//! the container asks for `rshared` root propagation, so a mount that landed on the host path
//! in the container's namespace would propagate back to the host's mount table.

mod common;
#[path = "common/mountinfo.rs"]
mod mountinfo;

use std::os::unix::fs::{symlink, FileTypeExt};
use std::path::{Path, PathBuf};

use common::*;
use mountinfo::{host_mounts_under, HostMount};
use nix::mount::MsFlags;
use serde_json::{json, Value};

fn push_mount(b: &mut Bundle, m: Value) {
    b.edit(|c| c["mounts"].as_array_mut().unwrap().push(m));
}

/// A shared tmpfs on the host holding a marker file: the place an escape would land.
fn host_target(prefix: &str) -> HostMount {
    let h = HostMount::tmpfs(prefix);
    h.propagation(MsFlags::MS_SHARED);
    std::fs::write(h.path.join("marker"), "host\n").unwrap();
    h
}

/// The entries of a host directory (sorted).
fn entries(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(p)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// `..` enough times to climb from anywhere in the rootfs to /, then `target`.
fn climbing(target: &Path) -> PathBuf {
    Path::new(&"../".repeat(16)).join(target.strip_prefix("/").unwrap())
}

fn assert_host_untouched(h: &HostMount) {
    assert_eq!(
        host_mounts_under(&h.path),
        [h.path.to_str().unwrap()],
        "a mount escaped onto the host under {}",
        h.path.display()
    );
    assert_eq!(
        entries(&h.path),
        ["marker"],
        "something was created on the host"
    );
}

#[test]
fn symlinked_destinations_resolve_inside_the_rootfs() {
    let rt = Runtime::new();
    let h = host_target("berth-test-escape-");
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("bindsrc"), "bound\n").unwrap();
    let mut b = Bundle::sh("sleep 30");
    symlink(&h.path, b.rootfs().join("evil")).unwrap();
    symlink(climbing(&h.path), b.rootfs().join("tmp/evil-rel")).unwrap();
    symlink(&h.path, b.rootfs().join("a")).unwrap();
    b.edit(|c| c["linux"]["rootfsPropagation"] = json!("rshared"));
    push_mount(
        &mut b,
        json!({"destination": "/evil", "type": "tmpfs", "source": "tmpfs"}),
    );
    push_mount(
        &mut b,
        json!({"destination": "/tmp/evil-rel/x", "type": "tmpfs", "source": "tmpfs"}),
    );
    push_mount(
        &mut b,
        json!({"destination": "/a/b/c", "type": "bind", "source": src.path(), "options": ["rbind"]}),
    );
    let id = unique_id("escape");
    rt.create(&id, &b);
    let pid = rt.pid(&id);
    assert_host_untouched(&h);
    // Inside, the symlinks led to the rootfs's own copy of the host path.
    let inside = h.path.to_str().unwrap();
    let mi = mountinfo::of_pid(pid);
    assert_eq!(mountinfo::must(&mi, inside).fstype, "tmpfs");
    assert_eq!(mountinfo::must(&mi, &format!("{inside}/x")).fstype, "tmpfs");
    mountinfo::must(&mi, &format!("{inside}/b/c"));
    let copy = b.rootfs().join(h.path.strip_prefix("/").unwrap());
    // /evil was made in the rootfs (b/c then went into the tmpfs mounted over it).
    assert!(copy.is_dir(), "destinations were made inside the rootfs");
    rt.ok(&["delete", "--force", &id]);
    assert_host_untouched(&h);
}

/// CVE-2021-30465: a volume (shared with something the attacker controls) is mounted first;
/// its contents make a later destination a symlink to a host path.
#[test]
fn an_earlier_mount_cannot_redirect_a_later_one() {
    let rt = Runtime::new();
    let h = host_target("berth-test-redirect-");
    let vol = tempfile::tempdir().unwrap();
    symlink(&h.path, vol.path().join("link")).unwrap();
    symlink(climbing(&h.path), vol.path().join("rel")).unwrap();
    let mut b = Bundle::sh("sleep 30");
    b.edit(|c| c["linux"]["rootfsPropagation"] = json!("rshared"));
    push_mount(
        &mut b,
        json!({"destination": "/vol", "type": "bind", "source": vol.path(), "options": ["rbind"]}),
    );
    push_mount(
        &mut b,
        json!({"destination": "/vol/link", "type": "tmpfs", "source": "tmpfs"}),
    );
    push_mount(
        &mut b,
        json!({"destination": "/vol/rel/y", "type": "tmpfs", "source": "tmpfs"}),
    );
    let id = unique_id("redirect");
    rt.create(&id, &b);
    let pid = rt.pid(&id);
    assert_host_untouched(&h);
    let inside = h.path.to_str().unwrap();
    let mi = mountinfo::of_pid(pid);
    assert_eq!(mountinfo::must(&mi, inside).fstype, "tmpfs");
    assert_eq!(mountinfo::must(&mi, &format!("{inside}/y")).fstype, "tmpfs");
    rt.ok(&["delete", "--force", &id]);
    assert_host_untouched(&h);
}

fn without_dev_mounts(b: &mut Bundle) {
    b.edit(|c| {
        c["mounts"]
            .as_array_mut()
            .unwrap()
            .retain(|m| !m["destination"].as_str().unwrap().starts_with("/dev"))
    });
}

#[test]
fn a_symlinked_dev_cannot_put_nodes_on_the_host() {
    let rt = Runtime::new();
    let host = tempfile::tempdir().unwrap();
    let mut b = Bundle::sh("ls -l /dev/null; echo x > /dev/null && echo NULL-OK");
    without_dev_mounts(&mut b);
    std::fs::remove_dir(b.rootfs().join("dev")).unwrap();
    symlink(host.path(), b.rootfs().join("dev")).unwrap();
    let copy = b.rootfs().join(host.path().strip_prefix("/").unwrap());
    std::fs::create_dir_all(&copy).unwrap();
    let id = unique_id("devlink");
    let o = rt.run_timeout(&id, &b, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with('c') && stdout(&o).contains("NULL-OK"),
        "{}",
        stdout(&o)
    );
    assert!(
        entries(host.path()).is_empty(),
        "nodes leaked onto the host: {:?}",
        entries(host.path())
    );
    let null = std::fs::symlink_metadata(copy.join("null")).unwrap();
    assert!(
        null.file_type().is_char_device(),
        "made inside the rootfs instead"
    );
}

/// A /dev that is a symlink to a path missing from the rootfs: followed inside the rootfs
/// (created there, as the kernel would resolve it after pivot_root), never on the host.
#[test]
fn a_dev_symlink_to_a_missing_path_is_followed_inside_the_rootfs() {
    let rt = Runtime::new();
    let missing = std::env::temp_dir().join(format!("berth-test-nodev-{}", std::process::id()));
    let mut b = Bundle::sh("ls -l /dev/null");
    without_dev_mounts(&mut b);
    std::fs::remove_dir(b.rootfs().join("dev")).unwrap();
    symlink(&missing, b.rootfs().join("dev")).unwrap();
    let id = unique_id("devdangling");
    let o = rt.run_timeout(&id, &b, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with('c'), "{}", stdout(&o));
    assert!(
        !missing.exists(),
        "created {} on the host",
        missing.display()
    );
    let copy = b.rootfs().join(missing.strip_prefix("/").unwrap());
    assert!(std::fs::symlink_metadata(copy.join("null"))
        .unwrap()
        .file_type()
        .is_char_device());
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn magic_links_in_destinations_are_refused() {
    let rt = Runtime::new();
    let mut b = Bundle::sh("echo SHOULD-NOT-RUN");
    symlink("/proc/self/cwd", b.rootfs().join("m")).unwrap();
    push_mount(
        &mut b,
        json!({"destination": "/m/x", "type": "tmpfs", "source": "tmpfs"}),
    );
    let id = unique_id("magic");
    let o = rt.run_timeout(&id, &b, &[]);
    assert_one_error_line(&o, &["mounts[7].destination", "/m/x"]);
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn a_fake_dev_null_is_never_used_to_mask() {
    // A regular file bound over /dev/null.
    let rt = Runtime::new();
    let fake = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(fake.path(), "fake\n").unwrap();
    let mut b = Bundle::sh("echo SHOULD-NOT-RUN");
    push_mount(
        &mut b,
        json!({"destination": "/dev/null", "type": "bind", "source": fake.path(), "options": ["bind"]}),
    );
    let id = unique_id("fakenull");
    let o = rt.run_timeout(&id, &b, &[]);
    assert_one_error_line(
        &o,
        &["linux.maskedPaths[", "/dev/null is not the null device"],
    );
    assert_nothing_left(&rt, &id, &b);
    assert_eq!(std::fs::read_to_string(fake.path()).unwrap(), "fake\n");

    // A /dev/null that is a symlink to a writable kernel file.
    let rt = Runtime::new();
    let before = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    let mut b = Bundle::sh("echo SHOULD-NOT-RUN");
    without_dev_mounts(&mut b);
    symlink("/proc/sys/kernel/core_pattern", b.rootfs().join("dev/null")).unwrap();
    let id = unique_id("linknull");
    let o = rt.run_timeout(&id, &b, &[]);
    assert_one_error_line(
        &o,
        &["linux.maskedPaths[", "/dev/null is not the null device"],
    );
    assert_nothing_left(&rt, &id, &b);
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap(),
        before
    );
}

#[test]
fn sysctls_change_the_container_and_not_the_host() {
    let rt = Runtime::new();
    let path = "/proc/sys/net/ipv4/ip_forward";
    let host_before = std::fs::read_to_string(path).unwrap();
    let want = if host_before.trim() == "1" { "0" } else { "1" };
    let mut b = Bundle::sh(&format!(
        "cat {path}; cat /proc/sys/net/ipv4/conf/lo/forwarding"
    ));
    b.edit(|c| {
        c["linux"]["sysctl"] = json!({
            "net.ipv4.ip_forward": want,
            "net/ipv4/conf/lo/forwarding": want
        })
    });
    let id = unique_id("sysctl");
    let o = rt.run_timeout(&id, &b, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("{want}\n{want}\n"));
    assert_eq!(
        std::fs::read_to_string(path).unwrap(),
        host_before,
        "the host changed"
    );
}

#[test]
fn sysctls_are_only_written_to_a_real_procfs() {
    let rt = Runtime::new();
    let mut b = Bundle::sh("echo SHOULD-NOT-RUN");
    b.edit(|c| {
        c["mounts"]
            .as_array_mut()
            .unwrap()
            .retain(|m| m["destination"] != "/proc");
        c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
    });
    let fake = b.rootfs().join("proc/sys/net/ipv4");
    std::fs::create_dir_all(&fake).unwrap();
    std::fs::write(fake.join("ip_forward"), "0\n").unwrap();
    let id = unique_id("fakeproc");
    let o = rt.run_timeout(&id, &b, &[]);
    assert_one_error_line(
        &o,
        &["linux.sysctl[\"net.ipv4.ip_forward\"]", "not on a procfs"],
    );
    assert_eq!(
        std::fs::read_to_string(fake.join("ip_forward")).unwrap(),
        "0\n"
    );
    assert_nothing_left(&rt, &id, &b);
}
