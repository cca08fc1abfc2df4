//! The container's mounts that CRIU cannot rebuild from its images because their source lies
//! outside the container: they are declared "external" on dump (mountpoint → a name stored in
//! the images) and mapped back on restore (name → the host path bound there again). As runc:
//! every bind mount of the bundle (named by its destination), the cgroup v1 binds under the
//! `cgroup` mount (named by their mountpoint; not with a cgroup namespace, nor on a pure v2
//! host, where the mount is cgroupfs itself), the masked files (named `/dev/null`, bound from
//! the host's /dev/null) and the device nodes (named by their path). Names that match no
//! mount are ignored by CRIU.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::linux::mounts::is_bind;

/// (key, value) pairs for CRIU's `ext_mnt`.
pub type ExtMounts = Vec<(String, String)>;

/// What the masked files are bound from, and named as.
const DEV_NULL: &str = "/dev/null";

fn has_cgroupns(spec: &Spec) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| ns.iter().any(|n| n.typ() == LinuxNamespaceType::Cgroup))
}

fn unified_host() -> bool {
    nix::sys::statfs::statfs("/sys/fs/cgroup")
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
}

/// The destination of the spec's `cgroup` mount, when its hierarchies are binds.
fn cgroup_binds_at(spec: &Spec) -> Option<PathBuf> {
    if has_cgroupns(spec) || unified_host() {
        return None;
    }
    spec.mounts()
        .iter()
        .flatten()
        .find(|m| m.typ().as_deref() == Some("cgroup"))
        .map(|m| m.destination().clone())
}

fn device_paths(spec: &Spec) -> Vec<String> {
    crate::linux::devices::plan(spec)
        .map(|nodes| nodes.iter().map(|n| n.path.display().to_string()).collect())
        .unwrap_or_default()
}

fn bind_mounts(spec: &Spec, bundle: &Path) -> Vec<(String, PathBuf)> {
    spec.mounts()
        .iter()
        .flatten()
        .filter(|m| is_bind(m))
        .filter_map(|m| {
            let src = m.source().as_ref()?;
            Some((m.destination().display().to_string(), bundle.join(src)))
        })
        .collect()
}

/// The cgroup mounts under `at` in a mountinfo text: their mountpoints.
fn cgroup_mountpoints(mountinfo: &str, at: &Path) -> Vec<String> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let fstype = post.split(' ').next()?;
            let mp = crate::linux::procfs::unescape_mountinfo(pre.split(' ').nth(4)?);
            ((fstype == "cgroup" || fstype == "cgroup2") && Path::new(&mp).starts_with(at))
                .then_some(mp)
        })
        .filter(|mp| Path::new(mp) != at)
        .collect()
}

/// What to declare when dumping the container whose init is `pid` (the masked paths that are
/// files in it, not directories, are told apart through /proc/PID/root).
pub fn for_dump(spec: &Spec, pid: i32) -> ExtMounts {
    let mut out: ExtMounts = Vec::new();
    for (dest, _) in bind_mounts(spec, Path::new("/")) {
        out.push((dest.clone(), dest));
    }
    if let Some(at) = cgroup_binds_at(spec) {
        let mi = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
        for mp in cgroup_mountpoints(&mi, &at) {
            out.push((mp.clone(), mp));
        }
    }
    for p in masked_paths(spec) {
        let inside = format!("/proc/{pid}/root{p}");
        if std::fs::metadata(inside).is_ok_and(|m| !m.is_dir()) {
            out.push((p, DEV_NULL.into()));
        }
    }
    for d in device_paths(spec) {
        out.push((d.clone(), d));
    }
    dedup(out)
}

fn masked_paths(spec: &Spec) -> Vec<String> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.masked_paths().clone())
        .unwrap_or_default()
}

/// What to map when restoring: `bundle` resolves relative bind sources, `cgroup_dirs` are the
/// restored container's cgroup directories (one per hierarchy, as its cgroup record has them).
pub fn for_restore(spec: &Spec, bundle: &Path, cgroup_dirs: &[PathBuf]) -> ExtMounts {
    let mut out: ExtMounts = Vec::new();
    for (dest, src) in bind_mounts(spec, bundle) {
        out.push((dest, src.display().to_string()));
    }
    if let Some(at) = cgroup_binds_at(spec) {
        let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let host: Vec<String> = cgroup_mountpoints(&mi, Path::new("/sys/fs/cgroup"));
        for dir in cgroup_dirs {
            // The hierarchy the directory is in: the longest host cgroup mountpoint above it.
            let Some(mp) = host
                .iter()
                .filter(|mp| dir.starts_with(mp))
                .max_by_key(|mp| mp.len())
            else {
                continue;
            };
            if let Some(name) = Path::new(mp).file_name() {
                out.push((
                    at.join(name).display().to_string(),
                    dir.display().to_string(),
                ));
            }
        }
    }
    if !masked_paths(spec).is_empty() {
        out.push((DEV_NULL.into(), DEV_NULL.into()));
    }
    for d in device_paths(spec) {
        out.push((d.clone(), d));
    }
    dedup(out)
}

/// Makes the mountpoints of the bundle's bind mounts that `rootfs` lacks (a directory for a
/// directory source, an empty file otherwise), resolved inside the root, as runc does before a
/// restore: CRIU binds them again where they were, and a rootfs unpacked anew (podman's
/// `restore --import`) has none of what `create` made. Those under a tmpfs of the spec are left
/// out (CRIU restores the tmpfs with its contents). Like those `create` makes, they stay in the
/// rootfs.
pub fn make_mountpoints(
    spec: &Spec,
    bundle: &Path,
    rootfs: &Path,
) -> Result<(), (String, std::io::Error)> {
    use crate::linux::safepath::{create_file, mkdir_all, IN_ROOT};
    use std::os::fd::AsFd;
    let root = std::fs::File::open(rootfs).map_err(|e| (rootfs.display().to_string(), e))?;
    let tmpfs: Vec<PathBuf> = spec
        .mounts()
        .iter()
        .flatten()
        .filter(|m| m.typ().as_deref() == Some("tmpfs"))
        .map(|m| m.destination().clone())
        .collect();
    for (dest, src) in bind_mounts(spec, bundle) {
        let d = Path::new(&dest);
        if tmpfs.iter().any(|t| d.starts_with(t)) || d.starts_with("/dev") {
            continue;
        }
        if src.is_dir() {
            mkdir_all(root.as_fd(), d, 0o755, IN_ROOT)
        } else {
            create_file(root.as_fd(), d, 0o644, IN_ROOT)
        }
        .map_err(|e| (dest.clone(), e))?;
    }
    Ok(())
}

fn dedup(v: ExtMounts) -> ExtMounts {
    let mut seen = std::collections::HashSet::new();
    v.into_iter()
        .filter(|(k, _)| seen.insert(k.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_mountpoints_below_the_cgroup_mount() {
        let mi = "30 25 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n\
                  31 30 0:27 /c1 /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
                  32 30 0:28 /c1 /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
                  40 25 0:29 / /proc rw - proc proc rw\n";
        assert_eq!(
            cgroup_mountpoints(mi, Path::new("/sys/fs/cgroup")),
            vec!["/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/unified"]
        );
    }

    #[test]
    fn binds_devices_and_masks_are_mapped_back() {
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "mounts": [
                {"destination": "/out", "type": "bind", "source": "out", "options": ["rbind"]},
                {"destination": "/proc", "type": "proc", "source": "proc"}
            ],
            "linux": {"maskedPaths": ["/proc/kcore"], "namespaces": [{"type": "cgroup"}]}
        }))
        .unwrap();
        let m = for_restore(&spec, Path::new("/b"), &[]);
        assert!(m.contains(&("/out".into(), "/b/out".into())), "{m:?}");
        assert!(
            m.contains(&("/dev/null".into(), "/dev/null".into())),
            "{m:?}"
        );
        assert!(m.contains(&("/dev/tty".into(), "/dev/tty".into())), "{m:?}");
        assert!(!m.iter().any(|(k, _)| k == "/proc"), "{m:?}");
    }
}
