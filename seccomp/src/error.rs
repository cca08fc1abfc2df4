//! The one error type of the crate. Problems in the profile name the field by its JSON path
//! (`linux.seccomp.syscalls[3].action: …`), the way Berth reports every other config error.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum SeccompError {
    /// A field of `linux.seccomp` is invalid; `path` is its JSON path.
    #[error("{path}: {msg}")]
    Invalid { path: String, msg: String },

    /// libseccomp refused something the profile asks for (a rule, an architecture).
    #[error("{path}: {what}: libseccomp: {msg}")]
    Libseccomp {
        path: String,
        what: String,
        msg: String,
    },

    /// Building the program failed for a reason that is not the profile's fault.
    #[error("linux.seccomp: compiling the filter: {0}")]
    Compile(String),

    /// The kernel refused the filter (`seccomp(SECCOMP_SET_MODE_FILTER)` failed).
    #[error("loading the seccomp filter (flags {flags:#x}): {source}{hint}", hint = load_hint(source))]
    Load {
        flags: u32,
        #[source]
        source: io::Error,
    },

    /// Sending the notify fd to the seccomp agent at `listenerPath` failed.
    #[error("linux.seccomp.listenerPath: {path:?}: {what}: {source}")]
    Listener {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: io::Error,
    },

    /// The container state handed to [`crate::send_listener`] is not usable.
    #[error("seccomp agent state: {0}")]
    State(String),
}

impl SeccompError {
    pub(crate) fn invalid(path: impl Into<String>, msg: impl Into<String>) -> Self {
        SeccompError::Invalid {
            path: path.into(),
            msg: msg.into(),
        }
    }

    /// The JSON path of the offending field, when the error is about one.
    pub fn json_path(&self) -> Option<&str> {
        match self {
            SeccompError::Invalid { path, .. } | SeccompError::Libseccomp { path, .. } => {
                Some(path)
            }
            SeccompError::Listener { .. } => Some("linux.seccomp.listenerPath"),
            _ => None,
        }
    }
}

/// A short explanation of the errnos seccomp(2) gives when loading a filter. Kept to static
/// strings: this error is built in the forked child right before execve.
fn load_hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EACCES) => {
            " (without no_new_privileges the process needs CAP_SYS_ADMIN to load a filter)"
        }
        Some(libc::EINVAL) => " (the kernel does not support a requested flag or the program)",
        Some(libc::ENOMEM) => {
            " (the filters of this process would exceed the kernel's total size limit)"
        }
        Some(libc::EBUSY) => " (a seccomp listener is already installed in this process)",
        _ => "",
    }
}
