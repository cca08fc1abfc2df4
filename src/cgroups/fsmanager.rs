//! [`FsManager`], Berth's cgroupfs driver: it places the container's cgroup in every hierarchy
//! this host has (`layout.rs`), creates and removes it, and sends each `linux.resources` value to
//! the hierarchy that holds its controller: the v1 files (`v1.rs`) or the v2 ones (`v2.rs`).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use oci_spec::runtime::LinuxResources;

use super::fs::{self, io};
use super::layout::{Layout, Mode};
use super::{devices, stats, v1, v2};
use super::{CgroupError, CgroupRecord, Entry, FreezerState, Manager, OomWatch, Stats};

/// The container's directory in one v1 hierarchy.
#[derive(Debug)]
struct V1Dir {
    controllers: Vec<String>,
    dir: PathBuf,
    /// The hierarchy's mount point (known when the manager was made for a new container).
    mount: Option<PathBuf>,
}

/// Berth's cgroupfs driver.
#[derive(Debug)]
pub struct FsManager {
    path: String,
    v1: Vec<V1Dir>,
    unified: Option<PathBuf>,
    unified_mount: Option<PathBuf>,
    v2_mode: bool,
    created: RefCell<Vec<PathBuf>>,
    /// Whether the leaf directories are the container's (false while a create refused in a
    /// frozen pre-existing cgroup unwinds: then only what it created is removed).
    owned: Cell<bool>,
    /// The memory controller's OOM-kill count when `create` made (or found) the cgroup.
    oom_kills_at_create: Cell<u64>,
    /// Processes (pid, start time) found in a pre-existing cgroup the container shares.
    foreign: RefCell<Vec<(i32, u64)>>,
}

/// Where a controller lives for this container.
enum Ctl<'a> {
    V1(&'a Path),
    V2(&'a Path),
}

const F: &str = "linux.resources";

fn nz(v: Option<i64>) -> bool {
    v.is_some_and(|x| x != 0)
}

/// How long `destroy` waits for a cgroup's processes to be gone.
const DESTROY_TIMEOUT: Duration = Duration::from_secs(10);

impl FsManager {
    /// The manager for a container whose cgroup is `path` on a host laid out as `l`.
    pub fn new(l: &Layout, path: &str) -> FsManager {
        let mode = l.mode();
        let v1 = if mode == Mode::V2 {
            vec![]
        } else {
            l.v1.iter()
                .map(|h| V1Dir {
                    controllers: h.controllers.clone(),
                    dir: l.v1_dir(h, path),
                    mount: Some(h.mountpoint.clone()),
                })
                .collect()
        };
        FsManager {
            path: path.to_string(),
            v1,
            unified: l.unified_dir(path),
            unified_mount: l.unified.as_ref().map(|u| u.mountpoint.clone()),
            v2_mode: mode == Mode::V2,
            created: RefCell::new(vec![]),
            owned: Cell::new(true),
            oom_kills_at_create: Cell::new(0),
            foreign: RefCell::new(vec![]),
        }
    }

    pub fn from_record(rec: &CgroupRecord) -> FsManager {
        if rec.paths.is_empty() {
            // A record without paths: place the path on this host's layout again.
            if let Ok(l) = Layout::detect() {
                let mut m = FsManager::new(&l, &rec.path);
                m.v1.iter_mut().for_each(|h| h.mount = None);
                m.unified_mount = None;
                m.foreign = RefCell::new(rec.foreign.clone());
                return m;
            }
        }
        let mut by_dir: Vec<V1Dir> = Vec::new();
        for (ctrl, dir) in rec.paths.iter().filter(|(k, _)| !k.is_empty()) {
            match by_dir.iter_mut().find(|h| &h.dir == dir) {
                Some(h) => h.controllers.push(ctrl.clone()),
                None => by_dir.push(V1Dir {
                    controllers: vec![ctrl.clone()],
                    dir: dir.clone(),
                    mount: None,
                }),
            }
        }
        FsManager {
            path: rec.path.clone(),
            v2_mode: by_dir.is_empty(),
            v1: by_dir,
            unified: rec.paths.get("").cloned(),
            unified_mount: None,
            created: RefCell::new(rec.created.clone()),
            owned: Cell::new(true),
            oom_kills_at_create: Cell::new(0),
            foreign: RefCell::new(rec.foreign.clone()),
        }
    }

    fn v1_dir(&self, controller: &str) -> Option<&Path> {
        self.v1
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == controller))
            .map(|h| h.dir.as_path())
    }

    /// Controllers usable in the unified hierarchy: those of the container's cgroup once it
    /// exists, else those the hierarchy's root offers (which `create` enables on the way down).
    fn unified_controllers(&self) -> Vec<String> {
        let from = |d: &Path| {
            fs::read(d, "cgroup.controllers")
                .ok()
                .map(|s| s.split_whitespace().map(str::to_string).collect())
        };
        self.unified
            .as_deref()
            .and_then(from)
            .or_else(|| self.unified_mount.as_deref().and_then(from))
            .unwrap_or_default()
    }

    /// Where controller `name` (its v1 name) is, given the unified hierarchy's controllers.
    fn ctl(&self, name: &str, avail: &[String]) -> Option<Ctl<'_>> {
        if let Some(d) = self.v1_dir(name) {
            return Some(Ctl::V1(d));
        }
        let u = self.unified.as_deref()?;
        let v2name = match name {
            "blkio" => "io",
            "cpuacct" => "cpu",
            "net_cls" | "net_prio" => return None,
            n => n,
        };
        // devices (eBPF) and freezer (cgroup.freeze) are part of every v2 cgroup; so is
        // cpu.stat.
        if matches!(name, "devices" | "freezer" | "cpuacct") || avail.iter().any(|a| a == v2name) {
            Some(Ctl::V2(u))
        } else {
            None
        }
    }

    /// The memory cgroup's OOM-kill count, its limit and its peak usage (as the kernel prints
    /// them), where this host has a memory controller.
    fn oom_kills(&self) -> Option<(u64, String, String)> {
        let (d, events, limit, peak) = match self.ctl("memory", &self.unified_controllers())? {
            Ctl::V1(d) => (
                d,
                "memory.oom_control",
                "memory.limit_in_bytes",
                "memory.max_usage_in_bytes",
            ),
            Ctl::V2(d) => (d, "memory.events", "memory.max", "memory.peak"),
        };
        let kills = fs::read_kv(d, events).ok()?.get("oom_kill").copied()?;
        let read = |f: &str| {
            fs::read(d, f)
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "?".into())
        };
        Some((kills, read(limit), read(peak)))
    }

    fn missing(&self, field: &str, controller: &str) -> CgroupError {
        let place = if self.v2_mode {
            "in this host's cgroup v2 hierarchy"
        } else {
            "on this host"
        };
        CgroupError::Unsupported(format!(
            "{F}.{field}: the {controller} cgroup controller is not available {place}"
        ))
    }

    /// Every directory that is the container's own (v1 hierarchies, then the unified one).
    fn leaves(&self) -> Vec<&Path> {
        self.v1
            .iter()
            .map(|h| h.dir.as_path())
            .chain(self.unified.as_deref())
            .collect()
    }

    /// The directory whose cgroup.procs lists the container's processes.
    fn procs_dir(&self) -> Option<&Path> {
        if self.v2_mode {
            return self.unified.as_deref();
        }
        self.v1_dir("freezer")
            .or(self.unified.as_deref())
            .or(self.v1.first().map(|h| h.dir.as_path()))
    }

    fn freezer(&self) -> Option<Ctl<'_>> {
        if let Some(d) = self.v1_dir("freezer") {
            return Some(Ctl::V1(d));
        }
        self.unified
            .as_deref()
            .filter(|u| fs::exists(u, "cgroup.freeze") || !u.exists())
            .map(Ctl::V2)
    }

    /// Makes `dir` (below `mount`), recording the levels it creates. Returns whether `dir`
    /// already existed. Usually the parent exists and one mkdir does it; otherwise one level at
    /// a time. In a v1 cpuset hierarchy every level down to `dir`, new or not, is given its
    /// parent's cpus and mems when it has none (as runc does): a cpuset cgroup starts empty and
    /// takes no task below an empty level ("No space left on device").
    fn make_dirs(
        &self,
        mount: Option<&Path>,
        dir: &Path,
        cpuset: bool,
    ) -> Result<bool, CgroupError> {
        let Some(mount) = mount else {
            let existed = dir.exists();
            std::fs::create_dir_all(dir).map_err(io("create", dir))?;
            return Ok(existed);
        };
        if !cpuset {
            match std::fs::create_dir(dir) {
                Ok(()) => {
                    self.created.borrow_mut().push(dir.to_path_buf());
                    return Ok(false);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("create", dir)(e)),
            }
        }
        let rel = dir.strip_prefix(mount).map_err(|_| {
            CgroupError::Other(format!(
                "cgroup {dir:?} is not below its hierarchy {mount:?}"
            ))
        })?;
        let mut cur = mount.to_path_buf();
        let mut existed = true;
        for comp in rel.components() {
            let parent = cur.clone();
            cur.push(comp);
            existed = match std::fs::create_dir(&cur) {
                Ok(()) => {
                    self.created.borrow_mut().push(cur.clone());
                    false
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => true,
                Err(e) => return Err(io("create", &cur)(e)),
            };
            if cpuset {
                copy_cpuset(&parent, &cur, !existed)?;
            }
        }
        Ok(existed)
    }

    fn apply_checked(&self, r: &LinuxResources, avail: &[String]) -> Result<(), CgroupError> {
        if let Some(c) = r.cpu() {
            if c.cpus().as_deref().is_some_and(|v| !v.is_empty())
                || c.mems().as_deref().is_some_and(|v| !v.is_empty())
            {
                match self.ctl("cpuset", avail) {
                    Some(Ctl::V1(d) | Ctl::V2(d)) => v1::cpuset(d, c)?,
                    None => return Err(self.missing("cpu.cpus", "cpuset")),
                }
                crate::fault::point("cgroup:cpuset-written")?;
            }
        }
        if let Some(devs) = r.devices() {
            let rules = devices::rules(devs)?;
            match self.ctl("devices", avail) {
                Some(Ctl::V1(d)) => devices::apply_v1(d, &rules)?,
                Some(Ctl::V2(d)) => devices::apply_v2(d, &rules)?,
                None => return Err(self.missing("devices", "devices")),
            }
            crate::fault::point("cgroup:devices-written")?;
        }
        if let Some(m) = r.memory().as_ref().filter(|m| memory_set(m)) {
            match self.ctl("memory", avail) {
                Some(Ctl::V1(d)) => v1::memory(d, m)?,
                Some(Ctl::V2(d)) => v2::memory(d, m)?,
                None => return Err(self.missing("memory", "memory")),
            }
            crate::fault::point("cgroup:memory-written")?;
        }
        if let Some(c) = r.cpu().as_ref().filter(|c| cpu_set(c)) {
            match self.ctl("cpu", avail) {
                Some(Ctl::V1(d)) => v1::cpu(d, c)?,
                Some(Ctl::V2(d)) => v2::cpu(d, c)?,
                None => return Err(self.missing("cpu", "cpu")),
            }
            crate::fault::point("cgroup:cpu-written")?;
        }
        if let Some(p) = r.pids().filter(|p| p.limit() != 0) {
            match self.ctl("pids", avail) {
                Some(Ctl::V1(d) | Ctl::V2(d)) => v1::pids(d, p.limit())?,
                None => return Err(self.missing("pids.limit", "pids")),
            }
            crate::fault::point("cgroup:pids-written")?;
        }
        if let Some(b) = r.block_io().as_ref().filter(|b| blkio_set(b)) {
            match self.ctl("blkio", avail) {
                Some(Ctl::V1(d)) => v1::blkio(d, b)?,
                Some(Ctl::V2(d)) => v2::io_(d, b)?,
                None => return Err(self.missing("blockIO", "blkio (io)")),
            }
            crate::fault::point("cgroup:blkio-written")?;
        }
        if let Some(h) = r.hugepage_limits().as_ref().filter(|h| !h.is_empty()) {
            match self.ctl("hugetlb", avail) {
                Some(Ctl::V1(d)) => v1::hugetlb(d, h)?,
                Some(Ctl::V2(d)) => v2::hugetlb(d, h)?,
                None => return Err(self.missing("hugepageLimits", "hugetlb")),
            }
            crate::fault::point("cgroup:hugetlb-written")?;
        }
        if let Some(n) = r.network() {
            if let Some(id) = n.class_id() {
                match self.ctl("net_cls", avail) {
                    Some(Ctl::V1(d)) => v1::net_cls(d, id)?,
                    _ => return Err(self.missing("network.classID", "net_cls")),
                }
                crate::fault::point("cgroup:net-cls-written")?;
            }
            if let Some(p) = n.priorities().as_ref().filter(|p| !p.is_empty()) {
                match self.ctl("net_prio", avail) {
                    Some(Ctl::V1(d)) => v1::net_prio(d, p)?,
                    _ => return Err(self.missing("network.priorities", "net_prio")),
                }
                crate::fault::point("cgroup:net-prio-written")?;
            }
        }
        if let Some(rdma) = r.rdma().as_ref().filter(|m| !m.is_empty()) {
            match self.ctl("rdma", avail) {
                Some(Ctl::V1(d) | Ctl::V2(d)) => set_rdma(d, rdma)?,
                None => return Err(self.missing("rdma", "rdma")),
            }
        }
        if let Some(u) = r.unified().as_ref().filter(|u| !u.is_empty()) {
            self.check_unified(u, avail)?;
            let d = self.unified.as_deref().expect("checked");
            v2::unified(d, u)?;
        }
        Ok(())
    }

    fn check_unified(
        &self,
        u: &HashMap<String, String>,
        avail: &[String],
    ) -> Result<(), CgroupError> {
        if self.unified.is_none() {
            return Err(CgroupError::invalid(
                format!("{F}.unified"),
                "cgroup v2 is not available on this host (it has cgroup v1 only)",
            ));
        }
        let mut keys: Vec<&String> = u.keys().collect();
        keys.sort();
        for k in keys {
            let ctrl = v2::check_unified_key(k)?;
            // On a hybrid host only controllers that live in the unified hierarchy may be set
            // there; the others are governed by their v1 hierarchy.
            if !self.v2_mode && !avail.iter().any(|a| a == ctrl) {
                return Err(CgroupError::invalid(
                    format!("{F}.unified[{k:?}]"),
                    format!(
                        "the {ctrl} controller is not in this host's cgroup v2 hierarchy (hybrid mode: only {} can be set through unified)",
                        if avail.is_empty() { "nothing".to_string() } else { avail.join(", ") }
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Removes the parents Berth created, deepest first, if nothing else lives there.
    fn remove_created_parents(&self) {
        let created = self.created.borrow();
        let leaves = self.leaves();
        let mut parents: Vec<&PathBuf> = created
            .iter()
            .filter(|c| !leaves.contains(&c.as_path()))
            .collect();
        parents.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for p in parents {
            let _ = std::fs::remove_dir(p);
        }
    }

    /// Removes `dir` and the cgroups below it, waiting for exiting processes. An empty cgroup
    /// (the usual case) goes with one rmdir; only a busy one is searched for children.
    fn remove_tree(&self, dir: &Path, deadline: Instant) -> Result<(), CgroupError> {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY | libc::ENOTEMPTY)) => {}
            Err(e) => return Err(io("remove", dir)(e)),
        }
        for sub in fs::subdirs(dir) {
            self.remove_tree(&sub, deadline)?;
        }
        let mut round = 0u32;
        loop {
            match std::fs::remove_dir(dir) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    if Instant::now() >= deadline {
                        let pids = fs::procs(dir).unwrap_or_default();
                        return Err(CgroupError::Other(format!(
                            "cgroup {} is still busy after {}s (processes {pids:?}); kill them and delete again",
                            dir.display(),
                            DESTROY_TIMEOUT.as_secs()
                        )));
                    }
                    wait_empty(dir, deadline, round);
                    round += 1;
                }
                Err(e) => return Err(io("remove", dir)(e)),
            }
        }
    }
}

/// Sleeps until `dir` may be removable: on the exit of the processes it lists (pidfds), or on
/// cgroup.events reporting it unpopulated (v2). Processes already gone from the list but not
/// yet out of the cgroup (v1) are waited for with short, growing sleeps.
fn wait_empty(dir: &Path, deadline: Instant, round: u32) {
    let left = deadline.saturating_duration_since(Instant::now());
    let pids = fs::procs(dir).unwrap_or_default();
    if !pids.is_empty() {
        let fds: Vec<OwnedFd> = pids
            .iter()
            .filter_map(|&p| crate::linux::sys::pidfd_open(p).ok())
            .collect();
        if !fds.is_empty() {
            let mut pfds: Vec<PollFd> = fds
                .iter()
                .map(|f| PollFd::new(f.as_fd(), PollFlags::POLLIN))
                .collect();
            // Wake at the first exit, then look again.
            let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
            let _ = poll(
                &mut pfds,
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
            );
            return;
        }
    }
    if fs::exists(dir, "cgroup.events") && round == 0 {
        let _ = fs::wait_file(dir, "cgroup.events", deadline, |s| {
            fs::parse_kv(s).get("populated") == Some(&0)
        });
        return;
    }
    std::thread::sleep(Duration::from_millis(1 << round.min(6)).min(left));
}

/// Gives a v1 cpuset cgroup its parent's cpus and mems (a new one has none, and takes no
/// task without them). A cgroup Berth just made (`fresh`) is empty or, under a parent with
/// cgroup.clone_children set, already holds exactly these values: it is not read first. An
/// existing one keeps values it has.
fn copy_cpuset(parent: &Path, child: &Path, fresh: bool) -> Result<(), CgroupError> {
    for f in ["cpuset.cpus", "cpuset.mems"] {
        let empty = fresh
            || fs::read(child, f)
                .map_err(io("read", child))?
                .trim()
                .is_empty();
        if empty {
            let v = fs::read(parent, f).map_err(io("read", parent))?;
            fs::set(&format!("{f} (inherited)"), child, f, v.trim())?;
        }
    }
    Ok(())
}

fn set_rdma(
    d: &Path,
    m: &HashMap<String, oci_spec::runtime::LinuxRdma>,
) -> Result<(), CgroupError> {
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort();
    for dev in keys {
        let r = m[dev];
        let mut v = dev.clone();
        if let Some(h) = r.hca_handles() {
            v.push_str(&format!(" hca_handle={h}"));
        }
        if let Some(o) = r.hca_objects() {
            v.push_str(&format!(" hca_object={o}"));
        }
        if v.len() > dev.len() {
            fs::set(&format!("{F}.rdma[{dev:?}]"), d, "rdma.max", &v)?;
        }
    }
    Ok(())
}

fn memory_set(m: &oci_spec::runtime::LinuxMemory) -> bool {
    #[allow(deprecated)]
    let kernel = m.kernel();
    nz(m.limit())
        || nz(m.reservation())
        || nz(m.swap())
        || nz(kernel)
        || nz(m.kernel_tcp())
        || m.swappiness().is_some()
        || m.disable_oom_killer() == Some(true)
        || m.use_hierarchy().is_some()
}

fn cpu_set(c: &oci_spec::runtime::LinuxCpu) -> bool {
    c.shares().is_some_and(|v| v != 0)
        || nz(c.quota())
        || c.period().is_some_and(|v| v != 0)
        || c.burst().is_some()
        || nz(c.realtime_runtime())
        || c.realtime_period().is_some_and(|v| v != 0)
        || c.idle().is_some()
}

fn blkio_set(b: &oci_spec::runtime::LinuxBlockIo) -> bool {
    b.weight().is_some_and(|v| v != 0)
        || b.leaf_weight().is_some_and(|v| v != 0)
        || b.weight_device().as_ref().is_some_and(|v| !v.is_empty())
        || [
            b.throttle_read_bps_device(),
            b.throttle_write_bps_device(),
            b.throttle_read_iops_device(),
            b.throttle_write_iops_device(),
        ]
        .iter()
        .any(|l| l.as_ref().is_some_and(|v| !v.is_empty()))
}

/// Value checks that need no cgroup file (the kernel would refuse or clamp these).
fn check_values(r: &LinuxResources) -> Result<(), CgroupError> {
    if let Some(m) = r.memory() {
        if let Some(s) = m.swappiness().filter(|&s| s > 100) {
            return Err(CgroupError::invalid(
                format!("{F}.memory.swappiness"),
                format!("{s} is out of range (0-100)"),
            ));
        }
        if let (Some(l), Some(s)) = (m.limit().filter(|&l| l > 0), m.swap().filter(|&s| s > 0)) {
            if s < l {
                return Err(CgroupError::invalid(
                    format!("{F}.memory.swap"),
                    format!("the memory+swap limit {s} must be at least memory.limit ({l})"),
                ));
            }
        }
        for (name, v) in [
            ("limit", m.limit()),
            ("swap", m.swap()),
            ("reservation", m.reservation()),
        ] {
            if let Some(v) = v.filter(|&v| v < -1) {
                return Err(CgroupError::invalid(
                    format!("{F}.memory.{name}"),
                    format!("invalid value {v} (use a number of bytes, or -1 for no limit)"),
                ));
            }
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(s) = c.shares().filter(|&s| s != 0 && !(2..=262144).contains(&s)) {
            return Err(CgroupError::invalid(
                format!("{F}.cpu.shares"),
                format!("{s} is out of range (2-262144)"),
            ));
        }
    }
    if let Some(b) = r.block_io() {
        let w = |f: String, v: Option<u16>| match v.filter(|&v| v != 0 && !(10..=1000).contains(&v))
        {
            Some(v) => Err(CgroupError::invalid(
                f,
                format!("{v} is out of range (10-1000)"),
            )),
            None => Ok(()),
        };
        w(format!("{F}.blockIO.weight"), b.weight())?;
        w(format!("{F}.blockIO.leafWeight"), b.leaf_weight())?;
        for (i, d) in b.weight_device().iter().flatten().enumerate() {
            w(format!("{F}.blockIO.weightDevice[{i}].weight"), d.weight())?;
            w(
                format!("{F}.blockIO.weightDevice[{i}].leafWeight"),
                d.leaf_weight(),
            )?;
        }
    }
    if let Some(h) = r.hugepage_limits() {
        let sizes = stats::hugepage_sizes();
        for (i, l) in h.iter().enumerate() {
            if !sizes.iter().any(|s| s == l.page_size()) {
                return Err(v1::bad_pagesize(i, l.page_size()));
            }
        }
    }
    if let Some(d) = r.devices() {
        devices::rules(d)?;
        for w in devices::ignored_access(d) {
            crate::logging::warn(w);
        }
    }
    Ok(())
}

/// A process's start time (field 22 of /proc/PID/stat), which tells it from a later process
/// given the same pid.
fn start_time(pid: i32) -> Option<u64> {
    let s = crate::linux::procfs::read_pseudo(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: count fields after the last ')'.
    s[s.rfind(')')? + 2..].split(' ').nth(19)?.parse().ok()
}

fn kernel_has_clone_into_cgroup() -> bool {
    let Ok(u) = nix::sys::utsname::uname() else {
        return false;
    };
    let rel = u.release().to_string_lossy();
    let mut it = rel.split(['.', '-']);
    let major: u32 = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    let minor: u32 = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    (major, minor) >= (5, 7)
}

impl Manager for FsManager {
    fn validate(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        check_values(r)?;
        let avail = self.unified_controllers();
        let need = |ok: bool, field: &str, name: &str| -> Result<(), CgroupError> {
            if ok && self.ctl(name, &avail).is_none() {
                return Err(self.missing(field, name));
            }
            Ok(())
        };
        if let Some(m) = r.memory() {
            need(memory_set(m), "memory", "memory")?;
        }
        if let Some(c) = r.cpu() {
            need(cpu_set(c), "cpu", "cpu")?;
            need(
                c.cpus().as_deref().is_some_and(|v| !v.is_empty())
                    || c.mems().as_deref().is_some_and(|v| !v.is_empty()),
                "cpu.cpus",
                "cpuset",
            )?;
        }
        need(
            r.pids().is_some_and(|p| p.limit() != 0),
            "pids.limit",
            "pids",
        )?;
        if let Some(b) = r.block_io() {
            need(blkio_set(b), "blockIO", "blkio")?;
        }
        need(
            r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty()),
            "hugepageLimits",
            "hugetlb",
        )?;
        if let Some(n) = r.network() {
            need(n.class_id().is_some(), "network.classID", "net_cls")?;
            need(
                n.priorities().as_ref().is_some_and(|p| !p.is_empty()),
                "network.priorities",
                "net_prio",
            )?;
        }
        need(
            r.rdma().as_ref().is_some_and(|m| !m.is_empty()),
            "rdma",
            "rdma",
        )?;
        need(r.devices().is_some(), "devices", "devices")?;
        if let Some(u) = r.unified().as_ref().filter(|u| !u.is_empty()) {
            self.check_unified(u, &avail)?;
        }
        Ok(())
    }

    fn create(&self) -> Result<(), CgroupError> {
        let mut existed = Vec::new();
        for h in &self.v1 {
            let pre = self.make_dirs(
                h.mount.as_deref(),
                &h.dir,
                h.controllers.iter().any(|c| c == "cpuset"),
            )?;
            if pre {
                existed.push(h.dir.clone());
            }
            crate::fault::point("cgroup:dir-made")?;
        }
        if let Some(u) = &self.unified {
            let pre = self.make_dirs(self.unified_mount.as_deref(), u, false)?;
            if let Some(mount) = &self.unified_mount {
                v2::enable_controllers(mount, u);
            }
            if pre {
                existed.push(u.clone());
            }
        }
        if let Some((kills, _, _)) = self.oom_kills() {
            self.oom_kills_at_create.set(kills);
        }
        // A frozen cgroup (a pre-existing one, or below a frozen parent) would hang the init at
        // its first step: refused, as runc refuses it.
        let state = self.freezer_state().unwrap_or(FreezerState::Thawed);
        if matches!(state, FreezerState::Frozen | FreezerState::Freezing) {
            self.owned.set(false);
            let dir = match self.freezer() {
                Some(Ctl::V1(d) | Ctl::V2(d)) => d.display().to_string(),
                None => self.path.clone(),
            };
            return Err(CgroupError::invalid(
                "linux.cgroupsPath",
                format!(
                    "container's cgroup unexpectedly frozen ({dir} is {}): thaw it or choose another cgroup",
                    if state == FreezerState::Frozen { "FROZEN" } else { "FREEZING" }
                ),
            ));
        }
        // A pre-existing cgroup with processes in it is shared, with a warning, as runc 1.1
        // does (the runtime-spec does not say). Those processes stay out of the container's
        // lists, signals and waits.
        let mut foreign: Vec<(i32, u64)> = existed
            .iter()
            .flat_map(|d| fs::procs(d).unwrap_or_default())
            .filter_map(|p| Some((p, start_time(p)?)))
            .collect();
        foreign.sort_unstable();
        foreign.dedup();
        if !foreign.is_empty() {
            crate::logging::warn(format!(
                "container's cgroup is not empty: {} process(es) found in {}; the container shares it",
                foreign.len(),
                self.path
            ));
            *self.foreign.borrow_mut() = foreign;
        }
        Ok(())
    }

    fn entry(&self) -> Option<Entry> {
        let v1: Vec<&Path> = self.v1.iter().map(|h| h.dir.as_path()).collect();
        Entry::open(self.unified.as_deref(), &v1, kernel_has_clone_into_cgroup)
    }

    fn add(&self, pid: i32) -> Result<(), CgroupError> {
        for d in self.leaves() {
            fs::write(d, "cgroup.procs", &pid.to_string())
                .map_err(io(&format!("add process {pid}"), d))?;
        }
        Ok(())
    }

    fn apply(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        self.apply_checked(r, &self.unified_controllers())
    }

    fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let Some(d) = self.procs_dir() else {
            return Ok(vec![]);
        };
        let mut pids = fs::procs_recursive(d).map_err(io("read cgroup.procs", d))?;
        let foreign = self.foreign.borrow();
        if !foreign.is_empty() {
            pids.retain(|&p| !start_time(p).is_some_and(|t| foreign.contains(&(p, t))));
        }
        Ok(pids)
    }

    fn freeze(&self) -> Result<(), CgroupError> {
        match self.freezer() {
            Some(Ctl::V1(d)) => v1::freeze(d),
            Some(Ctl::V2(d)) => v2::freeze(d),
            None => Err(CgroupError::Unsupported(
                "freezer: this host has no freezer cgroup (neither the v1 freezer controller nor cgroup v2)".into(),
            )),
        }
    }

    fn thaw(&self) -> Result<(), CgroupError> {
        match self.freezer() {
            Some(Ctl::V1(d)) => v1::thaw(d),
            Some(Ctl::V2(d)) => v2::thaw(d),
            None => Ok(()),
        }
    }

    fn freezer_state(&self) -> Result<FreezerState, CgroupError> {
        match self.freezer() {
            Some(Ctl::V1(d) | Ctl::V2(d)) if !d.exists() => Ok(FreezerState::Thawed),
            Some(Ctl::V1(d)) => v1::freezer_state(d),
            Some(Ctl::V2(d)) => v2::freezer_state(d),
            None => Ok(FreezerState::Thawed),
        }
    }

    fn signal_all(&self, sig: i32) -> Result<(), CgroupError> {
        if !self.exists() {
            return Ok(());
        }
        if sig == libc::SIGKILL && self.foreign.borrow().is_empty() {
            // One write kills everything in the cgroup, atomically (kernel 5.14+); not in a
            // shared cgroup. On a hybrid host the unified cgroup holds the same processes.
            if let Some(u) = self
                .unified
                .as_deref()
                .filter(|u| fs::exists(u, "cgroup.kill"))
            {
                if fs::write(u, "cgroup.kill", "1").is_ok() {
                    // Frozen v1 tasks only die once thawed.
                    if let Some(d) = self.v1_dir("freezer") {
                        let _ = v1::thaw(d);
                    }
                    return Ok(());
                }
            }
        }
        let before = self.freezer_state().unwrap_or(FreezerState::Thawed);
        let froze = before != FreezerState::Frozen
            && match self.freeze() {
                Ok(()) => true,
                Err(e) => {
                    crate::logging::warn(format!(
                        "signal all processes: {e}; signalling without freezing"
                    ));
                    false
                }
            };
        let pids = self.pids();
        if let Ok(pids) = &pids {
            for &p in pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p),
                    nix::sys::signal::Signal::try_from(sig).ok(),
                );
            }
        }
        if froze || (sig == libc::SIGKILL && before != FreezerState::Thawed) {
            self.thaw()?;
        }
        pids.map(|_| ())
    }

    fn stats(&self) -> Result<Stats, CgroupError> {
        let avail = self.unified_controllers();
        let mut s = Stats::default();
        match self.ctl("cpuacct", &avail) {
            Some(Ctl::V1(d)) => v1::cpuacct_stats(d, &mut s),
            Some(Ctl::V2(d)) => v2::cpu_stats(d, &mut s),
            None => {}
        }
        if let Some(Ctl::V1(d)) = self.ctl("cpu", &avail) {
            v1::cpu_stats(d, &mut s);
        }
        match self.ctl("cpuset", &avail) {
            Some(Ctl::V1(d)) => v1::cpuset_stats(d, &mut s),
            Some(Ctl::V2(d)) => v2::cpuset_stats(d, &mut s),
            None => {}
        }
        match self.ctl("memory", &avail) {
            Some(Ctl::V1(d)) => v1::memory_stats(d, &mut s)?,
            Some(Ctl::V2(d)) => v2::memory_stats(d, &mut s)?,
            None => {}
        }
        if let Some(Ctl::V1(d) | Ctl::V2(d)) = self.ctl("pids", &avail) {
            v1::pids_stats(d, &mut s);
        }
        match self.ctl("blkio", &avail) {
            Some(Ctl::V1(d)) => v1::blkio_stats(d, &mut s),
            Some(Ctl::V2(d)) => v2::io_stats(d, &mut s),
            None => {}
        }
        match self.ctl("hugetlb", &avail) {
            Some(Ctl::V1(d)) => v1::hugetlb_stats(d, &mut s),
            Some(Ctl::V2(d)) => v2::hugetlb_stats(d, &mut s),
            None => {}
        }
        if !self.exists() {
            return Err(CgroupError::Other(format!(
                "the container's cgroup {} no longer exists",
                self.path
            )));
        }
        Ok(s)
    }

    fn oom_watch(&self) -> Result<OomWatch, CgroupError> {
        match self.ctl("memory", &self.unified_controllers()) {
            Some(Ctl::V1(d)) => OomWatch::v1(d),
            Some(Ctl::V2(d)) => OomWatch::v2(d),
            None => Ok(OomWatch::None),
        }
    }

    fn oom_kill_error(&self) -> Option<CgroupError> {
        let (kills, limit, peak) = self.oom_kills()?;
        (kills > self.oom_kills_at_create.get()).then(|| {
            CgroupError::invalid(
                "linux.resources.memory.limit",
                format!("the container's init was killed by the OOM killer during setup: the memory limit {limit} is below what it needs (peak usage: {peak})"),
            )
        })
    }

    fn exists(&self) -> bool {
        self.procs_dir().is_some_and(Path::exists)
    }

    fn destroy(&self) -> Result<(), CgroupError> {
        if !self.foreign.borrow().is_empty() {
            // A shared cgroup is not the container's: it goes only if it is empty now (as
            // runc, which tries once), and nothing is waited for or thawed.
            for d in self.leaves() {
                let _ = std::fs::remove_dir(d);
            }
            self.remove_created_parents();
            return Ok(());
        }
        let created = self.created.borrow().clone();
        let ours: Vec<&Path> = self
            .leaves()
            .into_iter()
            .filter(|d| self.owned.get() || created.iter().any(|c| c == d))
            .collect();
        // Usually every cgroup is empty by now: one rmdir each. The rest may hold exiting or
        // frozen processes (frozen ones cannot exit: thaw first).
        let busy: Vec<&Path> = ours
            .into_iter()
            .filter(|d| match std::fs::remove_dir(d) {
                Ok(()) => false,
                Err(e) => e.kind() != std::io::ErrorKind::NotFound,
            })
            .collect();
        if !busy.is_empty()
            && self.owned.get()
            && matches!(
                self.freezer_state(),
                Ok(FreezerState::Frozen | FreezerState::Freezing)
            )
        {
            let _ = self.thaw();
        }
        let deadline = Instant::now() + DESTROY_TIMEOUT;
        let mut first_err = None;
        for d in busy {
            if let Err(e) = self.remove_tree(d, deadline) {
                first_err.get_or_insert(e);
            }
        }
        self.remove_created_parents();
        first_err.map_or(Ok(()), Err)
    }

    fn record(&self) -> CgroupRecord {
        let mut paths = BTreeMap::new();
        for h in &self.v1 {
            for c in &h.controllers {
                paths.insert(c.clone(), h.dir.clone());
            }
        }
        if let Some(u) = &self.unified {
            paths.insert(String::new(), u.clone());
        }
        CgroupRecord {
            path: self.path.clone(),
            paths,
            created: self.created.borrow().clone(),
            foreign: self.foreign.borrow().clone(),
            systemd: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::from_record;

    /// A fake hybrid host in a temp dir: v1 memory and freezer hierarchies and a unified
    /// hierarchy holding hugetlb, laid out like /sys/fs/cgroup.
    fn fake_hybrid() -> (tempfile::TempDir, Layout) {
        let root = tempfile::tempdir().unwrap();
        let p = root.path();
        for h in ["memory", "freezer", "unified"] {
            std::fs::create_dir(p.join(h)).unwrap();
        }
        std::fs::write(p.join("unified/cgroup.controllers"), "hugetlb\n").unwrap();
        std::fs::write(p.join("unified/cgroup.subtree_control"), "").unwrap();
        let mi = format!(
            "1 0 0:1 / {0}/memory rw - cgroup cgroup rw,memory\n\
             2 0 0:2 / {0}/freezer rw - cgroup cgroup rw,freezer\n\
             3 0 0:3 / {0}/unified rw - cgroup2 cgroup2 rw\n",
            p.display()
        );
        let l = Layout::parse(
            &mi,
            "2:freezer:/\n1:memory:/\n0::/\n",
            &["memory", "freezer", "hugetlb"],
        );
        (root, l)
    }

    fn resources(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
    }
    #[test]
    fn hybrid_creates_everywhere_records_and_removes() {
        let (root, l) = fake_hybrid();
        let m = FsManager::new(&l, "/berth/c1");
        m.create().unwrap();
        let p = root.path();
        for h in ["memory", "freezer", "unified"] {
            assert!(p.join(h).join("berth/c1").is_dir(), "{h}");
        }
        // hugetlb was enabled for the container on the way down.
        assert_eq!(
            std::fs::read_to_string(p.join("unified/cgroup.subtree_control")).unwrap(),
            "+hugetlb"
        );
        // Without `tasks` files (this fake tree has none) the parent adds the init.
        assert!(m.entry().is_none(), "no tasks files: add() places the init");
        for h in ["memory", "freezer"] {
            std::fs::write(p.join(h).join("berth/c1/tasks"), "").unwrap();
        }
        let e = m.entry().expect("hybrid: the init enters by itself");
        assert!(e.clone_into_fd().is_some(), "born in the unified cgroup");
        assert_eq!(
            e.fds().count(),
            3,
            "the unified directory and two tasks files"
        );
        drop(e);
        let rec = m.record();
        assert_eq!(rec.paths["memory"], p.join("memory/berth/c1"));
        assert_eq!(rec.paths[""], p.join("unified/berth/c1"));
        assert_eq!(rec.created.len(), 6);
        let json = serde_json::to_string(&rec).unwrap();
        let back: CgroupRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, rec);
        // A plain temp dir cannot be rmdir'ed with files in it; clear the fake kernel files.
        for h in ["memory", "freezer", "unified"] {
            for f in std::fs::read_dir(p.join(h).join("berth/c1"))
                .unwrap()
                .flatten()
            {
                std::fs::remove_file(f.path()).unwrap();
            }
        }
        from_record(&back).destroy().unwrap();
        for h in ["memory", "freezer", "unified"] {
            assert!(
                !p.join(h).join("berth").exists(),
                "{h}: created parent removed"
            );
            assert!(p.join(h).exists());
        }
    }

    #[test]
    fn hybrid_validation_names_the_field() {
        let (_root, l) = fake_hybrid();
        let m = FsManager::new(&l, "c1");
        // cpu is not mounted in this fake host.
        let e = m
            .validate(&resources(r#"{"cpu":{"shares":512}}"#))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "linux.resources.cpu: the cpu cgroup controller is not available on this host"
        );
        // Unset or zero values ask for nothing.
        m.validate(&resources(
            r#"{"cpu":{"shares":0,"quota":0},"pids":{"limit":0}}"#,
        ))
        .unwrap();
        let e = m
            .validate(&resources(r#"{"unified":{"memory.high":"1"}}"#))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("linux.resources.unified[\"memory.high\"]: the memory controller is not in this host's cgroup v2 hierarchy"),
            "{e}"
        );
        m.validate(&resources(r#"{"unified":{"hugetlb.2MB.max":"0"}}"#))
            .unwrap();
        let e = m
            .validate(&resources(r#"{"network":{"classID":1}}"#))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("linux.resources.network.classID: the net_cls"),
            "{e}"
        );
        let e = m
            .validate(&resources(r#"{"memory":{"swappiness":101}}"#))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "linux.resources.memory.swappiness: 101 is out of range (0-100)"
        );
        let e = m
            .validate(&resources(r#"{"memory":{"limit":200,"swap":100}}"#))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("linux.resources.memory.swap:"), "{e}");
    }

    #[test]
    fn v1_only_host_rejects_unified() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("memory")).unwrap();
        let mi = format!(
            "1 0 0:1 / {}/memory rw - cgroup cgroup rw,memory\n",
            root.path().display()
        );
        let l = Layout::parse(&mi, "", &["memory"]);
        let m = FsManager::new(&l, "c1");
        let e = m
            .validate(&resources(r#"{"unified":{"memory.high":"1"}}"#))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "linux.resources.unified: cgroup v2 is not available on this host (it has cgroup v1 only)"
        );
    }

    #[test]
    fn pure_v2_fake_tree_applies_and_reports() {
        let root = tempfile::tempdir().unwrap();
        let p = root.path();
        std::fs::write(p.join("cgroup.controllers"), "cpuset cpu io memory pids\n").unwrap();
        std::fs::write(p.join("cgroup.subtree_control"), "").unwrap();
        let mi = format!("1 0 0:1 / {} rw - cgroup2 cgroup2 rw\n", p.display());
        let l = Layout::parse(&mi, "0::/\n", &[]);
        let m = FsManager::new(&l, "/c1");
        m.create().unwrap();
        let c1 = p.join("c1");
        let e = m.entry().expect("cgroup v2: the init is cloned into it");
        assert!(e.clone_into_fd().is_some());
        assert_eq!(
            e.fds().count(),
            1,
            "no v1 hierarchy: nothing to join from inside"
        );
        drop(e);
        // The fake kernel: the files a v2 cgroup with these controllers has.
        for (f, v) in [
            ("cgroup.controllers", "cpuset cpu io memory pids"),
            ("memory.max", "max"),
            ("memory.swap.max", "max"),
            ("cpu.weight", "100"),
            ("pids.max", "max"),
            ("cgroup.freeze", "0"),
            ("cgroup.events", "populated 0\nfrozen 0\n"),
            ("cgroup.procs", ""),
            ("memory.stat", "file 10\n"),
            ("memory.current", "100"),
            ("pids.current", "0"),
        ] {
            std::fs::write(c1.join(f), v).unwrap();
        }
        m.apply(&resources(
            r#"{"memory":{"limit":1000,"swap":3000},"cpu":{"shares":2048},"pids":{"limit":7}}"#,
        ))
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(c1.join("memory.max")).unwrap(),
            "1000"
        );
        assert_eq!(
            std::fs::read_to_string(c1.join("memory.swap.max")).unwrap(),
            "2000"
        );
        assert_eq!(std::fs::read_to_string(c1.join("pids.max")).unwrap(), "7");
        assert!(
            std::fs::read_to_string(c1.join("cpu.weight"))
                .unwrap()
                .parse::<u64>()
                .unwrap()
                > 100
        );
        // rt is refused by name on v2; unified keys are free-form.
        let e = m
            .apply(&resources(r#"{"cpu":{"realtimePeriod":1000}}"#))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("linux.resources.cpu.realtimePeriod:"), "{e}");
        assert_eq!(m.freezer_state().unwrap(), FreezerState::Thawed);
        assert!(m.pids().unwrap().is_empty());
        let s = m.stats().unwrap();
        assert_eq!(s.memory.usage.usage, 100);
        assert_eq!(s.memory.cache, 10);
        let rec = m.record();
        assert_eq!(rec.paths.len(), 1);
        assert_eq!(rec.paths[""], c1);
    }
    /// The v2 driver for real, on this host's cgroup2 hierarchy (the unified one of a hybrid
    /// host works the same): a process cloned straight into the cgroup, freeze and thaw through
    /// cgroup.freeze/cgroup.events, limits of the controllers it holds, stats, cgroup.kill, and
    /// removal.
    #[test]
    fn v2_driver_on_this_hosts_cgroup2_hierarchy() {
        let Ok(mut l) = Layout::detect() else {
            println!("SKIP: no cgroup hierarchy");
            return;
        };
        if l.unified.is_none() || !nix::unistd::geteuid().is_root() {
            println!("SKIP: needs root and a cgroup2 hierarchy");
            return;
        }
        // Only the cgroup2 hierarchy, as on a cgroup v2 host.
        l.v1.clear();
        let path = format!("/berth-unit-v2-{}/c", std::process::id());
        let m = FsManager::new(&l, &path);
        struct Cleanup<'a>(&'a FsManager);
        impl Drop for Cleanup<'_> {
            fn drop(&mut self) {
                let _ = self.0.signal_all(libc::SIGKILL);
                let _ = self.0.destroy();
            }
        }
        let _cleanup = Cleanup(&m);
        m.create().unwrap();
        let dir = m.unified.clone().unwrap();
        assert!(dir.is_dir());
        let Some(e) = m.entry() else {
            println!("SKIP: kernel without CLONE_INTO_CGROUP");
            return;
        };
        let fd = e.clone_into_fd();
        let pid = match crate::linux::sys::clone3_fork(0, fd).unwrap() {
            // This forked child of a threaded test process must not allocate: it only sleeps
            // until killed.
            crate::linux::sys::Forked::Child => loop {
                nix::unistd::pause();
            },
            crate::linux::sys::Forked::Parent(pid) => pid,
        };
        let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        assert!(own.contains(&format!("0::{path}\n")), "{own}");
        assert_eq!(m.pids().unwrap(), vec![pid]);
        m.freeze().unwrap();
        assert_eq!(m.freezer_state().unwrap(), FreezerState::Frozen);
        assert_eq!(fs::read(&dir, "cgroup.freeze").unwrap().trim(), "1");
        m.thaw().unwrap();
        assert_eq!(m.freezer_state().unwrap(), FreezerState::Thawed);
        let ctrls = m.unified_controllers();
        if ctrls.iter().any(|c| c == "hugetlb") && stats::hugepage_sizes().contains(&"2MB".into()) {
            m.apply(&resources(
                r#"{"hugepageLimits":[{"pageSize":"2MB","limit":2097152}]}"#,
            ))
            .unwrap();
            assert_eq!(fs::read(&dir, "hugetlb.2MB.max").unwrap().trim(), "2097152");
        }
        if ctrls.iter().any(|c| c == "pids") {
            m.apply(&resources(r#"{"pids":{"limit":5}}"#)).unwrap();
            assert_eq!(m.stats().unwrap().pids.limit, 5);
        }
        assert!(m.stats().is_ok());
        m.signal_all(libc::SIGKILL).unwrap();
        let st = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap();
        assert!(
            matches!(
                st,
                nix::sys::wait::WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGKILL, _)
            ),
            "{st:?}"
        );
        m.destroy().unwrap();
        assert!(!dir.exists());
        assert!(
            !dir.parent().unwrap().exists(),
            "the parent Berth made is removed too"
        );
    }
}
