//! The `cgroup` mount type, as runc does it. On a v1/hybrid host: a tmpfs holding one
//! directory per v1 hierarchy, each bound from the container's own cgroup (or mounted fresh
//! inside a cgroup namespace), plus a symlink per controller of a co-mounted hierarchy
//! ("cpu" → "cpu,cpuacct"). On a pure v2 host: cgroup2, or a bind of the container's cgroup
//! where the kernel refuses. Also the mountinfo reading this needs ([`v1_hierarchies`]).

use std::os::fd::AsFd;

use crate::linux::procfs::unescape_mountinfo;
use std::path::{Path, PathBuf};

use libc::MOUNT_ATTR_RDONLY as A_RDONLY;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{mount, MsFlags};
use nix::sys::stat::Mode;
use nix::sys::statfs::{fstatfs, TMPFS_MAGIC};
use oci_spec::runtime::Mount;

use super::api;
use super::attrs::propagate;
use super::bind::attach;
use super::dest::{check_dest, check_proc, dest_err, fd_target, Kind};
use super::fresh::{after_fresh, diagnose};
use super::options::{ATIME_ENUM, MNT_FLAGS};
use super::{field, Ctx, Opts, R};
use crate::linux::rootfs::errno_str;
use crate::linux::safepath::{self, IN_ROOT, NO_SYMLINKS};

/// `cgroup`: cgroup2 on a unified host; otherwise runc's v1 layout.
pub(super) fn cgroup(ctx: &Ctx, i: usize, m: &Mount, o: &Opts) -> R {
    let host = Path::new("/sys/fs/cgroup");
    let unified = nix::sys::statfs::statfs(host)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC);
    if unified {
        cgroup2(ctx, i, m, o)
    } else {
        cgroup1(ctx, i, m, o)
    }
}

/// One v1 hierarchy mounted on the host, and the container's own cgroup in it.
#[derive(Debug, PartialEq)]
pub struct Hierarchy {
    pub mountpoint: PathBuf,
    /// The controllers as mount data, e.g. `cpu,cpuacct` or `name=systemd`.
    pub controllers: String,
    /// Host path of this process's cgroup in the hierarchy, or why it cannot be reached.
    pub own: Result<PathBuf, String>,
}

/// The v1 hierarchies from mountinfo and /proc/self/cgroup text.
pub fn v1_hierarchies(mountinfo: &str, self_cgroup: &str) -> Vec<Hierarchy> {
    let own: Vec<(Vec<&str>, &str)> = self_cgroup
        .lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let (_, ctrl, path) = (it.next()?, it.next()?, it.next()?);
            (!ctrl.is_empty()).then(|| (ctrl.split(',').collect(), path))
        })
        .collect();
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let mut post = post.split(' ');
        if post.next() != Some("cgroup") {
            continue;
        }
        let superopts: Vec<&str> = post.nth(1).unwrap_or("").split(',').collect();
        let pre: Vec<&str> = pre.split(' ').collect();
        if pre.len() < 5 {
            continue;
        }
        let (root, mp) = (unescape_mountinfo(pre[3]), unescape_mountinfo(pre[4]));
        let Some((ctrls, path)) = own
            .iter()
            .find(|(c, _)| c.iter().all(|x| superopts.contains(x)))
        else {
            continue;
        };
        let own = match Path::new(path).strip_prefix(&root) {
            Ok(rel) => Ok(Path::new(&mp).join(rel)),
            Err(_) => Err(format!(
                "own cgroup {path} is not visible in the hierarchy mounted at {mp} (root {root})"
            )),
        };
        out.push(Hierarchy {
            mountpoint: PathBuf::from(&mp),
            controllers: ctrls.join(","),
            own,
        });
    }
    out
}

fn cgroup1(ctx: &Ctx, i: usize, m: &Mount, o: &Opts) -> R {
    let dest = m.destination();
    let read = |p: &str| {
        crate::linux::procfs::read_pseudo(p)
            .map_err(|e| field(i, "", format!("cgroup: read {p}: {}", errno_str(&e))))
    };
    // The host's hierarchies: the parent's copy of mountinfo (the same mounts; see procfs).
    let own = read("/proc/self/cgroup")?;
    let mountinfo = crate::linux::procfs::host_mountinfo(&own).map_err(|e| {
        field(
            i,
            "",
            format!("cgroup: read /proc/self/mountinfo: {}", errno_str(&e)),
        )
    })?;
    let hier = v1_hierarchies(mountinfo, &own);
    let kind = Kind::Fresh("tmpfs");
    check_proc(i, dest, &safepath::clean(dest), &kind)?;
    let r = safepath::mkdir_all(ctx.root, dest, 0o755, IN_ROOT).map_err(dest_err(i, dest))?;
    check_dest(ctx, i, dest, r.fd.as_fd(), &kind)?;
    let base = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(
        Some("tmpfs"),
        fd_target(r.fd.as_fd()).as_str(),
        Some("tmpfs"),
        base,
        Some("mode=755"),
    )
    .map_err(|e| {
        field(
            i,
            "",
            format!("mount tmpfs on {}: {}", dest.display(), e.desc()),
        )
    })?;
    let tmp = safepath::open_path(ctx.root, dest).map_err(dest_err(i, dest))?;
    if !fstatfs(tmp.as_fd()).is_ok_and(|s| s.filesystem_type() == TMPFS_MAGIC) {
        return Err(field(
            i,
            "destination",
            format!("{}: the tmpfs just mounted is not there", dest.display()),
        ));
    }
    let bind_opts = Opts {
        set: (o.set & MNT_FLAGS) | MsFlags::MS_BIND | MsFlags::MS_REC,
        clear: o.clear,
        propagation: o.propagation.clone(),
        ..Default::default()
    };
    for h in &hier {
        let name = h
            .mountpoint
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(&h.controllers));
        // The tmpfs is fresh and ours: each directory is made and opened directly in it.
        let sub = dest.join(&name);
        match nix::sys::stat::mkdirat(tmp.as_fd(), &name, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(dest_err(i, &sub)(e.into())),
        }
        // Opened again after the mount to reach the new mount's root rather than the directory
        // under it.
        let open_sub = || {
            safepath::open(
                tmp.as_fd(),
                &name,
                OFlag::O_PATH | OFlag::O_DIRECTORY,
                Mode::empty(),
                NO_SYMLINKS,
            )
            .map_err(dest_err(i, &sub))
        };
        let subfd = open_sub()?;
        if ctx.cgroupns {
            let (source, data) = match h.controllers.strip_prefix("name=") {
                Some(n) => (n.to_string(), h.controllers.clone()),
                None => ("cgroup".to_string(), h.controllers.clone()),
            };
            let flags = base | (o.set & (MsFlags::MS_RDONLY | ATIME_ENUM));
            mount(
                Some(source.as_str()),
                fd_target(subfd.as_fd()).as_str(),
                Some("cgroup"),
                flags,
                Some(data.as_str()),
            )
            .map_err(|e| {
                field(
                    i,
                    "",
                    format!(
                        "mount cgroup ({}) on {}: {}",
                        h.controllers,
                        sub.display(),
                        e.desc()
                    ),
                )
            })?;
            if !o.propagation.is_empty() {
                let fd = open_sub()?;
                propagate(i, fd.as_fd(), o)?;
            }
        } else {
            let own = h
                .own
                .as_ref()
                .map_err(|e| field(i, "", format!("cgroup: {e}")))?;
            let tree = api::open_tree(None, own, true).map_err(|e| {
                field(
                    i,
                    "",
                    format!("cgroup: {}: {}", own.display(), errno_str(&e)),
                )
            })?;
            attach(i, &tree, subfd.as_fd(), &sub, &bind_opts, false)?;
        }
    }
    // A hierarchy with several controllers ("cpu,cpuacct") is also reachable by each name.
    for h in &hier {
        let Some(name) = h.mountpoint.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !name.contains(',') {
            continue;
        }
        for c in name.split(',') {
            match nix::unistd::symlinkat(name, tmp.as_fd(), c) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => {
                    return Err(field(
                        i,
                        "",
                        format!("cgroup: symlink {c} -> {name}: {}", e.desc()),
                    ))
                }
            }
        }
    }
    if o.set.contains(MsFlags::MS_RDONLY) {
        let attr = api::MountAttr {
            attr_set: A_RDONLY,
            ..Default::default()
        };
        api::mount_setattr(tmp.as_fd(), false, &attr).map_err(|e| {
            field(
                i,
                "",
                format!("make {} read-only: {}", dest.display(), errno_str(&e)),
            )
        })?;
    }
    propagate(i, tmp.as_fd(), o)
}

/// A pure cgroup v2 host: mount cgroup2 (the cgroup namespace makes it the container's own
/// subtree); where the kernel refuses (a user namespace without a cgroup namespace), bind the
/// container's cgroup (or the whole hierarchy) instead, as runc does.
fn cgroup2(ctx: &Ctx, i: usize, m: &Mount, o: &Opts) -> R {
    let dest = m.destination();
    let kind = Kind::Fresh("cgroup2");
    check_proc(i, dest, &safepath::clean(dest), &kind)?;
    let r = safepath::mkdir_all(ctx.root, dest, 0o755, IN_ROOT).map_err(dest_err(i, dest))?;
    check_dest(ctx, i, dest, r.fd.as_fd(), &kind)?;
    let data = o.data_string();
    let flags = o.set & MNT_FLAGS;
    match mount(
        Some("cgroup2"),
        fd_target(r.fd.as_fd()).as_str(),
        Some("cgroup2"),
        flags,
        (!data.is_empty()).then_some(data.as_str()),
    ) {
        Ok(()) => return after_fresh(ctx, i, dest, o),
        Err(Errno::EPERM | Errno::EBUSY) => {}
        Err(e) => return Err(diagnose(i, dest, "cgroup2", "cgroup2", o, e)),
    }
    let mut src = PathBuf::from("/sys/fs/cgroup");
    if ctx.cgroupns {
        if let Some(p) = crate::linux::procfs::read_pseudo("/proc/self/cgroup")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("0::").map(str::to_string))
            })
        {
            src = src.join(p.trim_start_matches('/'));
        }
    }
    let tree = api::open_tree(None, &src, false).map_err(|e| {
        field(
            i,
            "",
            format!("cgroup: {}: {}", src.display(), errno_str(&e)),
        )
    })?;
    let bind_opts = Opts {
        set: flags | MsFlags::MS_BIND,
        clear: o.clear,
        propagation: o.propagation.clone(),
        ..Default::default()
    };
    attach(i, &tree, r.fd.as_fd(), dest, &bind_opts, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hierarchies_come_from_mountinfo_and_own_cgroup() {
        let mi = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                  32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n\
                  35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                  40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd\n\
                  41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        let cg = "9:name=systemd:/c1\n4:memory:/a/c1\n2:cpu,cpuacct:/c1\n0::/c1\n";
        let h = v1_hierarchies(mi, cg);
        assert_eq!(h.len(), 3);
        assert_eq!(h[0].controllers, "cpu,cpuacct");
        assert_eq!(h[0].own, Ok(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/c1")));
        assert_eq!(h[1].own, Ok(PathBuf::from("/sys/fs/cgroup/memory/a/c1")));
        assert_eq!(h[2].controllers, "name=systemd");
    }
}
