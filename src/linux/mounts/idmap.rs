//! Id-mapped bind mounts: `mounts[].uidMappings` / `gidMappings` and the `idmap` / `ridmap`
//! options (runtime-spec 1.2; runc 1.2's semantics).
//!
//! * A bind mount with `uidMappings` and `gidMappings` (both, as runc requires) is id-mapped
//!   with them; without `ridmap`, only the top mount of an `rbind` tree is.
//! * `idmap` / `ridmap` without mappings take the container's: `linux.uidMappings` and
//!   `linux.gidMappings` of a new user namespace, or the user namespace the container joins.
//! * Direction (the kernel's, and runc's): a mapping `containerID C, hostID H` makes a file that
//!   is owned by C on disk appear owned by H through the mount. In a container whose user
//!   namespace has the same mapping, H is C again: the files keep the ownership they have on
//!   the host (root's files stay root's), and what the container's root creates lands on disk
//!   as uid 0. Ids outside the mapping show as the overflow id (65534).
//!
//! The kernel lets only a process privileged over the filesystem's user namespace (the host's,
//! for a host directory) id-map a mount, and the container's init runs in the container's user
//! namespace. So [`prepare`] runs in the runtime before the init is forked: it clones each
//! source with open_tree(OPEN_TREE_CLONE), sets MOUNT_ATTR_IDMAP with a user namespace made from
//! the mapping, and keeps the detached trees; the forked init inherits them and [`take`]s each
//! one in `bind` instead of cloning the source itself (then it sets flags and attaches it
//! as for any bind mount). runc makes these trees at the same point of its sequence, from a
//! thread that joined the container's mount namespace; Berth resolves the source in the host's
//! mount namespace, which differs only for a source below an earlier mount of the container.
//!
//! [`check`] validates all of this before any side effect (config validation calls it).

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, Mount, Spec};

use super::{api, clone_source, field, is_bind, parse, R};
use crate::linux::rootfs::errno_str;
use crate::linux::sys::{clone3_fork, exit_now, Forked};

/// The kernel's limit on the lines of a uid_map or gid_map.
const MAX_EXTENTS: usize = 340;

/// Where a mount's id mapping comes from.
#[derive(Debug, Clone, PartialEq)]
enum Source {
    /// uid and gid mappings (the mount's own, or the container's new user namespace's).
    Maps(Vec<LinuxIdMapping>, Vec<LinuxIdMapping>),
    /// The user namespace the container joins (`linux.namespaces[].path`).
    Userns(PathBuf),
}

/// What `mounts[i]` needs for its id mapping.
#[derive(Debug, PartialEq)]
pub(super) struct Plan {
    maps: Source,
    /// The field named when the mapping itself is refused (`uidMappings` or `options[j]`).
    at: String,
    /// `ridmap`: the mapping applies to every mount of the cloned tree.
    recursive_idmap: bool,
    /// `rbind`: the tree is cloned with its submounts.
    recursive_tree: bool,
}

/// Validates every id-mapped mount of `spec`, without side effects. The error is
/// (JSON path, message).
pub fn check(spec: &Spec) -> Result<(), (String, String)> {
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        plan(spec, i, m).map_err(|e| match e {
            crate::linux::rootfs::RootfsError::Field { field, msg } => (field, msg),
            other => (format!("mounts[{i}]"), other.to_string()),
        })?;
    }
    Ok(())
}

/// `mounts[i]`'s id mapping, if it has one. Options that do not parse are left to the mount
/// itself to report.
pub(super) fn plan(spec: &Spec, i: usize, m: &Mount) -> R<Option<Plan>> {
    let Ok(opts) = parse(i, m.options().as_deref().unwrap_or(&[])) else {
        return Ok(None);
    };
    let (uid, gid) = (m.uid_mappings().as_ref(), m.gid_mappings().as_ref());
    if opts.idmap.is_none() && uid.is_none() && gid.is_none() {
        return Ok(None);
    }
    let at = match (uid, gid, opts.idmap) {
        (None, Some(_), _) => "gidMappings".to_string(),
        (None, None, Some((j, _))) => format!("options[{j}]"),
        _ => "uidMappings".to_string(),
    };
    if !is_bind(m) {
        // runc's words.
        return Err(field(
            i,
            &at,
            "id-mapped mounts are only supported for bind-mounts",
        ));
    }
    let maps = match (uid, gid) {
        (Some(u), Some(g)) => {
            check_maps(i, "uidMappings", u)?;
            check_maps(i, "gidMappings", g)?;
            Source::Maps(u.clone(), g.clone())
        }
        (Some(_), None) | (None, Some(_)) => {
            let missing = if uid.is_none() {
                "uidMappings"
            } else {
                "gidMappings"
            };
            return Err(field(
                i,
                missing,
                "id-mapped mounts must have both uid and gid mappings specified",
            ));
        }
        (None, None) => container_maps(spec).ok_or_else(|| {
            field(
                i,
                &at,
                "no uidMappings/gidMappings here, and no user namespace in the container to \
                 take them from: id-mapped mounts must have both uid and gid mappings specified",
            )
        })?,
    };
    Ok(Some(Plan {
        maps,
        at,
        recursive_idmap: opts.idmap.is_some_and(|(_, r)| r),
        recursive_tree: opts.set.contains(nix::mount::MsFlags::MS_REC),
    }))
}

/// The container's user namespace, as a mapping source: the one it joins, or the mappings of
/// the one it creates.
fn container_maps(spec: &Spec) -> Option<Source> {
    let linux = spec.linux().as_ref()?;
    let user = linux
        .namespaces()
        .iter()
        .flatten()
        .find(|n| n.typ() == LinuxNamespaceType::User)?;
    if let Some(p) = user.path() {
        return Some(Source::Userns(p.clone()));
    }
    let u = linux.uid_mappings().clone().filter(|v| !v.is_empty())?;
    let g = linux.gid_mappings().clone().filter(|v| !v.is_empty())?;
    Some(Source::Maps(u, g))
}

/// What the kernel would refuse in a uid_map/gid_map, named by field: no entries, too many, a
/// zero size, a range that runs past the last id, ranges that overlap on either side.
fn check_maps(i: usize, name: &str, maps: &[LinuxIdMapping]) -> R {
    if maps.is_empty() {
        return Err(field(
            i,
            name,
            "id-mapped mounts must have both uid and gid mappings specified (this one is empty)",
        ));
    }
    if maps.len() > MAX_EXTENTS {
        return Err(field(
            i,
            name,
            format!("at most {MAX_EXTENTS} entries, got {}", maps.len()),
        ));
    }
    let range = |start: u32, size: u32| (start as u64, start as u64 + size as u64);
    for (k, m) in maps.iter().enumerate() {
        if m.size() == 0 {
            return Err(field(i, &format!("{name}[{k}].size"), "must be at least 1"));
        }
        for (what, start) in [("containerID", m.container_id()), ("hostID", m.host_id())] {
            let (_, end) = range(start, m.size());
            if end > u32::MAX as u64 {
                return Err(field(
                    i,
                    &format!("{name}[{k}]"),
                    format!(
                        "{what} {start} + size {} runs past the last id ({})",
                        m.size(),
                        u32::MAX - 1
                    ),
                ));
            }
        }
        for (l, o) in maps.iter().enumerate().take(k) {
            let overlap = |a: (u64, u64), b: (u64, u64)| a.0 < b.1 && b.0 < a.1;
            if overlap(
                range(m.container_id(), m.size()),
                range(o.container_id(), o.size()),
            ) || overlap(range(m.host_id(), m.size()), range(o.host_id(), o.size()))
            {
                return Err(field(
                    i,
                    &format!("{name}[{k}]"),
                    format!("overlaps {name}[{l}]"),
                ));
            }
        }
    }
    Ok(())
}

/// Whether `mounts[i]` is an id-mapped mount (so that its tree must come from [`prepare`]).
pub(super) fn wanted(m: &Mount, o: &super::Opts) -> bool {
    o.idmap.is_some() || m.uid_mappings().is_some() || m.gid_mappings().is_some()
}

/// `mounts[i]`'s source tree, cloned and id-mapped as `p` says. `userns` holds the user
/// namespaces made so far, by mapping, so that mounts with the same mapping share one.
pub(super) fn id_mapped_tree(
    i: usize,
    m: &Mount,
    p: &Plan,
    bundle: &Path,
    userns: &mut HashMap<String, OwnedFd>,
) -> R<OwnedFd> {
    let (src, tree) = clone_source(i, m, bundle, p.recursive_tree)?;
    let key = format!("{:?}", p.maps);
    if !userns.contains_key(&key) {
        let fd = match &p.maps {
            Source::Maps(u, g) => userns_with(u, g),
            Source::Userns(path) => {
                nix::fcntl::open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
                    .map_err(|e| format!("open {}: {}", path.display(), e.desc()))
            }
        }
        .map_err(|e| field(i, &p.at, format!("the mount's user namespace: {e}")))?;
        userns.insert(key.clone(), fd);
    }
    let attr = api::MountAttr {
        attr_set: libc::MOUNT_ATTR_IDMAP,
        userns_fd: userns[&key].as_raw_fd() as u64,
        ..Default::default()
    };
    api::mount_setattr(tree.as_fd(), p.recursive_idmap, &attr).map_err(|e| {
        let why = match e.raw_os_error() {
            Some(libc::EINVAL) if p.recursive_idmap => {
                "its filesystem, or one mounted below it, does not support id-mapped mounts"
            }
            Some(libc::EINVAL) => "its filesystem does not support id-mapped mounts",
            Some(libc::EPERM) => {
                "id-mapping it is not permitted (it needs CAP_SYS_ADMIN over the filesystem, \
                 and a mount that is not id-mapped already)"
            }
            _ => "cannot id-map it",
        };
        field(
            i,
            "source",
            format!(
                "{}: {why} (mount_setattr MOUNT_ATTR_IDMAP: {})",
                src.display(),
                errno_str(&e)
            ),
        )
    })?;
    Ok(tree)
}

/// A user namespace with these mappings, as an fd: a child is cloned into a new user
/// namespace, its maps are written from here, its /proc/PID/ns/user is opened, and it is let
/// go (it exits when the pipe closes) and reaped.
fn userns_with(uid: &[LinuxIdMapping], gid: &[LinuxIdMapping]) -> Result<OwnedFd, String> {
    let (rd, wr) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    let flags = libc::CLONE_NEWUSER as u64;
    let pid = match clone3_fork(flags, None).map_err(|e| format!("clone3: {e}"))? {
        Forked::Child => {
            // Only async-signal-safe calls here: wait for the runtime to close its end.
            drop(wr);
            let mut b = [0u8; 1];
            while let Err(nix::errno::Errno::EINTR) = nix::unistd::read(rd.as_fd(), &mut b) {}
            exit_now(0)
        }
        Forked::Parent(pid) => pid,
    };
    drop(rd);
    // Whatever happens below, the child is released and reaped.
    struct Reap(Option<OwnedFd>, i32);
    impl Drop for Reap {
        fn drop(&mut self) {
            drop(self.0.take());
            let _ = nix::sys::wait::waitpid(Pid::from_raw(self.1), None);
        }
    }
    let _reap = Reap(Some(wr), pid);
    let line = |m: &LinuxIdMapping| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size());
    for (file, maps) in [("uid_map", uid), ("gid_map", gid)] {
        let path = format!("/proc/{pid}/{file}");
        let body: String = maps.iter().map(line).collect();
        let f = crate::linux::procfs::ProcFile::Pid(pid, file);
        crate::linux::procfs::write_proc(f, body.as_bytes())
            .map_err(|e| format!("write {path}: {e}"))?;
    }
    let path = format!("/proc/{pid}/ns/user");
    nix::fcntl::open(
        path.as_str(),
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("open {path}: {}", e.desc()))
}

/// Whether this kernel has mount_setattr(2), which id-mapped mounts need (Linux 5.12).
pub fn supported() -> bool {
    // SAFETY: an invalid fd and a null attr: the kernel checks the arguments and returns an
    // error without touching memory; only ENOSYS matters here.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            -1,
            std::ptr::null::<libc::c_char>(),
            0,
            std::ptr::null::<api::MountAttr>(),
            0,
        )
    };
    !(r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: serde_json::Value) -> Spec {
        let mut base = serde_json::json!({"ociVersion": "1.0.2", "linux": {"namespaces": [
            {"type": "mount"}]}});
        for (k, x) in v.as_object().unwrap() {
            base[k] = x.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    fn err(v: serde_json::Value) -> (String, String) {
        check(&spec(v)).unwrap_err()
    }

    fn map(c: u32, h: u32, s: u32) -> serde_json::Value {
        serde_json::json!([{"containerID": c, "hostID": h, "size": s}])
    }

    #[test]
    fn mappings_on_a_non_bind_mount_name_the_field() {
        let e = err(serde_json::json!({"mounts": [
            {"destination": "/a", "type": "tmpfs", "source": "tmpfs"},
            {"destination": "/m", "type": "tmpfs", "source": "tmpfs",
             "uidMappings": map(0, 1000, 1), "gidMappings": map(0, 1000, 1)}]}));
        assert_eq!(e.0, "mounts[1].uidMappings");
        assert!(e.1.contains("only supported for bind-mounts"), "{}", e.1);
        let e = err(serde_json::json!({"mounts": [
            {"destination": "/m", "type": "tmpfs", "source": "tmpfs", "options": ["ridmap"]}]}));
        assert_eq!(e.0, "mounts[0].options[0]");
    }

    #[test]
    fn both_mappings_are_needed() {
        let e = err(
            serde_json::json!({"mounts": [{"destination": "/m", "source": "/x",
            "options": ["bind"], "gidMappings": map(0, 1000, 1)}]}),
        );
        assert_eq!(e.0, "mounts[0].uidMappings");
        assert!(
            e.1.contains("must have both uid and gid mappings"),
            "{}",
            e.1
        );
    }

    #[test]
    fn zero_sizes_overflows_and_overlaps_name_the_entry() {
        let with = |u: serde_json::Value| {
            err(
                serde_json::json!({"mounts": [{"destination": "/m", "source": "/x",
                "options": ["rbind"], "uidMappings": u, "gidMappings": map(0, 1000, 1)}]}),
            )
        };
        assert_eq!(with(map(0, 1000, 0)).0, "mounts[0].uidMappings[0].size");
        let e = with(map(0, u32::MAX - 10, 11));
        assert_eq!(e.0, "mounts[0].uidMappings[0]");
        assert!(e.1.contains("hostID"), "{}", e.1);
        assert!(
            check(&spec(serde_json::json!({"mounts": [{"destination": "/m",
            "source": "/x", "options": ["bind"], "uidMappings": map(0, u32::MAX - 10, 10),
            "gidMappings": map(0, 1000, 1)}]})))
            .is_ok()
        );
        let e = with(serde_json::json!([
            {"containerID": 0, "hostID": 1000, "size": 10},
            {"containerID": 20, "hostID": 1005, "size": 10}]));
        assert_eq!(
            e,
            (
                "mounts[0].uidMappings[1]".into(),
                "overlaps uidMappings[0]".into()
            )
        );
    }

    #[test]
    fn idmap_without_mappings_takes_the_containers() {
        let s = spec(serde_json::json!({
            "linux": {"namespaces": [{"type": "mount"}, {"type": "user"}],
                      "uidMappings": map(0, 100000, 65536), "gidMappings": map(0, 200000, 10)},
            "mounts": [{"destination": "/m", "source": "/x", "options": ["rbind", "ridmap"]}]}));
        let p = plan(&s, 0, &s.mounts().as_ref().unwrap()[0])
            .unwrap()
            .unwrap();
        let l = s.linux().as_ref().unwrap();
        assert_eq!(
            p.maps,
            Source::Maps(
                l.uid_mappings().clone().unwrap(),
                l.gid_mappings().clone().unwrap()
            )
        );
        assert!(p.recursive_idmap && p.recursive_tree);
        let joined = spec(serde_json::json!({
            "linux": {"namespaces": [{"type": "mount"}, {"type": "user", "path": "/proc/1/ns/user"}]},
            "mounts": [{"destination": "/m", "source": "/x", "options": ["bind", "idmap"]}]}));
        let p = plan(&joined, 0, &joined.mounts().as_ref().unwrap()[0])
            .unwrap()
            .unwrap();
        assert_eq!(p.maps, Source::Userns("/proc/1/ns/user".into()));
        assert!(!p.recursive_idmap && !p.recursive_tree);
        let e = err(serde_json::json!({"mounts": [
            {"destination": "/m", "source": "/x", "options": ["bind", "idmap"]}]}));
        assert_eq!(e.0, "mounts[0].options[1]");
        assert!(e.1.contains("no user namespace"), "{}", e.1);
    }

    #[test]
    fn mounts_without_idmapping_are_not_planned() {
        let s = spec(serde_json::json!({"mounts": [
            {"destination": "/m", "source": "/x", "options": ["rbind", "ro"]}]}));
        assert_eq!(plan(&s, 0, &s.mounts().as_ref().unwrap()[0]).unwrap(), None);
    }
}
