//! Writes under /proc and /sys that cannot be redirected.
//!
//! A write meant for a kernel file (a sysctl, say) is only made after proving that it reaches
//! one: the root is opened and checked to be the root of a real procfs (or a sysfs) by its
//! filesystem magic, the file is opened beneath it with openat2 refusing symlinks, magic links
//! and mount crossings (so nothing bind-mounted over part of /proc can stand in for it), and the
//! opened file is checked again before writing.

use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, ResolveFlag};
use nix::sys::stat::{fstat, Mode};
use nix::sys::statfs::{fstatfs, FsType, PROC_SUPER_MAGIC, SYSFS_MAGIC};

use super::safepath;

/// Reads a kernel pseudo-file (procfs, cgroupfs, sysfs). They report a size of 0, so std's
/// `read_to_string` would stat the file and then read it in growing steps from 32 bytes;
/// this reads into one page-sized buffer: open, read, read (end), close.
pub fn read_pseudo(path: impl AsRef<Path>) -> io::Result<String> {
    use std::io::Read;
    let mut buf = Vec::with_capacity(4096);
    std::fs::File::open(path)?.read_to_end(&mut buf)?;
    String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// The host's /proc/self/mountinfo as this process first read it (for the cgroup hierarchies).
/// Read once by the parent (cgroup layout), and inherited by the container's init, a fork,
/// which would otherwise read it again (~45 µs) to mount the cgroup hierarchies.
pub fn host_mountinfo() -> io::Result<&'static str> {
    static MOUNTINFO: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if let Some(m) = MOUNTINFO.get() {
        return Ok(m);
    }
    let m = read_pseudo("/proc/self/mountinfo")?;
    Ok(MOUNTINFO.get_or_init(|| m))
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011` for a tab, …).
pub fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut k = 0;
    while k < b.len() {
        let octal = b
            .get(k + 1..k + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[k], octal) {
            (b'\\', Some(d)) => {
                let v = d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
                out.push(v as u8);
                k += 4;
            }
            (c, _) => {
                out.push(c);
                k += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Which pseudo-filesystem a root must be.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fs {
    Proc,
    /// For writes under /sys (none in the rootfs code itself).
    #[allow(dead_code)]
    Sys,
}

impl Fs {
    fn magic(self) -> FsType {
        match self {
            Fs::Proc => PROC_SUPER_MAGIC,
            Fs::Sys => SYSFS_MAGIC,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Fs::Proc => "procfs",
            Fs::Sys => "sysfs",
        }
    }
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn check(fd: BorrowedFd, fs: Fs, what: &Path) -> io::Result<()> {
    let st = fstatfs(fd)?;
    if st.filesystem_type() != fs.magic() {
        return Err(bad(format!(
            "{} is not on a {} (filesystem magic {:#x}); refusing to write there",
            what.display(),
            fs.name(),
            st.filesystem_type().0
        )));
    }
    Ok(())
}

/// Opens `path` as the root of a real `fs` (for procfs: its root inode, not a subdirectory
/// bound there).
pub fn open_root(path: &Path, fs: Fs) -> io::Result<OwnedFd> {
    let fd = nix::fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    check(fd.as_fd(), fs, path)?;
    // Only the root of a procfs superblock has inode 1 (PROC_ROOT_INO).
    if fs == Fs::Proc && fstat(fd.as_fd())?.st_ino != 1 {
        return Err(bad(format!(
            "{} is part of a procfs but not its root; refusing to write there",
            path.display()
        )));
    }
    Ok(fd)
}

/// Writes `value` to `rel` beneath `root` (from [`open_root`]).
pub fn write(root: BorrowedFd, fs: Fs, rel: &Path, value: &[u8]) -> io::Result<()> {
    let resolve = ResolveFlag::RESOLVE_BENEATH
        | ResolveFlag::RESOLVE_NO_XDEV
        | ResolveFlag::RESOLVE_NO_MAGICLINKS
        | ResolveFlag::RESOLVE_NO_SYMLINKS;
    let fd = safepath::open(
        root,
        rel,
        OFlag::O_WRONLY | OFlag::O_NOCTTY | OFlag::O_NOFOLLOW,
        Mode::empty(),
        resolve,
    )
    .map_err(|e| match e.raw_os_error() {
        Some(libc::EXDEV) => bad(format!(
            "{} leaves the filesystem or crosses a mount point; refusing to write through it",
            rel.display()
        )),
        _ => e,
    })?;
    check(fd.as_fd(), fs, rel)?;
    let mut f = std::fs::File::from(fd);
    f.write_all(value)
}

/// The file under /proc/sys for a sysctl key (`net.ipv4.ip_forward` or `net/ipv4/ip_forward`).
pub fn sysctl_path(key: &str) -> PathBuf {
    let rel = if key.contains('/') {
        key.to_string()
    } else {
        key.replace('.', "/")
    };
    Path::new("sys").join(rel.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mountinfo("/a\\040b\\011c"), "/a b\tc");
        assert_eq!(unescape_mountinfo("a\\040b"), "a b");
        assert_eq!(unescape_mountinfo("/plain\\"), "/plain\\");
        assert_eq!(unescape_mountinfo("/x\\04"), "/x\\04");
        assert_eq!(unescape_mountinfo("\\777"), "\u{fffd}");
    }

    #[test]
    fn sysctl_keys_map_to_proc_sys() {
        assert_eq!(
            sysctl_path("net.ipv4.ip_forward"),
            Path::new("sys/net/ipv4/ip_forward")
        );
        assert_eq!(
            sysctl_path("net/ipv4/conf/eth0.1/forwarding"),
            Path::new("sys/net/ipv4/conf/eth0.1/forwarding")
        );
    }

    #[test]
    fn only_the_root_of_a_real_procfs_is_accepted() {
        assert!(open_root(Path::new("/proc"), Fs::Proc).is_ok());
        let e = open_root(Path::new("/proc/sys"), Fs::Proc).unwrap_err();
        assert!(e.to_string().contains("not its root"), "{e}");
        let e = open_root(Path::new("/tmp"), Fs::Proc).unwrap_err();
        assert!(e.to_string().contains("not on a procfs"), "{e}");
        assert!(open_root(Path::new("/sys"), Fs::Sys).is_ok());
    }

    #[test]
    fn writes_refuse_symlinks_and_mount_crossings() {
        let proc = open_root(Path::new("/proc"), Fs::Proc).unwrap();
        // /proc/self is a symlink: refused rather than followed.
        let e = write(proc.as_fd(), Fs::Proc, Path::new("self/comm"), b"x").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
        // Escaping with .. is refused.
        let e = write(proc.as_fd(), Fs::Proc, Path::new("../etc/hostname"), b"x").unwrap_err();
        assert!(e.to_string().contains("refusing"), "{e}");
    }
}
