//! `linux.intelRdt` on a mounted resctrl filesystem: the container's resource group (named
//! by `closID`, else by the container id), its schemata (`schemata` lines as given, else
//! `l3CacheSchema` then `memBwSchema`) and the init's pid in its `tasks`. The root is a
//! parameter, so the writes are unit-tested against a fake tree.
//!
//! NOT YET WIRED INTO `create`: `config::validate` still refuses `linux.intelRdt` (and the
//! machines Berth is tested on have no /sys/fs/resctrl). As runc does, a `closID` group that
//! exists is joined, not rewritten, unless schemata are given.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxIntelRdt;

/// Where the kernel mounts resctrl.
pub const ROOT: &str = "/sys/fs/resctrl";

#[derive(Debug, thiserror::Error)]
pub enum RdtError {
    #[error("linux.intelRdt.{field}: {msg}")]
    Invalid { field: &'static str, msg: String },
    #[error("linux.intelRdt: {what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
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
/// Returns the group's directory (for `delete`, which removes it unless it was given by
/// `closID`).
pub fn apply(root: &Path, rdt: &LinuxIntelRdt, id: &str, pid: i32) -> Result<PathBuf, RdtError> {
    let lines = schemata(rdt)?;
    let dir = root.join(group_name(rdt, id)?);
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io("create group", &dir)(e)),
    }
    if !lines.is_empty() {
        let path = dir.join("schemata");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(io("open", &path))?;
        // One line per write: the kernel parses a write as one set of lines.
        for l in &lines {
            f.write_all(format!("{l}\n").as_bytes())
                .map_err(io("write", &path))?;
        }
    }
    let tasks = dir.join("tasks");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&tasks)
        .and_then(|mut f| f.write_all(pid.to_string().as_bytes()))
        .map_err(io("add the init to", &tasks))?;
    Ok(dir)
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
        let dir = apply(t.path(), &r, "c1", 4242).unwrap();
        assert_eq!(dir, t.path().join("gold"));
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
    }
}
