//! Checkpoint and restore of live containers with CRIU, as runc does them: CRIU is driven over
//! its RPC protocol in swrk mode (one `criu swrk FD` child per request, protobuf messages on a
//! SOCK_SEQPACKET socketpair), never through its command line.
//!
//! - [`swrk`]: the transport: spawn, request, the NOTIFY exchange (with an fd passed along for
//!   `orphan-pts-master`), the final answer. The messages are the `rust-criu` crate's (CRIU's
//!   own bindings, generated from CRIU's rpc.proto); its `Criu` driver is not used because it
//!   cannot send PRE_DUMP, `cg_root`, `evasive_devices` or `track_mem`, drops the restore
//!   answer, and leaves its socket inheritable.
//! - [`options`]: the flags of `checkpoint` and `restore`, checked before any side effect (a
//!   flag CRIU cannot honour here is an error, never silently dropped).
//! - [`mounts`]: which mounts are external to the container (binds, cgroup v1 binds, masked
//!   files, device nodes), declared on dump and mapped back on restore.
//! - [`dump`]: `checkpoint`; [`restore`]: `restore` (state directory, cgroup, CRIU, state).
//! - [`log`]: the last `Error` line of CRIU's log, for the one-line error.

mod dump;
mod log;
pub mod mounts;
pub mod options;
mod restore;
mod swrk;

use std::path::PathBuf;

use thiserror::Error;

pub use dump::checkpoint;
pub use options::{CheckpointOptions, RestoreOptions};
pub use restore::{restore, Restored};
pub use swrk::usable;

/// The file in the image directory that records what the container's stdio were at dump
/// (runc's name and format: a JSON array of the /proc/PID/fd/{0,1,2} link targets), so that
/// pipes can be handed to the restored process.
pub const DESCRIPTORS_FILE: &str = "descriptors.json";

#[derive(Debug, Error)]
pub enum CriuError {
    /// A flag or input that cannot be used, before anything was done.
    #[error("{0}")]
    Usage(String),
    #[error("{step}: cannot run CRIU {bin:?}: {source} (CRIU 4.1 or later is needed: scripts/setup-deps.sh builds it; --criu PATH names it)")]
    Spawn {
        step: &'static str,
        bin: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// CRIU answered that the request failed: its log says why.
    #[error("{step}: CRIU failed: see {}: {last}", log.display())]
    Failed {
        step: &'static str,
        log: PathBuf,
        last: String,
    },
    /// Berth's side of a NOTIFY failed (a prestart hook, the console socket): CRIU aborted.
    #[error("{step}: {msg}")]
    Aborted { step: &'static str, msg: String },
    /// The RPC exchange itself broke (CRIU died, an unreadable message).
    #[error("{step}: CRIU RPC: {msg}")]
    Rpc { step: &'static str, msg: String },
    #[error("{step}: {what}: {source}")]
    Io {
        step: &'static str,
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl CriuError {
    pub(crate) fn io(
        step: &'static str,
        what: impl Into<String>,
        source: impl Into<std::io::Error>,
    ) -> Self {
        CriuError::Io {
            step,
            what: what.into(),
            source: source.into(),
        }
    }
}

/// The CRIU binary: `--criu PATH`, else `criu` on PATH (runc's default).
pub fn binary(flag: Option<&str>) -> PathBuf {
    PathBuf::from(flag.filter(|s| !s.is_empty()).unwrap_or("criu"))
}
