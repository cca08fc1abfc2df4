//! The destination of a mount, resolved inside the rootfs (safepath: openat2 RESOLVE_IN_ROOT)
//! and checked twice: lexically before anything is created, then where the resolution really
//! ended. Only a procfs may cover /proc, and inside /proc only a short list of files; nothing
//! may land outside the rootfs. Also the `/proc/self/fd/N` path mount(2) takes for such an fd.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::sys::stat::fstat;
use nix::sys::statfs::{fstatfs, PROC_SUPER_MAGIC};

use super::{field, Ctx, R};
use crate::linux::rootfs::{errno_str, RootfsError};
use crate::linux::safepath;

/// The mount kind used by the /proc check.
pub(super) enum Kind<'a> {
    Fresh(&'a str),
    Bind(BorrowedFd<'a>),
}

pub(super) fn dest_err(i: usize, dest: &Path) -> impl FnOnce(io::Error) -> RootfsError + '_ {
    move |e| {
        field(
            i,
            "destination",
            format!("{}: {}", dest.display(), errno_str(&e)),
        )
    }
}

/// Where the destination fd ended up (as a container path); refuses anything outside the
/// rootfs and anything on or inside /proc that runc would refuse.
pub(super) fn check_dest(
    ctx: &Ctx,
    i: usize,
    dest: &Path,
    fd: BorrowedFd,
    kind: &Kind,
) -> R<PathBuf> {
    let Some(at) = safepath::inside(&ctx.root_path, fd) else {
        return Err(field(
            i,
            "destination",
            format!("{} resolves outside the rootfs", dest.display()),
        ));
    };
    check_proc(i, dest, &at, kind)?;
    Ok(at)
}

/// Only a procfs may cover /proc, and inside it only the files lxcfs-like tools emulate.
/// Checked on the lexical destination before anything is created, and again on where the
/// resolution really ended.
pub(super) fn check_proc(i: usize, dest: &Path, at: &Path, kind: &Kind) -> R {
    let proc = Path::new("/proc");
    if at == proc {
        let ok = match kind {
            Kind::Fresh(t) => *t == "proc",
            Kind::Bind(src) => {
                fstatfs(src).is_ok_and(|s| s.filesystem_type() == PROC_SUPER_MAGIC)
                    && fstat(*src).is_ok_and(|s| s.st_ino == 1)
            }
        };
        if !ok {
            return Err(field(
                i,
                "destination",
                format!(
                    "{}: only a proc filesystem (or the root of one) may be mounted on /proc",
                    dest.display()
                ),
            ));
        }
    } else if at.starts_with(proc) {
        const ALLOWED: &[&str] = &[
            "/proc/cpuinfo",
            "/proc/diskstats",
            "/proc/meminfo",
            "/proc/stat",
            "/proc/swaps",
            "/proc/uptime",
            "/proc/loadavg",
            "/proc/slabinfo",
            "/proc/pressure/cpu",
            "/proc/pressure/io",
            "/proc/pressure/memory",
            "/proc/net/dev",
            "/proc/sys/kernel/ns_last_pid",
            "/proc/sys/crypto/fips_enabled",
        ];
        if !ALLOWED.iter().any(|a| at == Path::new(a)) {
            let via = if at == safepath::clean(dest) {
                String::new()
            } else {
                format!(" (resolved to {})", at.display())
            };
            return Err(field(
                i,
                "destination",
                format!(
                    "{} is inside /proc{via}; only {} may be mounted there",
                    dest.display(),
                    ALLOWED.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// The path through which mount(2) reaches an fd: the fd's own (mount, dentry).
pub fn fd_target(fd: BorrowedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}
