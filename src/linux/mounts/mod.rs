//! One entry of `mounts`: option parsing (runc's vocabulary), and mounting it inside the rootfs.
//!
//! * Fresh filesystems (tmpfs, proc, sysfs, devpts, mqueue, overlay, …) take one mount(2) onto
//!   `/proc/self/fd/N`, N being an O_PATH fd of the destination resolved inside the rootfs. When
//!   the kernel refuses, the mount is replayed with fsopen/fsconfig to find which option (or the
//!   type) it refused, and the kernel's own message is reported against that JSON path.
//! * Bind mounts are cloned with open_tree(OPEN_TREE_CLONE), given their flags with
//!   mount_setattr while still detached, and attached with move_mount onto the destination fd.
//! * Propagation and recursive (`rro`, `rnosuid`, …) attributes go through mount_setattr.
//! * `cgroup` follows runc: on a v1/hybrid host a tmpfs with each v1 hierarchy (bound from the
//!   container's own cgroup, or mounted fresh inside a cgroup namespace); cgroup2 on a v2 host.
//!
//! Where each part lives: this file holds the entry point, [`mount_one`] (which picks one of the
//! kinds below for `mounts[i]`), [`Ctx`], [`is_bind`] and the `mounts[i]…` error helper.
//!
//! * `options.rs`: `options` → [`Opts`]; the MS_* flag, propagation and `r*` attribute tables.
//! * `dest.rs`: the destination: the /proc rules, "still inside the rootfs?", and the
//!   `/proc/self/fd/N` path mount(2) takes.
//! * `fresh.rs`: fresh filesystems (tmpfs, proc, …) and the fsopen replay that names what the
//!   kernel refused.
//! * `copyup.rs`: tmpfs with `tmpcopyup`, built detached and filled with the destination's files.
//! * `bind.rs`: bind mounts: open_tree clone, runc's flag semantics, locked flags, move_mount.
//! * `idmap.rs`: id-mapped bind mounts (`uidMappings`/`gidMappings`, `idmap`, `ridmap`):
//!   validated with the config, their trees made by the runtime before the init is forked.
//! * `prepared.rs`: the trees the runtime makes before the init is forked (id-mapped ones, and
//!   every bind source of a container with a user namespace), which the init then attaches.
//! * `attrs.rs`: the mount_setattr helpers all kinds share: propagation, `r*` attributes, and
//!   MS_* → MOUNT_ATTR_* translation.
//! * `cgroup.rs`: the `cgroup` type: v1 hierarchies (from mountinfo) or cgroup2, with or
//!   without a cgroup namespace.
//! * `api.rs`: the new mount API's system calls (open_tree, move_mount, mount_setattr, fsopen, …).

use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use oci_spec::runtime::Mount;

use super::rootfs::{errno_str, RootfsError};

pub mod api;
mod attrs;
mod bind;
mod cgroup;
mod copyup;
mod dest;
mod fresh;
pub mod idmap;
pub mod options;
pub mod prepared;

// What rootfs.rs calls besides the entry point: the option parser, mountinfo unescaping.
pub use options::{parse, Opts};

use bind::bind;
use cgroup::cgroup;
use fresh::fresh;

type R<T = ()> = Result<T, RootfsError>;

fn field(i: usize, sub: &str, msg: impl Into<String>) -> RootfsError {
    let f = if sub.is_empty() {
        format!("mounts[{i}]")
    } else {
        format!("mounts[{i}].{sub}")
    };
    RootfsError::field(f, msg)
}

/// What a mount needs to know about the container around it.
pub struct Ctx<'a> {
    /// O_PATH fd of the rootfs (the bind mount of it onto itself).
    pub root: BorrowedFd<'a>,
    /// The kernel's path of `root`, to map resolved fds back to container paths.
    pub root_path: PathBuf,
    /// Relative bind sources are relative to the bundle.
    pub bundle: &'a Path,
    pub cgroupns: bool,
}

/// `mounts[i]`: is it a bind mount?
pub fn is_bind(m: &Mount) -> bool {
    m.typ().as_deref() == Some("bind")
        || m.options()
            .iter()
            .flatten()
            .any(|o| o == "bind" || o == "rbind")
}

/// `mounts[i]`'s source as a path (a relative one is relative to the bundle), and a detached
/// clone of its mount (of its whole subtree with `recursive`): open_tree(OPEN_TREE_CLONE).
fn clone_source(i: usize, m: &Mount, bundle: &Path, recursive: bool) -> R<(PathBuf, OwnedFd)> {
    let src = m
        .source()
        .as_ref()
        .ok_or_else(|| field(i, "source", "a bind mount needs a source"))?;
    let src = bundle.join(src);
    let tree = api::open_tree(None, &src, recursive)
        .map_err(|e| field(i, "source", format!("{}: {}", src.display(), errno_str(&e))))?;
    Ok((src, tree))
}

/// Mounts `mounts[i]` inside the rootfs.
pub fn mount_one(ctx: &Ctx, i: usize, m: &Mount) -> R {
    let opts = parse(i, m.options().as_deref().unwrap_or(&[]))?;
    let ty = m.typ().as_deref().unwrap_or("");
    if opts.copyup && ty != "tmpfs" {
        return Err(field(
            i,
            "options",
            "\"tmpcopyup\" only applies to tmpfs mounts",
        ));
    }
    if opts.bind || ty == "bind" {
        return bind(ctx, i, m, &opts);
    }
    match ty {
        "" if !opts.set.contains(MsFlags::MS_REMOUNT) => Err(field(
            i,
            "type",
            "required (only bind mounts and remounts may omit it)",
        )),
        "cgroup" => cgroup(ctx, i, m, &opts),
        _ => fresh(ctx, i, m, ty, &opts),
    }
}
