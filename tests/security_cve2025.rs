//! The 2025 runc advisories, as attacks made *during* create, after any check a runtime might
//! make up front:
//!
//! - CVE-2025-31133: the container's /dev/null, bound over every masked file, is swapped (by a
//!   hook standing in for a racing process) for a symlink to a host file, a hardlink of one,
//!   another character device, or removed. Masking must bind only a verified null device, the
//!   one it checked (no lookup by path between the check and the mount), and fail otherwise.
//! - CVE-2025-52881: a file Berth writes in /proc (here a sysctl) is covered by a bind mount of
//!   another file, a plain host file or another procfs file, before the write. The write must
//!   go through an fd proven to be on the container's procfs mount itself.
//!
//! Each attack aims at a host file the test owns (a stand-in for /proc/sys/kernel/core_pattern,
//! or a procfs file of a process the test started); the test shows it untouched, not mounted
//! anywhere on the host, and not reached from inside the container.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::{json, Value};

/// The file inside the rootfs that the tests add to `linux.maskedPaths`.
const MASKED: &str = "/etc/masked";

/// What the container runs if it gets created: it shows what its masked file is and tries to
/// write through it, then lists its mounts (a naive runtime would show the stand-in there).
const PROBE: &str = "echo MASKED:$(head -c 64 /etc/masked 2>&1); echo PWNED > /etc/masked; \
                     cat /proc/self/mountinfo";

/// A host directory holding the stand-in file the attacks aim at.
struct Target {
    dir: tempfile::TempDir,
}

impl Target {
    fn new() -> Target {
        let dir = tempfile::Builder::new()
            .prefix("berth-test-cve2025-")
            .tempdir_in(std::env::temp_dir())
            .unwrap();
        std::fs::write(dir.path().join("core_pattern"), "host\n").unwrap();
        Target { dir }
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("core_pattern")
    }

    /// The directory's unique name: it appears in any mountinfo line of a mount made from it.
    fn tag(&self) -> String {
        self.dir
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    /// The stand-in still holds what the test wrote, and no mount on the host comes from it.
    fn assert_untouched(&self, o: &std::process::Output) {
        assert_eq!(
            std::fs::read_to_string(self.file()).unwrap(),
            "host\n",
            "the host file was written through the container\nstdout: {}\nstderr: {}",
            stdout(o),
            stderr(o)
        );
        let tag = self.tag();
        let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let on_host: Vec<&str> = mi.lines().filter(|l| l.contains(&tag)).collect();
        assert!(on_host.is_empty(), "the host file is mounted: {on_host:?}");
        assert!(
            !stdout(o).contains(&tag) && !stdout(o).contains("MASKED:"),
            "the container ran and saw:\n{}",
            stdout(o)
        );
    }
}

fn push_mount(b: &mut Bundle, m: Value) {
    b.edit(|c| c["mounts"].as_array_mut().unwrap().push(m));
}

/// A bundle that masks [`MASKED`] (a file holding "secret") after the default masked paths,
/// runs [`PROBE`], and has `hook` as its only hook of `kind`.
fn masking_bundle(kind: &str, hook: &str) -> Bundle {
    let mut b = Bundle::sh(PROBE);
    std::fs::write(b.rootfs().join(MASKED.trim_start_matches('/')), "secret\n").unwrap();
    b.edit(|c| {
        c["linux"]["maskedPaths"]
            .as_array_mut()
            .unwrap()
            .push(json!(MASKED));
        c["hooks"] = json!({kind: [{"path": "/bin/sh", "args": ["sh", "-c", hook]}]});
    });
    b
}

/// Runs `b` and checks that create failed on the masked paths, naming `why`, and left nothing.
fn assert_masking_refused(b: &Bundle, name: &str, why: &str, t: &Target) {
    let rt = Runtime::new();
    let id = unique_id(name);
    let o = rt.run_timeout(&id, b, &[]);
    t.assert_untouched(&o);
    assert!(
        !stdout(&o).contains("secret"),
        "the masked file was left unmasked:\n{}",
        stdout(&o)
    );
    assert_one_error_line(&o, &["linux.maskedPaths[", why]);
    assert_nothing_left(&rt, &id, b);
}

/// createContainer hooks run in the container's mount namespace with the rootfs as their
/// working directory, after the devices were made and before the masking: the moment a
/// process racing with create could swap the rootfs's /dev/null.
#[test]
fn a_dev_null_swapped_for_a_symlink_during_create_is_never_bound() {
    let t = Target::new();
    let hook = "rm -f dev/null && ln -s /hostvol/core_pattern dev/null";
    let mut b = masking_bundle("createContainer", hook);
    push_mount(
        &mut b,
        json!({"destination": "/hostvol", "type": "bind", "source": t.dir.path(), "options": ["rbind"]}),
    );
    assert_masking_refused(&b, "nullswap", "/dev/null is not the null device", &t);
}

#[test]
fn a_dev_null_swapped_for_another_char_device_during_create_is_refused() {
    let t = Target::new();
    // 1:7 is /dev/full: harmless here, but any device could be chosen (1:1 is /dev/mem).
    let b = masking_bundle("createContainer", "rm -f dev/null && mknod dev/null c 1 7");
    assert_masking_refused(&b, "nullfull", "device 1:7", &t);
}

/// runc before the fix skipped masking when /dev/null was missing; Berth fails the create.
#[test]
fn a_dev_null_removed_during_create_fails_the_create() {
    let t = Target::new();
    let b = masking_bundle("createContainer", "rm -f dev/null");
    assert_masking_refused(&b, "nullgone", "/dev/null: No such file or directory", &t);
}

/// /dev bound from a host directory the attacker controls: its `null` is the real device when
/// create starts and a hardlink of a host file by the time the paths are masked (the swap is
/// made on the host, by a createRuntime hook).
#[test]
fn a_bound_dev_whose_null_becomes_a_host_file_during_create_is_refused() {
    let t = Target::new();
    let dev = t.dir.path().join("dev");
    std::fs::create_dir(&dev).unwrap();
    nix::sys::stat::mknod(
        &dev.join("null"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
    let hook = format!(
        "ln -f {} {}",
        t.file().display(),
        dev.join("null").display()
    );
    let mut b = masking_bundle("createRuntime", &hook);
    b.edit(|c| {
        c["mounts"]
            .as_array_mut()
            .unwrap()
            .retain(|m| !m["destination"].as_str().unwrap().starts_with("/dev"))
    });
    push_mount(
        &mut b,
        json!({"destination": "/dev", "type": "bind", "source": dev, "options": ["rbind"]}),
    );
    assert_masking_refused(&b, "nullhard", "/dev/null is not the null device", &t);
    let st = std::fs::symlink_metadata(dev.join("null")).unwrap();
    assert!(st.is_file(), "the hook did not run: {st:?}");
}

/// Masked directories are covered by a fresh, empty, read-only tmpfs (not a bind of anything
/// from the rootfs or the host).
#[test]
fn masked_directories_get_a_fresh_read_only_tmpfs() {
    let rt = Runtime::new();
    let mut b = Bundle::sh(
        "ls -A /etc/secrets; touch /etc/secrets/x 2>/dev/null && echo WRITABLE; \
         grep ' /etc/secrets ' /proc/self/mountinfo",
    );
    std::fs::create_dir(b.rootfs().join("etc/secrets")).unwrap();
    std::fs::write(b.rootfs().join("etc/secrets/key"), "secret\n").unwrap();
    b.edit(|c| {
        c["linux"]["maskedPaths"]
            .as_array_mut()
            .unwrap()
            .push(json!("/etc/secrets"))
    });
    let id = unique_id("maskdir");
    let o = rt.run_timeout(&id, &b, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let l = lines(&out);
    assert_eq!(
        l.len(),
        1,
        "the masked directory is not empty and read-only:\n{out}"
    );
    let f: Vec<&str> = l[0].split(' ').collect();
    let (root, opts) = (f[3], f[5]);
    let fstype = l[0].split(" - ").nth(1).unwrap().split(' ').next().unwrap();
    assert_eq!((root, fstype), ("/", "tmpfs"), "{}", l[0]);
    assert!(opts.split(',').any(|o| o == "ro"), "{}", l[0]);
    assert_nothing_left(&rt, &id, &b);
}

/// A process of the test's, killed and reaped on drop.
struct Sleeper(std::process::Child);

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a container whose sysctl `net.ipv4.ip_forward` a createContainer hook covers with a
/// bind of `source` before Berth writes it, and checks that create fails, that neither `source`
/// nor `watched` changed, and that nothing is left.
fn assert_covered_sysctl_refused(name: &str, source: &Path, watched: &[&Path]) {
    let before: Vec<String> = watched
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let rt = Runtime::new();
    let mut b = Bundle::sh("echo RAN; cat /proc/sys/net/ipv4/ip_forward /proc/1/oom_score_adj");
    let hook = format!(
        "mount --bind {} proc/sys/net/ipv4/ip_forward",
        source.display()
    );
    b.edit(|c| {
        c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
        c["hooks"] = json!({"createContainer": [{"path": "/bin/sh", "args": ["sh", "-c", hook]}]});
    });
    let id = unique_id(name);
    let o = rt.run_timeout(&id, &b, &[]);
    let after: Vec<String> = watched
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert_eq!(
        after,
        before,
        "written through the bind over the sysctl\nstdout: {}\nstderr: {}",
        stdout(&o),
        stderr(&o)
    );
    assert!(!stdout(&o).contains("RAN"), "{}", stdout(&o));
    assert_one_error_line(
        &o,
        &[
            "linux.sysctl[\"net.ipv4.ip_forward\"]",
            "crosses a mount point",
        ],
    );
    assert_nothing_left(&rt, &id, &b);
}

/// CVE-2025-52881 with a host file bound over the sysctl during create.
#[test]
fn a_sysctl_covered_by_a_host_file_during_create_is_never_written_through() {
    let t = Target::new();
    assert_covered_sysctl_refused("sysctlfile", &t.file(), &[&t.file()]);
    // The sysctl itself is written when nothing covers it.
    let rt = Runtime::new();
    let mut b = Bundle::sh("cat /proc/sys/net/ipv4/ip_forward");
    b.edit(|c| c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"}));
    assert_eq!(rt.run_stdout("sysctlok", &b), "1\n");
}

/// CVE-2025-52881 with another procfs file bound over the sysctl: the `oom_score_adj` of a host
/// process the test started, which a filesystem-type check alone takes for the real thing.
#[test]
fn a_sysctl_covered_by_another_procfs_file_during_create_is_never_written_through() {
    let sleeper = Sleeper(
        std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap(),
    );
    let adj = PathBuf::from(format!("/proc/{}/oom_score_adj", sleeper.0.id()));
    assert_covered_sysctl_refused("sysctlproc", &adj, &[&adj]);
}

/// CVE-2025-52881's own shape: a file of the container's procfs itself (its init's
/// `oom_score_adj`) bound over the sysctl: same filesystem, same superblock, another mount.
#[test]
fn a_sysctl_covered_by_a_file_of_the_same_procfs_during_create_is_never_written_through() {
    assert_covered_sysctl_refused("sysctlsame", Path::new("proc/1/oom_score_adj"), &[]);
}
