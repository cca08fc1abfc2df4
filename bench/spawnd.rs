//! bench/spawnd: the benchmark's process launcher. Built by bench.py with a bare `rustc -O`
//! (no cargo, not part of the workspace).
//!
//! Why it exists: a process's peak RSS (ru_maxrss) carries over the high-water mark of the
//! address space it replaced at execve. Spawned straight from the Python driver, every runtime
//! would report the driver's ~20 MiB. Spawned from this small, long-lived process instead, the
//! figure is the runtime's own. It also takes the wall-clock reading next to the fork/wait.
//!
//! Protocol, on stdin/stdout (pipes to the driver), one request at a time:
//!   request:  a line "N" then N NUL-terminated strings: timeout in ms, "1" to start the
//!             command with SIGCHLD blocked (else "0"), stdout path, stderr path, then argv (argv[0] is the executable's path; the environment is passed
//!             through as is)
//!   response: one line "exit_code wall_ns utime_us stime_us maxrss_kib timed_out minflt
//!             nvcsw nivcsw" (page faults, voluntary and involuntary context switches)
//!             (exit_code is 128+N when killed by signal N; a command still running after the
//!             timeout is killed with SIGKILL and reported with timed_out = 1)

use std::ffi::CString;
use std::io::{BufRead, BufReader, Write};
use std::os::raw::{c_char, c_int, c_long};

#[repr(C)]
struct Timeval {
    tv_sec: c_long,
    tv_usec: c_long,
}

#[repr(C)]
struct Rusage {
    ru_utime: Timeval,
    ru_stime: Timeval,
    ru_maxrss: c_long,
    /// ixrss idrss isrss minflt majflt nswap inblock oublock msgsnd msgrcv nsignals nvcsw nivcsw
    rest: [c_long; 13],
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
    fn open(path: *const c_char, flags: c_int, mode: c_int) -> c_int;
    fn dup2(old: c_int, new: c_int) -> c_int;
    fn close(fd: c_int) -> c_int;
    fn _exit(code: c_int) -> !;
    fn clock_gettime(clk: c_int, ts: *mut Timespec) -> c_int;
    fn syscall(num: c_long, ...) -> c_long;
    fn poll(fds: *mut PollFd, n: u64, timeout: c_int) -> c_int;
    fn kill(pid: c_int, sig: c_int) -> c_int;
    fn sigprocmask(how: c_int, set: *const SigSet, old: *mut SigSet) -> c_int;
}

#[repr(C)]
struct SigSet {
    bits: [u64; 16],
}

const SIG_BLOCK: c_int = 0;
const SIGCHLD: c_int = 17;

#[repr(C)]
struct PollFd {
    fd: c_int,
    events: i16,
    revents: i16,
}

const SYS_PIDFD_OPEN: c_long = 434;
const POLLIN: i16 = 1;
const SIGKILL: c_int = 9;

const O_RDONLY: c_int = 0;
const O_WRONLY: c_int = 1;
const O_CREAT: c_int = 0o100;
const O_APPEND: c_int = 0o2000;
const O_CLOEXEC: c_int = 0o2000000;
const CLOCK_MONOTONIC: c_int = 1;

fn now_ns() -> i128 {
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the Timespec we pass.
    unsafe { clock_gettime(CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

fn cstr(b: Vec<u8>) -> CString {
    CString::new(b).expect("no NUL inside a request string")
}

/// Runs one command; returns the response line.
fn run(strings: Vec<Vec<u8>>) -> String {
    let mut it = strings.into_iter();
    let timeout_ms: c_int = String::from_utf8_lossy(&it.next().expect("timeout"))
        .parse()
        .unwrap_or(-1);
    let block_sigchld = it.next().expect("sigchld flag") == b"1";
    let mut chld = SigSet { bits: [0; 16] };
    chld.bits[0] = 1 << (SIGCHLD - 1);
    let out = cstr(it.next().expect("stdout path"));
    let err = cstr(it.next().expect("stderr path"));
    let argv: Vec<CString> = it.map(cstr).collect();
    let mut ptrs: Vec<*const c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    // Everything the child needs is prepared before fork: it only opens, dup2s and execs.
    // SAFETY: open with valid NUL-terminated paths; fds are CLOEXEC and closed below.
    let (fd0, fd1, fd2) = unsafe {
        (
            open(c"/dev/null".as_ptr(), O_RDONLY | O_CLOEXEC, 0),
            open(
                out.as_ptr(),
                O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
                0o644,
            ),
            open(
                err.as_ptr(),
                O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
                0o644,
            ),
        )
    };
    if fd0 < 0 || fd1 < 0 || fd2 < 0 {
        return "127 0 0 0 0 0 0 0 0\n".into();
    }
    let t0 = now_ns();
    // SAFETY: the child calls only async-signal-safe functions (dup2, execv, _exit).
    let pid = unsafe { fork() };
    if pid == 0 {
        unsafe {
            dup2(fd0, 0);
            dup2(fd1, 1);
            dup2(fd2, 2);
            if block_sigchld {
                sigprocmask(SIG_BLOCK, &chld, std::ptr::null_mut());
            }
            execv(ptrs[0], ptrs.as_ptr());
            _exit(127);
        }
    }
    // Wait with a deadline: a pidfd becomes readable when the child exits (no polling).
    let mut timed_out = 0;
    if pid > 0 && timeout_ms >= 0 {
        // SAFETY: pidfd_open(pid, 0) returns a new fd or -1; poll reads one PollFd.
        let pidfd = unsafe { syscall(SYS_PIDFD_OPEN, pid as c_long, 0 as c_long) } as c_int;
        if pidfd >= 0 {
            let mut p = PollFd {
                fd: pidfd,
                events: POLLIN,
                revents: 0,
            };
            let r = loop {
                let r = unsafe { poll(&mut p, 1, timeout_ms) };
                if r >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(4) {
                    break r;
                }
            };
            if r == 0 {
                timed_out = 1;
                unsafe { kill(pid, SIGKILL) };
            }
            unsafe { close(pidfd) };
        }
    }
    let mut status: c_int = 0;
    let mut ru: Rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 for the child we forked; writes status and rusage.
    let r = if pid > 0 {
        unsafe { wait4(pid, &mut status, 0, &mut ru) }
    } else {
        -1
    };
    let t1 = now_ns();
    unsafe {
        close(fd0);
        close(fd1);
        close(fd2);
    }
    if r < 0 {
        return "127 0 0 0 0 0 0 0 0\n".into();
    }
    let code = if status & 0x7f == 0 {
        (status >> 8) & 0xff
    } else {
        128 + (status & 0x7f)
    };
    let us = |t: &Timeval| t.tv_sec as i64 * 1_000_000 + t.tv_usec as i64;
    format!(
        "{code} {} {} {} {} {timed_out} {} {} {}\n",
        t1 - t0,
        us(&ru.ru_utime),
        us(&ru.ru_stime),
        ru.ru_maxrss,
        ru.rest[3],
        ru.rest[11],
        ru.rest[12]
    )
}

fn main() {
    let stdin = std::io::stdin();
    let mut input = BufReader::new(stdin.lock());
    let mut output = std::io::stdout().lock();
    let mut line = String::new();
    loop {
        line.clear();
        if input.read_line(&mut line).unwrap_or(0) == 0 {
            return; // the driver closed the pipe
        }
        let Ok(n) = line.trim().parse::<usize>() else {
            return;
        };
        let mut strings = Vec::with_capacity(n);
        for _ in 0..n {
            let mut s = Vec::new();
            if input.read_until(0, &mut s).unwrap_or(0) == 0 {
                return;
            }
            s.pop();
            strings.push(s);
        }
        let resp = run(strings);
        if output
            .write_all(resp.as_bytes())
            .and_then(|_| output.flush())
            .is_err()
        {
            return;
        }
    }
}
