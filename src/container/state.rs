//! One container's directory, its lock, and its stored state.

use std::collections::BTreeMap;
use std::fmt;

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{validate_id, StateError};

pub const STATE_FILE: &str = "state.json";
pub const CONFIG_FILE: &str = "config.json";
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
}

/// A container directory, locked for as long as this value lives.
pub struct Container {
    pub id: String,
    pub dir: PathBuf,
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

fn lock(fd: &OwnedFd, path: &Path) -> Result<(), StateError> {
    loop {
        // SAFETY: flock on an fd we own; blocks until the lock is ours.
        if unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(io("cannot lock container directory", path)(e));
        }
    }
}

impl Container {
    /// Makes `<root>/<id>` (failing if it exists) and locks it.
    pub fn create(root: &Path, id: &str) -> Result<Container, StateError> {
        validate_id(id)?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(io("cannot create state root", root))?;
        let dir = root.join(id);
        match std::fs::DirBuilder::new().mode(0o711).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(StateError::Exists(id.to_string()))
            }
            Err(e) => return Err(io("cannot create container directory", &dir)(e)),
        }
        let fd = open_dir(&dir).map_err(io("cannot open container directory", &dir))?;
        lock(&fd, &dir)?;
        Ok(Container {
            id: id.to_string(),
            dir,
            lock: fd,
            state: None,
            start_conn: None,
        })
    }

    /// Opens and locks an existing container and reads its state.
    pub fn load(root: &Path, id: &str) -> Result<Container, StateError> {
        validate_id(id)?;
        let dir = root.join(id);
        let fd = match open_dir(&dir) {
            Ok(fd) => fd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StateError::NotFound(id.to_string()))
            }
            Err(e) => return Err(io("cannot open container directory", &dir)(e)),
        };
        lock(&fd, &dir)?;
        let state = read_state(&dir, id)?;
        Ok(Container {
            id: id.to_string(),
            dir,
            lock: fd,
            state,
            start_conn: None,
        })
    }

    /// The raw fd of the lock, which a forked child must close so it does not hold the lock.
    pub fn lock_fd(&self) -> RawFd {
        self.lock.as_raw_fd()
    }

    /// Writes `state.json` atomically (temporary file, then rename).
    pub fn save(&mut self, st: StoredState) -> Result<(), StateError> {
        let tmp = self.dir.join(".state.json.tmp");
        let path = self.dir.join(STATE_FILE);
        let body = serde_json::to_vec(&st).expect("state serialises");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("cannot write state", &tmp))?;
        f.write_all(&body).map_err(io("cannot write state", &tmp))?;
        drop(f);
        std::fs::rename(&tmp, &path).map_err(io("cannot write state", &path))?;
        self.state = Some(st);
        Ok(())
    }

    /// Writes a file in the container directory (e.g. the copy of config.json).
    pub fn write_file(&self, name: &str, data: &[u8]) -> Result<(), StateError> {
        let path = self.dir.join(name);
        std::fs::write(&path, data).map_err(io("cannot write", &path))
    }

    pub fn read_file(&self, name: &str) -> Result<Vec<u8>, StateError> {
        let path = self.dir.join(name);
        std::fs::read(&path).map_err(io("cannot read", &path))
    }

    /// The container's status, derived from its live init process.
    pub fn status(&self) -> Status {
        match &self.state {
            None => Status::Stopped,
            Some(st) => derive_status(&self.dir, st),
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

    pub fn start_socket(&self) -> PathBuf {
        self.dir.join(START_SOCKET)
    }

    /// Removes the container directory and everything in it.
    pub fn remove(self) -> Result<(), StateError> {
        std::fs::remove_dir_all(&self.dir)
            .map_err(io("cannot remove container directory", &self.dir))
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

fn read_state(dir: &Path, id: &str) -> Result<Option<StoredState>, StateError> {
    let path = dir.join(STATE_FILE);
    match std::fs::read(&path) {
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
    match proc_stat(st.pid) {
        Some((start, state)) if start == st.start_time && state != 'Z' && state != 'X' => {
            if dir.join(START_SOCKET).exists() {
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
    if pid <= 0 {
        return None;
    }
    let s = crate::linux::procfs::read_pseudo(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses; fields resume after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    // rest starts at field 3 (state); start time is field 22.
    let start = fields.nth(18)?.parse().ok()?;
    Some((start, state))
}

/// Every container under `root`, with its state (unlocked reads).
pub fn list(root: &Path) -> Vec<(StoredState, Status, u32)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(root) else {
        return out;
    };
    for entry in rd.flatten() {
        let dir = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_dir() {
            continue;
        }
        let Ok(b) = std::fs::read(dir.join(STATE_FILE)) else {
            continue;
        };
        let Ok(st) = serde_json::from_slice::<StoredState>(&b) else {
            continue;
        };
        let status = derive_status(&dir, &st);
        out.push((st, status, meta.uid()));
    }
    out.sort_by(|a, b| a.0.created.cmp(&b.0.created));
    out
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
