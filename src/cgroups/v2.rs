//! cgroup v2 (the unified hierarchy): `linux.resources` converted to v2 files as runc converts
//! them, the freezer (cgroup.freeze + cgroup.events), enabling controllers down the tree, and
//! reading usage. Every function takes the container's directory in the unified hierarchy.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxHugepageLimit, LinuxMemory};

use super::fs::{self, io, nz, set};
use super::stats::{self, BlkioEntry, Stats};
use super::{CgroupError, FreezerState};

const F: &str = "linux.resources";

fn not_on_v2(field: &str, what: &str) -> CgroupError {
    CgroupError::Unsupported(format!("{F}.{field}: {what} is not supported on cgroup v2"))
}

/// A limit for a v2 `.max`/`.low` file: -1 (any negative) is "max".
fn limit_str(v: i64) -> String {
    if v < 0 {
        "max".into()
    } else {
        v.to_string()
    }
}

/// cpu.shares (2..262144, default 1024) → cpu.weight (1..10000, default 100), with the
/// quadratic fit current runc and crun use, which maps the defaults onto each other.
pub fn cpu_weight(shares: u64) -> u64 {
    match shares {
        0 => 0,
        1..=2 => 1,
        262144.. => 10000,
        s => {
            let l = (s as f64).log2();
            let exp = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
            10f64.powf(exp).ceil() as u64
        }
    }
}

/// blkio.weight (10..1000) → io.weight (1..10000), as runc converts it.
pub fn io_weight(blkio: u16) -> u64 {
    if blkio == 0 {
        return 0;
    }
    1 + (u64::from(blkio).saturating_sub(10)) * 9999 / 990
}

/// The OCI swap value is memory+swap (v1's memsw); v2's memory.swap.max is swap alone.
/// Returns the value to write to memory.swap.max, or None to leave it.
pub fn swap_max(swap: Option<i64>, limit: Option<i64>) -> Result<Option<String>, CgroupError> {
    let (swap, limit) = (swap.unwrap_or(0), limit.unwrap_or(0));
    // Unlimited memory and no swap given: unlimited swap too, like v1.
    if limit == -1 && swap == 0 {
        return Ok(Some("max".into()));
    }
    match swap {
        0 => Ok(None),
        -1 => Ok(Some("max".into())),
        s if s < 0 => Err(CgroupError::invalid(
            format!("{F}.memory.swap"),
            format!("invalid value {s}"),
        )),
        s => {
            if limit == 0 || limit == -1 {
                return Err(CgroupError::invalid(
                    format!("{F}.memory.swap"),
                    "a swap limit needs a memory limit (memory.limit) on cgroup v2",
                ));
            }
            if s < limit {
                return Err(CgroupError::invalid(
                    format!("{F}.memory.swap"),
                    format!("memory+swap limit {s} must be at least the memory limit {limit}"),
                ));
            }
            Ok(Some((s - limit).to_string()))
        }
    }
}

pub fn memory(d: &Path, m: &LinuxMemory) -> Result<(), CgroupError> {
    let limit = nz(m.limit());
    if let (Some(true), Some(l)) = (m.check_before_update(), limit.filter(|&l| l > 0)) {
        let usage = fs::read_u64(d, "memory.current").map_err(io("read", d))?;
        if l as u64 <= usage {
            return Err(CgroupError::invalid(
                format!("{F}.memory.limit"),
                format!("rejecting memory limit {l} below the current usage {usage} (checkBeforeUpdate is set)"),
            ));
        }
    }
    if let Some(s) = swap_max(m.swap(), limit)? {
        set(&format!("{F}.memory.swap"), d, "memory.swap.max", &s)?;
    }
    if let Some(l) = limit {
        set(&format!("{F}.memory.limit"), d, "memory.max", &limit_str(l))?;
    }
    if let Some(r) = nz(m.reservation()) {
        set(
            &format!("{F}.memory.reservation"),
            d,
            "memory.low",
            &limit_str(r),
        )?;
    }
    #[allow(deprecated)]
    if nz(m.kernel()).is_some() {
        return Err(not_on_v2("memory.kernel", "a kernel memory limit"));
    }
    if nz(m.kernel_tcp()).is_some() {
        return Err(not_on_v2("memory.kernelTCP", "a kernel TCP memory limit"));
    }
    if m.swappiness().is_some() {
        return Err(not_on_v2("memory.swappiness", "per-cgroup swappiness"));
    }
    if m.disable_oom_killer() == Some(true) {
        return Err(not_on_v2(
            "memory.disableOOMKiller",
            "disabling the OOM killer",
        ));
    }
    if m.use_hierarchy() == Some(false) {
        return Err(not_on_v2(
            "memory.useHierarchy",
            "turning hierarchical accounting off",
        ));
    }
    Ok(())
}

pub fn cpu(d: &Path, c: &LinuxCpu) -> Result<(), CgroupError> {
    if let Some(s) = c.shares().filter(|&s| s != 0) {
        set(
            &format!("{F}.cpu.shares"),
            d,
            "cpu.weight",
            &cpu_weight(s).to_string(),
        )?;
    }
    let quota = nz(c.quota());
    let period = c.period().filter(|&p| p != 0);
    if quota.is_some() || period.is_some() {
        let mut v = match quota {
            Some(q) if q > 0 => q.to_string(),
            _ => "max".into(),
        };
        if let Some(p) = period {
            v.push_str(&format!(" {p}"));
        }
        let field = if quota.is_some() {
            "cpu.quota"
        } else {
            "cpu.period"
        };
        set(&format!("{F}.{field}"), d, "cpu.max", &v)?;
    }
    if let Some(b) = c.burst() {
        set(
            &format!("{F}.cpu.burst"),
            d,
            "cpu.max.burst",
            &b.to_string(),
        )?;
    }
    if nz(c.realtime_runtime()).is_some() {
        return Err(not_on_v2("cpu.realtimeRuntime", "a realtime runtime"));
    }
    if c.realtime_period().is_some_and(|p| p != 0) {
        return Err(not_on_v2("cpu.realtimePeriod", "a realtime period"));
    }
    if let Some(i) = c.idle() {
        set(&format!("{F}.cpu.idle"), d, "cpu.idle", &i.to_string())?;
    }
    Ok(())
}

pub fn io_(d: &Path, b: &LinuxBlockIo) -> Result<(), CgroupError> {
    let bfq = fs::exists(d, "io.bfq.weight");
    if let Some(w) = b.weight().filter(|&w| w != 0) {
        if bfq {
            // BFQ's weight has blkio's range.
            set(
                &format!("{F}.blockIO.weight"),
                d,
                "io.bfq.weight",
                &w.to_string(),
            )?;
        } else {
            set(
                &format!("{F}.blockIO.weight"),
                d,
                "io.weight",
                &io_weight(w).to_string(),
            )?;
        }
    }
    if b.leaf_weight().is_some_and(|w| w != 0) {
        return Err(not_on_v2("blockIO.leafWeight", "a leaf weight"));
    }
    for (i, wd) in b.weight_device().iter().flatten().enumerate() {
        if let Some(w) = wd.weight().filter(|&w| w != 0) {
            let (file, w) = if bfq {
                ("io.bfq.weight", u64::from(w))
            } else {
                ("io.weight", io_weight(w))
            };
            set(
                &format!("{F}.blockIO.weightDevice[{i}].weight"),
                d,
                file,
                &format!("{}:{} {w}", wd.major(), wd.minor()),
            )?;
        }
        if wd.leaf_weight().is_some_and(|w| w != 0) {
            return Err(not_on_v2(
                &format!("blockIO.weightDevice[{i}].leafWeight"),
                "a leaf weight",
            ));
        }
    }
    // One io.max line per device with all its limits; 0 means no limit ("max").
    let mut per_dev: BTreeMap<(i64, i64), Vec<String>> = BTreeMap::new();
    for (key, list) in [
        ("rbps", b.throttle_read_bps_device()),
        ("wbps", b.throttle_write_bps_device()),
        ("riops", b.throttle_read_iops_device()),
        ("wiops", b.throttle_write_iops_device()),
    ] {
        for t in list.iter().flatten() {
            let v = if t.rate() == 0 {
                "max".to_string()
            } else {
                t.rate().to_string()
            };
            per_dev
                .entry((t.major(), t.minor()))
                .or_default()
                .push(format!("{key}={v}"));
        }
    }
    for ((ma, mi), kv) in per_dev {
        set(
            &format!("{F}.blockIO.throttle ({ma}:{mi})"),
            d,
            "io.max",
            &format!("{ma}:{mi} {}", kv.join(" ")),
        )?;
    }
    Ok(())
}

pub fn hugetlb(d: &Path, limits: &[LinuxHugepageLimit]) -> Result<(), CgroupError> {
    for (i, h) in limits.iter().enumerate() {
        let file = format!("hugetlb.{}.max", h.page_size());
        if !fs::exists(d, &file) {
            return Err(super::v1::bad_pagesize(i, h.page_size()));
        }
        let v = limit_str(h.limit());
        set(&format!("{F}.hugepageLimits[{i}].limit"), d, &file, &v)?;
        let rsvd = format!("hugetlb.{}.rsvd.max", h.page_size());
        if fs::exists(d, &rsvd) {
            set(&format!("{F}.hugepageLimits[{i}].limit"), d, &rsvd, &v)?;
        }
    }
    Ok(())
}

/// Checks a `linux.resources.unified` key: a plain file name of the form CONTROLLER.KNOB.
pub fn check_unified_key(k: &str) -> Result<&str, CgroupError> {
    let field = format!("{F}.unified[{k:?}]");
    if k.contains('/') || k == "." || k == ".." || k.is_empty() {
        return Err(CgroupError::invalid(
            field,
            "must be a file name of the cgroup (no slashes)",
        ));
    }
    match k.split_once('.') {
        Some((c, rest)) if !c.is_empty() && !rest.is_empty() => Ok(c),
        _ => Err(CgroupError::invalid(
            field,
            "must have the form CONTROLLER.PARAMETER (e.g. memory.high)",
        )),
    }
}

/// Writes the `unified` key/values (sorted, for a stable order), after everything else.
pub fn unified(d: &Path, map: &HashMap<String, String>) -> Result<(), CgroupError> {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    for k in keys {
        let ctrl = check_unified_key(k)?;
        let v = &map[k];
        if let Err(e) = fs::write(d, k, v) {
            let field = format!("{F}.unified[{k:?}]");
            if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::EPERM))
                && ctrl != "cgroup"
            {
                let have = fs::read(d, "cgroup.controllers").unwrap_or_default();
                if !have.split_whitespace().any(|c| c == ctrl) {
                    return Err(CgroupError::invalid(
                        field,
                        format!(
                            "controller {ctrl:?} is not available in {} (available: {})",
                            d.display(),
                            have.trim()
                        ),
                    ));
                }
            }
            return Err(fs::write_error(&field, d, k, v, e));
        }
    }
    Ok(())
}

/// Turns on, in every cgroup from the hierarchy's root `mount` down to the parent of `leaf`,
/// the controllers available there, so that the leaf has them (runc does the same). Failures
/// are not fatal: a controller that cannot be enabled shows up as an error only if a value
/// for it is asked for.
pub fn enable_controllers(mount: &Path, leaf: &Path) {
    let Ok(rel) = leaf.strip_prefix(mount) else {
        return;
    };
    let mut cur = mount.to_path_buf();
    for comp in rel.components() {
        let have = fs::read(&cur, "cgroup.controllers").unwrap_or_default();
        let on = fs::read(&cur, "cgroup.subtree_control").unwrap_or_default();
        let missing: Vec<String> = have
            .split_whitespace()
            .filter(|c| !on.split_whitespace().any(|o| o == *c))
            .map(|c| format!("+{c}"))
            .collect();
        if !missing.is_empty()
            && fs::write(&cur, "cgroup.subtree_control", &missing.join(" ")).is_err()
        {
            for c in &missing {
                let _ = fs::write(&cur, "cgroup.subtree_control", c);
            }
        }
        cur.push(comp);
    }
}

pub fn freezer_state(d: &Path) -> Result<FreezerState, CgroupError> {
    match fs::read(d, "cgroup.freeze") {
        Ok(v) if v.trim() == "1" => {
            let ev = fs::read_kv(d, "cgroup.events").map_err(io("read", d))?;
            Ok(if ev.get("frozen") == Some(&1) {
                FreezerState::Frozen
            } else {
                FreezerState::Freezing
            })
        }
        Ok(_) => Ok(FreezerState::Thawed),
        // Kernels before 5.2 have no v2 freezer; nothing is frozen then.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && d.exists() => {
            Ok(FreezerState::Thawed)
        }
        Err(e) => Err(io("read", d)(e)),
    }
}

const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

fn wait_frozen(d: &Path, want: u64) -> Result<bool, CgroupError> {
    fs::wait_file(d, "cgroup.events", Instant::now() + FREEZE_TIMEOUT, |s| {
        fs::parse_kv(s).get("frozen") == Some(&want)
    })
    .map_err(io("wait for cgroup.events", d))
}

/// Freezes and waits (on cgroup.events notifications) until the kernel reports it frozen.
pub fn freeze(d: &Path) -> Result<(), CgroupError> {
    if !fs::exists(d, "cgroup.freeze") {
        return Err(CgroupError::Unsupported(format!(
            "freezer: this kernel has no cgroup v2 freezer ({} does not exist)",
            d.join("cgroup.freeze").display()
        )));
    }
    set("cgroup.freeze", d, "cgroup.freeze", "1")?;
    if wait_frozen(d, 1)? {
        return Ok(());
    }
    let _ = set("cgroup.freeze", d, "cgroup.freeze", "0");
    Err(CgroupError::Other(format!(
        "freezer: {} was not frozen after {}s; it was thawed again",
        d.display(),
        FREEZE_TIMEOUT.as_secs()
    )))
}

pub fn thaw(d: &Path) -> Result<(), CgroupError> {
    if !fs::exists(d, "cgroup.freeze") {
        return Ok(());
    }
    set("cgroup.freeze", d, "cgroup.freeze", "0")?;
    if wait_frozen(d, 0)? {
        Ok(())
    } else {
        Err(CgroupError::Other(format!(
            "freezer: {} was not thawed after {}s",
            d.display(),
            FREEZE_TIMEOUT.as_secs()
        )))
    }
}

// --- statistics -------------------------------------------------------------------------

pub fn cpu_stats(d: &Path, s: &mut Stats) {
    let Ok(kv) = fs::read_kv(d, "cpu.stat") else {
        return;
    };
    let g = |k: &str| kv.get(k).copied().unwrap_or(0);
    s.cpu.usage.total = g("usage_usec") * 1000;
    s.cpu.usage.user = g("user_usec") * 1000;
    s.cpu.usage.kernel = g("system_usec") * 1000;
    s.cpu.throttling.periods = g("nr_periods");
    s.cpu.throttling.throttled_periods = g("nr_throttled");
    s.cpu.throttling.throttled_time = g("throttled_usec") * 1000;
}

pub fn cpuset_stats(d: &Path, s: &mut Stats) {
    let list = |f: &str, eff: &str| {
        let v = fs::read(d, f).unwrap_or_default();
        let v = if v.trim().is_empty() {
            fs::read(d, eff).unwrap_or_default()
        } else {
            v
        };
        fs::parse_list(&v)
    };
    s.cpuset.cpus = list("cpuset.cpus", "cpuset.cpus.effective");
    s.cpuset.mems = list("cpuset.mems", "cpuset.mems.effective");
}

pub fn memory_stats(d: &Path, s: &mut Stats) -> Result<(), CgroupError> {
    let m = &mut s.memory;
    m.raw = fs::read_kv(d, "memory.stat").map_err(io("read", d))?;
    m.cache = m.raw.get("file").copied().unwrap_or(0);
    let n = |f: &str| fs::read_u64(d, f).unwrap_or(0);
    m.usage = stats::MemoryEntry {
        limit: n("memory.max"),
        usage: n("memory.current"),
        max: n("memory.peak"),
        failcnt: fs::read_kv(d, "memory.events")
            .ok()
            .and_then(|e| e.get("max").copied())
            .unwrap_or(0),
    };
    // v1 reports swap as memory+swap; so does runc on v2.
    if fs::exists(d, "memory.swap.current") {
        let limit = n("memory.swap.max");
        m.swap = stats::MemoryEntry {
            usage: n("memory.swap.current") + m.usage.usage,
            limit: if limit == u64::MAX {
                limit
            } else {
                limit.saturating_add(m.usage.limit)
            },
            max: 0,
            failcnt: 0,
        };
    }
    Ok(())
}

pub fn io_stats(d: &Path, s: &mut Stats) {
    let Ok(text) = fs::read(d, "io.stat") else {
        return;
    };
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let Some((ma, mi)) = it.next().and_then(|dev| dev.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (ma.parse(), mi.parse()) else {
            continue;
        };
        for kv in it {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let Ok(value) = v.parse() else { continue };
            let (list, op) = match k {
                "rbytes" => (&mut s.blkio.io_service_bytes_recursive, "Read"),
                "wbytes" => (&mut s.blkio.io_service_bytes_recursive, "Write"),
                "rios" => (&mut s.blkio.io_serviced_recursive, "Read"),
                "wios" => (&mut s.blkio.io_serviced_recursive, "Write"),
                _ => continue,
            };
            list.push(BlkioEntry {
                major,
                minor,
                op: op.into(),
                value,
            });
        }
    }
}

pub fn hugetlb_stats(d: &Path, s: &mut Stats) {
    for size in stats::hugepage_sizes() {
        let Ok(usage) = fs::read_u64(d, &format!("hugetlb.{size}.current")) else {
            continue;
        };
        let failcnt = fs::read_kv(d, &format!("hugetlb.{size}.events"))
            .ok()
            .and_then(|e| e.get("max").copied())
            .unwrap_or(0);
        s.hugetlb.insert(
            size,
            stats::Hugetlb {
                usage,
                max: 0,
                failcnt,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::fakefs::{fake, get};

    #[test]
    fn conversions_match_runc() {
        assert_eq!(cpu_weight(0), 0);
        assert_eq!(cpu_weight(2), 1);
        assert_eq!(cpu_weight(1024), 100);
        assert_eq!(cpu_weight(262144), 10000);
        assert!(cpu_weight(512) < 100 && cpu_weight(2048) > 100);
        assert_eq!(io_weight(10), 1);
        assert_eq!(io_weight(1000), 10000);
        assert_eq!(io_weight(500), 4950);
        assert_eq!(
            swap_max(Some(300), Some(100)).unwrap().as_deref(),
            Some("200")
        );
        assert_eq!(
            swap_max(Some(100), Some(100)).unwrap().as_deref(),
            Some("0")
        );
        assert_eq!(swap_max(None, Some(-1)).unwrap().as_deref(), Some("max"));
        assert_eq!(
            swap_max(Some(-1), Some(100)).unwrap().as_deref(),
            Some("max")
        );
        assert_eq!(swap_max(None, Some(100)).unwrap(), None);
        assert!(swap_max(Some(50), Some(100))
            .unwrap_err()
            .to_string()
            .starts_with("linux.resources.memory.swap:"));
        assert!(swap_max(Some(50), None).is_err());
    }

    #[test]
    fn memory_cpu_pids_io_hugetlb_on_a_fake_tree() {
        let d = fake(&[
            ("memory.max", "max"),
            ("memory.swap.max", "max"),
            ("memory.low", "0"),
            ("cpu.weight", "100"),
            ("cpu.max", "max 100000"),
            ("cpu.max.burst", "0"),
            ("cpu.idle", "0"),
            ("cpuset.cpus", ""),
            ("cpuset.mems", ""),
            ("pids.max", "max"),
            ("io.weight", "default 100"),
            ("io.max", ""),
            ("hugetlb.2MB.max", "max"),
            ("hugetlb.2MB.rsvd.max", "max"),
        ]);
        let r: oci_spec::runtime::LinuxResources = serde_json::from_str(
            r#"{"memory":{"limit":104857600,"swap":157286400,"reservation":1048576},
                "cpu":{"shares":1024,"quota":50000,"period":100000,"burst":10,"idle":0,"cpus":"0-1","mems":"0"},
                "pids":{"limit":42},
                "blockIO":{"weight":1000,"throttleReadBpsDevice":[{"major":8,"minor":0,"rate":1048576}],
                           "throttleWriteIOPSDevice":[{"major":8,"minor":0,"rate":10}]},
                "hugepageLimits":[{"pageSize":"2MB","limit":4194304}]}"#,
        )
        .unwrap();
        memory(d.path(), r.memory().as_ref().unwrap()).unwrap();
        cpu(d.path(), r.cpu().as_ref().unwrap()).unwrap();
        super::super::v1::cpuset(d.path(), r.cpu().as_ref().unwrap()).unwrap();
        super::super::v1::pids(d.path(), 42).unwrap();
        io_(d.path(), r.block_io().as_ref().unwrap()).unwrap();
        hugetlb(d.path(), r.hugepage_limits().as_ref().unwrap()).unwrap();
        assert_eq!(get(&d, "memory.max"), "104857600");
        assert_eq!(get(&d, "memory.swap.max"), "52428800");
        assert_eq!(get(&d, "memory.low"), "1048576");
        assert_eq!(get(&d, "cpu.weight"), "100");
        assert_eq!(get(&d, "cpu.max"), "50000 100000");
        assert_eq!(get(&d, "cpu.max.burst"), "10");
        assert_eq!(get(&d, "cpu.idle"), "0");
        assert_eq!(get(&d, "cpuset.cpus"), "0-1");
        assert_eq!(get(&d, "pids.max"), "42");
        assert_eq!(get(&d, "io.weight"), "10000");
        assert_eq!(get(&d, "io.max"), "8:0 rbps=1048576 wiops=10");
        assert_eq!(get(&d, "hugetlb.2MB.max"), "4194304");
        assert_eq!(get(&d, "hugetlb.2MB.rsvd.max"), "4194304");
        // Quota -1: unlimited, period kept.
        let c: LinuxCpu = serde_json::from_str(r#"{"quota":-1,"period":50000}"#).unwrap();
        cpu(d.path(), &c).unwrap();
        assert_eq!(get(&d, "cpu.max"), "max 50000");
    }

    #[test]
    fn v1_only_knobs_are_refused_when_asked_for() {
        let d = fake(&[("memory.max", "max"), ("cpu.max", "max 100000")]);
        let m: LinuxMemory = serde_json::from_str(r#"{"swappiness":10}"#).unwrap();
        let e = memory(d.path(), &m).unwrap_err().to_string();
        assert_eq!(
            e,
            "linux.resources.memory.swappiness: per-cgroup swappiness is not supported on cgroup v2"
        );
        let m: LinuxMemory = serde_json::from_str(r#"{"disableOOMKiller":false}"#).unwrap();
        memory(d.path(), &m).unwrap();
        let c: LinuxCpu = serde_json::from_str(r#"{"realtimeRuntime":100}"#).unwrap();
        assert!(cpu(d.path(), &c)
            .unwrap_err()
            .to_string()
            .starts_with("linux.resources.cpu.realtimeRuntime:"));
        let h: Vec<LinuxHugepageLimit> =
            serde_json::from_str(r#"[{"pageSize":"3MB","limit":1}]"#).unwrap();
        assert!(hugetlb(d.path(), &h)
            .unwrap_err()
            .to_string()
            .starts_with("linux.resources.hugepageLimits[0].pageSize: hugepage size \"3MB\""));
    }

    #[test]
    fn unified_keys_are_checked_and_written() {
        let d = fake(&[
            ("memory.high", "max"),
            ("cgroup.controllers", "cpu memory pids"),
        ]);
        let mut m = HashMap::new();
        m.insert("memory.high".to_string(), "1000000".to_string());
        unified(d.path(), &m).unwrap();
        assert_eq!(get(&d, "memory.high"), "1000000");
        m.insert("io.max".to_string(), "8:0 rbps=1".to_string());
        let e = unified(d.path(), &m).unwrap_err().to_string();
        assert!(
            e.starts_with(
                "linux.resources.unified[\"io.max\"]: controller \"io\" is not available"
            ),
            "{e}"
        );
        let mut m = HashMap::new();
        m.insert("../memory.high".to_string(), "1".to_string());
        assert!(unified(d.path(), &m).is_err());
        let mut m = HashMap::new();
        m.insert("memory".to_string(), "1".to_string());
        assert!(unified(d.path(), &m)
            .unwrap_err()
            .to_string()
            .contains("CONTROLLER.PARAMETER"));
    }

    #[test]
    fn freezer_on_a_fake_tree() {
        let d = fake(&[
            ("cgroup.freeze", "0"),
            ("cgroup.events", "populated 1\nfrozen 0\n"),
        ]);
        assert_eq!(freezer_state(d.path()).unwrap(), FreezerState::Thawed);
        // The fake kernel "freezes" at once.
        std::fs::write(d.path().join("cgroup.events"), "populated 1\nfrozen 1\n").unwrap();
        freeze(d.path()).unwrap();
        assert_eq!(get(&d, "cgroup.freeze"), "1");
        assert_eq!(freezer_state(d.path()).unwrap(), FreezerState::Frozen);
        std::fs::write(d.path().join("cgroup.events"), "populated 1\nfrozen 0\n").unwrap();
        assert_eq!(freezer_state(d.path()).unwrap(), FreezerState::Freezing);
        thaw(d.path()).unwrap();
        assert_eq!(freezer_state(d.path()).unwrap(), FreezerState::Thawed);
    }

    #[test]
    fn enable_controllers_walks_down_from_the_root() {
        let root = tempfile::tempdir().unwrap();
        let a = root.path().join("a");
        std::fs::create_dir(&a).unwrap();
        for (dir, ctrls, on) in [
            (root.path(), "cpu memory pids", "cpu"),
            (a.as_path(), "cpu memory pids", ""),
        ] {
            std::fs::write(dir.join("cgroup.controllers"), ctrls).unwrap();
            std::fs::write(dir.join("cgroup.subtree_control"), on).unwrap();
        }
        enable_controllers(root.path(), &a.join("c1"));
        assert_eq!(
            std::fs::read_to_string(root.path().join("cgroup.subtree_control")).unwrap(),
            "+memory +pids"
        );
        assert_eq!(
            std::fs::read_to_string(a.join("cgroup.subtree_control")).unwrap(),
            "+cpu +memory +pids"
        );
    }

    #[test]
    fn stats_are_read_from_v2_files() {
        let d = fake(&[
            ("cpu.stat", "usage_usec 100\nuser_usec 60\nsystem_usec 40\nnr_periods 5\nnr_throttled 1\nthrottled_usec 7\n"),
            ("memory.stat", "anon 4096\nfile 8192\n"),
            ("memory.current", "12288"),
            ("memory.max", "max"),
            ("memory.swap.current", "100"),
            ("memory.swap.max", "max"),
            ("memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n"),
            ("io.stat", "8:0 rbytes=4096 wbytes=512 rios=2 wios=1 dbytes=0 dios=0\n"),
            ("cpuset.cpus", ""),
            ("cpuset.cpus.effective", "0-1"),
        ]);
        let mut s = Stats::default();
        cpu_stats(d.path(), &mut s);
        memory_stats(d.path(), &mut s).unwrap();
        io_stats(d.path(), &mut s);
        cpuset_stats(d.path(), &mut s);
        assert_eq!(s.cpu.usage.total, 100_000);
        assert_eq!(s.cpu.usage.user, 60_000);
        assert_eq!(s.cpu.usage.kernel, 40_000);
        assert_eq!(s.cpu.throttling.throttled_time, 7000);
        assert_eq!(s.memory.cache, 8192);
        assert_eq!(s.memory.usage.usage, 12288);
        assert_eq!(s.memory.usage.limit, u64::MAX);
        assert_eq!(s.memory.usage.failcnt, 3);
        assert_eq!(s.memory.swap.usage, 12388);
        assert_eq!(s.blkio.io_service_bytes_recursive.len(), 2);
        assert_eq!(s.blkio.io_serviced_recursive[0].value, 2);
        assert_eq!(s.cpuset.cpus, vec![0, 1]);
    }
}
