//! Fault injection, in debug builds only: `BERTH_FAULT=<step>[:exit|:kill|:errno]` makes Berth
//! stop at the named point of its parent-side sequences: `exit` ends the process there (no
//! undo, as a crash would), `kill` SIGKILLs it, `errno` (the default) makes the step fail with
//! ENOSPC, so that the step's undo path runs. `tests/faults.rs` runs every step of [`STEPS`]
//! with each action and checks what the host is left with.
//!
//! In release builds [`point`] is an empty inline function whose error type has no values:
//! the call and its step name compile to nothing, and BERTH_FAULT is never read.

/// Every point named by a `fault::point(...)` call, in the order a command reaches them
/// (`tests/faults.rs` iterates this list, and checks it against the calls in the sources).
#[cfg_attr(not(debug_assertions), allow(dead_code))]
pub const STEPS: &[&str] = &[
    // create (and the create half of run)
    "create:config-parsed",
    "create:validated",
    "create:state-dir-made",
    "create:config-copied",
    "create:start-socket-made",
    "cgroup:dir-made",
    "create:cgroup-made",
    "create:init-spawned",
    "create:id-maps-written",
    "create:oom-score-adj-written",
    "create:cgroup-joined",
    "cgroup:cpuset-written",
    "cgroup:devices-written",
    "cgroup:memory-written",
    "cgroup:cpu-written",
    "cgroup:pids-written",
    "cgroup:blkio-written",
    "cgroup:hugetlb-written",
    "cgroup:net-cls-written",
    "cgroup:net-prio-written",
    "create:resources-written",
    "create:hooks-run",
    "create:init-ready",
    "create:state-saved",
    "create:pid-file-written",
    // start
    "start:loaded",
    "start:released",
    "start:init-running",
    // run --detach
    "run:created",
    "run:started",
    // exec
    "exec:loaded",
    "exec:spawned",
    "exec:pid-file-written",
    // delete
    "delete:loaded",
    "delete:killed",
    "delete:cgroup-removed",
    "delete:state-removed",
];

#[cfg(debug_assertions)]
pub use armed::point;

#[cfg(not(debug_assertions))]
pub use disarmed::point;

#[cfg(debug_assertions)]
mod armed {
    use std::sync::OnceLock;

    /// The error an `errno` fault makes its step return.
    #[derive(Debug)]
    pub struct Injected {
        step: &'static str,
        errno: i32,
    }

    impl Injected {
        fn message(&self) -> String {
            format!(
                "{} (injected fault): {}",
                self.step,
                std::io::Error::from_raw_os_error(self.errno)
            )
        }
    }

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Action {
        Exit,
        Kill,
        Errno,
    }

    /// BERTH_FAULT, read once: the step and what to do there.
    fn armed() -> Option<&'static (String, Action)> {
        static FAULT: OnceLock<Option<(String, Action)>> = OnceLock::new();
        FAULT
            .get_or_init(|| {
                let v = std::env::var("BERTH_FAULT").ok()?;
                let (step, action) = match v.rsplit_once(':') {
                    Some((s, "exit")) => (s, Action::Exit),
                    Some((s, "kill")) => (s, Action::Kill),
                    Some((s, "errno")) => (s, Action::Errno),
                    _ => (v.as_str(), Action::Errno),
                };
                Some((step.to_string(), action))
            })
            .as_ref()
    }

    /// A named point after a step: does what BERTH_FAULT says when it names this step.
    pub fn point(step: &'static str) -> Result<(), Injected> {
        debug_assert!(
            super::STEPS.contains(&step),
            "fault point {step:?} not in STEPS"
        );
        let Some((want, action)) = armed() else {
            return Ok(());
        };
        if want != step {
            return Ok(());
        }
        // Told on stderr first, so that a test sees the point was reached.
        eprintln!("berth: fault injected at {step}");
        match action {
            Action::Exit => std::process::exit(99),
            Action::Kill => {
                // SAFETY: kill(2) with integer arguments; this process ends here.
                unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
                unreachable!("SIGKILL returned")
            }
            Action::Errno => Err(Injected {
                step,
                errno: libc::ENOSPC,
            }),
        }
    }

    impl From<Injected> for crate::error::Error {
        fn from(e: Injected) -> Self {
            crate::error::Error::sys(
                format!("{} (injected fault)", e.step),
                std::io::Error::from_raw_os_error(e.errno),
            )
        }
    }

    impl From<Injected> for crate::cgroups::CgroupError {
        fn from(e: Injected) -> Self {
            crate::cgroups::CgroupError::Other(e.message())
        }
    }
}

#[cfg(not(debug_assertions))]
mod disarmed {
    /// No values: a `Result<(), Injected>` is always `Ok`, and `?` on it compiles to nothing.
    #[derive(Debug)]
    pub enum Injected {}

    /// Nothing, in release builds.
    #[inline(always)]
    pub fn point(_step: &'static str) -> Result<(), Injected> {
        Ok(())
    }

    impl From<Injected> for crate::error::Error {
        fn from(e: Injected) -> Self {
            match e {}
        }
    }

    impl From<Injected> for crate::cgroups::CgroupError {
        fn from(e: Injected) -> Self {
            match e {}
        }
    }
}
