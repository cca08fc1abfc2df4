//! The launcher: how a container process leaves Berth's code without ever running Berth's
//! binary as the container's program (the CVE-2019-5736 class; `selfprotect` has the whole
//! picture).
//!
//! When Berth execs the container's program, the container can make that exec resolve to
//! `/proc/self/exe` (an entrypoint that is a symlink to it, or a `#!/proc/self/exe` script). Were
//! Berth to call execve itself, the container's process would then be Berth's host binary, and
//! through its `/proc/PID/exe` the container could reopen that file for writing. So the last
//! exec is made by a second program: the launcher, ~700 bytes of assembly (`launcher/*.S`,
//! assembled by build.rs), run from a sealed memfd. Whatever `/proc/self/exe` resolves to during
//! that exec is the sealed launcher, which nobody can write and which refuses to run unless
//! Berth started it (its argv[0] must be the marker).
//!
//! The launcher reports a failed execve (`'X'`, errno, path) on the socket whose end-of-stream
//! tells Berth the exec succeeded, so `start` and `exec` still print "exec ...: ENOENT".
//!
//! Cost: a memfd (four system calls) and one exec of a program with no libc and no
//! relocations, instead of re-executing all of Berth (~1 ms of CPU, a fifth of a `run`).

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

/// The message tag a failed launch sends: `'X'`, errno (4 bytes, native order), the path.
pub const FAILED: u8 = b'X';

/// argv[0] the launcher insists on.
const MARKER: &CStr = c"berth-launcher";

#[cfg(berth_launcher)]
static IMAGE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/launcher"));
#[cfg(not(berth_launcher))]
static IMAGE: &[u8] = &[];

/// Whether this build has a launcher for its architecture.
pub const AVAILABLE: bool = cfg!(berth_launcher);

/// A sealed, executable memfd holding the launcher.
pub struct Launcher(OwnedFd);

impl Launcher {
    /// Writes the launcher into a new memfd and seals it against any change.
    pub fn new() -> io::Result<Launcher> {
        if !AVAILABLE {
            return Err(io::Error::from_raw_os_error(libc::ENOEXEC));
        }
        let fd = crate::linux::sys::sealed_memfd(c"berth-launcher", IMAGE)?;
        Ok(Launcher(fd))
    }

    /// Execs `path` with `argv` and `envp` through the launcher; a failure of that final
    /// execve is reported on `report` (which must not be close-on-exec: the launcher makes it
    /// so before its execve). Returns only if the launcher itself could not be executed.
    pub fn exec(
        &self,
        report: &OwnedFd,
        path: &CStr,
        argv: &[CString],
        envp: &[CString],
    ) -> io::Error {
        let fd = match CString::new(report.as_raw_fd().to_string()) {
            Ok(s) => s,
            Err(_) => return io::Error::from_raw_os_error(libc::EINVAL),
        };
        let mut args: Vec<&CStr> = Vec::with_capacity(argv.len() + 3);
        args.extend([MARKER, fd.as_c_str(), path]);
        args.extend(argv.iter().map(CString::as_c_str));
        match nix::unistd::execveat(
            &self.0,
            c"",
            &args,
            envp,
            nix::fcntl::AtFlags::AT_EMPTY_PATH,
        ) {
            Ok(never) => match never {},
            Err(e) => e.into(),
        }
    }
}

/// Reads a [`FAILED`] message's payload: the errno and the path the launcher could not exec.
pub fn decode_failure(payload: &[u8]) -> Option<(nix::errno::Errno, String)> {
    let errno = i32::from_ne_bytes(payload.get(..4)?.try_into().ok()?);
    let path = String::from_utf8_lossy(&payload[4..]).into_owned();
    Some((nix::errno::Errno::from_raw(errno), path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_messages_decode() {
        let mut m = libc::ENOENT.to_ne_bytes().to_vec();
        m.extend_from_slice(b"/bin/nope");
        let (e, p) = decode_failure(&m).unwrap();
        assert_eq!(e, nix::errno::Errno::ENOENT);
        assert_eq!(p, "/bin/nope");
        assert!(decode_failure(b"ab").is_none());
    }

    #[cfg(berth_launcher)]
    #[test]
    fn the_image_is_a_small_static_elf() {
        assert_eq!(&IMAGE[..4], b"\x7fELF");
        assert!(IMAGE.len() < 4096, "{} bytes", IMAGE.len());
    }
}
