//! cgroup v1 controllers: writing `linux.resources` to each controller's files, the freezer,
//! and reading usage. Every function takes the container's directory in the hierarchy that
//! holds the controller. Values of 0 mean "not set" (as in runc) unless noted.

use std::path::Path;
use std::time::{Duration, Instant};

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxHugepageLimit, LinuxInterfacePriority, LinuxMemory,
};

use super::fs::{self, io, nz, set};
use super::stats::{self, BlkioEntry, Stats};
use super::{CgroupError, FreezerState};

const F: &str = "linux.resources";

pub fn memory(d: &Path, m: &LinuxMemory) -> Result<(), CgroupError> {
    const LIMIT: &str = "memory.limit_in_bytes";
    const MEMSW: &str = "memory.memsw.limit_in_bytes";
    let limit = nz(m.limit());
    let mut swap = nz(m.swap());
    // An unlimited memory with no swap given means unlimited swap too (runc).
    if limit == Some(-1) && swap.is_none() && fs::exists(d, MEMSW) {
        swap = Some(-1);
    }
    if let (Some(true), Some(l)) = (m.check_before_update(), limit.filter(|&l| l > 0)) {
        let usage = fs::read_u64(d, "memory.usage_in_bytes").map_err(io("read", d))?;
        if l as u64 <= usage {
            return Err(CgroupError::invalid(
                format!("{F}.memory.limit"),
                format!("rejecting memory limit {l} below the current usage {usage} (checkBeforeUpdate is set)"),
            ));
        }
    }
    let set_limit = |l: i64| -> Result<(), CgroupError> {
        let v = l.to_string();
        fs::write(d, LIMIT, &v).map_err(|e| {
            if e.raw_os_error() == Some(libc::EBUSY) {
                let usage = fs::read_u64(d, "memory.usage_in_bytes").unwrap_or(0);
                let max = fs::read_u64(d, "memory.max_usage_in_bytes").unwrap_or(0);
                CgroupError::invalid(
                    format!("{F}.memory.limit"),
                    format!("unable to set the memory limit to {l} (current usage: {usage}, peak usage: {max})"),
                )
            } else if e.raw_os_error() == Some(libc::EINVAL) && fs::exists(d, MEMSW) {
                CgroupError::invalid(
                    format!("{F}.memory.limit"),
                    format!("the kernel refused {l}: the limit cannot exceed the memory+swap limit (memory.swap); raise that too"),
                )
            } else {
                fs::write_error(&format!("{F}.memory.limit"), d, LIMIT, &v, e)
            }
        })
    };
    let set_swap = |s: i64| -> Result<(), CgroupError> {
        set(&format!("{F}.memory.swap"), d, MEMSW, &s.to_string()).map_err(|e| match e {
            CgroupError::Unsupported(_) => CgroupError::Unsupported(format!(
                "{F}.memory.swap: swap accounting is not enabled in this kernel ({} does not exist)",
                d.join(MEMSW).display()
            )),
            e => e,
        })
    };
    match (limit, swap) {
        (Some(l), Some(s)) => {
            // memsw must stay >= limit at every step: order the writes by the current limit.
            let cur = fs::read_u64(d, LIMIT).map_err(io("read", d))?;
            if s == -1 || cur < s as u64 {
                set_swap(s)?;
                set_limit(l)?;
            } else {
                set_limit(l)?;
                set_swap(s)?;
            }
        }
        (Some(l), None) => set_limit(l)?,
        (None, Some(s)) => set_swap(s)?,
        (None, None) => {}
    }
    if let Some(r) = nz(m.reservation()) {
        set(
            &format!("{F}.memory.reservation"),
            d,
            "memory.soft_limit_in_bytes",
            &r.to_string(),
        )?;
    }
    #[allow(deprecated)]
    if let Some(k) = nz(m.kernel()) {
        set(
            &format!("{F}.memory.kernel"),
            d,
            "memory.kmem.limit_in_bytes",
            &k.to_string(),
        )?;
    }
    if let Some(k) = nz(m.kernel_tcp()) {
        set(
            &format!("{F}.memory.kernelTCP"),
            d,
            "memory.kmem.tcp.limit_in_bytes",
            &k.to_string(),
        )?;
    }
    if let Some(s) = m.swappiness() {
        set(
            &format!("{F}.memory.swappiness"),
            d,
            "memory.swappiness",
            &s.to_string(),
        )?;
    }
    if m.disable_oom_killer() == Some(true) {
        set(
            &format!("{F}.memory.disableOOMKiller"),
            d,
            "memory.oom_control",
            "1",
        )?;
    }
    if let Some(h) = m.use_hierarchy() {
        set(
            &format!("{F}.memory.useHierarchy"),
            d,
            "memory.use_hierarchy",
            if h { "1" } else { "0" },
        )?;
    }
    Ok(())
}

pub fn cpu(d: &Path, c: &LinuxCpu) -> Result<(), CgroupError> {
    if let Some(s) = c.shares().filter(|&s| s != 0) {
        set(&format!("{F}.cpu.shares"), d, "cpu.shares", &s.to_string())?;
        // The kernel clamps silently; say so instead.
        let got = fs::read_u64(d, "cpu.shares").map_err(io("read", d))?;
        if got != s {
            let bound = if s > got { "maximum" } else { "minimum" };
            return Err(CgroupError::invalid(
                format!("{F}.cpu.shares"),
                format!("{s} is out of range: the {bound} allowed cpu-shares is {got}"),
            ));
        }
    }
    // The period may be refused before the quota is lowered (old quota / new period would
    // exceed the parent's limit): then retry it after the quota, as runc does.
    let quota = nz(c.quota());
    let mut period_pending = None;
    if let Some(p) = c.period().filter(|&p| p != 0) {
        match fs::write(d, "cpu.cfs_period_us", &p.to_string()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && quota.is_some() => {
                period_pending = Some(p)
            }
            Err(e) => {
                return Err(fs::write_error(
                    &format!("{F}.cpu.period"),
                    d,
                    "cpu.cfs_period_us",
                    &p.to_string(),
                    e,
                ))
            }
        }
    }
    if let Some(q) = quota {
        set(
            &format!("{F}.cpu.quota"),
            d,
            "cpu.cfs_quota_us",
            &q.to_string(),
        )?;
        if let Some(p) = period_pending {
            set(
                &format!("{F}.cpu.period"),
                d,
                "cpu.cfs_period_us",
                &p.to_string(),
            )?;
        }
    }
    if let Some(b) = c.burst() {
        set(
            &format!("{F}.cpu.burst"),
            d,
            "cpu.cfs_burst_us",
            &b.to_string(),
        )?;
    }
    let runtime = nz(c.realtime_runtime());
    let mut rt_pending = None;
    if let Some(p) = c.realtime_period().filter(|&p| p != 0) {
        match fs::write(d, "cpu.rt_period_us", &p.to_string()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && runtime.is_some() => {
                rt_pending = Some(p)
            }
            Err(e) => {
                return Err(fs::write_error(
                    &format!("{F}.cpu.realtimePeriod"),
                    d,
                    "cpu.rt_period_us",
                    &p.to_string(),
                    e,
                ))
            }
        }
    }
    if let Some(r) = runtime {
        set(
            &format!("{F}.cpu.realtimeRuntime"),
            d,
            "cpu.rt_runtime_us",
            &r.to_string(),
        )?;
        if let Some(p) = rt_pending {
            set(
                &format!("{F}.cpu.realtimePeriod"),
                d,
                "cpu.rt_period_us",
                &p.to_string(),
            )?;
        }
    }
    if let Some(i) = c.idle() {
        set(&format!("{F}.cpu.idle"), d, "cpu.idle", &i.to_string())?;
    }
    Ok(())
}

/// cpuset.cpus / cpuset.mems (the same files on v1 and v2).
pub fn cpuset(d: &Path, c: &LinuxCpu) -> Result<(), CgroupError> {
    if let Some(v) = c.cpus().as_deref().filter(|v| !v.is_empty()) {
        set(&format!("{F}.cpu.cpus"), d, "cpuset.cpus", v)?;
    }
    if let Some(v) = c.mems().as_deref().filter(|v| !v.is_empty()) {
        set(&format!("{F}.cpu.mems"), d, "cpuset.mems", v)?;
    }
    Ok(())
}

/// pids.max (the same file on v1 and v2): a positive limit, or "max" for a negative one.
pub fn pids(d: &Path, limit: i64) -> Result<(), CgroupError> {
    if limit == 0 {
        return Ok(());
    }
    let v = if limit > 0 {
        limit.to_string()
    } else {
        "max".into()
    };
    set(&format!("{F}.pids.limit"), d, "pids.max", &v)
}

pub fn blkio(d: &Path, b: &LinuxBlockIo) -> Result<(), CgroupError> {
    // CFQ's blkio.weight is gone from recent kernels; BFQ's takes the same range (runc).
    let (wf, wdf) = if fs::exists(d, "blkio.weight") {
        ("blkio.weight", "blkio.weight_device")
    } else {
        ("blkio.bfq.weight", "blkio.bfq.weight_device")
    };
    if let Some(w) = b.weight().filter(|&w| w != 0) {
        set(&format!("{F}.blockIO.weight"), d, wf, &w.to_string())?;
    }
    if let Some(w) = b.leaf_weight().filter(|&w| w != 0) {
        set(
            &format!("{F}.blockIO.leafWeight"),
            d,
            "blkio.leaf_weight",
            &w.to_string(),
        )?;
    }
    for (i, wd) in b.weight_device().iter().flatten().enumerate() {
        let dev = format!("{}:{}", wd.major(), wd.minor());
        if let Some(w) = wd.weight().filter(|&w| w != 0) {
            set(
                &format!("{F}.blockIO.weightDevice[{i}].weight"),
                d,
                wdf,
                &format!("{dev} {w}"),
            )?;
        }
        if let Some(w) = wd.leaf_weight().filter(|&w| w != 0) {
            set(
                &format!("{F}.blockIO.weightDevice[{i}].leafWeight"),
                d,
                "blkio.leaf_weight_device",
                &format!("{dev} {w}"),
            )?;
        }
    }
    for (name, list, file) in [
        (
            "throttleReadBpsDevice",
            b.throttle_read_bps_device(),
            "blkio.throttle.read_bps_device",
        ),
        (
            "throttleWriteBpsDevice",
            b.throttle_write_bps_device(),
            "blkio.throttle.write_bps_device",
        ),
        (
            "throttleReadIOPSDevice",
            b.throttle_read_iops_device(),
            "blkio.throttle.read_iops_device",
        ),
        (
            "throttleWriteIOPSDevice",
            b.throttle_write_iops_device(),
            "blkio.throttle.write_iops_device",
        ),
    ] {
        for (i, t) in list.iter().flatten().enumerate() {
            set(
                &format!("{F}.blockIO.{name}[{i}]"),
                d,
                file,
                &format!("{}:{} {}", t.major(), t.minor(), t.rate()),
            )?;
        }
    }
    Ok(())
}

/// The error for a page size the kernel has no files for.
pub fn bad_pagesize(i: usize, size: &str) -> CgroupError {
    let have = stats::hugepage_sizes();
    CgroupError::invalid(
        format!("{F}.hugepageLimits[{i}].pageSize"),
        format!(
            "hugepage size {size:?} is not supported by this kernel (supported: {})",
            if have.is_empty() {
                "none".to_string()
            } else {
                have.join(", ")
            }
        ),
    )
}

pub fn hugetlb(d: &Path, limits: &[LinuxHugepageLimit]) -> Result<(), CgroupError> {
    for (i, h) in limits.iter().enumerate() {
        let file = format!("hugetlb.{}.limit_in_bytes", h.page_size());
        if !fs::exists(d, &file) {
            return Err(bad_pagesize(i, h.page_size()));
        }
        let v = h.limit().to_string();
        set(&format!("{F}.hugepageLimits[{i}].limit"), d, &file, &v)?;
        let rsvd = format!("hugetlb.{}.rsvd.limit_in_bytes", h.page_size());
        if fs::exists(d, &rsvd) {
            set(&format!("{F}.hugepageLimits[{i}].limit"), d, &rsvd, &v)?;
        }
    }
    Ok(())
}

pub fn net_cls(d: &Path, class_id: u32) -> Result<(), CgroupError> {
    set(
        &format!("{F}.network.classID"),
        d,
        "net_cls.classid",
        &class_id.to_string(),
    )
}

pub fn net_prio(d: &Path, prios: &[LinuxInterfacePriority]) -> Result<(), CgroupError> {
    for (i, p) in prios.iter().enumerate() {
        set(
            &format!("{F}.network.priorities[{i}]"),
            d,
            "net_prio.ifpriomap",
            &format!("{} {}", p.name(), p.priority()),
        )?;
    }
    Ok(())
}

/// The freezer's state; a cgroup frozen only because an ancestor is counts as thawed (runc).
pub fn freezer_state(d: &Path) -> Result<FreezerState, CgroupError> {
    let s = fs::read(d, "freezer.state").map_err(io("read", d))?;
    Ok(match s.trim() {
        "FROZEN" => match fs::read(d, "freezer.self_freezing") {
            Ok(v) if v.trim() == "0" => FreezerState::Thawed,
            _ => FreezerState::Frozen,
        },
        "FREEZING" => FreezerState::Freezing,
        _ => FreezerState::Thawed,
    })
}

/// Freezes and waits until every task is frozen. The v1 freezer offers no notification of
/// the FREEZING → FROZEN transition (reading freezer.state is what re-evaluates it), so this
/// waits with exponentially growing sleeps, bounded in time; a task forked while freezing can
/// hold the transition up, so each round starts with a fresh request, as runc does. On
/// failure the cgroup is thawed again.
pub fn freeze(d: &Path) -> Result<(), CgroupError> {
    const ROUNDS: u32 = 4;
    for _ in 0..ROUNDS {
        set("freezer.state", d, "freezer.state", "FROZEN")?;
        let deadline = Instant::now() + Duration::from_millis(500);
        let mut nap = Duration::from_micros(200);
        loop {
            let s = fs::read(d, "freezer.state").map_err(io("read", d))?;
            if s.trim() == "FROZEN" {
                return Ok(());
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(nap);
            nap = (nap * 2).min(Duration::from_millis(50));
        }
        // Let the stragglers run for a moment, then ask again.
        set("freezer.state", d, "freezer.state", "THAWED")?;
    }
    Err(CgroupError::Other(format!(
        "freezer: {} did not reach FROZEN within {ROUNDS} attempts of 500ms (a process may be stuck in the kernel); it was thawed again",
        d.display()
    )))
}

pub fn thaw(d: &Path) -> Result<(), CgroupError> {
    set("freezer.state", d, "freezer.state", "THAWED")
}

// --- statistics -------------------------------------------------------------------------

pub fn cpuacct_stats(d: &Path, s: &mut Stats) {
    let u = &mut s.cpu.usage;
    u.total = fs::read_u64(d, "cpuacct.usage").unwrap_or(0);
    if let Ok(v) = fs::read(d, "cpuacct.usage_percpu") {
        u.percpu = v
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
    }
    // "cpu user system" then one line per cpu, in nanoseconds.
    if let Ok(v) = fs::read(d, "cpuacct.usage_all") {
        for l in v.lines().skip(1) {
            let f: Vec<u64> = l
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            if f.len() == 3 {
                u.percpu_user.push(f[1]);
                u.percpu_kernel.push(f[2]);
            }
        }
    }
    // cpuacct.stat is in USER_HZ ticks.
    if let Ok(kv) = fs::read_kv(d, "cpuacct.stat") {
        let hz = clock_ticks();
        let ns = |t: u64| t.saturating_mul(1_000_000_000) / hz;
        u.user = ns(kv.get("user").copied().unwrap_or(0));
        u.kernel = ns(kv.get("system").copied().unwrap_or(0));
    }
}

fn clock_ticks() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(hz)) if hz > 0 => hz as u64,
        _ => 100,
    }
}

pub fn cpu_stats(d: &Path, s: &mut Stats) {
    if let Ok(kv) = fs::read_kv(d, "cpu.stat") {
        let t = &mut s.cpu.throttling;
        t.periods = kv.get("nr_periods").copied().unwrap_or(0);
        t.throttled_periods = kv.get("nr_throttled").copied().unwrap_or(0);
        t.throttled_time = kv.get("throttled_time").copied().unwrap_or(0);
    }
}

/// cpuset files (the same names on v1; v2 has only cpus/mems and their effective values).
pub fn cpuset_stats(d: &Path, s: &mut Stats) {
    let c = &mut s.cpuset;
    c.cpus = fs::read(d, "cpuset.cpus")
        .map(|v| fs::parse_list(&v))
        .unwrap_or_default();
    c.mems = fs::read(d, "cpuset.mems")
        .map(|v| fs::parse_list(&v))
        .unwrap_or_default();
    let n = |f: &str| fs::read_u64(d, f).unwrap_or(0);
    c.cpu_exclusive = n("cpuset.cpu_exclusive");
    c.mem_hardwall = n("cpuset.mem_hardwall");
    c.mem_exclusive = n("cpuset.mem_exclusive");
    c.memory_migrate = n("cpuset.memory_migrate");
    c.memory_spread_page = n("cpuset.memory_spread_page");
    c.memory_spread_slab = n("cpuset.memory_spread_slab");
    c.memory_pressure = n("cpuset.memory_pressure");
    c.sched_load_balance = n("cpuset.sched_load_balance");
    c.sched_relax_domain_level = fs::read(d, "cpuset.sched_relax_domain_level")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
}

pub fn memory_stats(d: &Path, s: &mut Stats) -> Result<(), CgroupError> {
    let m = &mut s.memory;
    m.raw = fs::read_kv(d, "memory.stat").map_err(io("read", d))?;
    m.cache = m
        .raw
        .get("cache")
        .or(m.raw.get("total_cache"))
        .copied()
        .unwrap_or(0);
    let entry = |prefix: &str| {
        let n = |f: &str| fs::read_u64(d, &format!("{prefix}.{f}")).unwrap_or(0);
        stats::MemoryEntry {
            limit: n("limit_in_bytes"),
            usage: n("usage_in_bytes"),
            max: n("max_usage_in_bytes"),
            failcnt: n("failcnt"),
        }
    };
    m.usage = entry("memory");
    m.swap = entry("memory.memsw");
    m.kernel = entry("memory.kmem");
    m.kernel_tcp = entry("memory.kmem.tcp");
    Ok(())
}

/// pids.current / pids.max (the same files on v1 and v2; "max" reads as no limit: 0).
pub fn pids_stats(d: &Path, s: &mut Stats) {
    s.pids.current = fs::read_u64(d, "pids.current").unwrap_or(0);
    s.pids.limit = match fs::read_u64(d, "pids.max") {
        Ok(u64::MAX) | Err(_) => 0,
        Ok(n) => n,
    };
}

/// "8:0 Read 4096" lines (the "Total" line is skipped).
fn blkio_entries(text: &str) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (dev, op, v) = match f.as_slice() {
                [dev, op, v] => (*dev, *op, *v),
                [dev, v] => (*dev, "", *v),
                _ => return None,
            };
            let (ma, mi) = dev.split_once(':')?;
            Some(BlkioEntry {
                major: ma.parse().ok()?,
                minor: mi.parse().ok()?,
                op: op.to_string(),
                value: v.parse().ok()?,
            })
        })
        .collect()
}

pub fn blkio_stats(d: &Path, s: &mut Stats) {
    let b = &mut s.blkio;
    let get = |f: &str| {
        fs::read(d, f)
            .map(|t| blkio_entries(&t))
            .unwrap_or_default()
    };
    // CFQ (old kernels), then BFQ, then the throttling counters that always exist.
    if fs::exists(d, "blkio.io_service_bytes_recursive") {
        b.io_service_bytes_recursive = get("blkio.io_service_bytes_recursive");
        b.io_serviced_recursive = get("blkio.io_serviced_recursive");
        b.io_queued_recursive = get("blkio.io_queued_recursive");
        b.io_service_time_recursive = get("blkio.io_service_time_recursive");
        b.io_wait_time_recursive = get("blkio.io_wait_time_recursive");
        b.io_merged_recursive = get("blkio.io_merged_recursive");
        b.io_time_recursive = get("blkio.time_recursive");
        b.sectors_recursive = get("blkio.sectors_recursive");
    } else if fs::exists(d, "blkio.bfq.io_service_bytes_recursive") {
        b.io_service_bytes_recursive = get("blkio.bfq.io_service_bytes_recursive");
        b.io_serviced_recursive = get("blkio.bfq.io_serviced_recursive");
    } else {
        b.io_service_bytes_recursive = get("blkio.throttle.io_service_bytes_recursive");
        b.io_serviced_recursive = get("blkio.throttle.io_serviced_recursive");
    }
}

pub fn hugetlb_stats(d: &Path, s: &mut Stats) {
    for size in stats::hugepage_sizes() {
        let n = |f: &str| fs::read_u64(d, &format!("hugetlb.{size}.{f}"));
        let Ok(usage) = n("usage_in_bytes") else {
            continue;
        };
        s.hugetlb.insert(
            size.clone(),
            stats::Hugetlb {
                usage,
                max: n("max_usage_in_bytes").unwrap_or(0),
                failcnt: n("failcnt").unwrap_or(0),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::fakefs::{fake, get};

    fn mem(json: &str) -> LinuxMemory {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn memory_files_and_unlimited_swap() {
        let d = fake(&[
            ("memory.limit_in_bytes", "9223372036854771712"),
            ("memory.memsw.limit_in_bytes", "9223372036854771712"),
            ("memory.soft_limit_in_bytes", ""),
            ("memory.swappiness", "60"),
            ("memory.oom_control", ""),
            ("memory.kmem.tcp.limit_in_bytes", ""),
        ]);
        memory(
            d.path(),
            &mem(r#"{"limit":104857600,"swap":209715200,"reservation":52428800,"swappiness":10,"disableOOMKiller":true,"kernelTCP":1048576}"#),
        )
        .unwrap();
        assert_eq!(get(&d, "memory.limit_in_bytes"), "104857600");
        assert_eq!(get(&d, "memory.memsw.limit_in_bytes"), "209715200");
        assert_eq!(get(&d, "memory.soft_limit_in_bytes"), "52428800");
        assert_eq!(get(&d, "memory.swappiness"), "10");
        assert_eq!(get(&d, "memory.oom_control"), "1");
        assert_eq!(get(&d, "memory.kmem.tcp.limit_in_bytes"), "1048576");
        // -1 without swap: both unlimited.
        memory(d.path(), &mem(r#"{"limit":-1}"#)).unwrap();
        assert_eq!(get(&d, "memory.limit_in_bytes"), "-1");
        assert_eq!(get(&d, "memory.memsw.limit_in_bytes"), "-1");
        // A knob this kernel lacks is an error naming the field, only when asked for.
        let e = memory(d.path(), &mem(r#"{"kernel":1048576}"#)).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("linux.resources.memory.kernel: not supported by this kernel"),
            "{e}"
        );
        memory(d.path(), &mem(r#"{"kernel":0}"#)).unwrap();
    }

    #[test]
    fn check_before_update_refuses_a_limit_below_usage() {
        let d = fake(&[
            ("memory.limit_in_bytes", "0"),
            ("memory.usage_in_bytes", "5000"),
        ]);
        let e = memory(d.path(), &mem(r#"{"limit":4096,"checkBeforeUpdate":true}"#)).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("linux.resources.memory.limit: rejecting"),
            "{e}"
        );
        assert_eq!(get(&d, "memory.limit_in_bytes"), "0");
    }

    #[test]
    fn cpu_and_cpuset_files() {
        let d = fake(&[
            ("cpu.shares", "1024"),
            ("cpu.cfs_period_us", "100000"),
            ("cpu.cfs_quota_us", "-1"),
            ("cpu.cfs_burst_us", "0"),
            ("cpu.idle", "0"),
            ("cpuset.cpus", ""),
            ("cpuset.mems", ""),
        ]);
        let c: LinuxCpu = serde_json::from_str(
            r#"{"shares":512,"quota":50000,"period":200000,"burst":1000,"idle":1,"cpus":"0","mems":"0"}"#,
        )
        .unwrap();
        // The fake cpu.shares reads back what was written, like the kernel within range.
        cpu(d.path(), &c).unwrap();
        cpuset(d.path(), &c).unwrap();
        assert_eq!(get(&d, "cpu.shares"), "512");
        assert_eq!(get(&d, "cpu.cfs_quota_us"), "50000");
        assert_eq!(get(&d, "cpu.cfs_period_us"), "200000");
        assert_eq!(get(&d, "cpu.cfs_burst_us"), "1000");
        assert_eq!(get(&d, "cpu.idle"), "1");
        assert_eq!(get(&d, "cpuset.cpus"), "0");
        let rt: LinuxCpu = serde_json::from_str(r#"{"realtimeRuntime":1000}"#).unwrap();
        let e = cpu(d.path(), &rt).unwrap_err().to_string();
        assert!(
            e.starts_with("linux.resources.cpu.realtimeRuntime: not supported"),
            "{e}"
        );
    }

    #[test]
    fn blkio_prefers_cfq_files_and_falls_back_to_bfq() {
        let d = fake(&[
            ("blkio.bfq.weight", "100"),
            ("blkio.bfq.weight_device", ""),
            ("blkio.throttle.read_bps_device", ""),
        ]);
        let b: LinuxBlockIo = serde_json::from_str(
            r#"{"weight":300,"weightDevice":[{"major":8,"minor":0,"weight":500}],"throttleReadBpsDevice":[{"major":8,"minor":0,"rate":1048576}]}"#,
        )
        .unwrap();
        blkio(d.path(), &b).unwrap();
        assert_eq!(get(&d, "blkio.bfq.weight"), "300");
        assert_eq!(get(&d, "blkio.bfq.weight_device"), "8:0 500");
        assert_eq!(get(&d, "blkio.throttle.read_bps_device"), "8:0 1048576");
        let b: LinuxBlockIo = serde_json::from_str(r#"{"leafWeight":300}"#).unwrap();
        let e = blkio(d.path(), &b).unwrap_err().to_string();
        assert!(
            e.starts_with("linux.resources.blockIO.leafWeight: not supported"),
            "{e}"
        );
    }

    #[test]
    fn stats_are_read_from_v1_files() {
        let d = fake(&[
            ("cpuacct.usage", "5000"),
            ("cpuacct.usage_percpu", "3000 2000 \n"),
            (
                "cpuacct.usage_all",
                "cpu user system\n0 2000 1000\n1 1500 500\n",
            ),
            ("cpuacct.stat", "user 3\nsystem 1\n"),
            (
                "cpu.stat",
                "nr_periods 10\nnr_throttled 2\nthrottled_time 777\n",
            ),
            ("memory.stat", "cache 4096\nrss 8192\n"),
            ("memory.usage_in_bytes", "12288"),
            ("memory.limit_in_bytes", "104857600"),
            ("memory.max_usage_in_bytes", "20000"),
            ("memory.failcnt", "0"),
            ("pids.current", "3"),
            ("pids.max", "max"),
            (
                "blkio.throttle.io_service_bytes_recursive",
                "8:0 Read 4096\n8:0 Write 0\nTotal 4096\n",
            ),
        ]);
        let mut s = Stats::default();
        cpuacct_stats(d.path(), &mut s);
        cpu_stats(d.path(), &mut s);
        memory_stats(d.path(), &mut s).unwrap();
        pids_stats(d.path(), &mut s);
        blkio_stats(d.path(), &mut s);
        assert_eq!(s.cpu.usage.total, 5000);
        assert_eq!(s.cpu.usage.percpu, vec![3000, 2000]);
        assert_eq!(s.cpu.usage.percpu_user, vec![2000, 1500]);
        assert_eq!(s.cpu.usage.percpu_kernel, vec![1000, 500]);
        assert_eq!(s.cpu.usage.user, 3 * 1_000_000_000 / clock_ticks());
        assert_eq!(s.cpu.throttling.throttled_time, 777);
        assert_eq!(s.memory.cache, 4096);
        assert_eq!(s.memory.usage.usage, 12288);
        assert_eq!(s.memory.usage.limit, 104857600);
        assert_eq!(s.memory.raw["rss"], 8192);
        assert_eq!(s.pids.current, 3);
        assert_eq!(s.pids.limit, 0);
        assert_eq!(s.blkio.io_service_bytes_recursive.len(), 2);
        assert_eq!(s.blkio.io_service_bytes_recursive[0].op, "Read");
        assert_eq!(s.blkio.io_service_bytes_recursive[0].value, 4096);
    }

    #[test]
    fn freezer_state_reads_self_freezing() {
        let d = fake(&[
            ("freezer.state", "FROZEN\n"),
            ("freezer.self_freezing", "1\n"),
        ]);
        assert_eq!(freezer_state(d.path()).unwrap(), FreezerState::Frozen);
        std::fs::write(d.path().join("freezer.self_freezing"), "0\n").unwrap();
        assert_eq!(freezer_state(d.path()).unwrap(), FreezerState::Thawed);
        std::fs::write(d.path().join("freezer.state"), "FREEZING\n").unwrap();
        assert_eq!(freezer_state(d.path()).unwrap(), FreezerState::Freezing);
        // A regular file reads back FROZEN at once.
        freeze(d.path()).unwrap();
        thaw(d.path()).unwrap();
        assert_eq!(get(&d, "freezer.state"), "THAWED");
    }
}
