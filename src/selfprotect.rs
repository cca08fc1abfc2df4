//! Keeping the Berth binary out of the container's reach (the CVE-2019-5736 class).
//!
//! A container process starts as a fork of Berth: until it execs the user's program its
//! `/proc/self/exe` is Berth's binary on the host. There are two routes from the container to
//! that file, and each has its defence:
//!
//! 1. Opening `/proc/<pid>/exe` of the process while Berth's code runs in it. The process is
//!    non-dumpable for that whole time (Berth turns dumpability off before it forks, in
//!    `process::spawn` and `process::exec`), so only a process holding CAP_SYS_PTRACE in the
//!    host's user namespace, and able to see it, can open it.
//! 2. Making the final exec resolve to `/proc/self/exe` (an entrypoint symlinked to it, or a
//!    `#!/proc/self/exe` script), which would make the container's program Berth itself. The
//!    final exec goes through the [launcher](crate::linux::launcher), a tiny program in a sealed
//!    memfd: `/proc/self/exe` is then that launcher, which cannot be written and runs nothing
//!    Berth did not ask for.
//!
//! Where route 1 is open — some process that could see ours may hold CAP_SYS_PTRACE or
//! CAP_SYS_ADMIN (a privileged container, a shared or joined pid namespace, an earlier `exec`
//! with those capabilities) — or where the launcher cannot be used (an AppArmor/SELinux exec
//! label, which would apply to the launcher; a seccomp profile that stops one of its system
//! calls; memfds that may not be executed; no launcher for this architecture), Berth
//! re-executes itself once from a *detached, read-only bind mount of its own binary*
//! (open_tree + mount_setattr + execveat: no copy, no mount left anywhere), or where that is
//! refused, from a sealed memfd copy. Then the whole container process runs from a binary that
//! cannot be written, and execs the program directly.
//!
//! Install Berth on a read-only mount (e.g. `mount --bind -o ro` its directory) and none of
//! this is needed: one `fstatvfs` finds the binary already protected.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use oci_spec::runtime::{Capability, LinuxNamespaceType, Process, Spec};

use crate::linux::lsm::Enabled;

/// How the running binary is protected.
#[derive(Debug, PartialEq, Eq)]
pub enum Protection {
    ReadOnlyMount,
    SealedMemfd,
    Unprotected,
}

/// Looks at /proc/self/exe.
pub fn current() -> Protection {
    let Ok(f) = std::fs::File::open("/proc/self/exe") else {
        return Protection::Unprotected;
    };
    if let Ok(s) = nix::sys::statvfs::fstatvfs(&f) {
        if s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY) {
            return Protection::ReadOnlyMount;
        }
    }
    // SAFETY: fcntl(F_GET_SEALS) on an fd we own; fails harmlessly on non-memfds.
    let seals = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GET_SEALS) };
    if seals >= 0 && seals & libc::F_SEAL_WRITE != 0 {
        return Protection::SealedMemfd;
    }
    Protection::Unprotected
}

/// How the binary that enters a container is kept out of its reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// The running binary is on a read-only mount or sealed: nothing to do.
    AlreadyProtected,
    /// The final exec goes through the launcher.
    Launcher,
    /// Re-execute Berth from a protected copy first (see the module docs for when).
    ReExec,
}

/// What, about a process about to enter a container, decides the [`Method`].
#[derive(Debug, Default, Clone, Copy)]
pub struct Exposure {
    /// The process will be visible to processes outside a pid namespace of the container's
    /// own (the config has no pid namespace, or joins one by path).
    pub shared_pid_ns: bool,
    /// Some process that can see it may hold CAP_SYS_PTRACE or CAP_SYS_ADMIN in the host's
    /// user namespace.
    pub privileged_peers: bool,
    /// An AppArmor profile or SELinux label would be applied at exec (to the launcher).
    pub lsm_exec_label: bool,
    /// The seccomp filter would stop one of the launcher's system calls.
    pub seccomp_blocks_launcher: bool,
}

impl Exposure {
    /// The exposure of a process running `process` in a container configured by `spec`, with
    /// its compiled seccomp filter. `earlier_privileged_exec`: an `exec` gave some container
    /// process capabilities beyond the config's bounding set (see `process::exec`).
    pub fn of(
        spec: &Spec,
        process: &Process,
        seccomp: Option<&berth_seccomp::Compiled>,
        lsm: Enabled,
        earlier_privileged_exec: bool,
    ) -> Exposure {
        let namespaces = spec.linux().as_ref().and_then(|l| l.namespaces().as_ref());
        let own = |t: LinuxNamespaceType| {
            namespaces
                .and_then(|v| v.iter().find(|n| n.typ() == t))
                .is_some_and(|n| n.path().is_none())
        };
        let bounding_reaches = match spec
            .process()
            .as_ref()
            .and_then(|p| p.capabilities().as_ref())
        {
            // No capabilities object: the process keeps every capability Berth has.
            None => true,
            Some(c) => c
                .bounding()
                .as_ref()
                .is_some_and(|set| set.iter().any(reaches)),
        };
        let label =
            |on: bool, v: &Option<String>| on && v.as_deref().is_some_and(|s| !s.is_empty());
        Exposure {
            shared_pid_ns: !own(LinuxNamespaceType::Pid),
            // In a user namespace of its own, the container's capabilities do not count in
            // the host's, where our process's memory belongs.
            privileged_peers: !own(LinuxNamespaceType::User)
                && (bounding_reaches || earlier_privileged_exec),
            lsm_exec_label: label(lsm.apparmor, process.apparmor_profile())
                || label(lsm.selinux, process.selinux_label()),
            seccomp_blocks_launcher: seccomp.is_some_and(|f| !seccomp_allows_launcher(f)),
        }
    }
}

/// Whether a process holding `cap` can reach a non-dumpable process's memory and files.
pub fn reaches(cap: &Capability) -> bool {
    matches!(cap, Capability::SysPtrace | Capability::SysAdmin)
}

/// Picks the method, and when it is a re-exec, why (for the debug log).
pub fn choose(e: &Exposure) -> (Method, Option<&'static str>) {
    if current() != Protection::Unprotected {
        return (Method::AlreadyProtected, None);
    }
    let why = if !crate::linux::launcher::AVAILABLE {
        "no launcher for this architecture"
    } else if e.shared_pid_ns {
        "the process is visible outside the container's own pid namespace"
    } else if e.privileged_peers {
        "a process in the container may hold CAP_SYS_PTRACE or CAP_SYS_ADMIN"
    } else if e.lsm_exec_label {
        "an AppArmor/SELinux exec label is set"
    } else if e.seccomp_blocks_launcher {
        "the seccomp profile stops a system call the launcher makes"
    } else if memfd_exec_refused() {
        "vm.memfd_noexec = 2"
    } else {
        return (Method::Launcher, None);
    };
    (Method::ReExec, Some(why))
}

/// Chooses the method for `e` and carries it out: re-executes now (never returning) when that
/// is the answer, otherwise returns whether the final exec goes through the launcher.
pub fn apply(e: &Exposure) -> io::Result<Method> {
    let (method, why) = choose(e);
    if method == Method::ReExec {
        crate::logging::debug(format!(
            "re-executing from a read-only copy of the binary: {}",
            why.unwrap_or("")
        ));
        reexec_protected()?;
    }
    Ok(method)
}

/// Whether the seccomp filter lets through every system call the launcher makes
/// (execveat of it, fcntl F_SETFD, execve, writev of a failure, exit_group), and the fcntl
/// that hands it the report socket after startContainer hooks (which run under the filter).
pub fn seccomp_allows_launcher(filter: &berth_seccomp::Compiled) -> bool {
    const REPORT_FD: u64 = 3;
    let calls: [(i64, &[u64]); 6] = [
        (
            libc::SYS_execveat,
            &[REPORT_FD, 0, 0, 0, libc::AT_EMPTY_PATH as u64],
        ),
        (
            libc::SYS_fcntl,
            &[REPORT_FD, libc::F_SETFD as u64, libc::FD_CLOEXEC as u64],
        ),
        (libc::SYS_fcntl, &[REPORT_FD, libc::F_SETFD as u64, 0]),
        (libc::SYS_execve, &[0, 0, 0]),
        (libc::SYS_writev, &[REPORT_FD, 0, 2]),
        (libc::SYS_exit_group, &[127]),
    ];
    calls
        .iter()
        .all(|(nr, args)| filter.lets_through(*nr, args))
}

/// vm.memfd_noexec = 2 (Linux 6.3+) forbids executing any memfd in this pid namespace.
fn memfd_exec_refused() -> bool {
    std::fs::read("/proc/sys/vm/memfd_noexec").is_ok_and(|v| v.first() == Some(&b'2'))
}

/// Re-executes Berth from a protected copy of its binary (never returns on success).
pub fn reexec_protected() -> io::Result<()> {
    let fd = match readonly_bind_of_self() {
        Ok(fd) => fd,
        Err(_) => sealed_memfd_of_self()?,
    };
    crate::trace::before_reexec();
    reexec(fd.as_raw_fd())
}

/// A detached bind mount of our own binary, made read-only. Nothing is attached to any mount
/// tree; the mount lives exactly as long as something uses it.
fn readonly_bind_of_self() -> io::Result<OwnedFd> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    const MOUNT_ATTR_NOSUID: u64 = 0x2;
    const MOUNT_ATTR_NODEV: u64 = 0x4;
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let path = c"/proc/self/exe";
    // SAFETY: open_tree with a valid NUL-terminated path; returns a new fd we then own.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd returned by the kernel.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr reads `attr` (valid, correctly sized) and the empty path.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// A sealed, in-memory copy of our binary (the fallback: costs a copy of the binary).
fn sealed_memfd_of_self() -> io::Result<OwnedFd> {
    let image = std::fs::read("/proc/self/exe")?;
    crate::linux::sys::sealed_memfd(c"berth", &image)
}

/// execveat(fd, "", argv, envp, AT_EMPTY_PATH) with our own arguments and environment.
fn reexec(fd: RawFd) -> io::Result<()> {
    let to_c = |b: &[u8]| CString::new(b).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput));
    let args: Vec<CString> = std::env::args_os()
        .map(|a| to_c(a.as_bytes()))
        .collect::<io::Result<_>>()?;
    let env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            to_c(&kv)
        })
        .collect::<io::Result<_>>()?;
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    // SAFETY: argv and envp are NULL-terminated arrays of pointers into `args`/`env`, which
    // outlive the call; on success the call does not return.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd,
            c"".as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        );
    }
    Err(io::Error::last_os_error())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> Spec {
        let mut base = serde_json::to_value(Spec::default()).unwrap();
        if let (Some(b), Some(o)) = (base.as_object_mut(), json.as_object()) {
            for (k, v) in o {
                b.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(base).unwrap()
    }

    fn exposure(s: &Spec) -> Exposure {
        let p = s.process().clone().unwrap_or_default();
        Exposure::of(s, &p, None, Enabled::default(), false)
    }

    #[test]
    fn the_default_spec_needs_only_the_launcher() {
        let e = exposure(&Spec::default());
        assert!(!e.shared_pid_ns && !e.privileged_peers && !e.lsm_exec_label);
        assert!(!e.seccomp_blocks_launcher);
    }

    #[test]
    fn ptrace_capable_or_visible_processes_need_the_read_only_binary() {
        let mut s = Spec::default();
        let mut p = s.process().clone().unwrap();
        let mut caps = p.capabilities().clone().unwrap();
        let mut b = caps.bounding().clone().unwrap();
        b.insert(Capability::SysPtrace);
        caps.set_bounding(Some(b));
        p.set_capabilities(Some(caps));
        s.set_process(Some(p));
        assert!(exposure(&s).privileged_peers);
        // In a user namespace of its own, those capabilities do not reach our process.
        let mut linux = s.linux().clone().unwrap();
        let mut ns = linux.namespaces().clone().unwrap();
        ns.push(
            oci_spec::runtime::LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::User)
                .build()
                .unwrap(),
        );
        linux.set_namespaces(Some(ns));
        s.set_linux(Some(linux));
        assert!(!exposure(&s).privileged_peers);

        let hostpid = spec(serde_json::json!({"linux": {"namespaces": [{"type": "mount"}]}}));
        assert!(exposure(&hostpid).shared_pid_ns);
        let joined = spec(serde_json::json!({"linux": {"namespaces": [
            {"type": "pid", "path": "/proc/1/ns/pid"}]}}));
        assert!(exposure(&joined).shared_pid_ns);
    }

    #[test]
    fn a_process_without_a_capabilities_object_keeps_them_all() {
        let mut s = Spec::default();
        let mut p = s.process().clone().unwrap();
        p.set_capabilities(None);
        s.set_process(Some(p));
        assert!(exposure(&s).privileged_peers);
    }

    #[test]
    fn the_engines_default_profiles_let_the_launcher_through() {
        let docker: oci_spec::runtime::LinuxSeccomp =
            serde_json::from_str(include_str!("../tests/fixtures/docker-20.10-default.json"))
                .unwrap();
        let c = berth_seccomp::compile(&docker).unwrap();
        assert!(seccomp_allows_launcher(&c));
    }
}
