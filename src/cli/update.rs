//! `berth update [FLAGS] ID`: changes a live container's resource limits, with runc's flags,
//! or with `--resources FILE|-` (a `linux.resources` JSON object; other flags are then
//! ignored, as with runc). Values not given are left as they are.

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};

use super::Global;
use crate::cgroups::commands::{self, parse_bytes};
use crate::container::Container;
use crate::error::Error;

#[derive(clap::Args, Debug, Default)]
pub struct Args {
    /// Read the resources (JSON, as linux.resources) from FILE, or from standard input with -
    #[arg(short = 'r', long, value_name = "FILE|-")]
    pub resources: Option<String>,
    /// Block IO weight (10-1000)
    #[arg(long = "blkio-weight")]
    pub blkio_weight: Option<u16>,
    /// CPU CFS period in microseconds
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<u64>,
    /// CPU CFS quota in microseconds (-1: no limit)
    #[arg(long = "cpu-quota", allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// CPU shares (relative weight)
    #[arg(long = "cpu-share")]
    pub cpu_share: Option<u64>,
    /// CPU realtime period in microseconds
    #[arg(long = "cpu-rt-period")]
    pub cpu_rt_period: Option<u64>,
    /// CPU realtime runtime in microseconds
    #[arg(long = "cpu-rt-runtime", allow_hyphen_values = true)]
    pub cpu_rt_runtime: Option<i64>,
    /// SCHED_IDLE for the cgroup (1) or not (0)
    #[arg(long = "cpu-idle")]
    pub cpu_idle: Option<i64>,
    /// CPUs to use (e.g. 0-2,4)
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes to use
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// Kernel memory limit in bytes (deprecated; cgroup v1 kernels that still have it)
    #[arg(long = "kernel-memory", allow_hyphen_values = true)]
    pub kernel_memory: Option<String>,
    /// Kernel TCP buffer memory limit in bytes (cgroup v1)
    #[arg(long = "kernel-memory-tcp", allow_hyphen_values = true)]
    pub kernel_memory_tcp: Option<String>,
    /// Memory limit in bytes (k, m, g suffixes; -1: no limit)
    #[arg(long, allow_hyphen_values = true)]
    pub memory: Option<String>,
    /// Memory reservation (soft limit) in bytes
    #[arg(long = "memory-reservation", allow_hyphen_values = true)]
    pub memory_reservation: Option<String>,
    /// Total memory+swap limit in bytes (-1: unlimited swap)
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Maximum number of pids (-1: no limit)
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Intel RDT L3 cache schema (not supported)
    #[arg(long = "l3-cache-schema")]
    pub l3_cache_schema: Option<String>,
    /// Intel RDT memory bandwidth schema (not supported)
    #[arg(long = "mem-bw-schema")]
    pub mem_bw_schema: Option<String>,
    /// Container id
    pub id: String,
}

fn bytes(flag: &str, v: &Option<String>) -> Result<Option<i64>, Error> {
    v.as_deref()
        .map(|s| parse_bytes(s).map_err(|e| Error::Usage(format!("--{flag}: {e}"))))
        .transpose()
}

/// The resources the command line asks for.
pub fn resources(a: &Args) -> Result<LinuxResources, Error> {
    if let Some(src) = &a.resources {
        use crate::config::{limits, ConfigError};
        let text = if src == "-" {
            limits::read_bounded(std::io::stdin().lock())
                .map_err(|e| Error::sys("--resources: read standard input", e))?
        } else {
            let what = || format!("--resources {src}");
            let file = std::fs::File::open(src).map_err(|e| Error::sys(what(), e))?;
            limits::read_bounded(file).map_err(|e| Error::sys(what(), e))?
        }
        .ok_or_else(|| Error::Usage(format!("--resources: {}", limits::too_large())))?;
        // The input bounds first: what crosses them is named before anything is allocated.
        limits::check(&text, "").map_err(|e| match e {
            ConfigError::Parse { field, msg } => Error::Usage(format!("--resources: {field}{msg}")),
            other => other.into(),
        })?;
        let de = &mut serde_json::Deserializer::from_slice(&text);
        return serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let at = if path == "." {
                String::new()
            } else {
                format!("{path}: ")
            };
            Error::Usage(format!("--resources: {at}{}", e.into_inner()))
        });
    }
    if a.l3_cache_schema.is_some() || a.mem_bw_schema.is_some() {
        let flag = if a.l3_cache_schema.is_some() {
            "--l3-cache-schema"
        } else {
            "--mem-bw-schema"
        };
        return Err(Error::Usage(format!(
            "{flag}: Intel RDT is not supported by Berth"
        )));
    }
    let mut r = LinuxResources::default();
    let mut m = LinuxMemory::default();
    m.set_limit(bytes("memory", &a.memory)?);
    m.set_reservation(bytes("memory-reservation", &a.memory_reservation)?);
    m.set_swap(bytes("memory-swap", &a.memory_swap)?);
    #[allow(deprecated)]
    m.set_kernel(bytes("kernel-memory", &a.kernel_memory)?);
    m.set_kernel_tcp(bytes("kernel-memory-tcp", &a.kernel_memory_tcp)?);
    if m != LinuxMemory::default() {
        r.set_memory(Some(m));
    }
    let mut c = LinuxCpu::default();
    c.set_shares(a.cpu_share);
    c.set_quota(a.cpu_quota);
    c.set_period(a.cpu_period);
    c.set_realtime_period(a.cpu_rt_period);
    c.set_realtime_runtime(a.cpu_rt_runtime);
    c.set_idle(a.cpu_idle);
    c.set_cpus(a.cpuset_cpus.clone());
    c.set_mems(a.cpuset_mems.clone());
    if c != LinuxCpu::default() {
        r.set_cpu(Some(c));
    }
    if let Some(l) = a.pids_limit {
        let mut p = LinuxPids::default();
        p.set_limit(l);
        r.set_pids(Some(p));
    }
    if let Some(w) = a.blkio_weight {
        let mut b = LinuxBlockIo::default();
        b.set_weight(Some(w));
        r.set_block_io(Some(b));
    }
    Ok(r)
}

pub fn run(g: &Global, a: Args) -> Result<i32, Error> {
    let r = resources(&a)?;
    let c = Container::load(&g.root, &a.id)?;
    commands::update(&c, &r)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_become_resources() {
        let a = Args {
            memory: Some("64m".into()),
            memory_swap: Some("-1".into()),
            cpu_quota: Some(-1),
            cpuset_cpus: Some("0".into()),
            pids_limit: Some(10),
            id: "c".into(),
            ..Default::default()
        };
        let r = resources(&a).unwrap();
        let m = r.memory().unwrap();
        assert_eq!((m.limit(), m.swap()), (Some(64 << 20), Some(-1)));
        assert_eq!(r.cpu().as_ref().unwrap().quota(), Some(-1));
        assert_eq!(r.pids().unwrap().limit(), 10);
        assert!(r.block_io().is_none());
        let a = Args {
            l3_cache_schema: Some("L3:0=f".into()),
            ..Default::default()
        };
        assert!(resources(&a)
            .unwrap_err()
            .to_string()
            .contains("Intel RDT is not supported"));
        let a = Args {
            memory: Some("lots".into()),
            ..Default::default()
        };
        assert!(resources(&a)
            .unwrap_err()
            .to_string()
            .starts_with("--memory: invalid size"));
    }

    #[test]
    fn resources_file_errors_name_the_path() {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), r#"{"memory":{"limit":"x"}}"#).unwrap();
        let a = Args {
            resources: Some(f.path().display().to_string()),
            ..Default::default()
        };
        let e = resources(&a).unwrap_err().to_string();
        assert!(
            e.starts_with("--resources: memory.limit: invalid type"),
            "{e}"
        );
    }

    #[test]
    fn resources_past_the_input_bounds_are_named() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let entry = r#"{"major":8,"minor":0,"rate":1}"#;
        let list = vec![entry; 100_000].join(",");
        std::fs::write(
            f.path(),
            format!(r#"{{"blockIO":{{"throttleReadBpsDevice":[{list}]}}}}"#),
        )
        .unwrap();
        let a = Args {
            resources: Some(f.path().display().to_string()),
            ..Default::default()
        };
        assert_eq!(
            resources(&a).unwrap_err().to_string(),
            "--resources: blockIO.throttleReadBpsDevice: 100000 entries, at most 65536 are \
             accepted"
        );
    }
}
