//! Which cgroup hierarchies this host has, found at run time from /proc/self/mountinfo, and
//! where a container's cgroup goes in each (runc's cgroupfs rules for `linux.cgroupsPath`).
//!
//! * cgroup v1: one hierarchy per mount of fstype `cgroup`, holding one or more controllers
//!   (`cpu,cpuacct` when co-mounted) or a name (`name=systemd`).
//! * cgroup v2: one `cgroup2` mount and no v1 hierarchy with controllers.
//! * hybrid: v1 hierarchies plus a `cgroup2` mount (usually /sys/fs/cgroup/unified), which may
//!   hold controllers that are not bound to v1 (hugetlb on some hosts).

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::CgroupError;
use crate::linux::procfs::unescape_mountinfo;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V1Hierarchy {
    pub mountpoint: PathBuf,
    /// The cgroup of this hierarchy that is mounted there ("/" unless in a cgroup namespace or
    /// a bind mount of a sub-tree).
    pub root: String,
    /// Controllers bound to it, or `name=NAME` for a named hierarchy.
    pub controllers: Vec<String>,
}

impl V1Hierarchy {
    pub fn has_real_controller(&self) -> bool {
        self.controllers.iter().any(|c| !c.starts_with("name="))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnifiedMount {
    pub mountpoint: PathBuf,
    pub root: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    V1,
    Hybrid,
    V2,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    pub v1: Vec<V1Hierarchy>,
    pub unified: Option<UnifiedMount>,
    /// The caller's own cgroup, by controller (`""` for the unified hierarchy).
    pub own: BTreeMap<String, String>,
}

impl Layout {
    /// Reads this process's view of the host.
    pub fn detect() -> Result<Layout, CgroupError> {
        let read = |p: &str| {
            crate::linux::procfs::read_pseudo(p).map_err(|source| CgroupError::Io {
                what: "read".into(),
                path: p.into(),
                source,
            })
        };
        let own = read("/proc/self/cgroup")?;
        let mountinfo =
            crate::linux::procfs::host_mountinfo(&own).map_err(|source| CgroupError::Io {
                what: "read".into(),
                path: "/proc/self/mountinfo".into(),
                source,
            })?;
        // A controller bound to a v1 hierarchy is listed on that hierarchy's line here, which
        // is all the mountinfo filter needs (no read of /proc/cgroups).
        let names: Vec<&str> = own
            .lines()
            .filter_map(|l| l.split(':').nth(1))
            .flat_map(|c| c.split(','))
            .filter(|c| !c.is_empty())
            .collect();
        let mut l = Layout::parse(mountinfo, &own, &names);
        l.drop_covered_unified(|p| {
            nix::sys::statfs::statfs(p)
                .ok()
                .map(|s| s.filesystem_type())
        });
        if l.v1.is_empty() && l.unified.is_none() {
            return Err(CgroupError::Unsupported(
                "no cgroup hierarchy is mounted on this host (neither cgroup v1 nor cgroup2 in /proc/self/mountinfo)".into(),
            ));
        }
        Ok(l)
    }

    /// `subsystems` are the names of the controllers bound to v1 hierarchies, to tell them
    /// from other super options of v1 mounts.
    pub fn parse(mountinfo: &str, self_cgroup: &str, subsystems: &[&str]) -> Layout {
        let mut l = Layout::default();
        for line in mountinfo.lines() {
            let Some((pre, post)) = line.split_once(" - ") else {
                continue;
            };
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            if pre.len() < 5 || post.len() < 3 {
                continue;
            }
            let (root, mountpoint) = (
                unescape_mountinfo(pre[3]),
                PathBuf::from(unescape_mountinfo(pre[4])),
            );
            match post[0] {
                "cgroup" => {
                    let controllers: Vec<String> = post[2]
                        .split(',')
                        .filter(|o| o.starts_with("name=") || subsystems.contains(o))
                        .map(str::to_string)
                        .collect();
                    if controllers.is_empty() {
                        continue;
                    }
                    // The same hierarchy mounted twice: keep the first mount.
                    if l.v1.iter().any(|h| h.controllers == controllers) {
                        continue;
                    }
                    l.v1.push(V1Hierarchy {
                        mountpoint,
                        root,
                        controllers,
                    });
                }
                "cgroup2" if l.unified.is_none() => {
                    l.unified = Some(UnifiedMount { mountpoint, root });
                }
                _ => {}
            }
        }
        for line in self_cgroup.lines() {
            let mut it = line.splitn(3, ':');
            let (Some(_), Some(ctrls), Some(path)) = (it.next(), it.next(), it.next()) else {
                continue;
            };
            if ctrls.is_empty() {
                l.own.insert(String::new(), path.to_string());
            } else {
                for c in ctrls.split(',') {
                    l.own.insert(c.to_string(), path.to_string());
                }
            }
        }
        l
    }

    /// Forgets the cgroup2 mount when its mount point does not hold a cgroup2 filesystem now:
    /// a mount listed in mountinfo may be covered by a later one (a tmpfs over
    /// /sys/fs/cgroup/unified, as a benchmark does to hide a hybrid host's unified part), which
    /// the listing's start that [`host_mountinfo`](crate::linux::procfs::host_mountinfo) reads
    /// does not show. runc decides the hybrid mode the same way, by statfs of that mount point.
    /// Only the unified mount is checked (one statfs per start; all ten hierarchies here would
    /// cost ~19 µs): a directory made in a covered one would reach `clone3`'s
    /// CLONE_INTO_CGROUP and fail there with EBADF, while a covered v1 hierarchy already fails
    /// by name, its new directory having no control files. `fs_type` is statfs's `f_type` of a
    /// path (None when it cannot be read).
    pub fn drop_covered_unified(
        &mut self,
        fs_type: impl Fn(&std::path::Path) -> Option<nix::sys::statfs::FsType>,
    ) {
        let covered = self
            .unified
            .as_ref()
            .is_some_and(|u| fs_type(&u.mountpoint) != Some(nix::sys::statfs::CGROUP2_SUPER_MAGIC));
        if covered {
            self.unified = None;
        }
    }

    pub fn mode(&self) -> Mode {
        let v1 = self.v1.iter().any(V1Hierarchy::has_real_controller);
        match (v1, self.unified.is_some()) {
            (true, true) => Mode::Hybrid,
            (true, false) => Mode::V1,
            (false, _) => Mode::V2,
        }
    }

    /// The caller's cgroup in a hierarchy, relative to what is mounted (`root`).
    fn own_below_root(&self, key: &str, root: &str) -> Vec<String> {
        let own = self.own.get(key).map(String::as_str).unwrap_or("/");
        let own = clean(own).1;
        let root = clean(root).1;
        if own.starts_with(&root) {
            own[root.len()..].to_vec()
        } else {
            own
        }
    }

    /// Where the container's cgroup goes in the v1 hierarchy `h`.
    pub fn v1_dir(&self, h: &V1Hierarchy, path: &str) -> PathBuf {
        let (abs, rel) = clean(path);
        let mut dir = h.mountpoint.clone();
        if !abs {
            // runc's cgroupfs driver: relative to the runtime's own cgroup.
            dir.extend(self.own_below_root(&h.controllers[0], &h.root));
        }
        dir.extend(rel);
        dir
    }

    /// Where it goes in the unified hierarchy. A relative path is placed below the runtime's
    /// own cgroup (hybrid, as runc's v1 driver does) or below its parent (cgroup v2, as runc's
    /// v2 driver does: the runtime's own cgroup holds processes, so it cannot have children
    /// with controllers enabled).
    pub fn unified_dir(&self, path: &str) -> Option<PathBuf> {
        let u = self.unified.as_ref()?;
        let (abs, rel) = clean(path);
        let mut dir = u.mountpoint.clone();
        if !abs {
            let mut own = self.own_below_root("", &u.root);
            if self.mode() == Mode::V2 {
                own.pop();
            }
            dir.extend(own);
        }
        dir.extend(rel);
        Some(dir)
    }
}

/// Lexically cleans a cgroup path (`.` and `..` resolved, never above the root): whether it is
/// absolute, and its components.
pub fn clean(p: &str) -> (bool, Vec<String>) {
    let mut out: Vec<String> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c.to_string()),
        }
    }
    (p.starts_with('/'), out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset,clone_children
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
99 31 0:32 / /mnt/memory\\040again rw,relatime - cgroup cgroup rw,memory
";
    const HYBRID_SELF: &str = "\
9:name=systemd:/
4:memory:/process_api/abc
3:cpuset:/
1:cpu,cpuacct:/user
0::/
";
    const SUBSYS: &[&str] = &["cpu", "cpuacct", "cpuset", "memory", "hugetlb"];

    #[test]
    fn hybrid_layout_is_parsed() {
        let l = Layout::parse(HYBRID, HYBRID_SELF, SUBSYS);
        assert_eq!(l.mode(), Mode::Hybrid);
        assert_eq!(l.v1.len(), 4, "{l:?}");
        assert_eq!(l.v1[0].controllers, vec!["cpu", "cpuacct"]);
        assert_eq!(l.v1[1].controllers, vec!["cpuset"]);
        assert_eq!(l.v1[3].controllers, vec!["name=systemd"]);
        assert_eq!(
            l.unified.as_ref().unwrap().mountpoint,
            PathBuf::from("/sys/fs/cgroup/unified")
        );
        assert_eq!(l.own["memory"], "/process_api/abc");
        assert_eq!(l.own["cpuacct"], "/user");
        assert_eq!(l.own[""], "/");
    }

    #[test]
    fn a_covered_unified_mount_is_dropped() {
        use nix::sys::statfs::{FsType, CGROUP2_SUPER_MAGIC, CGROUP_SUPER_MAGIC, TMPFS_MAGIC};
        let parsed = Layout::parse(HYBRID, HYBRID_SELF, SUBSYS);
        // A tmpfs over the unified mount point: v1 alone, its hierarchies as they were.
        let mut l = parsed.clone();
        l.drop_covered_unified(|p: &std::path::Path| -> Option<FsType> {
            Some(if p.ends_with("unified") {
                TMPFS_MAGIC
            } else {
                CGROUP_SUPER_MAGIC
            })
        });
        assert_eq!(l.unified, None);
        assert_eq!(l.mode(), Mode::V1);
        assert_eq!(l.v1, parsed.v1);
        // Unreadable: dropped too.
        let mut l = parsed.clone();
        l.drop_covered_unified(|_: &std::path::Path| None);
        assert_eq!(l.unified, None);
        // As it is: nothing dropped.
        let mut l = parsed.clone();
        l.drop_covered_unified(|_: &std::path::Path| Some(CGROUP2_SUPER_MAGIC));
        assert_eq!(l, parsed);
    }

    #[test]
    fn paths_follow_runc_placement() {
        let l = Layout::parse(HYBRID, HYBRID_SELF, SUBSYS);
        let mem = &l.v1[2];
        // Absolute: from the hierarchy's root.
        assert_eq!(
            l.v1_dir(mem, "/a/b"),
            PathBuf::from("/sys/fs/cgroup/memory/a/b")
        );
        // Relative (and the default, the container id): below the runtime's own cgroup.
        assert_eq!(
            l.v1_dir(mem, "c1"),
            PathBuf::from("/sys/fs/cgroup/memory/process_api/abc/c1")
        );
        assert_eq!(
            l.v1_dir(&l.v1[0], "c1"),
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/user/c1")
        );
        assert_eq!(
            l.unified_dir("c1").unwrap(),
            PathBuf::from("/sys/fs/cgroup/unified/c1")
        );
        // Never above the hierarchy's root.
        assert_eq!(
            l.v1_dir(mem, "/../../etc"),
            PathBuf::from("/sys/fs/cgroup/memory/etc")
        );
        assert_eq!(
            l.v1_dir(mem, "../../x"),
            PathBuf::from("/sys/fs/cgroup/memory/process_api/abc/x")
        );
    }

    #[test]
    fn pure_v2_places_relative_paths_beside_the_runtime() {
        let mi = "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let l = Layout::parse(mi, "0::/user.slice/session-1.scope\n", SUBSYS);
        assert_eq!(l.mode(), Mode::V2);
        assert_eq!(
            l.unified_dir("c1").unwrap(),
            PathBuf::from("/sys/fs/cgroup/user.slice/c1")
        );
        assert_eq!(
            l.unified_dir("/machine/c1").unwrap(),
            PathBuf::from("/sys/fs/cgroup/machine/c1")
        );
    }

    #[test]
    fn v1_without_cgroup2_and_namespaced_roots() {
        let mi = "35 31 0:32 /docker/x /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        let l = Layout::parse(mi, "4:memory:/docker/x/sub\n", SUBSYS);
        assert_eq!(l.mode(), Mode::V1);
        assert!(l.unified_dir("c").is_none());
        assert_eq!(
            l.v1_dir(&l.v1[0], "c"),
            PathBuf::from("/sys/fs/cgroup/memory/sub/c")
        );
    }

    #[test]
    fn named_only_v1_with_cgroup2_is_v2() {
        let mi = "\
40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
";
        assert_eq!(Layout::parse(mi, "", SUBSYS).mode(), Mode::V2);
    }

    #[test]
    fn clean_resolves_dots() {
        assert_eq!(clean("/a/./b/../c"), (true, vec!["a".into(), "c".into()]));
        assert_eq!(clean("x//y/"), (false, vec!["x".into(), "y".into()]));
        assert_eq!(clean("/../a").1, vec!["a".to_string()]);
    }
}
