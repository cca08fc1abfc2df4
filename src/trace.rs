//! `--trace` / `BERTH_TRACE=1`: one log line per step of a command, with its start offset (µs
//! since the command started) and its duration (µs), and a summary line at the end.
//!
//! The lines go through the logger (`logging::trace_line`) at level `trace`, written whenever
//! tracing is on (with or without `--debug`): to the `--log` file in its format, or else to
//! stderr. text: `time="…" level=trace msg="trace: mounts +812us 304us count=9" count=9
//! duration_us=304 offset_us=812 pid=4711 step=mounts`; json: the same keys as fields.
//!
//! Steps that run in a process forked from Berth (the container's init, `exec`'s child) are
//! logged from there, before the seccomp filter is loaded; their offsets count from the same
//! start (the fork copies it), and their `pid` field tells them apart. Without `--log`, a forked
//! process writes nothing: its stderr is the container's.
//!
//! A command that re-executes itself (`selfprotect`) keeps its clock and its count: the
//! environment carries them across the exec ([`before_reexec`]), and the new image logs the
//! step `reexec`.
//!
//! Off, a step costs one relaxed load (`enabled`): no clock read, nothing formatted; built
//! without the `trace` feature, nothing (bench/README.md measures both).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use serde_json::Value;

static ON: AtomicBool = AtomicBool::new(false);
/// CLOCK_MONOTONIC at the command's start, in ns.
static START: AtomicU64 = AtomicU64::new(0);
/// Steps logged by this process (a forked child counts its own from its copy).
static STEPS: AtomicU32 = AtomicU32::new(0);
/// This is a process forked from the command (see [`forked`]).
static FORKED: AtomicBool = AtomicBool::new(false);

/// Whether tracing is asked for: `--trace`, or `BERTH_TRACE` set to exactly `1`.
pub fn wanted(flag: bool, env: Option<&std::ffi::OsStr>) -> bool {
    flag || env.is_some_and(|v| v == "1")
}

/// Where a re-executing command leaves its start, its step count and the moment it re-executes.
const RESUME_ENV: &str = "BERTH_TRACE_RESUME";

/// Turns tracing on (once, from the CLI, after the logger is set up): the command's clock
/// starts here, or, after a re-exec, where the first image's started.
pub fn init(enabled: bool) {
    let resumed = std::env::var(RESUME_ENV).ok();
    if resumed.is_some() {
        // Not passed on to hooks and helpers.
        std::env::remove_var(RESUME_ENV);
    }
    if !cfg!(feature = "trace") {
        if enabled {
            crate::logging::warn(
                "--trace: this build of Berth has no tracing (built without the `trace` feature)",
            );
        }
        return;
    }
    if !enabled {
        return;
    }
    let now = now_ns();
    let resumed = resumed.as_deref().and_then(parse_resume);
    START.store(resumed.map_or(now, |r| r.0), Ordering::Relaxed);
    ON.store(true, Ordering::Relaxed);
    if let Some((_, steps, reexec_at)) = resumed {
        STEPS.store(steps, Ordering::Relaxed);
        drop(Step {
            name: "reexec",
            begun: Some(reexec_at),
            count: None,
            detail: None,
        });
    }
}

/// Marks this process as one forked from the command (the container's init, `exec`'s child):
/// its lines go to the log file only. A store, no system call.
pub fn forked() {
    FORKED.store(true, Ordering::Relaxed);
}

/// Called right before the command re-executes itself: the new image goes on with this clock.
pub fn before_reexec() {
    if enabled() {
        let v = format!(
            "{}:{}:{}",
            START.load(Ordering::Relaxed),
            STEPS.load(Ordering::Relaxed),
            now_ns()
        );
        std::env::set_var(RESUME_ENV, v);
    }
}

/// `START:STEPS:REEXEC_AT` (see [`before_reexec`]); none if malformed or out of order.
fn parse_resume(v: &str) -> Option<(u64, u32, u64)> {
    let mut it = v.split(':');
    let start = it.next()?.parse().ok()?;
    let steps = it.next()?.parse().ok()?;
    let at = it.next()?.parse().ok()?;
    (it.next().is_none() && start <= at && at <= now_ns()).then_some((start, steps, at))
}

/// CLOCK_MONOTONIC in ns (what `Instant` reads), as a number that survives an exec.
fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given, which lives for the call.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Whether tracing is on: the one load a step costs when it is off (nothing at all in a build
/// without the `trace` feature, where every step compiles away).
#[inline]
pub fn enabled() -> bool {
    cfg!(feature = "trace") && ON.load(Ordering::Relaxed)
}

/// A step being timed: logged when dropped (also on an early `?` return, so a failing command
/// still shows the steps up to its failure).
#[must_use = "a step is logged when it is dropped"]
pub struct Step {
    name: &'static str,
    begun: Option<u64>,
    count: Option<u64>,
    detail: Option<String>,
}

/// Starts timing the step `name` (short and stable: tools match on it).
#[inline]
pub fn step(name: &'static str) -> Step {
    Step {
        name,
        begun: enabled().then(now_ns),
        count: None,
        detail: None,
    }
}

/// Runs `f` as the step `name`.
#[inline]
pub fn span<T>(name: &'static str, f: impl FnOnce() -> T) -> T {
    let _s = step(name);
    f()
}

impl Step {
    /// How many things the step handled (mounts, hooks), logged as `count`.
    #[inline]
    pub fn count(&mut self, n: usize) {
        if self.begun.is_some() {
            self.count = Some(n as u64);
        }
    }

    /// A note on the step (`f` runs only when tracing is on), logged as `detail`.
    #[inline]
    pub fn detail<S: Into<String>>(&mut self, f: impl FnOnce() -> S) {
        if self.begun.is_some() {
            self.detail = Some(f().into());
        }
    }

    /// Ends the step now (the same as dropping it).
    pub fn end(self) {}
}

impl Drop for Step {
    fn drop(&mut self) {
        let Some(begun) = self.begun else { return };
        let now = now_ns();
        let start = START.load(Ordering::Relaxed);
        let offset = begun.saturating_sub(start) / 1000;
        let duration = now.saturating_sub(begun) / 1000;
        STEPS.fetch_add(1, Ordering::Relaxed);
        let line = StepLine {
            name: self.name,
            offset_us: offset,
            duration_us: duration,
            count: self.count,
            detail: self.detail.take(),
        };
        let pid = std::process::id();
        write(&line.msg(), line.fields(pid));
    }
}

/// Logs the summary line (`trace: total Nus, K steps`), at the end of the command.
pub fn finish() {
    if !enabled() {
        return;
    }
    let total = now_ns().saturating_sub(START.load(Ordering::Relaxed)) / 1000;
    let steps = STEPS.load(Ordering::Relaxed);
    let pid = std::process::id();
    let (msg, fields) = summary(total, steps, pid);
    write(&msg, fields);
}

fn write(msg: &str, fields: Vec<(&'static str, Value)>) {
    crate::logging::trace_line(msg, &fields, FORKED.load(Ordering::Relaxed));
}

/// One step's line: its message and its fields.
struct StepLine {
    name: &'static str,
    offset_us: u64,
    duration_us: u64,
    count: Option<u64>,
    detail: Option<String>,
}

impl StepLine {
    fn msg(&self) -> String {
        let mut m = format!(
            "trace: {} +{}us {}us",
            self.name, self.offset_us, self.duration_us
        );
        if let Some(n) = self.count {
            m.push_str(&format!(" count={n}"));
        }
        if let Some(d) = &self.detail {
            m.push_str(&format!(" ({d})"));
        }
        m
    }

    fn fields(&self, pid: u32) -> Vec<(&'static str, Value)> {
        let mut f = vec![
            ("step", Value::from(self.name)),
            ("offset_us", self.offset_us.into()),
            ("duration_us", self.duration_us.into()),
            ("pid", pid.into()),
        ];
        if let Some(n) = self.count {
            f.push(("count", n.into()));
        }
        if let Some(d) = &self.detail {
            f.push(("detail", d.as_str().into()));
        }
        f
    }
}

fn summary(total_us: u64, steps: u32, pid: u32) -> (String, Vec<(&'static str, Value)>) {
    (
        format!("trace: total {total_us}us, {steps} steps"),
        vec![
            ("step", "total".into()),
            ("total_us", total_us.into()),
            ("steps", steps.into()),
            ("pid", pid.into()),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_value_1_turns_tracing_on() {
        use std::ffi::OsStr;
        assert!(wanted(true, None));
        assert!(wanted(false, Some(OsStr::new("1"))));
        assert!(!wanted(false, Some(OsStr::new("0"))));
        assert!(!wanted(false, Some(OsStr::new("true"))));
        assert!(!wanted(false, Some(OsStr::new(""))));
        assert!(!wanted(false, None));
    }

    #[test]
    fn step_line_names_offset_and_duration() {
        let l = StepLine {
            name: "mounts",
            offset_us: 812,
            duration_us: 304,
            count: Some(9),
            detail: None,
        };
        assert_eq!(l.msg(), "trace: mounts +812us 304us count=9");
        let f: serde_json::Map<String, Value> = l
            .fields(42)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(f["step"], "mounts");
        assert_eq!(f["offset_us"], 812);
        assert_eq!(f["duration_us"], 304);
        assert_eq!(f["count"], 9);
        assert_eq!(f["pid"], 42);
        assert!(!f.contains_key("detail"));
        let d = StepLine {
            name: "seccomp",
            offset_us: 0,
            duration_us: 7,
            count: None,
            detail: Some("cache hit".into()),
        };
        assert_eq!(d.msg(), "trace: seccomp +0us 7us (cache hit)");
        assert!(d.fields(1).contains(&("detail", "cache hit".into())));
    }

    #[test]
    fn a_resumed_clock_must_be_well_formed_and_past() {
        let now = now_ns();
        assert_eq!(parse_resume(&format!("5:3:{now}")), Some((5, 3, now)));
        assert_eq!(
            parse_resume(&format!("{now}:3:5")),
            None,
            "re-exec before start"
        );
        assert_eq!(parse_resume(&format!("5:3:{}", now + 60_000_000_000)), None);
        assert_eq!(parse_resume("5:3"), None);
        assert_eq!(parse_resume("5:3:7:9"), None);
        assert_eq!(parse_resume("a:3:7"), None);
    }

    #[test]
    fn summary_counts_steps() {
        let (msg, f) = summary(1500, 12, 7);
        assert_eq!(msg, "trace: total 1500us, 12 steps");
        assert!(f.contains(&("total_us", 1500.into())));
        assert!(f.contains(&("steps", 12.into())));
    }

    #[test]
    fn a_step_is_free_when_tracing_is_off() {
        // Nothing in the unit tests turns tracing on.
        let mut s = step("x");
        s.count(3);
        s.detail(|| -> String { panic!("formatted while tracing is off") });
        assert!(s.begun.is_none() && s.count.is_none());
    }
}
