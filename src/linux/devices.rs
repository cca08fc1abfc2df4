//! Device nodes in the container's /dev: the default set every container gets (null, zero,
//! full, random, urandom, tty), `linux.devices`, /dev/ptmx as a link to the devpts instance,
//! and the /dev/fd, /dev/std{in,out,err} (and /dev/core) links, as runc makes them.
//!
//! Paths are resolved inside the rootfs (a /dev that is a symlink cannot send nodes to the
//! host) and nodes are made with mknodat relative to the parent's fd. Inside a user namespace
//! mknod is not allowed, so the host's device is bind-mounted onto an empty file instead, after
//! checking it is the device the config describes.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::stat::{fstat, mknodat, umask, Mode, SFlag};
use nix::unistd::{fchownat, getegid, geteuid, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Spec};

use super::mounts::api;
use super::rootfs::{errno_str, RootfsError};
use super::safepath::{self, IN_ROOT, NO_SYMLINKS};

/// One node to create.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub path: PathBuf,
    pub kind: SFlag,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// The JSON path to blame (`linux.devices[i]`), or None for a default device.
    pub field: Option<String>,
}

/// The devices every container gets unless `linux.devices` redefines their path.
const DEFAULTS: &[(&str, u64, u64)] = &[
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// The nodes to create: `linux.devices` (in order) plus the defaults they do not override.
/// /dev/ptmx is always the link made by [`setup`], never a node.
pub fn plan(spec: &Spec) -> Result<Vec<Node>, RootfsError> {
    let mut out = Vec::new();
    let devs = spec.linux().as_ref().and_then(|l| l.devices().as_ref());
    for (i, d) in devs.into_iter().flatten().enumerate() {
        if safepath::clean(d.path()) == Path::new("/dev/ptmx") {
            continue;
        }
        out.push(node(i, d)?);
    }
    for (p, major, minor) in DEFAULTS {
        if out.iter().any(|n| n.path == Path::new(p)) {
            continue;
        }
        out.push(Node {
            path: PathBuf::from(p),
            kind: SFlag::S_IFCHR,
            major: *major,
            minor: *minor,
            mode: 0o666,
            uid: 0,
            gid: 0,
            field: None,
        });
    }
    Ok(out)
}

fn node(i: usize, d: &LinuxDevice) -> Result<Node, RootfsError> {
    let field = format!("linux.devices[{i}]");
    let kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        LinuxDeviceType::A => {
            return Err(RootfsError::field(
                format!("{field}.type"),
                "\"a\" is only valid in cgroup device rules, not for a device node",
            ))
        }
    };
    let num = |v: i64, what: &str| {
        u64::try_from(v)
            .map_err(|_| RootfsError::field(format!("{field}.{what}"), format!("{v} is negative")))
    };
    let (major, minor) = if kind == SFlag::S_IFIFO {
        (0, 0)
    } else {
        (num(d.major(), "major")?, num(d.minor(), "minor")?)
    };
    // fileMode is the permission bits; a file type in it is accepted if it is this device's.
    let mode = d.file_mode().unwrap_or(0o666);
    let ty = mode & libc::S_IFMT;
    if mode & !(0o7777 | libc::S_IFMT) != 0 || (ty != 0 && ty != kind.bits()) {
        return Err(RootfsError::field(
            format!("{field}.fileMode"),
            format!(
                "{mode:#o} is not a permission mode for a {:?} device",
                d.typ()
            ),
        ));
    }
    let mode = mode & 0o7777;
    Ok(Node {
        path: safepath::clean(d.path()),
        kind,
        major,
        minor,
        mode,
        uid: d.uid().unwrap_or(0),
        gid: d.gid().unwrap_or(0),
        field: Some(field),
    })
}

/// True when the process is in a user namespace other than the initial one (mknod is then
/// refused and devices are bind-mounted from the host instead).
pub fn in_user_namespace() -> bool {
    crate::linux::procfs::read_pseudo("/proc/self/uid_map")
        .map(|m| {
            let f: Vec<&str> = m.split_whitespace().collect();
            f != ["0", "0", "4294967295"]
        })
        .unwrap_or(false)
}

/// Creates the nodes, /dev/ptmx and the /dev links inside `root` (the rootfs fd).
pub fn setup(root: BorrowedFd, nodes: &[Node], bind: bool) -> Result<(), RootfsError> {
    // Modes are exactly the configured ones; umask is restored before returning.
    let old = umask(Mode::empty());
    let mut dirs = Dirs::default();
    let r = nodes
        .iter()
        .try_for_each(|n| make(root, &mut dirs, n, bind));
    umask(old);
    r?;
    let (dev, _) = dirs
        .get(root, Path::new("/dev"))
        .map_err(|e| RootfsError::field("linux.devices", format!("/dev: {}", errno_str(&e))))?;
    links(dev)
}

/// Parent directories already resolved (most nodes share /dev), and whether each is setgid
/// (new nodes then take the directory's group).
#[derive(Default)]
struct Dirs(Vec<(PathBuf, OwnedFd, bool)>);

impl Dirs {
    fn get(&mut self, root: BorrowedFd, dir: &Path) -> std::io::Result<(BorrowedFd<'_>, bool)> {
        let k = match self.0.iter().position(|(p, _, _)| p == dir) {
            Some(k) => k,
            None => {
                let r = safepath::mkdir_all(root, dir, 0o755, IN_ROOT)?;
                let setgid = fstat(r.fd.as_fd())?.st_mode & libc::S_ISGID != 0;
                self.0.push((dir.to_path_buf(), r.fd, setgid));
                self.0.len() - 1
            }
        };
        Ok((self.0[k].1.as_fd(), self.0[k].2))
    }
}

fn blame(n: &Node, msg: String) -> RootfsError {
    match &n.field {
        Some(f) => RootfsError::field(format!("{f}.path"), msg),
        None => RootfsError::field("linux.devices", format!("default device {msg}")),
    }
}

fn make(root: BorrowedFd, dirs: &mut Dirs, n: &Node, bind: bool) -> Result<(), RootfsError> {
    let err = |what: &str, e: std::io::Error| {
        blame(
            n,
            format!("{}: {what}: {}", n.path.display(), errno_str(&e)),
        )
    };
    let parent = n.path.parent().unwrap_or(Path::new("/"));
    let name = n
        .path
        .file_name()
        .ok_or_else(|| blame(n, format!("{}: not a file name", n.path.display())))?;
    let (dir, setgid) = dirs
        .get(root, parent)
        .map_err(|e| err("create parent directory", e))?;
    if !bind {
        let dev = nix::sys::stat::makedev(n.major, n.minor);
        match mknodat(dir, name, n.kind, Mode::from_bits_truncate(n.mode), dev) {
            Ok(()) => {
                // A new node already belongs to our fsuid/fsgid (unless the directory is setgid).
                if !setgid && (n.uid, n.gid) == (geteuid().as_raw(), getegid().as_raw()) {
                    return Ok(());
                }
                return fchownat(
                    dir,
                    name,
                    Some(Uid::from_raw(n.uid)),
                    Some(Gid::from_raw(n.gid)),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(|e| err("chown", e.into()));
            }
            // Already there (a /dev that is not a fresh tmpfs): kept, as runc keeps it.
            Err(Errno::EEXIST) => return Ok(()),
            Err(Errno::EPERM) => {}
            Err(e) => return Err(err("mknod", e.into())),
        }
    }
    bind_host(dir, name.as_ref(), n).map_err(|e| err("bind host device", e))
}

/// Binds the host's node at the same path onto an empty file, after checking that it is the
/// device the config describes (type, major, minor).
fn bind_host(dir: BorrowedFd, name: &Path, n: &Node) -> std::io::Result<()> {
    let tree = api::open_tree(None, &n.path, false)?;
    let st = fstat(tree.as_fd())?;
    let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    let want = nix::sys::stat::makedev(n.major, n.minor);
    if kind != n.kind || (n.kind != SFlag::S_IFIFO && st.st_rdev != want) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "the host's {} is not the configured device {}:{}",
                n.path.display(),
                n.major,
                n.minor
            ),
        ));
    }
    let target = safepath::create_file(dir, name, 0o000, NO_SYMLINKS)?;
    api::move_mount(tree.as_fd(), target.fd.as_fd())
}

/// /dev/ptmx → pts/ptmx and the /proc/self/fd links.
fn links(dev: BorrowedFd) -> Result<(), RootfsError> {
    let fail = |what: String, e: Errno| {
        RootfsError::field("linux.devices", format!("{what}: {}", e.desc()))
    };
    // /dev/ptmx is always the link, replacing whatever the image has there.
    match symlinkat("pts/ptmx", dev, "ptmx") {
        Ok(()) => {}
        Err(Errno::EEXIST) => {
            unlinkat(dev, "ptmx", UnlinkatFlags::NoRemoveDir)
                .map_err(|e| fail("remove /dev/ptmx".into(), e))?;
            symlinkat("pts/ptmx", dev, "ptmx").map_err(|e| fail("symlink /dev/ptmx".into(), e))?;
        }
        Err(e) => return Err(fail("symlink /dev/ptmx".into(), e)),
    }
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ];
    // /proc/kcore exists only with CONFIG_PROC_KCORE; link /dev/core only if it does.
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    for (target, name) in links {
        match symlinkat(target, dev, name) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(fail(format!("symlink /dev/{name}"), e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(devices: &str) -> Spec {
        serde_json::from_str(&format!(
            r#"{{"ociVersion":"1.0.2","linux":{{"devices":{devices}}}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn defaults_fill_in_around_configured_devices() {
        let p = plan(&spec(
            r#"[{"path":"/dev/null","type":"c","major":1,"minor":3,"fileMode":384},
                {"path":"/dev/ptmx","type":"c","major":5,"minor":2},
                {"path":"/dev/net/tun","type":"c","major":10,"minor":200,"uid":5,"gid":6}]"#,
        ))
        .unwrap();
        let paths: Vec<_> = p.iter().map(|n| n.path.to_str().unwrap()).collect();
        assert_eq!(
            paths,
            [
                "/dev/null",
                "/dev/net/tun",
                "/dev/zero",
                "/dev/full",
                "/dev/random",
                "/dev/urandom",
                "/dev/tty"
            ]
        );
        assert_eq!(p[0].mode, 0o600);
        assert_eq!(
            (p[1].uid, p[1].gid, p[1].major, p[1].minor),
            (5, 6, 10, 200)
        );
        assert_eq!(p[1].field.as_deref(), Some("linux.devices[2]"));
    }

    #[test]
    fn bad_devices_name_their_field() {
        let e = plan(&spec(r#"[{"path":"/dev/x","type":"a"}]"#)).unwrap_err();
        assert!(e.to_string().starts_with("linux.devices[0].type:"), "{e}");
        let e = plan(&spec(
            r#"[{"path":"/dev/x","type":"c","major":1,"minor":1,"fileMode":65535}]"#,
        ))
        .unwrap_err();
        assert!(
            e.to_string().starts_with("linux.devices[0].fileMode:"),
            "{e}"
        );
    }
}
