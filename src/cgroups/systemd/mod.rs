//! The systemd cgroup driver (`--systemd-cgroup`): the container's cgroup is a transient
//! systemd unit, as with runc's systemd driver, which the engines on systemd hosts select
//! (containerd's `SystemdCgroup = true`, CRI-O's and podman's `cgroup_manager = "systemd"`).
//!
//! - `unit.rs`: `linux.cgroupsPath` as `slice:prefix:name`, and where the unit's cgroup is;
//! - `props.rs`: `linux.resources` and `org.systemd.property.*` annotations as unit properties;
//! - `bus.rs`: the D-Bus calls (StartTransientUnit, StopUnit, …) and their jobs.
//!
//! [`SystemdManager`] asks systemd for the unit when the init exists (its pid goes in
//! `PIDs`), waits for the job, and leaves the rest to the fs driver ([`FsManager`]) on the
//! unit's cgroup, as runc does: what systemd has no property for is written to cgroupfs,
//! hierarchies systemd does not manage (v1 freezer, cpuset, …) get their directory from the
//! fs driver, and pause, stats, ps and signals read and write cgroupfs. `delete` stops the
//! unit and waits until it is gone.

mod bus;
pub mod props;
pub mod unit;

use std::cell::{Cell, RefCell};

use oci_spec::runtime::{LinuxResources, Spec};

use super::layout::{Layout, Mode};
use super::{CgroupError, CgroupRecord, FreezerState, FsManager, Manager, OomWatch, Stats};
use bus::Bus;
use props::{Props, Value};
use unit::UnitPath;

pub struct SystemdManager {
    unit: UnitPath,
    user: bool,
    v2: bool,
    description: String,
    /// Properties sent with StartTransientUnit (resources and annotations), without PIDs.
    props: Props,
    /// Every hierarchy, at the unit's cgroup: writes, reads, pids, freezer, removal.
    fs: FsManager,
    /// The host's layout and the unit's cgroup (a new container only).
    layout: Option<(Layout, String)>,
    /// The hierarchies systemd left without the unit's directory (v1 freezer, cpuset, …, and
    /// any controller this systemd does not drive): the fs driver makes it there, once the
    /// unit exists, and records what it made.
    rest: RefCell<Option<FsManager>>,
    bus: RefCell<Option<Bus>>,
    /// A container that exists already (from its record): `add` joins (exec), it starts no unit.
    existing: bool,
    /// Whether this manager started the unit (systemd accepted the request).
    started: Cell<bool>,
    /// Resources applied before the unit exists (restore applies them before CRIU joins):
    /// written to cgroupfs once it does.
    pending: RefCell<Option<LinuxResources>>,
}

impl SystemdManager {
    fn bus(&self) -> Result<std::cell::RefMut<'_, Bus>, CgroupError> {
        let mut b = self.bus.borrow_mut();
        if b.is_none() {
            *b = Some(Bus::connect(self.user)?);
        }
        Ok(std::cell::RefMut::map(b, |b| {
            b.as_mut().expect("connected above")
        }))
    }

    /// The properties of a new unit: runc's fixed set, the resources, then the annotations
    /// (which win: systemd applies properties in order).
    fn start_props(&self, pid: i32) -> Props {
        let mut out: Props = vec![("Description".into(), Value::Str(self.description.clone()))];
        if self.unit.is_slice() {
            out.push(("Wants".into(), Value::Strs(vec![self.unit.slice.clone()])));
        } else {
            out.push(("Slice".into(), Value::Str(self.unit.slice.clone())));
            out.push(("Delegate".into(), Value::Bool(true)));
        }
        out.push(("PIDs".into(), Value::U32s(vec![pid as u32])));
        out.push(("DefaultDependencies".into(), Value::Bool(false)));
        out.push(("MemoryAccounting".into(), Value::Bool(true)));
        out.push(("CPUAccounting".into(), Value::Bool(true)));
        out.push((
            if self.v2 {
                "IOAccounting"
            } else {
                "BlockIOAccounting"
            }
            .into(),
            Value::Bool(true),
        ));
        out.push(("TasksAccounting".into(), Value::Bool(true)));
        out.extend(self.props.iter().cloned());
        out
    }

    /// The pid's cgroup in systemd's own hierarchy must be the unit's: a systemd whose root is
    /// not where Berth computed it would otherwise leave the limits in another directory.
    fn check_placed(&self, pid: i32) -> Result<(), CgroupError> {
        let want = self.unit.cgroup();
        let Some(got) = cgroup_of(&pid.to_string(), self.v2) else {
            return Ok(());
        };
        if !got.ends_with(&want) {
            return Err(CgroupError::Systemd(format!(
                "unit {}: systemd put the init in {got}, not in {want}",
                self.unit.unit
            )));
        }
        Ok(())
    }
}

/// systemd's root in its hierarchy: where PID 1's cgroup is, without `init.scope` (systemd
/// as PID 1 sits in `/init.scope`; in a container without a cgroup namespace that is below
/// the container's cgroup).
fn systemd_root(v2: bool) -> String {
    let path = cgroup_of("1", v2).unwrap_or_default();
    let root = path.strip_suffix("/init.scope").unwrap_or(&path);
    root.trim_end_matches('/').to_string()
}

/// A process's cgroup in systemd's hierarchy (`name=systemd` on v1 and hybrid hosts).
fn cgroup_of(pid: &str, v2: bool) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let key = if v2 { "" } else { "name=systemd" };
    text.lines().find_map(|l| {
        let mut it = l.splitn(3, ':');
        let (_, ctl, path) = (it.next()?, it.next()?, it.next()?);
        (ctl == key).then(|| path.to_string())
    })
}

/// The systemd driver for a new container. Everything that can be refused is checked here,
/// before any side effect: the cgroupsPath form, the annotations, the resources, and that
/// systemd answers.
pub fn for_spec(spec: &Spec, id: &str, layout: &Layout) -> Result<Box<dyn Manager>, CgroupError> {
    let rootless = crate::rootless::active();
    let path = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_ref())
        .map(|p| p.display().to_string());
    let unit = UnitPath::parse(path.as_deref(), id, rootless)?;
    let v2 = layout.mode() == Mode::V2;
    let resources = spec.linux().as_ref().and_then(|l| l.resources().clone());
    let mut props = match &resources {
        Some(r) => props::resources(r, v2)?,
        None => Props::new(),
    };
    let extra = props::from_annotations(spec.annotations().iter().flatten())?;
    props.retain(|(n, _)| !extra.iter().any(|(e, _)| e == n));
    props.extend(extra);
    let cgroup = format!("{}{}", systemd_root(v2), unit.cgroup());
    let fs = FsManager::new(layout, &cgroup);
    if let Some(r) = &resources {
        fs.validate(r)?;
    }
    let m = SystemdManager {
        unit,
        user: rootless,
        v2,
        description: format!("berth container {id}"),
        props,
        fs,
        layout: Some((layout.clone(), cgroup)),
        rest: RefCell::new(None),
        bus: RefCell::new(None),
        existing: false,
        started: Cell::new(false),
        pending: RefCell::new(None),
    };
    // Unreachable systemd is refused now, with nothing made yet.
    m.bus()?;
    Ok(Box::new(m))
}

/// The driver of an existing container, from its record (`systemd` is `SLICE/UNIT`); the bus
/// is reached when a call needs it, the system's or (rootless) the user's.
pub fn from_record(rec: &CgroupRecord, unit: &str) -> SystemdManager {
    let (slice, unit) = unit.split_once('/').unwrap_or(("", unit));
    // The unified hierarchy is systemd's (and the v2 property names) when nothing is on v1.
    let v2 = !rec.paths.keys().any(|k| !k.is_empty());
    SystemdManager {
        unit: UnitPath {
            slice: slice.to_string(),
            unit: unit.to_string(),
        },
        user: crate::rootless::active(),
        v2,
        description: String::new(),
        props: Props::new(),
        fs: FsManager::from_record(rec),
        layout: None,
        rest: RefCell::new(None),
        bus: RefCell::new(None),
        existing: true,
        started: Cell::new(false),
        pending: RefCell::new(None),
    }
}

impl SystemdManager {
    /// An update: what systemd has a property for goes to the unit too, so that systemd's
    /// view (which it re-applies on a reload) is the container's.
    fn set_unit_resources(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        let mut r = r.clone();
        // Device rules are not updated (as with runc): the unit keeps the ones it started with.
        r.set_devices(None);
        let props = props::resources(&r, self.v2)?;
        self.bus()?.set_properties(&self.unit.unit, &props)
    }
}

impl Manager for SystemdManager {
    fn validate(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        props::resources(r, self.v2)?;
        self.fs.validate(r)
    }

    /// Nothing yet: systemd makes the unit's cgroup when the init exists ([`Manager::add`]).
    fn create(&self) -> Result<(), CgroupError> {
        Ok(())
    }

    fn entry(&self) -> Option<crate::cgroups::Entry> {
        // exec's process joins like any other; a new container's init is placed by systemd.
        self.existing.then(|| self.fs.entry()).flatten()
    }

    fn add(&self, pid: i32) -> Result<(), CgroupError> {
        if self.existing {
            // exec: the process joins the container's cgroups; the unit stays as it is.
            return self.fs.add(pid);
        }
        let props = self.start_props(pid);
        self.bus()?
            .start_transient(&self.unit.unit, &props, &self.started)?;
        self.check_placed(pid)?;
        // The hierarchies systemd does not manage (and any it left out).
        if let Some((layout, cgroup)) = &self.layout {
            let mut rest = layout.clone();
            rest.v1.retain(|h| !layout.v1_dir(h, cgroup).exists());
            rest.unified = rest
                .unified
                .filter(|_| layout.unified_dir(cgroup).is_some_and(|d| !d.exists()));
            if !rest.v1.is_empty() || rest.unified.is_some() {
                let m = FsManager::new(&rest, cgroup);
                let made = m.create();
                *self.rest.borrow_mut() = Some(m);
                made?;
            }
        }
        self.fs.add(pid)?;
        match self.pending.borrow_mut().take() {
            Some(r) => self.fs.apply(&r),
            None => Ok(()),
        }
    }

    /// A new container's unit got its resources with StartTransientUnit: only cgroupfs is
    /// written (once the unit exists; restore applies before CRIU joins). An existing one's
    /// (update) go to the unit too.
    fn apply(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        if self.existing {
            self.set_unit_resources(r)?;
        } else if !self.started.get() {
            *self.pending.borrow_mut() = Some(r.clone());
            return Ok(());
        }
        self.fs.apply(r)
    }

    fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        self.fs.pids()
    }

    fn freeze(&self) -> Result<(), CgroupError> {
        self.fs.freeze()
    }

    fn thaw(&self) -> Result<(), CgroupError> {
        self.fs.thaw()
    }

    fn freezer_state(&self) -> Result<FreezerState, CgroupError> {
        self.fs.freezer_state()
    }

    fn signal_all(&self, sig: i32) -> Result<(), CgroupError> {
        self.fs.signal_all(sig)
    }

    fn stats(&self) -> Result<Stats, CgroupError> {
        self.fs.stats()
    }

    fn oom_watch(&self) -> Result<OomWatch, CgroupError> {
        self.fs.oom_watch()
    }

    fn oom_kill_error(&self) -> Option<CgroupError> {
        self.fs.oom_kill_error()
    }

    fn exists(&self) -> bool {
        self.fs.exists()
    }

    /// Stops the unit and waits until systemd has removed it (and its cgroups), then removes
    /// what the fs driver made. The directories go even when systemd cannot be reached; the
    /// error says so.
    fn destroy(&self) -> Result<(), CgroupError> {
        if !self.existing && !self.started.get() {
            // A create that failed before its unit started: the unit (if one of that name
            // exists) and its cgroups are someone else's.
            return Ok(());
        }
        let stopped = self.bus().and_then(|mut b| b.stop(&self.unit.unit));
        let fs = self.fs.destroy();
        // A create that failed: the parents it made in the other hierarchies.
        let rest = self.rest.borrow().as_ref().map_or(Ok(()), |r| r.destroy());
        stopped.and(fs).and(rest)
    }

    fn record(&self) -> CgroupRecord {
        let mut rec = self.fs.record();
        // Only what the fs driver made is the fs driver's to remove.
        if let Some(r) = self.rest.borrow().as_ref() {
            rec.created = r.record().created;
        }
        rec.systemd = Some(format!("{}/{}", self.unit.slice, self.unit.unit));
        rec
    }
}
