//! tmpfs with `tmpcopyup`: the new tmpfs is built detached (fsopen/fsconfig/fsmount), the
//! destination directory's contents are copied into it (owners, modes, symlinks, device nodes),
//! and only then is it attached over the destination, so nothing sees it half filled.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use nix::sys::stat::{Mode, SFlag};

use super::api;
use super::attrs::{atime_of, mnt_attr_of, propagate, rec_attrs};
use super::{field, Opts, R};
use crate::linux::rootfs::errno_str;
use crate::linux::safepath::{self, NO_SYMLINKS};

/// tmpfs with `tmpcopyup`: the new filesystem is built detached (fsopen/fsmount), the
/// destination's contents are copied into it, and only then is it attached.
pub(super) fn tmpfs_copyup(
    i: usize,
    dest: &Path,
    target: BorrowedFd,
    data: &str,
    flags: MsFlags,
    o: &Opts,
) -> R {
    let fail = |what: &str, e: io::Error| {
        field(
            i,
            "",
            format!("tmpcopyup {}: {what}: {}", dest.display(), errno_str(&e)),
        )
    };
    let fc = api::fsopen("tmpfs").map_err(|e| fail("fsopen", e))?;
    let why = |e: io::Error| api::fs_log(fc.as_fd()).unwrap_or_else(|| errno_str(&e));
    for opt in data.split(',').filter(|s| !s.is_empty()) {
        let r = match opt.split_once('=') {
            Some((k, v)) => api::fsconfig_string(fc.as_fd(), k, v),
            None => api::fsconfig_flag(fc.as_fd(), opt),
        };
        if let Err(e) = r {
            let j = o.data.iter().find(|(_, s)| s == opt).map(|(j, _)| *j);
            let sub = j
                .map(|j| format!("options[{j}]"))
                .unwrap_or_else(|| "options".into());
            return Err(field(i, &sub, format!("{opt:?}: {}", why(e))));
        }
    }
    for (ms, name) in [
        (MsFlags::MS_SYNCHRONOUS, "sync"),
        (MsFlags::MS_DIRSYNC, "dirsync"),
        (MsFlags::MS_LAZYTIME, "lazytime"),
    ] {
        if flags.contains(ms) {
            api::fsconfig_flag(fc.as_fd(), name)
                .map_err(|e| field(i, "options", format!("{name:?}: {}", why(e))))?;
        }
    }
    api::fsconfig_create(fc.as_fd()).map_err(|e| {
        field(
            i,
            "",
            format!("mount tmpfs on {}: {}", dest.display(), why(e)),
        )
    })?;
    let mut attrs = mnt_attr_of(flags);
    if let Some(a) = atime_of(flags) {
        attrs |= a;
    }
    let mnt = api::fsmount(fc.as_fd(), attrs).map_err(|e| fail("fsmount", e))?;
    let src = safepath::open(
        target,
        Path::new("."),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY,
        Mode::empty(),
        NO_SYMLINKS,
    )
    .map_err(|e| fail("open", e))?;
    let dst = safepath::open(
        mnt.as_fd(),
        Path::new("."),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY,
        Mode::empty(),
        NO_SYMLINKS,
    )
    .map_err(|e| fail("open new tmpfs", e))?;
    copy_dir(src, dst.as_fd()).map_err(|e| fail("copy", e))?;
    api::move_mount(mnt.as_fd(), target).map_err(|e| fail("attach", e))?;
    rec_attrs(i, mnt.as_fd(), o)?;
    propagate(i, mnt.as_fd(), o)
}

/// Gives a copy the owner and permissions of its source.
fn same_owner_and_mode(
    d: &impl std::os::fd::AsFd,
    st: &nix::sys::stat::FileStat,
    perm: Mode,
) -> nix::Result<()> {
    nix::unistd::fchown(
        d.as_fd(),
        Some(nix::unistd::Uid::from_raw(st.st_uid)),
        Some(nix::unistd::Gid::from_raw(st.st_gid)),
    )?;
    nix::sys::stat::fchmod(d.as_fd(), perm)
}

/// Copies the contents of directory `src` into `dst`: directories, regular files, symlinks and
/// device nodes, with owner and mode. `dst` is a detached filesystem nobody else can reach.
fn copy_dir(src: OwnedFd, dst: BorrowedFd) -> io::Result<()> {
    use nix::dir::Dir;
    use nix::fcntl::AtFlags;
    use nix::sys::stat::{fchmodat, fstatat, mkdirat, mknodat, FchmodatFlags};
    use nix::unistd::{fchownat, symlinkat, Gid, Uid};
    let mut dir = Dir::from_fd(src)?;
    let names: Vec<std::ffi::CString> = dir
        .iter()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_owned())
        .filter(|n| n.to_bytes() != b"." && n.to_bytes() != b"..")
        .collect();
    let sfd = dir.as_fd();
    for name in names {
        let st = fstatat(sfd, name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW)?;
        let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        let perm = Mode::from_bits_truncate(st.st_mode & 0o7777);
        // The copy's owner is the original's (the entry itself, never a symlink's target).
        let chown_entry = || {
            fchownat(
                dst,
                name.as_c_str(),
                Some(Uid::from_raw(st.st_uid)),
                Some(Gid::from_raw(st.st_gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
        };
        let nofollow = OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        match kind {
            SFlag::S_IFDIR => {
                mkdirat(dst, name.as_c_str(), Mode::from_bits_truncate(0o700))?;
                let s = nix::fcntl::openat(
                    sfd,
                    name.as_c_str(),
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | nofollow,
                    Mode::empty(),
                )?;
                let d = nix::fcntl::openat(
                    dst,
                    name.as_c_str(),
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | nofollow,
                    Mode::empty(),
                )?;
                copy_dir(s, d.as_fd())?;
                same_owner_and_mode(&d, &st, perm)?;
            }
            SFlag::S_IFREG => {
                let s = nix::fcntl::openat(
                    sfd,
                    name.as_c_str(),
                    OFlag::O_RDONLY | nofollow,
                    Mode::empty(),
                )?;
                let d = nix::fcntl::openat(
                    dst,
                    name.as_c_str(),
                    OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | nofollow,
                    Mode::from_bits_truncate(0o600),
                )?;
                let (mut s, mut d) = (std::fs::File::from(s), std::fs::File::from(d));
                io::copy(&mut s, &mut d)?;
                same_owner_and_mode(&d, &st, perm)?;
            }
            SFlag::S_IFLNK => {
                let target = nix::fcntl::readlinkat(sfd, name.as_c_str())?;
                symlinkat(target.as_os_str(), dst, name.as_c_str())?;
                chown_entry()?;
            }
            SFlag::S_IFCHR | SFlag::S_IFBLK | SFlag::S_IFIFO => {
                mknodat(
                    dst,
                    name.as_c_str(),
                    kind,
                    Mode::from_bits_truncate(0o600),
                    st.st_rdev,
                )?;
                chown_entry()?;
                fchmodat(dst, name.as_c_str(), perm, FchmodatFlags::FollowSymlink)?;
            }
            _ => {} // sockets are not copied
        }
    }
    Ok(())
}
