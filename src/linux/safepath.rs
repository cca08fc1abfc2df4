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

/// Resolves directory `path` inside `root`, creating what is missing (mode `mode`), and
/// returns an O_PATH fd of it.
///
/// The longest existing prefix is resolved with `resolve` (normally [`IN_ROOT`]); each missing
/// component is then made with mkdirat relative to its parent's fd and opened without following
/// any symlink, so a component swapped for a symlink in between is refused rather than
/// followed. A dangling symlink on the way is an error (it is never created through).
pub fn mkdir_all(
    root: BorrowedFd,
    path: &Path,
    mode: u32,
    resolve: ResolveFlag,
) -> io::Result<Resolved> {
    let parts = components(path);
    let dir_flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
    // Find the longest prefix that exists (usually the whole path, or its parent).
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
    for part in &parts[have..] {
        if *part == ".." {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "\"..\" after a missing component",
            ));
        }
        match nix::sys::stat::mkdirat(fd.as_fd(), *part, Mode::from_bits_truncate(mode)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e.into()),
        }
        fd = open(
            fd.as_fd(),
            Path::new(part),
            dir_flags,
            Mode::empty(),
            NO_SYMLINKS,
        )
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{:?} is a symlink to a missing target; refusing to create through it",
                    part
                ),
            ),
            _ => e,
        })?;
    }
    Ok(Resolved { fd, created })
}

/// Resolves file `path` inside `root`, creating an empty regular file (and missing parent
/// directories) when nothing is there; returns an O_PATH fd of whatever the path names.
pub fn create_file(
    root: BorrowedFd,
    path: &Path,
    mode: u32,
    resolve: ResolveFlag,
) -> io::Result<Resolved> {
    match open(root, path, OFlag::O_PATH, Mode::empty(), resolve) {
        Ok(fd) => return Ok(Resolved { fd, created: false }),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => return Err(e),
    }
    let parts = components(path);
    let Some((name, dirs)) = parts.split_last() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty path"));
    };
    if *name == ".." {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "path ends in \"..\"",
        ));
    }
    let parent = mkdir_all(root, &join(dirs), 0o755, resolve)?;
    // O_CREAT without O_EXCL: a file made meanwhile by someone else is fine, a symlink is not
    // (O_NOFOLLOW plus RESOLVE_NO_SYMLINKS).
    let fd = open(
        parent.fd.as_fd(),
        Path::new(name),
        OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_NOCTTY,
        Mode::from_bits_truncate(mode),
        NO_SYMLINKS,
    )?;
    Ok(Resolved { fd, created: true })
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
    fn dangling_symlinks_are_not_created_through() {
        let (t, root) = dir();
        symlink("/nowhere/x", t.path().join("dangling")).unwrap();
        let e = mkdir_all(root.as_fd(), Path::new("/dangling/y"), 0o755, IN_ROOT)
            .err()
            .expect("refused");
        assert!(e.to_string().contains("symlink"), "{e}");
        assert!(!t.path().join("nowhere").exists());
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
