//! The raw seccomp(2) calls: loading a program and asking the kernel what it supports. Every
//! `unsafe` of the crate that talks to seccomp(2) is here, each in a small commented wrapper.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::OnceLock;

use crate::bpf::SockFilter;

// <linux/seccomp.h>
pub const SECCOMP_SET_MODE_FILTER: libc::c_uint = 1;
pub const SECCOMP_GET_ACTION_AVAIL: libc::c_uint = 2;

pub const FLAG_TSYNC: u32 = 1 << 0;
pub const FLAG_LOG: u32 = 1 << 1;
pub const FLAG_SPEC_ALLOW: u32 = 1 << 2;
pub const FLAG_NEW_LISTENER: u32 = 1 << 3;
pub const FLAG_WAIT_KILLABLE_RECV: u32 = 1 << 5;

pub const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub const RET_KILL_THREAD: u32 = 0x0000_0000;
pub const RET_TRAP: u32 = 0x0003_0000;
pub const RET_ERRNO: u32 = 0x0005_0000;
pub const RET_USER_NOTIF: u32 = 0x7fc0_0000;
pub const RET_TRACE: u32 = 0x7ff0_0000;
pub const RET_LOG: u32 = 0x7ffc_0000;
pub const RET_ALLOW: u32 = 0x7fff_0000;
/// SECCOMP_RET_ACTION_FULL: the action part of a return value (the rest is its data).
pub const RET_ACTION_FULL: u32 = 0xffff_0000;

/// `seccomp(SECCOMP_SET_MODE_FILTER, flags, &prog)` for the calling thread. Returns the raw
/// return value: the listener fd with `FLAG_NEW_LISTENER`, 0 otherwise.
///
/// Allocation-free and lock-free: it runs in a forked child right before execve.
pub fn set_mode_filter(prog: &[SockFilter], flags: u32) -> io::Result<libc::c_long> {
    let fprog = libc::sock_fprog {
        // The caller checked `prog.len() <= MAX_INSNS`, which fits in u16.
        len: prog.len() as libc::c_ushort,
        // The kernel only reads through this pointer (the field is `*mut` in the C header).
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `fprog` points at `prog.len()` initialized instructions with the layout of
    // `struct sock_filter` (asserted in bpf.rs); both outlive the call, which copies them.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            flags as libc::c_uint,
            &fprog as *const libc::sock_fprog,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Wraps the listener fd seccomp(2) returned. The kernel creates it with O_CLOEXEC.
pub fn listener_fd(raw: libc::c_long) -> io::Result<OwnedFd> {
    let fd = libc::c_int::try_from(raw).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: seccomp(2) just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Does the kernel know this filter flag? seccomp(2) checks the flags before it reads the
/// program, so a NULL program gives EFAULT for a known flag and EINVAL for an unknown one;
/// nothing is installed either way.
pub fn flag_supported(flag: u32) -> bool {
    // WAIT_KILLABLE_RECV is only accepted next to NEW_LISTENER.
    let flags = if flag == FLAG_WAIT_KILLABLE_RECV {
        flag | FLAG_NEW_LISTENER
    } else {
        flag
    };
    // SAFETY: a NULL program pointer; the kernel fails with EFAULT before using it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            flags as libc::c_uint,
            std::ptr::null::<libc::sock_fprog>(),
        )
    };
    r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EFAULT)
}

/// The flags of [`ALL_FLAGS`] this kernel supports, probed once per process.
pub fn supported_flags() -> u32 {
    static SUPPORTED: OnceLock<u32> = OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        ALL_FLAGS
            .iter()
            .filter(|(_, f)| flag_supported(*f))
            .fold(0, |acc, (_, f)| acc | f)
    })
}

/// The filter flags of the runtime spec, by name.
pub const ALL_FLAGS: [(&str, u32); 4] = [
    ("SECCOMP_FILTER_FLAG_TSYNC", FLAG_TSYNC),
    ("SECCOMP_FILTER_FLAG_LOG", FLAG_LOG),
    ("SECCOMP_FILTER_FLAG_SPEC_ALLOW", FLAG_SPEC_ALLOW),
    (
        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
        FLAG_WAIT_KILLABLE_RECV,
    ),
];

/// `seccomp(SECCOMP_GET_ACTION_AVAIL)`: `Some(true/false)`, or `None` when the kernel predates
/// the operation (Linux < 4.14).
pub fn action_available(action: u32) -> Option<bool> {
    let value: u32 = action;
    // SAFETY: the kernel reads one u32 through the pointer, which is valid for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_GET_ACTION_AVAIL,
            0 as libc::c_uint,
            &value as *const u32,
        )
    };
    if r == 0 {
        return Some(true);
    }
    match io::Error::last_os_error().raw_os_error() {
        Some(libc::EOPNOTSUPP) => Some(false),
        _ => None,
    }
}
