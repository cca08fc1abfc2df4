//! The container commands that are about its cgroups: pause, resume, update, events, ps. The
//! CLI files parse arguments and call these.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollTimeout};
use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};

use super::stats::Event;
use super::{from_record, CgroupError, CgroupRecord};
use crate::container::{lifecycle, Container, Status, CONFIG_FILE};
use crate::error::{Error, Result};

fn record(c: &Container) -> Result<CgroupRecord> {
    c.state
        .as_ref()
        .and_then(|s| s.cgroup.clone())
        .ok_or_else(|| {
            CgroupError::Other(format!("container {:?} has no cgroup recorded", c.id)).into()
        })
}

/// `pause`: freezes every process of a created or running container.
pub fn pause(c: &Container) -> Result<()> {
    c.require(&[Status::Running, Status::Created], "pause")?;
    from_record(&record(c)?).freeze()?;
    Ok(())
}

/// `resume`: thaws a paused container.
pub fn resume(c: &Container) -> Result<()> {
    c.require(&[Status::Paused], "resume")?;
    from_record(&record(c)?).thaw()?;
    Ok(())
}

/// `update`: applies the values given in `new` to the live cgroup, then records them in the
/// container's stored config so later reads (and a later update) see them. Device rules are
/// not updated (as with runc).
pub fn update(c: &Container, new: &LinuxResources) -> Result<()> {
    c.require(
        &[Status::Created, Status::Running, Status::Paused],
        "update",
    )?;
    let m = from_record(&record(c)?);
    let mut spec = lifecycle::load_spec(c)?;
    let mut linux = spec.linux().clone().unwrap_or_default();
    let mut stored = linux.resources().clone().unwrap_or_default();
    let mut delta = new.clone();
    delta.set_devices(None);
    // cgroup v2 writes quota and period together (cpu.max): complete a lone one from the
    // stored config so the other is not reset.
    if let Some(cpu) = delta.cpu_mut() {
        let old = stored.cpu().clone().unwrap_or_default();
        let q = cpu.quota().filter(|&q| q != 0);
        let p = cpu.period().filter(|&p| p != 0);
        if q.is_some() && p.is_none() {
            cpu.set_period(old.period());
        } else if p.is_some() && q.is_none() {
            cpu.set_quota(old.quota());
        }
    }
    m.validate(&delta)?;
    m.apply(&delta)?;
    merge(&mut stored, &delta);
    linux.set_resources(Some(stored));
    spec.set_linux(Some(linux));
    c.write_file(
        CONFIG_FILE,
        &serde_json::to_vec(&spec).expect("spec serialises"),
    )?;
    Ok(())
}

/// Copies into `base` every value `new` sets (values that mean "unchanged" — absent, or 0 for
/// the limits where runc reads 0 as unset — are skipped).
pub fn merge(base: &mut LinuxResources, new: &LinuxResources) {
    fn nz_i(v: Option<i64>) -> Option<i64> {
        v.filter(|&x| x != 0)
    }
    fn nz_u(v: Option<u64>) -> Option<u64> {
        v.filter(|&x| x != 0)
    }
    // `put!(target, value => setter, …)`: each value that is Some is set on `target`.
    macro_rules! put {
        ($t:ident, $($v:expr => $set:ident),+ $(,)?) => {
            $( if let Some(v) = $v { $t.$set(Some(v)); } )+
        };
    }
    if let Some(n) = new.memory() {
        let mut m: LinuxMemory = base.memory().unwrap_or_default();
        #[allow(deprecated)]
        let kernel = nz_i(n.kernel());
        put!(m,
            nz_i(n.limit()) => set_limit,
            nz_i(n.reservation()) => set_reservation,
            nz_i(n.swap()) => set_swap,
            kernel => set_kernel,
            nz_i(n.kernel_tcp()) => set_kernel_tcp,
            n.swappiness() => set_swappiness,
            n.disable_oom_killer() => set_disable_oom_killer,
            n.use_hierarchy() => set_use_hierarchy,
            n.check_before_update() => set_check_before_update,
        );
        base.set_memory(Some(m));
    }
    if let Some(n) = new.cpu() {
        let mut c: LinuxCpu = base.cpu().clone().unwrap_or_default();
        put!(c,
            nz_u(n.shares()) => set_shares,
            nz_i(n.quota()) => set_quota,
            nz_u(n.period()) => set_period,
            n.burst() => set_burst,
            nz_i(n.realtime_runtime()) => set_realtime_runtime,
            nz_u(n.realtime_period()) => set_realtime_period,
            n.idle() => set_idle,
            n.cpus().clone().filter(|v| !v.is_empty()) => set_cpus,
            n.mems().clone().filter(|v| !v.is_empty()) => set_mems,
        );
        base.set_cpu(Some(c));
    }
    if let Some(p) = new.pids().filter(|p| p.limit() != 0) {
        base.set_pids(Some(p));
    }
    if let Some(n) = new.block_io() {
        let mut b: LinuxBlockIo = base.block_io().clone().unwrap_or_default();
        put!(b,
            n.weight().filter(|&v| v != 0) => set_weight,
            n.leaf_weight().filter(|&v| v != 0) => set_leaf_weight,
        );
        if let Some(list) = n.weight_device() {
            let mut cur = b.weight_device().clone().unwrap_or_default();
            for d in list {
                cur.retain(|x| (x.major(), x.minor()) != (d.major(), d.minor()));
                cur.push(*d);
            }
            b.set_weight_device(Some(cur));
        }
        type Get = fn(&LinuxBlockIo) -> &Option<Vec<oci_spec::runtime::LinuxThrottleDevice>>;
        type Set = for<'a> fn(
            &'a mut LinuxBlockIo,
            Option<Vec<oci_spec::runtime::LinuxThrottleDevice>>,
        ) -> &'a mut LinuxBlockIo;
        let lists: [(Get, Set); 4] = [
            (
                LinuxBlockIo::throttle_read_bps_device,
                LinuxBlockIo::set_throttle_read_bps_device,
            ),
            (
                LinuxBlockIo::throttle_write_bps_device,
                LinuxBlockIo::set_throttle_write_bps_device,
            ),
            (
                LinuxBlockIo::throttle_read_iops_device,
                LinuxBlockIo::set_throttle_read_iops_device,
            ),
            (
                LinuxBlockIo::throttle_write_iops_device,
                LinuxBlockIo::set_throttle_write_iops_device,
            ),
        ];
        for (get, set) in lists {
            if let Some(list) = get(n) {
                let mut cur = get(&b).clone().unwrap_or_default();
                for d in list {
                    cur.retain(|x| (x.major(), x.minor()) != (d.major(), d.minor()));
                    cur.push(*d);
                }
                set(&mut b, Some(cur));
            }
        }
        base.set_block_io(Some(b));
    }
    if let Some(list) = new.hugepage_limits() {
        let mut cur = base.hugepage_limits().clone().unwrap_or_default();
        for h in list {
            cur.retain(|x| x.page_size() != h.page_size());
            cur.push(h.clone());
        }
        base.set_hugepage_limits(Some(cur));
    }
    if let Some(n) = new.network() {
        let mut net = base.network().clone().unwrap_or_default();
        if let Some(id) = n.class_id() {
            net.set_class_id(Some(id));
        }
        if let Some(list) = n.priorities() {
            let mut cur = net.priorities().clone().unwrap_or_default();
            for p in list {
                cur.retain(|x| x.name() != p.name());
                cur.push(p.clone());
            }
            net.set_priorities(Some(cur));
        }
        base.set_network(Some(net));
    }
    if let Some(n) = new.rdma() {
        let mut cur = base.rdma().clone().unwrap_or_default();
        cur.extend(n.iter().map(|(k, v)| (k.clone(), *v)));
        base.set_rdma(Some(cur));
    }
    if let Some(n) = new.unified() {
        let mut cur = base.unified().clone().unwrap_or_default();
        cur.extend(n.iter().map(|(k, v)| (k.clone(), v.clone())));
        base.set_unified(Some(cur));
    }
}

/// `ps`: the container's pids, as a JSON array or filtered from `ps ARGS` output.
pub fn ps(c: &Container, json: bool, args: &[String]) -> Result<()> {
    let pids = match c.state.as_ref() {
        // No cgroup (rootless): the processes of the init's own pid namespace.
        Some(st) if st.cgroup.is_none() => {
            crate::rootless::signal::pid_namespace_pids(st.pid, st.start_time)
                .map_err(|e| Error::sys("list the container's processes", e))?
        }
        _ => from_record(&record(c)?).pids()?,
    };
    let mut out = std::io::stdout().lock();
    if json {
        // runc encodes a nil slice: an empty container prints null.
        let text = if pids.is_empty() {
            "null".to_string()
        } else {
            serde_json::to_string(&pids).expect("pids serialise")
        };
        let _ = writeln!(out, "{text}");
        return Ok(());
    }
    let args: Vec<String> = if args.is_empty() {
        vec!["-ef".into()]
    } else {
        args.to_vec()
    };
    let o = std::process::Command::new("ps")
        .args(&args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| Error::sys("run ps", e))?;
    if !o.status.success() {
        return Err(Error::Usage(format!(
            "ps {}: {}: {}{}",
            args.join(" "),
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )));
    }
    let text = String::from_utf8_lossy(&o.stdout);
    let _ = write!(out, "{}", filter_ps(&text, &pids)?);
    Ok(())
}

/// Keeps the header and the lines whose PID column is one of `pids`.
pub fn filter_ps(text: &str, pids: &[i32]) -> Result<String> {
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    let col = header
        .split_whitespace()
        .position(|t| t == "PID")
        .ok_or_else(|| Error::Usage("couldn't find PID field in ps output".into()))?;
    let mut out = format!("{header}\n");
    for l in lines.filter(|l| !l.is_empty()) {
        let f = l.split_whitespace().nth(col).unwrap_or("");
        let p: i32 = f
            .parse()
            .map_err(|_| Error::Usage(format!("unable to parse pid {f:?} in ps output")))?;
        if pids.contains(&p) {
            out.push_str(l);
            out.push('\n');
        }
    }
    Ok(out)
}

/// Parses a Go duration ("5s", "100ms", "1m30s", "1.5h"; units ns, us, µs, ms, s, m, h).
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let bad = || format!("invalid duration {s:?} (use e.g. 5s, 500ms, 1m30s)");
    let mut rest = s.trim();
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() || rest.starts_with('-') {
        return Err(bad());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let v: f64 = rest[..n].parse().map_err(|_| bad())?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += v * mult;
        rest = &rest[u..];
    }
    // Beyond Duration (about 585 billion years), or an overflow to infinity: refused, not a
    // panic.
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

fn emit(out: &mut impl Write, e: &Event) -> bool {
    let line = serde_json::to_string(e).expect("event serialises");
    writeln!(out, "{line}").and_then(|_| out.flush()).is_ok()
}

/// `events`: with `stats_only`, one stats event; otherwise stats every `interval` and an
/// "oom" event whenever the OOM killer acts, until the container's cgroup is empty or gone
/// (or stdout is closed). The container is not kept locked meanwhile.
pub fn events(root: &Path, id: &str, stats_only: bool, interval: Duration) -> Result<()> {
    if interval.is_zero() {
        return Err(Error::Usage(
            "--interval: duration interval must be greater than 0".into(),
        ));
    }
    let rec = {
        let c = Container::load(root, id)?;
        if c.status() == Status::Stopped {
            return Err(Error::Usage(format!(
                "container with id {id} is not running"
            )));
        }
        record(&c)?
    };
    let m = from_record(&rec);
    let mut out = std::io::stdout().lock();
    if stats_only {
        let s = m.stats()?;
        emit(
            &mut out,
            &Event {
                typ: "stats",
                id,
                data: Some(&s),
            },
        );
        return Ok(());
    }
    let mut oom = m.oom_watch()?;
    let mut next = Instant::now() + interval;
    loop {
        let left = next.saturating_duration_since(Instant::now());
        let ms = left.as_millis().clamp(0, i32::MAX as u128) as i32;
        let timeout = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
        let woke = match oom.poll_fd() {
            Some((fd, ev)) => {
                let mut fds = [PollFd::new(fd, ev)];
                matches!(poll(&mut fds, timeout), Ok(n) if n > 0)
            }
            None => {
                std::thread::sleep(left);
                false
            }
        };
        if woke {
            let (n, gone) = oom.check();
            for _ in 0..n {
                if !emit(
                    &mut out,
                    &Event {
                        typ: "oom",
                        id,
                        data: None,
                    },
                ) {
                    return Ok(());
                }
            }
            if gone {
                return Ok(());
            }
        }
        if Instant::now() >= next {
            next += interval;
            match m.stats() {
                Ok(s) => {
                    if !emit(
                        &mut out,
                        &Event {
                            typ: "stats",
                            id,
                            data: Some(&s),
                        },
                    ) {
                        return Ok(());
                    }
                }
                Err(e) if m.exists() => crate::logging::warn(format!("events: stats: {e}")),
                Err(_) => return Ok(()),
            }
            // The container has stopped once nothing is left in its cgroup.
            if !m.exists() || m.pids().map(|p| p.is_empty()).unwrap_or(true) {
                return Ok(());
            }
        }
    }
}

/// Parses a memory size as docker's units.RAMInBytes does: a number with an optional binary
/// suffix (b, k, m, g, t, p; with or without "b"/"ib"), case-insensitive; "-1" is unlimited.
pub fn parse_bytes(s: &str) -> std::result::Result<i64, String> {
    let t = s.trim();
    if t == "-1" {
        return Ok(-1);
    }
    let bad = || format!("invalid size {s:?} (use bytes, or a number with k, m, g, t or p)");
    let n = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let v: f64 = t[..n].parse().map_err(|_| bad())?;
    let unit = t[n..].trim().to_ascii_lowercase();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(&unit);
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024f64.powi(2),
        "g" => 1024f64.powi(3),
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return Err(bad()),
    };
    let bytes = v * mult;
    if bytes > i64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn merge_keeps_what_an_update_does_not_set() {
        let mut base = res(
            r#"{"memory":{"limit":100,"swap":200},"cpu":{"shares":512,"cpus":"0"},
                "hugepageLimits":[{"pageSize":"2MB","limit":1}],"devices":[{"allow":false}]}"#,
        );
        let new = res(
            r#"{"memory":{"limit":300,"swap":0},"cpu":{"quota":1000,"cpus":""},
                "hugepageLimits":[{"pageSize":"2MB","limit":2},{"pageSize":"1GB","limit":0}],
                "pids":{"limit":5},"unified":{"hugetlb.2MB.max":"4"}}"#,
        );
        merge(&mut base, &new);
        let m = base.memory().unwrap();
        assert_eq!((m.limit(), m.swap()), (Some(300), Some(200)));
        let c = base.cpu().clone().unwrap();
        assert_eq!((c.shares(), c.quota()), (Some(512), Some(1000)));
        assert_eq!(c.cpus().as_deref(), Some("0"));
        let h = base.hugepage_limits().clone().unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(
            h.iter().find(|x| x.page_size() == "2MB").unwrap().limit(),
            2
        );
        assert_eq!(base.pids().unwrap().limit(), 5);
        assert_eq!(base.unified().as_ref().unwrap()["hugetlb.2MB.max"], "4");
        assert_eq!(base.devices().as_ref().unwrap().len(), 1);
    }

    #[test]
    fn ps_output_is_filtered_by_pid_column() {
        let text = "UID          PID    PPID  C STIME TTY          TIME CMD\n\
                    root           1       0  0 10:00 ?        00:00:01 init\n\
                    root          42       1  0 10:00 ?        00:00:00 sleep 10\n";
        let out = filter_ps(text, &[42]).unwrap();
        assert_eq!(
            out,
            "UID          PID    PPID  C STIME TTY          TIME CMD\nroot          42       1  0 10:00 ?        00:00:00 sleep 10\n"
        );
        assert!(filter_ps("NO HEADER\n", &[1]).is_err());
    }

    #[test]
    fn durations_and_sizes_parse_like_runc() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("100ms").unwrap(), Duration::from_millis(100));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("5x").is_err());
        // Found by fuzz/args: too big for a Duration.
        assert!(parse_duration("99999999999999999999s").is_err());
        assert!(parse_duration(&format!("{}h", "9".repeat(400))).is_err());
        assert_eq!(parse_bytes("1024").unwrap(), 1024);
        assert_eq!(parse_bytes("64m").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("64MB").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("-1").unwrap(), -1);
        assert!(parse_bytes("12q").is_err());
        assert!(parse_bytes("").is_err());
    }
}
