//! The target container's init: pinned by a pidfd checked against the stored state, and which
//! of its namespaces (user, mount, pid, time) differ from ours, so the child knows what to join.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use crate::container::{Container, StateError, Status, StoredState};
use crate::error::{Error, Result};

/// The container's init, pinned by a pidfd, and which of its namespaces differ from ours.
pub struct Target {
    pub(super) pid: i32,
    pub(super) pidfd: OwnedFd,
    pub(super) join_user: bool,
    pub(super) join_mount: bool,
    pub(super) join_pid: bool,
    /// The init's time namespace for children (what its program runs in once started), when it
    /// differs from ours.
    pub(super) time: Option<OwnedFd>,
    /// The init's root, when it has no mount namespace of its own (it chrooted instead).
    pub(super) root: Option<OwnedFd>,
    /// The container's id, for the error when its init exits while the exec joins it.
    pub(super) id: String,
}

/// A container whose init is gone (or goes while an exec joins it): runc's "cannot exec in a
/// stopped container" wording through StateError.
pub(super) fn stopped_error(id: &str) -> Error {
    StateError::WrongState {
        id: id.to_string(),
        status: Status::Stopped,
        op: "exec into",
        hint: "",
    }
    .into()
}

impl Target {
    /// Opens the init of container `c`. The pidfd is checked against the stored start time,
    /// so a recycled pid is never joined; the few /proc files read by pid are re-checked
    /// against the pidfd afterwards.
    pub fn open(c: &Container) -> Result<Target> {
        let st: &StoredState = c.state.as_ref().ok_or_else(|| {
            Error::from(StateError::WrongState {
                id: c.id.clone(),
                status: Status::Stopped,
                op: "exec into",
                hint: "",
            })
        })?;
        let stopped = || stopped_error(&st.id);
        let pidfd = match crate::linux::sys::pidfd_open(st.pid) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Err(stopped()),
            Err(e) => return Err(Error::sys("pidfd_open of the container's init", e)),
        };
        // The pidfd was taken first: if the pid still names the recorded init now, the pidfd
        // is that init.
        if c.live_pid() != Some(st.pid) {
            return Err(stopped());
        }
        let differs = |ours: &str, theirs: &str| -> Result<bool> {
            let a = std::fs::metadata(format!("/proc/self/ns/{ours}"));
            let b = std::fs::metadata(format!("/proc/{}/ns/{theirs}", st.pid));
            match (a, b) {
                (Ok(a), Ok(b)) => Ok(a.dev() != b.dev() || a.ino() != b.ino()),
                // A namespace type this kernel does not have: nothing to join.
                (Err(e), _) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                (_, Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Err(stopped()),
                (Err(e), _) | (_, Err(e)) => Err(Error::sys(format!("stat namespace {ours}"), e)),
            }
        };
        let join_user = differs("user", "user")?;
        let join_mount = differs("mnt", "mnt")?;
        let join_pid = differs("pid", "pid")?;
        let time = if differs("time", "time_for_children")? {
            Some(open_path(
                &format!("/proc/{}/ns/time_for_children", st.pid),
                false,
            )?)
        } else {
            None
        };
        let root = if join_mount {
            None
        } else {
            Some(open_path(&format!("/proc/{}/root", st.pid), true)?)
        };
        // Everything read by pid above belongs to the init only if it is still alive now.
        if pidfd_exited(&pidfd) {
            return Err(stopped());
        }
        Ok(Target {
            id: st.id.clone(),
            pid: st.pid,
            pidfd,
            join_user,
            join_mount,
            join_pid,
            time,
            root,
        })
    }
}

pub(super) fn open_path(path: &str, dir: bool) -> Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut flags = libc::O_CLOEXEC;
    if dir {
        flags |= libc::O_DIRECTORY | libc::O_PATH;
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(|e| Error::sys(format!("open {path}"), e))?;
    Ok(f.into())
}

/// A pidfd becomes readable when its process exits.
fn pidfd_exited(pidfd: &OwnedFd) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
}
