//! bench/criutime: stands in for `criu` (the runtimes' `--criu PATH`) in bench/checkpoint.py and
//! times the real one. Built with a bare `rustc -O` (no cargo, not part of the workspace).
//!
//! It runs the CRIU named by $BENCH_CRIU with the same arguments, as its child, with every fd
//! it was given (the runtimes pass CRIU's RPC socket by inheritance: `criu swrk FD`), waits
//! for it, appends one line "ARGV1 WALL_NS EXIT START_NS END_NS" to the file named by
//! $BENCH_CRIU_LOG (START/END: CLOCK_MONOTONIC around CRIU's run, comparable with Python's
//! time.monotonic_ns()) and exits as CRIU did (128+N when killed by signal N). What a runtime spends outside that wall
//! time is its own work; the wrapper's fork and wait (well under a millisecond) count against
//! both runtimes alike.

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;

#[repr(C)]
struct Timespec {
    tv_sec: i64,
    tv_nsec: i64,
}

extern "C" {
    fn clock_gettime(clk: i32, ts: *mut Timespec) -> i32;
}

/// CLOCK_MONOTONIC in nanoseconds.
fn monotonic_ns() -> i128 {
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the struct we own; CLOCK_MONOTONIC is 1 on Linux.
    unsafe { clock_gettime(1, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

fn main() {
    let criu = std::env::var_os("BENCH_CRIU").unwrap_or_else(|| "criu".into());
    let log = std::env::var_os("BENCH_CRIU_LOG");
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let start = monotonic_ns();
    let status = match Command::new(&criu).args(&args).status() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("criutime: cannot run {}: {e}", criu.to_string_lossy());
            std::process::exit(127);
        }
    };
    let end = monotonic_ns();
    let wall = end - start;
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    if let Some(log) = log {
        let verb = args
            .first()
            .map(|a| a.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = writeln!(f, "{verb} {wall} {code} {start} {end}");
        }
    }
    std::process::exit(code);
}
