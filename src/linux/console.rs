//! The container's terminal: a pty created inside the container's own devpts, its master sent
//! to the engine over `--console-socket` (SCM_RIGHTS), its slave made the process's stdio,
//! controlling terminal and /dev/console. `Relay` is the host side used by `run` and `exec` in
//! the foreground without a console socket: Berth's own terminal in raw mode, copied both ways.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use nix::sys::stat::Mode;
use oci_spec::runtime::{Box as ConsoleSize, Process};

/// Creates the pty of `process` (its consoleSize, owned by its user) and wires it up. Runs
/// after pivot_root, as root in the container.
pub fn setup(socket: &OwnedFd, process: &Process) -> Result<(), String> {
    setup_pty(socket, process, true)
}

/// The same for a process joining a running container (`exec`): its own pty, but the
/// container's /dev/console is left alone. The caller must be a session leader (setsid).
pub fn setup_for_exec(socket: &OwnedFd, process: &Process) -> Result<(), String> {
    setup_pty(socket, process, false)
}

fn setup_pty(socket: &OwnedFd, process: &Process, bind_dev_console: bool) -> Result<(), String> {
    let master = open(
        "/dev/ptmx",
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("open /dev/ptmx: {e}"))?;
    let master_fd = master.as_raw_fd();
    unlock(master_fd)?;
    if let Some(sz) = process.console_size() {
        set_size(master_fd, sz.height() as u16, sz.width() as u16)?;
    }
    let slave = open_peer(master_fd)?;
    give_to_user(&slave, process.user().uid())?;
    if bind_dev_console {
        mount_console(&slave)?;
    }
    send_fd(socket.as_raw_fd(), master_fd)?;
    drop(master);
    for target in 0..3 {
        dup2(slave.as_raw_fd(), target).map_err(|e| format!("dup2 pty to fd {target}: {e}"))?;
    }
    // SAFETY: TIOCSCTTY takes an integer argument; fd 0 is the pty slave.
    if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } != 0 {
        return Err(format!("TIOCSCTTY: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// /dev/console is the pty (CVE-2025-52565): the pty's own mount, cloned from the slave fd (no
/// /proc path, no /dev/pts/N lookup), is moved onto a target opened and checked by fd. The
/// container's /dev and then `console` in it are opened without following any symlink; the
/// target must be a regular file or a character device, and is created (an empty file) when
/// absent. A symlink there is refused wherever it points, so nothing that swaps one in (the
/// image, a hook, a process racing the setup) can aim the mount at another file, such as a
/// host file bound into the container. (runc refuses it too: O_NOFOLLOW, ELOOP.)
fn mount_console(slave: &OwnedFd) -> Result<(), String> {
    use super::mounts::api;
    use super::safepath::{self, NO_SYMLINKS};
    use std::os::fd::AsFd;
    use std::path::Path;
    let root = open(
        "/",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("open /: {e}"))?;
    let dev = safepath::open(
        root.as_fd(),
        Path::new("dev"),
        OFlag::O_PATH | OFlag::O_DIRECTORY,
        Mode::empty(),
        NO_SYMLINKS,
    )
    .map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) => "/dev is a symlink: refusing to mount the pty on /dev/console".into(),
        _ => format!("open /dev: {e}"),
    })?;
    let name = Path::new("console");
    let target = match safepath::open(
        dev.as_fd(),
        name,
        OFlag::O_PATH | OFlag::O_NOFOLLOW,
        Mode::empty(),
        NO_SYMLINKS,
    ) {
        // O_EXCL: whatever appears there meanwhile is not ours to open.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => safepath::open(
            dev.as_fd(),
            name,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_NOCTTY,
            Mode::from_bits_truncate(0o666),
            NO_SYMLINKS,
        )
        .map_err(|e| format!("create /dev/console: {e}"))?,
        r => r.map_err(|e| format!("open /dev/console: {e}"))?,
    };
    // O_PATH|O_NOFOLLOW opens a symlink itself: its type tells.
    let st = nix::sys::stat::fstat(&target).map_err(|e| format!("fstat /dev/console: {e}"))?;
    let kind = match st.st_mode & libc::S_IFMT {
        libc::S_IFREG | libc::S_IFCHR => None,
        libc::S_IFLNK => Some("a symlink"),
        libc::S_IFDIR => Some("a directory"),
        libc::S_IFIFO => Some("a fifo"),
        libc::S_IFSOCK => Some("a socket"),
        _ => Some("a block device"),
    };
    if let Some(kind) = kind {
        return Err(format!(
            "/dev/console is {kind}, not a regular file or character device: refusing to mount \
             the pty on it"
        ));
    }
    let tree = api::open_tree(Some(slave.as_fd()), Path::new(""), false)
        .map_err(|e| format!("clone the pty's mount: {e}"))?;
    api::move_mount(tree.as_fd(), target.as_fd())
        .map_err(|e| format!("mount the pty on /dev/console: {e}"))
}

/// The pty belongs to the process's user, as runc makes its stdio: the uid changes, the gid
/// stays the one devpts gave it (the mount's gid= option: the tty group, 5, in the default
/// spec; else the gid of whoever opened ptmx, root). As with runc, ids this namespace cannot
/// express (EINVAL), an owner it does not map (EPERM) and a read-only /dev (EROFS) leave the
/// pty as it is.
fn give_to_user(slave: &OwnedFd, uid: u32) -> Result<(), String> {
    let st = nix::sys::stat::fstat(slave).map_err(|e| format!("fstat the pty: {e}"))?;
    if st.st_uid == uid {
        return Ok(());
    }
    match nix::unistd::fchown(slave, Some(nix::unistd::Uid::from_raw(uid)), None) {
        Ok(()) | Err(Errno::EINVAL | Errno::EPERM | Errno::EROFS) => Ok(()),
        Err(e) => Err(format!("process.user.uid: give the pty to uid {uid}: {e}")),
    }
}

fn unlock(master: RawFd) -> Result<(), String> {
    let zero: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int from a valid pointer.
    if unsafe { libc::ioctl(master, libc::TIOCSPTLCK, &zero) } != 0 {
        return Err(format!("unlock pty: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Opens the slave side through the master (TIOCGPTPEER): no path lookup at all.
fn open_peer(master: RawFd) -> Result<OwnedFd, String> {
    const TIOCGPTPEER: libc::c_ulong = 0x5441;
    // SAFETY: TIOCGPTPEER takes open flags and returns a new fd we then own.
    let fd = unsafe {
        libc::ioctl(
            master,
            TIOCGPTPEER as _,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(format!(
            "open pty slave: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: a fresh fd returned by the kernel.
    let slave = unsafe { OwnedFd::from_raw_fd(fd) };
    // What /dev/ptmx led to must be a devpts master: its peer is then a pty on that devpts.
    match nix::sys::statfs::fstatfs(&slave) {
        Ok(fs) if fs.filesystem_type() == nix::sys::statfs::DEVPTS_SUPER_MAGIC => Ok(slave),
        Ok(_) => Err("/dev/ptmx did not give a pty of a devpts filesystem".into()),
        Err(e) => Err(format!("statfs the pty slave: {e}")),
    }
}

/// TIOCSWINSZ on a terminal fd.
pub fn set_size(fd: RawFd, rows: u16, cols: u16) -> Result<(), String> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from a valid pointer.
    if unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) } != 0 {
        return Err(format!(
            "set console size: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn dup2(from: RawFd, to: RawFd) -> std::io::Result<()> {
    // SAFETY: dup2 on fds; `to` is one of our stdio slots, replaced on purpose.
    if unsafe { libc::dup2(from, to) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Sends `fd` over the connected unix socket `sock` (with the name runc sends, "/dev/ptmx").
pub fn send_fd(sock: RawFd, fd: RawFd) -> Result<(), String> {
    let name = b"/dev/ptmx";
    let iov = [IoSlice::new(name)];
    let fds = [fd];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    sendmsg::<()>(sock, &iov, &cmsg, MsgFlags::empty(), None)
        .map_err(|e| format!("send pty master over the console socket: {e}"))?;
    Ok(())
}

/// Takes a pty master sent over `sock` (SCM_RIGHTS), without waiting: `None` when nothing was
/// sent (the process has no terminal).
pub fn try_recv_master(sock: RawFd) -> Option<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned};
    let mut buf = [0u8; 64];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        sock,
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .ok()?;
    msg.cmsgs().ok()?.find_map(|c| match c {
        // SAFETY: SCM_RIGHTS hands us a new fd that nobody else owns.
        ControlMessageOwned::ScmRights(fds) => {
            fds.first().map(|fd| unsafe { OwnedFd::from_raw_fd(*fd) })
        }
        _ => None,
    })
}

/// The pair of sockets through which a process's pty master comes back to Berth itself, when
/// `run` or `exec` in the foreground relays the terminal (no --console-socket): the other end
/// goes to the process as its console socket.
pub struct RelaySocket(OwnedFd);

impl RelaySocket {
    /// Ours, and the end to hand to the process.
    pub fn pair() -> std::io::Result<(RelaySocket, OwnedFd)> {
        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        Ok((RelaySocket(ours), theirs))
    }

    /// The relay of the master the process sent (before `create` or `exec` returned), or
    /// `None` when it has no terminal.
    pub fn relay(&self) -> Option<Relay> {
        try_recv_master(self.0.as_raw_fd()).map(Relay::new)
    }
}

/// Copies between Berth's stdin/stdout and a pty master, with Berth's terminal (if it has
/// one) in raw mode until dropped.
pub struct Relay {
    master: OwnedFd,
    /// Berth's own terminal, whose size the pty follows (see [`host_terminal`]).
    host: Option<OwnedFd>,
    saved: Option<nix::sys::termios::Termios>,
    stdin_open: bool,
    master_open: bool,
}

/// Berth's own terminal, picked as runc picks it: the first of stderr, stdout and stdin that
/// is a terminal, else the controlling terminal (/dev/tty). Without any, runc fails ("open
/// /dev/tty: no such device or address"); Berth relays all the same, the pty keeping its
/// default size, so that `run`/`exec -t` work from scripts and pipes.
fn host_terminal() -> Option<OwnedFd> {
    for fd in [2, 1, 0] {
        // SAFETY: fds 0-2 are only borrowed for the check and the dup.
        let b = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        if nix::unistd::isatty(b).unwrap_or(false) {
            if let Ok(own) = b.try_clone_to_owned() {
                return Some(own);
            }
        }
    }
    open(
        "/dev/tty",
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ok()
}

/// The size of Berth's own terminal (see [`host_terminal`]), as a console size.
pub fn host_size() -> Option<ConsoleSize> {
    let (rows, cols) = get_size(host_terminal()?.as_raw_fd())?;
    oci_spec::runtime::BoxBuilder::default()
        .height(rows)
        .width(cols)
        .build()
        .ok()
}

/// TIOCGWINSZ: (rows, columns) of a terminal fd.
fn get_size(fd: RawFd) -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills a winsize through a valid pointer.
    (unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0).then_some((ws.ws_row, ws.ws_col))
}

impl Relay {
    pub fn new(master: OwnedFd) -> Relay {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let host = host_terminal();
        let saved = host.as_ref().and_then(|h| tcgetattr(h).ok());
        if let (Some(h), Some(t)) = (&host, &saved) {
            let mut raw = t.clone();
            cfmakeraw(&mut raw);
            let _ = tcsetattr(h, SetArg::TCSANOW, &raw);
        }
        let r = Relay {
            master,
            host,
            saved,
            stdin_open: true,
            master_open: true,
        };
        r.resize();
        r
    }

    /// Gives the container's terminal the size of ours (at start and on SIGWINCH).
    pub fn resize(&self) {
        if let Some((rows, cols)) = self.host.as_ref().and_then(|h| get_size(h.as_raw_fd())) {
            let _ = set_size(self.master.as_raw_fd(), rows, cols);
        }
    }

    /// The fds to wait on: stdin and the master, while they are open.
    pub fn poll_fds(&self) -> Vec<RawFd> {
        let mut v = Vec::new();
        if self.stdin_open {
            v.push(0);
        }
        if self.master_open {
            v.push(self.master.as_raw_fd());
        }
        v
    }

    /// Moves what is ready on `fd` (stdin or the master) to the other side.
    pub fn pump(&mut self, fd: RawFd) {
        let mut buf = [0u8; 8192];
        if fd == 0 {
            match nix::unistd::read(std::io::stdin(), &mut buf) {
                Ok(0) | Err(_) => self.stdin_open = false,
                Ok(n) => {
                    if write_all(self.master.as_raw_fd(), &buf[..n]).is_err() {
                        self.stdin_open = false;
                    }
                }
            }
        } else {
            match nix::unistd::read(&self.master, &mut buf) {
                // EIO: the last holder of the slave side is gone.
                Ok(0) | Err(_) => self.master_open = false,
                Ok(n) => {
                    let _ = write_all(1, &buf[..n]);
                }
            }
        }
    }

    /// After the process exited: copies what is left in the master to stdout.
    pub fn drain(&mut self) {
        let _ = nix::fcntl::fcntl(
            &self.master,
            nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK),
        );
        let master = self.master.as_raw_fd();
        while self.master_open {
            self.pump(master);
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let (Some(h), Some(t)) = (&self.host, &self.saved) {
            let _ = nix::sys::termios::tcsetattr(h, nix::sys::termios::SetArg::TCSANOW, t);
        }
    }
}

fn write_all(fd: RawFd, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        // SAFETY: `data` is a valid buffer for the length given.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        data = &data[n as usize..];
    }
    Ok(())
}
