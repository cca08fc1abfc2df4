//! Small, commented wrappers around system calls that nix does not cover. Every `unsafe` block of
//! Berth's process setup lives here.

use std::io;
use std::os::fd::RawFd;

/// `struct clone_args` for clone3(2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

pub const CLONE_INTO_CGROUP: u64 = 0x200000000;

/// Outcome of [`clone3_fork`].
pub enum Forked {
    Parent(i32),
    Child,
}

/// Forks with clone3(2): like fork(), but the child can be born in new namespaces (`flags`) and,
/// on cgroup v2, directly in its cgroup (`cgroup_fd`, with CLONE_INTO_CGROUP).
///
/// The caller must be single-threaded (Berth is), since only the calling thread is copied.
pub fn clone3_fork(flags: u64, cgroup_fd: Option<RawFd>) -> io::Result<Forked> {
    let mut args = CloneArgs {
        flags,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    if let Some(fd) = cgroup_fd {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd as u64;
    }
    // SAFETY: clone3 with a zero stack behaves like fork(): the child continues on a copy of the
    // parent's stack. `args` is a valid, correctly sized clone_args that outlives the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match ret {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid as i32)),
    }
}

/// Marks every fd from `first` upward close-on-exec, so that no host fd but the ones asked for
/// reaches the container's process: one close_range(2) with CLOSE_RANGE_CLOEXEC (Linux 5.11).
/// Where that is refused (an older kernel, or a seccomp profile Berth itself runs under that
/// predates close_range), each fd listed in /proc/self/fd is marked with fcntl instead.
pub fn cloexec_from(first: u32) -> io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range only changes fd flags; no memory is touched.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    if r == 0 {
        return Ok(());
    }
    let refused = io::Error::last_os_error();
    let fds = open_fds_from(first).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("close_range: {refused}; list /proc/self/fd: {e}"),
        )
    })?;
    for fd in fds {
        // SAFETY: fcntl(F_SETFD) only changes the flags of `fd`; EBADF (the listing's own fd,
        // closed since) is harmless.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0
            && io::Error::last_os_error().raw_os_error() != Some(libc::EBADF)
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Whether `fd` is an open file descriptor of this process (a number given on the command
/// line, e.g. `checkpoint --status-fd`).
pub fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the flags of an fd number; no memory is involved.
    fd >= 0 && unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0
}

/// Closes every fd from `first` upward that is not close-on-exec. Every fd Berth opens is
/// close-on-exec, so these are exactly the ones its caller left open for it (a host directory,
/// a pipe, a file): what a forked container init must not hold while it waits for `start`.
pub fn close_inherited_from(first: u32) -> io::Result<()> {
    for fd in open_fds_from(first)? {
        // SAFETY: F_GETFD only reads the flags; the listing's own fd is closed by now (EBADF).
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
            // SAFETY: no Rust object owns an fd that is not close-on-exec (see above), so
            // nothing uses or closes this number again.
            unsafe { libc::close(fd) };
        }
    }
    Ok(())
}

/// The fds from `first` upward, listed in /proc/self/fd (the listing's own fd included: it is
/// closed when this returns).
fn open_fds_from(first: u32) -> io::Result<Vec<RawFd>> {
    let mut fds = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let name = entry?.file_name();
        if let Some(fd) = name.to_str().and_then(|n| n.parse::<RawFd>().ok()) {
            if fd >= 0 && fd as u32 >= first {
                fds.push(fd);
            }
        }
    }
    Ok(fds)
}

/// Terminates the calling (forked) process at once, without running Rust destructors or atexit
/// handlers that belong to the parent's copy of the program.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no Rust state.
    unsafe { libc::_exit(code) }
}

/// pidfd_open(2): an fd that refers to `pid` for as long as it lives, immune to pid reuse.
pub fn pidfd_open(pid: i32) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain syscall; on success the kernel hands us a new fd we then own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh, valid fd (pidfds are always O_CLOEXEC).
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as RawFd) })
}

/// pidfd_getfd(2): a duplicate, in this process, of fd `target` of the process behind `pidfd`.
pub fn pidfd_getfd(pidfd: RawFd, target: RawFd) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain syscall; on success the kernel hands us a new fd (close-on-exec) we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd, target, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh, valid fd.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as RawFd) })
}

/// pidfd_send_signal(2).
pub fn pidfd_send_signal(pidfd: RawFd, sig: i32) -> io::Result<()> {
    // SAFETY: plain syscall; a null siginfo means "as kill(2) would".
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd,
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A memfd holding `data`, sealed against writing, growing, shrinking and further seals, and
/// executable: MFD_EXEC is asked for where the kernel knows it (6.3+, whose vm.memfd_noexec can
/// otherwise make new memfds non-executable).
pub fn sealed_memfd(name: &std::ffi::CStr, data: &[u8]) -> io::Result<std::os::fd::OwnedFd> {
    use std::io::Write;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    const MFD_EXEC: libc::c_uint = 0x10;
    let base = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // SAFETY: memfd_create with a NUL-terminated name; the result is a new fd or -1.
    let mut fd = unsafe { libc::memfd_create(name.as_ptr(), base | MFD_EXEC) };
    if fd < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
        // SAFETY: as above, without the flag older kernels reject.
        fd = unsafe { libc::memfd_create(name.as_ptr(), base) };
    }
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd returned by the kernel, owned from here on.
    let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    (&file).write_all(data)?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl(F_ADD_SEALS) on an fd we own.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file.into())
}

/// Whether SIGPIPE was ignored when Berth started (set once, by `ignore_sigpipe`).
static SIGPIPE_WAS_IGNORED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Berth's writes to a pipe whose reader has gone (a hook that exits without reading its
/// stdin, a closed stdout) fail with EPIPE instead of killing it: SIGPIPE is ignored. What the
/// caller had set is remembered for [`restore_sigpipe`].
pub fn ignore_sigpipe() {
    // SAFETY: signal() with a valid signal number and SIG_IGN; no handler is involved.
    let old = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    SIGPIPE_WAS_IGNORED.store(old == libc::SIG_IGN, std::sync::atomic::Ordering::Relaxed);
}

/// Gives SIGPIPE back the disposition Berth's caller had set: called in a container process
/// before it execs (an ignored signal stays ignored across execve).
pub fn restore_sigpipe() {
    if !SIGPIPE_WAS_IGNORED.load(std::sync::atomic::Ordering::Relaxed) {
        // SAFETY: as above, with SIG_DFL.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
}
