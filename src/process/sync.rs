//! The parent↔child channel used while a container is being created: a SOCK_SEQPACKET
//! socketpair carrying one-byte tags with optional payloads. Message boundaries are kept by the
//! socket, so no framing is needed. Blocking reads: no polling, no sleeping.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::sys::socket::{
    recvmsg, send, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned,
    MsgFlags, SockFlag, SockType,
};

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
/// Init or exec'd process → its parent (`create`, `exec`), right after loading a filter with
/// SCMP_ACT_NOTIFY: the listener fd, attached (SCM_RIGHTS; nothing to wait for), or, where the
/// filter does not let sendmsg through, its number in the sender, which then waits for
/// NOTIFY_DONE while the parent takes it with pidfd_getfd. See [`take_notify_fd`].
pub const NOTIFY_FD: u8 = b'N';
/// Parent → sender of a NOTIFY_FD by number: the fd is taken (and with the agent).
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

/// A frame carrying one piece of a message too large for one frame; the message's last piece
/// comes in a frame with the message's own tag. (A state JSON with megabytes of annotations
/// does not fit one datagram: the socket's send buffer bounds it, EMSGSIZE.)
const MORE: u8 = b'+';

/// The most payload one frame carries.
const PIECE: usize = 32 * 1024;

pub struct Channel(pub OwnedFd);

/// A message (tag, payload) and the fd that came with it, if one did.
pub type WithFd = (u8, Vec<u8>, Option<OwnedFd>);

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
    /// Sends one message: one frame, or for a large payload a run of MORE frames ended by
    /// one with `tag` (the receiver reassembles them; blocking sends pace the sender).
    pub fn send(&self, tag: u8, payload: &[u8]) -> io::Result<()> {
        let mut pieces = payload.chunks(PIECE).peekable();
        let mut buf = Vec::with_capacity(1 + payload.len().min(PIECE));
        loop {
            let piece = pieces.next().unwrap_or_default();
            let last = pieces.peek().is_none();
            buf.clear();
            buf.push(if last { tag } else { MORE });
            buf.extend_from_slice(piece);
            send_frame(self.0.as_raw_fd(), &buf)?;
            if last {
                return Ok(());
            }
        }
    }

    /// Sends a one-frame message with `fd` attached (SCM_RIGHTS), in one sendmsg(2).
    pub fn send_fd(&self, tag: u8, fd: BorrowedFd<'_>) -> io::Result<()> {
        let fds = [fd.as_raw_fd()];
        let iov = [io::IoSlice::new(std::slice::from_ref(&tag))];
        let cmsg = [ControlMessage::ScmRights(&fds)];
        loop {
            match sendmsg::<()>(
                self.0.as_raw_fd(),
                &iov,
                &cmsg,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Receives one message; `None` at end of stream (the other side exited or closed).
    pub fn recv(&self) -> io::Result<Option<(u8, Vec<u8>)>> {
        self.recv_inner(None)
    }

    /// Like [`recv`](Self::recv), also returning an fd sent with the message ([`send_fd`]).
    /// With recvmsg(2), where `recv` uses recv(2): the container side, which may run under a
    /// seccomp filter, uses only `recv`.
    ///
    /// [`send_fd`]: Self::send_fd
    pub fn recv_with_fd(&self) -> io::Result<Option<WithFd>> {
        let mut fd = None;
        Ok(self
            .recv_inner(Some(&mut fd))?
            .map(|(t, p)| (t, p, fd.take())))
    }

    fn recv_inner(
        &self,
        mut fd: Option<&mut Option<OwnedFd>>,
    ) -> io::Result<Option<(u8, Vec<u8>)>> {
        let mut message: Vec<u8> = Vec::new();
        let mut pieces = 0usize;
        loop {
            let got = match fd.as_deref_mut() {
                Some(slot) => recv_message_fd(self.0.as_raw_fd(), slot),
                None => recv_message(self.0.as_raw_fd()),
            };
            let mut buf = match got {
                Ok(buf) => buf,
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                if pieces == 0 {
                    return Ok(None);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the other side exited in the middle of a message",
                ));
            }
            let tag = buf[0];
            if pieces == 0 && tag != MORE {
                // The common case: a whole message in one frame.
                buf.remove(0);
                return Ok(Some((tag, buf)));
            }
            message.extend_from_slice(&buf[1..]);
            pieces += 1;
            if tag != MORE {
                return Ok(Some((tag, message)));
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

/// The largest frame either side sends (a tag and a piece).
const MAX_MESSAGE: usize = 64 * 1024;

fn send_frame(fd: std::os::fd::RawFd, frame: &[u8]) -> io::Result<()> {
    loop {
        match send(fd, frame, MsgFlags::MSG_NOSIGNAL) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

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

/// One recvmsg(2) of a frame, keeping an fd sent with it (SCM_RIGHTS, received close-on-exec)
/// in `fd`. The frame's length is asked first (MSG_PEEK | MSG_TRUNC: a seqpacket socket reports
/// the whole frame's), so the buffer is that long: a zeroed buffer of the largest frame's size
/// cost `exec` 16 page faults and a 64 KiB memset per message (~2 % of its CPU).
fn recv_message_fd(fd: std::os::fd::RawFd, slot: &mut Option<OwnedFd>) -> io::Result<Vec<u8>> {
    let len = nix::sys::socket::recv(fd, &mut [], MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC)
        .map_err(io::Error::from)?;
    if len == 0 {
        // End of stream (no frame is empty: each has its tag).
        return Ok(Vec::new());
    }
    let mut buf = vec![0u8; len.min(MAX_MESSAGE)];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let (n, got) = {
        let mut iov = [io::IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(fd, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC)
            .map_err(io::Error::from)?;
        let mut got = Vec::new();
        for c in msg.cmsgs().map_err(io::Error::from)? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                got.extend(fds);
            }
        }
        (msg.bytes, got)
    };
    for raw in got {
        // SAFETY: SCM_RIGHTS has just installed `raw` in this process; nothing else owns it.
        let owned = unsafe { OwnedFd::from_raw_fd(raw) };
        // One fd per message; a second one (never sent) is closed with `owned`.
        if slot.is_none() {
            *slot = Some(owned);
        }
    }
    buf.truncate(n);
    Ok(buf)
}

/// The notify fd a NOTIFY_FD message hands over: `attached` to it, or else, by the number in
/// `payload`, still in process `holder`, taken with pidfd_getfd. The second value says whether
/// the sender waits for NOTIFY_DONE (the number form).
pub fn take_notify_fd(
    holder: i32,
    payload: &[u8],
    attached: Option<OwnedFd>,
) -> io::Result<(OwnedFd, bool)> {
    if let Some(fd) = attached {
        return Ok((fd, false));
    }
    let num = <[u8; 4]>::try_from(payload)
        .map(i32::from_ne_bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad notify fd message"))?;
    let pidfd = crate::linux::sys::pidfd_open(holder)?;
    let fd = crate::linux::sys::pidfd_getfd(pidfd.as_raw_fd(), num)?;
    Ok((fd, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_messages_arrive_whole_and_small_ones_unchanged() {
        let (a, b) = pair().unwrap();
        let big: Vec<u8> = (0..5 * PIECE + 7).map(|i| i as u8).collect();
        let sent = big.clone();
        // Larger than the socket buffer: the sender blocks until the receiver reads.
        let t = std::thread::spawn(move || {
            a.send(START, &sent).unwrap();
            a.send(GO, &[]).unwrap();
            a.send(READY, &vec![1; PIECE]).unwrap();
        });
        assert_eq!(b.recv().unwrap(), Some((START, big)));
        assert_eq!(b.recv().unwrap(), Some((GO, vec![])));
        assert_eq!(b.expect(READY).unwrap(), vec![1; PIECE]);
        t.join().unwrap();
        assert_eq!(b.recv().unwrap(), None);
    }

    #[test]
    fn recv_with_fd_takes_frames_of_every_size() {
        let (a, b) = pair().unwrap();
        let big: Vec<u8> = (0..3 * PIECE + 1).map(|i| (i * 7) as u8).collect();
        let sent = big.clone();
        let t = std::thread::spawn(move || {
            a.send(START, &sent).unwrap();
            a.send(GO, &[]).unwrap();
            a.send(READY, &vec![2; PIECE]).unwrap();
        });
        let got = |b: &Channel| {
            b.recv_with_fd()
                .unwrap()
                .map(|(t, p, f)| (t, p, f.is_none()))
        };
        assert_eq!(got(&b), Some((START, big, true)));
        assert_eq!(got(&b), Some((GO, vec![], true)));
        assert_eq!(got(&b), Some((READY, vec![2; PIECE], true)));
        t.join().unwrap();
        assert_eq!(got(&b), None);
    }

    #[test]
    fn an_fd_travels_with_its_message() {
        let (a, b) = pair().unwrap();
        let f = std::fs::File::open("/proc/self/stat").unwrap();
        a.send_fd(NOTIFY_FD, f.as_fd()).unwrap();
        a.send(READY, b"x").unwrap();
        drop(a);
        let (tag, payload, fd) = b.recv_with_fd().unwrap().unwrap();
        assert_eq!((tag, payload.as_slice()), (NOTIFY_FD, &[][..]));
        let fd = fd.expect("the fd came along");
        let ours = std::fs::metadata("/proc/self/stat").unwrap();
        let theirs = std::fs::File::from(fd).metadata().unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!((ours.dev(), ours.ino()), (theirs.dev(), theirs.ino()));
        let (fd2, reply) = take_notify_fd(0, &[], Some(f.into())).unwrap();
        assert!(!reply);
        drop(fd2);
        assert_eq!(
            b.recv_with_fd()
                .unwrap()
                .map(|(t, p, f)| (t, p, f.is_none())),
            Some((READY, b"x".to_vec(), true))
        );
        assert_eq!(b.recv_with_fd().unwrap().map(|m| m.0), None);
    }
}
