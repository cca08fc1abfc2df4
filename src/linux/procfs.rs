//! Writes under /proc and /sys that cannot be redirected (the CVE-2025-52881 class).
//!
//! A write meant for a kernel file (a sysctl, say) is only made after proving that it reaches
//! one: the root is opened and checked to be the root of a real procfs (or a sysfs) by its
//! filesystem magic, the file is opened beneath it with openat2 refusing symlinks, magic links
//! and mount crossings (so nothing bind-mounted over part of /proc, before or during the lookup,
//! can stand in for it), and the opened file is checked again before writing: same filesystem
//! type, same superblock and same mount as the verified root.
//!
//! Every write Berth makes into /proc goes through [`write_proc`] (sysctls, uid_map/gid_map,
//! oom_score_adj, timens_offsets, the LSM attr files).

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

/// The host's /proc/self/mountinfo as this process first read it, for the cgroup hierarchies:
/// only its start, up to the mounts of every hierarchy in `self_cgroup` (the caller's
/// /proc/self/cgroup; [`until_cgroup_mounts`]). Read once by the parent (cgroup layout), and
/// inherited by the container's init, a fork, which would otherwise read it again to mount the
/// hierarchies.
pub fn host_mountinfo(self_cgroup: &str) -> io::Result<&'static str> {
    static MOUNTINFO: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if let Some(m) = MOUNTINFO.get() {
        return Ok(m);
    }
    let m = until_cgroup_mounts(std::fs::File::open("/proc/self/mountinfo")?, self_cgroup)?;
    Ok(MOUNTINFO.get_or_init(|| m))
}

/// Reads mountinfo from `r` until every hierarchy named in `self_cgroup` (this process's
/// /proc/self/cgroup) has had a mount, and returns what was read, in whole lines. The kernel
/// lists mounts in the order they were made and makes the text as it is read: the hierarchies
/// are mounted at boot, so the thousands of mounts a busy host adds later (containers' rootfs,
/// volumes) are never generated, let alone parsed (2000 host mounts cost a create 6 ms
/// otherwise). A hierarchy that is mounted nowhere means reading to the end, as before.
pub fn until_cgroup_mounts(mut r: impl io::Read, self_cgroup: &str) -> io::Result<String> {
    let mut v1: Vec<Vec<&str>> = Vec::new();
    let mut unified = false;
    for line in self_cgroup.lines() {
        let mut it = line.splitn(3, ':');
        match (it.next(), it.next()) {
            (Some("0"), Some("")) => unified = true,
            (Some(_), Some(c)) if !c.is_empty() => v1.push(c.split(',').collect()),
            _ => {}
        }
    }
    let mut buf: Vec<u8> = Vec::with_capacity(16 << 10);
    let mut done = 0;
    loop {
        let start = buf.len();
        buf.resize(start + (16 << 10), 0);
        let n = r.read(&mut buf[start..])?;
        buf.truncate(start + n);
        let end = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        for line in buf[done..end].split(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(line);
            let Some((_, post)) = line.split_once(" - ") else {
                continue;
            };
            let mut f = post.split(' ');
            match (f.next(), f.next(), f.next()) {
                (Some("cgroup2"), _, _) => unified = false,
                (Some("cgroup"), _, Some(opts)) => {
                    let opts: Vec<&str> = opts.split(',').collect();
                    v1.retain(|want| !want.iter().all(|c| opts.contains(c)));
                }
                _ => {}
            }
        }
        done = end;
        if n == 0 || (v1.is_empty() && !unified) {
            buf.truncate(done);
            return String::from_utf8(buf)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e));
        }
    }
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
    same_mount(root, fd.as_fd(), rel)?;
    let mut f = std::fs::File::from(fd);
    f.write_all(value)
}

/// The mount id of `fd` (statx STATX_MNT_ID), or None where the kernel does not report it.
pub(crate) fn mount_id(fd: BorrowedFd) -> io::Result<Option<u64>> {
    // SAFETY: statx on an fd with AT_EMPTY_PATH and an empty C string; the kernel fills `st`,
    // a zeroed plain-data struct we own, and reads nothing else.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    let r = unsafe {
        libc::statx(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_STATX_DONT_SYNC,
            libc::STATX_MNT_ID,
            &mut st,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((st.stx_mask & libc::STATX_MNT_ID != 0).then_some(st.stx_mnt_id))
}

/// The opened file must be on the root's own superblock and mount: not a file of another
/// procfs, nor anything bound over part of this one (RESOLVE_NO_XDEV already refuses crossing
/// a mount; this checks the result itself).
fn same_mount(root: BorrowedFd, file: BorrowedFd, rel: &Path) -> io::Result<()> {
    let other = |what: &str| {
        bad(format!(
            "{} is on {what} than the procfs it was opened from; refusing to write there",
            rel.display()
        ))
    };
    if fstat(root)?.st_dev != fstat(file)?.st_dev {
        return Err(other("another filesystem"));
    }
    match (mount_id(root)?, mount_id(file)?) {
        (Some(a), Some(b)) if a != b => Err(other("another mount")),
        _ => Ok(()),
    }
}

/// A file under /proc that Berth writes, named the way that cannot be redirected.
#[derive(Clone, Copy, Debug)]
pub enum ProcFile<'a> {
    /// A sysctl (`net.ipv4.ip_forward` or `net/ipv4/ip_forward`): /proc/sys/….
    Sysctl(&'a str),
    /// A file of the calling process (`timens_offsets`), reached through the procfs's own
    /// `self` link (read, then resolved without following it), so it is right whichever pid
    /// namespace the procfs belongs to.
    OwnProcess(&'a str),
    /// A file of the calling thread (`attr/exec`), through the procfs's `thread-self` link.
    OwnThread(&'a str),
    /// A file of another process, by its pid in the caller's pid namespace (`uid_map`,
    /// `gid_map`, `oom_score_adj`); refused unless the procfs shows pids as the caller sees
    /// them (its `self` is the caller's pid), or the pid could name some other process.
    Pid(i32, &'a str),
}

impl ProcFile<'_> {
    /// The path below the procfs root, for messages (`sys/net/ipv4/ip_forward`, `42/uid_map`).
    pub fn display(&self) -> String {
        match self {
            ProcFile::Sysctl(k) => sysctl_path(k).display().to_string(),
            ProcFile::OwnProcess(f) => format!("self/{f}"),
            ProcFile::OwnThread(f) => format!("thread-self/{f}"),
            ProcFile::Pid(pid, f) => format!("{pid}/{f}"),
        }
    }
}

/// Where a procfs's `self` or `thread-self` link points (`42`, `42/task/43`), checked to be
/// only pid components, so it can be joined below the root.
fn own_link(root: BorrowedFd, link: &str) -> io::Result<PathBuf> {
    let t = nix::fcntl::readlinkat(root, link)?;
    let t = t.to_string_lossy();
    let ok = t
        .split('/')
        .all(|c| c == "task" || (!c.is_empty() && c.bytes().all(|b| b.is_ascii_digit())));
    if !ok || t.starts_with("task") {
        return Err(bad(format!(
            "/proc/{link} points to {t:?}, not a pid; refusing to write there"
        )));
    }
    Ok(PathBuf::from(t.into_owned()))
}

/// Writes `value` to `file` in /proc, which must be the root of a real procfs; the file is
/// reached beneath it without crossing a symlink, a magic link or a mount, and is checked to be
/// on that procfs's own mount before the write.
pub fn write_proc(file: ProcFile, value: &[u8]) -> io::Result<()> {
    let root = open_root(Path::new("/proc"), Fs::Proc)?;
    let rel = match file {
        ProcFile::Sysctl(k) => sysctl_path(k),
        ProcFile::OwnProcess(f) => own_link(root.as_fd(), "self")?.join(f),
        ProcFile::OwnThread(f) => own_link(root.as_fd(), "thread-self")?.join(f),
        ProcFile::Pid(pid, f) => {
            let me = nix::unistd::getpid().as_raw().to_string();
            let seen = own_link(root.as_fd(), "self")?;
            if seen != Path::new(&me) {
                return Err(bad(format!(
                    "/proc belongs to another pid namespace (its self is {}, this process is \
                     {me}); refusing to write {pid}/{f} there",
                    seen.display()
                )));
            }
            Path::new(&pid.to_string()).join(f)
        }
    };
    write(root.as_fd(), Fs::Proc, &rel, value)
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

    /// A reader that says how much was taken from it.
    struct Counting<'a>(&'a [u8], std::rc::Rc<std::cell::Cell<usize>>);
    impl std::io::Read for Counting<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            // Like seq_file: at most a page a call.
            let n = out.len().min(self.0.len()).min(4096);
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            self.1.set(self.1.get() + n);
            Ok(n)
        }
    }

    #[test]
    fn mountinfo_is_read_only_up_to_the_cgroup_mounts() {
        let mut mi = String::from(
            "22 1 8:1 / / rw - ext4 /dev/vda rw\n\
             31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755\n\
             32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
             35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
             40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n\
             41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n",
        );
        for n in 0..5000 {
            mi.push_str(&format!(
                "{} 22 0:99 / /var/lib/x/{n} rw - tmpfs tmpfs rw\n",
                100 + n
            ));
        }
        let own = "9:name=systemd:/\n4:memory:/a\n2:cpu,cpuacct:/\n0::/\n";
        let taken = std::rc::Rc::new(std::cell::Cell::new(0));
        let got = until_cgroup_mounts(Counting(mi.as_bytes(), taken.clone()), own).unwrap();
        assert!(got.contains("/sys/fs/cgroup/unified"), "{got}");
        assert!(got.ends_with('\n'));
        assert!(mi.starts_with(&got));
        assert!(
            taken.get() <= 8192,
            "read {} of {} bytes",
            taken.get(),
            mi.len()
        );
        // What the layout makes of it is what it makes of the whole file.
        let subs = ["cpu", "cpuacct", "memory"];
        assert_eq!(
            crate::cgroups::layout::Layout::parse(&got, own, &subs),
            crate::cgroups::layout::Layout::parse(&mi, own, &subs)
        );
        // A hierarchy mounted nowhere: everything is read.
        let own = "5:pids:/\n0::/\n";
        let taken = std::rc::Rc::new(std::cell::Cell::new(0));
        let got = until_cgroup_mounts(Counting(mi.as_bytes(), taken.clone()), own).unwrap();
        assert_eq!(got, mi);
    }

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

    #[test]
    fn own_files_are_reached_through_the_procfs_links() {
        let proc = open_root(Path::new("/proc"), Fs::Proc).unwrap();
        let me = nix::unistd::getpid().as_raw().to_string();
        assert_eq!(own_link(proc.as_fd(), "self").unwrap(), Path::new(&me));
        let t = own_link(proc.as_fd(), "thread-self").unwrap();
        let tid = nix::unistd::gettid().as_raw().to_string();
        assert_eq!(t, Path::new(&me).join("task").join(tid));
        // A write that changes nothing: this thread's comm, through thread-self.
        let comm = read_pseudo("/proc/thread-self/comm").unwrap();
        write_proc(ProcFile::OwnThread("comm"), comm.trim_end().as_bytes()).unwrap();
        assert_eq!(read_pseudo("/proc/thread-self/comm").unwrap(), comm);
        let adj = read_pseudo("/proc/self/oom_score_adj").unwrap();
        let pid = nix::unistd::getpid().as_raw();
        write_proc(ProcFile::Pid(pid, "oom_score_adj"), adj.trim().as_bytes()).unwrap();
    }

    #[test]
    fn a_file_bound_over_proc_is_never_written() {
        // In a private mount namespace of one thread: a host file bound over a sysctl, then
        // the sysctl written through write_proc.
        let dir = tempfile::tempdir().unwrap();
        let stand_in = dir.path().join("ip_forward");
        std::fs::write(&stand_in, "stand-in\n").unwrap();
        let target = Path::new("/proc/sys/net/ipv4/ip_forward");
        let child = || -> Result<String, String> {
            use nix::mount::{mount, MsFlags};
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(|e| e.to_string())?;
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .map_err(|e| e.to_string())?;
            mount(
                Some(&stand_in),
                target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| e.to_string())?;
            let cur = read_pseudo("/proc/sys/net/ipv4/ip_forward").map_err(|e| e.to_string())?;
            assert_eq!(cur, "stand-in\n");
            match write_proc(ProcFile::Sysctl("net.ipv4.ip_forward"), b"1") {
                Ok(()) => Ok("written".into()),
                Err(e) => Ok(e.to_string()),
            }
        };
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIP: needs root for a mount namespace");
            return;
        }
        // A thread, so that unshare affects only it.
        let got = std::thread::scope(|s| s.spawn(child).join().unwrap()).unwrap();
        assert!(got.contains("crosses a mount point"), "{got}");
        assert_eq!(std::fs::read_to_string(&stand_in).unwrap(), "stand-in\n");
    }
}
