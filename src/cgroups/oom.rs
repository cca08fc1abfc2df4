//! [`OomWatch`]: notifications of the OOM killer acting in a container's cgroup, for `events`.

use std::io::{Read, Seek};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::poll::PollFlags;

use super::fs::{self, io};
use super::CgroupError;

/// OOM notifications: an eventfd registered on memory.oom_control (v1), or memory.events'
/// `oom_kill` counter with kernfs change notifications (v2).
pub enum OomWatch {
    V1 {
        efd: nix::sys::eventfd::EventFd,
        _oom_control: std::fs::File,
        dir: PathBuf,
    },
    V2 {
        events: std::fs::File,
        dir: PathBuf,
        last: u64,
    },
    None,
}

impl OomWatch {
    pub(super) fn v1(d: &Path) -> Result<OomWatch, CgroupError> {
        use nix::sys::eventfd::{EfdFlags, EventFd};
        let oom = std::fs::File::open(d.join("memory.oom_control"))
            .map_err(io("open memory.oom_control", d))?;
        let efd = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC)
            .map_err(|e| io("eventfd", d)(e.into()))?;
        let line = format!("{} {}", efd.as_raw_fd(), oom.as_raw_fd());
        fs::write(d, "cgroup.event_control", &line).map_err(io("register OOM notification", d))?;
        Ok(OomWatch::V1 {
            efd,
            _oom_control: oom,
            dir: d.to_path_buf(),
        })
    }

    pub(super) fn v2(d: &Path) -> Result<OomWatch, CgroupError> {
        let mut events =
            std::fs::File::open(d.join("memory.events")).map_err(io("open memory.events", d))?;
        let last = read_oom_kill(&mut events).map_err(io("read memory.events", d))?;
        Ok(OomWatch::V2 {
            events,
            dir: d.to_path_buf(),
            last,
        })
    }

    /// The fd to poll and the events to poll it for.
    pub fn poll_fd(&self) -> Option<(BorrowedFd<'_>, PollFlags)> {
        match self {
            OomWatch::V1 { efd, .. } => Some((efd.as_fd(), PollFlags::POLLIN)),
            OomWatch::V2 { events, .. } => Some((events.as_fd(), PollFlags::POLLPRI)),
            OomWatch::None => None,
        }
    }

    /// After the fd woke: the number of new OOM events, and whether the cgroup is gone.
    pub fn check(&mut self) -> (u64, bool) {
        match self {
            OomWatch::V1 { efd, dir, .. } => {
                let n = efd.read().unwrap_or(0);
                // The eventfd is also signalled when the cgroup is removed.
                if !dir.join("cgroup.event_control").exists() {
                    return (0, true);
                }
                (n, false)
            }
            OomWatch::V2 { events, dir, last } => match read_oom_kill(events) {
                Ok(v) => {
                    let n = v.saturating_sub(*last);
                    *last = v;
                    (n, false)
                }
                Err(_) => (0, !dir.exists()),
            },
            OomWatch::None => (0, false),
        }
    }
}

fn read_oom_kill(f: &mut std::fs::File) -> std::io::Result<u64> {
    let mut s = String::new();
    f.rewind()?;
    f.read_to_string(&mut s)?;
    Ok(fs::parse_kv(&s).get("oom_kill").copied().unwrap_or(0))
}
