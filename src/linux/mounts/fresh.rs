//! A filesystem made fresh for a mount (tmpfs, proc, sysfs, devpts, mqueue, overlay, …): one
//! mount(2) onto the destination's fd. When the kernel refuses, [`diagnose`] replays the mount
//! with fsopen/fsconfig to name the option (or the type) it refused, in the kernel's words.

use std::io;
use std::os::fd::AsFd;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sys::stat::fstat;
use oci_spec::runtime::Mount;

use super::api;
use super::attrs::{propagate, rec_attrs};
use super::copyup::tmpfs_copyup;
use super::dest::{check_dest, check_proc, dest_err, fd_target, Kind};
use super::{field, Ctx, Opts, R};
use crate::linux::rootfs::{errno_str, RootfsError};
use crate::linux::safepath::{self, IN_ROOT, NO_SYMLINKS};

/// A filesystem made fresh for this mount.
pub(super) fn fresh(ctx: &Ctx, i: usize, m: &Mount, ty: &str, o: &Opts) -> R {
    let dest = m.destination();
    // procfs and sysfs must land on a real directory: no symlink anywhere on the way.
    let resolve = if matches!(ty, "proc" | "sysfs") {
        NO_SYMLINKS
    } else {
        IN_ROOT
    };
    let kind = Kind::Fresh(ty);
    check_proc(i, dest, &safepath::clean(dest), &kind)?;
    let r = safepath::mkdir_all(ctx.root, dest, 0o755, resolve).map_err(|e| {
        let refused_link = resolve == NO_SYMLINKS && e.raw_os_error() == Some(libc::ELOOP);
        match symlink_on_the_way(ctx, dest).filter(|_| refused_link) {
            // runc: "must be mounted on ordinary directory".
            Some(link) => field(
                i,
                "destination",
                format!(
                    "{} is a symlink in the rootfs; {ty} must be mounted on ordinary directory",
                    link.display()
                ),
            ),
            None => dest_err(i, dest)(e),
        }
    })?;
    let at = check_dest(ctx, i, dest, r.fd.as_fd(), &kind)?;
    let mut data = o.data_string();
    if ty == "tmpfs" && !r.created && !o.data.iter().any(|(_, d)| d.starts_with("mode=")) {
        // A tmpfs keeps the mode of the directory it covers unless told otherwise.
        if let Ok(st) = fstat(r.fd.as_fd()) {
            let mode = format!("mode={:04o}", st.st_mode & 0o7777);
            data = if data.is_empty() {
                mode
            } else {
                format!("{mode},{data}")
            };
        }
    }
    let mut flags = o.set - MsFlags::MS_BIND - MsFlags::MS_REC;
    // tmpfs and /dev stay writable until finish(): devices, hooks and tmpcopyup write there.
    if ty == "tmpfs" || at == Path::new("/dev") {
        flags.remove(MsFlags::MS_RDONLY);
    }
    if o.copyup {
        return tmpfs_copyup(i, dest, r.fd.as_fd(), &data, flags, o);
    }
    let source = m
        .source()
        .as_ref()
        .map(|s| s.as_os_str().to_owned())
        .unwrap_or_else(|| ty.into());
    let res = mount(
        Some(source.as_os_str()),
        fd_target(r.fd.as_fd()).as_str(),
        (!ty.is_empty()).then_some(ty),
        flags,
        (!data.is_empty()).then_some(data.as_str()),
    );
    if let Err(e) = res {
        return Err(diagnose(i, dest, ty, &source.to_string_lossy(), o, e));
    }
    after_fresh(ctx, i, dest, o)
}

/// The first component of `dest` (a container path) that is a symlink in the rootfs, for the
/// error of a proc or sysfs mount refused by a symlink-free resolution. Looked up only on that
/// error path, component by component without following anything.
fn symlink_on_the_way(ctx: &Ctx, dest: &Path) -> Option<std::path::PathBuf> {
    use nix::fcntl::AtFlags;
    let mut at = std::path::PathBuf::from("/");
    for c in safepath::clean(dest).components().skip(1) {
        at.push(c);
        let rel = at.strip_prefix("/").ok()?;
        let st = nix::sys::stat::fstatat(ctx.root, rel, AtFlags::AT_SYMLINK_NOFOLLOW).ok()?;
        if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
            return Some(at);
        }
    }
    None
}

/// Propagation and recursive attributes of a fresh mount, on the mount's own root.
pub(super) fn after_fresh(ctx: &Ctx, i: usize, dest: &Path, o: &Opts) -> R {
    if o.propagation.is_empty() && o.rec_set == 0 && o.rec_clr == 0 {
        return Ok(());
    }
    let fd = safepath::open_path(ctx.root, dest).map_err(dest_err(i, dest))?;
    rec_attrs(i, fd.as_fd(), o)?;
    propagate(i, fd.as_fd(), o)
}

/// Replays a refused fresh mount with fsopen/fsconfig to name what the kernel refused.
pub(super) fn diagnose(
    i: usize,
    dest: &Path,
    ty: &str,
    source: &str,
    o: &Opts,
    err: Errno,
) -> RootfsError {
    let generic =
        |detail: String| field(i, "", format!("mount {ty} on {}: {detail}", dest.display()));
    let fc = match api::fsopen(ty) {
        Ok(fc) => fc,
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {
            return field(
                i,
                "type",
                format!("unknown filesystem type {ty:?} (see /proc/filesystems)"),
            )
        }
        Err(_) => return generic(err.desc().to_string()),
    };
    let why = |e: io::Error| api::fs_log(fc.as_fd()).unwrap_or_else(|| errno_str(&e));
    if let Err(e) = api::fsconfig_string(fc.as_fd(), "source", source) {
        return field(i, "source", format!("{source:?}: {}", why(e)));
    }
    for (j, opt) in &o.data {
        let r = match opt.split_once('=') {
            Some((k, v)) => api::fsconfig_string(fc.as_fd(), k, v),
            None => api::fsconfig_flag(fc.as_fd(), opt),
        };
        if let Err(e) = r {
            return field(i, &format!("options[{j}]"), format!("{opt:?}: {}", why(e)));
        }
    }
    if let Err(e) = api::fsconfig_create(fc.as_fd()) {
        return generic(why(e));
    }
    generic(err.desc().to_string())
}
