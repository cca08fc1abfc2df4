//! bench/hottrace: which of a binary's functions a command runs, in the order it first runs
//! them. Built by bench/hotpath.py with a bare `rustc -O` (no cargo, not part of the workspace).
//!
//!   hottrace STARTS OUT EXE -- CMD ARGS...
//!
//! STARTS holds one function start address of EXE per line (hex, the address in the ELF file,
//! as `nm` prints it). CMD (normally EXE itself) is started under ptrace; when a process execs
//! EXE, an int3 replaces the first byte of every listed function in its address space. A
//! process that hits one has the byte put back and goes on; the function's address is written
//! to OUT (hex, one line, first hit first). Every process and thread the command forks or
//! clones is followed, with the breakpoints it inherited; one that execs anything else (the
//! container's own program, a hook) is let go. When CMD exits, the processes it left behind
//! (`create`'s container init) get their code back and are let go. Exits with CMD's status.
//!
//! A function stops once per process; a run costs a few thousand stops, not the millions of a
//! single-stepped trace.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::raw::{c_int, c_long, c_void};
use std::os::unix::fs::FileExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

const PTRACE_TRACEME: c_int = 0;
const PTRACE_CONT: c_int = 7;
const PTRACE_DETACH: c_int = 17;
const PTRACE_GETREGS: c_int = 12;
const PTRACE_SETREGS: c_int = 13;
const PTRACE_SETOPTIONS: c_int = 0x4200;
const PTRACE_GETEVENTMSG: c_int = 0x4201;
const PTRACE_O_TRACEFORK: c_long = 0x02;
const PTRACE_O_TRACEVFORK: c_long = 0x04;
const PTRACE_O_TRACECLONE: c_long = 0x08;
const PTRACE_O_TRACEEXEC: c_long = 0x10;
const EVENT_FORK: c_int = 1;
const EVENT_VFORK: c_int = 2;
const EVENT_CLONE: c_int = 3;
const EVENT_EXEC: c_int = 4;
const WALL: c_int = 0x4000_0000;
const SIGTRAP: c_int = 5;
const SIGSTOP: c_int = 19;
const WNOHANG: c_int = 1;
const ECHILD: i32 = 10;
const EINTR: i32 = 4;
/// struct user_regs_struct on x86_64: 27 words, rip is the 17th.
const REGS_WORDS: usize = 27;
const RIP: usize = 16;

extern "C" {
    fn ptrace(request: c_int, ...) -> c_long;
    fn waitpid(pid: c_int, status: *mut c_int, options: c_int) -> c_int;
}

struct Proc {
    /// Load bias of EXE in this process (None: not EXE, or not known yet).
    bias: Option<u64>,
    /// Stopped at its first SIGSTOP before its parent's fork event: resumed by that event.
    waiting: bool,
    mem: Option<File>,
}

fn opts(pid: c_int) {
    // No PTRACE_O_EXITKILL: `create` leaves its container's init behind, which must outlive the
    // trace.
    let o = PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK | PTRACE_O_TRACECLONE | PTRACE_O_TRACEEXEC;
    // SAFETY: plain ptrace request on a tracee stopped by us.
    unsafe { ptrace(PTRACE_SETOPTIONS, pid, 0usize, o) };
}

fn resume(pid: c_int, sig: c_int) {
    // SAFETY: as above.
    unsafe { ptrace(PTRACE_CONT, pid, 0usize, sig as c_long) };
}

fn regs(pid: c_int) -> [u64; REGS_WORDS] {
    let mut r = [0u64; REGS_WORDS];
    // SAFETY: r is as large as struct user_regs_struct.
    unsafe { ptrace(PTRACE_GETREGS, pid, 0usize, r.as_mut_ptr() as *mut c_void) };
    r
}

fn exe_of(pid: c_int) -> String {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The load bias of `exe` in `pid`: the start of its mapping at file offset 0.
fn bias_of(pid: c_int, exe: &str) -> Option<u64> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    maps.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() >= 6 && f[5] == exe && u64::from_str_radix(f[2], 16).ok()? == 0)
            .then(|| u64::from_str_radix(f[0].split('-').next()?, 16).ok())?
    })
}

fn mem(pid: c_int) -> File {
    File::options().read(true).write(true).open(format!("/proc/{pid}/mem")).expect("/proc/PID/mem")
}

/// EXE's code between the first and the last listed function as it was before the int3s, and
/// the original byte under each (the same in every process: all are copies of the first).
#[derive(Default)]
struct Armed {
    lo: u64,
    text: Vec<u8>,
    orig: HashMap<u64, u8>,
}

/// Puts an int3 on every listed function of the freshly exec'd EXE in `p`.
fn arm(p: &Proc, starts: &[u64]) -> Armed {
    let (bias, mem) = (p.bias.unwrap(), p.mem.as_ref().unwrap());
    let (lo, hi) = (starts[0], starts[starts.len() - 1] + 1);
    let mut text = vec![0u8; (hi - lo) as usize];
    mem.read_exact_at(&mut text, bias + lo).expect("read the text");
    let original = text.clone();
    let mut orig = HashMap::new();
    for &a in starts {
        orig.insert(a, text[(a - lo) as usize]);
        text[(a - lo) as usize] = 0xcc;
    }
    mem.write_all_at(&text, bias + lo).expect("write the breakpoints");
    Armed { lo, text: original, orig }
}

/// CMD has exited: every process still traced gets its code back and is let go. One that
/// stopped at an int3 before that is wound back to it and detached; one still running is
/// detached by this tracer's exit.
fn release(procs: &mut HashMap<c_int, Proc>, armed: &Armed) {
    for p in procs.values() {
        if let (Some(b), Some(m)) = (p.bias, p.mem.as_ref()) {
            let _ = m.write_all_at(&armed.text, b + armed.lo);
        }
    }
    for _ in 0..20 {
        loop {
            let mut st: c_int = 0;
            // SAFETY: as in main.
            let pid = unsafe { waitpid(-1, &mut st, WALL | WNOHANG) };
            if pid <= 0 {
                break;
            }
            if st & 0xff != 0x7f {
                procs.remove(&pid);
                continue;
            }
            let sig = (st >> 8) & 0xff;
            let mut pass = if st >> 16 == 0 && sig != SIGSTOP { sig } else { 0 };
            if let (Some(b), true) = (procs.get(&pid).and_then(|p| p.bias), sig == SIGTRAP) {
                let mut r = regs(pid);
                let at = r[RIP].wrapping_sub(1);
                if armed.orig.contains_key(&at.wrapping_sub(b)) {
                    r[RIP] = at;
                    // SAFETY: r came from PTRACE_GETREGS of this tracee.
                    unsafe { ptrace(PTRACE_SETREGS, pid, 0usize, r.as_ptr() as *mut c_void) };
                    pass = 0;
                }
            }
            // SAFETY: detaching a stopped tracee.
            unsafe { ptrace(PTRACE_DETACH, pid, 0usize, pass as c_long) };
            procs.remove(&pid);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 6 || args[4] != "--" {
        eprintln!("usage: hottrace STARTS OUT EXE -- CMD ARGS...");
        std::process::exit(2);
    }
    let mut starts: Vec<u64> = std::fs::read_to_string(&args[1])
        .expect("STARTS")
        .lines()
        .filter_map(|l| u64::from_str_radix(l.trim(), 16).ok())
        .collect();
    starts.sort_unstable();
    starts.dedup();
    let exe = std::fs::canonicalize(&args[3]).expect("EXE").to_string_lossy().into_owned();
    let mut out = BufWriter::new(File::create(&args[2]).expect("OUT"));

    let mut cmd = Command::new(&args[5]);
    cmd.args(&args[6..]);
    // SAFETY: ptrace(PTRACE_TRACEME) is async-signal-safe; the exec that follows stops the
    // child with SIGTRAP before its first instruction.
    unsafe {
        cmd.pre_exec(|| {
            ptrace(PTRACE_TRACEME, 0, 0usize, 0usize);
            Ok(())
        })
    };
    let child = cmd.spawn().expect("start the command").id() as c_int;

    let mut procs: HashMap<c_int, Proc> = HashMap::new();
    let mut armed = Armed::default();
    let mut hit: HashSet<u64> = HashSet::new();
    let (mut stops, mut code) = (0u64, 0);
    let mut first = true;
    loop {
        let mut st: c_int = 0;
        // SAFETY: waits for any tracee; st is a valid out-pointer.
        let pid = unsafe { waitpid(-1, &mut st, WALL) };
        if pid < 0 {
            match std::io::Error::last_os_error().raw_os_error() {
                Some(EINTR) => continue,
                Some(ECHILD) => break,
                e => panic!("waitpid: {e:?}"),
            }
        }
        let (exited, signaled) = (st & 0x7f == 0, (st & 0x7f) + 1 >= 2 && st & 0x7f != 0x7f);
        if exited || signaled {
            procs.remove(&pid);
            if pid == child {
                code = if exited { (st >> 8) & 0xff } else { 128 + (st & 0x7f) };
                release(&mut procs, &armed);
                break;
            }
            continue;
        }
        let (sig, event) = ((st >> 8) & 0xff, st >> 16);
        if first && pid == child {
            // The command's own post-exec SIGTRAP: set the options, arm if it is EXE.
            first = false;
            opts(pid);
            let mut p = Proc { bias: None, waiting: false, mem: None };
            if exe_of(pid) == exe {
                p.bias = bias_of(pid, &exe);
                p.mem = Some(mem(pid));
                armed = arm(&p, &starts);
            }
            procs.insert(pid, p);
            resume(pid, 0);
            continue;
        }
        let known = procs.contains_key(&pid);
        if !known {
            // A new child's first stop may come before its parent's fork event: it waits.
            let waiting = sig == SIGSTOP && event == 0;
            procs.insert(pid, Proc { bias: None, waiting, mem: None });
            if waiting {
                continue;
            }
        }
        let mut inject = 0;
        match event {
            EVENT_EXEC => {
                if exe_of(pid) == exe {
                    let p = procs.get_mut(&pid).unwrap();
                    p.bias = bias_of(pid, &exe);
                    p.mem = Some(mem(pid));
                    armed = arm(p, &starts);
                } else {
                    // SAFETY: detaching a stopped tracee.
                    unsafe { ptrace(PTRACE_DETACH, pid, 0usize, 0usize) };
                    procs.remove(&pid);
                    continue;
                }
            }
            EVENT_FORK | EVENT_VFORK | EVENT_CLONE => {
                let mut new: c_long = 0;
                // SAFETY: the event message is the new task's pid.
                unsafe { ptrace(PTRACE_GETEVENTMSG, pid, 0usize, &mut new as *mut c_long) };
                let new = new as c_int;
                let bias = procs[&pid].bias;
                let q = procs.entry(new).or_insert(Proc { bias: None, waiting: false, mem: None });
                q.bias = bias;
                if bias.is_some() {
                    q.mem = Some(mem(new));
                }
                if q.waiting {
                    q.waiting = false;
                    resume(new, 0);
                }
            }
            _ if sig == SIGTRAP => {
                let p = &procs[&pid];
                let mut r = regs(pid);
                let at = r[RIP].wrapping_sub(1);
                match p.bias.map(|b| at.wrapping_sub(b)) {
                    Some(a) if armed.orig.contains_key(&a) => {
                        stops += 1;
                        let m = p.mem.as_ref().unwrap();
                        m.write_all_at(&[armed.orig[&a]], at).expect("restore");
                        r[RIP] = at;
                        // SAFETY: r came from PTRACE_GETREGS of this tracee.
                        unsafe { ptrace(PTRACE_SETREGS, pid, 0usize, r.as_ptr() as *mut c_void) };
                        if hit.insert(a) {
                            writeln!(out, "{a:x}").unwrap();
                        }
                    }
                    _ => inject = SIGTRAP,
                }
            }
            // A new child's first stop, or a group stop: not passed on.
            _ if sig == SIGSTOP => {}
            _ => inject = sig,
        }
        resume(pid, inject);
    }
    out.flush().unwrap();
    eprintln!("hottrace: {} functions run, {stops} stops, exit {code}", hit.len());
    std::process::exit(code);
}
