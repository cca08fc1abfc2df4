//! Containers on disk: one directory per container under `--root`, holding `state.json`
//! (written atomically), a copy of the container's `config.json`, and while the container is
//! `created`, the `start.sock` its init waits on. A per-container `flock` serialises commands.

pub mod lifecycle;
mod state;

pub use state::{
    list, proc_stat, read_stat, remove_interrupted_new_dirs, Container, Listed, Status,
    StoredState, CONFIG_FILE,
};

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum StateError {
    #[error(
        "invalid container id {0:?}: use letters, digits, '_', '+', '-' and '.' (not '.' or '..')"
    )]
    InvalidId(String),
    #[error("container {0:?} does not exist")]
    NotFound(String),
    #[error("container {0:?} already exists")]
    Exists(String),
    #[error("container {id:?} is {status}: cannot {op} it{hint}")]
    WrongState {
        id: String,
        status: Status,
        op: &'static str,
        hint: &'static str,
    },
    /// `start` refused, in runc's words.
    #[error("container {id:?}: {why}")]
    CannotStart { id: String, why: String },
    #[error("{what} {path:?}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A directory without state.json: its create was killed half-way.
    #[error(
        "container {0:?}: its create was interrupted (no state.json); remove it with `berth delete --force {0}`"
    )]
    Interrupted(String),
    #[error("state of container {id:?} is corrupt ({path:?}): {msg}")]
    Corrupt {
        id: String,
        path: PathBuf,
        msg: String,
    },
}

/// runc's id rule: `^[\w+\-.]+$`, not "." nor "..".
pub fn validate_id(id: &str) -> Result<(), StateError> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id.len() <= 1024
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(StateError::InvalidId(id.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_runc_rules() {
        for ok in ["a", "abc-1_2.3+4", "X"] {
            assert!(validate_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "../x", "é"] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }
}
