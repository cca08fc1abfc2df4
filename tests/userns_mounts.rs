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
