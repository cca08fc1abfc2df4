//! Filters loaded into forked children, which then make syscalls and report by exit code
//! (0 = as expected; any other code names the check that failed). The child code only makes
//! raw syscalls and calls `Compiled::load`, which does not allocate.

mod common;

use std::sync::atomic::{AtomicI32, Ordering};

use berth_seccomp::{compile, Compiled, SeccompError};
use common::{fixture, in_child, no_new_privs, profile, sys, Outcome};

/// Loads `c` with no_new_privs in the child; 90/91 when that fails.
fn nnp_load(c: &Compiled) -> Result<(), i32> {
    if !no_new_privs() {
        return Err(90);
    }
    match c.load() {
        Ok(None) => Ok(()),
        _ => Err(91),
    }
}

fn on_x86_64() -> bool {
    cfg!(target_arch = "x86_64")
}

#[test]
fn errno_rules_return_their_errno() {
    let c = compile(&profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["getppid"],"action":"SCMP_ACT_ERRNO","errnoRet":18},
            {"names":["getpgid"],"action":"SCMP_ACT_ERRNO"},
            {"names":["getsid"],"action":"SCMP_ACT_ERRNO","errnoRet":0}]}"#,
    ))
    .unwrap();
    let out = in_child(|| {
        if let Err(code) = nnp_load(&c) {
            return code;
        }
        if sys(libc::SYS_getppid, [0; 6]) != Err(libc::EXDEV) {
            return 1;
        }
        // No errnoRet: EPERM, as in runc.
        if sys(libc::SYS_getpgid, [0; 6]) != Err(libc::EPERM) {
            return 2;
        }
        // errnoRet 0: a fake success without running the syscall.
        if sys(libc::SYS_getsid, [0; 6]) != Ok(0) {
            return 3;
        }
        if sys(libc::SYS_getpid, [0; 6]).is_err() {
            return 4;
        }
        0
    });
    assert_eq!(out, Outcome::Exited(0));
}

#[test]
fn kill_process_kills_with_sigsys() {
    let c = compile(&profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["getppid"],"action":"SCMP_ACT_KILL_PROCESS"}]}"#,
    ))
    .unwrap();
    let out = in_child(|| {
        if let Err(code) = nnp_load(&c) {
            return code;
        }
        let _ = sys(libc::SYS_getppid, [0; 6]);
        0
    });
    assert_eq!(out, Outcome::Signaled(libc::SIGSYS));
}

#[test]
fn kill_and_kill_thread_kill_a_single_threaded_child() {
    for action in ["SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"] {
        let c = compile(&profile(&format!(
            r#"{{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
                {{"names":["getppid"],"action":"{action}"}}]}}"#
        )))
        .unwrap();
        let out = in_child(|| {
            if let Err(code) = nnp_load(&c) {
                return code;
            }
            let _ = sys(libc::SYS_getppid, [0; 6]);
            0
        });
        assert_eq!(out, Outcome::Signaled(libc::SIGSYS), "{action}");
    }
}

/// Set by the child's SIGSYS handler: 1 when si_code says SYS_SECCOMP, 2 otherwise.
static TRAPPED: AtomicI32 = AtomicI32::new(0);
/// The syscall number the handler saw (siginfo's si_syscall).
static TRAPPED_NR: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_sigsys(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    const SYS_SECCOMP: libc::c_int = 1;
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers. For SIGSYS the union
    // holds _sigsys { void *call_addr; int syscall; unsigned arch; } after the 3-int header.
    unsafe {
        let code = (*info).si_code;
        let base = info.cast::<u8>();
        let nr = base
            .add(16 + std::mem::size_of::<usize>())
            .cast::<libc::c_int>()
            .read_unaligned();
        TRAPPED_NR.store(nr, Ordering::SeqCst);
        TRAPPED.store(if code == SYS_SECCOMP { 1 } else { 2 }, Ordering::SeqCst);
    }
}

#[test]
fn trap_delivers_sigsys_to_a_handler() {
    let c = compile(&profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["getppid"],"action":"SCMP_ACT_TRAP"}]}"#,
    ))
    .unwrap();
    let out = in_child(|| {
        // SAFETY: installs a handler that only touches atomics (async-signal-safe).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigsys as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut()) != 0 {
                return 10;
            }
        }
        if let Err(code) = nnp_load(&c) {
            return code;
        }
        let _ = sys(libc::SYS_getppid, [0; 6]);
        match TRAPPED.load(Ordering::SeqCst) {
            1 if TRAPPED_NR.load(Ordering::SeqCst) == libc::SYS_getppid as i32 => 0,
            1 => 11,
            0 => 12,
            _ => 13,
        }
    });
    assert_eq!(out, Outcome::Exited(0));
}

#[test]
fn argument_filters_match_only_the_given_values() {
    let c = compile(&profile(&format!(
        r#"{{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {{"names":["personality"],"action":"SCMP_ACT_ERRNO","errnoRet":33,
              "args":[{{"index":0,"value":4294967295,"op":"SCMP_CMP_EQ"}}]}},
            {{"names":["dup3"],"action":"SCMP_ACT_ERRNO","errnoRet":52,
              "args":[{{"index":2,"value":{cloexec},"valueTwo":{cloexec},"op":"SCMP_CMP_MASKED_EQ"}}]}},
            {{"names":["getpriority"],"action":"SCMP_ACT_ERRNO","errnoRet":53,
              "args":[{{"index":0,"value":1,"op":"SCMP_CMP_EQ"}},{{"index":0,"value":2,"op":"SCMP_CMP_EQ"}}]}},
            {{"names":["kill"],"action":"SCMP_ACT_ERRNO","errnoRet":54,
              "args":[{{"index":0,"value":0,"op":"SCMP_CMP_EQ"}},{{"index":1,"value":0,"op":"SCMP_CMP_EQ"}}]}}]}}"#,
        cloexec = libc::O_CLOEXEC
    )))
    .unwrap();
    let out = in_child(|| {
        if let Err(code) = nnp_load(&c) {
            return code;
        }
        // EQ on a 32-bit value: only the query form is refused.
        if sys(libc::SYS_personality, [0xffff_ffff, 0, 0, 0, 0, 0]) != Err(libc::EDOM) {
            return 1;
        }
        if sys(libc::SYS_personality, [0, 0, 0, 0, 0, 0]).is_err() {
            return 2;
        }
        // MASKED_EQ: only with O_CLOEXEC in the flags (other bits don't matter).
        if sys(libc::SYS_dup3, [0, 100, libc::O_CLOEXEC as u64, 0, 0, 0]) != Err(libc::EBADE) {
            return 3;
        }
        if sys(libc::SYS_dup3, [0, 101, 0, 0, 0, 0]) != Ok(101) {
            return 4;
        }
        // Two conditions on the same argument: either one matches (runc's split).
        if sys(libc::SYS_getpriority, [1, 0, 0, 0, 0, 0]) != Err(libc::EBADR) {
            return 5;
        }
        if sys(libc::SYS_getpriority, [2, 0, 0, 0, 0, 0]) != Err(libc::EBADR) {
            return 6;
        }
        if sys(libc::SYS_getpriority, [0, 0, 0, 0, 0, 0]).is_err() {
            return 7;
        }
        // Conditions on different arguments: both must match. kill(0, 0) is refused,
        // kill(self, 0) is a harmless existence check.
        if sys(libc::SYS_kill, [0, 0, 0, 0, 0, 0]) != Err(libc::EXFULL) {
            return 8;
        }
        // SAFETY: getpid has no preconditions.
        let me = unsafe { libc::getpid() } as u64;
        if sys(libc::SYS_kill, [me, 0, 0, 0, 0, 0]) != Ok(0) {
            return 9;
        }
        0
    });
    assert_eq!(out, Outcome::Exited(0));
}

#[test]
fn log_action_and_log_flag_load_and_allow() {
    let c = compile(&profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_LOG"],"syscalls":[
            {"names":["getppid"],"action":"SCMP_ACT_LOG"}]}"#,
    ))
    .unwrap();
    let out = in_child(|| {
        if let Err(code) = nnp_load(&c) {
            return code;
        }
        match sys(libc::SYS_getppid, [0; 6]) {
            Ok(p) if p > 0 => 0,
            _ => 1,
        }
    });
    assert_eq!(out, Outcome::Exited(0));
}

#[test]
fn trace_without_a_tracer_gives_enosys() {
    let c = compile(&profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["getppid"],"action":"SCMP_ACT_TRACE","errnoRet":7}]}"#,
    ))
    .unwrap();
    let out = in_child(|| {
        if let Err(code) = nnp_load(&c) {
            return code;
        }
        match sys(libc::SYS_getppid, [0; 6]) {
            Err(libc::ENOSYS) => 0,
            _ => 1,
        }
    });
    assert_eq!(out, Outcome::Exited(0));
}

#[test]
fn docker_default_profile_compiles_loads_and_behaves() {
    let c = compile(&fixture("docker-20.10-default.json")).unwrap();
    assert!(!c.uses_notify());
    if !on_x86_64() {
        return; // the profile lists x86 architectures only
    }
    let out = in_child(|| {
        if let Err(code) = nnp_load(&c) {
            return code;
        }
        if sys(libc::SYS_getpid, [0; 6]).is_err() {
            return 1;
        }
        // Explicit rule: clone3 → ENOSYS so glibc falls back to clone.
        if sys(libc::SYS_clone3, [0; 6]) != Err(libc::ENOSYS) {
            return 2;
        }
        // Not in the profile: the default action, EPERM.
        if sys(libc::SYS_acct, [0; 6]) != Err(libc::EPERM) {
            return 3;
        }
        // Not in the profile, and older than syscalls it names: still EPERM.
        if sys(libc::SYS_process_madvise, [u64::MAX, 0, 0, 0, 0, 0]) != Err(libc::EPERM) {
            return 4;
        }
        // Newer than anything the profile names: ENOSYS (the stub), not EPERM.
        if sys(1000, [0; 6]) != Err(libc::ENOSYS) {
            return 5;
        }
        // personality: only the listed values.
        if sys(libc::SYS_personality, [0xffff_ffff, 0, 0, 0, 0, 0]).is_err() {
            return 6;
        }
        if sys(libc::SYS_personality, [0x0040000, 0, 0, 0, 0, 0]) != Err(libc::EPERM) {
            return 7;
        }
        0
    });
    assert_eq!(out, Outcome::Exited(0));
}

#[test]
fn podman_default_profile_compiles_loads_and_behaves() {
    let c = compile(&fixture("podman-4.3-default.json")).unwrap();
    assert!(!c.uses_notify());
    if !on_x86_64() {
        return;
    }
    let out = in_child(|| {
        if let Err(code) = nnp_load(&c) {
            return code;
        }
        if sys(libc::SYS_getpid, [0; 6]).is_err() {
            return 1;
        }
        // ERRNO(1) rules.
        if sys(libc::SYS_acct, [0; 6]) != Err(libc::EPERM) {
            return 2;
        }
        if sys(libc::SYS_kexec_load, [0; 6]) != Err(libc::EPERM) {
            return 3;
        }
        // defaultErrnoRet is ENOSYS (38): unknown and unlisted syscalls answer ENOSYS.
        if sys(1000, [0; 6]) != Err(libc::ENOSYS) {
            return 4;
        }
        0
    });
    assert_eq!(out, Outcome::Exited(0));
}

#[test]
fn without_no_new_privs_loading_needs_cap_sys_admin() {
    let c = compile(&profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["getppid"],"action":"SCMP_ACT_ERRNO"}]}"#,
    ))
    .unwrap();
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        // Root (with CAP_SYS_ADMIN) may load without no_new_privs.
        let out = in_child(|| match c.load() {
            Ok(None) if sys(libc::SYS_getppid, [0; 6]) == Err(libc::EPERM) => 0,
            Ok(_) => 1,
            Err(_) => 2,
        });
        assert_eq!(out, Outcome::Exited(0));
    }
    // Without CAP_SYS_ADMIN and without no_new_privs the kernel says EACCES.
    let out = in_child(|| {
        if root {
            // Leaving uid 0 for good clears every capability.
            // SAFETY: plain integer arguments.
            if unsafe { libc::setresuid(65534, 65534, 65534) } != 0 {
                return 10;
            }
        }
        match c.load() {
            Err(SeccompError::Load { source, .. })
                if source.raw_os_error() == Some(libc::EACCES) =>
            {
                0
            }
            Ok(_) => 11,
            Err(_) => 12,
        }
    });
    assert_eq!(out, Outcome::Exited(0));
}

#[test]
fn load_error_explains_eacces() {
    let e = SeccompError::Load {
        flags: 0,
        source: std::io::Error::from_raw_os_error(libc::EACCES),
    };
    let msg = e.to_string();
    assert!(
        msg.starts_with("loading the seccomp filter (flags 0x0): "),
        "{msg}"
    );
    assert!(msg.contains("no_new_privileges"), "{msg}");
}

#[test]
fn every_flag_loads_with_a_listener() {
    let c = compile(&profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/run/agent.sock",
            "flags":["SECCOMP_FILTER_FLAG_TSYNC","SECCOMP_FILTER_FLAG_LOG",
                     "SECCOMP_FILTER_FLAG_SPEC_ALLOW","SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
            "syscalls":[{"names":["mkdirat"],"action":"SCMP_ACT_NOTIFY"}]}"#,
    ));
    let c = match c {
        Ok(c) => c,
        // A kernel older than 5.19 has no WAIT_KILLABLE_RECV: refused with its path.
        Err(e) => {
            assert_eq!(e.json_path(), Some("linux.seccomp.flags[3]"), "{e}");
            return;
        }
    };
    assert!(c.uses_notify());
    // LOG | SPEC_ALLOW | NEW_LISTENER | WAIT_KILLABLE_RECV; TSYNC is not passed on.
    assert_eq!(c.flags(), 0x2 | 0x4 | 0x8 | 0x20);
    let out = in_child(|| {
        if !no_new_privs() {
            return 90;
        }
        match c.load() {
            Ok(Some(_fd)) => 0,
            Ok(None) => 1,
            Err(_) => 2,
        }
    });
    assert_eq!(out, Outcome::Exited(0));
}
