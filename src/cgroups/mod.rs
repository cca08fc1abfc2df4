//! cgroups: the driver boundary (MINIMAL FIRST CUT: v1/v2/hybrid drivers with every resource
//! are being written). A `Manager` creates the container's cgroup, puts processes in it,
//! applies `linux.resources`, freezes, lists pids and removes it.

use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxResources, Spec};
use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CgroupError {
    #[error("{field}: {msg}")]
    Invalid { field: String, msg: String },
    #[error("cgroup {path:?}: {what}: {source}")]
    Io {
        what: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Unsupported(String),
}

/// What `state.json` keeps of a container's cgroup so later commands can find it again.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CgroupRecord {
    /// The cgroup path below each hierarchy's root, e.g. `/c1`.
    pub path: String,
}

pub trait Manager {
    /// Creates the cgroup directories.
    fn create(&self) -> Result<(), CgroupError>;
    /// On cgroup v2, an fd of the cgroup directory for clone3(CLONE_INTO_CGROUP).
    fn clone_into_fd(&self) -> Option<RawFd> {
        None
    }
    /// Moves `pid` into the cgroup.
    fn add(&self, pid: i32) -> Result<(), CgroupError>;
    fn apply(&self, resources: &LinuxResources) -> Result<(), CgroupError>;
    /// Every pid in the cgroup.
    fn pids(&self) -> Result<Vec<i32>, CgroupError>;
    /// Removes the cgroup directories (they must be empty of processes).
    fn destroy(&self) -> Result<(), CgroupError>;
    fn record(&self) -> CgroupRecord;
}

struct V1 {
    path: String,
}

fn io(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError {
    let (what, path) = (what.to_string(), path.to_path_buf());
    move |source| CgroupError::Io { what, path, source }
}

fn hierarchies() -> Vec<PathBuf> {
    let Ok(mi) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return vec![];
    };
    mi.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let fstype = post.split(' ').next()?;
            let mp = pre.split(' ').nth(4)?;
            (fstype == "cgroup").then(|| PathBuf::from(mp))
        })
        .collect()
}

impl V1 {
    fn dirs(&self) -> Vec<PathBuf> {
        hierarchies()
            .into_iter()
            .map(|h| h.join(self.path.trim_start_matches('/')))
            .collect()
    }
}

impl Manager for V1 {
    fn create(&self) -> Result<(), CgroupError> {
        for d in self.dirs() {
            std::fs::create_dir_all(&d).map_err(io("create", &d))?;
            // A new cpuset cgroup starts empty; it inherits its parent's cpus and mems.
            for f in ["cpuset.cpus", "cpuset.mems"] {
                let file = d.join(f);
                if std::fs::read_to_string(&file).is_ok_and(|v| v.trim().is_empty()) {
                    if let Some(parent) = d.parent() {
                        let v = std::fs::read_to_string(parent.join(f)).unwrap_or_default();
                        std::fs::write(&file, v.trim()).map_err(io("init", &file))?;
                    }
                }
            }
        }
        Ok(())
    }
    fn add(&self, pid: i32) -> Result<(), CgroupError> {
        for d in self.dirs() {
            let f = d.join("cgroup.procs");
            std::fs::write(&f, pid.to_string()).map_err(io("add process", &f))?;
        }
        Ok(())
    }
    fn apply(&self, _r: &LinuxResources) -> Result<(), CgroupError> {
        Ok(())
    }
    fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let Some(d) = self.dirs().into_iter().next() else {
            return Ok(vec![]);
        };
        let f = d.join("cgroup.procs");
        let s = std::fs::read_to_string(&f).map_err(io("read", &f))?;
        Ok(s.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }
    fn destroy(&self) -> Result<(), CgroupError> {
        for d in self.dirs() {
            match std::fs::remove_dir(&d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("remove", &d)(e)),
            }
        }
        Ok(())
    }
    fn record(&self) -> CgroupRecord {
        CgroupRecord {
            path: self.path.clone(),
        }
    }
}

/// The manager for a new container.
pub fn for_spec(spec: &Spec, id: &str) -> Result<Box<dyn Manager>, CgroupError> {
    let path = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_ref())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| format!("/{id}"));
    Ok(Box::new(V1 { path }))
}

/// The manager of an existing container, from its record.
pub fn from_record(rec: &CgroupRecord) -> Box<dyn Manager> {
    Box::new(V1 {
        path: rec.path.clone(),
    })
}

/// True when the container's cgroup is frozen (for `paused`).
pub fn is_frozen(_rec: &CgroupRecord) -> bool {
    false
}
