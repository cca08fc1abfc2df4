//! Keeping the Berth binary out of the container's reach (the CVE-2019-5736 class).
//!
//! The container's init is a fork of Berth, so until it execs the user's program its
//! `/proc/self/exe` is Berth's binary. A container could reach that file (through
//! `/proc/<pid>/exe`, or by making its entrypoint resolve to `/proc/self/exe`) and overwrite it
//! on the host. Two defences:
//!
//! 1. The init is non-dumpable while Berth's code runs in the container, so container processes
//!    cannot open its `/proc/<pid>/exe` (see `process::init`).
//! 2. The binary that enters the container must not be writable through its mount. The cheapest
//!    method that works is chosen at run time:
//!    - already protected (the binary is on a read-only mount, or is a sealed memfd): nothing to
//!      do — one `statvfs`;
//!    - otherwise Berth re-executes itself once from a *detached, read-only bind mount of its own
//!      binary* (open_tree + mount_setattr + execveat): no copy, no mount left anywhere, the
//!      page cache is shared;
//!    - where that is refused (no new mount API, no privilege), from a sealed memfd copy.
//!
//! Install Berth on a read-only mount (e.g. `mount --bind -o ro` its directory) to skip the
//! re-exec entirely; the README gives the figures.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

/// How the running binary is protected.
#[derive(Debug, PartialEq, Eq)]
pub enum Protection {
    ReadOnlyMount,
    SealedMemfd,
    Unprotected,
}

/// Looks at /proc/self/exe.
pub fn current() -> Protection {
    let Ok(f) = std::fs::File::open("/proc/self/exe") else {
        return Protection::Unprotected;
    };
    if let Ok(s) = nix::sys::statvfs::fstatvfs(&f) {
        if s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY) {
            return Protection::ReadOnlyMount;
        }
    }
    // SAFETY: fcntl(F_GET_SEALS) on an fd we own; fails harmlessly on non-memfds.
    let seals = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GET_SEALS) };
    if seals >= 0 && seals & libc::F_SEAL_WRITE != 0 {
        return Protection::SealedMemfd;
    }
    Protection::Unprotected
}

/// Makes sure the running binary cannot be written through: returns at once when it already is
/// protected, otherwise re-executes Berth from a protected copy (and so never returns).
pub fn ensure() -> io::Result<()> {
    if current() != Protection::Unprotected {
        return Ok(());
    }
    let fd = match readonly_bind_of_self() {
        Ok(fd) => fd,
        Err(_) => sealed_memfd_of_self()?,
    };
    reexec(fd.as_raw_fd())
}

/// A detached bind mount of our own binary, made read-only. Nothing is attached to any mount
/// tree; the mount lives exactly as long as something uses it.
fn readonly_bind_of_self() -> io::Result<OwnedFd> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    const MOUNT_ATTR_NOSUID: u64 = 0x2;
    const MOUNT_ATTR_NODEV: u64 = 0x4;
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let path = c"/proc/self/exe";
    // SAFETY: open_tree with a valid NUL-terminated path; returns a new fd we then own.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd returned by the kernel.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr reads `attr` (valid, correctly sized) and the empty path.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// A sealed, in-memory copy of our binary (the fallback: costs a copy of the binary).
fn sealed_memfd_of_self() -> io::Result<OwnedFd> {
    use nix::sys::memfd::{memfd_create, MFdFlags};
    let mfd = memfd_create("berth", MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)?;
    let mut src = std::fs::File::open("/proc/self/exe")?;
    let mut dst = std::fs::File::from(mfd);
    io::copy(&mut src, &mut dst)?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl(F_ADD_SEALS) on an fd we own.
    if unsafe { libc::fcntl(dst.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(dst.into())
}

/// execveat(fd, "", argv, envp, AT_EMPTY_PATH) with our own arguments and environment.
fn reexec(fd: RawFd) -> io::Result<()> {
    let to_c = |b: &[u8]| CString::new(b).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput));
    let args: Vec<CString> = std::env::args_os()
        .map(|a| to_c(a.as_bytes()))
        .collect::<io::Result<_>>()?;
    let env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            to_c(&kv)
        })
        .collect::<io::Result<_>>()?;
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    // SAFETY: argv and envp are NULL-terminated arrays of pointers into `args`/`env`, which
    // outlive the call; on success the call does not return.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd,
            c"".as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        );
    }
    Err(io::Error::last_os_error())
}
