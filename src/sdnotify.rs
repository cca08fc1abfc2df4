//! sd_notify for containers: when Berth runs with `$NOTIFY_SOCKET` (a systemd unit of
//! `Type=notify` running a container, podman's `--sdnotify=container`), the container gets a
//! notify socket of its own and Berth relays what it says to the host's socket, as runc does.
//!
//! * `create` makes the directory `notify/` in the container's state directory, bind-mounts it
//!   (read-only, nosuid, noexec, nodev) at `/run/notify` in the container, and sets
//!   `NOTIFY_SOCKET=/run/notify/notify.sock` in the process's environment: runc's paths and
//!   options, added to the spec after the config's own mounts.
//! * `start` (and `run`) binds `notify/notify.sock` before releasing the init, then relays the
//!   container's datagrams to the host socket until one says `READY=1`. That one is followed by
//!   `MAINPID=<pid>` (the init's pid; a foreground `run`'s own pid, since it is the process that
//!   lives as long as the container) and by `BARRIER=1` carrying a pipe's write end, whose
//!   closing by the host (systemd's `sd_notify_barrier` protocol) says it has read them all.
//!   `start` and `run -d` return only then, or when the init exits first.
//!
//! Where Berth differs from runc, and why:
//! * runc forwards only the `READY=` line; Berth forwards every line but `MAINPID=` (a pid in
//!   the container's pid namespace means nothing on the host) and `BARRIER=` (its fd stays
//!   behind), so `STATUS=`, `EXTEND_TIMEOUT_USEC=`, … reach systemd too.
//! * The host socket is connected and the container's bound before the init is released: an
//!   unreachable `$NOTIFY_SOCKET` is an error while the container is still `created` (runc's
//!   `start` fails after starting it; its `run` ignores it).
//! * A foreground `run` relays while it forwards signals and the terminal, and stops waiting
//!   when the init exits (runc waits for READY before forwarding anything).
//! * runc 1.1 sends no `BARRIER=1` (runc 1.2 does, and waits up to 30 s for it, as Berth).
//!
//! Nothing here runs when `$NOTIFY_SOCKET` is unset: one `getenv` per `create`/`start`/`run`.

use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    bind, connect, recv, send, sendmsg, socket, AddressFamily, ControlMessage, MsgFlags, SockFlag,
    SockType, UnixAddr,
};
use oci_spec::runtime::{Mount, Spec};

use crate::container::Container;
use crate::error::{Error, Result};

/// The directory bind-mounted into the container (runc's).
pub const CONTAINER_DIR: &str = "/run/notify";
/// `$NOTIFY_SOCKET` inside the container (runc's).
pub const CONTAINER_SOCKET: &str = "/run/notify/notify.sock";
/// The directory in the container's state directory that holds the socket.
const STATE_DIR: &str = "notify";
const SOCKET_NAME: &str = "notify.sock";
/// The largest datagram relayed (systemd reads at most this much of one, too).
const MAX_MESSAGE: usize = 4096;
/// How long the host gets to close the barrier's pipe (runc 1.2's figure).
const BARRIER_TIMEOUT_MS: u16 = 30_000;

/// The host's notify socket, `$NOTIFY_SOCKET`, when set and not empty.
pub fn host_socket() -> Option<OsString> {
    std::env::var_os("NOTIFY_SOCKET").filter(|v| !v.is_empty())
}

/// `create`: the bind mount of `<state_dir>/notify` at `/run/notify` and `NOTIFY_SOCKET` in the
/// process's environment (replacing one the config sets: the process must find this socket).
pub fn add_to_spec(spec: &mut Spec, state_dir: &Path) {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(CONTAINER_DIR));
    m.set_source(Some(state_dir.join(STATE_DIR)));
    m.set_options(Some(
        ["bind", "nosuid", "noexec", "nodev", "ro"]
            .iter()
            .map(|o| o.to_string())
            .collect(),
    ));
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    mounts.push(m);
    spec.set_mounts(Some(mounts));
    if let Some(mut p) = spec.process().clone() {
        let mut env: Vec<String> = p
            .env()
            .iter()
            .flatten()
            .filter(|e| !e.starts_with("NOTIFY_SOCKET="))
            .cloned()
            .collect();
        env.push(format!("NOTIFY_SOCKET={CONTAINER_SOCKET}"));
        p.set_env(Some(env));
        spec.set_process(Some(p));
    }
}

/// `create`: makes the directory the container's socket will be bound in (before the init,
/// which mounts it, is forked).
pub fn make_dir(c: &Container) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o755)
        .create(in_dir(c, STATE_DIR))
        .map_err(|e| Error::sys(format!("{}", c.dir.join(STATE_DIR).display()), e))
}

/// `name` in the container's directory, reached through its locked fd (short, whatever the
/// length of `--root`).
fn in_dir(c: &Container, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}/{name}", c.lock_fd()))
}

/// The address `$NOTIFY_SOCKET` names: a path, or an abstract name after `@` (as systemd).
fn host_addr(value: &OsString) -> std::io::Result<UnixAddr> {
    let b = value.as_bytes();
    match b.strip_prefix(b"@") {
        Some(name) => Ok(UnixAddr::new_abstract(name)?),
        None => Ok(UnixAddr::new(Path::new(value))?),
    }
}

fn dgram_socket() -> std::io::Result<OwnedFd> {
    Ok(socket(
        AddressFamily::Unix,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?)
}

/// The relay between the container's notify socket and the host's.
pub struct Relay {
    /// Connected to `$NOTIFY_SOCKET`.
    host: OwnedFd,
    /// Bound at `notify/notify.sock`, visible in the container at [`CONTAINER_SOCKET`].
    container: OwnedFd,
    /// The init's pidfd: readable once it has exited.
    init: OwnedFd,
}

impl Relay {
    /// `start`/`run`, before the init is released: `None` without `$NOTIFY_SOCKET` (or when
    /// the init is already gone, which `start` then reports). A container created without
    /// `$NOTIFY_SOCKET` has no socket directory: as with runc, that is an error.
    pub fn prepare(c: &Container) -> Result<Option<Relay>> {
        let Some(value) = host_socket() else {
            return Ok(None);
        };
        let named = || format!("NOTIFY_SOCKET {}", value.to_string_lossy());
        let Some(pid) = c.live_pid() else {
            return Ok(None);
        };
        let init = crate::linux::sys::pidfd_open(pid).map_err(|e| Error::sys("pidfd_open", e))?;
        // The pidfd pins the process: is it still the container's?
        if c.live_pid() != Some(pid) {
            return Ok(None);
        }
        let dir = in_dir(c, STATE_DIR);
        if !dir.is_dir() {
            return Err(Error::Usage(format!(
                "{}: container {:?} was created without NOTIFY_SOCKET, so it has no notify \
                 socket to relay (create it with NOTIFY_SOCKET set, or unset it here)",
                named(),
                c.id
            )));
        }
        let host = dgram_socket().map_err(|e| Error::sys(named(), e))?;
        let addr = host_addr(&value).map_err(|e| Error::sys(named(), e))?;
        connect(host.as_raw_fd(), &addr)
            .map_err(|e| Error::sys(format!("{}: connect", named()), e))?;
        let path = dir.join(SOCKET_NAME);
        let shown = || {
            c.dir
                .join(STATE_DIR)
                .join(SOCKET_NAME)
                .display()
                .to_string()
        };
        // A socket left by an earlier `start` that failed after binding it.
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::sys(format!("remove {}", shown()), e))
            }
            _ => {}
        }
        let container = dgram_socket().map_err(|e| Error::sys(shown(), e))?;
        let addr = UnixAddr::new(&path).map_err(|e| Error::sys(shown(), e))?;
        bind(container.as_raw_fd(), &addr)
            .map_err(|e| Error::sys(format!("bind {}", shown()), e))?;
        // Any user in the container may notify (runc makes it 0777 too).
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777))
            .map_err(|e| Error::sys(format!("chmod {}", shown()), e))?;
        Ok(Some(Relay {
            host,
            container,
            init,
        }))
    }

    /// Readable when the container has sent something.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.container.as_fd()
    }

    /// Relays the datagrams waiting on the container's socket; true once one said `READY=1`
    /// (then `MAINPID=mainpid` and the barrier have followed it, and the relay is done).
    pub fn relay_pending(&mut self, mainpid: i32) -> Result<bool> {
        let mut buf = [0u8; MAX_MESSAGE];
        loop {
            let n = match recv(self.container.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                Ok(n) => n,
                Err(nix::errno::Errno::EAGAIN) => return Ok(false),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::sys("read the container's notify socket", e)),
            };
            let (out, ready) = filter(&buf[..n]);
            if !out.is_empty() {
                self.send_host(&out)?;
            }
            if ready {
                self.send_host(format!("MAINPID={mainpid}\n").as_bytes())?;
                self.barrier();
                return Ok(true);
            }
        }
    }

    /// Blocks until the container has reported `READY=1` (relayed with `MAINPID=mainpid`) or
    /// its init has exited (then there is nothing to wait for: as runc, not an error).
    pub fn wait_ready(mut self, mainpid: i32) -> Result<()> {
        loop {
            let mut fds = [
                PollFd::new(self.container.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.init.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(Error::sys("wait for the container's notify socket", e)),
            }
            let readable = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            let (message, exited) = (readable(&fds[0]), readable(&fds[1]));
            if message && self.relay_pending(mainpid)? {
                return Ok(());
            }
            if exited && !message {
                crate::logging::debug("sd_notify: the init exited before it reported READY=1");
                return Ok(());
            }
        }
    }

    fn send_host(&self, msg: &[u8]) -> Result<()> {
        send(self.host.as_raw_fd(), msg, MsgFlags::MSG_NOSIGNAL)
            .map_err(|e| Error::sys("send to NOTIFY_SOCKET", e))?;
        Ok(())
    }

    /// `BARRIER=1` with a pipe's write end, then waits (30 s at most) for the host to close
    /// it. A host that does not follow the protocol only costs the wait: a warning, no error.
    fn barrier(&self) {
        let warn = |what: &str| crate::logging::warn(format!("sd_notify barrier: {what}"));
        let (r, w) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
            Ok(p) => p,
            Err(e) => return warn(&format!("pipe: {e}")),
        };
        let fds = [w.as_raw_fd()];
        let sent = sendmsg::<()>(
            self.host.as_raw_fd(),
            &[std::io::IoSlice::new(b"BARRIER=1")],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_NOSIGNAL,
            None,
        );
        drop(w);
        if let Err(e) = sent {
            return warn(&format!("send: {e}"));
        }
        let mut p = [PollFd::new(r.as_fd(), PollFlags::POLLIN)];
        match poll(&mut p, PollTimeout::from(BARRIER_TIMEOUT_MS)) {
            Ok(0) => warn("the host did not close the pipe within 30 s; ignored"),
            Ok(_) => {
                let mut b = [0u8; 1];
                if nix::unistd::read(&r, &mut b) != Ok(0) {
                    warn("unexpected data on the pipe");
                }
            }
            Err(e) => warn(&format!("poll: {e}")),
        }
    }
}

/// What the host is told of one datagram from the container: its lines but `MAINPID=` and
/// `BARRIER=` (see the module's notes), each ended by a newline; and whether it said `READY=1`.
fn filter(msg: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::with_capacity(msg.len() + 1);
    let mut ready = false;
    for line in msg.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        if line.starts_with(b"MAINPID=") || line.starts_with(b"BARRIER=") {
            continue;
        }
        ready |= line == b"READY=1";
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    (out, ready)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_forwarded_but_the_containers_mainpid_and_barrier() {
        assert_eq!(filter(b"READY=1"), (b"READY=1\n".to_vec(), true));
        assert_eq!(
            filter(b"STATUS=up\nMAINPID=1\nREADY=1\n"),
            (b"STATUS=up\nREADY=1\n".to_vec(), true)
        );
        assert_eq!(
            filter(b"STATUS=starting"),
            (b"STATUS=starting\n".to_vec(), false)
        );
        assert_eq!(filter(b"MAINPID=7\nBARRIER=1"), (Vec::new(), false));
        // READY=0 (or READY=10) is not readiness.
        assert!(!filter(b"READY=10").1);
        assert_eq!(filter(b"").0, Vec::<u8>::new());
    }

    #[test]
    fn the_spec_gets_runcs_mount_and_environment() {
        let mut spec = Spec::default();
        let mut p = spec.process().clone().unwrap();
        p.set_env(Some(vec![
            "PATH=/bin".into(),
            "NOTIFY_SOCKET=/elsewhere".into(),
        ]));
        spec.set_process(Some(p));
        let before = spec.mounts().as_ref().map_or(0, Vec::len);
        add_to_spec(&mut spec, Path::new("/run/berth/c1"));
        let mounts = spec.mounts().as_ref().unwrap();
        assert_eq!(mounts.len(), before + 1);
        let m = mounts.last().unwrap();
        assert_eq!(m.destination(), Path::new("/run/notify"));
        assert_eq!(
            m.source().as_deref(),
            Some(Path::new("/run/berth/c1/notify"))
        );
        assert_eq!(
            m.options().as_deref().unwrap(),
            ["bind", "nosuid", "noexec", "nodev", "ro"]
        );
        let env = spec.process().as_ref().unwrap().env().clone().unwrap();
        assert_eq!(env, ["PATH=/bin", "NOTIFY_SOCKET=/run/notify/notify.sock"]);
    }

    #[test]
    fn abstract_and_path_addresses() {
        let a = host_addr(&OsString::from("@sd-test")).unwrap();
        assert_eq!(a.as_abstract(), Some(&b"sd-test"[..]));
        let p = host_addr(&OsString::from("/run/systemd/notify")).unwrap();
        assert_eq!(p.path(), Some(Path::new("/run/systemd/notify")));
        assert!(host_addr(&OsString::from(format!("/{}", "x".repeat(200)))).is_err());
    }
}
