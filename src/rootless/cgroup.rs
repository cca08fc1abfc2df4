//! cgroups for a rootless container, decided before any side effect ([`choose`]):
//! * every directory the container's cgroup needs may be written by the caller (a delegated
//!   subtree: a directory it owns): the cgroupfs driver is used there, as for root, except that
//!   device rules are left out ([`Delegated`]): only root may write them on v1, and on v2 the
//!   eBPF program needs CAP_BPF; runc ignores them in rootless mode too, and the devices a
//!   user namespace can have are the host's own nodes, bind-mounted;
//! * otherwise, with no resources asked for: no cgroup at all ([`NoCgroup`], a debug note). The
//!   state records none; `pause`, `events` and `update` say the container has no cgroup;
//!   `kill --all` and `ps` signal and list the processes of its pid namespace (`signal.rs`);
//! * otherwise an error naming the first resource asked for, and nothing is left behind.
//!
//! runc 1.1 decides per hierarchy and keeps the ones it could create; Berth decides for the
//! whole cgroup, so a container never has half of one.

use std::path::PathBuf;

use oci_spec::runtime::{LinuxResources, Spec};

use crate::cgroups::{CgroupError, CgroupRecord, FreezerState, Manager, OomWatch, Stats};

/// The manager of a rootless container. `fs` is the cgroupfs driver placed as for root (its
/// layout and path found, `linux.resources` not yet checked against the host).
pub fn choose(spec: &Spec, fs: Box<dyn Manager>) -> Result<Box<dyn Manager>, CgroupError> {
    let resources = spec.linux().as_ref().and_then(|l| l.resources().as_ref());
    let dirs: Vec<PathBuf> = fs.record().paths.into_values().collect();
    match unwritable(&dirs) {
        None => {
            crate::logging::debug("rootless: the container's cgroup is writable: using it");
            if let Some(r) = resources {
                fs.validate(&without_devices(r))?;
            }
            Ok(Box::new(Delegated(fs)))
        }
        Some(dir) => {
            if let Some(field) = resources.and_then(first_asked) {
                return Err(CgroupError::invalid(
                    field,
                    format!(
                        "rootless: no cgroup Berth may write ({} is not writable by uid {}): remove the limit, or delegate a cgroup to this user",
                        dir.display(),
                        nix::unistd::geteuid()
                    ),
                ));
            }
            crate::logging::debug(format!(
                "rootless: {} is not writable and no resources are asked for: the container runs without a cgroup",
                dir.display()
            ));
            Ok(Box::new(NoCgroup))
        }
    }
}

/// No cgroup hierarchy could be found (`err`): a container that asks for no resources runs
/// without a cgroup, as when none is writable.
pub fn without_layout(spec: &Spec, err: CgroupError) -> Result<Box<dyn Manager>, CgroupError> {
    let resources = spec.linux().as_ref().and_then(|l| l.resources().as_ref());
    if let Some(field) = resources.and_then(first_asked) {
        return Err(CgroupError::invalid(field, format!("rootless: {err}")));
    }
    crate::logging::debug(format!(
        "rootless: {err}: the container runs without a cgroup"
    ));
    Ok(Box::new(NoCgroup))
}

/// The first directory of `dirs` the caller could not use: an existing one whose cgroup.procs
/// it may not write, or a missing one whose nearest existing parent it may not write in.
pub fn unwritable(dirs: &[PathBuf]) -> Option<PathBuf> {
    use nix::unistd::{access, AccessFlags};
    dirs.iter().find_map(|d| {
        let target = if d.exists() {
            d.join("cgroup.procs")
        } else {
            d.ancestors().find(|a| a.exists())?.to_path_buf()
        };
        access(&target, AccessFlags::W_OK)
            .is_err()
            .then(|| target.clone())
    })
}

/// The JSON path of the first value `r` asks for, device rules aside (`linux.resources.memory.limit`).
/// Absent, null, zero, false and empty values ask for nothing (the driver leaves them alone).
pub fn first_asked(r: &LinuxResources) -> Option<String> {
    let v = serde_json::to_value(without_devices(r)).ok()?;
    fn walk(v: &serde_json::Value, path: String) -> Option<String> {
        use serde_json::Value as V;
        match v {
            V::Null | V::Bool(false) => None,
            V::Number(n) if n.as_f64() == Some(0.0) => None,
            V::String(s) if s.is_empty() => None,
            V::Array(a) if a.is_empty() => None,
            V::Object(o) => o.iter().find_map(|(k, v)| walk(v, format!("{path}.{k}"))),
            V::Array(a) => a
                .iter()
                .enumerate()
                .find_map(|(i, v)| walk(v, format!("{path}[{i}]")).map(|_| format!("{path}[{i}]"))),
            _ => Some(path),
        }
    }
    walk(&v, "linux.resources".into())
}

fn without_devices(r: &LinuxResources) -> LinuxResources {
    let mut r = r.clone();
    r.set_devices(None);
    r
}

fn none() -> CgroupError {
    CgroupError::Unsupported(
        "the container has no cgroup (rootless: there was no cgroup Berth could write when it was created)"
            .into(),
    )
}

/// A container without a cgroup.
pub struct NoCgroup;

impl Manager for NoCgroup {
    fn validate(&self, _: &LinuxResources) -> Result<(), CgroupError> {
        Ok(())
    }
    fn create(&self) -> Result<(), CgroupError> {
        Ok(())
    }
    fn add(&self, _: i32) -> Result<(), CgroupError> {
        Ok(())
    }
    fn apply(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        // `choose` refused every value but device rules, which have nowhere to go.
        match first_asked(r) {
            Some(field) => Err(CgroupError::invalid(field, none().to_string())),
            None => Ok(()),
        }
    }
    fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        Err(none())
    }
    fn freeze(&self) -> Result<(), CgroupError> {
        Err(none())
    }
    fn thaw(&self) -> Result<(), CgroupError> {
        Err(none())
    }
    fn freezer_state(&self) -> Result<FreezerState, CgroupError> {
        Ok(FreezerState::Thawed)
    }
    fn signal_all(&self, _: i32) -> Result<(), CgroupError> {
        Err(none())
    }
    fn stats(&self) -> Result<Stats, CgroupError> {
        Err(none())
    }
    fn oom_watch(&self) -> Result<OomWatch, CgroupError> {
        Err(none())
    }
    fn exists(&self) -> bool {
        false
    }
    fn destroy(&self) -> Result<(), CgroupError> {
        Ok(())
    }
    fn record(&self) -> CgroupRecord {
        CgroupRecord::default()
    }
    fn recorded(&self) -> Option<CgroupRecord> {
        None
    }
}

/// A cgroup the rootless caller may write: the cgroupfs driver without device rules.
pub struct Delegated(Box<dyn Manager>);

impl Manager for Delegated {
    fn validate(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        self.0.validate(&without_devices(r))
    }
    fn create(&self) -> Result<(), CgroupError> {
        self.0.create()
    }
    fn entry(&self) -> Option<crate::cgroups::Entry> {
        self.0.entry()
    }
    fn add(&self, pid: i32) -> Result<(), CgroupError> {
        self.0.add(pid)
    }
    fn apply(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        if r.devices().as_ref().is_some_and(|d| !d.is_empty()) {
            crate::logging::debug("rootless: linux.resources.devices left out (root's only)");
        }
        self.0.apply(&without_devices(r))
    }
    fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        self.0.pids()
    }
    fn freeze(&self) -> Result<(), CgroupError> {
        self.0.freeze()
    }
    fn thaw(&self) -> Result<(), CgroupError> {
        self.0.thaw()
    }
    fn freezer_state(&self) -> Result<FreezerState, CgroupError> {
        self.0.freezer_state()
    }
    fn signal_all(&self, sig: i32) -> Result<(), CgroupError> {
        self.0.signal_all(sig)
    }
    fn stats(&self) -> Result<Stats, CgroupError> {
        self.0.stats()
    }
    fn oom_watch(&self) -> Result<OomWatch, CgroupError> {
        self.0.oom_watch()
    }
    fn oom_kill_error(&self) -> Option<CgroupError> {
        self.0.oom_kill_error()
    }
    fn exists(&self) -> bool {
        self.0.exists()
    }
    fn destroy(&self) -> Result<(), CgroupError> {
        self.0.destroy()
    }
    fn record(&self) -> CgroupRecord {
        self.0.record()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn the_first_value_asked_for_is_named() {
        assert_eq!(first_asked(&res("{}")), None);
        assert_eq!(
            first_asked(&res(r#"{"devices":[{"allow":false,"access":"rwm"}]}"#)),
            None
        );
        assert_eq!(
            first_asked(&res(r#"{"memory":{"limit":0},"pids":{"limit":0}}"#)),
            None
        );
        assert_eq!(
            first_asked(&res(r#"{"memory":{"limit":1048576}}"#)).as_deref(),
            Some("linux.resources.memory.limit")
        );
        assert_eq!(
            first_asked(&res(
                r#"{"hugepageLimits":[{"pageSize":"2MB","limit":2097152}]}"#
            ))
            .as_deref(),
            Some("linux.resources.hugepageLimits[0]")
        );
    }

    #[test]
    fn unwritable_finds_the_directory_that_stops_a_create() {
        let t = tempfile::tempdir().unwrap();
        let mine = t.path().join("a/b");
        // A missing directory below a writable one can be made (root can write anywhere, so
        // the refusal side is covered by tests/rootless.rs, as a real user).
        assert_eq!(unwritable(&[mine]), None);
        let existing = t.path().to_path_buf();
        std::fs::write(existing.join("cgroup.procs"), "").unwrap();
        assert_eq!(unwritable(&[existing]), None);
    }

    #[test]
    fn no_cgroup_records_nothing_and_refuses_cgroup_commands() {
        let m = NoCgroup;
        assert!(m.recorded().is_none() && !m.exists());
        assert!(m.create().is_ok() && m.add(1).is_ok() && m.destroy().is_ok());
        assert!(m.freeze().unwrap_err().to_string().contains("no cgroup"));
        let e = m
            .apply(&res(r#"{"memory":{"limit":1048576}}"#))
            .unwrap_err();
        assert!(
            e.to_string().starts_with("linux.resources.memory.limit:"),
            "{e}"
        );
    }
}
