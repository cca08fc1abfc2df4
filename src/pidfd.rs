//! `--pidfd-socket PATH` (runc 1.2, on `create`, `run` and `exec`): a pidfd of the container's
//! init, or of the exec'd process, sent over the unix stream socket at PATH with SCM_RIGHTS.
//!
//! The message is runc's: one `sendmsg` whose data is the kind of process — `standard` for a
//! container's init, `setns` for an exec'd process — and whose one SCM_RIGHTS fd is the pidfd.
//! runc's init opens the pidfd of itself from inside the container; Berth opens it from the
//! host side (`pidfd_open` of the pid it forked, which cannot be reused while the process is
//! waiting on Berth), which is the same process and the same kind of fd.
//!
//! The socket is connected before any side effect, so a missing or refusing PATH is an error
//! that leaves nothing behind.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use crate::error::{Error, Result};

/// The message data for a container's init (runc's `initStandard`).
pub const STANDARD: &[u8] = b"standard";
/// The message data for an exec'd process (runc's `initSetns`).
pub const SETNS: &[u8] = b"setns";

/// Connects to the socket at `path` (a unix stream socket, as runc dials it).
pub fn connect(path: &Path) -> Result<OwnedFd> {
    crate::container::lifecycle::connect_unix(path)
        .map_err(|e| Error::sys(format!("--pidfd-socket {}", path.display()), e))
}

/// Sends a pidfd of `pid` over `sock`, with `kind` ([`STANDARD`] or [`SETNS`]) as the data.
pub fn send(sock: &OwnedFd, pid: i32, kind: &[u8]) -> Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let pidfd = crate::linux::sys::pidfd_open(pid)
        .map_err(|e| Error::sys(format!("--pidfd-socket: pidfd of process {pid}"), e))?;
    let fds = [pidfd.as_raw_fd()];
    let iov = [std::io::IoSlice::new(kind)];
    sendmsg::<()>(
        sock.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(|e| Error::sys("--pidfd-socket: send the pidfd", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{recvmsg, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
    use std::os::fd::FromRawFd;

    #[test]
    fn the_message_is_the_kind_with_one_pidfd_of_the_process() {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let me = std::process::id() as i32;
        send(&a, me, SETNS).unwrap();
        let mut buf = [0u8; 64];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 2]);
        let msg = recvmsg::<()>(
            b.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .unwrap();
        let mut fds = Vec::new();
        for c in msg.cmsgs().unwrap() {
            if let nix::sys::socket::ControlMessageOwned::ScmRights(f) = c {
                fds.extend(f);
            }
        }
        let n = msg.bytes;
        assert_eq!(&buf[..n], b"setns");
        assert_eq!(fds.len(), 1);
        // SAFETY: the fd was just received and is ours.
        let fd = unsafe { OwnedFd::from_raw_fd(fds[0]) };
        let info =
            std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).unwrap();
        assert!(info.lines().any(|l| l == format!("Pid:\t{me}")), "{info}");
    }

    #[test]
    fn a_missing_socket_is_one_line_naming_the_flag() {
        let e = connect(Path::new("/nonexistent/berth-pidfd.sock"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--pidfd-socket /nonexistent/berth-pidfd.sock: ") && !e.contains('\n'),
            "{e}"
        );
    }
}
