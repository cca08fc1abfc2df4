//! The forked child's sequence, top to bottom: non-dumpable, the cgroup, the container's
//! namespaces, then the process's own settings, ending in `init::exec_user_process`. It never
//! returns: it execs the user's program or reports one error line and exits.

use std::convert::Infallible;
use std::os::unix::fs::MetadataExt;

use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{sigprocmask, SigmaskHow};
use nix::unistd::{setresgid, setresuid, setsid, Gid, Uid};

use super::{ExecConfig, Target};
use crate::linux::sys::exit_now;
use crate::linux::{console, identity};
use crate::process::init;
use crate::process::sync::Channel;

/// The child: never returns. It execs the user's program or reports one error line and exits.
pub(super) fn child_main(
    cfg: &ExecConfig,
    t: &Target,
    ch: Channel,
    entry: Option<&crate::cgroups::Entry>,
) -> ! {
    match setup_and_exec(cfg, t, entry, &ch) {
        Ok(never) => match never {},
        Err(msg) => {
            init::report_error(&ch, &msg);
            exit_now(1)
        }
    }
}

/// The child's sequence, top to bottom.
fn setup_and_exec(
    cfg: &ExecConfig,
    t: &Target,
    entry: Option<&crate::cgroups::Entry>,
    ch: &Channel,
) -> std::result::Result<Infallible, String> {
    // Non-dumpable since before the fork (`spawn`): no container process may open
    // /proc/<us>/{exe,mem,fd,root} while Berth's code runs in the container, which would reach
    // the host binary and the fds below (CVE-2019-5736 class). execve makes the user's
    // program dumpable again.
    crate::linux::sched::apply_affinity(
        cfg.process.exec_cpu_affinity().as_ref(),
        false,
        "process",
    )?;

    // 1. Cgroup, while host paths are still ours (and before the cgroup namespace, which
    //    would hide them).
    let join = crate::trace::step("join");
    if let Some(cg) = &cfg.cgroup {
        match entry {
            Some(e) => {
                e.join()?;
                for fd in e.fds() {
                    let _ = nix::unistd::close(fd);
                }
            }
            // cgroup.procs reads pids in the writer's pid namespace: ours is the container's.
            None => cg
                .manager
                .add(nix::unistd::getpid().as_raw())
                .map_err(|e| e.to_string())?,
        }
        // `--cgroup CONTROLLER:PATH`: "0" to the sub-cgroup's `tasks`, this single thread, as
        // `Entry::join` does (no global lock).
        for tasks in &cg.controller_tasks {
            std::fs::write(tasks, "0")
                .map_err(|e| format!("--cgroup: join {}: {e}", tasks.display()))?;
        }
    }

    // 2. Namespaces: the pid namespace is already ours (we were born in it).
    enter_namespaces(t)?;
    if let Some(root) = &t.root {
        nix::unistd::fchdir(root).map_err(|e| format!("enter the container's root: {e}"))?;
        nix::unistd::chroot(".").map_err(|e| format!("chroot to the container's root: {e}"))?;
    }
    join.end();
    let settings = crate::trace::step("settings");
    setsid().map_err(|e| format!("setsid: {e}"))?;
    init::join_session_keyring(cfg.container_id);

    // 3. The process's own settings.
    let p = cfg.process;
    if p.terminal() == Some(true) {
        let sock = cfg
            .console_socket
            .as_ref()
            .ok_or("process.terminal is set but no --console-socket was given")?;
        console::setup_for_exec(sock, p).map_err(|e| format!("console: {e}"))?;
    }
    identity::apply_process_limits(p)?;

    // 4. The caller's signal mask (Berth blocked everything to forward signals); then identity,
    //    capabilities, no_new_privileges, seccomp, cwd (checked inside), fds, execve.
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&cfg.sigmask), None)
        .map_err(|e| format!("restore signal mask: {e}"))?;
    settings.end();
    let up = init::UserProcess {
        p,
        preserve_fds: cfg.preserve_fds,
        seccomp: cfg.seccomp.as_ref(),
        lsm: cfg.lsm,
        launcher: cfg.launcher,
        hooks: false,
    };
    init::exec_user_process(&up, ch, None)
}

/// Joins the init's namespaces through its pidfd. As host root, everything but the user
/// namespace first (a namespace the container joined from the host stays reachable), then the
/// user namespace; if that order is refused (a rootless caller), the other way round.
fn enter_namespaces(t: &Target) -> std::result::Result<(), String> {
    let mut others = CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWCGROUP;
    if t.join_mount {
        others |= CloneFlags::CLONE_NEWNS;
    }
    let join = |flags: CloneFlags| {
        setns(&t.pidfd, flags).map_err(|e| {
            if e == nix::errno::Errno::ESRCH {
                format!(
                    "cannot exec in a stopped container: its init (pid {}) exited",
                    t.pid
                )
            } else {
                format!(
                    "join the container's namespaces ({}): {e}",
                    crate::linux::namespaces::names(flags)
                )
            }
        })
    };
    // A rootless parent may have entered the user namespace already (to join the pid one).
    let join_user = t.join_user && !in_user_namespace_of(t.pid);
    match setns(&t.pidfd, others) {
        Ok(()) => {
            if join_user {
                join(CloneFlags::CLONE_NEWUSER)?;
            }
        }
        Err(nix::errno::Errno::EPERM) => {
            // Rootless: the user namespace first, then only the namespaces that differ from
            // ours; those the container shares with the host (its network, its cgroup
            // namespace, say) belong to the host's user namespace, where even re-entering them
            // needs privileges (an unprivileged user, or uid 0 of rootless podman's namespace).
            if join_user {
                join(CloneFlags::CLONE_NEWUSER)?;
            }
            let differing = differing_namespaces(t.pid, others);
            if !differing.is_empty() {
                join(differing)?;
            }
        }
        Err(_) => join(others)?,
    }
    if t.join_user {
        setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
            .map_err(|e| format!("become gid 0 in the container's user namespace: {e}"))?;
        setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
            .map_err(|e| format!("become uid 0 in the container's user namespace: {e}"))?;
    }
    if let Some(time) = &t.time {
        setns(time, CloneFlags::from_bits_retain(libc::CLONE_NEWTIME))
            .map_err(|e| format!("join the container's time namespace: {e}"))?;
    }
    Ok(())
}

/// Whether `pid`'s namespace of this kind (its /proc/PID/ns name) is this process's own.
fn same_namespace(pid: i32, name: &str) -> bool {
    let ino = |p: String| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    let theirs = ino(format!("/proc/{pid}/ns/{name}"));
    theirs.is_some() && theirs == ino(format!("/proc/self/ns/{name}"))
}

/// Whether this process is in the user namespace of `pid` already.
fn in_user_namespace_of(pid: i32) -> bool {
    same_namespace(pid, "user")
}

/// The namespaces among `flags` in which `pid` is not where this process is.
fn differing_namespaces(pid: i32, flags: CloneFlags) -> CloneFlags {
    [
        (CloneFlags::CLONE_NEWNS, "mnt"),
        (CloneFlags::CLONE_NEWNET, "net"),
        (CloneFlags::CLONE_NEWIPC, "ipc"),
        (CloneFlags::CLONE_NEWUTS, "uts"),
        (CloneFlags::CLONE_NEWCGROUP, "cgroup"),
    ]
    .into_iter()
    .filter(|(f, name)| flags.contains(*f) && !same_namespace(pid, name))
    .fold(CloneFlags::empty(), |acc, (f, _)| acc | f)
}
