//! Bind-mount trees the runtime makes before the container's init is forked, in the host's user
//! namespace; the forked init inherits them and attaches each one in `bind` instead of cloning
//! the source itself.
//!
//! * Id-mapped mounts (see `idmap.rs`): only a process privileged over the filesystem's user
//!   namespace may id-map a mount.
//! * Every bind mount of a container with a user namespace (new or joined): its root is an
//!   unprivileged id on the host, and may not reach a source that the host's root can (a file in
//!   a 0700 directory of root's). runc opens these sources before its init enters the user
//!   namespace too (its "mount sources", resolved with the host's credentials); Berth resolves
//!   them in the host's mount namespace, which differs only for a source below an earlier mount
//!   of the container.
//!
//! A tree cloned here comes from the host's mount namespace, so the kernel has not locked its
//! flags as it locks those of the mounts a new user namespace's mount namespace inherits. Where
//! the container has a user namespace, `bind` treats the tree's read-only, nosuid, nodev,
//! noexec and atime flags as locked anyway, so a config gets the mount it got when the init
//! cloned the source itself (the kernel's locked flags), and runc's.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Mutex;

use nix::mount::MsFlags;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::{clone_source, idmap, is_bind, parse, R};

/// A tree made by [`prepare`].
pub(super) struct Tree {
    pub fd: OwnedFd,
    /// The container has a user namespace: the tree's lockable flags count as locked.
    pub locked: bool,
}

/// The trees made by [`prepare`], by mount index. The container's init is a fork of the runtime
/// and inherits this (and the fds) as it was at the fork.
static PREPARED: Mutex<Vec<(usize, Tree)>> = Mutex::new(Vec::new());

/// The runtime's hold on the prepared trees: dropping it closes the runtime's copies (the
/// forked init keeps its own).
pub struct Prepared(());

impl Drop for Prepared {
    fn drop(&mut self) {
        if let Ok(mut p) = PREPARED.lock() {
            p.clear();
        }
    }
}

/// Makes the trees of `spec`'s id-mapped mounts and, for a container with a user namespace, of
/// all its bind mounts (runtime side, in the host's user namespace, before the init is
/// forked). Nothing is left behind on error.
pub fn prepare(spec: &Spec, bundle: &Path) -> R<Prepared> {
    let guard = Prepared(());
    let has = |t: LinuxNamespaceType| {
        spec.linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_ref())
            .is_some_and(|ns| ns.iter().any(|n| n.typ() == t))
    };
    // An unprivileged caller cannot clone trees here: its container's init clones them.
    let userns = has(LinuxNamespaceType::User) && crate::rootless::may_mount_here();
    let mut trees = Vec::new();
    if has(LinuxNamespaceType::Mount) {
        let mut maps: HashMap<String, OwnedFd> = HashMap::new();
        for (i, m) in spec.mounts().iter().flatten().enumerate() {
            let fd = if let Some(p) = idmap::plan(spec, i, m)? {
                idmap::id_mapped_tree(i, m, &p, bundle, &mut maps)?
            } else if userns && is_bind(m) {
                // Options that do not parse are left to the mount itself to report.
                let Ok(o) = parse(i, m.options().as_deref().unwrap_or(&[])) else {
                    continue;
                };
                clone_source(i, m, bundle, o.set.contains(MsFlags::MS_REC))?.1
            } else {
                continue;
            };
            trees.push((i, Tree { fd, locked: userns }));
        }
    }
    *PREPARED.lock().unwrap_or_else(|e| e.into_inner()) = trees;
    Ok(guard)
}

/// The prepared tree of `mounts[i]`, if there is one (init side).
pub(super) fn take(i: usize) -> Option<Tree> {
    let mut p = PREPARED.lock().unwrap_or_else(|e| e.into_inner());
    let k = p.iter().position(|(j, _)| *j == i)?;
    Some(p.swap_remove(k).1)
}
