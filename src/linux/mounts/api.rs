//! The new mount API (open_tree, move_mount, mount_setattr, fsopen, fsconfig, fsmount), which
//! nix does not wrap. Each function is a single system call.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `struct mount_attr` for mount_setattr(2).
#[repr(C)]
#[derive(Default, Debug, Clone, Copy)]
pub struct MountAttr {
    pub attr_set: u64,
    pub attr_clr: u64,
    pub propagation: u64,
    pub userns_fd: u64,
}

fn cstr(s: &[u8]) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in string"))
}

fn fd_result(r: libc::c_long) -> io::Result<OwnedFd> {
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new fd that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

fn unit(r: libc::c_long) -> io::Result<()> {
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// open_tree(OPEN_TREE_CLONE): a detached copy of the mount at `path` (of `dirfd`, or of
/// the fd itself when `path` is empty), of its whole subtree with `recursive`.
pub fn open_tree(dirfd: Option<BorrowedFd>, path: &Path, recursive: bool) -> io::Result<OwnedFd> {
    let p = cstr(path.as_os_str().as_bytes())?;
    let mut flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    if path.as_os_str().is_empty() {
        flags |= libc::AT_EMPTY_PATH as libc::c_uint;
    }
    let dfd = dirfd.map_or(libc::AT_FDCWD, |f| f.as_raw_fd());
    // SAFETY: `p` is NUL-terminated and outlives the call; the result is checked.
    fd_result(unsafe { libc::syscall(libc::SYS_open_tree, dfd, p.as_ptr(), flags) })
}

/// move_mount(2) of the mount `from` (an fd of its root) onto `to` (an fd of the target).
pub fn move_mount(from: BorrowedFd, to: BorrowedFd) -> io::Result<()> {
    let empty = c"";
    let flags = libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_EMPTY_PATH;
    // SAFETY: both paths are the empty C string, flags say to use the fds themselves.
    unit(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from.as_raw_fd(),
            empty.as_ptr(),
            to.as_raw_fd(),
            empty.as_ptr(),
            flags,
        )
    })
}

/// mount_setattr(2) on the mount whose root `fd` is (AT_RECURSIVE with `recursive`).
pub fn mount_setattr(fd: BorrowedFd, recursive: bool, attr: &MountAttr) -> io::Result<()> {
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    let empty = c"";
    // SAFETY: `attr` is a valid mount_attr of the size passed; the path is "".
    unit(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            empty.as_ptr(),
            flags,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
}

/// mount_setattr(2) on a path (relative to the cwd), for "/" after pivot_root.
pub fn mount_setattr_path(path: &Path, attr: &MountAttr) -> io::Result<()> {
    let p = cstr(path.as_os_str().as_bytes())?;
    // SAFETY: as above, with a NUL-terminated path that outlives the call.
    unit(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            p.as_ptr(),
            0,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
}

/// fsopen(2): a filesystem context for `fstype`.
pub fn fsopen(fstype: &str) -> io::Result<OwnedFd> {
    let t = cstr(fstype.as_bytes())?;
    // SAFETY: NUL-terminated name; result checked.
    fd_result(unsafe { libc::syscall(libc::SYS_fsopen, t.as_ptr(), libc::FSOPEN_CLOEXEC) })
}

fn fsconfig(
    fd: BorrowedFd,
    cmd: libc::c_uint,
    key: Option<&str>,
    value: Option<&str>,
) -> io::Result<()> {
    let k = key.map(|k| cstr(k.as_bytes())).transpose()?;
    let v = value.map(|v| cstr(v.as_bytes())).transpose()?;
    let kp = k.as_ref().map_or(std::ptr::null(), |k| k.as_ptr());
    let vp = v.as_ref().map_or(std::ptr::null(), |v| v.as_ptr());
    // SAFETY: key and value are NUL-terminated (or null where the command takes none) and
    // outlive the call.
    unit(unsafe { libc::syscall(libc::SYS_fsconfig, fd.as_raw_fd(), cmd, kp, vp, 0) })
}

pub fn fsconfig_flag(fd: BorrowedFd, key: &str) -> io::Result<()> {
    fsconfig(fd, libc::FSCONFIG_SET_FLAG, Some(key), None)
}

pub fn fsconfig_string(fd: BorrowedFd, key: &str, value: &str) -> io::Result<()> {
    fsconfig(fd, libc::FSCONFIG_SET_STRING, Some(key), Some(value))
}

pub fn fsconfig_create(fd: BorrowedFd) -> io::Result<()> {
    fsconfig(fd, libc::FSCONFIG_CMD_CREATE, None, None)
}

/// fsmount(2): a detached mount of the created filesystem, with MOUNT_ATTR_* `attrs`.
pub fn fsmount(fd: BorrowedFd, attrs: u64) -> io::Result<OwnedFd> {
    // SAFETY: integer arguments only; result checked.
    fd_result(unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fd.as_raw_fd(),
            libc::FSMOUNT_CLOEXEC,
            attrs as libc::c_uint,
        )
    })
}

/// The last error message the filesystem logged on context `fd` (e.g. "tmpfs: Bad value
/// for 'size'"), if any.
pub fn fs_log(fd: BorrowedFd) -> Option<String> {
    let mut last = None;
    let mut buf = [0u8; 1024];
    loop {
        match nix::unistd::read(fd, &mut buf) {
            Ok(n) if n > 0 => {
                let s = String::from_utf8_lossy(&buf[..n]).trim_end().to_string();
                if let Some(m) = s.strip_prefix("e ") {
                    last = Some(m.to_string());
                } else if last.is_none() {
                    last = s.get(2..).map(str::to_string);
                }
            }
            _ => return last,
        }
    }
}
