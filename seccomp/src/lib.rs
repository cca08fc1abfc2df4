//! Seccomp for Berth: `linux.seccomp` of an OCI config, validated, compiled to a BPF program
//! (with libseccomp), optionally cached on disk, and loaded without libseccomp.
//!
//! ```text
//! compile / compile_cached      (runtime, before fork: allocates, may read/write the cache)
//!         │ Compiled { BPF program, seccomp(2) flags, uses NOTIFY?, debug notes }
//!         ▼
//! Compiled::load                (container init, right before execve: one seccomp(2) call)
//!         │ Some(notify fd) if the profile uses SCMP_ACT_NOTIFY
//!         ▼
//! send_listener                 (runtime: the notify fd + container state to the agent)
//! ```
//!
//! # Where `load` goes in the container's init
//!
//! The kernel accepts a filter from a process that has `no_new_privs` set *or* CAP_SYS_ADMIN in
//! its user namespace. So, as runc does:
//!
//! * `process.noNewPrivileges: true`: set identity (setgroups/setresgid/setresuid), apply the
//!   capability sets, `prctl(PR_SET_NO_NEW_PRIVS)`, then [`Compiled::load`] as the very last
//!   step before `execve`, so that as few of the runtime's own syscalls as possible run under
//!   the filter.
//! * `noNewPrivileges` false/absent: [`Compiled::load`] *before* the identity switch and the
//!   capability drop, while CAP_SYS_ADMIN is still held (afterwards it fails with EACCES). The
//!   profile then applies to the rest of the init's syscalls (setgroups, setresuid, capset,
//!   prctl, chdir, close_range, execve): profiles that block those fail the container, as with
//!   runc.
//!
//! Either way: compile in the runtime before forking (the child must not allocate much or take
//! locks); `load` itself makes one system call and no allocation. With NOTIFY, the fd that
//! `load` returns must reach the runtime (e.g. by `pidfd_getfd` from the parent, or SCM_RIGHTS
//! over the sync socket) through syscalls the profile does not send to the agent — the agent
//! does not have the fd yet. (runc hands it over with write(2) and so refuses NOTIFY on `write`;
//! Berth's init uses whichever of sendmsg or write the filter lets through, see
//! `process::init`.)
//!
//! # runc compatibility
//!
//! Syscall names libseccomp does not know are skipped (a note in [`Compiled::notes`], to log at
//! debug level); rules whose action equals the default action are skipped; conditions that test
//! the same argument twice are split into separate rules; `flags` absent means
//! SECCOMP_FILTER_FLAG_SPEC_ALLOW when the kernel supports it (`flags: []` means none);
//! SECCOMP_FILTER_FLAG_TSYNC is accepted and ignored (the filter is loaded by a single-threaded
//! process about to execve); SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV is dropped (with a note)
//! when no rule notifies, since the kernel only accepts it with a listener. Syscalls above the
//! largest one the profile names get ENOSYS instead of the default action (see `enosys.rs`).

mod bpf;
mod cache;
mod compile;
mod enosys;
mod error;
mod features;
mod notify;
mod profile;
mod sha256;
mod stored;
mod sys;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompFilterFlag};

pub use bpf::SockFilter;
pub use error::SeccompError;
pub use features::{features, Features};
pub use notify::{send_listener, SECCOMP_FD_NAME};

/// A compiled profile: the BPF program, the flags to load it with, and whether it uses
/// SCMP_ACT_NOTIFY. Cheap to keep until the container's init loads it.
#[derive(Clone, Debug)]
pub struct Compiled {
    program: Vec<SockFilter>,
    /// seccomp(2) flags from the profile (LOG, SPEC_ALLOW, WAIT_KILLABLE_RECV).
    flags: u32,
    notify: bool,
    notes: Vec<String>,
    from_cache: bool,
}

impl Compiled {
    /// Installs the filter on the calling thread: `seccomp(SECCOMP_SET_MODE_FILTER, flags,
    /// &prog)`, with SECCOMP_FILTER_FLAG_NEW_LISTENER when the profile uses SCMP_ACT_NOTIFY, in
    /// which case the listener (notify) fd is returned; it is close-on-exec.
    ///
    /// Meant for the forked container init right before execve: it does not allocate, take
    /// locks or call libseccomp. The caller must have set no_new_privs or still hold
    /// CAP_SYS_ADMIN (see the crate docs for the order).
    pub fn load(&self) -> Result<Option<OwnedFd>, SeccompError> {
        let flags = self.flags();
        let r = sys::set_mode_filter(&self.program, flags)
            .map_err(|source| SeccompError::Load { flags, source })?;
        if !self.notify {
            return Ok(None);
        }
        sys::listener_fd(r)
            .map(Some)
            .map_err(|source| SeccompError::Load { flags, source })
    }

    /// The profile has a rule with SCMP_ACT_NOTIFY: [`load`](Self::load) returns a notify fd,
    /// to be sent to the agent with [`send_listener`].
    pub fn uses_notify(&self) -> bool {
        self.notify
    }

    /// The BPF program, as the kernel takes it (`struct sock_filter[]`).
    pub fn program(&self) -> &[SockFilter] {
        &self.program
    }

    /// The flags [`load`](Self::load) passes to seccomp(2).
    pub fn flags(&self) -> u32 {
        if self.notify {
            self.flags | sys::FLAG_NEW_LISTENER
        } else {
            self.flags
        }
    }

    /// Things worth a debug-level log line: skipped unknown syscalls, redundant rules, ignored
    /// flags, cache trouble. Each starts with the JSON path (or cache directory) it is about.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The program came from the on-disk cache (or a stored copy) rather than from libseccomp.
    pub fn from_cache(&self) -> bool {
        self.from_cache
    }

    /// The filter as bytes to keep beside the container it was compiled for (see
    /// [`from_stored`](Self::from_stored)); the notes are not kept.
    pub fn to_stored(&self) -> Vec<u8> {
        stored::encode(self)
    }

    /// A filter [`to_stored`](Self::to_stored) wrote, on the kernel it was compiled for; None
    /// if the bytes are not a sound copy.
    pub fn from_stored(bytes: &[u8]) -> Option<Compiled> {
        stored::decode(bytes)
    }

    /// Whether the filter lets system call `nr` of the running architecture through (ALLOW or
    /// LOG) with these arguments, found by running the program. False when it would not, or
    /// when the program is beyond the interpreter.
    pub fn lets_through(&self, nr: i64, args: &[u64]) -> bool {
        matches!(
            self.action_for(nr, args),
            Some(sys::RET_ALLOW | sys::RET_LOG)
        )
    }

    /// Whether the filter sends system call `nr` with these arguments to the seccomp agent
    /// (SCMP_ACT_NOTIFY), found by running the program like [`lets_through`](Self::lets_through).
    pub fn notifies(&self, nr: i64, args: &[u64]) -> bool {
        self.action_for(nr, args) == Some(sys::RET_USER_NOTIF)
    }

    /// Whether the filter kills the caller of system call `nr` with these arguments
    /// (SCMP_ACT_KILL_PROCESS, SCMP_ACT_KILL_THREAD, or SCMP_ACT_TRAP's SIGSYS, which kills a
    /// process without a handler), found by running the program.
    pub fn kills(&self, nr: i64, args: &[u64]) -> bool {
        matches!(
            self.action_for(nr, args),
            Some(sys::RET_KILL_PROCESS | sys::RET_KILL_THREAD | sys::RET_TRAP)
        )
    }

    /// The action (SECCOMP_RET_* without its data) the program returns for `nr` and `args` on
    /// the running architecture; `None` when the program is beyond the interpreter.
    fn action_for(&self, nr: i64, args: &[u64]) -> Option<u32> {
        let (Some(arch), Ok(nr)) = (NATIVE_AUDIT_ARCH, u32::try_from(nr)) else {
            return None;
        };
        let data = bpf::interp::Data::new(arch, nr).with_args(&args[..args.len().min(6)]);
        bpf::interp::evaluate(&self.program, &data).map(|r| r & sys::RET_ACTION_FULL)
    }
}

/// AUDIT_ARCH_* of the architecture Berth runs on (`seccomp_data.arch` of its system calls).
#[cfg(target_arch = "x86_64")]
const NATIVE_AUDIT_ARCH: Option<u32> = Some(0xc000_003e);
#[cfg(target_arch = "aarch64")]
const NATIVE_AUDIT_ARCH: Option<u32> = Some(0xc000_00b7);
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const NATIVE_AUDIT_ARCH: Option<u32> = None;

/// Validates `linux.seccomp` and compiles it to BPF. Errors name the JSON path of the field,
/// e.g. `linux.seccomp.syscalls[3].errnoRet: …`.
pub fn compile(profile: &LinuxSeccomp) -> Result<Compiled, SeccompError> {
    let plan = profile::validate(profile)?;
    let mut notes = Vec::new();
    let flags = resolve_flags(&plan, &mut notes)?;
    let built = compile::build(&plan)?;
    notes.splice(0..0, built.notes);
    Ok(Compiled {
        program: built.program,
        flags,
        notify: plan.notify,
        notes,
        from_cache: false,
    })
}

/// Like [`compile`], but first looks the program up in `cache_dir` (created 0700), keyed by
/// the SHA-256 of the profile's JSON, libseccomp's version and the native architecture, and
/// stores it there after compiling. Validation always runs; cache problems (unwritable,
/// corrupt, foreign entries) never fail: the profile is just compiled (and a note added).
pub fn compile_cached(profile: &LinuxSeccomp, cache_dir: &Path) -> Result<Compiled, SeccompError> {
    let plan = profile::validate(profile)?;
    let mut notes = Vec::new();
    let flags = resolve_flags(&plan, &mut notes)?;
    let key = cache::key(profile);
    if let Some(entry) = key.as_ref().and_then(|k| cache::read(cache_dir, k)) {
        notes.splice(0..0, entry.notes);
        return Ok(Compiled {
            program: entry.program,
            flags,
            notify: plan.notify,
            notes,
            from_cache: true,
        });
    }
    let built = compile::build(&plan)?;
    let entry = cache::Entry {
        program: built.program,
        notes: built.notes,
    };
    if let Some(k) = &key {
        if let Err(e) = cache::write(cache_dir, k, &entry) {
            notes.push(format!(
                "seccomp cache {}: not written: {e}",
                cache_dir.display()
            ));
        }
    }
    notes.splice(0..0, entry.notes);
    Ok(Compiled {
        program: entry.program,
        flags,
        notify: plan.notify,
        notes,
        from_cache: false,
    })
}

/// The file [`compile_cached`] uses for `profile` under `cache_dir`.
pub fn cache_entry_path(profile: &LinuxSeccomp, cache_dir: &Path) -> Option<PathBuf> {
    cache::key(profile).map(|k| cache::entry_path(cache_dir, &k))
}

/// The seccomp(2) flags for the profile's `flags`, checked against the running kernel.
fn resolve_flags(plan: &profile::Plan<'_>, notes: &mut Vec<String>) -> Result<u32, SeccompError> {
    let supported = sys::supported_flags();
    let Some(list) = &plan.flags else {
        // runc's default when the profile says nothing: don't let seccomp force the
        // speculative store bypass mitigation on the container.
        return Ok(supported & sys::FLAG_SPEC_ALLOW);
    };
    let mut flags = 0;
    for &(i, f) in list {
        let (name, bit) = match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => continue,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => {
                ("SECCOMP_FILTER_FLAG_LOG", sys::FLAG_LOG)
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                ("SECCOMP_FILTER_FLAG_SPEC_ALLOW", sys::FLAG_SPEC_ALLOW)
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                if !plan.notify {
                    notes.push(format!(
                        "linux.seccomp.flags[{i}]: SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV ignored: \
                         no rule uses SCMP_ACT_NOTIFY"
                    ));
                    continue;
                }
                (
                    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
                    sys::FLAG_WAIT_KILLABLE_RECV,
                )
            }
        };
        if supported & bit == 0 {
            return Err(SeccompError::invalid(
                format!("linux.seccomp.flags[{i}]"),
                format!("{name} is not supported by this kernel"),
            ));
        }
        flags |= bit;
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(json: &str) -> LinuxSeccomp {
        serde_json::from_str(json).unwrap()
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn lets_through_runs_the_program() {
        let c = compile(&profile(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
                {"names":["execve","exit_group"],"action":"SCMP_ACT_ALLOW"},
                {"names":["writev"],"action":"SCMP_ACT_LOG"},
                {"names":["fcntl"],"action":"SCMP_ACT_ALLOW",
                 "args":[{"index":1,"value":2,"op":"SCMP_CMP_EQ"}]}]}"#,
        ))
        .unwrap();
        assert!(c.lets_through(libc::SYS_execve, &[]));
        assert!(c.lets_through(libc::SYS_exit_group, &[127]));
        assert!(c.lets_through(libc::SYS_writev, &[3, 0, 2]));
        assert!(c.lets_through(libc::SYS_fcntl, &[3, 2, 1]));
        assert!(!c.lets_through(libc::SYS_fcntl, &[3, 4, 1]));
        assert!(!c.lets_through(libc::SYS_execveat, &[3, 0, 0, 0, 0x1000]));
        assert!(!c.lets_through(-1, &[]));

        let c = compile(&profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/a","syscalls":[
                {"names":["write"],"action":"SCMP_ACT_NOTIFY"}]}"#,
        ))
        .unwrap();
        assert!(c.notifies(libc::SYS_write, &[1, 0, 1]));
        assert!(!c.lets_through(libc::SYS_write, &[1, 0, 1]));
        assert!(!c.notifies(libc::SYS_sendmsg, &[1, 0, 0]));
        assert!(c.lets_through(libc::SYS_sendmsg, &[1, 0, 0]));
        assert!(!c.kills(libc::SYS_write, &[1, 0, 1]));

        let c = compile(&profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
                {"names":["capset"],"action":"SCMP_ACT_KILL_PROCESS"},
                {"names":["setresuid"],"action":"SCMP_ACT_TRAP"},
                {"names":["setresgid"],"action":"SCMP_ACT_ERRNO"}]}"#,
        ))
        .unwrap();
        assert!(c.kills(libc::SYS_capset, &[]));
        assert!(c.kills(libc::SYS_setresuid, &[0, 0, 0]));
        assert!(!c.kills(libc::SYS_setresgid, &[0, 0, 0]));
        assert!(!c.kills(libc::SYS_execve, &[]));
    }

    #[test]
    fn flags_follow_runc() {
        let spec_allow = sys::supported_flags() & sys::FLAG_SPEC_ALLOW;
        let c = compile(&profile(r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#)).unwrap();
        assert_eq!(c.flags(), spec_allow);
        let c = compile(&profile(r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":[]}"#)).unwrap();
        assert_eq!(c.flags(), 0);
        let c = compile(&profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_TSYNC",
                "SECCOMP_FILTER_FLAG_LOG","SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]}"#,
        ))
        .unwrap();
        assert_eq!(c.flags(), sys::FLAG_LOG);
        assert!(c.notes()[0].starts_with("linux.seccomp.flags[2]: "));

        let r = compile(&profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/x","flags":[
                "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
                "syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_NOTIFY"}]}"#,
        ));
        if sys::supported_flags() & sys::FLAG_WAIT_KILLABLE_RECV != 0 {
            let c = r.unwrap();
            assert!(c.uses_notify());
            assert_eq!(
                c.flags(),
                sys::FLAG_WAIT_KILLABLE_RECV | sys::FLAG_NEW_LISTENER
            );
        } else {
            assert!(r
                .unwrap_err()
                .to_string()
                .starts_with("linux.seccomp.flags[0]: "));
        }
    }
}
