//! The parent↔child channel used while a container is being created: a SOCK_SEQPACKET
//! socketpair carrying one-byte tags with optional payloads. Message boundaries are kept by the
//! socket, so no framing is needed. Blocking reads: no polling, no sleeping.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::sys::socket::{send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};

/// Parent → child: id maps written and the child placed in its cgroup; go on.
pub const GO: u8 = b'G';
/// Child → parent: "write my id maps now" (when the child created its user namespace itself).
pub const MAPS: u8 = b'M';
/// Parent → child: maps written.
pub const MAPS_DONE: u8 = b'm';
/// Child → parent: the container's init is this pid (after the extra fork for a pid namespace).
pub const PID: u8 = b'P';
/// Child → parent: mounts are ready; run prestart/createRuntime hooks before pivot_root.
pub const HOOKS: u8 = b'H';
/// Parent → child: those hooks ran; the payload is the state JSON for createContainer hooks.
pub const HOOKS_DONE: u8 = b'h';
/// Child → parent: the container is created and waits for start.
pub const READY: u8 = b'R';
/// Either way: an error message follows.
pub const ERROR: u8 = b'E';
/// `start` → init over start.sock: run the user's process.
pub const START: u8 = b'S';
/// Init → `start`: a seccomp notify fd is open in the init under this number; pass it on.
pub const NOTIFY_FD: u8 = b'N';
/// `start` → init: the seccomp agent has the fd.
pub const NOTIFY_DONE: u8 = b'n';

/// The name (/proc/PID/comm) a created init takes when a `start` has released it, until its
/// execve renames it: the container's status then reads "running", not "created", even if that
/// `start` is killed before it can tidy up (see `container::state`).
pub const RELEASED_NAME: &str = "berth:released";

/// Called by a created init when a `start` connected on `listener` has sent its message: no
/// other `start` can connect any more (ECONNREFUSED), and the init's name says it is released.
pub fn released(listener: &OwnedFd) {
    let _ = nix::sys::socket::shutdown(listener.as_raw_fd(), nix::sys::socket::Shutdown::Read);
    let name = std::ffi::CString::new(RELEASED_NAME).expect("no NUL");
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes, which outlives
    // the call.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr(), 0, 0, 0) };
}

pub struct Channel(pub OwnedFd);

pub fn pair() -> io::Result<(Channel, Channel)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    Ok((Channel(a), Channel(b)))
}

impl Channel {
    pub fn send(&self, tag: u8, payload: &[u8]) -> io::Result<()> {
        let mut buf = Vec::with_capacity(1 + payload.len());
        buf.push(tag);
        buf.extend_from_slice(payload);
        send(self.0.as_raw_fd(), &buf, MsgFlags::MSG_NOSIGNAL)?;
        Ok(())
    }

    pub fn send_error(&self, msg: &str) {
        let _ = self.send(ERROR, msg.as_bytes());
    }

    /// Receives one message; `None` at end of stream (the other side exited or closed).
    pub fn recv(&self) -> io::Result<Option<(u8, Vec<u8>)>> {
        loop {
            match recv_message(self.0.as_raw_fd()) {
                Ok(buf) if buf.is_empty() => return Ok(None),
                Ok(mut buf) => {
                    let tag = buf.remove(0);
                    return Ok(Some((tag, buf)));
                }
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Blocks until a message can be read (true) or the other side is gone without sending
    /// one (false); the message stays queued for `recv`.
    pub fn has_message(&self) -> bool {
        let mut byte = [0u8; 1];
        loop {
            match nix::sys::socket::recv(self.0.as_raw_fd(), &mut byte, MsgFlags::MSG_PEEK) {
                Ok(n) => return n > 0,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return false,
            }
        }
    }

    /// Receives and insists on `want`; an ERROR message or EOF becomes an error.
    pub fn expect(&self, want: u8) -> Result<Vec<u8>, String> {
        match self.recv() {
            Ok(Some((t, p))) if t == want => Ok(p),
            Ok(Some((ERROR, p))) => Err(String::from_utf8_lossy(&p).into_owned()),
            Ok(Some((t, _))) => Err(format!(
                "protocol error: expected {:?}, got {:?}",
                want as char, t as char
            )),
            Ok(None) => Err("the other side exited".into()),
            Err(e) => Err(format!("sync channel: {e}")),
        }
    }
}

impl AsFd for Channel {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// The largest message either side sends (a state JSON with many annotations fits).
const MAX_MESSAGE: usize = 64 * 1024;

/// One recv(2) into a buffer that is allocated but not zeroed: only the bytes the kernel writes
/// are touched (zeroing 64 KiB for a one-byte tag cost ~16 page faults per message, twice
/// over in a freshly forked child).
fn recv_message(fd: std::os::fd::RawFd) -> io::Result<Vec<u8>> {
    let mut buf: Vec<u8> = Vec::with_capacity(MAX_MESSAGE);
    // SAFETY: the kernel writes at most `capacity` bytes into the vector's spare capacity, and
    // the length is set to exactly what it reports having written.
    let n = unsafe {
        libc::recv(
            fd,
            buf.as_mut_ptr().cast::<libc::c_void>(),
            buf.capacity(),
            0,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: see above; 0 <= n <= capacity.
    unsafe { buf.set_len(n as usize) };
    Ok(buf)
}
