//! Handing the notify fd of an `SCMP_ACT_NOTIFY` filter to the seccomp agent at `listenerPath`,
//! as the runtime spec's "container process state" describes.

use std::io::{self, Write};
use std::mem::{size_of, zeroed};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use serde_json::Value;

use crate::SeccompError;

/// The name the spec gives the notify fd in `fds`.
pub const SECCOMP_FD_NAME: &str = "seccompFd";

/// Used when the container state carries no `ociVersion`.
const DEFAULT_OCI_VERSION: &str = "1.0.2";

/// Connects to the agent's unix socket at `listener_path` and sends, in one `sendmsg`, the
/// container process state with `notify_fd` attached (SCM_RIGHTS), with runc's fields in
/// runc's order:
///
/// ```json
/// {"ociVersion": …, "fds": ["seccompFd"], "pid": …, "metadata": …, "state": {…}}
/// ```
///
/// `pid` is the process the filter was loaded for (the container's init, or an exec'd
/// process); `state_json` is the container's state object (the runtime spec's `State`), sent
/// as given, and its `ociVersion` is the process state's too. `listener_metadata` is
/// `linux.seccomp.listenerMetadata` (omitted when `None`, as runc does). The connection is
/// closed afterwards, as the spec requires; the caller keeps (and should then close) its copy
/// of `notify_fd`.
pub fn send_listener(
    listener_path: &Path,
    listener_metadata: Option<&str>,
    notify_fd: BorrowedFd<'_>,
    pid: i32,
    state_json: &[u8],
) -> Result<(), SeccompError> {
    let payload = process_state(listener_metadata, pid, state_json)?;
    let err = |what: &'static str| {
        move |source: io::Error| SeccompError::Listener {
            path: listener_path.to_path_buf(),
            what,
            source,
        }
    };
    // std creates the socket with SOCK_CLOEXEC. "failed to connect with seccomp agent" is
    // runc's phrase.
    let mut sock =
        UnixStream::connect(listener_path).map_err(err("failed to connect with seccomp agent"))?;
    let sent = send_with_fd(sock.as_fd(), &payload, notify_fd).map_err(err("sending"))?;
    if sent < payload.len() {
        // A stream socket may take less in one go (a signal, a tiny buffer). The spec allows
        // more sendmsg calls as long as the fds travel with the first one.
        sock.write_all(&payload[sent..])
            .map_err(err("sending the rest"))?;
    }
    Ok(())
}

/// The container process state of the runtime spec, as JSON bytes, its fields in runc's
/// order (serde_json's maps would sort them): the container state is embedded as given.
pub(crate) fn process_state(
    metadata: Option<&str>,
    pid: i32,
    state_json: &[u8],
) -> Result<Vec<u8>, SeccompError> {
    let state: Value = serde_json::from_slice(state_json)
        .map_err(|e| SeccompError::State(format!("the container state is not JSON: {e}")))?;
    let obj = state
        .as_object()
        .ok_or_else(|| SeccompError::State("the container state is not a JSON object".into()))?;
    if pid <= 0 {
        return Err(SeccompError::State(format!(
            "no process to name (pid {pid})"
        )));
    }
    let version = obj
        .get("ociVersion")
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_OCI_VERSION);
    let text = |v: &str| Value::String(v.into()).to_string();
    let mut out = format!(
        "{{\"ociVersion\":{},\"fds\":[{}],\"pid\":{pid},",
        text(version),
        text(SECCOMP_FD_NAME)
    )
    .into_bytes();
    if let Some(md) = metadata {
        out.extend_from_slice(format!("\"metadata\":{},", text(md)).as_bytes());
    }
    out.extend_from_slice(b"\"state\":");
    out.extend_from_slice(state_json.trim_ascii());
    out.push(b'}');
    Ok(out)
}

/// One `sendmsg` of `data` on `sock` carrying `fd` as SCM_RIGHTS. Returns the bytes sent.
fn send_with_fd(sock: BorrowedFd<'_>, data: &[u8], fd: BorrowedFd<'_>) -> io::Result<usize> {
    const FD_LEN: u32 = size_of::<libc::c_int>() as u32;
    // Room for one cmsghdr with one int, u64-aligned like cmsghdr requires.
    let mut control = [0u64; 8];
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(FD_LEN) } as usize;
    if space > size_of::<[u64; 8]>() {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut iov = libc::iovec {
        // sendmsg only reads the payload.
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: msghdr is a plain C struct for which all-zero is a valid value.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: msg_control points at `space` zeroed, aligned bytes that we own, so the first
    // header exists and its data has room for one int; the write is unaligned-safe.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null() {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(FD_LEN) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), fd.as_raw_fd());
    }
    loop {
        // SAFETY: `msg` and everything it points to (iov, data, control) are alive and valid
        // for the call; MSG_NOSIGNAL turns a closed peer into EPIPE instead of SIGPIPE.
        let r = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_state_wraps_the_container_state() {
        let s = br#"{"ociVersion":"1.2.0","id":"c1","status":"creating","pid":4422,"bundle":"/b"}"#;
        let raw = process_state(Some("me\"ta"), 4500, s).unwrap();
        let v: Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(v["ociVersion"], "1.2.0");
        assert_eq!(v["fds"], serde_json::json!(["seccompFd"]));
        assert_eq!(v["pid"], 4500);
        assert_eq!(v["metadata"], "me\"ta");
        assert_eq!(v["state"]["id"], "c1");
        assert_eq!(v["state"]["pid"], 4422);
        // runc's order, and the state as given.
        let text = String::from_utf8(raw).unwrap();
        assert!(text.starts_with(r#"{"ociVersion":"1.2.0","fds":["seccompFd"],"pid":4500,"#));
        assert!(text.ends_with(&format!(r#""state":{}}}"#, String::from_utf8_lossy(s))));

        let v: Value = serde_json::from_slice(&process_state(None, 1, s).unwrap()).unwrap();
        assert!(v.get("metadata").is_none());
    }

    #[test]
    fn bad_states_are_errors() {
        assert!(process_state(None, 1, b"nope").is_err());
        assert!(process_state(None, 1, b"[]").is_err());
        assert!(process_state(None, 0, br#"{"id":"c"}"#)
            .unwrap_err()
            .to_string()
            .contains("no process"));
    }
}
