//! `kill --all` and `ps` of a container that has no cgroup (rootless, see `cgroup.rs`): its
//! processes are those of its init's pid namespace when that namespace is its own; when the
//! container shares Berth's pid namespace there is no way to tell them apart, and only the init
//! is signalled (and listed). Without a freezer a process forking at that moment can escape the signal (runc
//! has the same limit without a cgroup); SIGKILL to the init of a pid namespace takes every
//! process of it with it anyway.
//!
//! runc 1.1.5 differs here on purpose: without a cgroup its `kill --all` and `ps` fail ("lstat
//! : no such file or directory"), and engines call `kill --all` (podman on stop and cleanup), so
//! Berth signals (and lists) what it can find instead.

use std::os::fd::{AsRawFd, OwnedFd};

use crate::linux::sys::{pidfd_open, pidfd_send_signal};

/// The pid namespace of `pid` (the target of /proc/PID/ns/pid).
fn pid_ns(pid: &str) -> Option<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok()
}

/// The processes of a container without a cgroup, each pinned by a pidfd: its init `pid` (if
/// it is still the process started at `start_time`) first, then every other process of the
/// init's pid namespace when that is not Berth's own.
fn pinned(pid: i32, start_time: u64) -> std::io::Result<Vec<(i32, OwnedFd)>> {
    let init = match pidfd_open(pid) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(vec![]),
        Err(e) => return Err(e),
    };
    // The pidfd pins the process: check it is still the container's.
    if crate::container::proc_stat(pid).map(|s| s.0) != Some(start_time) {
        return Ok(vec![]);
    }
    let ns = pid_ns(&pid.to_string());
    let mut out = vec![(pid, init)];
    if ns.is_some() && ns != pid_ns("self") {
        for e in std::fs::read_dir("/proc")?.flatten() {
            let name = e.file_name();
            let Some(p) = name.to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            if p == pid {
                continue;
            }
            // Open first, then check: the pidfd keeps the pid from naming another process.
            let Ok(fd) = pidfd_open(p) else { continue };
            if pid_ns(&p.to_string()) == ns {
                out.push((p, fd));
            }
        }
    }
    Ok(out)
}

/// Sends `sig` to the processes of a container without a cgroup (see [`pinned`]), the init
/// last. Returns how many were signalled.
pub fn signal_pid_namespace(pid: i32, start_time: u64, sig: i32) -> std::io::Result<usize> {
    let mut sent = 0;
    for (p, fd) in pinned(pid, start_time)?.iter().rev() {
        match pidfd_send_signal(fd.as_raw_fd(), sig) {
            Ok(()) => sent += 1,
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
            // Only the init's refusal is the command's error; another process may be exiting.
            Err(e) if *p == pid => return Err(e),
            Err(_) => {}
        }
    }
    Ok(sent)
}

/// The pids of a container without a cgroup (for `ps`), sorted.
pub fn pid_namespace_pids(pid: i32, start_time: u64) -> std::io::Result<Vec<i32>> {
    let mut pids: Vec<i32> = pinned(pid, start_time)?
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    pids.sort_unstable();
    Ok(pids)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_process_that_is_gone_or_not_the_recorded_one_is_left_alone() {
        // Our own pid with a start time that is not ours: nothing is signalled.
        let me = std::process::id() as i32;
        assert_eq!(super::signal_pid_namespace(me, 1, 0).unwrap(), 0);
        // Signal 0 to ourselves (shared pid namespace: only the "init" itself).
        let start = crate::container::proc_stat(me).unwrap().0;
        assert_eq!(super::signal_pid_namespace(me, start, 0).unwrap(), 1);
        assert_eq!(super::pid_namespace_pids(me, start).unwrap(), vec![me]);
        assert!(super::pid_namespace_pids(me, 1).unwrap().is_empty());
    }
}
