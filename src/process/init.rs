//! The container's init, in the order the runtime spec requires. It runs in the child that
//! `spawn` forked, reads top to bottom, and ends in execve of the user's program:
//!
//!  1. join the container's cgroup (v1: itself, see `cgroups::Entry`; v2: born in it), close
//!     the parent's and the caller's fds (non-dumpable since the fork), wait for GO (id maps,
//!     the cgroup where the parent places it, resources)
//!  2. enter namespaces (join by path, unshare, fork once more for a pid namespace)
//!  3. become root of the user namespace (new or joined); time namespace offsets; new session
//!  4. mounts into the rootfs (before pivot_root)
//!  5. prestart/createRuntime hooks (run by the parent), createContainer hooks (here)
//!  6. pivot_root; console; sysctl; read-only root, masked and read-only paths
//!  7. hostname, domainname, session keyring, oom score, rlimits, personality
//!  8. READY → wait on start.sock for `start`
//!  9. cwd (and its check), close-on-exec marks, then seccomp, user, capabilities,
//!     no_new_privileges (seccomp last with it); startContainer hooks; execve
//!
//! With a profile that uses SCMP_ACT_NOTIFY, step 9 up to the execve (filter, identity,
//! capabilities) runs before READY instead, as runc's init does it for every profile: the
//! listener fd then reaches the seccomp agent during `create`, and the init waits for `start`
//! under the filter (the agent answers what it traps).

use std::convert::Infallible;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use nix::sys::socket::accept4;
use nix::sys::socket::SockFlag;
use nix::unistd::{close, setresgid, setresuid, setsid, Gid, Uid};
use oci_spec::runtime::{LinuxNamespaceType, Process};

use super::sync::{self, Channel};
use super::{InitConfig, StartWait};
use crate::linux::launcher::Launcher;
use crate::linux::namespaces;
use crate::linux::rootfs;
use crate::linux::sys::{exit_now, Forked};
use crate::linux::{capabilities, console, identity, lsm, sched};
use crate::trace;

/// Entry point of the forked child. Never returns: it execs the user's program or exits.
pub fn run(cfg: &InitConfig, ch: Channel) -> ! {
    let result = setup(cfg, &ch);
    let (conn, prepared) = match result {
        Ok(done) => done,
        Err(msg) => {
            // write(2): a notify profile's filter may be loaded already (see report_error).
            report_error(&ch, &msg);
            exit_now(1)
        }
    };
    drop(ch);
    // From here on the `start` command is the one listening for errors.
    match start_and_exec(cfg, &conn, prepared) {
        Ok(never) => match never {},
        Err(msg) => {
            report_error(&conn, &msg);
            exit_now(1)
        }
    }
}

/// Steps 1–8: everything up to the moment `start` connects. Returns the start connection, and,
/// for a notify profile, what step 9 prepared before READY.
fn setup(cfg: &InitConfig, ch: &Channel) -> Result<(Channel, Option<Prepared>), String> {
    // 1. Into the container's cgroup before anything else is done here (the parent writes
    //    the resources meanwhile; GO waits for both).
    if let Some(e) = cfg.cgroup_entry {
        let _t = trace::step("cgroup-join");
        e.join()?;
    }
    //    The lock and other parent fds (the cgroup entry's too) are not ours to hold, nor
    //    what Berth's caller left open for it (a host directory, a pipe): while the
    //    container is `created` this process keeps only stdio, the preserved fds and
    //    Berth's own (all close-on-exec), as runc's init, which only gets the fds it is
    //    handed, does.
    for fd in &cfg.close_in_child {
        let _ = close(*fd);
    }
    crate::linux::sys::close_inherited_from(3 + cfg.preserve_fds)
        .map_err(|e| format!("close inherited fds: {e}"))?;
    // Non-dumpable since before the fork (`spawn`): while Berth's own code runs in the
    // container, no container process may open /proc/<init>/{exe,mem,fd}, the CVE-2019-5736
    // route to the host binary.
    ch.expect(sync::GO)?;
    // Dumpable until its id maps are written, when an unprivileged parent writes them.
    if cfg.ns.new_user && !cfg.ns.maps_after_unshare() {
        set_dumpable(false)?;
    }
    if let Some(p) = cfg.spec.process() {
        sched::apply_affinity(p.exec_cpu_affinity().as_ref(), false, "process")?;
    }

    // 2. Namespaces.
    let ns = &cfg.ns;
    namespaces::join_all(&ns.joins)?;
    if !ns.unshare_flags.is_empty() {
        let mut t = trace::step("ns-unshare");
        t.detail(|| namespaces::names(ns.unshare_flags));
        namespaces::unshare_new(ns.unshare_flags)?;
    }
    if ns.maps_after_unshare() {
        ch.send(sync::MAPS, &[]).map_err(|e| e.to_string())?;
        ch.expect(sync::MAPS_DONE)?;
        set_dumpable(false)?;
    }
    if ns.fork_for_pid {
        // A pid namespace applies to children only: fork the real init, report its host pid
        // and leave.
        let flags = ns.fork_flags.bits() as u64;
        // Logged by the init it forks (the intermediate process leaves without a word).
        let t = trace::step("ns-fork-pid");
        match crate::linux::sys::clone3_fork(flags, None).map_err(|e| format!("fork init: {e}"))? {
            Forked::Parent(pid) => {
                std::mem::forget(t);
                let _ = ch.send(sync::PID, &pid.to_ne_bytes());
                exit_now(0)
            }
            Forked::Child => t.end(),
        }
    }

    // 3. Identity inside a new or joined user namespace (joining leaves the host's ids, unmapped
    //    there: runc's init becomes 0 in either case), time offsets, session.
    if ns.new_user || ns.joins.iter().any(|(t, _)| *t == LinuxNamespaceType::User) {
        let _t = trace::step("userns-root");
        setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
            .map_err(|e| format!("become gid 0 in the user namespace: {e}"))?;
        setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
            .map_err(|e| format!("become uid 0 in the user namespace: {e}"))?;
    }
    if let Some(offsets) = cfg
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.time_offsets().as_ref())
    {
        let body: String = offsets
            .iter()
            .map(|(clock, o)| {
                format!(
                    "{clock} {} {}\n",
                    o.secs().unwrap_or(0),
                    o.nanosecs().unwrap_or(0)
                )
            })
            .collect();
        let f = crate::linux::procfs::ProcFile::OwnProcess("timens_offsets");
        crate::linux::procfs::write_proc(f, body.as_bytes())
            .map_err(|e| format!("linux.timeOffsets: write /proc/self/timens_offsets: {e}"))?;
    }
    setsid().map_err(|e| format!("setsid: {e}"))?;

    // 4. Mounts, before pivot_root.
    let ropts = rootfs::Options {
        no_pivot: cfg.no_pivot,
        bundle: cfg.bundle,
    };
    let has_mount_ns = ns.new_mount
        || ns
            .joins
            .iter()
            .any(|(t, _)| *t == LinuxNamespaceType::Mount);
    if has_mount_ns {
        let mut t = trace::step("mounts");
        t.count(cfg.spec.mounts().as_ref().map_or(0, Vec::len));
        rootfs::prepare(cfg.spec, cfg.rootfs, &ropts).map_err(|e| e.to_string())?;
    }

    // 5. Hooks that run before pivot_root.
    if cfg.parent_hooks {
        ch.send(sync::HOOKS, &[]).map_err(|e| e.to_string())?;
        let state = ch.expect(sync::HOOKS_DONE)?;
        if let Some(hooks) = cfg
            .spec
            .hooks()
            .as_ref()
            .and_then(|h| h.create_container().as_ref())
        {
            // In the container's root filesystem, as runc runs them.
            let mut t = trace::step("hook:createContainer");
            t.count(hooks.len());
            crate::hooks::run_all_in(
                "createContainer",
                hooks,
                &seen_from_inside(&state),
                cfg.rootfs,
            )
            .map_err(|e| e.to_string())?;
        }
    }

    // 6. Enter the rootfs.
    if has_mount_ns {
        trace::span("pivot-root", || rootfs::enter(cfg.rootfs, &ropts))
            .map_err(|e| e.to_string())?;
    } else {
        let _t = trace::step("chroot");
        nix::unistd::chroot(cfg.rootfs).map_err(|e| format!("chroot: {e}"))?;
        nix::unistd::chdir("/").map_err(|e| format!("chdir /: {e}"))?;
    }
    let process = cfg.spec.process().as_ref().ok_or("process: required")?;
    if process.terminal() == Some(true) {
        let sock = cfg
            .console_socket
            .as_ref()
            .ok_or("process.terminal is set but no --console-socket was given")?;
        trace::span("console", || console::setup(sock, process))
            .map_err(|e| format!("console: {e}"))?;
    }
    // sysctls go before finish(): linux.readonlyPaths usually makes /proc/sys read-only.
    if let Some(sysctl) = cfg.spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) {
        let mut t = trace::step("sysctl");
        t.count(sysctl.len());
        for (k, v) in sysctl {
            rootfs::write_sysctl(k, v)
                .map_err(|e| format!("{}: {e}", crate::config::sysctl_field(k)))?;
        }
    }
    // The working directory is created if missing, as root and before the rootfs may become
    // read-only (as runc does).
    let cwd = process.cwd();
    if std::fs::symlink_metadata(cwd).is_err() {
        std::fs::create_dir_all(cwd)
            .map_err(|e| format!("process.cwd: create {}: {e}", cwd.display()))?;
    }
    if has_mount_ns {
        trace::span("rootfs-finish", || rootfs::finish(cfg.spec)).map_err(|e| e.to_string())?;
    }

    // 7. Container-wide settings.
    let settings = trace::step("settings");
    if let Some(h) = cfg.spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        nix::unistd::sethostname(h).map_err(|e| format!("hostname: {e}"))?;
    }
    if let Some(d) = cfg.spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        set_domainname(d)?;
    }
    if !cfg.no_new_keyring {
        join_session_keyring(cfg.id);
    }
    identity::apply_process_limits(process)?;
    identity::apply_personality(
        cfg.spec
            .linux()
            .as_ref()
            .and_then(|l| l.personality().as_ref()),
    )?;
    crate::linux::mempolicy::apply(
        cfg.spec
            .linux()
            .as_ref()
            .and_then(|l| l.memory_policy().as_ref()),
    )?;
    // As runc does, a program that cannot be found fails `create`, not `start`.
    check_executable(process)?;
    settings.end();
    // A notify profile: step 9 now, so that the agent has the listener fd when `create`
    // returns (runc hands it over there; an agent may wait for it before anything else).
    let prepared = match cfg.seccomp.as_ref().filter(|s| s.uses_notify()) {
        Some(_) => Some(prepare_user_process(
            &user_process(cfg, process),
            ch,
            Some(&cfg.start),
        )?),
        None => None,
    };

    // 8. Created: wait for start. write(2), as report_error.
    send_record(ch, sync::READY, &[]).map_err(|e| format!("report ready: {e}"))?;
    let listener = match &cfg.start {
        StartWait::Listener(l) => l,
        StartWait::Connected(fd) => {
            return fd
                .try_clone()
                .map(|c| (Channel(c), prepared))
                .map_err(|e| format!("wait for start: {e}"))
        }
    };
    let conn = loop {
        match accept4(listener.as_raw_fd(), SockFlag::SOCK_CLOEXEC) {
            // A `start` that went away before saying anything (killed) leaves the container
            // created: wait for the next one.
            Ok(fd) => match Channel(unsafe_owned(fd)) {
                conn if conn.has_message() => {
                    sync::released(listener);
                    break conn;
                }
                _ => continue,
            },
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("wait for start: {e}")),
        }
    };
    Ok((conn, prepared))
}

/// Step 9's settings of the init's process.
fn user_process<'a>(cfg: &'a InitConfig, process: &'a Process) -> UserProcess<'a> {
    UserProcess {
        p: process,
        preserve_fds: cfg.preserve_fds,
        seccomp: cfg.seccomp.as_ref(),
        lsm: cfg.lsm,
        launcher: cfg.launcher,
        hooks: cfg
            .spec
            .hooks()
            .as_ref()
            .and_then(|h| h.start_container().as_ref())
            .is_some_and(|h| !h.is_empty()),
    }
}

/// Step 8 (end) and 9 (or, if it ran before READY, its exec): run by the released init.
fn start_and_exec(
    cfg: &InitConfig,
    conn: &Channel,
    prepared: Option<Prepared>,
) -> Result<Infallible, String> {
    let state = trace::span("start-wait", || conn.expect(sync::START))?;
    let process = cfg.spec.process().as_ref().ok_or("process: required")?;
    let hooks = cfg
        .spec
        .hooks()
        .as_ref()
        .and_then(|h| h.start_container().as_ref())
        .filter(|h| !h.is_empty());
    // startContainer hooks run in the container as its process would (runc runs them right
    // before its execve): under its seccomp filter, as its user, and, for a hook without `env`,
    // with the process's environment (runc's hooks inherit its init's, which is process.env).
    let run_hooks = |env: &[String]| -> Result<(), String> {
        let hooks: Vec<oci_spec::runtime::Hook> = hooks
            .into_iter()
            .flatten()
            .map(|h| {
                let mut h = h.clone();
                if h.env().is_none() {
                    h.set_env(Some(env.to_vec()));
                }
                h
            })
            .collect();
        crate::hooks::run_all("startContainer", &hooks, &seen_from_inside(&state))
            .map_err(|e| e.to_string())
    };
    let before_exec = hooks.is_some().then_some(&run_hooks as BeforeExec);
    match prepared {
        Some(prepared) => exec_prepared(prepared, conn, before_exec),
        None => exec_user_process(&user_process(cfg, process), conn, before_exec),
    }
}

/// What runs right before the final exec, given the process's environment.
pub(crate) type BeforeExec<'a> = &'a dyn Fn(&[String]) -> Result<(), String>;

/// Reports an error on the channel to whoever waits on it (`create`, `start`, `exec`). With
/// write(2), not send(2): after the seccomp filter is loaded, the profile may not allow sendto
/// (profiles list write for the program's own sake; `check_channel_allowed` insists on it
/// where it matters), and on a SOCK_SEQPACKET socket write sends the same one record.
pub(crate) fn report_error(ch: &Channel, msg: &str) {
    let _ = send_record(ch, sync::ERROR, msg.as_bytes());
}

/// One record (`tag`, then `payload`) on `ch` with write(2); see [`report_error`].
fn send_record(ch: &Channel, tag: u8, payload: &[u8]) -> nix::Result<()> {
    let mut buf = Vec::with_capacity(1 + payload.len());
    buf.push(tag);
    buf.extend_from_slice(payload);
    loop {
        match nix::unistd::write(&ch.0, &buf) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => return r.map(|_| ()),
        }
    }
}

/// The process step 9 runs, and how.
pub(crate) struct UserProcess<'a> {
    pub p: &'a Process,
    /// Fds 3..3+N stay open across the exec.
    pub preserve_fds: u32,
    pub seccomp: Option<&'a berth_seccomp::Compiled>,
    pub lsm: lsm::Enabled,
    /// The final exec goes through the launcher (see `selfprotect`).
    pub launcher: bool,
    /// Hooks (the init's startContainer hooks) run right before the exec.
    pub hooks: bool,
}

/// What step 9 has settled when only the hooks and the exec remain.
pub(crate) struct Prepared {
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    env: Vec<String>,
    launch: Option<Launcher>,
    /// The report socket is inheritable already (for the launcher).
    report_inheritable: bool,
}

/// Step 9, shared with `exec`: identity, capabilities, no_new_privileges, seccomp, cwd, fds,
/// execve, reporting on `ch`. `before_exec` (the init's startContainer hooks) runs last, with
/// the process's environment: as in runc, under the filter, as the process's user with its
/// capabilities.
pub(crate) fn exec_user_process(
    up: &UserProcess,
    ch: &Channel,
    before_exec: Option<BeforeExec>,
) -> Result<Infallible, String> {
    let prepared = prepare_user_process(up, ch, None)?;
    exec_prepared(prepared, ch, before_exec)
}

/// Step 9 up to the exec: everything but the hooks and the execve, reporting on `ch`.
///
/// Without no_new_privileges the kernel only accepts a filter while the process still has
/// CAP_SYS_ADMIN, so it is loaded before the identity switch, and what follows runs under it.
/// So, in runc's order, everything that can be is done *before* the filter: the launcher's
/// memfd, LSM labels, scheduling, umask, SIGPIPE, the close-on-exec marks, the working
/// directory and its check. After it come only the bounding set, keep-caps, the identity
/// switch, capset, no_new_privs and execve (runc's list: a profile for runc allows them), plus
/// write(2) for an error report. With no_new_privileges the filter is loaded last.
///
/// `ahead`: this runs in the init before READY (a notify profile), which then waits for
/// `start` this way under the filter, and execs with `start`'s connection as its report
/// channel (see [`exec_prepared`]).
///
/// With the launcher, the execve is made by the launcher (see `selfprotect`), which reports a
/// failure on the report channel; its end-of-stream still means the program runs.
fn prepare_user_process(
    up: &UserProcess,
    ch: &Channel,
    ahead: Option<&StartWait>,
) -> Result<Prepared, String> {
    let p = up.p;
    // The JSON path errors name: `exec` also runs a `process` object (its process.json).
    let at = "process";
    // Traced up to the filter, never after it: from there on only the steps listed above run.
    let prep = trace::step("exec-prepare");
    let launch = up
        .launcher
        .then(Launcher::new)
        .transpose()
        .map_err(|e| format!("the launcher's memfd: {e}"))?;
    let argv: Vec<CString> = p
        .args()
        .iter()
        .flatten()
        .map(|a| CString::new(a.as_bytes()).map_err(|_| format!("{at}.args: contains a NUL byte")))
        .collect::<Result<_, _>>()?;
    let mut env: Vec<String> = p.env().clone().unwrap_or_default();
    let ident = identity::resolve(p)?;
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", ident.home));
    }
    let envp: Vec<CString> = env
        .iter()
        .map(|e| CString::new(e.as_bytes()).map_err(|_| format!("{at}.env: contains a NUL byte")))
        .collect::<Result<_, _>>()?;
    let path = lookup(&argv[0], &env)?;
    let nnp = p.no_new_privileges() == Some(true);
    lsm::set_exec_labels(
        up.lsm,
        p.apparmor_profile().as_deref(),
        p.selinux_label().as_deref(),
    )?;
    sched::apply_io_priority(p.io_priority().as_ref(), at)?;
    sched::apply_scheduler(p.scheduler().as_ref(), at)?;
    sched::apply_affinity(p.exec_cpu_affinity().as_ref(), true, at)?;
    // SAFETY: umask(2) only sets the mask (it cannot fail).
    unsafe { libc::umask(ident.umask as libc::mode_t) };
    if !up.hooks {
        crate::linux::sys::restore_sigpipe();
    }
    // No fd but stdio and the preserved ones survives execve. Every fd Berth opens from here
    // on (the seccomp listener) is close-on-exec too.
    crate::linux::sys::cloexec_from(3 + up.preserve_fds).map_err(|e| format!("close fds: {e}"))?;
    for fd in 3..3 + up.preserve_fds as i32 {
        let _ = nix::fcntl::fcntl(
            unsafe_borrow(fd),
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        );
    }
    // The launcher inherits the report socket and makes it close-on-exec itself. Where hooks
    // run first, only after them: they must not inherit it; ahead of READY, the report socket
    // is not known yet.
    let report_inheritable = launch.is_some() && !up.hooks && ahead.is_none();
    if report_inheritable {
        inheritable(&ch.0).map_err(|e| format!("the launcher's report socket: {e}"))?;
    }
    enter_cwd(p.cwd(), &ident, at)?;

    let after = AfterFilter {
        nnp,
        ids: (ident.uid, ident.gid),
        ahead,
    };
    prep.end();
    if let Some(filter) = up.seccomp.filter(|_| !nnp) {
        load_seccomp(filter, ch, &after)?;
    }
    // The identity steps are traced only where no filter is loaded yet.
    let identity_step = (nnp || up.seccomp.is_none()).then(|| trace::step("identity"));
    capabilities::apply_bounding(p.capabilities().as_ref())?;
    capabilities::keep_caps(true)?;
    identity::switch(&ident)?;
    capabilities::keep_caps(false)?;
    capabilities::apply(p.capabilities().as_ref())?;
    if nnp {
        set_no_new_privs()?;
    }
    drop(identity_step);
    if let Some(filter) = up.seccomp.filter(|_| nnp) {
        load_seccomp(filter, ch, &after)?;
    }
    Ok(Prepared {
        path,
        argv,
        envp,
        env,
        launch,
        report_inheritable,
    })
}

/// The end of step 9: hooks, then the exec, reporting a failure on `ch`.
fn exec_prepared(
    prepared: Prepared,
    ch: &Channel,
    before_exec: Option<BeforeExec>,
) -> Result<Infallible, String> {
    let p = prepared;
    if let Some(hooks) = before_exec {
        hooks(&p.env)?;
        // Only now: writing the state to a hook that does not read it must not kill us.
        crate::linux::sys::restore_sigpipe();
    }
    if p.launch.is_some() && !p.report_inheritable {
        inheritable(&ch.0).map_err(|e| format!("the launcher's report socket: {e}"))?;
    }
    if let Some(launcher) = &p.launch {
        let err = launcher.exec(&ch.0, &p.path, &p.argv, &p.envp);
        return Err(format!("exec {:?} through the launcher: {err}", p.argv[0]));
    }
    let err = nix::unistd::execve(&p.path, &p.argv, &p.envp).unwrap_err();
    Err(format!("exec {:?}: {err}", p.argv[0]))
}

/// What the runtime does after loading the filter, besides the steps of `prepare_user_process`.
struct AfterFilter<'a> {
    nnp: bool,
    /// The uid and gid the process switches to.
    ids: (u32, u32),
    /// Waits for `start` (see `prepare_user_process`).
    ahead: Option<&'a StartWait>,
}

/// Loads the filter; with SCMP_ACT_NOTIFY, hands its fd to the parent (which gives it to the
/// agent) with a call the filter lets through, checked before loading: sendmsg with the fd
/// attached where the filter lets it through, or else write of its number, the parent taking
/// it with pidfd_getfd while this process waits (read) for NOTIFY_DONE. runc always writes,
/// and so refuses NOTIFY on `write`; calls the agent is sent from then on wait until the
/// parent has given it the fd.
fn load_seccomp(
    filter: &berth_seccomp::Compiled,
    ch: &Channel,
    after: &AfterFilter,
) -> Result<(), String> {
    check_channel_allowed(filter, ch, after)?;
    let notify = filter.load().map_err(|e| format!("linux.seccomp: {e}"))?;
    let Some(fd) = notify else { return Ok(()) };
    if sendmsg_passes(filter, ch) {
        // Our copy closes on return, as runc closes its own: once the agent's is gone too,
        // notified calls fail (ENOSYS) instead of waiting for ever.
        return ch
            .send_fd(sync::NOTIFY_FD, fd.as_fd())
            .map_err(|e| format!("linux.seccomp: pass the notify fd: {e}"));
    }
    send_record(ch, sync::NOTIFY_FD, &fd.as_raw_fd().to_ne_bytes())
        .map_err(|e| format!("linux.seccomp: pass the notify fd: {e}"))?;
    // read(2), like write above, for a profile without recvfrom; one read is one record.
    let mut reply = [0u8; 256];
    match nix::unistd::read(&ch.0, &mut reply) {
        Ok(n) if n > 0 && reply[0] == sync::NOTIFY_DONE => Ok(()),
        Ok(n) if n > 0 && reply[0] == sync::ERROR => {
            Err(String::from_utf8_lossy(&reply[1..n]).into_owned())
        }
        Ok(_) => Err("linux.seccomp: the notify fd was not taken".into()),
        Err(e) => Err(format!("linux.seccomp: wait for the agent: {e}")),
    }
}

/// Whether the filter lets `Channel::send_fd` on `ch` through.
fn sendmsg_passes(filter: &berth_seccomp::Compiled, ch: &Channel) -> bool {
    let fd = ch.0.as_raw_fd() as u64;
    filter.lets_through(libc::SYS_sendmsg, &[fd, 0, libc::MSG_NOSIGNAL as u64])
}

/// Refuses, before loading it, a filter under which what the runtime does afterwards could
/// not happen: handing over a notify fd (sendmsg, or write and read), reporting an error
/// (write) where runtime steps follow the filter (no_new_privileges false, or a notify
/// profile loaded before READY), and waiting for `start` (accept4, recvfrom) in the latter
/// case. Without this an error after the filter would be lost and end-of-stream would read as
/// a successful exec. runc needs the same kind of calls there (its exec fifo and sync pipe).
/// Once the fd is handed over, a call the filter sends to the agent is fine: the agent
/// answers. Only the compiled program is consulted: no system call.
fn check_channel_allowed(
    filter: &berth_seccomp::Compiled,
    ch: &Channel,
    after: &AfterFilter,
) -> Result<(), String> {
    let fd = ch.0.as_raw_fd() as u64;
    let answered =
        |nr: i64, args: &[u64]| filter.lets_through(nr, args) || filter.notifies(nr, args);
    if filter.uses_notify()
        && !sendmsg_passes(filter, ch)
        && !(filter.lets_through(libc::SYS_write, &[fd, 0, 5])
            && answered(libc::SYS_read, &[fd, 0, 256]))
    {
        return Err(
            "linux.seccomp: the profile must allow sendmsg (or write and read): the runtime \
             hands the notify fd over with it right after loading the filter"
                .into(),
        );
    }
    if !after.nnp {
        // The identity and capability steps that follow the filter here: a profile that kills
        // one of them would end the init without a word, and end-of-stream would read as a
        // successful exec (runc's init dies in `create` then, and its `start` fails).
        let (gid, uid) = (after.ids.1 as u64, after.ids.0 as u64);
        let steps: [(&str, i64, &[u64]); 5] = [
            ("prctl", libc::SYS_prctl, &[libc::PR_CAPBSET_DROP as u64, 0]),
            ("setgroups", libc::SYS_setgroups, &[0, 0]),
            ("setresgid", libc::SYS_setresgid, &[gid, gid, gid]),
            ("setresuid", libc::SYS_setresuid, &[uid, uid, uid]),
            ("capset", libc::SYS_capset, &[]),
        ];
        if let Some((name, ..)) = steps.iter().find(|(_, nr, args)| filter.kills(*nr, args)) {
            return Err(format!(
                "linux.seccomp: the profile kills {name}, which the runtime makes after loading \
                 the filter (process.noNewPrivileges is false)"
            ));
        }
    }
    let mut needs: Vec<(&str, i64, Vec<u64>)> = Vec::new();
    if !after.nnp || after.ahead.is_some() {
        needs.push(("write", libc::SYS_write, vec![fd, 0, 1]));
    }
    if let Some(wait) = after.ahead {
        needs.push(("recvfrom", libc::SYS_recvfrom, vec![]));
        if let StartWait::Listener(l) = wait {
            let flags = libc::SOCK_CLOEXEC as u64;
            needs.push((
                "accept4",
                libc::SYS_accept4,
                vec![l.as_raw_fd() as u64, 0, 0, flags],
            ));
        }
    }
    match needs.iter().find(|(_, nr, args)| !answered(*nr, args)) {
        None => Ok(()),
        Some((name, ..)) => Err(format!(
            "linux.seccomp: the profile must allow {name}: the runtime uses it after loading \
             the filter ({})",
            if after.ahead.is_some() {
                "loaded during create for SCMP_ACT_NOTIFY, as runc does"
            } else {
                "process.noNewPrivileges is false"
            }
        )),
    }
}

/// Enters `cwd` and checks that it is inside the container (CVE-2024-21626), before the
/// seccomp filter and the identity switch, so that neither chdir nor getcwd has to be allowed
/// by the profile. As runc does, it is entered as root first; only if root may not
/// (EACCES/EPERM: in a user namespace whose root is not mapped to the directory's owner, or
/// on a filesystem that checks the caller's real identity) is it tried again as the user. runc
/// retries after its setresuid; here the user's filesystem identity (setfsgid/setfsuid and
/// its groups) is taken just for that chdir, which the kernel checks the same way: a non-zero
/// fsuid drops the effective capabilities that override permissions, as setresuid does.
fn enter_cwd(cwd: &std::path::Path, ident: &identity::Identity, at: &str) -> Result<(), String> {
    let failed = |e| format!("{at}.cwd: chdir to {cwd:?}: {e}");
    match nix::unistd::chdir(cwd) {
        Ok(()) => {}
        Err(nix::errno::Errno::EACCES | nix::errno::Errno::EPERM) => {
            as_user_fs(ident, || nix::unistd::chdir(cwd)).map_err(failed)?
        }
        Err(e) => return Err(failed(e)),
    }
    verify_cwd_inside()
}

/// Runs `f` with the filesystem identity of `ident` (groups, fsgid, fsuid), then restores root's
/// fsuid and fsgid (which brings back the effective capabilities a non-zero fsuid drops). The
/// groups stay: the identity switch sets them again.
fn as_user_fs<T>(ident: &identity::Identity, f: impl FnOnce() -> T) -> T {
    let groups: Vec<Gid> = ident.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    // Refused where the user namespace denies setgroups; the identity switch reports that.
    let _ = nix::unistd::setgroups(&groups);
    // SAFETY: setfsgid/setfsuid take an id and return the previous one; they cannot fail in a
    // way that needs handling here (an id that is not allowed leaves it unchanged, and the
    // chdir then fails as root's did).
    let (old_gid, old_uid) = unsafe { (libc::setfsgid(ident.gid), libc::setfsuid(ident.uid)) };
    let r = f();
    // SAFETY: as above, back to the previous ids.
    unsafe {
        libc::setfsuid(old_uid as libc::uid_t);
        libc::setfsgid(old_gid as libc::gid_t);
    }
    r
}

/// The state JSON as hooks in the container's namespaces must see it: runtime-spec "State":
/// "For hooks executed in the container namespace, it is the pid as seen by the container."
fn seen_from_inside(state: &[u8]) -> Vec<u8> {
    match serde_json::from_slice::<serde_json::Value>(state) {
        Ok(mut v) if v.is_object() => {
            v["pid"] = std::process::id().into();
            serde_json::to_vec(&v).unwrap_or_else(|_| state.to_vec())
        }
        _ => state.to_vec(),
    }
}

/// Checks, in the container's root, that `process.args[0]` names an executable file (found
/// through the container's PATH when it has no '/'). A path relative to the cwd is left to
/// execve, since the cwd is entered later.
fn check_executable(p: &Process) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let Some(arg0) = p.args().as_ref().and_then(|a| a.first()) else {
        return Ok(());
    };
    if arg0.contains('/') && !arg0.starts_with('/') {
        return Ok(());
    }
    let prog = CString::new(arg0.as_bytes()).map_err(|_| "process.args[0]: contains a NUL byte")?;
    let env = p.env().clone().unwrap_or_default();
    let path = lookup(&prog, &env).map_err(|e| format!("process.args[0]: {e}"))?;
    let path = path.to_string_lossy();
    match std::fs::metadata(&*path) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(()),
        Ok(_) => Err(format!(
            "process.args[0]: {path:?} is not an executable file"
        )),
        Err(e) => Err(format!("process.args[0]: {path:?}: {e}")),
    }
}

/// Finds the program like execvp, using the container's PATH from `env`.
fn lookup(prog: &CString, env: &[String]) -> Result<CString, String> {
    let name = prog
        .to_str()
        .map_err(|_| "process.args[0]: not UTF-8".to_string())?;
    if name.contains('/') {
        return Ok(prog.clone());
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let cand = format!("{dir}/{name}");
        if let Ok(m) = std::fs::metadata(&cand) {
            use std::os::unix::fs::PermissionsExt;
            if m.is_file() && m.permissions().mode() & 0o111 != 0 {
                return CString::new(cand).map_err(|e| e.to_string());
            }
        }
    }
    Err(format!(
        "exec: {name:?}: executable file not found in $PATH"
    ))
}

/// The CVE-2024-21626 class: a cwd reached through a leaked host fd shows up as
/// "(unreachable)/…"; refuse to run there.
fn verify_cwd_inside() -> Result<(), String> {
    // glibc's getcwd fails with ENOENT when the kernel reports an unreachable directory.
    let cwd = nix::unistd::getcwd().map_err(|e| match e {
        nix::errno::Errno::ENOENT => {
            "process.cwd: the working directory is outside the container".to_string()
        }
        e => format!("process.cwd: getcwd: {e}"),
    })?;
    if !cwd.is_absolute() || cwd.to_string_lossy().starts_with("(unreachable)") {
        return Err(format!(
            "process.cwd: working directory {cwd:?} is outside the container"
        ));
    }
    Ok(())
}

pub(crate) fn set_dumpable(on: bool) -> Result<(), String> {
    // SAFETY: prctl with integer arguments only.
    let r = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, on as libc::c_ulong, 0, 0, 0) };
    if r != 0 {
        return Err(format!(
            "prctl(PR_SET_DUMPABLE): {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn set_no_new_privs() -> Result<(), String> {
    // SAFETY: prctl with integer arguments only.
    let r = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if r != 0 {
        return Err(format!(
            "process.noNewPrivileges: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn set_domainname(d: &str) -> Result<(), String> {
    // SAFETY: the pointer and length describe `d`, which outlives the call.
    let r = unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) };
    if r != 0 {
        return Err(format!("domainname: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// A fresh session keyring per container, so containers do not share the host's keys (as runc
/// does unless --no-new-keyring). Failure is not fatal (keyrings may be unavailable).
pub(crate) fn join_session_keyring(id: &str) {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    let name = CString::new(format!("_ses.{id}")).unwrap_or_default();
    // SAFETY: keyctl reads the NUL-terminated name, which outlives the call.
    unsafe {
        libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr());
    }
}

/// Clears close-on-exec on `fd`.
fn inheritable(fd: &OwnedFd) -> nix::Result<()> {
    nix::fcntl::fcntl(
        fd,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .map(|_| ())
}

fn unsafe_owned(fd: std::os::fd::RawFd) -> OwnedFd {
    // SAFETY: `fd` was just returned by accept4 and is owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn unsafe_borrow<'a>(fd: std::os::fd::RawFd) -> std::os::fd::BorrowedFd<'a> {
    // SAFETY: fds 3..3+N are the preserved fds handed to us by the caller; they stay open for
    // the duration of the fcntl call.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
}
