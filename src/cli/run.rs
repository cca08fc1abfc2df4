//! `berth run [create flags] [--detach] [--keep] ID`: create + start, then (unless detached)
//! forward signals to the container and wait; the exit status is the container's (128+N when
//! killed by signal N). The container is deleted afterwards unless --keep.

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
    let started = (|| -> Result<(), Error> {
        crate::fault::point("run:created")?;
        lifecycle::start(&mut c)?;
        crate::fault::point("run:started")?;
        Ok(())
    })();
    if let Err(e) = started {
        let _ = lifecycle::delete(c, true);
        return Err(e);
    }
    let Some(mask) = mask else {
        return Ok(0);
    };
    drop(c); // release the lock while the container runs
    let waited = wait_forwarding(pid, &mask, tty);
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
/// signal Berth receives to it, and relaying its terminal when Berth holds the pty master
/// (blocking waits on a signalfd and the tty fds: no polling loop, no sleeping).
pub(super) fn wait_forwarding(
    pid: i32,
    mask: &SigSet,
    mut tty: Option<console::Relay>,
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
        if let Some(t) = tty.as_mut() {
            // Wait for a signal or terminal data, whichever comes first.
            let ttyfds = t.poll_fds();
            let mut fds: Vec<PollFd> = std::iter::once(sfd.as_fd())
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
            for (i, fd) in ttyfds.iter().enumerate() {
                if ready[i + 1] {
                    t.pump(*fd);
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
