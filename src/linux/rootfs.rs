//! The container's root filesystem, in three steps run by the container's init:
//!
//! 1. [`prepare`] (new mount namespace, before the createRuntime/createContainer hooks): stop
//!    propagation to the host (`/` rslave, or `linux.rootfsPropagation`), bind the rootfs onto
//!    itself, mount `mounts` in order, create the devices.
//! 2. [`enter`]: pivot_root into it (or MS_MOVE + chroot with --no-pivot).
//! 3. [`finish`] (after the console): rootfs propagation, read-only tmpfs and /dev, read-only
//!    root, `linux.readonlyPaths`, `linux.maskedPaths`.
//!
//! Everything inside the rootfs is reached through fds resolved inside it (see `safepath`);
//! errors name the field of config.json at fault.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{fstat, Mode, SFlag};
use nix::unistd::{chdir, chroot, fchdir, pivot_root};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use thiserror::Error;

use super::mounts::{self, api};
use super::safepath::{self, IN_ROOT};
use super::{devices, procfs};

#[derive(Debug, Error)]
pub enum RootfsError {
    /// A field of config.json (named by its JSON path) could not be honoured.
    #[error("{field}: {msg}")]
    Field { field: String, msg: String },
    /// A step that belongs to no single field failed.
    #[error("{what}: {source}")]
    Sys {
        what: String,
        #[source]
        source: io::Error,
    },
}

impl RootfsError {
    pub fn field(field: impl Into<String>, msg: impl Into<String>) -> Self {
        RootfsError::Field {
            field: field.into(),
            msg: msg.into(),
        }
    }
}

fn sys<E: Into<io::Error>>(what: impl Into<String>) -> impl FnOnce(E) -> RootfsError {
    let what = what.into();
    move |e| RootfsError::Sys {
        what,
        source: e.into(),
    }
}

/// An io::Error as the bare description ("No such file or directory"), without Rust's
/// "(os error N)" suffix.
pub fn errno_str(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => Errno::from_raw(n).desc().to_string(),
        None => e.to_string(),
    }
}

pub struct Options<'a> {
    pub no_pivot: bool,
    /// The bundle directory: relative bind-mount sources are relative to it.
    pub bundle: &'a Path,
}

/// `linux.rootfsPropagation` as mount flags (None when unset or empty).
fn root_propagation(spec: &Spec) -> Result<Option<MsFlags>, RootfsError> {
    let Some(p) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_deref())
        .filter(|p| !p.is_empty())
    else {
        return Ok(None);
    };
    let rec = MsFlags::MS_REC;
    let f = match p {
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | rec,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | rec,
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | rec,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | rec,
        _ => {
            return Err(RootfsError::field(
                "linux.rootfsPropagation",
                format!("unknown propagation {p:?}"),
            ))
        }
    };
    Ok(Some(f))
}

fn has_namespace(spec: &Spec, t: LinuxNamespaceType) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| ns.iter().any(|n| n.typ() == t))
}

/// runc creates the default devices unless /dev is bind-mounted.
fn needs_dev(spec: &Spec) -> bool {
    !spec
        .mounts()
        .iter()
        .flatten()
        .any(|m| mounts::is_bind(m) && safepath::clean(m.destination()) == Path::new("/dev"))
}

fn open_dir(p: &Path) -> io::Result<OwnedFd> {
    Ok(nix::fcntl::open(
        p,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?)
}

/// Runs in the child, in its new mount namespace, before the createRuntime hooks.
pub fn prepare(spec: &Spec, rootfs: &Path, opts: &Options) -> Result<(), RootfsError> {
    let prop = root_propagation(spec)?;
    // As under runc, relative paths in mount sources and data (overlay's lowerdir=…) are
    // relative to the bundle. Best effort: a bundle this process cannot enter only matters if
    // such a path is used, and that mount then fails naming its field.
    let _ = chdir(opts.bundle);
    let nodes = if needs_dev(spec) {
        Some(devices::plan(spec)?)
    } else {
        None
    };
    // Nothing done from here on may reach the host's mount table.
    let mut flags = prop.unwrap_or(MsFlags::MS_SLAVE | MsFlags::MS_REC);
    // An unbindable `/` would make the rootfs bind below fail with EINVAL whenever the rootfs
    // is a plain directory on it (runc 1.1.5 fails so); isolate with private now and let
    // finish() make the new root unbindable after pivot_root.
    if flags.contains(MsFlags::MS_UNBINDABLE) {
        flags = (flags - MsFlags::MS_UNBINDABLE) | MsFlags::MS_PRIVATE;
    }
    mount(None::<&str>, "/", None::<&str>, flags, None::<&str>).map_err(|e| {
        let name = spec
            .linux()
            .as_ref()
            .and_then(|l| l.rootfs_propagation().clone())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "rslave".into());
        RootfsError::field(
            "linux.rootfsPropagation",
            format!("make / {name}: {}", e.desc()),
        )
    })?;
    let rec = MsFlags::MS_REC;
    if !(flags == MsFlags::MS_SLAVE | rec || flags == MsFlags::MS_PRIVATE | rec) {
        parent_mount_private(rootfs)?;
    }
    mount(
        Some(rootfs),
        rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| {
        RootfsError::field(
            "root.path",
            format!("bind {} onto itself: {}", rootfs.display(), e.desc()),
        )
    })?;
    let root = open_dir(rootfs).map_err(|e| {
        RootfsError::field(
            "root.path",
            format!("{}: {}", rootfs.display(), errno_str(&e)),
        )
    })?;
    let ctx = mounts::Ctx {
        root: root.as_fd(),
        root_path: safepath::fd_path(root.as_fd()),
        bundle: opts.bundle,
        cgroupns: has_namespace(spec, LinuxNamespaceType::Cgroup),
    };
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        mounts::mount_one(&ctx, i, m)?;
    }
    if let Some(nodes) = nodes {
        let bind = has_namespace(spec, LinuxNamespaceType::User) || devices::in_user_namespace();
        devices::setup(root.as_fd(), &nodes, bind)?;
    }
    Ok(())
}

/// pivot_root(2) needs the parent mount of the new root not to be shared; making it private
/// also keeps the rootfs bind from propagating back (runc does the same).
fn parent_mount_private(rootfs: &Path) -> Result<(), RootfsError> {
    let real =
        std::fs::canonicalize(rootfs).map_err(sys(format!("resolve {}", rootfs.display())))?;
    let mi = crate::linux::procfs::read_pseudo("/proc/self/mountinfo")
        .map_err(sys("read /proc/self/mountinfo"))?;
    let mut best: Option<(PathBuf, bool)> = None;
    for line in mi.lines() {
        let Some((pre, _)) = line.split_once(" - ") else {
            continue;
        };
        let f: Vec<&str> = pre.split(' ').collect();
        if f.len() < 6 {
            continue;
        }
        let mp = PathBuf::from(crate::linux::procfs::unescape_mountinfo(f[4]));
        if real.starts_with(&mp)
            && best
                .as_ref()
                .is_none_or(|(b, _)| mp.as_os_str().len() >= b.as_os_str().len())
        {
            let shared = f[6..].iter().any(|o| o.starts_with("shared:"));
            best = Some((mp, shared));
        }
    }
    if let Some((mp, true)) = best {
        mount(
            None::<&str>,
            &mp,
            None::<&str>,
            MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(sys(format!("make {} private", mp.display())))?;
    }
    Ok(())
}

/// Makes `rootfs` the process's root: pivot_root, or MS_MOVE + chroot with --no-pivot.
pub fn enter(rootfs: &Path, opts: &Options) -> Result<(), RootfsError> {
    if opts.no_pivot {
        return move_root(rootfs);
    }
    let old = open_dir(Path::new("/")).map_err(sys("open /"))?;
    let new = open_dir(rootfs).map_err(sys(format!("open {}", rootfs.display())))?;
    fchdir(new.as_fd()).map_err(sys("chdir to the rootfs"))?;
    pivot_root(".", ".").map_err(sys(format!("pivot_root into {}", rootfs.display())))?;
    // The old root is now stacked under the new one; detach it, after making sure that the
    // unmount cannot propagate to the host.
    fchdir(old.as_fd()).map_err(sys("chdir to the old root"))?;
    mount(
        None::<&str>,
        ".",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(sys("make the old root rslave"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(sys("detach the old root"))?;
    chdir("/").map_err(sys("chdir /"))?;
    Ok(())
}

/// --no-pivot: the host's procfs and sysfs stay reachable in the mount namespace, and the
/// kernel lets a process mount a fresh procfs when a full one is visible anywhere in it; so
/// detach them (or cover them) first, as runc does, then move the rootfs onto / and chroot.
fn move_root(rootfs: &Path) -> Result<(), RootfsError> {
    let real =
        std::fs::canonicalize(rootfs).map_err(sys(format!("resolve {}", rootfs.display())))?;
    let mi = crate::linux::procfs::read_pseudo("/proc/self/mountinfo")
        .map_err(sys("read /proc/self/mountinfo"))?;
    let mut targets = Vec::new();
    for line in mi.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let f: Vec<&str> = pre.split(' ').collect();
        let fstype = post.split(' ').next().unwrap_or("");
        if f.len() < 5 || f[3] != "/" || !matches!(fstype, "proc" | "sysfs") {
            continue;
        }
        let mp = PathBuf::from(crate::linux::procfs::unescape_mountinfo(f[4]));
        if !mp.starts_with(&real) {
            targets.push(mp);
        }
    }
    for mp in targets {
        match mount(
            None::<&str>,
            &mp,
            None::<&str>,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None::<&str>,
        ) {
            Ok(()) => {}
            Err(Errno::ENOENT) => continue, // already gone with a parent
            Err(e) => return Err(sys(format!("make {} rslave", mp.display()))(e)),
        }
        match umount2(&mp, MntFlags::MNT_DETACH) {
            Ok(()) => {}
            Err(Errno::EINVAL | Errno::EPERM) => {
                mount(
                    Some("tmpfs"),
                    &mp,
                    Some("tmpfs"),
                    MsFlags::empty(),
                    None::<&str>,
                )
                .map_err(sys(format!("cover {}", mp.display())))?;
            }
            Err(e) => return Err(sys(format!("detach {}", mp.display()))(e)),
        }
    }
    chdir(rootfs).map_err(sys(format!("chdir to {}", rootfs.display())))?;
    mount(
        Some(rootfs),
        "/",
        None::<&str>,
        MsFlags::MS_MOVE,
        None::<&str>,
    )
    .map_err(sys(format!("move {} onto /", rootfs.display())))?;
    chroot(".").map_err(sys("chroot"))?;
    chdir("/").map_err(sys("chdir /"))?;
    Ok(())
}

/// After pivot_root and the console: rootfs propagation, read-only tmpfs//dev mounts and
/// root, `linux.readonlyPaths`, `linux.maskedPaths`.
pub fn finish(spec: &Spec) -> Result<(), RootfsError> {
    let root = open_dir(Path::new("/")).map_err(sys("open /"))?;
    let prop = root_propagation(spec)?;
    let unbindable = prop.filter(|p| p.contains(MsFlags::MS_UNBINDABLE));
    if let Some(p) = prop {
        // MS_PRIVATE was already applied (and the parent made private) by prepare();
        // MS_UNBINDABLE waits for the end: the readonlyPaths binds need bindable mounts.
        if !p.intersects(MsFlags::MS_PRIVATE | MsFlags::MS_UNBINDABLE) {
            set_root_propagation(p)?;
        }
    }
    let ro = api::MountAttr {
        attr_set: libc::MOUNT_ATTR_RDONLY,
        ..Default::default()
    };
    // tmpfs and /dev mounts were left writable for devices, hooks and tmpcopyup.
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        let ty = m.typ().as_deref().unwrap_or("");
        let dest = m.destination();
        if mounts::is_bind(m) || !(ty == "tmpfs" || safepath::clean(dest) == Path::new("/dev")) {
            continue;
        }
        let o = mounts::parse(i, m.options().as_deref().unwrap_or(&[]))?;
        if !o.set.contains(MsFlags::MS_RDONLY) {
            continue;
        }
        let fd = safepath::open_path(root.as_fd(), dest)
            .and_then(|fd| api::mount_setattr(fd.as_fd(), false, &ro))
            .map_err(|e| {
                RootfsError::field(
                    format!("mounts[{i}].options"),
                    format!("make {} read-only: {}", dest.display(), errno_str(&e)),
                )
            });
        fd?;
    }
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        api::mount_setattr_path(Path::new("/"), &ro).map_err(|e| {
            RootfsError::field(
                "root.readonly",
                format!("make / read-only: {}", errno_str(&e)),
            )
        })?;
    }
    if needs_dev(spec) {
        reopen_null_stdio(root.as_fd());
    }
    let linux = spec.linux().as_ref();
    for (i, p) in linux
        .and_then(|l| l.readonly_paths().as_ref())
        .into_iter()
        .flatten()
        .enumerate()
    {
        readonly_path(root.as_fd(), Path::new(p)).map_err(|e| {
            RootfsError::field(format!("linux.readonlyPaths[{i}]"), format!("{p}: {e}"))
        })?;
    }
    let mut masker = Masker::default();
    for (i, p) in linux
        .and_then(|l| l.masked_paths().as_ref())
        .into_iter()
        .flatten()
        .enumerate()
    {
        masker.mask(root.as_fd(), Path::new(p)).map_err(|e| {
            RootfsError::field(format!("linux.maskedPaths[{i}]"), format!("{p}: {e}"))
        })?;
    }
    if let Some(p) = unbindable {
        set_root_propagation(p)?;
    }
    Ok(())
}

fn set_root_propagation(p: MsFlags) -> Result<(), RootfsError> {
    mount(None::<&str>, "/", None::<&str>, p, None::<&str>)
        .map_err(|e| RootfsError::field("linux.rootfsPropagation", format!("/: {}", e.desc())))
}

/// Opens `path` in the root, or None if it does not exist (such paths are skipped).
fn open_existing(root: BorrowedFd, path: &Path) -> Result<Option<OwnedFd>, String> {
    match safepath::open_path(root, path) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(errno_str(&e)),
    }
}

/// A read-only bind of `path` onto itself, submounts included.
fn readonly_path(root: BorrowedFd, path: &Path) -> Result<(), String> {
    let Some(fd) = open_existing(root, path)? else {
        return Ok(());
    };
    let tree = api::open_tree(Some(fd.as_fd()), Path::new(""), true)
        .map_err(|e| format!("bind: {}", errno_str(&e)))?;
    let ro = api::MountAttr {
        attr_set: libc::MOUNT_ATTR_RDONLY,
        ..Default::default()
    };
    api::mount_setattr(tree.as_fd(), true, &ro)
        .map_err(|e| format!("make read-only: {}", errno_str(&e)))?;
    api::move_mount(tree.as_fd(), fd.as_fd()).map_err(|e| format!("attach: {}", errno_str(&e)))
}

/// Covers masked paths: files with the container's /dev/null (verified to be the real null
/// device first), directories with an empty read-only tmpfs (one superblock, shared).
#[derive(Default)]
struct Masker {
    null: Option<OwnedFd>,
    tmpfs: Option<OwnedFd>,
}

/// True if `st` is the null character device, 1:3.
fn is_null(st: &nix::sys::stat::FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR
        && st.st_rdev == nix::sys::stat::makedev(1, 3)
}

impl Masker {
    fn mask(&mut self, root: BorrowedFd, path: &Path) -> Result<(), String> {
        let Some(fd) = open_existing(root, path)? else {
            return Ok(());
        };
        let st = fstat(fd.as_fd()).map_err(|e| e.desc().to_string())?;
        let is_dir = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
        let attach = |src: &OwnedFd| -> Result<(), String> {
            let c = api::open_tree(Some(src.as_fd()), Path::new(""), false)
                .map_err(|e| format!("clone mask: {}", errno_str(&e)))?;
            api::move_mount(c.as_fd(), fd.as_fd()).map_err(|e| format!("mask: {}", errno_str(&e)))
        };
        if !is_dir {
            if self.null.is_none() {
                self.null = Some(open_null(root)?);
            }
            return attach(self.null.as_ref().expect("set above"));
        }
        if let Some(t) = &self.tmpfs {
            return attach(t);
        }
        let fail = |what: &str, e: io::Error| format!("{what}: {}", errno_str(&e));
        let fc = api::fsopen("tmpfs").map_err(|e| fail("fsopen tmpfs", e))?;
        api::fsconfig_create(fc.as_fd()).map_err(|e| fail("create tmpfs", e))?;
        let attrs = libc::MOUNT_ATTR_RDONLY
            | libc::MOUNT_ATTR_NOSUID
            | libc::MOUNT_ATTR_NODEV
            | libc::MOUNT_ATTR_NOEXEC;
        let mnt = api::fsmount(fc.as_fd(), attrs).map_err(|e| fail("fsmount tmpfs", e))?;
        api::move_mount(mnt.as_fd(), fd.as_fd()).map_err(|e| fail("mask", e))?;
        self.tmpfs = Some(mnt);
        Ok(())
    }
}

/// The container's /dev/null, refused unless it is the real null device: a /dev/null that is
/// a symlink to, or a bind of, some other file would otherwise be bound over every masked path
/// (the 2025 runc advisories about fake /dev/null).
fn open_null(root: BorrowedFd) -> Result<OwnedFd, String> {
    let fd = safepath::open_path(root, Path::new("/dev/null"))
        .map_err(|e| format!("/dev/null: {}", errno_str(&e)))?;
    let st = fstat(fd.as_fd()).map_err(|e| format!("/dev/null: {}", e.desc()))?;
    if !is_null(&st) {
        return Err(format!(
            "/dev/null is not the null device (mode {:o}, device {}:{}); refusing to mask with it",
            st.st_mode,
            nix::sys::stat::major(st.st_rdev),
            nix::sys::stat::minor(st.st_rdev)
        ));
    }
    Ok(fd)
}

/// stdio inherited as the host's /dev/null is reopened as the container's (as runc does), so
/// no fd of the process refers to a host device file.
fn reopen_null_stdio(root: BorrowedFd) {
    // Opened for writing only if no symlink is involved (it could name a kernel file).
    let Ok(null) = safepath::open(
        root,
        Path::new("/dev/null"),
        OFlag::O_RDWR | OFlag::O_NOFOLLOW,
        Mode::empty(),
        IN_ROOT | nix::fcntl::ResolveFlag::RESOLVE_NO_SYMLINKS,
    ) else {
        return;
    };
    let Ok(nst) = fstat(null.as_fd()) else {
        return;
    };
    if !is_null(&nst) {
        return;
    }
    let dups: [fn(BorrowedFd) -> nix::Result<()>; 3] = [
        |f| nix::unistd::dup2_stdin(f),
        |f| nix::unistd::dup2_stdout(f),
        |f| nix::unistd::dup2_stderr(f),
    ];
    for (fd, dup) in dups.iter().enumerate() {
        // SAFETY: fds 0–2 are open for the life of the process (or fstat fails harmlessly).
        let std_fd = unsafe { BorrowedFd::borrow_raw(fd as i32) };
        if let Ok(st) = fstat(std_fd) {
            if is_null(&st) && (st.st_dev, st.st_ino) != (nst.st_dev, nst.st_ino) {
                let _ = dup(null.as_fd());
            }
        }
    }
}

/// Writes a sysctl under /proc/sys, after checking that /proc is the root of a real procfs and
/// that the file is reached without crossing a mount or a symlink (see `procfs::write_proc`).
pub fn write_sysctl(key: &str, value: &str) -> Result<(), RootfsError> {
    let f = procfs::ProcFile::Sysctl(key);
    procfs::write_proc(f, value.as_bytes()).map_err(sys(format!("write /proc/{}", f.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_setup_is_skipped_only_for_a_bound_dev() {
        let s = |mounts: &str| -> Spec {
            serde_json::from_str(&format!(r#"{{"ociVersion":"1.0.2","mounts":{mounts}}}"#)).unwrap()
        };
        assert!(needs_dev(&s(
            r#"[{"destination":"/dev","type":"tmpfs","source":"tmpfs"}]"#
        )));
        assert!(!needs_dev(&s(
            r#"[{"destination":"/dev/","type":"none","source":"/dev","options":["rbind"]}]"#
        )));
        assert!(!needs_dev(&s(
            r#"[{"destination":"/dev","type":"bind","source":"/dev"}]"#
        )));
    }

    #[test]
    fn rootfs_propagation_values() {
        let s = |p: &str| -> Spec {
            serde_json::from_str(&format!(
                r#"{{"ociVersion":"1.0.2","linux":{{"rootfsPropagation":"{p}"}}}}"#
            ))
            .unwrap()
        };
        assert_eq!(root_propagation(&s("")).unwrap(), None);
        assert_eq!(
            root_propagation(&s("rshared")).unwrap(),
            Some(MsFlags::MS_SHARED | MsFlags::MS_REC)
        );
        let e = root_propagation(&s("bogus")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "linux.rootfsPropagation: unknown propagation \"bogus\""
        );
    }

    #[test]
    fn errno_strings_are_bare() {
        let e = io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(errno_str(&e), "No such file or directory");
    }
}
