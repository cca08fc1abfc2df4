//! OCI hooks: each hook runs with the container's state JSON on stdin, its own args, and is
//! killed when its timeout passes. Its stdout and stderr are kept (in memfds, so a chatty hook
//! can never block) and quoted when it fails.
//!
//! What a hook inherits follows runc (the runtime-spec says nothing of it):
//! - its environment is exactly its `env` when the field is there (`[]` is an empty one), and
//!   the runtime's own environment when it is absent (runc and crun pass theirs on);
//! - its working directory is the bundle for the hooks run by the runtime (prestart,
//!   createRuntime, poststart, poststop), the container's root filesystem for createContainer
//!   ([`run_all_in`]), and the caller's otherwise;
//! - no fd of the runtime's but its stdin (the state), stdout and stderr: everything else is
//!   close-on-exec in the hook's child (runc lets some of its own through; Berth does not).

use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use oci_spec::runtime::Hook;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum HookError {
    #[error("{kind} hook #{index} ({path}): {msg}")]
    Failed {
        kind: &'static str,
        index: usize,
        path: String,
        msg: String,
    },
}

/// Runs `hooks` in order; the first failure stops the run and is returned. The working
/// directory is the one runc gives this `kind` (see the module comment).
pub fn run_all(kind: &'static str, hooks: &[Hook], state_json: &[u8]) -> Result<(), HookError> {
    run_all_at(
        kind,
        hooks,
        state_json,
        default_cwd(kind, state_json).as_deref(),
    )
}

/// [`run_all`] with `cwd` as the hooks' working directory (createContainer hooks run in the
/// container's root filesystem, as with runc).
pub fn run_all_in(
    kind: &'static str,
    hooks: &[Hook],
    state_json: &[u8],
    cwd: &Path,
) -> Result<(), HookError> {
    run_all_at(kind, hooks, state_json, Some(cwd))
}

fn run_all_at(
    kind: &'static str,
    hooks: &[Hook],
    state_json: &[u8],
    cwd: Option<&Path>,
) -> Result<(), HookError> {
    for (index, hook) in hooks.iter().enumerate() {
        crate::logging::debug_with(|| {
            format!("running {kind} hook {index}: {}", hook.path().display())
        });
        run_one(hook, state_json, cwd).map_err(|msg| HookError::Failed {
            kind,
            index,
            path: hook.path().display().to_string(),
            msg,
        })?;
    }
    Ok(())
}

/// Runs every hook of `hooks`, logging a warning for each that fails: the runtime-spec's rule for
/// poststart and poststop hooks ("the remaining hooks and lifecycle continue as if the hook had
/// succeeded").
pub fn run_all_warn(kind: &'static str, hooks: &[Hook], state_json: &[u8]) {
    let cwd = default_cwd(kind, state_json);
    for (index, hook) in hooks.iter().enumerate() {
        crate::logging::debug_with(|| {
            format!("running {kind} hook {index}: {}", hook.path().display())
        });
        if let Err(msg) = run_one(hook, state_json, cwd.as_deref()) {
            let e = HookError::Failed {
                kind,
                index,
                path: hook.path().display().to_string(),
                msg,
            };
            crate::logging::warn(e.to_string());
        }
    }
}

/// The bundle (from the state) for the hooks the runtime itself runs: runc runs prestart,
/// createRuntime and poststart there, and poststop too under `run`. (Under `runc delete`,
/// poststop inherits the caller's directory; Berth keeps the bundle, the same for every way
/// in.) None, i.e. the caller's directory, for the hooks run inside the container, and when the
/// bundle is gone.
fn default_cwd(kind: &str, state_json: &[u8]) -> Option<PathBuf> {
    if !matches!(
        kind,
        "prestart" | "createRuntime" | "poststart" | "poststop"
    ) {
        return None;
    }
    let state: serde_json::Value = serde_json::from_slice(state_json).ok()?;
    let bundle = PathBuf::from(state.get("bundle")?.as_str()?);
    bundle.is_dir().then_some(bundle)
}

fn memfd(name: &str) -> Result<std::fs::File, String> {
    use nix::sys::memfd::{memfd_create, MFdFlags};
    let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC).map_err(|e| format!("memfd: {e}"))?;
    Ok(std::fs::File::from(fd))
}

fn run_one(hook: &Hook, state_json: &[u8], cwd: Option<&Path>) -> Result<(), String> {
    let mut out = memfd("hook-stdout")?;
    let mut err = memfd("hook-stderr")?;
    let mut cmd = Command::new(hook.path());
    if let Some(args) = hook.args() {
        if let Some((argv0, rest)) = args.split_first() {
            cmd.arg0(argv0);
            cmd.args(rest);
        }
    }
    // As runc: no `env` field, the runtime's environment; an `env` field, exactly that.
    if let Some(env) = hook.env() {
        cmd.env_clear();
        for kv in env {
            if let Some((k, v)) = kv.split_once('=') {
                cmd.env(k, v);
            }
        }
    }
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    only_stdio_on_exec(&mut cmd);
    cmd.stdin(Stdio::piped())
        .stdout(out.try_clone().map_err(|e| e.to_string())?)
        .stderr(err.try_clone().map_err(|e| e.to_string())?);
    let mut child = cmd.spawn().map_err(|e| format!("cannot run: {e}"))?;
    let pidfd = crate::linux::sys::pidfd_open(child.id() as i32).map_err(|e| e.to_string())?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine (EPIPE is ignored).
        let _ = stdin.write_all(state_json);
    }
    let timeout = match hook.timeout() {
        Some(secs) => PollTimeout::try_from(secs.saturating_mul(1000)).unwrap_or(PollTimeout::MAX),
        None => PollTimeout::NONE,
    };
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    let ready = loop {
        match poll(&mut fds, timeout) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => break r.map_err(|e| format!("poll: {e}"))?,
        }
    };
    if ready == 0 {
        let _ = crate::linux::sys::pidfd_send_signal(pidfd.as_raw_fd(), libc::SIGKILL);
        let _ = child.wait();
        return Err(format!(
            "timed out after {} s",
            hook.timeout().unwrap_or_default()
        ));
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    if status.success() {
        return Ok(());
    }
    let text = |f: &mut std::fs::File| {
        let mut s = String::new();
        let _ = f.rewind();
        let _ = f.take(4096).read_to_string(&mut s);
        s.trim().to_string()
    };
    Err(format!(
        "{status}, stdout: {:?}, stderr: {:?}",
        text(&mut out),
        text(&mut err)
    ))
}

/// Makes every fd but 0, 1 and 2 close-on-exec in the hook's child, after its stdio is in
/// place: nothing of Berth's (the lock, sync sockets, fds inherited from the caller) reaches a
/// hook.
fn only_stdio_on_exec(cmd: &mut Command) {
    // SAFETY: the closure runs between fork and exec and makes one close_range(2) syscall,
    // which is async-signal-safe; it allocates nothing and touches no lock.
    unsafe {
        cmd.pre_exec(|| crate::linux::sys::cloexec_from(3));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(json: &str) -> Hook {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn hook_gets_state_on_stdin_and_only_its_env() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let h = hook(&format!(
            r#"{{"path":"/bin/sh","args":["sh","-c","cat > {0}; env | grep -v ^PWD= >> {0}"],"env":["FOO=bar"]}}"#,
            out.display()
        ));
        run_all("prestart", &[h], b"{\"id\":\"x\"}").unwrap();
        let got = std::fs::read_to_string(out).unwrap();
        assert_eq!(got, "{\"id\":\"x\"}FOO=bar\n");
    }

    #[test]
    fn failing_hook_reports_index_status_and_output() {
        let ok = hook(r#"{"path":"/bin/true"}"#);
        let bad = hook(r#"{"path":"/bin/sh","args":["sh","-c","echo oops >&2; exit 3"]}"#);
        let e = run_all("poststart", &[ok, bad], b"{}")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("poststart hook #1 (/bin/sh): exit status: 3"),
            "{e}"
        );
        assert!(e.contains("oops"), "{e}");
    }

    #[test]
    fn hook_is_killed_at_its_timeout() {
        let h = hook(r#"{"path":"/bin/sleep","args":["sleep","30"],"timeout":1}"#);
        let t = std::time::Instant::now();
        let e = run_all("createRuntime", &[h], b"{}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("timed out after 1 s"), "{e}");
        assert!(t.elapsed().as_secs() < 10);
    }

    #[test]
    fn missing_hook_binary_is_an_error() {
        let h = hook(r#"{"path":"/nonexistent/hook"}"#);
        let e = run_all("prestart", &[h], b"{}").unwrap_err().to_string();
        assert!(e.contains("cannot run"), "{e}");
    }
}
