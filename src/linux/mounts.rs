//! One entry of `mounts`: option parsing (runc's vocabulary), and mounting it inside the rootfs.
//!
//! * Fresh filesystems (tmpfs, proc, sysfs, devpts, mqueue, overlay, …) take one mount(2) onto
//!   `/proc/self/fd/N`, N being an O_PATH fd of the destination resolved inside the rootfs. When
//!   the kernel refuses, the mount is replayed with fsopen/fsconfig to find which option (or the
//!   type) it refused, and the kernel's own message is reported against that JSON path.
//! * Bind mounts are cloned with open_tree(OPEN_TREE_CLONE), given their flags with
//!   mount_setattr while still detached, and attached with move_mount onto the destination fd.
//! * Propagation and recursive (`rro`, `rnosuid`, …) attributes go through mount_setattr.
//! * `cgroup` follows runc: on a v1/hybrid host a tmpfs with each v1 hierarchy (bound from the
//!   container's own cgroup, or mounted fresh inside a cgroup namespace); cgroup2 on a v2 host.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{fstat, Mode, SFlag};
use nix::sys::statfs::{fstatfs, PROC_SUPER_MAGIC, TMPFS_MAGIC};
use oci_spec::runtime::Mount;

use super::rootfs::{errno_str, RootfsError};
use super::safepath::{self, IN_ROOT, NO_SYMLINKS};

type R<T = ()> = Result<T, RootfsError>;

/// Parsed `options` of one mount.
#[derive(Debug, Clone)]
pub struct Opts {
    /// MS_* flags requested on.
    pub set: MsFlags,
    /// MS_* flags explicitly requested off (`rw`, `suid`, `dev`, `exec`, `atime`, …).
    pub clear: MsFlags,
    /// Propagation changes, in order (MS_SHARED/SLAVE/PRIVATE/UNBINDABLE, maybe with MS_REC).
    pub propagation: Vec<MsFlags>,
    /// Recursive mount attributes (MOUNT_ATTR_*) set and cleared with AT_RECURSIVE.
    pub rec_set: u64,
    pub rec_clr: u64,
    /// Everything else, passed to the filesystem, with its index in `options`.
    pub data: Vec<(usize, String)>,
    pub bind: bool,
    /// `tmpcopyup`: copy the destination's contents into the new tmpfs.
    pub copyup: bool,
}

const ATIME_ENUM: MsFlags = MsFlags::MS_NOATIME
    .union(MsFlags::MS_RELATIME)
    .union(MsFlags::MS_STRICTATIME);
/// Flags that are per mount (not per superblock).
const MNT_FLAGS: MsFlags = MsFlags::MS_RDONLY
    .union(MsFlags::MS_NOSUID)
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC)
    .union(MsFlags::MS_NODIRATIME)
    .union(ATIME_ENUM)
    .union(NOSYMFOLLOW);
const NOSYMFOLLOW: MsFlags = MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW);
/// Flags the kernel may lock on a mount inherited from a more privileged user namespace.
const LOCKABLE: MsFlags = MsFlags::MS_RDONLY
    .union(MsFlags::MS_NOSUID)
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC)
    .union(MsFlags::MS_NODIRATIME)
    .union(ATIME_ENUM);

/// Plain options: (name, clears?, flag).
const FLAGS: &[(&str, bool, MsFlags)] = &[
    ("async", true, MsFlags::MS_SYNCHRONOUS),
    ("atime", true, MsFlags::MS_NOATIME),
    ("bind", false, MsFlags::MS_BIND),
    ("defaults", false, MsFlags::empty()),
    ("dev", true, MsFlags::MS_NODEV),
    ("diratime", true, MsFlags::MS_NODIRATIME),
    ("dirsync", false, MsFlags::MS_DIRSYNC),
    ("exec", true, MsFlags::MS_NOEXEC),
    ("iversion", false, MsFlags::MS_I_VERSION),
    ("lazytime", false, MsFlags::MS_LAZYTIME),
    ("loud", true, MsFlags::MS_SILENT),
    ("mand", false, MsFlags::MS_MANDLOCK),
    ("noatime", false, MsFlags::MS_NOATIME),
    ("nodev", false, MsFlags::MS_NODEV),
    ("nodiratime", false, MsFlags::MS_NODIRATIME),
    ("noexec", false, MsFlags::MS_NOEXEC),
    ("noiversion", true, MsFlags::MS_I_VERSION),
    ("nolazytime", true, MsFlags::MS_LAZYTIME),
    ("nomand", true, MsFlags::MS_MANDLOCK),
    ("norelatime", true, MsFlags::MS_RELATIME),
    ("nostrictatime", true, MsFlags::MS_STRICTATIME),
    ("nosuid", false, MsFlags::MS_NOSUID),
    ("nosymfollow", false, NOSYMFOLLOW),
    ("rbind", false, MsFlags::MS_BIND.union(MsFlags::MS_REC)),
    ("relatime", false, MsFlags::MS_RELATIME),
    ("remount", false, MsFlags::MS_REMOUNT),
    ("ro", false, MsFlags::MS_RDONLY),
    ("rw", true, MsFlags::MS_RDONLY),
    ("silent", false, MsFlags::MS_SILENT),
    ("strictatime", false, MsFlags::MS_STRICTATIME),
    ("suid", true, MsFlags::MS_NOSUID),
    ("symfollow", true, NOSYMFOLLOW),
    ("sync", false, MsFlags::MS_SYNCHRONOUS),
];

const PROPAGATION: &[(&str, MsFlags)] = &[
    ("private", MsFlags::MS_PRIVATE),
    ("shared", MsFlags::MS_SHARED),
    ("slave", MsFlags::MS_SLAVE),
    ("unbindable", MsFlags::MS_UNBINDABLE),
    ("rprivate", MsFlags::MS_PRIVATE.union(MsFlags::MS_REC)),
    ("rshared", MsFlags::MS_SHARED.union(MsFlags::MS_REC)),
    ("rslave", MsFlags::MS_SLAVE.union(MsFlags::MS_REC)),
    ("runbindable", MsFlags::MS_UNBINDABLE.union(MsFlags::MS_REC)),
];

use libc::{
    MOUNT_ATTR_NOATIME as A_NOATIME, MOUNT_ATTR_NODEV as A_NODEV,
    MOUNT_ATTR_NODIRATIME as A_NODIRATIME, MOUNT_ATTR_NOEXEC as A_NOEXEC,
    MOUNT_ATTR_NOSUID as A_NOSUID, MOUNT_ATTR_NOSYMFOLLOW as A_NOSYMFOLLOW,
    MOUNT_ATTR_RDONLY as A_RDONLY, MOUNT_ATTR_RELATIME as A_RELATIME,
    MOUNT_ATTR_STRICTATIME as A_STRICTATIME, MOUNT_ATTR__ATIME as A_ATIME,
};

/// Recursive options: (name, clears?, MOUNT_ATTR_*).
const REC_ATTRS: &[(&str, bool, u64)] = &[
    ("rro", false, A_RDONLY),
    ("rrw", true, A_RDONLY),
    ("rnosuid", false, A_NOSUID),
    ("rsuid", true, A_NOSUID),
    ("rnodev", false, A_NODEV),
    ("rdev", true, A_NODEV),
    ("rnoexec", false, A_NOEXEC),
    ("rexec", true, A_NOEXEC),
    ("rnodiratime", false, A_NODIRATIME),
    ("rdiratime", true, A_NODIRATIME),
    ("rrelatime", false, A_RELATIME),
    ("rnorelatime", true, A_RELATIME),
    ("rnoatime", false, A_NOATIME),
    ("ratime", true, A_NOATIME),
    ("rstrictatime", false, A_STRICTATIME),
    ("rnostrictatime", true, A_STRICTATIME),
    ("rnosymfollow", false, A_NOSYMFOLLOW),
    ("rsymfollow", true, A_NOSYMFOLLOW),
];

fn field(i: usize, sub: &str, msg: impl Into<String>) -> RootfsError {
    let f = if sub.is_empty() {
        format!("mounts[{i}]")
    } else {
        format!("mounts[{i}].{sub}")
    };
    RootfsError::field(f, msg)
}

/// Parses `options` of `mounts[i]` the way runc does: known flags, propagation, recursive
/// attributes and extensions are taken out; anything else is filesystem data.
pub fn parse(i: usize, options: &[String]) -> R<Opts> {
    let mut o = Opts::default();
    for (j, opt) in options.iter().enumerate() {
        let name = opt.as_str();
        if let Some(&(_, clear, f)) = FLAGS.iter().find(|(n, _, _)| *n == name) {
            if f.contains(MsFlags::MS_BIND) {
                o.bind = true;
            }
            if clear {
                o.set.remove(f);
                o.clear.insert(f);
            } else {
                o.clear.remove(f);
                o.set.insert(f);
            }
        } else if let Some(&(_, p)) = PROPAGATION.iter().find(|(n, _)| *n == name) {
            o.propagation.push(p);
        } else if let Some(&(_, clear, a)) = REC_ATTRS.iter().find(|(n, _, _)| *n == name) {
            // The atime attributes are an enum inside MOUNT_ATTR__ATIME: setting one means
            // clearing the whole field first.
            if a & A_ATIME == a {
                if !clear {
                    o.rec_clr |= A_ATIME;
                    o.rec_set = (o.rec_set & !A_ATIME) | a;
                } else if o.rec_set & A_ATIME == a {
                    o.rec_set &= !A_ATIME;
                }
            } else if clear {
                o.rec_set &= !a;
                o.rec_clr |= a;
            } else {
                o.rec_clr &= !a;
                o.rec_set |= a;
            }
        } else if name == "tmpcopyup" {
            o.copyup = true;
        } else if matches!(name, "idmap" | "ridmap") || name.starts_with("idmap=") {
            return Err(field(
                i,
                &format!("options[{j}]"),
                format!("{name:?}: idmapped mounts are not supported"),
            ));
        } else if name.is_empty() {
            return Err(field(i, &format!("options[{j}]"), "empty option"));
        } else {
            o.data.push((j, opt.clone()));
        }
    }
    Ok(o)
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            set: MsFlags::empty(),
            clear: MsFlags::empty(),
            propagation: Vec::new(),
            rec_set: 0,
            rec_clr: 0,
            data: Vec::new(),
            bind: false,
            copyup: false,
        }
    }
}

impl Opts {
    pub fn data_string(&self) -> String {
        let v: Vec<&str> = self.data.iter().map(|(_, s)| s.as_str()).collect();
        v.join(",")
    }
}

/// What a mount needs to know about the container around it.
pub struct Ctx<'a> {
    /// O_PATH fd of the rootfs (the bind mount of it onto itself).
    pub root: BorrowedFd<'a>,
    /// The kernel's path of `root`, to map resolved fds back to container paths.
    pub root_path: PathBuf,
    /// Relative bind sources are relative to the bundle.
    pub bundle: &'a Path,
    pub cgroupns: bool,
}

/// The mount kind used by the /proc check.
enum Kind<'a> {
    Fresh(&'a str),
    Bind(BorrowedFd<'a>),
}

/// `mounts[i]`: is it a bind mount?
pub fn is_bind(m: &Mount) -> bool {
    m.typ().as_deref() == Some("bind")
        || m.options()
            .iter()
            .flatten()
            .any(|o| o == "bind" || o == "rbind")
}

/// Mounts `mounts[i]` inside the rootfs.
pub fn mount_one(ctx: &Ctx, i: usize, m: &Mount) -> R {
    if m.uid_mappings().is_some() || m.gid_mappings().is_some() {
        return Err(field(i, "uidMappings", "idmapped mounts are not supported"));
    }
    let opts = parse(i, m.options().as_deref().unwrap_or(&[]))?;
    let ty = m.typ().as_deref().unwrap_or("");
    if opts.copyup && ty != "tmpfs" {
        return Err(field(
            i,
            "options",
            "\"tmpcopyup\" only applies to tmpfs mounts",
        ));
    }
    if opts.bind || ty == "bind" {
        return bind(ctx, i, m, &opts);
    }
    match ty {
        "" if !opts.set.contains(MsFlags::MS_REMOUNT) => Err(field(
            i,
            "type",
            "required (only bind mounts and remounts may omit it)",
        )),
        "cgroup" => cgroup(ctx, i, m, &opts),
        _ => fresh(ctx, i, m, ty, &opts),
    }
}

fn dest_err(i: usize, dest: &Path) -> impl FnOnce(io::Error) -> RootfsError + '_ {
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
fn check_dest(ctx: &Ctx, i: usize, dest: &Path, fd: BorrowedFd, kind: &Kind) -> R<PathBuf> {
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
fn check_proc(i: usize, dest: &Path, at: &Path, kind: &Kind) -> R {
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

/// A filesystem made fresh for this mount.
fn fresh(ctx: &Ctx, i: usize, m: &Mount, ty: &str, o: &Opts) -> R {
    let dest = m.destination();
    // procfs and sysfs must land on a real directory: no symlink anywhere on the way.
    let resolve = if matches!(ty, "proc" | "sysfs") {
        NO_SYMLINKS
    } else {
        IN_ROOT
    };
    let kind = Kind::Fresh(ty);
    check_proc(i, dest, &safepath::clean(dest), &kind)?;
    let r = safepath::mkdir_all(ctx.root, dest, 0o755, resolve).map_err(dest_err(i, dest))?;
    let at = check_dest(ctx, i, dest, r.fd.as_fd(), &kind)?;
    let mut data = o.data_string();
    if ty == "tmpfs" && !r.created && !o.data.iter().any(|(_, d)| d.starts_with("mode=")) {
        // A tmpfs keeps the mode of the directory it covers unless told otherwise.
        if let Ok(st) = fstat(r.fd.as_fd()) {
            let mode = format!("mode={:04o}", st.st_mode & 0o7777);
            data = if data.is_empty() {
                mode
            } else {
                format!("{mode},{data}")
            };
        }
    }
    let mut flags = o.set - MsFlags::MS_BIND - MsFlags::MS_REC;
    // tmpfs and /dev stay writable until finish(): devices, hooks and tmpcopyup write there.
    if ty == "tmpfs" || at == Path::new("/dev") {
        flags.remove(MsFlags::MS_RDONLY);
    }
    if o.copyup {
        return tmpfs_copyup(i, dest, r.fd.as_fd(), &data, flags, o);
    }
    let source = m
        .source()
        .as_ref()
        .map(|s| s.as_os_str().to_owned())
        .unwrap_or_else(|| ty.into());
    let res = mount(
        Some(source.as_os_str()),
        fd_target(r.fd.as_fd()).as_str(),
        (!ty.is_empty()).then_some(ty),
        flags,
        (!data.is_empty()).then_some(data.as_str()),
    );
    if let Err(e) = res {
        return Err(diagnose(i, dest, ty, &source.to_string_lossy(), o, e));
    }
    after_fresh(ctx, i, dest, o)
}

/// Propagation and recursive attributes of a fresh mount, on the mount's own root.
fn after_fresh(ctx: &Ctx, i: usize, dest: &Path, o: &Opts) -> R {
    if o.propagation.is_empty() && o.rec_set == 0 && o.rec_clr == 0 {
        return Ok(());
    }
    let fd = safepath::open_path(ctx.root, dest).map_err(dest_err(i, dest))?;
    rec_attrs(i, fd.as_fd(), o)?;
    propagate(i, fd.as_fd(), o)
}

fn rec_attrs(i: usize, fd: BorrowedFd, o: &Opts) -> R {
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

fn propagate(i: usize, fd: BorrowedFd, o: &Opts) -> R {
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

/// Replays a refused fresh mount with fsopen/fsconfig to name what the kernel refused.
fn diagnose(i: usize, dest: &Path, ty: &str, source: &str, o: &Opts, err: Errno) -> RootfsError {
    let generic =
        |detail: String| field(i, "", format!("mount {ty} on {}: {detail}", dest.display()));
    let fc = match api::fsopen(ty) {
        Ok(fc) => fc,
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {
            return field(
                i,
                "type",
                format!("unknown filesystem type {ty:?} (see /proc/filesystems)"),
            )
        }
        Err(_) => return generic(err.desc().to_string()),
    };
    let why = |e: io::Error| api::fs_log(fc.as_fd()).unwrap_or_else(|| errno_str(&e));
    if let Err(e) = api::fsconfig_string(fc.as_fd(), "source", source) {
        return field(i, "source", format!("{source:?}: {}", why(e)));
    }
    for (j, opt) in &o.data {
        let r = match opt.split_once('=') {
            Some((k, v)) => api::fsconfig_string(fc.as_fd(), k, v),
            None => api::fsconfig_flag(fc.as_fd(), opt),
        };
        if let Err(e) = r {
            return field(i, &format!("options[{j}]"), format!("{opt:?}: {}", why(e)));
        }
    }
    if let Err(e) = api::fsconfig_create(fc.as_fd()) {
        return generic(why(e));
    }
    generic(err.desc().to_string())
}

/// A bind mount: clone the source tree, set its flags while detached, attach it.
fn bind(ctx: &Ctx, i: usize, m: &Mount, o: &Opts) -> R {
    let dest = m.destination();
    let src = m
        .source()
        .as_ref()
        .ok_or_else(|| field(i, "source", "a bind mount needs a source"))?;
    let src = if src.is_absolute() {
        src.clone()
    } else {
        ctx.bundle.join(src)
    };
    let recursive = o.set.contains(MsFlags::MS_REC);
    let tree = api::open_tree(None, &src, recursive)
        .map_err(|e| field(i, "source", format!("{}: {}", src.display(), errno_str(&e))))?;
    let is_dir = fstat(tree.as_fd())
        .map(|s| SFlag::from_bits_truncate(s.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
        .map_err(|e| field(i, "source", format!("{}: {}", src.display(), e.desc())))?;
    let kind = Kind::Bind(tree.as_fd());
    check_proc(i, dest, &safepath::clean(dest), &kind)?;
    let r = if is_dir {
        safepath::mkdir_all(ctx.root, dest, 0o755, IN_ROOT)
    } else {
        safepath::create_file(ctx.root, dest, 0o644, IN_ROOT)
    }
    .map_err(dest_err(i, dest))?;
    check_dest(ctx, i, dest, r.fd.as_fd(), &kind)?;
    attach(i, &tree, r.fd.as_fd(), dest, o)
}

/// Sets a detached tree's flags, moves it onto `target`, then sets its propagation.
fn attach(i: usize, tree: &OwnedFd, target: BorrowedFd, dest: &Path, o: &Opts) -> R {
    bind_flags(i, tree.as_fd(), o)?;
    rec_attrs(i, tree.as_fd(), o)?;
    api::move_mount(tree.as_fd(), target).map_err(|e| {
        let hint = match e.raw_os_error() {
            Some(libc::ENOTDIR) => " (a directory cannot be bound onto a file)",
            Some(libc::EISDIR) => " (a file cannot be bound onto a directory)",
            _ => "",
        };
        field(
            i,
            "destination",
            format!("{}: {}{hint}", dest.display(), errno_str(&e)),
        )
    })?;
    propagate(i, tree.as_fd(), o)
}

fn mnt_attr_of(f: MsFlags) -> u64 {
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
fn atime_of(f: MsFlags) -> Option<u64> {
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

/// A bind mount's own flags, with runc's semantics: when any flag is given, the mount gets
/// exactly the requested flags (like `mount --bind -o …`); with `remount`, the requested flags
/// are applied on top of the source's. Flags the kernel locked (a mount inherited from a more
/// privileged user namespace) are kept unless the config explicitly asks to clear one.
fn bind_flags(i: usize, tree: BorrowedFd, o: &Opts) -> R {
    let set = o.set & MNT_FLAGS;
    let clear = o.clear & MNT_FLAGS;
    if set.is_empty() && clear.is_empty() {
        return Ok(());
    }
    let mut attr = api::MountAttr {
        attr_set: mnt_attr_of(set),
        ..Default::default()
    };
    attr.attr_clr = if o.set.contains(MsFlags::MS_REMOUNT) {
        mnt_attr_of(clear)
    } else {
        mnt_attr_of(MNT_FLAGS - MsFlags::MS_NODIRATIME - set) | mnt_attr_of(clear)
    };
    if let Some(a) = atime_of(set) {
        attr.attr_clr |= A_ATIME;
        attr.attr_set |= a;
    }
    let first = match api::mount_setattr(tree, false, &attr) {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    let fail = |e: &io::Error| field(i, "options", format!("bind mount flags: {}", errno_str(e)));
    if first.raw_os_error() != Some(libc::EPERM) {
        return Err(fail(&first));
    }
    // Locked flags: keep whatever the source has set, unless asked to clear it.
    let cur = current_flags(tree).map_err(|e| fail(&e))?;
    if !(cur & clear & LOCKABLE).is_empty() {
        return Err(field(
            i,
            "options",
            format!(
                "cannot clear {} on this bind mount: the kernel locked it (inherited from a more \
                 privileged user namespace)",
                names(cur & clear & LOCKABLE)
            ),
        ));
    }
    if let Some(a) = atime_of(set) {
        if atime_of(cur) != Some(a) && !(cur & ATIME_ENUM).is_empty() {
            return Err(fail(&first));
        }
        attr.attr_clr &= !A_ATIME;
        attr.attr_set &= !A_ATIME;
    }
    attr.attr_clr &= !mnt_attr_of(cur);
    api::mount_setattr(tree, false, &attr).map_err(|e| fail(&e))
}

/// The option names of MS_* flags, e.g. "nosuid, nodev".
fn names(f: MsFlags) -> String {
    FLAGS
        .iter()
        .filter(|(n, clear, fl)| !clear && !fl.is_empty() && f.contains(*fl) && *n != "rbind")
        .map(|(n, _, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The per-mount flags currently on `fd`'s mount (from statfs, as MS_* bits).
fn current_flags(fd: BorrowedFd) -> io::Result<MsFlags> {
    let st = nix::sys::statvfs::fstatvfs(fd)?;
    use nix::sys::statvfs::FsFlags as F;
    let f = st.flags();
    let mut ms = MsFlags::empty();
    for (s, m) in [
        (F::ST_RDONLY, MsFlags::MS_RDONLY),
        (F::ST_NOSUID, MsFlags::MS_NOSUID),
        (F::ST_NODEV, MsFlags::MS_NODEV),
        (F::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (F::ST_NOATIME, MsFlags::MS_NOATIME),
        (F::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (F::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(s) {
            ms |= m;
        }
    }
    if (ms & ATIME_ENUM).is_empty() {
        ms |= MsFlags::MS_STRICTATIME;
    }
    Ok(ms)
}

/// tmpfs with `tmpcopyup`: the new filesystem is built detached (fsopen/fsmount), the
/// destination's contents are copied into it, and only then is it attached.
fn tmpfs_copyup(
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
                fchownat(
                    dst,
                    name.as_c_str(),
                    Some(Uid::from_raw(st.st_uid)),
                    Some(Gid::from_raw(st.st_gid)),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )?;
            }
            SFlag::S_IFCHR | SFlag::S_IFBLK | SFlag::S_IFIFO => {
                mknodat(
                    dst,
                    name.as_c_str(),
                    kind,
                    Mode::from_bits_truncate(0o600),
                    st.st_rdev,
                )?;
                fchownat(
                    dst,
                    name.as_c_str(),
                    Some(Uid::from_raw(st.st_uid)),
                    Some(Gid::from_raw(st.st_gid)),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )?;
                fchmodat(dst, name.as_c_str(), perm, FchmodatFlags::FollowSymlink)?;
            }
            _ => {} // sockets are not copied
        }
    }
    Ok(())
}

/// `cgroup`: cgroup2 on a unified host; otherwise runc's v1 layout.
fn cgroup(ctx: &Ctx, i: usize, m: &Mount, o: &Opts) -> R {
    let host = Path::new("/sys/fs/cgroup");
    let unified = nix::sys::statfs::statfs(host)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC);
    if unified {
        cgroup2(ctx, i, m, o)
    } else {
        cgroup1(ctx, i, m, o)
    }
}

/// One v1 hierarchy mounted on the host, and the container's own cgroup in it.
#[derive(Debug, PartialEq)]
pub struct Hierarchy {
    pub mountpoint: PathBuf,
    /// The controllers as mount data, e.g. `cpu,cpuacct` or `name=systemd`.
    pub controllers: String,
    /// Host path of this process's cgroup in the hierarchy, or why it cannot be reached.
    pub own: Result<PathBuf, String>,
}

/// Unescapes mountinfo's octal escapes (`\040` for a space, …).
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut k = 0;
    while k < b.len() {
        if b[k] == b'\\'
            && k + 3 < b.len()
            && b[k + 1..k + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[k + 1] - b'0') as u32 * 64
                + (b[k + 2] - b'0') as u32 * 8
                + (b[k + 3] - b'0') as u32;
            out.push(v as u8);
            k += 4;
        } else {
            out.push(b[k]);
            k += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The v1 hierarchies from mountinfo and /proc/self/cgroup text.
pub fn v1_hierarchies(mountinfo: &str, self_cgroup: &str) -> Vec<Hierarchy> {
    let own: Vec<(Vec<&str>, &str)> = self_cgroup
        .lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let (_, ctrl, path) = (it.next()?, it.next()?, it.next()?);
            (!ctrl.is_empty()).then(|| (ctrl.split(',').collect(), path))
        })
        .collect();
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let mut post = post.split(' ');
        if post.next() != Some("cgroup") {
            continue;
        }
        let superopts: Vec<&str> = post.nth(1).unwrap_or("").split(',').collect();
        let pre: Vec<&str> = pre.split(' ').collect();
        if pre.len() < 5 {
            continue;
        }
        let (root, mp) = (unescape(pre[3]), unescape(pre[4]));
        let Some((ctrls, path)) = own
            .iter()
            .find(|(c, _)| c.iter().all(|x| superopts.contains(x)))
        else {
            continue;
        };
        let own = match Path::new(path).strip_prefix(&root) {
            Ok(rel) => Ok(Path::new(&mp).join(rel)),
            Err(_) => Err(format!(
                "own cgroup {path} is not visible in the hierarchy mounted at {mp} (root {root})"
            )),
        };
        out.push(Hierarchy {
            mountpoint: PathBuf::from(&mp),
            controllers: ctrls.join(","),
            own,
        });
    }
    out
}

fn cgroup1(ctx: &Ctx, i: usize, m: &Mount, o: &Opts) -> R {
    let dest = m.destination();
    let read = |p: &str| {
        crate::linux::procfs::read_pseudo(p)
            .map_err(|e| field(i, "", format!("cgroup: read {p}: {}", errno_str(&e))))
    };
    // The host's hierarchies: the parent's copy of mountinfo (the same mounts; see procfs).
    let mountinfo = crate::linux::procfs::host_mountinfo().map_err(|e| {
        field(
            i,
            "",
            format!("cgroup: read /proc/self/mountinfo: {}", errno_str(&e)),
        )
    })?;
    let hier = v1_hierarchies(mountinfo, &read("/proc/self/cgroup")?);
    let kind = Kind::Fresh("tmpfs");
    check_proc(i, dest, &safepath::clean(dest), &kind)?;
    let r = safepath::mkdir_all(ctx.root, dest, 0o755, IN_ROOT).map_err(dest_err(i, dest))?;
    check_dest(ctx, i, dest, r.fd.as_fd(), &kind)?;
    let base = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(
        Some("tmpfs"),
        fd_target(r.fd.as_fd()).as_str(),
        Some("tmpfs"),
        base,
        Some("mode=755"),
    )
    .map_err(|e| {
        field(
            i,
            "",
            format!("mount tmpfs on {}: {}", dest.display(), e.desc()),
        )
    })?;
    let tmp = safepath::open_path(ctx.root, dest).map_err(dest_err(i, dest))?;
    if !fstatfs(tmp.as_fd()).is_ok_and(|s| s.filesystem_type() == TMPFS_MAGIC) {
        return Err(field(
            i,
            "destination",
            format!("{}: the tmpfs just mounted is not there", dest.display()),
        ));
    }
    let bind_opts = Opts {
        set: (o.set & MNT_FLAGS) | MsFlags::MS_BIND | MsFlags::MS_REC,
        clear: o.clear,
        propagation: o.propagation.clone(),
        ..Default::default()
    };
    for h in &hier {
        let name = h
            .mountpoint
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(&h.controllers));
        // The tmpfs is fresh and ours: each directory is made and opened directly in it.
        let sub = dest.join(&name);
        match nix::sys::stat::mkdirat(tmp.as_fd(), &name, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(dest_err(i, &sub)(e.into())),
        }
        // Opened again after the mount to reach the new mount's root rather than the directory
        // under it.
        let open_sub = || {
            safepath::open(
                tmp.as_fd(),
                &name,
                OFlag::O_PATH | OFlag::O_DIRECTORY,
                Mode::empty(),
                NO_SYMLINKS,
            )
            .map_err(dest_err(i, &sub))
        };
        let subfd = open_sub()?;
        if ctx.cgroupns {
            let (source, data) = match h.controllers.strip_prefix("name=") {
                Some(n) => (n.to_string(), h.controllers.clone()),
                None => ("cgroup".to_string(), h.controllers.clone()),
            };
            let flags = base | (o.set & (MsFlags::MS_RDONLY | ATIME_ENUM));
            mount(
                Some(source.as_str()),
                fd_target(subfd.as_fd()).as_str(),
                Some("cgroup"),
                flags,
                Some(data.as_str()),
            )
            .map_err(|e| {
                field(
                    i,
                    "",
                    format!(
                        "mount cgroup ({}) on {}: {}",
                        h.controllers,
                        sub.display(),
                        e.desc()
                    ),
                )
            })?;
            if !o.propagation.is_empty() {
                let fd = open_sub()?;
                propagate(i, fd.as_fd(), o)?;
            }
        } else {
            let own = h
                .own
                .as_ref()
                .map_err(|e| field(i, "", format!("cgroup: {e}")))?;
            let tree = api::open_tree(None, own, true).map_err(|e| {
                field(
                    i,
                    "",
                    format!("cgroup: {}: {}", own.display(), errno_str(&e)),
                )
            })?;
            attach(i, &tree, subfd.as_fd(), &sub, &bind_opts)?;
        }
    }
    // A hierarchy with several controllers ("cpu,cpuacct") is also reachable by each name.
    for h in &hier {
        let Some(name) = h.mountpoint.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !name.contains(',') {
            continue;
        }
        for c in name.split(',') {
            match nix::unistd::symlinkat(name, tmp.as_fd(), c) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => {
                    return Err(field(
                        i,
                        "",
                        format!("cgroup: symlink {c} -> {name}: {}", e.desc()),
                    ))
                }
            }
        }
    }
    if o.set.contains(MsFlags::MS_RDONLY) {
        let attr = api::MountAttr {
            attr_set: A_RDONLY,
            ..Default::default()
        };
        api::mount_setattr(tmp.as_fd(), false, &attr).map_err(|e| {
            field(
                i,
                "",
                format!("make {} read-only: {}", dest.display(), errno_str(&e)),
            )
        })?;
    }
    propagate(i, tmp.as_fd(), o)
}

/// A pure cgroup v2 host: mount cgroup2 (the cgroup namespace makes it the container's own
/// subtree); where the kernel refuses (a user namespace without a cgroup namespace), bind the
/// container's cgroup (or the whole hierarchy) instead, as runc does.
fn cgroup2(ctx: &Ctx, i: usize, m: &Mount, o: &Opts) -> R {
    let dest = m.destination();
    let kind = Kind::Fresh("cgroup2");
    check_proc(i, dest, &safepath::clean(dest), &kind)?;
    let r = safepath::mkdir_all(ctx.root, dest, 0o755, IN_ROOT).map_err(dest_err(i, dest))?;
    check_dest(ctx, i, dest, r.fd.as_fd(), &kind)?;
    let data = o.data_string();
    let flags = o.set & MNT_FLAGS;
    match mount(
        Some("cgroup2"),
        fd_target(r.fd.as_fd()).as_str(),
        Some("cgroup2"),
        flags,
        (!data.is_empty()).then_some(data.as_str()),
    ) {
        Ok(()) => return after_fresh(ctx, i, dest, o),
        Err(Errno::EPERM | Errno::EBUSY) => {}
        Err(e) => return Err(diagnose(i, dest, "cgroup2", "cgroup2", o, e)),
    }
    let mut src = PathBuf::from("/sys/fs/cgroup");
    if ctx.cgroupns {
        if let Some(p) = crate::linux::procfs::read_pseudo("/proc/self/cgroup")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("0::").map(str::to_string))
            })
        {
            src = src.join(p.trim_start_matches('/'));
        }
    }
    let tree = api::open_tree(None, &src, false).map_err(|e| {
        field(
            i,
            "",
            format!("cgroup: {}: {}", src.display(), errno_str(&e)),
        )
    })?;
    let bind_opts = Opts {
        set: flags | MsFlags::MS_BIND,
        clear: o.clear,
        propagation: o.propagation.clone(),
        ..Default::default()
    };
    attach(i, &tree, r.fd.as_fd(), dest, &bind_opts)
}

/// The new mount API (open_tree, move_mount, mount_setattr, fsopen, fsconfig, fsmount), which
/// nix does not wrap. Each function is a single system call.
pub mod api {
    use super::*;
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;

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
        CString::new(s)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in string"))
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
    pub fn open_tree(
        dirfd: Option<BorrowedFd>,
        path: &Path,
        recursive: bool,
    ) -> io::Result<OwnedFd> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(v: &[&str]) -> Opts {
        parse(0, &v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn flags_propagation_and_data_are_separated() {
        let o = opts(&[
            "rbind", "ro", "nosuid", "rslave", "size=10m", "mode=755", "private",
        ]);
        assert!(o.bind);
        assert!(o.set.contains(
            MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID
        ));
        assert_eq!(
            o.propagation,
            vec![MsFlags::MS_SLAVE | MsFlags::MS_REC, MsFlags::MS_PRIVATE]
        );
        assert_eq!(o.data_string(), "size=10m,mode=755");
        assert_eq!(o.data[0].0, 4);
    }

    #[test]
    fn later_options_win() {
        let o = opts(&["ro", "rw", "nosuid", "suid", "noexec"]);
        assert!(!o.set.contains(MsFlags::MS_RDONLY));
        assert!(o.clear.contains(MsFlags::MS_RDONLY | MsFlags::MS_NOSUID));
        assert!(o.set.contains(MsFlags::MS_NOEXEC));
    }

    #[test]
    fn recursive_attributes() {
        let o = opts(&["rro", "rnosuid", "rnoatime", "rstrictatime", "rexec"]);
        assert_eq!(o.rec_set, A_RDONLY | A_NOSUID | A_STRICTATIME);
        assert_eq!(o.rec_clr, A_ATIME | A_NOEXEC);
    }

    #[test]
    fn idmap_is_refused_with_its_index() {
        let e = parse(3, &["rbind".into(), "idmap".into()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "mounts[3].options[1]: \"idmap\": idmapped mounts are not supported"
        );
    }

    #[test]
    fn bind_flags_clear_what_was_not_asked() {
        let o = opts(&["bind", "ro"]);
        let set = o.set & MNT_FLAGS;
        assert_eq!(mnt_attr_of(set), A_RDONLY);
        let clr = mnt_attr_of(MNT_FLAGS - MsFlags::MS_NODIRATIME - set);
        assert_eq!(clr, A_NOSUID | A_NODEV | A_NOEXEC | A_NOSYMFOLLOW);
    }

    #[test]
    fn hierarchies_come_from_mountinfo_and_own_cgroup() {
        let mi = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                  32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n\
                  35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                  40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd\n\
                  41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        let cg = "9:name=systemd:/c1\n4:memory:/a/c1\n2:cpu,cpuacct:/c1\n0::/c1\n";
        let h = v1_hierarchies(mi, cg);
        assert_eq!(h.len(), 3);
        assert_eq!(h[0].controllers, "cpu,cpuacct");
        assert_eq!(h[0].own, Ok(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/c1")));
        assert_eq!(h[1].own, Ok(PathBuf::from("/sys/fs/cgroup/memory/a/c1")));
        assert_eq!(h[2].controllers, "name=systemd");
    }

    #[test]
    fn flag_names_for_messages() {
        assert_eq!(
            names(MsFlags::MS_NOSUID | MsFlags::MS_NODEV),
            "nodev, nosuid"
        );
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape("/a\\040b\\011c"), "/a b\tc");
        assert_eq!(unescape("/plain\\"), "/plain\\");
    }
}
