//! The container's root filesystem and mounts: every option, bind mounts of directories and
//! files, propagation, recursive attributes, overlay, tmpcopyup, cgroup, read-only root,
//! --no-pivot, and bad mounts that fail with one line naming the field and leave nothing.

mod common;
#[path = "common/mountinfo.rs"]
mod mountinfo;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;
use mountinfo::{must, HostMount};
use nix::mount::MsFlags;
use serde_json::{json, Value};

fn push_mount(b: &mut Bundle, m: Value) {
    b.edit(|c| c["mounts"].as_array_mut().unwrap().push(m));
}

/// Creates the container (its init waits for `start`), hands its pid to `f`, deletes it.
fn with_created<T>(rt: &Runtime, name: &str, b: &Bundle, f: impl FnOnce(i32) -> T) -> T {
    let id = unique_id(name);
    rt.create(&id, b);
    let pid = rt.pid(&id);
    let r = f(pid);
    rt.ok(&["delete", "--force", &id]);
    r
}

#[test]
fn the_default_spec_gets_runcs_mount_table() {
    let rt = Runtime::new();
    let b = Bundle::sh("cat /proc/self/mountinfo");
    let mi = mountinfo::parse(&rt.run_stdout("defaults", &b));

    let root = must(&mi, "/");
    assert!(root.has("ro"), "root.readonly: {root:?}");
    assert_eq!(must(&mi, "/proc").fstype, "proc");
    let dev = must(&mi, "/dev");
    assert_eq!(dev.fstype, "tmpfs");
    assert!(dev.has("nosuid") && dev.has("rw"), "{dev:?}");
    assert!(
        dev.has_super("mode=755") && dev.has_super("size=65536k"),
        "{dev:?}"
    );
    let pts = must(&mi, "/dev/pts");
    assert_eq!(pts.fstype, "devpts");
    assert!(pts.has("nosuid") && pts.has("noexec"), "{pts:?}");
    for o in ["gid=5", "mode=620", "ptmxmode=666"] {
        assert!(pts.has_super(o), "/dev/pts lacks {o}: {pts:?}");
    }
    let shm = must(&mi, "/dev/shm");
    assert!(
        shm.has("nosuid") && shm.has("noexec") && shm.has("nodev"),
        "{shm:?}"
    );
    assert!(shm.has_super("size=65536k"), "{shm:?}");
    assert_eq!(must(&mi, "/dev/mqueue").fstype, "mqueue");
    let sys = must(&mi, "/sys");
    assert_eq!(sys.fstype, "sysfs");
    assert!(sys.has("ro") && sys.has("nosuid"), "{sys:?}");
    let cg = must(&mi, "/sys/fs/cgroup");
    assert_eq!(cg.fstype, "tmpfs");
    assert!(cg.has("ro"), "{cg:?}");
    // Every v1 hierarchy of the host, read-only (this host is hybrid: cgroup2 holds only
    // hugetlb and, as with runc, is not part of the v1 layout).
    let host = mountinfo::parse(&std::fs::read_to_string("/proc/self/mountinfo").unwrap());
    let v1: Vec<_> = host.iter().filter(|e| e.fstype == "cgroup").collect();
    assert!(!v1.is_empty());
    for h in v1 {
        let name = Path::new(&h.mountpoint)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        let e = must(&mi, &format!("/sys/fs/cgroup/{name}"));
        assert_eq!(e.fstype, "cgroup", "{e:?}");
        assert!(e.has("ro") && e.has("nosuid") && e.has("noexec"), "{e:?}");
    }
    // readonlyPaths and maskedPaths.
    for p in ["/proc/sys", "/proc/bus", "/proc/fs", "/proc/irq"] {
        assert!(must(&mi, p).has("ro"), "{p} is not read-only");
    }
    let fw = must(&mi, "/sys/firmware");
    assert!(fw.fstype == "tmpfs" && fw.has("ro"), "{fw:?}");
    let keys = must(&mi, "/proc/keys");
    assert_eq!(
        keys.root, "/null",
        "/proc/keys is masked with /dev/null: {keys:?}"
    );
}

#[test]
fn every_mount_flag_reaches_the_mount() {
    let rt = Runtime::new();
    let mut b =
        Bundle::sh("cat /proc/self/mountinfo; echo x > /t1/f 2>/dev/null && echo WROTE; true");
    let tmpfs = |dest: &str, opts: &[&str]| json!({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": opts});
    push_mount(
        &mut b,
        tmpfs(
            "/t1",
            &[
                "ro", "nosuid", "nodev", "noexec", "noatime", "size=1m", "mode=700",
            ],
        ),
    );
    push_mount(
        &mut b,
        tmpfs("/t2", &["strictatime", "nodiratime", "sync", "dirsync"]),
    );
    push_mount(
        &mut b,
        tmpfs(
            "/t3",
            &["nosuid", "suid", "noexec", "exec", "ro", "rw", "relatime"],
        ),
    );
    push_mount(
        &mut b,
        tmpfs("/t4", &["nosymfollow", "lazytime", "defaults"]),
    );
    let out = rt.run_stdout("flags", &b);
    assert!(!out.contains("WROTE"), "a read-only tmpfs was writable");
    let mi = mountinfo::parse(&out);
    let t1 = must(&mi, "/t1");
    for o in ["ro", "nosuid", "nodev", "noexec", "noatime"] {
        assert!(t1.has(o), "/t1 lacks {o}: {t1:?}");
    }
    assert!(
        t1.has_super("size=1024k") && t1.has_super("mode=700"),
        "{t1:?}"
    );
    let t2 = must(&mi, "/t2");
    assert!(t2.has("nodiratime"), "{t2:?}");
    assert!(
        !t2.has("relatime") && !t2.has("noatime"),
        "strictatime: {t2:?}"
    );
    assert!(t2.has_super("sync") && t2.has_super("dirsync"), "{t2:?}");
    let t3 = must(&mi, "/t3");
    assert!(t3.has("rw") && t3.has("relatime"), "{t3:?}");
    assert!(
        !t3.has("nosuid") && !t3.has("noexec"),
        "later options win: {t3:?}"
    );
    let t4 = must(&mi, "/t4");
    assert!(t4.has("nosymfollow"), "{t4:?}");
    assert!(t4.has_super("lazytime") || t4.has("lazytime"), "{t4:?}");
}

#[test]
fn bind_mounts_of_directories_and_single_files() {
    let rt = Runtime::new();
    let host = tempfile::tempdir().unwrap();
    std::fs::create_dir(host.path().join("vol")).unwrap();
    std::fs::write(host.path().join("vol/hello"), "from the host\n").unwrap();
    for (f, body) in [
        ("hosts", "127.0.0.1 berth-test\n"),
        ("resolv.conf", "nameserver 192.0.2.53\n"),
        ("hostname", "berth-test\n"),
    ] {
        std::fs::write(host.path().join(f), body).unwrap();
    }
    let mut b = Bundle::sh(
        "cat /data/hello /etc/hosts /etc/resolv.conf /etc/hostname; \
         echo new > /data/written && echo DATA-RW; \
         echo evil >> /etc/hosts || echo HOSTS-RO; \
         cat /proc/self/mountinfo",
    );
    let h = |f: &str| host.path().join(f).to_str().unwrap().to_string();
    push_mount(
        &mut b,
        json!({"destination": "/data", "type": "bind", "source": h("vol"), "options": ["rbind", "rw"]}),
    );
    push_mount(
        &mut b,
        json!({"destination": "/etc/hosts", "type": "bind", "source": h("hosts"), "options": ["bind", "ro"]}),
    );
    push_mount(
        &mut b,
        json!({"destination": "/etc/resolv.conf", "type": "bind", "source": h("resolv.conf"), "options": ["rbind", "ro", "nosuid", "nodev"]}),
    );
    push_mount(
        &mut b,
        json!({"destination": "/etc/hostname", "type": "none", "source": h("hostname"), "options": ["bind"]}),
    );
    let out = rt.run_stdout("binds", &b);
    assert!(
        out.starts_with("from the host\n127.0.0.1 berth-test\nnameserver 192.0.2.53\nberth-test\n"),
        "{out}"
    );
    assert!(out.contains("DATA-RW") && out.contains("HOSTS-RO"), "{out}");
    assert_eq!(
        std::fs::read_to_string(host.path().join("vol/written")).unwrap(),
        "new\n"
    );
    assert_eq!(
        std::fs::read_to_string(host.path().join("hosts")).unwrap(),
        "127.0.0.1 berth-test\n"
    );
    // Missing destinations were made in the rootfs: empty files for file sources.
    for f in ["etc/resolv.conf", "etc/hostname"] {
        let m = std::fs::metadata(b.rootfs().join(f)).unwrap();
        assert!(m.is_file() && m.len() == 0, "{f}: {m:?}");
    }
    assert!(b.rootfs().join("data").is_dir());
    let mi = mountinfo::parse(&out);
    let r = must(&mi, "/etc/resolv.conf");
    assert!(r.has("ro") && r.has("nosuid") && r.has("nodev"), "{r:?}");
    assert!(must(&mi, "/etc/hostname").has("rw"));
}

#[test]
fn a_data_volume_is_shared_between_containers() {
    let rt = Runtime::new();
    let vol = tempfile::tempdir().unwrap();
    let src = vol.path().to_str().unwrap();
    let mut writer = Bundle::sh("echo from-a > /vol/note");
    push_mount(
        &mut writer,
        json!({"destination": "/vol", "type": "bind", "source": src, "options": ["rbind"]}),
    );
    let mut reader = Bundle::sh("cat /vol/note");
    push_mount(
        &mut reader,
        json!({"destination": "/vol", "type": "bind", "source": src, "options": ["rbind", "ro"]}),
    );
    let a = unique_id("vol-a");
    rt.create(&a, &writer);
    rt.ok(&["start", &a]);
    assert!(rt.wait_status(&a, "stopped", SECS10));
    assert_eq!(rt.run_stdout("vol-b", &reader), "from-a\n");
    rt.ok(&["delete", &a]);
}

#[test]
fn bind_flags_replace_the_sources_unless_remount() {
    let rt = Runtime::new();
    let src = HostMount::tmpfs("berth-test-bindflags-");
    src.remount(MsFlags::MS_NOSUID | MsFlags::MS_NODEV);
    let s = src.path.to_str().unwrap();
    let mut b = Bundle::sh("cat /proc/self/mountinfo");
    push_mount(
        &mut b,
        json!({"destination": "/plain", "type": "bind", "source": s, "options": ["rbind"]}),
    );
    push_mount(
        &mut b,
        json!({"destination": "/ro", "type": "bind", "source": s, "options": ["rbind", "ro"]}),
    );
    push_mount(
        &mut b,
        json!({"destination": "/remount", "type": "bind", "source": s, "options": ["rbind", "remount", "ro"]}),
    );
    let mi = mountinfo::parse(&rt.run_stdout("bindflags", &b));
    let plain = must(&mi, "/plain");
    assert!(
        plain.has("rw") && plain.has("nosuid") && plain.has("nodev"),
        "no flags: the source's: {plain:?}"
    );
    let ro = must(&mi, "/ro");
    assert!(
        ro.has("ro") && !ro.has("nosuid") && !ro.has("nodev"),
        "like mount --bind -o ro: {ro:?}"
    );
    let re = must(&mi, "/remount");
    assert!(
        re.has("ro") && re.has("nosuid") && re.has("nodev"),
        "remount keeps the rest: {re:?}"
    );
}

#[test]
fn rbind_takes_submounts_and_rro_makes_them_read_only() {
    let rt = Runtime::new();
    let top = tempfile::tempdir().unwrap();
    std::fs::create_dir(top.path().join("sub")).unwrap();
    let sub = HostMount::tmpfs_at(&top.path().join("sub"), "size=1m");
    std::fs::write(sub.path.join("marker"), "sub\n").unwrap();
    let t = top.path().to_str().unwrap();
    let mut b = Bundle::sh(
        "ls /bind/sub; cat /rbind/sub/marker; \
         echo x > /rbind-ro/sub/w && echo RO-SUB-WRITABLE; \
         echo x > /rbind-ro/w || echo RO-TOP-READONLY; \
         echo x > /rro/sub/w2 || echo RRO-SUB-READONLY",
    );
    push_mount(
        &mut b,
        json!({"destination": "/bind", "type": "bind", "source": t, "options": ["bind"]}),
    );
    push_mount(
        &mut b,
        json!({"destination": "/rbind", "type": "bind", "source": t, "options": ["rbind"]}),
    );
    push_mount(
        &mut b,
        json!({"destination": "/rbind-ro", "type": "bind", "source": t, "options": ["rbind", "ro"]}),
    );
    push_mount(
        &mut b,
        json!({"destination": "/rro", "type": "bind", "source": t, "options": ["rbind", "rro"]}),
    );
    let out = rt.run_stdout("rbind", &b);
    assert!(
        out.starts_with("sub\n"),
        "bind (not rbind) shows the empty directory, rbind the submount: {out}"
    );
    assert!(
        out.contains("RO-SUB-WRITABLE"),
        "ro applies to the top mount only: {out}"
    );
    assert!(out.contains("RO-TOP-READONLY"), "{out}");
    assert!(
        out.contains("RRO-SUB-READONLY"),
        "rro reaches submounts: {out}"
    );
    assert!(!sub.path.join("w2").exists());
}

#[test]
fn propagation_options_shape_peer_groups() {
    let rt = Runtime::new();
    let src = HostMount::tmpfs("berth-test-prop-");
    src.propagation(MsFlags::MS_SHARED);
    let s = src.path.to_str().unwrap();
    let mut b = Bundle::sh("sleep 30");
    for (dest, p) in [
        ("/slave", "rslave"),
        ("/shared", "rshared"),
        ("/private", "rprivate"),
    ] {
        push_mount(
            &mut b,
            json!({"destination": dest, "type": "bind", "source": s, "options": ["rbind", p]}),
        );
    }
    with_created(&rt, "prop", &b, |pid| {
        let mi = mountinfo::of_pid(pid);
        let (sl, sh, pr) = (
            must(&mi, "/slave"),
            must(&mi, "/shared"),
            must(&mi, "/private"),
        );
        assert!(sl.slave() && !sl.shared(), "{sl:?}");
        assert!(sh.shared(), "{sh:?}");
        assert!(!pr.slave() && !pr.shared(), "{pr:?}");
        // A mount made on the host afterwards reaches the slave and shared binds only.
        std::fs::create_dir(src.path.join("late")).unwrap();
        let _late = HostMount::tmpfs_at(&src.path.join("late"), "");
        let seen = wait_until(SECS5, || {
            let mi = mountinfo::of_pid(pid);
            mountinfo::at(&mi, "/slave/late").is_some()
                && mountinfo::at(&mi, "/shared/late").is_some()
        });
        assert!(seen, "host mount did not propagate to rslave/rshared binds");
        assert!(mountinfo::at(&mountinfo::of_pid(pid), "/private/late").is_none());
    });
}

#[test]
fn overlay_mounts_write_to_the_upper_directory() {
    let rt = Runtime::new();
    let d = tempfile::tempdir().unwrap();
    for sub in ["lower", "upper", "work"] {
        std::fs::create_dir(d.path().join(sub)).unwrap();
    }
    std::fs::write(d.path().join("lower/l"), "lower\n").unwrap();
    let p = |s: &str| d.path().join(s).display().to_string();
    let mut b = Bundle::sh("cat /ov/l /ov2/l2; echo up > /ov/new; cat /proc/self/mountinfo");
    push_mount(
        &mut b,
        json!({"destination": "/ov", "type": "overlay", "source": "overlay", "options": [
            format!("lowerdir={}", p("lower")), format!("upperdir={}", p("upper")),
            format!("workdir={}", p("work")), "nodev"]}),
    );
    // Relative directories in the data are relative to the bundle, as under runc.
    std::fs::create_dir(b.path().join("lower2")).unwrap();
    std::fs::write(b.path().join("lower2/l2"), "lower2\n").unwrap();
    push_mount(
        &mut b,
        json!({"destination": "/ov2", "type": "overlay", "source": "overlay", "options": ["lowerdir=lower2:../../../../../../bin"]}),
    );
    let out = rt.run_stdout("overlay", &b);
    assert!(out.starts_with("lower\nlower2\n"), "{out}");
    assert_eq!(
        std::fs::read_to_string(d.path().join("upper/new")).unwrap(),
        "up\n"
    );
    let mi = mountinfo::parse(&out);
    let ov = must(&mi, "/ov");
    assert!(ov.fstype == "overlay" && ov.has("nodev"), "{ov:?}");
    let ov2 = must(&mi, "/ov2");
    assert!(
        ov2.has_super("ro"),
        "a lower-only overlay is read-only: {ov2:?}"
    );
}

#[test]
fn tmpcopyup_copies_the_directory_into_the_tmpfs() {
    let rt = Runtime::new();
    let mut b = Bundle::sh(
        "cat /etc/conf.d/a /etc/conf.d/s/b; readlink /etc/conf.d/c; \
         stat -c '%a %u:%g' /etc/conf.d/a /etc/conf.d/s /etc/conf.d; \
         echo n > /etc/conf.d/new && echo WROTE; \
         grep ' /etc/conf.d ' /proc/self/mountinfo",
    );
    let dir = b.rootfs().join("etc/conf.d");
    std::fs::create_dir_all(dir.join("s")).unwrap();
    std::fs::write(dir.join("a"), "A\n").unwrap();
    std::fs::write(dir.join("s/b"), "B\n").unwrap();
    std::fs::set_permissions(dir.join("a"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::chown(dir.join("s"), Some(1000), Some(1000)).unwrap();
    std::os::unix::fs::symlink("a", dir.join("c")).unwrap();
    push_mount(
        &mut b,
        json!({"destination": "/etc/conf.d", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup", "nosuid", "size=1m"]}),
    );
    let out = rt.run_stdout("copyup", &b);
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(&l[..4], ["A", "B", "a", "640 0:0"], "{out}");
    assert_eq!(l[4], "755 1000:1000", "{out}");
    assert_eq!(
        l[5], "750 0:0",
        "the tmpfs keeps the directory's mode: {out}"
    );
    assert_eq!(l[6], "WROTE");
    assert!(
        l[7].contains(" - tmpfs ") && l[7].contains("nosuid"),
        "{out}"
    );
    assert!(
        !dir.join("new").exists(),
        "writes went to the tmpfs, not the rootfs"
    );
}

#[test]
fn cgroup_mount_binds_the_containers_own_cgroup_without_a_cgroup_namespace() {
    let rt = Runtime::new();
    let mut b = Bundle::sh("sleep 30");
    b.without_namespace("cgroup");
    with_created(&rt, "cg-bind", &b, |pid| {
        let mi = mountinfo::of_pid(pid);
        let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let mem_path = own
            .lines()
            .find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_string()))
            .expect("memory hierarchy");
        let mem = must(&mi, "/sys/fs/cgroup/memory");
        assert_eq!(mem.fstype, "cgroup");
        assert_eq!(mem.root, mem_path, "bound from the container's own cgroup");
        assert!(mem.has("ro"), "{mem:?}");
        assert!(must(&mi, "/sys/fs/cgroup").has("ro"));
    });
}

#[test]
fn cgroup_mount_is_fresh_cgroupfs_inside_a_cgroup_namespace() {
    let rt = Runtime::new();
    let b = Bundle::sh("ls /sys/fs/cgroup/memory/ /sys/fs/cgroup/pids/; cat /proc/self/mountinfo");
    let out = rt.run_stdout("cg-ns", &b);
    assert!(
        out.contains("memory.limit_in_bytes") && out.contains("pids.max"),
        "{out}"
    );
    let mi = mountinfo::parse(&out);
    let pids = must(&mi, "/sys/fs/cgroup/pids");
    assert!(
        pids.fstype == "cgroup" && pids.has_super("pids") && pids.has("ro"),
        "{pids:?}"
    );
    let sd = must(&mi, "/sys/fs/cgroup/systemd");
    assert!(sd.has_super("name=systemd"), "{sd:?}");
}

#[test]
fn read_only_root_and_rootfs_propagation() {
    let rt = Runtime::new();
    let mut b = Bundle::sh(
        "touch /x 2>/dev/null || echo ROOT-RO; touch /dev/x && echo DEV-RW; \
         awk '$5 == \"/\"' /proc/self/mountinfo",
    );
    b.edit(|c| c["linux"]["rootfsPropagation"] = json!("rshared"));
    let out = rt.run_stdout("root-ro", &b);
    assert!(out.contains("ROOT-RO") && out.contains("DEV-RW"), "{out}");
    let mi = mountinfo::parse(&out);
    let root = must(&mi, "/");
    assert!(root.has("ro") && root.shared(), "{root:?}");

    let mut b = Bundle::sh("touch /x && echo ROOT-RW; awk '$5 == \"/\"' /proc/self/mountinfo");
    b.edit(|c| {
        c["root"]["readonly"] = json!(false);
        c["linux"]["rootfsPropagation"] = json!("private");
    });
    let out = rt.run_stdout("root-rw", &b);
    assert!(out.contains("ROOT-RW"), "{out}");
    let root = &mountinfo::parse(&out)[0];
    assert!(
        root.has("rw") && !root.shared() && !root.slave(),
        "{root:?}"
    );
}

/// Host mounts made by a test, detached (newest first) on drop, pass or fail.
#[derive(Default)]
struct MountGuard(Vec<std::path::PathBuf>);

impl MountGuard {
    fn bind(&mut self, src: &Path, dst: &Path) {
        nix::mount::mount(Some(src), dst, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .unwrap_or_else(|e| panic!("bind {} onto {}: {e}", src.display(), dst.display()));
        self.0.push(dst.to_path_buf());
    }
    fn tmpfs(&mut self, dst: &Path) {
        std::fs::create_dir_all(dst).unwrap();
        std::mem::forget(HostMount::tmpfs_at(dst, ""));
        self.0.push(dst.to_path_buf());
    }
    fn make(&self, dst: &Path, flags: MsFlags) {
        nix::mount::mount(None::<&str>, dst, None::<&str>, flags, None::<&str>).unwrap();
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        for p in self.0.iter().rev() {
            let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// Issue 11 §5: every `linux.rootfsPropagation` mode, with a read-only and a writable root,
/// for a rootfs that is a plain directory, a (private) bind mount point, a plain directory on a
/// shared host mount, and a bind mount point that is itself shared with the host. The
/// container must run and its `/` must carry the requested propagation. (runc 1.1.5 leaves
/// `/` private for shared and unbindable, and fails unbindable on a plain directory.)
#[test]
fn rootfs_propagation_modes_for_plain_and_mount_point_rootfs() {
    let rt = Runtime::new();
    let script = "awk '$5 == \"/\"' /proc/self/mountinfo";
    let mut failures = Vec::new();
    for layout in ["plain", "self-bind", "in-shared-tmpfs", "shared-bind"] {
        let mut b = Bundle::sh(script);
        let mut guard = MountGuard::default();
        // Whether the rootfs sits on (or is) a mount shared with the host's peer group.
        let host_shared = match layout {
            "plain" => false,
            "self-bind" => {
                guard.bind(&b.rootfs(), &b.rootfs());
                false
            }
            "in-shared-tmpfs" => {
                let t = b.path().join("shared");
                guard.tmpfs(&t);
                guard.make(&t, MsFlags::MS_SHARED);
                make_busybox_rootfs(&t.join("rootfs"));
                let r = t.join("rootfs");
                b.edit(|c| c["root"]["path"] = json!(r.to_str().unwrap()));
                true
            }
            _ => {
                let t = b.path().join("shared");
                guard.tmpfs(&t);
                guard.make(&t, MsFlags::MS_SHARED);
                make_busybox_rootfs(&t.join("rootfs"));
                guard.bind(&t.join("rootfs"), &b.rootfs());
                true
            }
        };
        for mode in [
            "shared",
            "rshared",
            "slave",
            "rslave",
            "private",
            "rprivate",
            "unbindable",
            "runbindable",
        ] {
            for ro in [true, false] {
                b.edit(|c| {
                    c["root"]["readonly"] = json!(ro);
                    c["linux"]["rootfsPropagation"] = json!(mode);
                });
                let case = format!("{layout} {mode} readonly={ro}");
                let id = unique_id(&format!("rprop-{layout}-{mode}-{ro}"));
                let o = rt.run_timeout(&id, &b, &[]);
                if !o.status.success() {
                    failures.push(format!("{case}: {} {}", o.status, stderr(&o).trim()));
                    continue;
                }
                let out = stdout(&o);
                let mi = mountinfo::parse(&out);
                let Some(root) = mountinfo::at(&mi, "/") else {
                    failures.push(format!("{case}: no / in {out:?}"));
                    continue;
                };
                let unbindable = root.optional.iter().any(|o| o == "unbindable");
                let prop_ok = match mode {
                    "shared" | "rshared" => root.shared() && !unbindable,
                    // A slave of the host's peer group when the rootfs's mount was shared and
                    // the whole tree was made a slave; otherwise it has no master to follow.
                    "rslave" => !root.shared() && !unbindable && root.slave() == host_shared,
                    "slave" => !root.shared() && !unbindable,
                    "private" | "rprivate" => !root.shared() && !root.slave() && !unbindable,
                    _ => unbindable && !root.shared(),
                };
                let ro_ok = root.has(if ro { "ro" } else { "rw" });
                eprintln!("{case}: {:?} {:?}", root.optional, root.opts);
                if !(prop_ok && ro_ok) {
                    failures.push(format!("{case}: / is {:?} {:?}", root.optional, root.opts));
                }
            }
        }
        drop(guard);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn read_only_tmpfs_and_dev_become_read_only_after_setup() {
    let rt = Runtime::new();
    let mut b = Bundle::sh("ls /dev/null >/dev/null && echo DEVICES; touch /dev/x || echo DEV-RO");
    b.edit(|c| {
        for m in c["mounts"].as_array_mut().unwrap() {
            if m["destination"] == "/dev" {
                m["options"].as_array_mut().unwrap().push(json!("ro"));
            }
        }
    });
    let out = rt.run_stdout("dev-ro", &b);
    assert_eq!(out, "DEVICES\nDEV-RO\n");
}

#[test]
fn no_pivot_moves_the_rootfs_onto_slash_and_chroots() {
    let rt = Runtime::new();
    let b = Bundle::sh("cat /proc/self/mountinfo; ls /dev/null; echo DONE");
    let id = unique_id("nopivot");
    let o = rt.run_timeout(&id, &b, &["--no-pivot"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.ends_with("/dev/null\nDONE\n"), "{out}");
    let mi = mountinfo::parse(&out);
    assert!(must(&mi, "/").has("ro"));
    assert_eq!(must(&mi, "/proc").fstype, "proc");
    // Only the container's own proc and sysfs are reachable.
    assert_eq!(
        mi.iter()
            .filter(|e| e.fstype == "proc" && e.root == "/")
            .count(),
        1
    );
}

#[test]
fn relative_bind_sources_are_relative_to_the_bundle() {
    let rt = Runtime::new();
    let mut b = Bundle::sh("cat /rel/file");
    std::fs::create_dir(b.path().join("reldata")).unwrap();
    std::fs::write(b.path().join("reldata/file"), "relative\n").unwrap();
    push_mount(
        &mut b,
        json!({"destination": "/rel", "type": "bind", "source": "reldata", "options": ["rbind"]}),
    );
    assert_eq!(rt.run_stdout("relsrc", &b), "relative\n");
}

/// Each bad mount fails `run` with one line naming the JSON path and leaves nothing behind.
#[test]
fn bad_mounts_fail_naming_the_field_and_leave_nothing() {
    let cases: &[(&str, Value, &[&str])] = &[
        (
            "src",
            json!({"destination": "/m", "type": "bind", "source": "no-such-dir", "options": ["rbind"]}),
            &["mounts[7].source", "no-such-dir", "No such file"],
        ),
        (
            "type",
            json!({"destination": "/m", "type": "nosuchfs", "source": "x"}),
            &["mounts[7].type", "nosuchfs"],
        ),
        (
            "value",
            json!({"destination": "/m", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "size=lots"]}),
            &["mounts[7].options[1]", "size=lots", "tmpfs"],
        ),
        (
            "unknown",
            json!({"destination": "/m", "type": "tmpfs", "source": "tmpfs", "options": ["frobnicate"]}),
            &["mounts[7].options[0]", "frobnicate"],
        ),
        (
            "inproc",
            json!({"destination": "/proc/sys/kernel/core_pattern", "type": "bind", "source": "/etc/hostname", "options": ["bind"]}),
            &["mounts[7].destination", "inside /proc"],
        ),
        (
            "onproc",
            json!({"destination": "/proc", "type": "tmpfs", "source": "tmpfs"}),
            &["mounts[7].destination", "only a proc filesystem"],
        ),
        (
            "idmap",
            json!({"destination": "/m", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "idmap"]}),
            &["mounts[7].options[1]", "only supported for bind-mounts"],
        ),
        (
            "copyup",
            json!({"destination": "/m", "type": "proc", "source": "proc", "options": ["tmpcopyup"]}),
            &["mounts[7].options", "tmpcopyup"],
        ),
    ];
    for (name, m, needles) in cases {
        let rt = Runtime::new();
        let mut b = Bundle::sh("echo SHOULD-NOT-RUN");
        assert_eq!(b.config["mounts"].as_array().unwrap().len(), 7);
        push_mount(&mut b, m.clone());
        let id = unique_id(&format!("bad-{name}"));
        let o = rt.run_timeout(&id, &b, &[]);
        assert_one_error_line(&o, needles);
        assert!(!stdout(&o).contains("SHOULD-NOT-RUN"));
        assert!(rt.ids().is_empty(), "{name}: berth list is not empty");
        assert_nothing_left(&rt, &id, &b);
    }
}

/// A proc or sysfs destination that is a symlink in the rootfs is refused by name (runc: "must
/// be mounted on ordinary directory"), not as a bare ELOOP; nothing is left behind.
#[test]
fn proc_and_sys_destinations_that_are_symlinks_are_named() {
    for (dir, index) in [("proc", 0), ("sys", 5)] {
        let rt = Runtime::new();
        let b = Bundle::sh("echo SHOULD-NOT-RUN");
        assert_eq!(b.config["mounts"][index]["destination"], format!("/{dir}"));
        let link = b.rootfs().join(dir);
        let _ = std::fs::remove_dir(&link);
        std::fs::create_dir_all(b.rootfs().join("elsewhere")).unwrap();
        std::os::unix::fs::symlink("elsewhere", &link).unwrap();
        let id = unique_id(&format!("symlink-{dir}"));
        let o = rt.run_timeout(&id, &b, &[]);
        assert_one_error_line(
            &o,
            &[
                &format!("mounts[{index}].destination: /{dir} is a symlink in the rootfs"),
                "must be mounted on ordinary directory",
            ],
        );
        assert!(rt.ids().is_empty());
        assert_nothing_left(&rt, &id, &b);
    }
}

/// In a user namespace, flags of a mount inherited from the host are locked: a bind asking for
/// other flags keeps them (and still gets what it asked), and asking to clear one is an error.
#[test]
fn locked_flags_survive_bind_flags_in_a_user_namespace() {
    let rt = Runtime::new();
    let src = HostMount::tmpfs("berth-test-locked-");
    src.remount(MsFlags::MS_NOSUID | MsFlags::MS_NODEV);
    std::fs::set_permissions(&src.path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let userns = |b: &mut Bundle| {
        b.namespace("user", None).edit(|c| {
            c["linux"]["uidMappings"] =
                json!([{"containerID": 0, "hostID": 300000, "size": 65536}]);
            c["linux"]["gidMappings"] =
                json!([{"containerID": 0, "hostID": 300000, "size": 65536}]);
        });
    };
    let s = src.path.to_str().unwrap();
    // The rootfs belongs to the host's root, unmapped here: the mount point must exist.
    let mut b = Bundle::sh("cat /proc/self/mountinfo");
    std::fs::create_dir(b.rootfs().join("locked")).unwrap();
    userns(&mut b);
    push_mount(
        &mut b,
        json!({"destination": "/locked", "type": "bind", "source": s, "options": ["rbind", "ro", "noexec"]}),
    );
    let mi = mountinfo::parse(&rt.run_stdout("locked", &b));
    let l = must(&mi, "/locked");
    for o in ["ro", "noexec", "nosuid", "nodev"] {
        assert!(l.has(o), "/locked lacks {o}: {l:?}");
    }

    let mut b = Bundle::sh("echo SHOULD-NOT-RUN");
    std::fs::create_dir(b.rootfs().join("locked")).unwrap();
    userns(&mut b);
    push_mount(
        &mut b,
        json!({"destination": "/locked", "type": "bind", "source": s, "options": ["rbind", "suid"]}),
    );
    let id = unique_id("locked-clear");
    let o = rt.run_timeout(&id, &b, &[]);
    assert_one_error_line(&o, &["mounts[7].options", "cannot clear", "locked"]);
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn readonly_and_masked_paths_cover_files_and_directories() {
    let rt = Runtime::new();
    let mut b = Bundle::sh(
        "echo x >> /etc/motd || echo MOTD-RO; echo x > /etc/other && echo OTHER-RW; \
         touch /ro-dir/sub/new || echo SUBDIR-RO; \
         cat /etc/secret; echo \"[$(ls /secrets)]\"; touch /secrets/x || echo MASK-RO; \
         grep -c ' /secrets ' /proc/self/mountinfo",
    );
    let r = b.rootfs();
    std::fs::write(r.join("etc/motd"), "motd\n").unwrap();
    std::fs::write(r.join("etc/secret"), "top secret\n").unwrap();
    std::fs::create_dir_all(r.join("ro-dir/sub")).unwrap();
    std::fs::create_dir_all(r.join("secrets")).unwrap();
    std::fs::write(r.join("secrets/key"), "key\n").unwrap();
    b.edit(|c| {
        c["root"]["readonly"] = json!(false);
        c["linux"]["readonlyPaths"] = json!(["/etc/motd", "/ro-dir", "/no/such/path"]);
        c["linux"]["maskedPaths"] = json!(["/etc/secret", "/secrets", "/no/such/file"]);
    });
    let out = rt.run_stdout("paths", &b);
    assert_eq!(
        out, "MOTD-RO\nOTHER-RW\nSUBDIR-RO\n[]\nMASK-RO\n1\n",
        "masked file reads empty, masked dir is empty and read-only"
    );
    assert_eq!(
        std::fs::read_to_string(r.join("etc/motd")).unwrap(),
        "motd\n"
    );
}
