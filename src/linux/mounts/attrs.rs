//! mount_setattr(2) helpers every kind of mount shares: recursive attributes (`rro`,
//! `rnosuid`, …), propagation (`rshared`, `private`, …), and the translation of per-mount MS_*
//! flags into MOUNT_ATTR_* bits (bind mounts and tmpcopyup set their flags this way).

use std::os::fd::BorrowedFd;

use libc::{
    MOUNT_ATTR_NOATIME as A_NOATIME, MOUNT_ATTR_NODEV as A_NODEV,
    MOUNT_ATTR_NODIRATIME as A_NODIRATIME, MOUNT_ATTR_NOEXEC as A_NOEXEC,
    MOUNT_ATTR_NOSUID as A_NOSUID, MOUNT_ATTR_NOSYMFOLLOW as A_NOSYMFOLLOW,
    MOUNT_ATTR_RDONLY as A_RDONLY, MOUNT_ATTR_RELATIME as A_RELATIME,
    MOUNT_ATTR_STRICTATIME as A_STRICTATIME,
};
use nix::mount::MsFlags;

use super::api;
use super::options::NOSYMFOLLOW;
use super::{field, Opts, R};
use crate::linux::rootfs::errno_str;

pub(super) fn rec_attrs(i: usize, fd: BorrowedFd, o: &Opts) -> R {
    if o.rec_set == 0 && o.rec_clr == 0 {
        return Ok(());
    }
    let attr = api::MountAttr {
        attr_set: o.rec_set,
        attr_clr: o.rec_clr,
        ..Default::default()
    };
    api::mount_setattr(fd, true, &attr).map_err(|e| {
        field(
            i,
            "options",
            format!("recursive mount attributes: {}", errno_str(&e)),
        )
    })
}

pub(super) fn propagate(i: usize, fd: BorrowedFd, o: &Opts) -> R {
    for p in &o.propagation {
        let attr = api::MountAttr {
            propagation: (*p - MsFlags::MS_REC).bits(),
            ..Default::default()
        };
        api::mount_setattr(fd, p.contains(MsFlags::MS_REC), &attr).map_err(|e| {
            field(
                i,
                "options",
                format!("mount propagation: {}", errno_str(&e)),
            )
        })?;
    }
    Ok(())
}

pub(super) fn mnt_attr_of(f: MsFlags) -> u64 {
    let mut a = 0;
    for (ms, at) in [
        (MsFlags::MS_RDONLY, A_RDONLY),
        (MsFlags::MS_NOSUID, A_NOSUID),
        (MsFlags::MS_NODEV, A_NODEV),
        (MsFlags::MS_NOEXEC, A_NOEXEC),
        (MsFlags::MS_NODIRATIME, A_NODIRATIME),
        (NOSYMFOLLOW, A_NOSYMFOLLOW),
    ] {
        if f.contains(ms) {
            a |= at;
        }
    }
    a
}

/// The atime mode requested by `f` (strictatime wins, as in mount(2)), if any.
pub(super) fn atime_of(f: MsFlags) -> Option<u64> {
    if f.contains(MsFlags::MS_STRICTATIME) {
        Some(A_STRICTATIME)
    } else if f.contains(MsFlags::MS_NOATIME) {
        Some(A_NOATIME)
    } else if f.contains(MsFlags::MS_RELATIME) {
        Some(A_RELATIME)
    } else {
        None
    }
}
