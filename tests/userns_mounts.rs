//! Containers with a user namespace, on the real kernel: bind sources only the host's root can
//! reach (opened by the runtime before the init enters the user namespace, as runc does), the
//! flags of such a source's mount (kept as the kernel keeps those it locked), and containers that
//! join another container's user namespace (and pid namespace) by path. Every case leaves
//! nothing behind.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::{json, Value};

const HOST: u32 = 100000;

fn map() -> Value {
    json!([{"containerID": 0, "hostID": HOST, "size": 65536}])
}

/// The container gets its own user namespace mapping 0 → HOST (65536 ids).
fn userns(b: &mut Bundle) {
    b.namespace("user", None).edit(|c| {
        c["linux"]["uidMappings"] = map();
        c["linux"]["gidMappings"] = map();
    });
}

/// Adds a bind mount of `src` at `dest`. The destination is made in the rootfs beforehand (a
/// file or a directory, as the source): the rootfs is root's, unwritable for the container's
/// root.
fn bind(b: &mut Bundle, dest: &str, src: &Path, options: &[&str]) {
    let at = b.rootfs().join(dest.trim_start_matches('/'));
    if src.is_dir() {
        std::fs::create_dir_all(&at).unwrap();
    } else {
        std::fs::write(&at, "").unwrap();
    }
    let m = json!({"destination": dest, "type": "bind", "source": src, "options": options});
    b.edit(|c| c["mounts"].as_array_mut().unwrap().push(m));
}

/// A directory of the host's root, mode 0700 (the container's root, HOST on the host, may not
/// enter it), holding `secret` (a file) and `dir/inner` (a file in a directory).
fn private_dir() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("berth-test-userns-src-")
        .tempdir_in(std::env::temp_dir())
        .unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(d.path().join("secret"), "file-behind-0700\n").unwrap();
    std::fs::create_dir(d.path().join("dir")).unwrap();
    std::fs::write(d.path().join("dir/inner"), "dir-behind-0700\n").unwrap();
    d
}

fn skip(test: &str) -> bool {
    skip_without_namespace(test, "user")
}

#[test]
fn bind_sources_behind_a_0700_directory_of_the_hosts_root_are_mounted() {
    if skip("userns-private-source") {
        return;
    }
    let rt = Runtime::new();
    let src = private_dir();
    let mut b = Bundle::sh("cat /secret /dir/inner; id -u");
    userns(&mut b);
    bind(
        &mut b,
        "/secret",
        &src.path().join("secret"),
        &["rbind", "ro"],
    );
    bind(&mut b, "/dir", &src.path().join("dir"), &["bind"]);
    let id = unique_id("userns-private-source");
    let o = rt.run_timeout(&id, &b, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        lines(&stdout(&o)),
        ["file-behind-0700", "dir-behind-0700", "0"]
    );
    assert_nothing_left(&rt, &id, &b);
}

/// A read-only bind mount on the host, removed when dropped.
struct RoMount(PathBuf);

impl RoMount {
    fn new(dir: &Path) -> RoMount {
        let sh = |args: &[&str]| {
            let s = Command::new("mount").args(args).arg(dir).arg(dir).status();
            assert!(s.unwrap().success(), "mount {args:?}");
        };
        sh(&["--bind"]);
        let m = RoMount(dir.to_path_buf());
        sh(&["-o", "remount,bind,ro"]);
        m
    }
}

impl Drop for RoMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// The source's tree is cloned by the runtime, on the host, where the kernel has not locked its
/// flags: in a user namespace they stay as locked ones do (as when the init cloned the source
/// itself): kept when no flag is asked (runc: the same), refused when `rw` asks to clear
/// read-only (runc mounts it read-only anyway, silently; Berth names the option).
#[test]
fn a_read_only_source_mount_stays_read_only_in_a_user_namespace() {
    if skip("userns-ro-source") {
        return;
    }
    let src = private_dir();
    let dir = src.path().join("dir");
    let _ro = RoMount::new(&dir);
    let rt = Runtime::new();
    let mut b = Bundle::sh("cat /dir/inner; touch /dir/x 2>/dev/null && echo WROTE || echo RO");
    userns(&mut b);
    bind(&mut b, "/dir", &dir, &["rbind"]);
    let id = unique_id("userns-ro-source");
    let o = rt.run_timeout(&id, &b, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(lines(&stdout(&o)), ["dir-behind-0700", "RO"]);
    assert_nothing_left(&rt, &id, &b);

    let mut b = Bundle::sh("echo SHOULD-NOT-RUN");
    userns(&mut b);
    bind(&mut b, "/dir", &dir, &["rbind", "rw"]);
    let id = unique_id("userns-ro-source-rw");
    let o = rt.run_timeout(&id, &b, &[]);
    assert_one_error_line(&o, &["mounts[7].options", "cannot clear ro", "locked"]);
    assert!(!stdout(&o).contains("SHOULD-NOT-RUN"));
    assert_nothing_left(&rt, &id, &b);
}

/// Container A: its own user namespace (0 → HOST), `sleep`; created, and started when `start`.
/// Returns A's bundle and its init's pid.
fn container_a(rt: &Runtime, id: &str, start: bool) -> (Bundle, i32) {
    let mut a = Bundle::sh("exec sleep 1000");
    userns(&mut a);
    rt.create(id, &a);
    if start {
        rt.ok(&["start", id]);
    }
    let pid = rt.pid(id);
    (a, pid)
}

/// Runs B, which joins A's user namespace (and A's pid namespace with `join_pid`) by path and
/// has its own of the others; returns B's output lines: `id -u`, its pid, its user and pid
/// namespaces as /proc/self/ns shows them. Then deletes A, and checks that neither left
/// anything behind (B's check waits for A's: a created A's init holds the runtime's root).
fn run_b(rt: &Runtime, name: &str, a: (&str, &Bundle, i32), join_pid: bool) -> Vec<String> {
    let (a_id, a_bundle, a_pid) = a;
    let mut b =
        Bundle::sh("id -u; echo $$; readlink /proc/self/ns/user; readlink /proc/self/ns/pid");
    b.namespace("user", Some(&format!("/proc/{a_pid}/ns/user")));
    if join_pid {
        b.namespace("pid", Some(&format!("/proc/{a_pid}/ns/pid")));
    }
    let id = unique_id(name);
    let o = rt.run_timeout(&id, &b, &[]);
    rt.ok(&["delete", "--force", a_id]);
    assert!(o.status.success(), "{name}: {}", stderr(&o));
    assert_nothing_left(rt, a_id, a_bundle);
    assert_nothing_left(rt, &id, &b);
    lines(&stdout(&o)).iter().map(|l| l.to_string()).collect()
}

/// Joining a user namespace with a new pid namespace: B is root there (0, mapped), and pid 1 of
/// a pid namespace of its own (owned by the joined user namespace).
#[test]
fn a_container_joining_a_user_namespace_is_root_there_with_its_own_pid_namespace() {
    if skip("userns-join") {
        return;
    }
    let rt = Runtime::new();
    let a_id = unique_id("userns-join-a");
    let (a, a_pid) = container_a(&rt, &a_id, true);
    let (a_user, a_pidns) = (ns_link(a_pid, "user"), ns_link(a_pid, "pid"));
    let out = run_b(&rt, "userns-join-b", (&a_id, &a, a_pid), false);
    assert_eq!(out.len(), 4, "{out:?}");
    assert_eq!(out[0], "0", "B's uid in A's user namespace: {out:?}");
    assert_eq!(out[1], "1", "B is pid 1 of its own pid namespace: {out:?}");
    assert_eq!(out[2], a_user, "{out:?}");
    assert_ne!(out[3], a_pidns, "{out:?}");
    assert_ne!(out[3], ns_link(std::process::id() as i32, "pid"), "{out:?}");
}

/// Joining A's user and pid namespaces while A is only created (its init, Berth's code, is not
/// dumpable yet): every path is opened before the user namespace is joined, as runc does.
#[test]
fn a_container_joins_the_user_and_pid_namespaces_of_a_created_container() {
    if skip("userns-join-pid") {
        return;
    }
    let rt = Runtime::new();
    let a_id = unique_id("userns-join-pid-a");
    let (a, a_pid) = container_a(&rt, &a_id, false);
    let (a_user, a_pidns) = (ns_link(a_pid, "user"), ns_link(a_pid, "pid"));
    let out = run_b(&rt, "userns-join-pid-b", (&a_id, &a, a_pid), true);
    assert_eq!(out.len(), 4, "{out:?}");
    assert_eq!(out[0], "0", "B's uid in A's user namespace: {out:?}");
    assert_ne!(out[1], "1", "A's init is pid 1 there: {out:?}");
    assert_eq!(out[2], a_user, "{out:?}");
    assert_eq!(out[3], a_pidns, "{out:?}");
}
