//! cgroups: the driver boundary, here: the [`Manager`] trait, [`CgroupError`], [`FreezerState`],
//! the [`CgroupRecord`] kept in state.json, and the factories [`for_spec`] (a new container),
//! [`from_record`] (an existing one) and [`is_frozen`].
//!
//! Berth's cgroupfs driver is [`FsManager`] (`fsmanager.rs`); it works on cgroup v1, cgroup v2
//! and hybrid hosts alike, found at run time (`layout.rs`): each controller is driven wherever
//! this host mounts it — v1 files (`v1.rs`) for a controller bound to a v1 hierarchy, v2 files
//! (`v2.rs`) for one in the unified hierarchy. Device rules go to devices.allow/deny or to an
//! eBPF program (`devices.rs`, `bpf.rs`); usage is reported in runc's JSON shape (`stats.rs`);
//! OOM-killer notifications come from [`OomWatch`] (`oom.rs`). `fs.rs` has the small cgroupfs
//! file helpers they share; `commands.rs` the cgroup side of pause, resume, update, events, ps.
//!
//! With `--systemd-cgroup` ([`use_systemd`]) the driver is [`systemd::SystemdManager`]
//! (`systemd/`): the cgroup is a transient systemd unit, and the fs driver does the rest in it.

mod bpf;
pub mod commands;
pub mod devices;
mod entry;
#[cfg(test)]
mod fakefs;
mod fs;
mod fsmanager;
pub mod layout;
mod oom;
pub mod stats;
pub mod systemd;
mod v1;
mod v2;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use oci_spec::runtime::{LinuxResources, Spec};
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use entry::Entry;
pub use fsmanager::FsManager;
use layout::Layout;
pub use oom::OomWatch;
pub use stats::Stats;

#[derive(Debug, Error)]
pub enum CgroupError {
    /// A value that cannot be applied; `field` is its JSON path.
    #[error("{field}: {msg}")]
    Invalid { field: String, msg: String },
    /// The kernel refused a value.
    #[error("{field}: cannot write {value:?} to {file}: {source}")]
    Write {
        field: String,
        file: PathBuf,
        value: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cgroup {path:?}: {what}: {source}")]
    Io {
        what: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Something this host's kernel or cgroup layout does not have.
    #[error("{0}")]
    Unsupported(String),
    /// systemd (the systemd driver) refused, failed or could not be reached.
    #[error("systemd cgroup driver: {0}")]
    Systemd(String),
    #[error("{0}")]
    Other(String),
}

impl CgroupError {
    pub fn invalid(field: impl Into<String>, msg: impl Into<String>) -> Self {
        CgroupError::Invalid {
            field: field.into(),
            msg: msg.into(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreezerState {
    Thawed,
    Freezing,
    Frozen,
}

/// What `state.json` keeps of a container's cgroups so later commands find them again, without
/// looking at the host's layout or the caller's own cgroup again.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct CgroupRecord {
    /// `linux.cgroupsPath` as given (or the container id when it was not).
    pub path: String,
    /// The container's cgroup directory per controller, as runc's `cgroup_paths`: v1
    /// controllers (`cpu`, `cpuacct`, `name=systemd`, …) and `""` for the unified hierarchy.
    #[serde(default)]
    pub paths: BTreeMap<String, PathBuf>,
    /// Directories Berth created above the container's own (removed with it when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub created: Vec<PathBuf>,
    /// The processes (pid, start time) that were already in the container's pre-existing
    /// cgroup when it was created: runc lets a container share such a cgroup, with a warning.
    /// They are not the container's: never listed, signalled or waited for as its processes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub foreign: Vec<(i32, u64)>,
    /// `SLICE/UNIT` (e.g. `kubepods-pod1.slice/cri-containerd-c1.scope`) when the systemd
    /// driver made the cgroup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systemd: Option<String>,
}

/// Whether new containers get the systemd driver (`--systemd-cgroup`); set once by the CLI.
static SYSTEMD: AtomicBool = AtomicBool::new(false);

pub fn use_systemd(on: bool) {
    SYSTEMD.store(on, Ordering::Relaxed);
}

/// A cgroup driver: everything the runtime does with a container's cgroups.
pub trait Manager {
    /// Checks `linux.resources` against what this host has, before any side effect.
    fn validate(&self, resources: &LinuxResources) -> Result<(), CgroupError>;
    /// Creates the cgroup directories.
    fn create(&self) -> Result<(), CgroupError>;
    /// What a process about to be forked needs to enter the cgroup by itself, without the
    /// kernel's global lock that `add` takes (see [`Entry`]); None: `add` places it.
    fn entry(&self) -> Option<Entry> {
        None
    }
    /// Moves `pid` into the cgroup in every hierarchy.
    fn add(&self, pid: i32) -> Result<(), CgroupError>;
    /// Writes the values present in `resources` (absent or zero ones are left alone).
    fn apply(&self, resources: &LinuxResources) -> Result<(), CgroupError>;
    /// Every pid in the cgroup and below it.
    fn pids(&self) -> Result<Vec<i32>, CgroupError>;
    fn freeze(&self) -> Result<(), CgroupError>;
    fn thaw(&self) -> Result<(), CgroupError>;
    fn freezer_state(&self) -> Result<FreezerState, CgroupError>;
    /// Signals every process in the cgroup without letting any escape by forking: freeze,
    /// signal, thaw (cgroup.kill for SIGKILL where the kernel has it). A paused cgroup stays
    /// paused unless the signal is SIGKILL.
    fn signal_all(&self, sig: i32) -> Result<(), CgroupError>;
    fn stats(&self) -> Result<Stats, CgroupError>;
    /// Notifications of the OOM killer acting in the cgroup.
    fn oom_watch(&self) -> Result<OomWatch, CgroupError>;
    /// After a failed create: if the OOM killer acted in the cgroup since [`Manager::create`]
    /// (an init killed in its setup says nothing itself), the error that says so, naming
    /// `linux.resources.memory.limit` and the usage.
    fn oom_kill_error(&self) -> Option<CgroupError> {
        None
    }
    /// Whether the cgroup still exists.
    fn exists(&self) -> bool;
    /// Removes the cgroup directories (waiting, bounded, for exiting processes to leave) and the
    /// parents Berth created, if they are empty.
    fn destroy(&self) -> Result<(), CgroupError>;
    fn record(&self) -> CgroupRecord;
    /// What the container's state keeps: the record, or None for a container without a cgroup
    /// (rootless, see `rootless::cgroup`).
    fn recorded(&self) -> Option<CgroupRecord> {
        Some(self.record())
    }
}

/// The manager for a new container: finds this host's layout, places the cgroup (runc's rules:
/// `linux.cgroupsPath` absolute from each hierarchy's root, relative below the runtime's own
/// cgroup; without one, the container id, relative), and checks `linux.resources` against
/// what the host has, all before any side effect. In rootless mode `rootless::cgroup` decides
/// whether the container gets a cgroup at all.
pub fn for_spec(spec: &Spec, id: &str) -> Result<Box<dyn Manager>, CgroupError> {
    if SYSTEMD.load(Ordering::Relaxed) {
        return systemd::for_spec(spec, id, &Layout::detect()?);
    }
    let path = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_ref())
        .map(|p| p.display().to_string())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| id.to_string());
    if layout::clean(&path).1.is_empty() {
        return Err(CgroupError::invalid(
            "linux.cgroupsPath",
            format!(
                "{path:?} names the root of the hierarchy; a container needs a cgroup of its own"
            ),
        ));
    }
    let rootless = crate::rootless::active();
    let layout = match Layout::detect() {
        Ok(l) => l,
        Err(e) if rootless => return crate::rootless::cgroup::without_layout(spec, e),
        Err(e) => return Err(e),
    };
    let m = FsManager::new(&layout, &path);
    if rootless {
        return crate::rootless::cgroup::choose(spec, Box::new(m));
    }
    if let Some(r) = spec.linux().as_ref().and_then(|l| l.resources().as_ref()) {
        m.validate(r)?;
    }
    Ok(Box::new(m))
}

/// The manager of an existing container, from its record.
pub fn from_record(rec: &CgroupRecord) -> Box<dyn Manager> {
    if let Some(u) = &rec.systemd {
        return Box::new(systemd::from_record(rec, u));
    }
    Box::new(FsManager::from_record(rec))
}

/// True when the container's cgroup is frozen (for `paused`).
pub fn is_frozen(rec: &CgroupRecord) -> bool {
    FsManager::from_record(rec).freezer_state().ok() == Some(FreezerState::Frozen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_cgroup_path_is_refused() {
        let mut spec = Spec::default();
        let mut linux = spec.linux().clone().unwrap_or_default();
        linux.set_cgroups_path(Some("/../".into()));
        spec.set_linux(Some(linux));
        let e = for_spec(&spec, "c1").err().unwrap().to_string();
        assert!(e.starts_with("linux.cgroupsPath:"), "{e}");
    }
}
