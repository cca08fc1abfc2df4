//! One container's directory, its lock, and its stored state.

use std::collections::BTreeMap;
use std::fmt;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{openat, renameat, renameat2, AtFlags, OFlag, RenameFlags};
use nix::sys::stat::{fstat, fstatat, mkdirat, Mode};
use nix::unistd::{unlinkat, UnlinkatFlags};

use serde::{Deserialize, Serialize};

use super::{validate_id, StateError};

pub const STATE_FILE: &str = "state.json";
pub const CONFIG_FILE: &str = "config.json";
/// The container's compiled seccomp filter, for `exec` (`berth_seccomp::Compiled::to_stored`).
pub const SECCOMP_FILE: &str = "seccomp.bpf";
/// The unix socket the container's init listens on until `start`; exists only while `created`.
pub const START_SOCKET: &str = "start.sock";

/// The container's status as the OCI runtime spec (plus runc's `paused`) names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// What Berth keeps about a container between commands (`<root>/<id>/state.json`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StoredState {
    pub id: String,
    /// Host pid of the container's init.
    pub pid: i32,
    /// The init's start time (clock ticks since boot, /proc/PID/stat field 22), so that a reused
    /// pid is never mistaken for the container.
    pub start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The container's cgroup, as the cgroup driver records it.
    #[serde(default)]
    pub cgroup: Option<crate::cgroups::CgroupRecord>,
    /// What `start` and `delete` need from the stored config: when all are false they do not
    /// parse it at all (it may hold a 25 KB seccomp profile).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub poststart_hooks: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub poststop_hooks: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub seccomp_notify: bool,
    /// The init's name (/proc/PID/comm) and the (st_dev, st_ino) of its executable while it
    /// waits for `start` (Berth's): a released init renames itself (`sync::RELEASED_NAME`), and
    /// once it has exec'd the user's program both differ, whatever became of start.sock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_comm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_exe: Option<(u64, u64)>,
}

/// (st_dev, st_ino) of the executable process `pid` runs (None when it cannot be seen).
pub fn exe_identity(pid: i32) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(format!("/proc/{pid}/exe")).ok()?;
    Some((m.dev(), m.ino()))
}

/// A container directory, locked for as long as this value lives. Everything it reads, writes
/// and removes is reached through the locked directory's fd (and the root's), never by path
/// again: a container deleted and created anew under the same id while this command waited for
/// the lock is a different directory, which this one never touches.
pub struct Container {
    pub id: String,
    /// For messages only.
    pub dir: PathBuf,
    root: OwnedFd,
    lock: OwnedFd,
    pub state: Option<StoredState>,
    /// `run` only: the creating process's end of the socketpair its init waits on for `start`
    /// (no start.sock then; see `process::StartWait`).
    pub start_conn: Option<OwnedFd>,
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StateError {
    let path = path.to_path_buf();
    move |source| StateError::Io { what, path, source }
}

fn open_dir(path: &Path) -> std::io::Result<OwnedFd> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(path)?;
    Ok(f.into())
}

/// Opens `name` in `dir` as a directory (no symlink followed).
fn open_dir_at(dir: &OwnedFd, name: &str) -> std::io::Result<OwnedFd> {
    Ok(openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?)
}

/// Opens the file `name` in `dir` (no symlink followed).
fn open_file_at(dir: &OwnedFd, name: &str, flags: OFlag, mode: u32) -> std::io::Result<File> {
    let fd = openat(
        dir,
        name,
        flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(mode),
    )?;
    Ok(File::from(fd))
}

fn flock(fd: &OwnedFd, arg: libc::c_int) -> std::io::Result<()> {
    loop {
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(fd.as_raw_fd(), arg) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Blocks until the lock on `fd` is ours.
fn lock(fd: &OwnedFd, path: &Path) -> Result<(), StateError> {
    flock(fd, libc::LOCK_EX).map_err(io("cannot lock container directory", path))
}

/// Whether some process holds the lock on the directory `fd` now (tried without waiting, and
/// released at once when it was free).
pub(super) fn is_locked(fd: &OwnedFd) -> bool {
    match flock(fd, libc::LOCK_EX | libc::LOCK_NB) {
        Ok(()) => {
            let _ = flock(fd, libc::LOCK_UN);
            false
        }
        Err(e) => e.raw_os_error() == Some(libc::EWOULDBLOCK),
    }
}

/// Whether `fd` is (still) the directory `name` of `root`.
fn is_entry(root: &OwnedFd, name: &str, fd: &OwnedFd) -> bool {
    match (fstat(fd), fstatat(root, name, AtFlags::AT_SYMLINK_NOFOLLOW)) {
        (Ok(a), Ok(b)) => a.st_dev == b.st_dev && a.st_ino == b.st_ino,
        _ => false,
    }
}

/// A directory name no container id can have (':' is not allowed in ids): where `create`
/// builds a container directory before it appears under its id.
const NEW_PREFIX: &str = ":new-";

/// Removes what `create`s killed in the instant between making and publishing their
/// directory left behind (an unlocked `:new-*` directory).
fn remove_stale_new_dirs(root: &OwnedFd) {
    let Ok(mut d) = nix::dir::Dir::openat(
        root,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) else {
        return;
    };
    let stale: Vec<String> = d
        .iter()
        .flatten()
        .filter_map(|e| e.file_name().to_str().ok().map(str::to_string))
        .filter(|n| n.starts_with(NEW_PREFIX))
        .collect();
    for name in stale {
        // The creator's pid is in the name: while it lives, the directory may be one it has
        // made and not locked yet.
        let creator = name[NEW_PREFIX.len()..].split('-').next().unwrap_or("");
        if Path::new("/proc").join(creator).exists() {
            continue;
        }
        if let Ok(fd) = open_dir_at(root, &name) {
            if !is_locked(&fd) {
                let _ = remove_contents(&fd);
                let _ = unlinkat(root, name.as_str(), UnlinkatFlags::RemoveDir);
            }
        }
    }
}

/// Removes the `:new-*` directories of `create`s killed before their directory got its id
/// (`delete` calls it: a killed create's id may never have appeared, yet its traces must go).
pub fn remove_interrupted_new_dirs(root: &Path) {
    if let Ok(fd) = open_dir(root) {
        remove_stale_new_dirs(&fd);
    }
}

/// Removes everything inside the directory `dir` (through its fd).
/// Removes what `dir` holds, never through a mount: a directory that is a mount point (a
/// restore's `criu-root`, the container's rootfs bound there, left by a restore that was
/// killed) is unmounted first, and the removal stops with an error if it cannot be. Descending
/// into it would delete the bundle's root filesystem.
fn remove_contents(dir: &OwnedFd) -> std::io::Result<()> {
    use std::os::fd::AsFd;
    // The directory's own mount, read once and only if it holds a subdirectory (most don't).
    let mut here = None;
    let mut d = nix::dir::Dir::openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let names: Vec<std::ffi::CString> = d
        .iter()
        .flatten()
        .map(|e| e.file_name().to_owned())
        .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
        .collect();
    for name in names {
        match unlinkat(dir, name.as_c_str(), UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
            Err(nix::errno::Errno::EISDIR) => {
                let open_sub = || {
                    openat(
                        dir,
                        name.as_c_str(),
                        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                };
                let mut sub = open_sub()?;
                let here = match here {
                    Some(m) => m,
                    None => *here.insert(crate::linux::procfs::mount_id(dir.as_fd())?),
                };
                if crate::linux::procfs::mount_id(sub.as_fd())? != here {
                    // Through the parent's fd: the name as it is under this directory.
                    let at = format!(
                        "/proc/self/fd/{}/{}",
                        dir.as_raw_fd(),
                        name.to_string_lossy()
                    );
                    drop(sub);
                    nix::mount::umount2(at.as_str(), nix::mount::MntFlags::MNT_DETACH)?;
                    sub = open_sub()?;
                    if crate::linux::procfs::mount_id(sub.as_fd())? != here {
                        return Err(std::io::Error::other(format!(
                            "{} is still a mount point",
                            name.to_string_lossy()
                        )));
                    }
                }
                remove_contents(&sub)?;
                unlinkat(dir, name.as_c_str(), UnlinkatFlags::RemoveDir)?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

impl Container {
    fn locked(
        id: &str,
        dir: PathBuf,
        root: OwnedFd,
        lock: OwnedFd,
        state: Option<StoredState>,
    ) -> Container {
        Container {
            id: id.to_string(),
            dir,
            root,
            lock,
            state,
            start_conn: None,
        }
    }

    /// Makes `<root>/<id>` (failing if it exists) and locks it. The directory is made and
    /// locked under a temporary name and then renamed to the id (never replacing anything), so
    /// no other command ever sees it unlocked before the create is done with it.
    pub fn create(root: &Path, id: &str) -> Result<Container, StateError> {
        validate_id(id)?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(io("cannot create state root", root))?;
        let root_fd = open_dir(root).map_err(io("cannot open state root", root))?;
        let dir = root.join(id);
        remove_stale_new_dirs(&root_fd);
        let tmp = format!(
            "{NEW_PREFIX}{}-{}",
            std::process::id(),
            crate::timefmt::now_rfc3339()
        );
        let made = io("cannot create container directory", &dir);
        mkdirat(&root_fd, tmp.as_str(), Mode::from_bits_truncate(0o711))
            .map_err(|e| made(e.into()))?;
        let published = open_dir_at(&root_fd, &tmp).and_then(|fd| {
            flock(&fd, libc::LOCK_EX)?;
            renameat2(
                &root_fd,
                tmp.as_str(),
                &root_fd,
                id,
                RenameFlags::RENAME_NOREPLACE,
            )?;
            Ok(fd)
        });
        let fd = match published {
            Ok(fd) => fd,
            Err(e) => {
                let _ = unlinkat(&root_fd, tmp.as_str(), UnlinkatFlags::RemoveDir);
                return Err(match e.raw_os_error() {
                    Some(libc::EEXIST) => StateError::Exists(id.to_string()),
                    // A filesystem without RENAME_NOREPLACE: made in place, then locked.
                    Some(libc::EINVAL) => return Self::create_in_place(root_fd, root, id),
                    _ => io("cannot create container directory", &dir)(e),
                });
            }
        };
        Ok(Container::locked(id, dir, root_fd, fd, None))
    }

    /// `create` where rename cannot refuse to replace: mkdir under the id, then lock.
    fn create_in_place(root_fd: OwnedFd, root: &Path, id: &str) -> Result<Container, StateError> {
        let dir = root.join(id);
        match mkdirat(&root_fd, id, Mode::from_bits_truncate(0o711)) {
            Ok(()) => {}
            Err(nix::errno::Errno::EEXIST) => return Err(StateError::Exists(id.to_string())),
            Err(e) => return Err(io("cannot create container directory", &dir)(e.into())),
        }
        let fd = open_dir_at(&root_fd, id).map_err(io("cannot open container directory", &dir))?;
        lock(&fd, &dir)?;
        Ok(Container::locked(id, dir, root_fd, fd, None))
    }

    /// Opens and locks an existing container and reads its state. When the directory the lock
    /// was taken on is no longer the container's (it was deleted, and maybe created anew, while
    /// this waited), the container this command was about does not exist.
    pub fn load(root: &Path, id: &str) -> Result<Container, StateError> {
        validate_id(id)?;
        let dir = root.join(id);
        let not_found = || StateError::NotFound(id.to_string());
        let root_fd = match open_dir(root) {
            Ok(fd) => fd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_found()),
            Err(e) => return Err(io("cannot open state root", root)(e)),
        };
        let fd = match open_dir_at(&root_fd, id) {
            Ok(fd) => fd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_found()),
            Err(e) => return Err(io("cannot open container directory", &dir)(e)),
        };
        lock(&fd, &dir)?;
        if !is_entry(&root_fd, id, &fd) {
            return Err(not_found());
        }
        let state = read_state(&fd, &dir, id)?;
        Ok(Container::locked(id, dir, root_fd, fd, state))
    }

    /// The raw fd of the lock (the container directory's).
    pub fn lock_fd(&self) -> RawFd {
        self.lock.as_raw_fd()
    }

    /// The host directories this value holds open (the container's, whose lock it is, and the
    /// state root's): a forked child must close them, to hold neither the lock nor a way out.
    pub fn dir_fds(&self) -> [RawFd; 2] {
        [self.lock.as_raw_fd(), self.root.as_raw_fd()]
    }

    /// Writes `state.json` atomically (temporary file, then rename).
    pub fn save(&mut self, st: StoredState) -> Result<(), StateError> {
        const TMP: &str = ".state.json.tmp";
        let tmp = self.dir.join(TMP);
        let body = serde_json::to_vec(&st).expect("state serialises");
        let mut f = open_file_at(
            &self.lock,
            TMP,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC,
            0o600,
        )
        .map_err(io("cannot write state", &tmp))?;
        f.write_all(&body).map_err(io("cannot write state", &tmp))?;
        drop(f);
        renameat(&self.lock, TMP, &self.lock, STATE_FILE)
            .map_err(|e| io("cannot write state", &self.dir.join(STATE_FILE))(e.into()))?;
        self.state = Some(st);
        Ok(())
    }

    /// Writes a file in the container directory (e.g. the copy of config.json).
    pub fn write_file(&self, name: &str, data: &[u8]) -> Result<(), StateError> {
        let path = self.dir.join(name);
        open_file_at(
            &self.lock,
            name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC,
            0o644,
        )
        .and_then(|mut f| f.write_all(data))
        .map_err(io("cannot write", &path))
    }

    pub fn read_file(&self, name: &str) -> Result<Vec<u8>, StateError> {
        read_at(&self.lock, name).map_err(io("cannot read", &self.dir.join(name)))
    }

    /// The container's status, derived from its live init process.
    pub fn status(&self) -> Status {
        match &self.state {
            None => Status::Stopped,
            Some(st) => status_of(st, || {
                fstatat(&self.lock, START_SOCKET, AtFlags::AT_SYMLINK_NOFOLLOW).is_ok()
            }),
        }
    }

    /// The pid of a live init, or None when the container has stopped.
    pub fn live_pid(&self) -> Option<i32> {
        let st = self.state.as_ref()?;
        match proc_stat(st.pid) {
            Some((start, state)) if start == st.start_time && state != 'Z' && state != 'X' => {
                Some(st.pid)
            }
            _ => None,
        }
    }

    /// Removes `start.sock` (the init no longer waits on it).
    pub fn remove_start_socket(&self) {
        let _ = unlinkat(&self.lock, START_SOCKET, UnlinkatFlags::NoRemoveDir);
    }

    /// Removes the container directory and everything in it.
    pub fn remove(self) -> Result<(), StateError> {
        let failed = io("cannot remove container directory", &self.dir);
        remove_contents(&self.lock).map_err(failed)?;
        unlinkat(&self.root, self.id.as_str(), UnlinkatFlags::RemoveDir)
            .map_err(|e| io("cannot remove container directory", &self.dir)(e.into()))
    }

    /// Only a created container can be started; the refusals are runc's phrases.
    pub fn require_startable(&self) -> Result<(), StateError> {
        let why = match self.status() {
            Status::Created => return Ok(()),
            Status::Stopped => "cannot start a container that has stopped".to_string(),
            Status::Running => "cannot start an already running container".to_string(),
            s => format!("cannot start a container in the {s} state"),
        };
        Err(StateError::CannotStart {
            id: self.id.clone(),
            why,
        })
    }

    pub fn require(&self, ok: &[Status], op: &'static str) -> Result<Status, StateError> {
        let s = self.status();
        if ok.contains(&s) {
            Ok(s)
        } else {
            let hint = match (op, s) {
                ("delete", Status::Running | Status::Created | Status::Paused) => {
                    " (stop it first, or use delete --force)"
                }
                _ => "",
            };
            Err(StateError::WrongState {
                id: self.id.clone(),
                status: s,
                op,
                hint,
            })
        }
    }
}

/// Reads the whole file `name` of the directory `dir`.
fn read_at(dir: &OwnedFd, name: &str) -> std::io::Result<Vec<u8>> {
    let mut b = Vec::new();
    open_file_at(dir, name, OFlag::O_RDONLY, 0)?.read_to_end(&mut b)?;
    Ok(b)
}

fn read_state(dir: &OwnedFd, path: &Path, id: &str) -> Result<Option<StoredState>, StateError> {
    let path = path.join(STATE_FILE);
    match read_at(dir, STATE_FILE) {
        // Parsed as config.json is, so that the error names the field by its JSON path.
        Ok(b) => crate::config::parse_object(&b, "")
            .map(Some)
            .map_err(|e| StateError::Corrupt {
                id: id.to_string(),
                path,
                msg: match e {
                    crate::config::ConfigError::Parse { field, msg } => format!("{field}{msg}"),
                    e => e.to_string(),
                },
            }),
        // A directory without state: a create that was killed half-way. It counts as stopped,
        // so that `delete` can clean it up.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("cannot read state", &path)(e)),
    }
}

/// Status of a container from its state, without taking the lock (used by `list`).
pub fn derive_status(dir: &Path, st: &StoredState) -> Status {
    status_of(st, || dir.join(START_SOCKET).exists())
}

/// The status of a container whose init is recorded in `st`; `start_socket` tells whether
/// start.sock exists (asked only while the init lives). As runc, "created" is what the live
/// init does, not a stored flag: it waits for `start` while start.sock exists and it still
/// runs Berth (a `start` killed after releasing it leaves start.sock behind; one stat of
/// /proc/PID/exe then shows the user's program instead).
fn status_of(st: &StoredState, start_socket: impl FnOnce() -> bool) -> Status {
    match read_stat(st.pid) {
        Some(s) if s.start == st.start_time && s.state != 'Z' && s.state != 'X' => {
            let same_exe = || match (st.init_exe, exe_identity(st.pid)) {
                (Some(then), Some(now)) => then == now,
                _ => true,
            };
            let waits = match &st.init_comm {
                // Its name first (read already), the executable only if the name matches (a
                // user's program may have Berth's name).
                Some(comm) => *comm == s.comm && same_exe(),
                // A state from before the name was recorded: start.sock decides.
                None => start_socket() && same_exe(),
            };
            if waits {
                Status::Created
            } else if st.cgroup.as_ref().is_some_and(crate::cgroups::is_frozen) {
                Status::Paused
            } else {
                Status::Running
            }
        }
        _ => Status::Stopped,
    }
}

/// Reads (start time, state letter) from /proc/PID/stat.
pub fn proc_stat(pid: i32) -> Option<(u64, char)> {
    read_stat(pid).map(|s| (s.start, s.state))
}

/// What Berth reads of /proc/PID/stat.
pub struct ProcStat {
    /// Start time (clock ticks since boot).
    pub start: u64,
    pub state: char,
    /// The command name (comm).
    pub comm: String,
}

pub fn read_stat(pid: i32) -> Option<ProcStat> {
    if pid <= 0 {
        return None;
    }
    let s = crate::linux::procfs::read_pseudo(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses; fields resume after the last ')'.
    let close = s.rfind(')')?;
    let comm = s.get(s.find('(')? + 1..close)?.to_string();
    let rest = s.get(close + 2..)?;
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    // rest starts at field 3 (state); start time is field 22.
    let start = fields.nth(18)?.parse().ok()?;
    Some(ProcStat { start, state, comm })
}

/// How `list` sees a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listed {
    /// From its state and its init.
    Known(Status),
    /// A directory without state whose lock a `create` holds: it is being created.
    Creating,
    /// A directory without state, unlocked: its `create` was killed (an init it made may live
    /// on; `delete --force` finds it).
    Interrupted,
}

impl fmt::Display for Listed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listed::Known(s) => s.fmt(f),
            Listed::Creating => f.write_str("creating"),
            Listed::Interrupted => f.write_str("interrupted"),
        }
    }
}

/// Every container under `root`, with its state (unlocked reads), oldest first. A directory
/// without state.json is listed as being created or as interrupted (with only its id, owner
/// and the directory's time); one whose state cannot be read is left out with a warning, as
/// runc does. A root that does not exist holds none; one this caller may not read is an error
/// (another user's, say), as with runc.
pub fn list(root: &Path) -> Result<Vec<(StoredState, Listed, u32)>, StateError> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(io("cannot open state root", root)(e))
        }
        Err(_) => return Ok(out),
    };
    for entry in rd.flatten() {
        let dir = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        let name = entry.file_name().to_string_lossy().into_owned();
        if !meta.is_dir() || validate_id(&name).is_err() {
            continue;
        }
        let warn = |what: &dyn fmt::Display| {
            crate::logging::warn(format!("list: load container {name:?}: {what}"));
        };
        match std::fs::read(dir.join(STATE_FILE)) {
            Ok(b) => match serde_json::from_slice::<StoredState>(&b) {
                Ok(st) => {
                    let status = derive_status(&dir, &st);
                    out.push((st, Listed::Known(status), meta.uid()));
                }
                Err(e) => warn(&e),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let creating = open_dir(&dir).is_ok_and(|fd| is_locked(&fd));
                let listed = if creating {
                    Listed::Creating
                } else {
                    warn(&format_args!(
                        "its create was interrupted (no {STATE_FILE}); remove it with \
                         `berth delete --force {name}`"
                    ));
                    Listed::Interrupted
                };
                let st = StoredState {
                    id: name.clone(),
                    created: crate::timefmt::format_unix(meta.mtime(), meta.mtime_nsec() as u32),
                    ..Default::default()
                };
                out.push((st, listed, meta.uid()));
            }
            Err(e) => warn(&e),
        }
    }
    out.sort_by(|a, b| a.0.created.cmp(&b.0.created));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_reads_own_process() {
        let (start, state) = proc_stat(std::process::id() as i32).unwrap();
        assert!(start > 0);
        assert!(state == 'R' || state == 'S');
        assert!(proc_stat(-1).is_none());
    }

    #[test]
    fn create_load_save_remove_roundtrip() {
        let root = tempfile::tempdir().unwrap();
        let mut c = Container::create(root.path(), "c1").unwrap();
        assert!(matches!(
            Container::create(root.path(), "c1"),
            Err(StateError::Exists(_))
        ));
        let me = std::process::id() as i32;
        let st = StoredState {
            id: "c1".into(),
            pid: me,
            start_time: proc_stat(me).unwrap().0,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: "now".into(),
            annotations: BTreeMap::new(),
            cgroup: None,
            ..Default::default()
        };
        c.save(st).unwrap();
        assert_eq!(c.status(), Status::Running);
        drop(c);
        let c = Container::load(root.path(), "c1").unwrap();
        assert_eq!(c.state.as_ref().unwrap().bundle, PathBuf::from("/b"));
        c.remove().unwrap();
        assert!(matches!(
            Container::load(root.path(), "c1"),
            Err(StateError::NotFound(_))
        ));
    }

    #[test]
    fn corrupt_state_names_the_field() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("c1")).unwrap();
        let state = root.path().join("c1").join(STATE_FILE);
        std::fs::write(&state, r#"{"id":"c1","pid":1,"start_time":1,"bundle":"/b","rootfs":"/r","created":"","cgroup":{"path":5}}"#).unwrap();
        let e = Container::load(root.path(), "c1")
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("): cgroup.path: invalid type: integer `5`"),
            "{e}"
        );
        let whole =
            r#"{"id":"c1","pid":1,"start_time":1,"bundle":"/b","rootfs":"/r","created":""}"#;
        std::fs::write(&state, format!("{whole} x")).unwrap();
        let e = Container::load(root.path(), "c1")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("trailing characters"), "{e}");
    }

    #[test]
    fn reused_pid_counts_as_stopped() {
        let me = std::process::id() as i32;
        let st = StoredState {
            id: "x".into(),
            pid: me,
            start_time: 1,
            bundle: "/".into(),
            rootfs: "/".into(),
            created: String::new(),
            annotations: BTreeMap::new(),
            cgroup: None,
            ..Default::default()
        };
        assert_eq!(
            derive_status(Path::new("/nonexistent"), &st),
            Status::Stopped
        );
    }
}
