//! bench/rtwrap: times each call an engine makes to its OCI runtime (bench/engines.py).
//! Built with a bare `rustc -O` (cached in bench/.tools), not part of the workspace.
//!
//! Installed as DIR/NAME (NAME the runtime's own name, which podman uses for its --root and
//! to decide whether the runtime takes --log-format=json). DIR/rtwrap.conf holds two lines:
//! the real runtime's path and a log file. The wrapper runs the real runtime as its child with
//! the same arguments, environment, file descriptors and signal mask, waits for it (wait4: wall
//! time and rusage), appends one line to the log and exits with the runtime's status:
//!
//!   start_unix_ns wall_ns utime_us stime_us exit_code arg1 arg2 …
//!
//! A container init the runtime leaves behind is reparented past the wrapper, to the engine's
//! subreaper (the shim, conmon), as it would be without it.

use std::ffi::{CString, OsStr};
use std::io::Write;
use std::os::raw::{c_char, c_int, c_long};
use std::os::unix::ffi::OsStrExt;

#[repr(C)]
struct Timeval {
    tv_sec: c_long,
    tv_usec: c_long,
}

#[repr(C)]
struct Rusage {
    ru_utime: Timeval,
    ru_stime: Timeval,
    rest: [c_long; 14],
}

#[repr(C)]
struct Timespec {
    tv_sec: c_long,
    tv_nsec: c_long,
}

extern "C" {
    fn fork() -> c_int;
    fn execv(path: *const c_char, argv: *const *const c_char) -> c_int;
    fn wait4(pid: c_int, status: *mut c_int, options: c_int, ru: *mut Rusage) -> c_int;
    fn _exit(code: c_int) -> !;
    fn clock_gettime(clk: c_int, ts: *mut Timespec) -> c_int;
    fn signal(sig: c_int, handler: usize) -> usize;
}

const SIGPIPE: c_int = 13;
const SIG_DFL: usize = 0;

fn now(clk: c_int) -> i128 {
    let mut ts = Timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { clock_gettime(clk, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

fn main() {
    // Rust ignores SIGPIPE in main; the runtime must get the disposition the engine gave us.
    unsafe { signal(SIGPIPE, SIG_DFL) };
    let exe = std::fs::read_link("/proc/self/exe").expect("rtwrap: /proc/self/exe");
    let conf = std::fs::read_to_string(exe.parent().unwrap().join("rtwrap.conf")).expect("rtwrap: rtwrap.conf");
    let mut lines = conf.lines();
    let real = lines.next().expect("rtwrap: no runtime path").to_string();
    let log = lines.next().expect("rtwrap: no log path").to_string();

    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let c_real = CString::new(real.as_bytes()).unwrap();
    let mut c_args: Vec<CString> = vec![c_real.clone()];
    for a in &args[1..] {
        c_args.push(CString::new(a.as_bytes()).unwrap());
    }
    let mut argv: Vec<*const c_char> = c_args.iter().map(|c| c.as_ptr()).collect();
    argv.push(std::ptr::null());

    let t0_real = now(0);
    let t0 = now(1);
    let pid = unsafe { fork() };
    if pid == 0 {
        unsafe {
            execv(c_real.as_ptr(), argv.as_ptr());
            _exit(127);
        }
    }
    let mut status: c_int = 0;
    let mut ru: Rusage = unsafe { std::mem::zeroed() };
    if pid < 0 || unsafe { wait4(pid, &mut status, 0, &mut ru) } < 0 {
        std::process::exit(125);
    }
    let wall = now(1) - t0;
    let code = if status & 0x7f == 0 { (status >> 8) & 0xff } else { 128 + (status & 0x7f) };
    let ut = ru.ru_utime.tv_sec as i64 * 1_000_000 + ru.ru_utime.tv_usec as i64;
    let st = ru.ru_stime.tv_sec as i64 * 1_000_000 + ru.ru_stime.tv_usec as i64;
    let mut line = format!("{t0_real} {wall} {ut} {st} {code}");
    for a in &args[1..] {
        line.push(' ');
        line.push_str(&String::from_utf8_lossy(OsStr::new(a).as_bytes()).replace(char::is_whitespace, "_"));
    }
    line.push('\n');
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(&log) {
        let _ = f.write_all(line.as_bytes());
    }
    std::process::exit(code);
}
