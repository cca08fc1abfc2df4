//! Path resolution that cannot leave a root directory.
//!
//! Every path inside the container's rootfs (mount destinations, device nodes, masked and
//! read-only paths) is resolved with openat2(2) relative to an fd of the rootfs and
//! `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`: an absolute symlink or `..` is resolved as if the
//! rootfs were `/`, and /proc magic links are refused. The result is an fd, and the caller acts
//! on that fd (move_mount, mknodat, …), never on the path again, so a path swapped after the
//! check cannot redirect the operation (the CVE-2021-30465 class).

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

/// Resolution scoped to the root fd, symlinks followed inside it, magic links refused.
pub const IN_ROOT: ResolveFlag =
    ResolveFlag::RESOLVE_IN_ROOT.union(ResolveFlag::RESOLVE_NO_MAGICLINKS);
/// Resolution below the dirfd that follows no symlink at all.
pub const NO_SYMLINKS: ResolveFlag =
    ResolveFlag::RESOLVE_BENEATH.union(ResolveFlag::RESOLVE_NO_SYMLINKS);

/// openat2(2), retried on EAGAIN (the kernel returns it when a concurrent rename could have
/// made a RESOLVE_IN_ROOT/BENEATH lookup unsafe) and EINTR.
pub fn open(
    dirfd: BorrowedFd,
    path: &Path,
    flags: OFlag,
    mode: Mode,
    resolve: ResolveFlag,
) -> io::Result<OwnedFd> {
    let rel = relative(path);
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .mode(mode)
        .resolve(resolve);
    let mut tries = 0;
    loop {
        match openat2(dirfd, rel.as_path(), how) {
            Err(Errno::EAGAIN | Errno::EINTR) if tries < 64 => tries += 1,
            r => return r.map_err(io::Error::from),
        }
    }
}

/// An O_PATH fd of `path` resolved inside `root` (symlinks followed within the root).
pub fn open_path(root: BorrowedFd, path: &Path) -> io::Result<OwnedFd> {
    open(root, path, OFlag::O_PATH, Mode::empty(), IN_ROOT)
}

/// `path` without its leading `/`, or `.` for the root itself.
pub fn relative(path: &Path) -> PathBuf {
    let p = path.strip_prefix("/").unwrap_or(path);
    if p.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        p.to_path_buf()
    }
}

/// `path` made absolute and lexically normal (`.` dropped, `..` applied, never above `/`),
/// without looking at the filesystem.
pub fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// The components of `path` that name something (no root, no `.`), `..` kept.
fn components(path: &Path) -> Vec<&OsStr> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s),
            Component::ParentDir => Some(OsStr::new("..")),
            _ => None,
        })
        .collect()
}

fn join(parts: &[&OsStr]) -> PathBuf {
    let mut p = PathBuf::new();
    for c in parts {
        p.push(c);
    }
    if p.as_os_str().is_empty() {
        p.push(".");
    }
    p
}

/// What [`mkdir_all`] and [`create_file`] found or made.
pub struct Resolved {
    pub fd: OwnedFd,
    /// False when the path already existed.
    pub created: bool,
}

/// How many dangling symlinks one creation may follow (the kernel's MAXSYMLINKS).
const MAX_LINKS: usize = 40;

/// Outcome of one pass of [`mkdir_all`]'s walk.
enum Walk {
    Done(OwnedFd, bool),
    /// Component `at` is a symlink to something missing: its target, and the parent's fd.
    Dangling {
        at: usize,
        target: PathBuf,
        parent: OwnedFd,
    },
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// One pass: resolve the longest existing prefix, then create the rest component by component.
fn walk(root: BorrowedFd, parts: &[&OsStr], mode: u32, resolve: ResolveFlag) -> io::Result<Walk> {
    let dir_flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
    let mut have = parts.len();
    let mut fd = loop {
        match open(
            root,
            &join(&parts[..have]),
            dir_flags,
            Mode::empty(),
            resolve,
        ) {
            Ok(fd) => break fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && have > 0 => have -= 1,
            Err(e) => return Err(e),
        }
    };
    let created = have < parts.len();
    for (k, part) in parts.iter().enumerate().skip(have) {
        if *part == ".." {
            return Err(invalid("\"..\" after a missing component".into()));
        }
        match nix::sys::stat::mkdirat(fd.as_fd(), *part, Mode::from_bits_truncate(mode)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e.into()),
        }
        match open(
            fd.as_fd(),
            Path::new(part),
            dir_flags,
            Mode::empty(),
            NO_SYMLINKS,
        ) {
            Ok(next) => fd = next,
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                let target = nix::fcntl::readlinkat(fd.as_fd(), *part)?;
                return Ok(Walk::Dangling {
                    at: k,
                    target: PathBuf::from(target),
                    parent: fd,
                });
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Walk::Done(fd, created))
}

/// The path that replaces `parts` when component `at` is a symlink to `target` whose parent
/// directory is `parent`: the target (absolute, or relative to where the parent really is)
/// followed by the rest of the components. `..` is left for openat2 to resolve in the root.
fn retarget(
    root_path: &Path,
    parts: &[&OsStr],
    at: usize,
    target: &Path,
    parent: BorrowedFd,
) -> io::Result<PathBuf> {
    let mut p = if target.is_absolute() {
        target.to_path_buf()
    } else {
        let base = inside(root_path, parent)
            .ok_or_else(|| invalid("a component resolved outside the root".into()))?;
        base.join(target)
    };
    for c in &parts[at + 1..] {
        p.push(c);
    }
    Ok(p)
}

/// Resolves directory `path` inside `root`, creating what is missing (mode `mode`), and
/// returns an O_PATH fd of it.
///
/// The longest existing prefix is resolved with `resolve` (normally [`IN_ROOT`]); each missing
/// component is then made with mkdirat relative to its parent's fd and opened without following
/// any symlink, so a component swapped for a symlink in between is never followed blindly. A
/// symlink to something missing is followed the way the kernel would inside the root (its
/// target re-resolved from the root), unless `resolve` forbids symlinks.
pub fn mkdir_all(
    root: BorrowedFd,
    path: &Path,
    mode: u32,
    resolve: ResolveFlag,
) -> io::Result<Resolved> {
    let mut path = path.to_path_buf();
    let mut followed = false;
    for _ in 0..MAX_LINKS {
        let parts = components(&path);
        match walk(root, &parts, mode, resolve)? {
            Walk::Done(fd, created) => {
                return Ok(Resolved {
                    fd,
                    created: created || followed,
                })
            }
            Walk::Dangling { at, target, parent } => {
                if resolve.contains(ResolveFlag::RESOLVE_NO_SYMLINKS) {
                    return Err(invalid(format!(
                        "{:?} is a symlink; refusing to follow it here",
                        parts[at]
                    )));
                }
                path = retarget(&fd_path(root), &parts, at, &target, parent.as_fd())?;
                followed = true;
            }
        }
    }
    Err(io::Error::from_raw_os_error(libc::ELOOP))
}

/// Resolves file `path` inside `root`, creating an empty regular file (and missing parent
/// directories) when nothing is there; returns an O_PATH fd of whatever the path names. A final
/// component that is a symlink to something missing is followed inside the root.
pub fn create_file(
    root: BorrowedFd,
    path: &Path,
    mode: u32,
    resolve: ResolveFlag,
) -> io::Result<Resolved> {
    let mut path = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match open(root, &path, OFlag::O_PATH, Mode::empty(), resolve) {
            Ok(fd) => return Ok(Resolved { fd, created: false }),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
        let parts = components(&path);
        let Some((name, dirs)) = parts.split_last() else {
            return Err(invalid("empty path".into()));
        };
        if *name == ".." {
            return Err(invalid("path ends in \"..\"".into()));
        }
        let parent = mkdir_all(root, &join(dirs), 0o755, resolve)?;
        // O_CREAT without O_EXCL: a file made meanwhile by someone else is fine; a symlink is
        // never followed by this open (O_NOFOLLOW, RESOLVE_NO_SYMLINKS).
        match open(
            parent.fd.as_fd(),
            Path::new(name),
            OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_NOCTTY,
            Mode::from_bits_truncate(mode),
            NO_SYMLINKS,
        ) {
            Ok(fd) => return Ok(Resolved { fd, created: true }),
            Err(e)
                if e.raw_os_error() == Some(libc::ELOOP)
                    && !resolve.contains(ResolveFlag::RESOLVE_NO_SYMLINKS) =>
            {
                let target = PathBuf::from(nix::fcntl::readlinkat(parent.fd.as_fd(), *name)?);
                let mut p = if target.is_absolute() {
                    target
                } else {
                    inside(&fd_path(root), parent.fd.as_fd())
                        .ok_or_else(|| invalid("a component resolved outside the root".into()))?
                        .join(target)
                };
                if p.as_os_str().is_empty() {
                    p.push(".");
                }
                path = p;
            }
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::from_raw_os_error(libc::ELOOP))
}

/// The path the kernel has for `fd` (for messages and for checking where a resolution ended).
pub fn fd_path(fd: BorrowedFd) -> PathBuf {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .unwrap_or_else(|_| PathBuf::from(format!("fd {}", fd.as_raw_fd())))
}

/// `fd`'s path made relative to `root_path` (itself the kernel's path of the root fd), as an
/// absolute container path, or None if the fd is not below the root.
pub fn inside(root_path: &Path, fd: BorrowedFd) -> Option<PathBuf> {
    let p = fd_path(fd);
    if root_path == Path::new("/") {
        return Some(p);
    }
    let rel = p.strip_prefix(root_path).ok()?;
    Some(Path::new("/").join(rel))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn dir() -> (tempfile::TempDir, OwnedFd) {
        let t = tempfile::tempdir().unwrap();
        let fd = nix::fcntl::open(
            t.path(),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        (t, fd)
    }

    #[test]
    fn absolute_symlinks_resolve_inside_the_root() {
        let (t, root) = dir();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join(outside.path().strip_prefix("/").unwrap())).unwrap();
        symlink(outside.path(), t.path().join("evil")).unwrap();
        let r = mkdir_all(root.as_fd(), Path::new("/evil/sub"), 0o755, IN_ROOT).unwrap();
        assert!(r.created);
        let got = fd_path(r.fd.as_fd());
        assert!(got.starts_with(t.path()), "{got:?} escaped {:?}", t.path());
        assert!(!outside.path().join("sub").exists());
    }

    #[test]
    fn dotdot_cannot_climb_out() {
        let (t, root) = dir();
        symlink("../../../../../..", t.path().join("up")).unwrap();
        let r = open_path(root.as_fd(), Path::new("/up/../..")).unwrap();
        assert_eq!(fd_path(r.as_fd()), t.path().canonicalize().unwrap());
    }

    #[test]
    fn dangling_symlinks_are_followed_inside_the_root() {
        let (t, root) = dir();
        symlink("/nowhere/x", t.path().join("dangling")).unwrap();
        symlink("../elsewhere", t.path().join("tmpd")).unwrap();
        let r = mkdir_all(root.as_fd(), Path::new("/dangling/y"), 0o755, IN_ROOT).unwrap();
        assert!(r.created);
        assert_eq!(fd_path(r.fd.as_fd()), t.path().join("nowhere/x/y"));
        let r = mkdir_all(root.as_fd(), Path::new("/tmpd/z"), 0o755, IN_ROOT).unwrap();
        assert_eq!(fd_path(r.fd.as_fd()), t.path().join("elsewhere/z"));
        // A dangling final component of a file, with a relative target climbing out.
        std::fs::create_dir(t.path().join("etc")).unwrap();
        symlink("../../../../run/r.conf", t.path().join("etc/resolv.conf")).unwrap();
        let r = create_file(root.as_fd(), Path::new("/etc/resolv.conf"), 0o644, IN_ROOT).unwrap();
        assert!(r.created);
        assert!(t.path().join("run/r.conf").is_file());
        // Without symlinks allowed, nothing is followed.
        symlink("/nowhere2", t.path().join("dangling2")).unwrap();
        let e = mkdir_all(root.as_fd(), Path::new("/dangling2/y"), 0o755, NO_SYMLINKS)
            .err()
            .expect("refused");
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{e}");
        assert!(!t.path().join("nowhere2").exists());
    }

    #[test]
    fn symlink_loops_end() {
        let (t, root) = dir();
        symlink("/b", t.path().join("a")).unwrap();
        symlink("/a", t.path().join("b")).unwrap();
        assert!(mkdir_all(root.as_fd(), Path::new("/a/x"), 0o755, IN_ROOT).is_err());
        assert!(create_file(root.as_fd(), Path::new("/a"), 0o644, IN_ROOT).is_err());
    }

    #[test]
    fn files_are_created_with_their_parents() {
        let (t, root) = dir();
        let r = create_file(root.as_fd(), Path::new("/etc/x/hosts"), 0o644, IN_ROOT).unwrap();
        assert!(r.created);
        assert!(t.path().join("etc/x/hosts").is_file());
        let again = create_file(root.as_fd(), Path::new("/etc/x/hosts"), 0o644, IN_ROOT).unwrap();
        assert!(!again.created);
    }

    #[test]
    fn magic_links_are_refused() {
        let root = nix::fcntl::open(
            "/",
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        let e = open_path(root.as_fd(), Path::new("/proc/self/root")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
    }

    #[test]
    fn inside_maps_fd_paths_to_container_paths() {
        let (t, root) = dir();
        std::fs::create_dir(t.path().join("a")).unwrap();
        let fd = open_path(root.as_fd(), Path::new("a")).unwrap();
        let rp = fd_path(root.as_fd());
        assert_eq!(inside(&rp, fd.as_fd()), Some(PathBuf::from("/a")));
        assert_eq!(inside(&rp, root.as_fd()), Some(PathBuf::from("/")));
    }
}
