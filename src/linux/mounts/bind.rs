//! Bind mounts (`bind`/`rbind`, or type `bind`): the source tree is cloned with
//! open_tree(OPEN_TREE_CLONE), given its flags with mount_setattr while still detached (runc's
//! semantics, and what to do about flags the kernel locked), then attached with move_mount
//! onto the destination's fd. [`attach`] also serves the `cgroup` type's binds.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use libc::MOUNT_ATTR__ATIME as A_ATIME;
use nix::mount::MsFlags;
use nix::sys::stat::{fstat, SFlag};
use oci_spec::runtime::Mount;

use super::attrs::{atime_of, mnt_attr_of, propagate, rec_attrs};
use super::dest::{check_dest, check_proc, dest_err, Kind};
use super::options::{names, ATIME_ENUM, LOCKABLE, MNT_FLAGS};
use super::{api, clone_source, field, idmap, prepared, Ctx, Opts, R};
use crate::linux::rootfs::errno_str;
use crate::linux::safepath::{self, IN_ROOT};

/// `mounts[i]`'s source, for messages (a relative one is relative to the bundle).
fn source_path(ctx: &Ctx, m: &Mount) -> std::path::PathBuf {
    let src = m.source().clone().unwrap_or_default();
    ctx.bundle.join(src)
}

/// A bind mount: clone the source tree, set its flags while detached, attach it.
pub(super) fn bind(ctx: &Ctx, i: usize, m: &Mount, o: &Opts) -> R {
    let dest = m.destination();
    // A tree the runtime prepared (id-mapped, or of a container with a user namespace: see
    // prepared.rs); else the source is cloned here.
    let (src, tree, locked) = match prepared::take(i) {
        Some(t) => (source_path(ctx, m), t.fd, t.locked),
        None if idmap::wanted(m, o) => {
            return Err(field(
                i,
                "",
                "the id-mapped tree was not prepared by the runtime",
            ))
        }
        None => {
            let (src, fd) = clone_source(i, m, ctx.bundle, o.set.contains(MsFlags::MS_REC))?;
            (src, fd, false)
        }
    };
    let is_dir = fstat(tree.as_fd())
        .map(|s| SFlag::from_bits_truncate(s.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
        .map_err(|e| field(i, "source", format!("{}: {}", src.display(), e.desc())))?;
    let kind = Kind::Bind(tree.as_fd());
    check_proc(i, dest, &safepath::clean(dest), &kind)?;
    let r = if is_dir {
        safepath::mkdir_all(ctx.root, dest, 0o755, IN_ROOT)
    } else {
        safepath::create_file(ctx.root, dest, 0o644, IN_ROOT)
    }
    .map_err(dest_err(i, dest))?;
    check_dest(ctx, i, dest, r.fd.as_fd(), &kind)?;
    attach(i, &tree, r.fd.as_fd(), dest, o, locked)
}

/// Sets a detached tree's flags, moves it onto `target`, then sets its propagation. With
/// `locked`, the tree's lockable flags are treated as the kernel treats locked ones.
pub(super) fn attach(
    i: usize,
    tree: &OwnedFd,
    target: BorrowedFd,
    dest: &Path,
    o: &Opts,
    locked: bool,
) -> R {
    bind_flags(i, tree.as_fd(), o, locked)?;
    rec_attrs(i, tree.as_fd(), o)?;
    api::move_mount(tree.as_fd(), target).map_err(|e| {
        let hint = match e.raw_os_error() {
            Some(libc::ENOTDIR) => " (a directory cannot be bound onto a file)",
            Some(libc::EISDIR) => " (a file cannot be bound onto a directory)",
            _ => "",
        };
        field(
            i,
            "destination",
            format!("{}: {}{hint}", dest.display(), errno_str(&e)),
        )
    })?;
    propagate(i, tree.as_fd(), o)
}

/// A bind mount's own flags, with runc's semantics: when any flag is given, the mount gets
/// exactly the requested flags (like `mount --bind -o …`); with `remount`, the requested flags
/// are applied on top of the source's. Flags the kernel locked (a mount inherited from a more
/// privileged user namespace) are kept unless the config explicitly asks to clear one; with
/// `locked`, so are the tree's own (a tree the runtime cloned for a container with a user
/// namespace, whose flags the kernel would have locked had the init cloned it: prepared.rs).
fn bind_flags(i: usize, tree: BorrowedFd, o: &Opts, locked: bool) -> R {
    let set = o.set & MNT_FLAGS;
    let clear = o.clear & MNT_FLAGS;
    if set.is_empty() && clear.is_empty() {
        return Ok(());
    }
    let mut attr = api::MountAttr {
        attr_set: mnt_attr_of(set),
        ..Default::default()
    };
    attr.attr_clr = if o.set.contains(MsFlags::MS_REMOUNT) {
        mnt_attr_of(clear)
    } else {
        mnt_attr_of(MNT_FLAGS - MsFlags::MS_NODIRATIME - set) | mnt_attr_of(clear)
    };
    if let Some(a) = atime_of(set) {
        attr.attr_clr |= A_ATIME;
        attr.attr_set |= a;
    }
    let first = if locked {
        // What the kernel answers for a locked flag.
        io::Error::from_raw_os_error(libc::EPERM)
    } else {
        match api::mount_setattr(tree, false, &attr) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        }
    };
    let fail = |e: &io::Error| field(i, "options", format!("bind mount flags: {}", errno_str(e)));
    if first.raw_os_error() != Some(libc::EPERM) {
        return Err(fail(&first));
    }
    // Locked flags: keep whatever the source has set, unless asked to clear it.
    let cur = current_flags(tree).map_err(|e| fail(&e))?;
    if !(cur & clear & LOCKABLE).is_empty() {
        return Err(field(
            i,
            "options",
            format!(
                "cannot clear {} on this bind mount: {}",
                names(cur & clear & LOCKABLE),
                if locked {
                    "its source's mount has it, and in a container with a user namespace it is \
                     locked (as the kernel locks the flags of a mount from a more privileged \
                     user namespace)"
                } else {
                    "the kernel locked it (inherited from a more privileged user namespace)"
                }
            ),
        ));
    }
    if let Some(a) = atime_of(set) {
        if atime_of(cur) != Some(a) && !(cur & ATIME_ENUM).is_empty() {
            return Err(fail(&first));
        }
        attr.attr_clr &= !A_ATIME;
        attr.attr_set &= !A_ATIME;
    }
    attr.attr_clr &= !mnt_attr_of(cur);
    api::mount_setattr(tree, false, &attr).map_err(|e| fail(&e))
}

/// The per-mount flags currently on `fd`'s mount (from statfs, as MS_* bits).
fn current_flags(fd: BorrowedFd) -> io::Result<MsFlags> {
    let st = nix::sys::statvfs::fstatvfs(fd)?;
    use nix::sys::statvfs::FsFlags as F;
    let f = st.flags();
    let mut ms = MsFlags::empty();
    for (s, m) in [
        (F::ST_RDONLY, MsFlags::MS_RDONLY),
        (F::ST_NOSUID, MsFlags::MS_NOSUID),
        (F::ST_NODEV, MsFlags::MS_NODEV),
        (F::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (F::ST_NOATIME, MsFlags::MS_NOATIME),
        (F::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (F::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(s) {
            ms |= m;
        }
    }
    if (ms & ATIME_ENUM).is_empty() {
        ms |= MsFlags::MS_STRICTATIME;
    }
    Ok(ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linux::mounts::parse;
    use libc::{
        MOUNT_ATTR_NODEV as A_NODEV, MOUNT_ATTR_NOEXEC as A_NOEXEC, MOUNT_ATTR_NOSUID as A_NOSUID,
        MOUNT_ATTR_NOSYMFOLLOW as A_NOSYMFOLLOW, MOUNT_ATTR_RDONLY as A_RDONLY,
    };

    fn opts(v: &[&str]) -> Opts {
        parse(0, &v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn bind_flags_clear_what_was_not_asked() {
        let o = opts(&["bind", "ro"]);
        let set = o.set & MNT_FLAGS;
        assert_eq!(mnt_attr_of(set), A_RDONLY);
        let clr = mnt_attr_of(MNT_FLAGS - MsFlags::MS_NODIRATIME - set);
        assert_eq!(clr, A_NOSUID | A_NODEV | A_NOEXEC | A_NOSYMFOLLOW);
    }
}
