//! Where the new process goes: the container's cgroup, or a sub-cgroup of it (`--cgroup`,
//! with runc's rules). Built by the parent from the container's record; joined by the child.

use std::path::{Component, Path, PathBuf};

use crate::cgroups::{self, CgroupRecord, Manager};
use crate::error::{Error, Result};

/// Where the new process goes: the container's cgroup, or a sub-cgroup of it (`--cgroup`).
pub struct CgroupJoin {
    /// The container's cgroup, or `--cgroup PATH`'s sub-cgroup in every hierarchy.
    pub(super) manager: Box<dyn Manager>,
    /// `--cgroup CONTROLLER:PATH`: the `tasks` files of those sub-cgroups, in the
    /// controllers' v1 hierarchies, joined after `manager`.
    pub(super) controller_tasks: Vec<PathBuf>,
}

/// Builds the cgroup placement from the container's record and the `--cgroup` arguments
/// (runc's rules: one PATH for all, or CONTROLLER[,CONTROLLER…]:PATH pairs; sub-cgroups must
/// exist).
pub(super) fn cgroup_join(rec: &CgroupRecord, args: &[String]) -> Result<CgroupJoin> {
    let subs = parse_sub_cgroups(args)?;
    let mut join = CgroupJoin {
        manager: cgroups::from_record(rec),
        controller_tasks: Vec::new(),
    };
    for (ctrl, sub) in subs {
        match ctrl {
            None => join.manager = cgroups::from_record(&sub_record(rec, &sub)),
            Some(ctrl) => {
                let hier = v1_hierarchy(&ctrl).ok_or_else(|| {
                    Error::Usage(format!(
                        "--cgroup {ctrl}:{}: no cgroup v1 hierarchy has the {ctrl:?} controller",
                        sub.display()
                    ))
                })?;
                // The container's own directory in that hierarchy, as its record names it.
                let own = rec
                    .paths
                    .iter()
                    .find(|(c, d)| c.split(',').any(|x| x == ctrl) || d.starts_with(&hier))
                    .map(|(_, d)| d.clone())
                    .unwrap_or_else(|| hier.join(rec.path.trim_start_matches('/')));
                let dir = own.join(&sub);
                if !dir.is_dir() {
                    return Err(Error::Usage(format!(
                        "--cgroup {ctrl}:{}: {} does not exist (the sub-cgroup must be created first)",
                        sub.display(),
                        dir.display()
                    )));
                }
                join.controller_tasks.push(dir.join("tasks"));
            }
        }
    }
    Ok(join)
}

/// The record of a sub-cgroup of the container's (the one place that builds a record).
fn sub_record(rec: &CgroupRecord, sub: &Path) -> CgroupRecord {
    let mut r = rec.clone();
    r.path = format!("{}/{}", rec.path.trim_end_matches('/'), sub.display());
    for dir in r.paths.values_mut() {
        *dir = dir.join(sub);
    }
    r.created.clear();
    r
}

/// Parses `--cgroup` arguments into (controller or None for all, relative sub-path).
fn parse_sub_cgroups(args: &[String]) -> Result<Vec<(Option<String>, PathBuf)>> {
    let mut out: Vec<(Option<String>, PathBuf)> = Vec::new();
    for a in args {
        let (ctrls, path) = match a.split_once(':') {
            Some((c, p)) => (Some(c), p),
            None => {
                if args.len() != 1 {
                    return Err(Error::Usage(format!(
                        "--cgroup {a:?}: with several --cgroup, each needs a CONTROLLER: prefix"
                    )));
                }
                (None, a.as_str())
            }
        };
        let sub = clean_sub_path(a, path)?;
        match ctrls {
            None => out.push((None, sub)),
            Some(list) => {
                for c in list.split(',') {
                    if c.is_empty() {
                        return Err(Error::Usage(format!(
                            "--cgroup {a:?}: empty controller name"
                        )));
                    }
                    if out.iter().any(|(x, _)| x.as_deref() == Some(c)) {
                        return Err(Error::Usage(format!(
                            "--cgroup: controller {c:?} given more than once"
                        )));
                    }
                    out.push((Some(c.to_string()), sub.clone()));
                }
            }
        }
    }
    Ok(out)
}

/// A sub-cgroup path stays below the container's cgroup: no `..`, leading `/` ignored.
fn clean_sub_path(arg: &str, p: &str) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(Error::Usage(format!(
                    // "is not a sub cgroup path": runc's phrase.
                    "--cgroup {arg:?}: {p:?} is not a sub cgroup path: it must stay inside the container's cgroup (no \"..\")"
                )));
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err(Error::Usage(format!(
            "--cgroup {arg:?}: empty sub-cgroup path"
        )));
    }
    Ok(out)
}

/// The mount point of the v1 hierarchy that holds `controller` (`name=systemd` style names
/// too), from /proc/self/mountinfo.
fn v1_hierarchy(controller: &str) -> Option<PathBuf> {
    let mi = crate::linux::procfs::read_pseudo("/proc/self/mountinfo").ok()?;
    mi.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        let mut post = post.split(' ');
        if post.next()? != "cgroup" {
            return None;
        }
        let super_opts = post.nth(1)?;
        let mp = pre.split(' ').nth(4)?;
        super_opts
            .split(',')
            .any(|o| o == controller)
            .then(|| PathBuf::from(mp))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn sub_cgroups_follow_runc_rules() {
        let one = parse_sub_cgroups(&args(&["sub/x"])).unwrap();
        assert_eq!(one, vec![(None, PathBuf::from("sub/x"))]);
        let many = parse_sub_cgroups(&args(&["cpu,memory:a", "pids:/b"])).unwrap();
        assert_eq!(
            many,
            vec![
                (Some("cpu".into()), PathBuf::from("a")),
                (Some("memory".into()), PathBuf::from("a")),
                (Some("pids".into()), PathBuf::from("b")),
            ]
        );
        for bad in [
            &["a", "b"][..],
            &["cpu:a", "cpu:b"],
            &["../x"],
            &["cpu:"],
            &[":x"],
        ] {
            assert!(parse_sub_cgroups(&args(bad)).is_err(), "{bad:?}");
        }
        let rec = CgroupRecord {
            path: "/c1".into(),
            paths: [("pids".to_string(), PathBuf::from("/sys/fs/cgroup/pids/c1"))].into(),
            created: vec![PathBuf::from("/sys/fs/cgroup/pids/p")],
            ..Default::default()
        };
        let sub = sub_record(&rec, Path::new("s/t"));
        assert_eq!(sub.path, "/c1/s/t");
        assert_eq!(
            sub.paths["pids"],
            PathBuf::from("/sys/fs/cgroup/pids/c1/s/t")
        );
        assert!(
            sub.created.is_empty(),
            "a sub-cgroup never removes the container's parents"
        );
    }
}
