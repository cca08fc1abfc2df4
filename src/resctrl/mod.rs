//! `linux.intelRdt` on a mounted resctrl filesystem: the container's resource group (named
//! by `closID`, else by the container id), its schemata (`schemata` lines as given, else
//! `l3CacheSchema` then `memBwSchema`) and the init's pid in its `tasks`. The root is a
//! parameter, so the writes are unit-tested against a fake tree.
//!
//! `config::validate` calls [`validate`] before any side effect: no resctrl mounted at
//! /sys/fs/resctrl (statfs magic `RDTGROUP_SUPER_MAGIC`) is one error naming `linux.intelRdt`,
//! as are a `closID` that is not a plain name, schemata lines of the wrong resource, and a
//! `closID` without schemata whose group does not exist (runtime-spec: it MUST pre-exist).
//! `create` calls [`join`] once the init exists (its pid into `tasks`); a [`Guard`] removes a
//! group `create` made if `create` then fails. As runc does, a `closID` group that exists is
//! joined, not rewritten, unless schemata are given.
//!
//! Removal on `delete`: runc removes the group only when `closID` is empty (the group named
//! after the container); a `closID` group is left, being likely shared or managed by someone
//! else. Berth follows runc, and additionally leaves a container-named group it did not make.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxIntelRdt, Spec};

/// Where the kernel mounts resctrl.
pub const ROOT: &str = "/sys/fs/resctrl";

#[derive(Debug, thiserror::Error)]
pub enum RdtError {
    #[error("linux.intelRdt.{field}: {msg}")]
    Invalid { field: &'static str, msg: String },
    #[error("linux.intelRdt: resctrl is not mounted at {ROOT} (no Intel RDT on this host)")]
    NotMounted,
    #[error("linux.intelRdt: {what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The kernel's `RDTGROUP_SUPER_MAGIC` (include/uapi/linux/magic.h).
const RDTGROUP_SUPER_MAGIC: i64 = 0x7655821;

/// Whether a resctrl filesystem is mounted at `root` (what `features` reports, as runc reports
/// what the host has).
pub fn mounted(root: &Path) -> bool {
    nix::sys::statfs::statfs(root).is_ok_and(|s| s.filesystem_type().0 == RDTGROUP_SUPER_MAGIC)
}

/// Checks `linux.intelRdt` before any side effect, against the resctrl at `root`.
pub fn validate(rdt: &LinuxIntelRdt, root: &Path) -> Result<(), RdtError> {
    if !mounted(root) {
        return Err(RdtError::NotMounted);
    }
    check(rdt, root)
}

/// The checks that need no mounted resctrl (unit-tested against a fake tree). The container
/// id stands in for a missing `closID` and is already a valid name.
fn check(rdt: &LinuxIntelRdt, root: &Path) -> Result<(), RdtError> {
    let lines = schemata(rdt)?;
    let name = group_name(rdt, "id")?;
    if rdt.clos_id().is_some() && lines.is_empty() && !root.join(name).is_dir() {
        return Err(RdtError::Invalid {
            field: "closID",
            msg: format!("no resctrl group {name:?} (without schemata it must exist)"),
        });
    }
    Ok(())
}

impl RdtError {
    /// As a config error (found by [`validate`], before any side effect).
    pub fn into_config(self) -> crate::config::ConfigError {
        match self {
            RdtError::Invalid { field, msg } => {
                crate::config::ConfigError::invalid(format!("linux.intelRdt.{field}"), msg)
            }
            e => {
                let s = e.to_string();
                let msg = s.strip_prefix("linux.intelRdt: ").unwrap_or(&s);
                crate::config::ConfigError::invalid("linux.intelRdt", msg)
            }
        }
    }
}

impl From<RdtError> for crate::error::Error {
    fn from(e: RdtError) -> Self {
        match e {
            e @ RdtError::Io { .. } => crate::process::ProcessError::Init(e.to_string()).into(),
            e => e.into_config().into(),
        }
    }
}

/// A group `create` made and will remove on delete: removed on drop unless [`Guard::keep`].
#[derive(Default)]
pub struct Guard {
    made: Option<PathBuf>,
}

impl Guard {
    /// The group to record for `delete`, if `create` made one it owns.
    pub fn owned(&self) -> Option<&Path> {
        self.made.as_deref()
    }
    /// `create` succeeded: the group stays.
    pub fn keep(&mut self) {
        self.made = None;
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(d) = self.made.take() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// The name of the file in the container's state directory that records an owned group.
pub const RECORD: &str = "resctrl";

/// `create`: puts `pid` in the group of the spec's `linux.intelRdt` (if any) under `root`.
pub fn join(
    root: &Path,
    spec: &Spec,
    id: &str,
    pid: i32,
    guard: &mut Guard,
) -> Result<(), RdtError> {
    let Some(rdt) = spec.linux().as_ref().and_then(|l| l.intel_rdt().as_ref()) else {
        return Ok(());
    };
    let (dir, made) = apply(root, rdt, id, pid)?;
    // runc's rule: only a group named after the container is ever removed.
    if made && rdt.clos_id().is_none() {
        guard.made = Some(dir);
    }
    Ok(())
}

/// `delete`: removes the group recorded by `create` (the bytes of [`RECORD`]), if any. The
/// record must name a directory directly under `root`.
pub fn remove_recorded(root: &Path, record: Option<Vec<u8>>) -> Result<(), RdtError> {
    let Some(rec) = record else { return Ok(()) };
    let dir = Path::new(std::ffi::OsStr::from_bytes(&rec));
    if dir.parent() != Some(root) || dir.file_name().is_none() {
        return Ok(());
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("remove group", dir)(e)),
        _ => Ok(()),
    }
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RdtError {
    let path = path.to_path_buf();
    move |source| RdtError::Io { what, path, source }
}

/// The schemata lines to write, checked: `schemata` wins (runtime-spec 1.3); each of the older
/// fields must start with its resource (`L3:`, `MB:`).
pub fn schemata(rdt: &LinuxIntelRdt) -> Result<Vec<String>, RdtError> {
    if let Some(lines) = rdt.schemata().as_ref().filter(|l| !l.is_empty()) {
        return Ok(lines.clone());
    }
    let mut out = Vec::new();
    for (field, prefix, v) in [
        ("l3CacheSchema", "L3", rdt.l3_cache_schema()),
        ("memBwSchema", "MB", rdt.mem_bw_schema()),
    ] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            if !v.split('\n').all(|l| l.trim_start().starts_with(prefix)) {
                return Err(RdtError::Invalid {
                    field,
                    msg: format!("{v:?} does not start with {prefix}:"),
                });
            }
            out.extend(v.split('\n').map(str::to_string));
        }
    }
    Ok(out)
}

/// The group's name: `closID`, else the container id; never a path.
pub fn group_name<'a>(rdt: &'a LinuxIntelRdt, id: &'a str) -> Result<&'a str, RdtError> {
    let name = rdt.clos_id().as_deref().unwrap_or(id);
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(RdtError::Invalid {
            field: "closID",
            msg: format!("{name:?} is not a resctrl group name"),
        });
    }
    Ok(name)
}

/// Makes (or joins) the group under `root`, writes its schemata and adds `pid` to its tasks.
/// Returns the group's directory and whether this call made it.
pub fn apply(
    root: &Path,
    rdt: &LinuxIntelRdt,
    id: &str,
    pid: i32,
) -> Result<(PathBuf, bool), RdtError> {
    let lines = schemata(rdt)?;
    let dir = root.join(group_name(rdt, id)?);
    let made = match std::fs::create_dir(&dir) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(io("create group", &dir)(e)),
    };
    // A group made here and left half-written would outlive the failed create.
    let undo = |e: RdtError| {
        if made {
            let _ = std::fs::remove_dir(&dir);
        }
        e
    };
    if !lines.is_empty() {
        let path = dir.join("schemata");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(io("open", &path))
            .map_err(undo)?;
        // One line per write: the kernel parses a write as one set of lines.
        for l in &lines {
            f.write_all(format!("{l}\n").as_bytes())
                .map_err(io("write", &path))
                .map_err(undo)?;
        }
    }
    let tasks = dir.join("tasks");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&tasks)
        .and_then(|mut f| f.write_all(pid.to_string().as_bytes()))
        .map_err(io("add the init to", &tasks))
        .map_err(undo)?;
    Ok((dir, made))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rdt(json: &str) -> LinuxIntelRdt {
        serde_json::from_str(json).unwrap()
    }

    /// A fake resctrl root whose group `name` exists with empty files (as the kernel makes).
    fn fake(name: &str) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let g = t.path().join(name);
        std::fs::create_dir(&g).unwrap();
        std::fs::write(g.join("schemata"), "").unwrap();
        std::fs::write(g.join("tasks"), "").unwrap();
        t
    }

    #[test]
    fn schemata_win_over_the_older_fields() {
        let r = rdt(r#"{"schemata":["L3:0=f","MB:0=50"],"l3CacheSchema":"L3:0=1"}"#);
        assert_eq!(schemata(&r).unwrap(), ["L3:0=f", "MB:0=50"]);
        let r = rdt(r#"{"l3CacheSchema":"L3:0=ff;1=f","memBwSchema":"MB:0=70"}"#);
        assert_eq!(schemata(&r).unwrap(), ["L3:0=ff;1=f", "MB:0=70"]);
        let e = schemata(&rdt(r#"{"memBwSchema":"L3:0=1"}"#)).unwrap_err();
        assert!(
            e.to_string().starts_with("linux.intelRdt.memBwSchema: "),
            "{e}"
        );
    }

    #[test]
    fn clos_id_names_the_group_and_is_never_a_path() {
        assert_eq!(
            group_name(&rdt(r#"{"closID":"gold"}"#), "c1").unwrap(),
            "gold"
        );
        assert_eq!(group_name(&rdt("{}"), "c1").unwrap(), "c1");
        for bad in ["..", "a/b", ""] {
            let r = rdt(&format!(r#"{{"closID":"{bad}"}}"#));
            assert!(group_name(&r, "c1").is_err(), "{bad}");
        }
    }

    #[test]
    fn apply_writes_schemata_and_tasks_in_the_group() {
        let t = fake("gold");
        let r = rdt(r#"{"closID":"gold","l3CacheSchema":"L3:0=f","memBwSchema":"MB:0=20"}"#);
        let (dir, made) = apply(t.path(), &r, "c1", 4242).unwrap();
        assert_eq!(dir, t.path().join("gold"));
        assert!(!made, "an existing group is joined");
        assert_eq!(
            std::fs::read_to_string(dir.join("schemata")).unwrap(),
            "L3:0=f\nMB:0=20\n"
        );
        assert_eq!(std::fs::read_to_string(dir.join("tasks")).unwrap(), "4242");
    }

    #[test]
    fn a_group_without_its_files_is_an_error_naming_the_path() {
        // A plain directory is not a resctrl group: its tasks file is missing.
        let t = tempfile::tempdir().unwrap();
        let e = apply(t.path(), &rdt("{}"), "c1", 1)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("add the init to") && e.contains("c1/tasks"),
            "{e}"
        );
        assert!(!t.path().join("c1").exists(), "the group made is removed");
    }

    fn spec(rdt: &str) -> Spec {
        let mut s = Spec::default();
        let mut l = s.linux().clone().unwrap_or_default();
        l.set_intel_rdt(Some(super::tests::rdt(rdt)));
        s.set_linux(Some(l));
        s
    }

    #[test]
    fn validate_refuses_an_unmounted_root_naming_the_field() {
        let t = tempfile::tempdir().unwrap();
        assert!(!mounted(t.path()));
        let e = validate(&rdt("{}"), t.path()).unwrap_err().into_config();
        assert!(
            e.to_string()
                .starts_with("config.json: linux.intelRdt: resctrl is not mounted"),
            "{e}"
        );
    }

    #[test]
    fn a_clos_id_without_schemata_must_name_an_existing_group() {
        let t = fake("gold");
        assert!(check(&rdt(r#"{"closID":"gold"}"#), t.path()).is_ok());
        let e = check(&rdt(r#"{"closID":"silver"}"#), t.path()).unwrap_err();
        assert!(e.to_string().starts_with("linux.intelRdt.closID: "), "{e}");
        // With schemata the group may be made.
        assert!(check(
            &rdt(r#"{"closID":"silver","schemata":["L3:0=f"]}"#),
            t.path()
        )
        .is_ok());
        assert!(check(&rdt(r#"{"closID":"../x"}"#), t.path()).is_err());
    }

    /// The kernel fills a new group with its files; the fake tree does it by hand, so `join` is
    /// given a group that exists but reports it made (see below) through `apply`'s result.
    #[test]
    fn only_a_group_made_for_the_container_is_recorded_and_removed() {
        // A container-named group Berth makes (no closID): the guard owns it.
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("c1");
        let mut g = Guard::default();
        // create_dir succeeds but the plain directory has no tasks file: apply undoes it.
        assert!(join(t.path(), &spec("{}"), "c1", 7, &mut g).is_err());
        assert!(!dir.exists() && g.owned().is_none());
        // A pre-existing group named after the container is joined, never owned.
        let t = fake("c1");
        let mut g = Guard::default();
        join(t.path(), &spec("{}"), "c1", 7, &mut g).unwrap();
        assert!(g.owned().is_none());
        // A closID group is never owned, even one made here (runc's rule).
        let t = fake("gold");
        join(t.path(), &spec(r#"{"closID":"gold"}"#), "c1", 7, &mut g).unwrap();
        assert!(g.owned().is_none());
        assert_eq!(
            std::fs::read_to_string(t.path().join("gold/tasks")).unwrap(),
            "7"
        );
        // No intelRdt: nothing is touched.
        join(t.path(), &Spec::default(), "c1", 7, &mut g).unwrap();
    }

    #[test]
    fn the_guard_removes_an_owned_group_unless_kept() {
        let t = fake("c1");
        let dir = t.path().join("c1");
        std::fs::remove_file(dir.join("tasks")).unwrap();
        std::fs::remove_file(dir.join("schemata")).unwrap();
        let mut g = Guard {
            made: Some(dir.clone()),
        };
        g.keep();
        drop(g);
        assert!(dir.is_dir(), "kept");
        drop(Guard {
            made: Some(dir.clone()),
        });
        assert!(!dir.exists(), "removed on drop");
    }

    #[test]
    fn delete_removes_only_a_recorded_group_directly_under_the_root() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("c1");
        std::fs::create_dir(&dir).unwrap();
        let outside = tempfile::tempdir().unwrap();
        let rec = |p: &Path| Some(p.as_os_str().as_bytes().to_vec());
        // A record naming a directory elsewhere is ignored.
        remove_recorded(t.path(), rec(outside.path())).unwrap();
        assert!(outside.path().is_dir());
        remove_recorded(t.path(), None).unwrap();
        assert!(dir.is_dir());
        remove_recorded(t.path(), rec(&dir)).unwrap();
        assert!(!dir.exists());
        // Already gone: not an error.
        remove_recorded(t.path(), rec(&dir)).unwrap();
    }
}
