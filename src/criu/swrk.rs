//! CRIU's RPC in swrk mode: `criu swrk FD` is started with one end of a SOCK_SEQPACKET
//! socketpair as FD; one request goes in, NOTIFY messages may come back (each answered), then
//! the final answer. Messages are protobuf, one per datagram; the `orphan-pts-master` notify
//! carries the restored terminal's master as SCM_RIGHTS.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use nix::sys::socket::{
    recv, recvmsg, send, socketpair, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag,
    SockType,
};
use protobuf::{Message, MessageField};
use rust_criu::rust_criu_protobuf::rpc::{Criu_opts, Criu_req, Criu_req_type, Criu_resp};

use super::CriuError;

/// One request to CRIU.
pub struct Request<'a> {
    /// `checkpoint` or `restore`: the first word of every error.
    pub step: &'static str,
    pub bin: &'a Path,
    pub ty: Criu_req_type,
    pub opts: Option<Criu_opts>,
    /// Fds CRIU inherits at their numbers (images and work directories, `inherit_fd` ones).
    pub inherit: Vec<RawFd>,
    /// Where CRIU logs, for the error.
    pub log: Option<PathBuf>,
}

/// What the caller does while CRIU works.
pub trait Handler {
    /// CRIU runs (pid given) and has not been sent the request yet.
    fn spawned(&mut self, _pid: i32, _opts: &mut Criu_opts) -> Result<(), CriuError> {
        Ok(())
    }
    /// A NOTIFY (`script` names the stage); an error makes CRIU abort the request.
    fn notify(&mut self, _script: &str, _pid: i32, _fd: Option<OwnedFd>) -> Result<(), String> {
        Ok(())
    }
}

/// A handler with nothing to do.
pub struct Quiet;
impl Handler for Quiet {}

/// Clears FD_CLOEXEC on `fd` (in the forked child, before exec).
fn inheritable(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: fcntl(2) on an fd number, async-signal-safe (called between fork and exec).
    if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn spawn(req: &Request<'_>, child_end: RawFd) -> Result<Child, CriuError> {
    let mut keep = req.inherit.clone();
    keep.push(child_end);
    let mut cmd = Command::new(req.bin);
    cmd.arg("swrk").arg(child_end.to_string());
    // Dump and restore give CRIU Berth's stdio (a shell job's terminal, the pipes `inherit_fd`
    // names by number); the queries keep it quiet (CHECK prints "Looks good." on stdout).
    if matches!(
        req.ty,
        Criu_req_type::CHECK | Criu_req_type::VERSION | Criu_req_type::FEATURE_CHECK
    ) {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
    }
    // SAFETY: the closure runs in the forked child before exec and only calls fcntl(2); the
    // parent's fds all stay close-on-exec.
    unsafe {
        cmd.pre_exec(move || keep.iter().try_for_each(|fd| inheritable(*fd)));
    }
    cmd.spawn().map_err(|source| CriuError::Spawn {
        step: req.step,
        bin: req.bin.to_path_buf(),
        source,
    })
}

/// Receives one message, and the fd it carries if any.
fn receive(sock: &OwnedFd) -> std::io::Result<Option<(Vec<u8>, Option<OwnedFd>)>> {
    // The datagram's size, without taking it (MSG_TRUNC: its real length).
    let len = loop {
        match recv(
            sock.as_raw_fd(),
            &mut [],
            MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC,
        ) {
            Ok(n) => break n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    if len == 0 {
        return Ok(None); // CRIU closed its end
    }
    let mut buf = vec![0u8; len];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fd = None;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for (i, f) in fds.into_iter().enumerate() {
                // SAFETY: SCM_RIGHTS hands us new fds nobody else owns.
                let owned = unsafe { OwnedFd::from_raw_fd(f) };
                if i == 0 {
                    fd = Some(owned);
                }
            }
        }
    }
    let n = msg.bytes;
    buf.truncate(n);
    Ok(Some((buf, fd)))
}

fn send_msg(sock: &OwnedFd, m: &Criu_req) -> Result<(), String> {
    let b = m.write_to_bytes().map_err(|e| e.to_string())?;
    send(sock.as_raw_fd(), &b, MsgFlags::MSG_NOSIGNAL).map_err(|e| e.to_string())?;
    Ok(())
}

/// Sends `req` to a new `criu swrk` and returns CRIU's successful answer.
pub fn call(req: Request<'_>, h: &mut dyn Handler) -> Result<Criu_resp, CriuError> {
    call_with(req, None, h)
}

/// [`call`], with the message to send given whole (`None`: made from `req`).
fn call_with(
    mut req: Request<'_>,
    message: Option<Criu_req>,
    h: &mut dyn Handler,
) -> Result<Criu_resp, CriuError> {
    let step = req.step;
    let rpc = |msg: String| CriuError::Rpc { step, msg };
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| CriuError::io(step, "CRIU socketpair", e))?;
    let mut child = spawn(&req, theirs.as_raw_fd())?;
    drop(theirs);
    let result = exchange(&mut req, message, h, &ours, child.id() as i32);
    drop(ours);
    let status = child.wait();
    let answered = matches!(result, Ok(Some(_)));
    let failed = |last: Option<String>| {
        let last = req
            .log
            .as_deref()
            .and_then(super::log::last_error)
            .or(last)
            .unwrap_or_else(|| match &status {
                Ok(s) if answered => format!("CRIU refused the request (it then exited: {s})"),
                Ok(s) => format!("CRIU exited ({s}) without answering"),
                Err(e) => format!("CRIU: {e}"),
            });
        match &req.log {
            Some(log) => CriuError::Failed {
                step,
                log: log.clone(),
                last,
            },
            None => rpc(last),
        }
    };
    match result {
        Ok(Some(resp)) if resp.success() => Ok(resp),
        Ok(Some(resp)) => {
            Err(failed(resp.has_cr_errmsg().then(|| {
                format!("{} (errno {})", resp.cr_errmsg(), resp.cr_errno())
            })))
        }
        Ok(None) => Err(failed(None)),
        Err(Exchange::Handler(e)) => Err(e),
        Err(Exchange::Rpc(msg)) => {
            let _ = child.kill();
            Err(rpc(msg))
        }
    }
}

enum Exchange {
    Handler(CriuError),
    Rpc(String),
}

/// The request and its answers; `None` when CRIU went away without a final answer.
fn exchange(
    req: &mut Request<'_>,
    message: Option<Criu_req>,
    h: &mut dyn Handler,
    sock: &OwnedFd,
    pid: i32,
) -> Result<Option<Criu_resp>, Exchange> {
    let mut opts = req.opts.take();
    if let Some(o) = opts.as_mut() {
        h.spawned(pid, o).map_err(Exchange::Handler)?;
    }
    let m = message.unwrap_or_else(|| {
        let mut m = Criu_req::new();
        m.set_type(req.ty);
        m.opts = opts.map_or(MessageField::none(), MessageField::some);
        m
    });
    send_msg(sock, &m).map_err(|e| Exchange::Rpc(format!("send request: {e}")))?;
    let mut refused: Option<String> = None;
    loop {
        let Some((bytes, fd)) =
            receive(sock).map_err(|e| Exchange::Rpc(format!("receive: {e}")))?
        else {
            return Ok(None);
        };
        let resp = Criu_resp::parse_from_bytes(&bytes)
            .map_err(|e| Exchange::Rpc(format!("unreadable answer: {e}")))?;
        if resp.type_() != Criu_req_type::NOTIFY {
            if let (Some(msg), false) = (refused, resp.success()) {
                return Err(Exchange::Handler(CriuError::Aborted {
                    step: req.step,
                    msg,
                }));
            }
            return Ok(Some(resp));
        }
        let n = &resp.notify;
        let done = h.notify(n.script(), n.pid(), fd);
        let mut ack = Criu_req::new();
        ack.set_type(Criu_req_type::NOTIFY);
        ack.set_notify_success(done.is_ok());
        if let Err(e) = done {
            refused = Some(format!("{}: {e}", n.script()));
        }
        send_msg(sock, &ack).map_err(|e| Exchange::Rpc(format!("answer notify: {e}")))?;
    }
}

/// CRIU's version as "MAJOR.MINOR.SUBLEVEL" (a VERSION request: quick, no side effect).
pub fn version(bin: &Path) -> Result<String, CriuError> {
    let req = Request {
        step: "criu version",
        bin,
        ty: Criu_req_type::VERSION,
        opts: None,
        inherit: Vec::new(),
        log: None,
    };
    let r = call(req, &mut Quiet)?;
    let v = &r.version;
    Ok(format!(
        "{}.{}.{}",
        v.major_number(),
        v.minor_number(),
        v.sublevel()
    ))
}

/// Whether CRIU works on this kernel (a CHECK request: what `criu check` tests). CRIU wants an
/// images directory even for that (it logs there): a private one, removed afterwards.
pub fn check(bin: &Path) -> Result<(), CriuError> {
    let step = "criu check";
    let dir = std::env::temp_dir().join(format!(".berth-criu-check-{}", std::process::id()));
    std::fs::create_dir(&dir)
        .map_err(|e| CriuError::io(step, format!("mkdir {}", dir.display()), e))?;
    let r = super::dump::open_dir(step, "check directory", &dir, false).and_then(|fd| {
        let mut o = Criu_opts::new();
        o.set_images_dir_fd(fd.as_raw_fd());
        o.set_log_file("check.log".into());
        let req = Request {
            step,
            bin,
            ty: Criu_req_type::CHECK,
            opts: Some(o),
            inherit: vec![fd.as_raw_fd()],
            log: None,
        };
        call(req, &mut Quiet).map(|_| ())
    });
    let _ = std::fs::remove_dir_all(&dir);
    r
}

/// What CRIU says of the features `ask` sets (a FEATURE_CHECK request, as runc asks before it
/// relies on one): each one asked for comes back true or false.
fn feature_check(
    step: &'static str,
    bin: &Path,
    ask: impl FnOnce(&mut rust_criu::rust_criu_protobuf::rpc::Criu_features),
) -> Result<rust_criu::rust_criu_protobuf::rpc::Criu_features, CriuError> {
    let mut f = rust_criu::rust_criu_protobuf::rpc::Criu_features::new();
    ask(&mut f);
    let mut m = Criu_req::new();
    m.set_type(Criu_req_type::FEATURE_CHECK);
    m.features = MessageField::some(f);
    let req = Request {
        step,
        bin,
        ty: Criu_req_type::FEATURE_CHECK,
        opts: None,
        inherit: Vec::new(),
        log: None,
    };
    let r = call_with(req, Some(m), &mut Quiet)?;
    Ok(r.features.unwrap_or_default())
}

/// Whether CRIU can track memory changes here (soft-dirty bits), which a pre-dump and a dump
/// onto a parent need.
pub fn tracks_memory(step: &'static str, bin: &Path) -> Result<bool, CriuError> {
    Ok(feature_check(step, bin, |f| f.set_mem_track(true))?.mem_track())
}

/// Whether CRIU can serve and restore memory lazily here (userfaultfd), which `--lazy-pages`
/// needs.
pub fn lazy_pages(step: &'static str, bin: &Path) -> Result<bool, CriuError> {
    Ok(feature_check(step, bin, |f| f.set_lazy_pages(true))?.lazy_pages())
}

/// The version of a CRIU that passes [`check`], or None.
pub fn usable(bin: &Path) -> Option<String> {
    check(bin).ok()?;
    version(bin).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_criu_is_named_in_the_error() {
        let e = version(Path::new("/nonexistent/criu"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("criu version: cannot run CRIU \"/nonexistent/criu\"")
                && e.contains("--criu"),
            "{e}"
        );
        assert!(usable(Path::new("/nonexistent/criu")).is_none());
    }
}
