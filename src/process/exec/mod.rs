//! `exec`: a new process inside a running container (the "tenant"). Kept apart from `init.rs`,
//! as runc keeps its init and setns paths apart, but ending in the same `exec_user_process`.
//!
//! One fork, no helper process, no re-exec:
//!
//!  host side (Berth)                          │ the forked child (becomes the user's program)
//!  ───────────────────────────────────────────┼───────────────────────────────────────────────
//!  pidfd of the init, checked against the     │
//!  stored start time; which namespaces differ │
//!  setns(pidfd, PID): only our *children* go  │
//!  into the container's pid namespace         │
//!  clone3 ─────────────────────────────────────▶ non-dumpable; joins the cgroup (host paths)
//!  setns back to our own pid namespace        │ setns(pidfd, mnt|net|ipc|uts|cgroup), user,
//!  waits: EOF = execve done; E = error        │ time; setsid; keyring; console; rlimits; LSM;
//!                                             │ identity, caps, NNP, cwd check, fds; execve
//!
//! Its host pid is clone3's return value, so nothing needs to be reported back on success: the
//! sync socket is close-on-exec, and end-of-stream on it means execve succeeded. A setup error
//! arrives on it as one line.
//!
//! The files: `process_spec` builds the process to run (from the container's config and the
//! command line, or from `--process`); `target` opens the container's init (pidfd, which
//! namespaces differ); `cgroup` decides where the process goes (`--cgroup`); `child` is the
//! forked child's sequence. This file holds the entry point and the parent side.

mod cgroup;
mod child;
mod process_spec;
mod target;

use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::{Process, Spec};

use super::sync;
use super::{init, sys, ProcessError};
use crate::container::{lifecycle, Container, StateError, Status};
use crate::error::{Error, Result};
use crate::linux::launcher;
use crate::linux::sys::{clone3_fork, Forked};

pub use cgroup::CgroupJoin;
pub use process_spec::{process_from_file, process_from_flags};
pub use target::Target;

use cgroup::cgroup_join;
use child::child_main;
use process_spec::inherit_from_container;
use target::open_path;

/// What `berth exec` was asked for, as the command line gives it.
#[derive(Debug, Default)]
pub struct ExecOptions {
    /// `--process FILE`: the whole process, as JSON (containerd, docker and conmon use this).
    pub process_file: Option<PathBuf>,
    /// The command and its arguments (ignored with `--process`, as runc does).
    pub args: Vec<String>,
    pub overrides: Overrides,
    pub console_socket: Option<PathBuf>,
    /// An already connected console socket (`exec` in the foreground relays the pty itself,
    /// as runc does); used when the process has a terminal and no --console-socket was given.
    pub console_fd: Option<OwnedFd>,
    /// Unix socket that receives a pidfd of the new process (SCM_RIGHTS), as runc sends it.
    pub pidfd_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: u32,
    /// `--cgroup [CONTROLLER[,CONTROLLER…]:]PATH`, repeatable.
    pub cgroup: Vec<String>,
    pub ignore_paused: bool,
    /// The signal mask the process gets (the caller's, before it blocked signals to forward
    /// them).
    pub sigmask: Option<SigSet>,
}

/// Command-line changes to the container's own process (without `--process`).
#[derive(Debug, Default)]
pub struct Overrides {
    pub cwd: Option<PathBuf>,
    pub env: Vec<String>,
    pub tty: bool,
    /// `uid[:gid]`
    pub user: Option<String>,
    pub additional_gids: Vec<u32>,
    pub caps: Vec<String>,
    pub no_new_privs: bool,
    pub apparmor: Option<String>,
    pub process_label: Option<String>,
}

/// Runs a new process in container `id` and returns its host pid once it has called execve
/// (or failed to: then the error names what went wrong).
pub fn exec(root: &Path, id: &str, opts: &ExecOptions) -> Result<i32> {
    let load = crate::trace::step("load");
    let c = Container::load(root, id)?;
    load.end();
    crate::fault::point("exec:loaded")?;
    match c.status() {
        Status::Stopped => return Err(wrong_state(&c, Status::Stopped, "")),
        Status::Paused if !opts.ignore_paused => {
            return Err(wrong_state(
                &c,
                Status::Paused,
                // runc's phrase last, for scripts that match it.
                " (resume it, or use --ignore-paused): cannot exec in a paused container",
            ));
        }
        _ => {}
    }
    let parse = crate::trace::step("config");
    let spec = lifecycle::load_spec(&c)?;
    let mut process = match (&opts.process_file, spec.process()) {
        (Some(path), container) => {
            if !opts.args.is_empty() {
                crate::logging::debug(
                    "exec: --process given: the command line's COMMAND is ignored",
                );
            }
            let mut p = process_from_file(path)?;
            if let Some(c) = container {
                inherit_from_container(&mut p, c);
            }
            p
        }
        (None, Some(base)) => process_from_flags(base.clone(), &opts.args, &opts.overrides)?,
        (None, None) => {
            return Err(Error::Usage(format!(
                "container {id:?} has no process in its config: use --process FILE"
            )))
        }
    };
    parse.end();
    // The container's seccomp filter applies to exec'd processes too: create's copy of it
    // (else compiled again before any side effect, usually straight from the cache).
    let seccomp = lifecycle::exec_seccomp(&c, &spec)?;
    let lsm = crate::linux::lsm::Enabled::detect_for(&process);
    // The Berth binary must stay out of the container's reach (see `selfprotect`); decided
    // before connecting to any socket, since it may mean re-executing Berth. A process given
    // capabilities beyond the config's bounding set is remembered: it could reach later ones.
    if process_reaches_beyond(&spec, &process) {
        c.write_file(PRIVILEGED_EXEC, b"")?;
    }
    let earlier_privileged = c.read_file(PRIVILEGED_EXEC).is_ok();
    let launcher = crate::trace::span("protect", || {
        lifecycle::protect(
            &spec,
            Some(&process),
            seccomp.as_ref(),
            lsm,
            earlier_privileged,
        )
    })?;
    let terminal = process.terminal() == Some(true);
    if terminal && opts.console_socket.is_none() && opts.console_fd.is_some() {
        // Relayed by Berth: the pty starts with the size of Berth's terminal. (The relay also
        // sets it, as runc does, but only once the process runs, which it may already have
        // asked for its size.)
        if let Some(size) = crate::linux::console::host_size() {
            process.set_console_size(Some(size));
        }
    }
    let console_socket = match (&opts.console_socket, &opts.console_fd, terminal) {
        (Some(p), _, true) => Some(
            lifecycle::connect_unix(p)
                .map_err(|e| Error::sys(format!("--console-socket {}", p.display()), e))?,
        ),
        (None, Some(fd), true) => Some(
            fd.try_clone()
                .map_err(|e| Error::sys("console socket", e))?,
        ),
        (None, None, true) => {
            // Only a detached exec has neither: nobody would be left to relay the pty.
            return Err(Error::Usage(
                "process.terminal is true (--tty): cannot allocate tty if berth will detach \
                 without setting --console-socket"
                    .into(),
            ));
        }
        _ => None,
    };
    let pidfd_socket = opts
        .pidfd_socket
        .as_deref()
        .map(crate::pidfd::connect)
        .transpose()?;
    let preserve_fds = opts.preserve_fds + lifecycle::listen_fds();
    check_preserved_fds(preserve_fds)?;
    let cgroup = match c.state.as_ref().and_then(|st| st.cgroup.as_ref()) {
        Some(rec) => Some(cgroup_join(rec, &opts.cgroup)?),
        None if !opts.cgroup.is_empty() => {
            return Err(Error::Usage(format!(
                "--cgroup: container {id:?} has no cgroup to join"
            )))
        }
        None => None,
    };
    let notify = match (&seccomp, &c.state) {
        (Some(sc), Some(st)) if sc.uses_notify() => Some((&spec, st.clone())),
        _ => None,
    };
    let target = Target::open(&c)?;
    crate::logging::debug_with(|| {
        let paths = c
            .state
            .as_ref()
            .and_then(|s| s.cgroup.as_ref())
            .map(|r| &r.paths);
        format!(
            "exec {id}: state directory {}, cgroup {paths:?}, --cgroup {:?}",
            c.dir.display(),
            opts.cgroup
        )
    });
    // The lock is not held while the process starts: it may be frozen in a paused container
    // (--ignore-paused) until `resume`, which needs the lock.
    drop(c);
    let sigmask = match opts.sigmask {
        Some(m) => m,
        None => current_sigmask()?,
    };
    let cfg = ExecConfig {
        container_id: id,
        process: &process,
        seccomp,
        preserve_fds,
        console_socket,
        cgroup,
        sigmask,
        lsm,
        launcher,
        notify,
    };
    // Inherited by the process forked below (linux.memoryPolicy applies to exec'd ones too).
    crate::linux::mempolicy::apply(
        spec.linux()
            .as_ref()
            .and_then(|l| l.memory_policy().as_ref()),
    )
    .map_err(crate::process::ProcessError::Init)?;
    // Until the process has called execve (or failed to).
    let pid = crate::trace::span("exec", || spawn(&cfg, &target))?;
    crate::logging::debug_with(|| {
        format!("exec {id}: process {pid} started: {:?}", process.args())
    });
    // The process runs: an exec that reports an error must not leave it running (as runc,
    // which terminates it), whether its pidfd or its pid file could not be handed over.
    let handed_over = (|| -> Result<()> {
        crate::fault::point("exec:spawned")?;
        if let Some(sock) = &pidfd_socket {
            crate::pidfd::send(sock, pid, crate::pidfd::SETNS)?;
        }
        if let Some(pf) = &opts.pid_file {
            lifecycle::write_pid_file(pf, pid)?;
            crate::fault::point("exec:pid-file-written")?;
        }
        Ok(())
    })();
    if let Err(e) = handed_over {
        kill_and_reap(pid);
        return Err(e);
    }
    Ok(pid)
}

/// The state-directory file that records an `exec` of a process with capabilities (those
/// `selfprotect::reaches`) beyond the container's bounding set.
const PRIVILEGED_EXEC: &str = "privileged-exec";

/// Whether `process` holds a capability that reaches other processes' memory and files which
/// the container's bounding set does not grant.
fn process_reaches_beyond(spec: &Spec, process: &Process) -> bool {
    let bounding = spec
        .process()
        .as_ref()
        .and_then(|p| p.capabilities().as_ref())
        .and_then(|c| c.bounding().clone())
        .unwrap_or_default();
    let Some(c) = process.capabilities() else {
        // No capabilities object: the process keeps every capability Berth has.
        return true;
    };
    [
        c.bounding(),
        c.effective(),
        c.permitted(),
        c.inheritable(),
        c.ambient(),
    ]
    .into_iter()
    .flatten()
    .flatten()
    .any(|cap| crate::selfprotect::reaches(cap) && !bounding.contains(cap))
}

fn wrong_state(c: &Container, status: Status, hint: &'static str) -> Error {
    StateError::WrongState {
        id: c.id.clone(),
        status,
        op: "exec into",
        hint,
    }
    .into()
}

fn current_sigmask() -> Result<SigSet> {
    let mut old = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_BLOCK, None, Some(&mut old))
        .map_err(|e| Error::sys("read signal mask", e))?;
    Ok(old)
}

/// Fds 3..3+n must be fds our caller handed us (open, not close-on-exec): otherwise one of
/// Berth's own fds could sit there and be passed into the container.
fn check_preserved_fds(n: u32) -> Result<()> {
    for fd in 3..3 + n as RawFd {
        // SAFETY: F_GETFD only reads the flags of an fd number; no memory is involved.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if flags < 0 {
            return Err(Error::Usage(format!(
                "--preserve-fds {n}: fd {fd} is not open"
            )));
        }
        if flags & libc::FD_CLOEXEC != 0 {
            return Err(Error::Usage(format!(
                "--preserve-fds {n}: fd {fd} was not passed to berth (it is close-on-exec)"
            )));
        }
    }
    Ok(())
}

// ───────────────────────────── spawning ─────────────────────────────

/// Everything the child needs; shared with it by fork.
struct ExecConfig<'a> {
    container_id: &'a str,
    process: &'a Process,
    seccomp: Option<berth_seccomp::Compiled>,
    preserve_fds: u32,
    console_socket: Option<OwnedFd>,
    cgroup: Option<CgroupJoin>,
    sigmask: SigSet,
    lsm: crate::linux::lsm::Enabled,
    /// The final exec goes through the launcher (see `selfprotect`).
    launcher: bool,
    /// For SCMP_ACT_NOTIFY: the container's config and state, to hand the notify fd to the
    /// seccomp agent.
    notify: Option<(&'a Spec, crate::container::StoredState)>,
}

/// Forks the process into the container and waits until it has called execve. Returns its
/// host pid. On a setup error the child has exited and is reaped before returning.
fn spawn(cfg: &ExecConfig, t: &Target) -> Result<i32> {
    let (ours, theirs) = sync::pair().map_err(sys("socketpair"))?;
    // Born in the container's unified cgroup and joining the v1 ones itself, where the driver
    // offers it (see `cgroups::Entry`); else the child adds itself the old way.
    let entry = cfg.cgroup.as_ref().and_then(|c| c.manager.entry());
    let cgroup_fd = entry.as_ref().and_then(|e| e.clone_into_fd());
    // setns(PID) changes the pid namespace of our children only: the fork below is born in the
    // container's, and we step back at once.
    let own_pidns = if t.join_pid {
        let own = open_path("/proc/self/ns/pid", false)?;
        let mut joined_user = false;
        setns(&t.pidfd, CloneFlags::CLONE_NEWPID)
            .or_else(|e| match e {
                // Rootless: an unprivileged caller has the capabilities a pid namespace asks for
                // only inside the container's user namespace (its own). Entered for good: it
                // holds no privilege on the host to lose, and stays in the host's pid namespace.
                nix::errno::Errno::EPERM if t.join_user => {
                    setns(&t.pidfd, CloneFlags::CLONE_NEWUSER)?;
                    joined_user = true;
                    setns(&t.pidfd, CloneFlags::CLONE_NEWPID)
                }
                e => Err(e),
            })
            .map_err(|e| match e {
                // The init exited since its pidfd was taken (a racing kill or delete).
                nix::errno::Errno::ESRCH => target::stopped_error(&t.id),
                e => Error::sys("join the container's pid namespace", e),
            })?;
        // Back in our own pid namespace needs privileges there, which a rootless caller lacks.
        (!joined_user).then_some(own)
    } else {
        None
    };
    crate::linux::capabilities::prime();
    // Non-dumpable before the fork, so the child is never, even for an instant, an open
    // /proc/<pid>/exe to container processes (see `selfprotect`).
    init::set_dumpable(false).map_err(|e| Error::Usage(format!("exec: {e}")))?;
    let forked = clone3_fork(0, cgroup_fd);
    if !matches!(forked, Ok(Forked::Child)) {
        if let Some(own) = &own_pidns {
            if let Err(e) = setns(own, CloneFlags::CLONE_NEWPID) {
                crate::logging::warn(format!("return to berth's own pid namespace: {e}"));
            }
        }
    }
    let child = match forked {
        Ok(Forked::Child) => {
            crate::trace::forked();
            drop(ours);
            child_main(cfg, t, theirs, entry.as_ref())
        }
        Ok(Forked::Parent(pid)) => pid,
        Err(e) if e.raw_os_error() == Some(libc::ENOMEM) && t.join_pid => {
            return Err(ProcessError::Init(format!(
                "container {:?} is stopping: its pid namespace has no init any more",
                cfg.container_id
            ))
            .into())
        }
        Err(e) => return Err(Error::sys("clone3", e)),
    };
    drop(theirs);
    let reply = loop {
        let (num, fd, spec, st) = match (ours.recv_with_fd(), &cfg.notify) {
            (Ok(Some((sync::NOTIFY_FD, num, fd))), Some((spec, st))) => (num, fd, spec, st),
            (other, _) => break other.map(|m| m.map(|(t, p, _)| (t, p))),
        };
        // As runc: the process state names the exec'd process; its `state` is the
        // container's, running.
        let handed = sync::take_notify_fd(child, &num, fd)
            .map_err(|e| Error::sys("take the seccomp notify fd from the exec'd process", e))
            .and_then(|(fd, reply)| {
                lifecycle::pass_notify_fd(spec, st, Status::Running, child, fd.as_fd())?;
                if reply {
                    ours.send(sync::NOTIFY_DONE, &[])
                        .map_err(|e| Error::sys("release the exec'd process", e))?;
                }
                Ok(())
            });
        if let Err(e) = handed {
            kill_and_reap(child);
            return Err(e);
        }
    };
    match reply {
        // End of stream: the socket was closed by execve (close-on-exec).
        Ok(None) => Ok(child),
        Ok(Some((sync::ERROR, msg))) => {
            let _ = waitpid(Pid::from_raw(child), None);
            Err(ProcessError::Init(String::from_utf8_lossy(&msg).into_owned()).into())
        }
        Ok(Some((launcher::FAILED, msg))) => {
            let _ = waitpid(Pid::from_raw(child), None);
            Err(lifecycle::launch_failed(&msg).into())
        }
        Ok(Some((t, _))) => {
            kill_and_reap(child);
            Err(ProcessError::Init(format!(
                "protocol error: unexpected message {:?} from the exec'd process",
                t as char
            ))
            .into())
        }
        Err(e) => {
            kill_and_reap(child);
            Err(Error::sys("read from the exec'd process", e))
        }
    }
}

fn kill_and_reap(pid: i32) {
    let _ = nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    let _ = waitpid(Pid::from_raw(pid), None);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn preserved_fds_must_be_inherited_ones() {
        // Every fd this test process opened itself is close-on-exec (std's default).
        let f = std::fs::File::open("/proc/self/stat").unwrap();
        let fd = f.as_raw_fd();
        assert!(check_preserved_fds((fd - 2) as u32).is_err());
        assert!(check_preserved_fds(0).is_ok());
    }
}
