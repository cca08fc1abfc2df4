//! /proc/PID/mountinfo parsing and host-side helpers for the rootfs, devices and security-path
//! suites (included with `#[path = "common/mountinfo.rs"] mod mountinfo;`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// One line of mountinfo.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: u32,
    pub parent: u32,
    pub root: String,
    pub mountpoint: String,
    /// Per-mount options (ro, nosuid, relatime, …).
    pub opts: Vec<String>,
    /// Optional fields (shared:N, master:N, …).
    pub optional: Vec<String>,
    pub fstype: String,
    pub source: String,
    /// Superblock options.
    pub superopts: Vec<String>,
}

impl Entry {
    pub fn has(&self, opt: &str) -> bool {
        self.opts.iter().any(|o| o == opt)
    }
    pub fn has_super(&self, opt: &str) -> bool {
        self.superopts.iter().any(|o| o == opt)
    }
    pub fn shared(&self) -> bool {
        self.optional.iter().any(|o| o.starts_with("shared:"))
    }
    pub fn slave(&self) -> bool {
        self.optional.iter().any(|o| o.starts_with("master:"))
    }
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

pub fn parse(text: &str) -> Vec<Entry> {
    text.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let f: Vec<&str> = pre.split(' ').collect();
            let p: Vec<&str> = post.split(' ').collect();
            Some(Entry {
                id: f[0].parse().ok()?,
                parent: f[1].parse().ok()?,
                root: unescape(f[3]),
                mountpoint: unescape(f[4]),
                opts: f[5].split(',').map(str::to_string).collect(),
                optional: f[6..].iter().map(|s| s.to_string()).collect(),
                fstype: p.first()?.to_string(),
                source: p.get(1).unwrap_or(&"").to_string(),
                superopts: p
                    .get(2)
                    .unwrap_or(&"")
                    .split(',')
                    .map(str::to_string)
                    .collect(),
            })
        })
        .collect()
}

/// The mount table of process `pid` (paths as that process sees them).
pub fn of_pid(pid: i32) -> Vec<Entry> {
    parse(&std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap())
}

/// The last (topmost) mount at `mountpoint`.
pub fn at<'a>(mi: &'a [Entry], mountpoint: &str) -> Option<&'a Entry> {
    mi.iter().rev().find(|e| e.mountpoint == mountpoint)
}

/// Like [`at`] but panics with the whole table when missing.
pub fn must<'a>(mi: &'a [Entry], mountpoint: &str) -> &'a Entry {
    at(mi, mountpoint).unwrap_or_else(|| {
        let all: Vec<String> = mi
            .iter()
            .map(|e| format!("{} {} {}", e.mountpoint, e.fstype, e.opts.join(",")))
            .collect();
        panic!("no mount at {mountpoint}; table:\n{}", all.join("\n"))
    })
}

/// A mount made on the host by a test, detached (with everything under it) on drop.
pub struct HostMount {
    pub path: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl HostMount {
    /// A tmpfs on a fresh temporary directory.
    pub fn tmpfs(prefix: &str) -> HostMount {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(std::env::temp_dir())
            .unwrap();
        let path = dir.path().to_path_buf();
        HostMount::tmpfs_at(&path, "").with_dir(dir)
    }

    /// A tmpfs at `path` with `data` options.
    pub fn tmpfs_at(path: &Path, data: &str) -> HostMount {
        nix::mount::mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            (!data.is_empty()).then_some(data),
        )
        .unwrap_or_else(|e| panic!("mount tmpfs on {}: {e}", path.display()));
        HostMount {
            path: path.to_path_buf(),
            _dir: None,
        }
    }

    fn with_dir(mut self, dir: tempfile::TempDir) -> HostMount {
        self._dir = Some(dir);
        self
    }

    /// Changes the mount's propagation (MS_SHARED, MS_SLAVE, …).
    pub fn propagation(&self, flags: nix::mount::MsFlags) -> &Self {
        nix::mount::mount(None::<&str>, &self.path, None::<&str>, flags, None::<&str>).unwrap();
        self
    }

    /// Remounts with extra per-mount flags (e.g. nosuid, nodev).
    pub fn remount(&self, flags: nix::mount::MsFlags) -> &Self {
        nix::mount::mount(
            None::<&str>,
            &self.path,
            None::<&str>,
            nix::mount::MsFlags::MS_REMOUNT | nix::mount::MsFlags::MS_BIND | flags,
            None::<&str>,
        )
        .unwrap();
        self
    }
}

impl Drop for HostMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Mount points of this (the host) process at or below `path`.
pub fn host_mounts_under(path: &Path) -> Vec<String> {
    parse(&std::fs::read_to_string("/proc/self/mountinfo").unwrap())
        .into_iter()
        .filter(|e| Path::new(&e.mountpoint).starts_with(path))
        .map(|e| e.mountpoint)
        .collect()
}
