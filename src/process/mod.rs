//! The container's init process: the parent side (`spawn`: clone3, id maps, cgroup, hooks, the
//! sync channel) and the child's setup sequence (`init`), which ends in execve of the user's
//! program. Berth never re-executes itself: the child is a fork of this very process.

pub mod exec;
pub mod init;
pub mod sync;

use std::os::fd::{OwnedFd, RawFd};
use std::path::Path;

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::Spec;
use thiserror::Error;

use crate::linux::namespaces::NsPlan;
use crate::linux::sys::{clone3_fork, Forked};

#[derive(Debug, Error)]
pub enum ProcessError {
    #[error("{what}: {source}")]
    Sys {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The container's init reported an error during its setup.
    #[error("{0}")]
    Init(String),
    #[error(transparent)]
    Seccomp(#[from] berth_seccomp::SeccompError),
}

pub fn sys(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ProcessError {
    let what = what.into();
    move |source| ProcessError::Sys { what, source }
}

/// Everything the child needs; it is shared with the child by fork, never serialised.
pub struct InitConfig<'a> {
    pub id: &'a str,
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    /// The bundle directory (relative bind-mount sources are relative to it).
    pub bundle: &'a Path,
    pub ns: NsPlan,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    /// Count of fds after stdio passed to the container (--preserve-fds plus $LISTEN_FDS).
    pub preserve_fds: u32,
    /// A connected --console-socket, when process.terminal is set.
    pub console_socket: Option<OwnedFd>,
    /// How the init waits for `start`.
    pub start: StartWait,
    /// Fds of the parent that the child must close at once (e.g. the container lock).
    pub close_in_child: Vec<RawFd>,
    /// How the init enters its cgroup by itself (born in the unified one, joins the v1 ones
    /// first thing); None: the parent adds it (`Parent::placed`).
    pub cgroup_entry: Option<&'a crate::cgroups::Entry>,
    /// The seccomp filter, compiled (or read from the cache) before any side effect.
    pub seccomp: Option<berth_seccomp::Compiled>,
    /// Which LSMs the host has enabled (for process.apparmorProfile / selinuxLabel).
    pub lsm: crate::linux::lsm::Enabled,
    /// The final exec goes through the launcher (see `selfprotect`).
    pub launcher: bool,
    /// Whether the parent has createRuntime/prestart hooks to run (a round trip is needed).
    pub parent_hooks: bool,
}

/// Where the created init waits for `start`.
pub enum StartWait {
    /// start.sock in the state directory, listening (`create`: another `berth start` connects).
    Listener(OwnedFd),
    /// One end of a socketpair whose other end the creating process keeps (`run` starts the
    /// container itself: no socket file is made).
    Connected(OwnedFd),
}

/// The parent's callbacks while the child sets up.
pub trait Parent {
    /// Called with the child's pid right after clone, before it is released: write id maps,
    /// place it in its cgroup.
    fn placed(&mut self, pid: i32, write_maps: bool) -> Result<(), crate::error::Error>;
    /// Called when the child asks for its id maps (it made its user namespace itself).
    fn write_maps(&mut self, pid: i32) -> Result<(), crate::error::Error>;
    /// prestart + createRuntime hooks (the child waits, before pivot_root). Returns the state
    /// JSON they were given, which the child passes on to its createContainer hooks.
    fn run_hooks(&mut self, pid: i32) -> Result<Vec<u8>, crate::error::Error>;
    /// The init loaded a seccomp filter with SCMP_ACT_NOTIFY: hand its listener fd to the
    /// agent (during `create`, as runc does).
    fn seccomp_listener(&mut self, pid: i32, fd: OwnedFd) -> Result<(), crate::error::Error>;
}

/// Clones the container's init, drives its setup to READY, and returns its host pid. On any
/// error the child is killed and reaped before returning, so no process is left behind.
pub fn spawn(cfg: &InitConfig, parent: &mut dyn Parent) -> Result<i32, crate::error::Error> {
    // Id-mapped mounts, and the bind sources of a container with a user namespace, need the
    // host's user namespace: their trees are made before the fork (see
    // linux::mounts::prepared); this process's copies close when spawn returns.
    let _prepared = crate::trace::span("mounts-prepared", || {
        crate::linux::mounts::prepared::prepare(cfg.spec, cfg.bundle)
    })
    .map_err(|e| ProcessError::Init(e.to_string()))?;
    let (ours, theirs) = sync::pair().map_err(sys("socketpair"))?;
    crate::linux::capabilities::prime();
    // Non-dumpable before the fork: the child never is, even for an instant, an open
    // /proc/<pid>/exe to processes that can see it (see `selfprotect`). Unless its id maps are
    // written without privileges (its /proc files must be the caller's then): it turns
    // non-dumpable itself once they are, before it enters anything of the container's.
    let maps_need_dumpable = cfg.ns.new_user
        && crate::rootless::idmap::needs_dumpable_child(
            crate::rootless::idmap::plan(cfg.spec)?.as_ref(),
        );
    if !maps_need_dumpable {
        init::set_dumpable(false).map_err(crate::error::Error::Usage)?;
    }
    let flags = cfg.ns.clone_flags.bits() as u64;
    let mut clone = crate::trace::step("clone");
    clone.detail(|| crate::linux::namespaces::names(cfg.ns.clone_flags));
    let cgroup_fd = cfg.cgroup_entry.and_then(|e| e.clone_into_fd());
    let forked = clone3_fork(flags, cgroup_fd).map_err(sys("clone3"))?;
    let child = match forked {
        Forked::Child => {
            // The parent logs the clone.
            std::mem::forget(clone);
            crate::trace::forked();
            drop(ours);
            init::run(cfg, theirs)
        }
        Forked::Parent(pid) => pid,
    };
    clone.end();
    drop(theirs);
    let mut init_pid = child;
    let result = drive(cfg, &ours, child, &mut init_pid, parent);
    if let Err(e) = result {
        for p in [init_pid, child] {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
        let _ = waitpid(Pid::from_raw(child), None);
        return Err(e);
    }
    Ok(init_pid)
}

fn drive(
    cfg: &InitConfig,
    ch: &sync::Channel,
    child: i32,
    init_pid: &mut i32,
    parent: &mut dyn Parent,
) -> Result<(), crate::error::Error> {
    let init_err = |m: String| crate::error::Error::from(ProcessError::Init(m));
    parent.placed(child, cfg.ns.new_user && !cfg.ns.maps_after_unshare())?;
    ch.send(sync::GO, &[])
        .map_err(sys("release container init"))?;
    loop {
        // Each wait for the init's next message (its own steps are in its lines): steps do
        // not nest, so each process's lines come in the order of their offsets.
        let msg = crate::trace::span("init-wait", || ch.recv_with_fd());
        match msg.map_err(sys("read from container init"))? {
            None => {
                return Err(init_err(
                    "container init exited during setup without a message".into(),
                ))
            }
            Some((sync::READY, _, _)) => return Ok(()),
            Some((sync::ERROR, msg, _)) => {
                return Err(init_err(String::from_utf8_lossy(&msg).into_owned()))
            }
            Some((sync::MAPS, _, _)) => {
                parent.write_maps(child)?;
                ch.send(sync::MAPS_DONE, &[]).map_err(sys("sync"))?;
            }
            Some((sync::PID, p, _)) => {
                let bytes: [u8; 4] = p
                    .as_slice()
                    .try_into()
                    .map_err(|_| init_err("bad pid message".into()))?;
                *init_pid = i32::from_ne_bytes(bytes);
                // The intermediate process exits once it has forked the init; reap it.
                let _ = waitpid(Pid::from_raw(child), None);
            }
            Some((sync::HOOKS, _, _)) => {
                let state = parent.run_hooks(*init_pid)?;
                ch.send(sync::HOOKS_DONE, &state).map_err(sys("sync"))?;
            }
            Some((sync::NOTIFY_FD, num, fd)) => {
                let (fd, reply) = sync::take_notify_fd(*init_pid, &num, fd)
                    .map_err(sys("take the seccomp notify fd from the init"))?;
                parent.seccomp_listener(*init_pid, fd)?;
                if reply {
                    ch.send(sync::NOTIFY_DONE, &[]).map_err(sys("sync"))?;
                }
            }
            Some((t, _, _)) => {
                return Err(init_err(format!(
                    "protocol error: unexpected message {:?}",
                    t as char
                )))
            }
        }
    }
}

/// Writes `linux.uidMappings` / `gidMappings` for `pid`: directly, or through
/// newuidmap/newgidmap for an unprivileged caller (see `rootless::idmap`). Validation checked
/// what the kernel takes (ranges, overlaps, count), so a failure here names the field and the
/// kernel's reason.
pub fn write_id_maps(spec: &Spec, pid: i32) -> Result<(), crate::error::Error> {
    if let Some(plan) = crate::rootless::idmap::plan(spec)? {
        crate::rootless::idmap::write(spec, &plan, pid)?;
    }
    Ok(())
}
