//! How a process about to be forked (create's init, exec's process) enters the container's
//! cgroup by itself, so that its parent never writes its pid into a `cgroup.procs` file.
//!
//! Why: writing a pid to `cgroup.procs` (v1 or v2) takes the kernel's global write lock on
//! every thread group (`cgroup_threadgroup_rwsem`), and the first taking of that lock after a
//! quiet moment waits for an RCU grace period: 5–30 ms of a `create` on this kind of host,
//! far more than the rest of it (bench/README.md, issue 17 §1). Two ways skip the lock:
//!
//! - the unified (v2) hierarchy: the child is born in its cgroup, clone3(CLONE_INTO_CGROUP)
//!   with an O_PATH fd of the directory (kernel ≥ 5.7; the fork takes the lock for reading);
//! - each v1 hierarchy: the child writes `0` ("the calling thread") to the directory's `tasks`
//!   file itself, first thing after the fork. The kernel moves one thread without the global
//!   lock when it is the writer's own (cgroup_procs_write_start: neither a pid nor the whole
//!   thread group); the forked child is single-threaded, so that thread is the whole process
//!   and the move is the one `cgroup.procs` makes. The files are opened by the parent, before
//!   the fork: the kernel checks the opener's credentials at write time, so the child may be
//!   in a new user namespace already, and it needs no path on the host.
//!
//! Where either is unavailable (an old kernel, a file the caller may not open), the driver
//! offers no entry and the parent's `Manager::add` places the child as before.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

/// The child's way into its cgroup, prepared by the parent.
#[derive(Debug, Default)]
pub struct Entry {
    /// The unified hierarchy's directory (O_PATH), for clone3(CLONE_INTO_CGROUP).
    clone_into: Option<OwnedFd>,
    /// Each v1 hierarchy's `tasks` file (opened as `fs::write` does: write-only, never created,
    /// close-on-exec), with its path for errors.
    tasks: Vec<(OwnedFd, PathBuf)>,
}

impl Entry {
    /// Opens what the child needs: `unified` (the container's v2 directory, if it has one)
    /// and the `tasks` file of each v1 directory. None if any of it cannot be opened or the
    /// kernel cannot clone into a cgroup: the parent adds the child then.
    pub fn open(
        unified: Option<&Path>,
        v1_dirs: &[&Path],
        clone_into_cgroup: impl FnOnce() -> bool,
    ) -> Option<Entry> {
        let clone_into = match unified {
            Some(u) if clone_into_cgroup() => Some(open_dir_path(u)?),
            Some(_) => return None,
            None => None,
        };
        let tasks = v1_dirs
            .iter()
            .map(|d| {
                let f = super::fs::open_for_writes(d, "tasks").ok()?;
                Some((OwnedFd::from(f), d.join("tasks")))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Entry { clone_into, tasks })
    }

    /// The fd for clone3(CLONE_INTO_CGROUP), if the container has a unified directory.
    pub fn clone_into_fd(&self) -> Option<RawFd> {
        self.clone_into.as_ref().map(|f| f.as_raw_fd())
    }

    /// Every fd this entry holds: the forked child closes its copies once it has joined.
    pub fn fds(&self) -> impl Iterator<Item = RawFd> + '_ {
        self.clone_into
            .iter()
            .map(|f| f.as_raw_fd())
            .chain(self.tasks.iter().map(|(f, _)| f.as_raw_fd()))
    }

    /// In the forked, single-threaded child: moves it into the v1 cgroups (the unified one it
    /// was born in). An error names the file.
    pub fn join(&self) -> Result<(), String> {
        for (fd, path) in &self.tasks {
            nix::unistd::write(fd, b"0").map_err(|e| {
                format!(
                    "join the container's cgroup: write 0 to {}: {}",
                    path.display(),
                    std::io::Error::from(e)
                )
            })?;
        }
        Ok(())
    }
}

/// An O_PATH fd of the directory `path` (std adds O_CLOEXEC).
fn open_dir_path(path: &Path) -> Option<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(path)
        .ok()
        .map(OwnedFd::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_to_open_means_no_entry() {
        let d = tempfile::tempdir().unwrap();
        // A v1 directory without a `tasks` file: the parent adds the child.
        assert!(Entry::open(None, &[d.path()], || true).is_none());
        // A unified directory on a kernel without CLONE_INTO_CGROUP: the same.
        assert!(Entry::open(Some(d.path()), &[], || false).is_none());
        std::fs::write(d.path().join("tasks"), "").unwrap();
        let e = Entry::open(Some(d.path()), &[d.path()], || true).unwrap();
        assert!(e.clone_into_fd().is_some());
        assert_eq!(e.fds().count(), 2);
        for fd in e.fds() {
            let flags = nix::fcntl::fcntl(
                unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
                nix::fcntl::FcntlArg::F_GETFD,
            )
            .unwrap();
            assert_ne!(flags & libc::FD_CLOEXEC, 0, "close-on-exec");
        }
    }

    /// On a host with a v1 pids hierarchy, as root: a forked child joins by writing "0".
    #[test]
    fn a_forked_child_joins_a_v1_cgroup_itself() {
        let h = Path::new("/sys/fs/cgroup/pids");
        if !nix::unistd::geteuid().is_root() || !h.join("tasks").exists() {
            println!("SKIP: needs root and a cgroup v1 pids hierarchy");
            return;
        }
        let dir = h.join(format!("berth-unit-entry-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        let e = Entry::open(None, &[dir.as_path()], || true).unwrap();
        let pid = match crate::linux::sys::clone3_fork(0, None).unwrap() {
            // This forked child of a threaded test process must not allocate: `join` writes
            // a static "0" (and formats only on an error, after which the child exits).
            crate::linux::sys::Forked::Child => {
                if e.join().is_err() {
                    crate::linux::sys::exit_now(1)
                }
                loop {
                    nix::unistd::pause();
                }
            }
            crate::linux::sys::Forked::Parent(pid) => pid,
        };
        let want = format!(":pids:/{}\n", dir.file_name().unwrap().to_string_lossy());
        let mut joined = false;
        for _ in 0..200 {
            let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            if own.contains(&want) {
                joined = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let listed = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        let _ = std::fs::remove_dir(&dir);
        assert!(joined, "the child's /proc/PID/cgroup names {want:?}");
        assert_eq!(listed.trim(), pid.to_string(), "the whole process moved");
    }
}
