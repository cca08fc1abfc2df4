//! `berth run [create flags] [--detach] [--keep] ID`: create + start, then (unless detached)
//! forward signals to the container and wait; the exit status is the container's (128+N when
//! killed by signal N). The container is deleted afterwards unless --keep. With
//! `$NOTIFY_SOCKET`, the container's sd_notify messages are relayed (see `sdnotify`): `run -d`
//! returns once it reported `READY=1`; in the foreground the relay runs beside the signal
//! forwarding, and `MAINPID` is Berth's own pid (as runc), the process that lives as long as
//! the container.

use std::os::fd::{AsFd, AsRawFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::create::CreateFlags;
use super::Global;
use crate::container::{lifecycle, Container, StateError};
use crate::error::Error;
use crate::linux::console;
use crate::sdnotify::Relay;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub create: CreateFlags,
    /// Do not wait for the container
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Keep the container's state after it exits
    #[arg(long)]
    pub keep: bool,
    /// Do not become a subreaper of the container's init
    #[arg(long = "no-subreaper", hide = true)]
    pub no_subreaper: bool,
    /// Container id
    pub id: String,
}

pub fn run(g: &Global, a: Args) -> Result<i32, Error> {
    if !a.detach && !a.no_subreaper {
        // The init is not always our child (a pid namespace joined by path needs an extra
        // fork): as a subreaper we inherit it, and can wait for it, as runc does.
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    }
    let mut opts = a.create.options();
    // Started right below, by this process: no start.sock is needed.
    opts.start_now = true;
    // In the foreground without --console-socket, a process with a terminal gets its pty master
    // sent to Berth itself, which relays it (as runc does).
    let console_pair = if !a.detach && opts.console_socket.is_none() {
        let (ours, theirs) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::Stream,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| Error::sys("console socketpair", e))?;
        opts.console_fd = Some(theirs);
        Some(ours)
    } else {
        None
    };
    let mut c = lifecycle::create(&g.root, &a.id, &opts)?;
    drop(opts);
    let pid = c.state.as_ref().map(|s| s.pid).unwrap_or(0);
    // The init sent the master (if it has a terminal) before create returned.
    let tty = console_pair
        .as_ref()
        .and_then(|s| console::try_recv_master(s.as_raw_fd()))
        .map(console::Relay::new);
    // Block signals before releasing the init so none is lost; they are forwarded below.
    // From here on a failure deletes the container this command made: a foreground `run`
    // that reports an error leaves nothing behind.
    let mask = if a.detach {
        None
    } else {
        match block_signals() {
            Ok(m) => Some(m),
            Err(e) => {
                let _ = lifecycle::delete(c, true);
                return Err(e);
            }
        }
    };
    let started = (|| -> Result<Option<Relay>, Error> {
        crate::fault::point("run:created")?;
        // Bound before the init is released, so that its first message finds the socket.
        let notify = Relay::prepare(&c)?;
        lifecycle::start(&mut c)?;
        crate::fault::point("run:started")?;
        Ok(notify)
    })();
    let notify = match started {
        Ok(n) => n,
        Err(e) => {
            let _ = lifecycle::delete(c, true);
            return Err(e);
        }
    };
    let Some(mask) = mask else {
        if let Some(relay) = notify {
            drop(c); // other commands need the lock while the container gets ready
                     // As runc's `run -d`, a relay that fails does not fail the command.
            if let Err(e) = relay.wait_ready(pid) {
                crate::logging::warn(format!("sd_notify: {e}"));
            }
        }
        return Ok(0);
    };
    drop(c); // release the lock while the container runs
    let waited = crate::trace::span("wait", || wait_forwarding(pid, &mask, tty, notify));
    if !a.keep || waited.is_err() {
        match Container::load(&g.root, &a.id) {
            Ok(c) => lifecycle::delete(c, true)?,
            // Deleted meanwhile by someone else: nothing left to do.
            Err(StateError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    waited
}

pub(super) fn block_signals() -> Result<SigSet, Error> {
    let mut set = SigSet::all();
    for s in [Signal::SIGKILL, Signal::SIGSTOP] {
        set.remove(s);
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
        .map_err(|e| Error::sys("block signals", e))?;
    Ok(set)
}

/// Waits for `pid` (a child of Berth: the init, or a process `exec` started), forwarding every
/// signal Berth receives to it, relaying its terminal when Berth holds the pty master, and its
/// sd_notify messages until `READY=1` when there is a `notify` relay (blocking waits on a
/// signalfd and those fds: no polling loop, no sleeping).
pub(super) fn wait_forwarding(
    pid: i32,
    mask: &SigSet,
    mut tty: Option<console::Relay>,
    mut notify: Option<Relay>,
) -> Result<i32, Error> {
    let sfd =
        SignalFd::with_flags(mask, SfdFlags::SFD_CLOEXEC).map_err(|e| Error::sys("signalfd", e))?;
    let child = Pid::from_raw(pid);
    loop {
        // Reap first: the child may already have exited before we looked.
        let done = match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => Some(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => Some(128 + sig as i32),
            Ok(_) => None,
            Err(nix::errno::Errno::ECHILD) => Some(0),
            Err(e) => return Err(Error::sys("waitpid", e)),
        };
        if let Some(code) = done {
            if let Some(t) = tty.as_mut() {
                t.drain();
            }
            return Ok(code);
        }
        if tty.is_some() || notify.is_some() {
            // Wait for a signal, terminal data or a notify message, whichever comes first.
            let ttyfds = tty
                .as_ref()
                .map(console::Relay::poll_fds)
                .unwrap_or_default();
            let first_tty = 1 + usize::from(notify.is_some());
            let mut fds: Vec<PollFd> = std::iter::once(sfd.as_fd())
                .chain(notify.as_ref().map(Relay::fd))
                .chain(ttyfds.iter().map(|fd| {
                    // SAFETY: stdin and the master stay open while the relay lives.
                    unsafe { std::os::fd::BorrowedFd::borrow_raw(*fd) }
                }))
                .map(|fd| PollFd::new(fd, PollFlags::POLLIN))
                .collect();
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(Error::sys("poll", e)),
            }
            let ready: Vec<bool> = fds
                .iter()
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                .collect();
            drop(fds);
            if first_tty == 2 && ready[1] {
                let relayed = notify
                    .as_mut()
                    .map(|n| n.relay_pending(std::process::id() as i32));
                match relayed {
                    Some(Ok(false)) => {}
                    Some(Ok(true)) => notify = None,
                    Some(Err(e)) => {
                        crate::logging::warn(format!("sd_notify: {e}"));
                        notify = None;
                    }
                    None => {}
                }
            }
            if let Some(t) = tty.as_mut() {
                for (i, fd) in ttyfds.iter().enumerate() {
                    if ready[i + first_tty] {
                        t.pump(*fd);
                    }
                }
            }
            if !ready[0] {
                continue;
            }
        }
        let info = match sfd.read_signal() {
            Ok(Some(i)) => i,
            Ok(None) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::sys("read signalfd", e)),
        };
        let sig = info.ssi_signo as i32;
        if sig == libc::SIGWINCH {
            if let Some(t) = &tty {
                t.resize();
                continue;
            }
        }
        if sig != libc::SIGCHLD {
            // SAFETY: kill(2) with integer arguments.
            unsafe { libc::kill(pid, sig) };
        }
    }
}
