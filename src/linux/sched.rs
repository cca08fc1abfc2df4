//! Scheduling attributes of the process: `process.ioPriority` (ioprio_set), `process.scheduler`
//! (sched_setattr) and `process.execCPUAffinity` (sched_setaffinity), applied before exec while
//! the process is still privileged enough to ask for real-time classes.

use oci_spec::runtime::{
    ExecCPUAffinity, IOPriorityClass, LinuxIOPriority, LinuxSchedulerFlag as F,
    LinuxSchedulerPolicy as P, Scheduler,
};

/// `struct sched_attr` (SCHED_ATTR_SIZE_VER1).
#[repr(C)]
#[derive(Default)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
    util_min: u32,
    util_max: u32,
}

fn policy_number(p: P) -> u32 {
    match p {
        P::SchedOther => 0,
        P::SchedFifo => 1,
        P::SchedRr => 2,
        P::SchedBatch => 3,
        P::SchedIso => 4,
        P::SchedIdle => 5,
        P::SchedDeadline => 6,
    }
}

fn flag_bits(f: &F) -> u64 {
    match f {
        F::SchedResetOnFork => 0x01,
        F::SchedFlagReclaim => 0x02,
        F::SchedFlagDLOverrun => 0x04,
        F::SchedFlagKeepPolicy => 0x08,
        F::SchedFlagKeepParams => 0x10,
        F::SchedFlagUtilClampMin => 0x20,
        F::SchedFlagUtilClampMax => 0x40,
    }
}

/// Checks values the kernel would refuse with a bare EINVAL, so the error names the field.
pub fn validate(
    io: Option<&LinuxIOPriority>,
    s: Option<&Scheduler>,
    at: &str,
) -> Result<(), (String, String)> {
    if let Some(io) = io {
        if !(0..=7).contains(&io.priority()) {
            return Err((
                format!("{at}.ioPriority.priority"),
                format!("{} is outside 0..7", io.priority()),
            ));
        }
    }
    if let Some(s) = s {
        if let Some(n) = s.nice() {
            if !(-20..=19).contains(n) {
                return Err((
                    format!("{at}.scheduler.nice"),
                    format!("{n} is outside -20..19"),
                ));
            }
        }
        let rt = matches!(s.policy(), P::SchedFifo | P::SchedRr);
        match s.priority() {
            Some(p) if rt && !(1..=99).contains(p) => {
                return Err((
                    format!("{at}.scheduler.priority"),
                    format!("{p} is outside 1..99 for {}", s.policy()),
                ))
            }
            Some(p) if !rt && *p != 0 => {
                return Err((
                    format!("{at}.scheduler.priority"),
                    format!("must be 0 for {}", s.policy()),
                ))
            }
            None if rt => {
                return Err((
                    format!("{at}.scheduler.priority"),
                    format!("required for {}", s.policy()),
                ))
            }
            _ => {}
        }
        if *s.policy() == P::SchedDeadline && s.runtime().is_none() {
            return Err((
                format!("{at}.scheduler.runtime"),
                "required for SCHED_DEADLINE".into(),
            ));
        }
    }
    Ok(())
}

pub fn apply_io_priority(io: Option<&LinuxIOPriority>, at: &str) -> Result<(), String> {
    let Some(io) = io else { return Ok(()) };
    const IOPRIO_WHO_PROCESS: libc::c_int = 1;
    let class: i64 = match io.class() {
        IOPriorityClass::IoprioClassRt => 1,
        IOPriorityClass::IoprioClassBe => 2,
        IOPriorityClass::IoprioClassIdle => 3,
    };
    let value = (class << 13) | io.priority();
    // SAFETY: ioprio_set with integer arguments.
    if unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, value) } != 0 {
        return Err(format!(
            "{at}.ioPriority: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

pub fn apply_scheduler(s: Option<&Scheduler>, at: &str) -> Result<(), String> {
    let Some(s) = s else { return Ok(()) };
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy: policy_number(*s.policy()),
        flags: s
            .flags()
            .iter()
            .flatten()
            .map(flag_bits)
            .fold(0, |a, b| a | b),
        nice: s.nice().unwrap_or(0),
        priority: s.priority().unwrap_or(0) as u32,
        runtime: s.runtime().unwrap_or(0),
        deadline: s.deadline().unwrap_or(0),
        period: s.period().unwrap_or(0),
        ..Default::default()
    };
    // SAFETY: sched_setattr reads a correctly sized sched_attr that outlives the call.
    if unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) } != 0 {
        return Err(format!(
            "{at}.scheduler ({}): {}",
            s.policy(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Parses a CPU list ("0-3,7") into a CPU set.
fn cpu_set(list: &str) -> Option<nix::sched::CpuSet> {
    let mut set = nix::sched::CpuSet::new();
    for part in list.split(',') {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<usize>().ok()?, b.parse::<usize>().ok()?),
            None => {
                let n = part.parse::<usize>().ok()?;
                (n, n)
            }
        };
        for cpu in a..=b {
            set.set(cpu).ok()?;
        }
    }
    Some(set)
}

/// `initial` (while the runtime sets the process up) or `final` (for the program itself).
pub fn apply_affinity(a: Option<&ExecCPUAffinity>, final_: bool, at: &str) -> Result<(), String> {
    let Some(a) = a else { return Ok(()) };
    let (field, list) = if final_ {
        ("final", a.cpu_affinity_final())
    } else {
        ("initial", a.initial())
    };
    let Some(list) = list else { return Ok(()) };
    let set = cpu_set(list)
        .ok_or_else(|| format!("{at}.execCPUAffinity.{field}: bad CPU list {list:?}"))?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .map_err(|e| format!("{at}.execCPUAffinity.{field}: {list}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse() {
        let s = cpu_set("0-2,5").unwrap();
        for (cpu, on) in [(0, true), (1, true), (2, true), (3, false), (5, true)] {
            assert_eq!(s.is_set(cpu).unwrap(), on, "cpu {cpu}");
        }
        assert!(cpu_set("x").is_none());
    }

    #[test]
    fn scheduler_values_are_checked_with_their_field() {
        let s: Scheduler = serde_json::from_str(r#"{"policy":"SCHED_FIFO","priority":0}"#).unwrap();
        let e = validate(None, Some(&s), "process").unwrap_err();
        assert_eq!(e.0, "process.scheduler.priority");
        let s: Scheduler = serde_json::from_str(r#"{"policy":"SCHED_OTHER","nice":40}"#).unwrap();
        assert_eq!(
            validate(None, Some(&s), "process").unwrap_err().0,
            "process.scheduler.nice"
        );
        let io: LinuxIOPriority =
            serde_json::from_str(r#"{"class":"IOPRIO_CLASS_BE","priority":9}"#).unwrap();
        assert_eq!(
            validate(Some(&io), None, "process").unwrap_err().0,
            "process.ioPriority.priority"
        );
    }
}
