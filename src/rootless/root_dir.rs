//! The default `--root`: `/run/berth` for root, `$XDG_RUNTIME_DIR/berth` for anyone else, by
//! runc's rule (runc: `/run/runc`, `$XDG_RUNTIME_DIR/runc`). uid 0 in a non-initial user
//! namespace uses `$XDG_RUNTIME_DIR` too unless `$USER` is `root`, as runc does: that is
//! rootless podman's runtime, whose /run is the host's.
//!
//! Where runc falls back to /run/runc and fails later on a permission error, Berth says at once
//! that an unprivileged caller needs `--root` or `$XDG_RUNTIME_DIR`.

use std::path::{Path, PathBuf};

use super::{Caller, RootlessError};

/// The privileged default.
pub const SYSTEM_ROOT: &str = "/run/berth";

/// The environment the rule reads, so tests can give their own.
pub struct Env {
    pub xdg_runtime_dir: Option<String>,
    pub user: Option<String>,
}

impl Env {
    pub fn current() -> Env {
        let var = |k| std::env::var_os(k).map(|v| v.to_string_lossy().into_owned());
        Env {
            xdg_runtime_dir: var("XDG_RUNTIME_DIR"),
            user: var("USER"),
        }
    }
}

/// The state root: `--root` when given, else the default for this caller, or why there is none.
/// `caller` is only asked for when no `--root` is given.
pub fn resolve(
    given: Option<&Path>,
    caller: impl FnOnce() -> Caller,
    env: &Env,
) -> Result<PathBuf, RootlessError> {
    if let Some(p) = given {
        return Ok(p.to_path_buf());
    }
    let caller = caller();
    let xdg = env.xdg_runtime_dir.as_deref().filter(|d| !d.is_empty());
    let honour = match xdg {
        None => false,
        Some(_) if caller.unprivileged() => true,
        Some(_) if !caller.in_user_namespace => false,
        Some(_) => env.user.as_deref() != Some("root"),
    };
    if !honour {
        if caller.unprivileged() {
            return Err(RootlessError::Usage(format!(
                "--root: not given, and XDG_RUNTIME_DIR is not set: uid {} may not use {SYSTEM_ROOT}; pass --root DIR (a directory of your own) or set XDG_RUNTIME_DIR",
                caller.euid
            )));
        }
        return Ok(PathBuf::from(SYSTEM_ROOT));
    }
    let xdg = Path::new(xdg.unwrap_or_default());
    let unusable = |why: String| {
        RootlessError::Usage(format!(
            "--root: not given, and XDG_RUNTIME_DIR={} {why}; pass --root DIR (a directory of your own) or fix XDG_RUNTIME_DIR",
            xdg.display()
        ))
    };
    if !xdg.is_absolute() {
        return Err(unusable("is not an absolute path".into()));
    }
    match std::fs::metadata(xdg) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(unusable("is not a directory".into())),
        Err(e) => return Err(unusable(format!("cannot be used: {e}"))),
    }
    Ok(xdg.join("berth"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: Caller = Caller {
        euid: 1000,
        in_user_namespace: false,
    };
    const ROOT: Caller = Caller {
        euid: 0,
        in_user_namespace: false,
    };
    const PODMAN: Caller = Caller {
        euid: 0,
        in_user_namespace: true,
    };

    fn env(xdg: Option<&str>, user: Option<&str>) -> Env {
        Env {
            xdg_runtime_dir: xdg.map(str::to_string),
            user: user.map(str::to_string),
        }
    }

    #[test]
    fn the_given_root_always_wins() {
        let r = resolve(Some(Path::new("/x")), || USER, &env(None, None)).unwrap();
        assert_eq!(r, Path::new("/x"));
    }

    #[test]
    fn defaults_follow_runc() {
        let xdg = tempfile::tempdir().unwrap();
        let x = xdg.path().to_str().unwrap();
        assert_eq!(
            resolve(None, || USER, &env(Some(x), None)).unwrap(),
            xdg.path().join("berth")
        );
        // Root ignores XDG_RUNTIME_DIR; root in a user namespace honours it unless USER=root.
        assert_eq!(
            resolve(None, || ROOT, &env(Some(x), Some("alice"))).unwrap(),
            Path::new(SYSTEM_ROOT)
        );
        assert_eq!(
            resolve(None, || PODMAN, &env(Some(x), Some("alice"))).unwrap(),
            xdg.path().join("berth")
        );
        assert_eq!(
            resolve(None, || PODMAN, &env(Some(x), Some("root"))).unwrap(),
            Path::new(SYSTEM_ROOT)
        );
        assert_eq!(
            resolve(None, || PODMAN, &env(None, None)).unwrap(),
            Path::new(SYSTEM_ROOT)
        );
    }

    #[test]
    fn an_unprivileged_caller_without_a_usable_xdg_dir_is_told_why() {
        for (xdg, why) in [
            (None, "XDG_RUNTIME_DIR is not set"),
            (Some(""), "XDG_RUNTIME_DIR is not set"),
            (Some("rel/dir"), "is not an absolute path"),
            (Some("/nonexistent-berth-xdg"), "cannot be used"),
            (Some("/dev/null"), "is not a directory"),
        ] {
            let e = resolve(None, || USER, &env(xdg, None))
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("--root: not given") && e.contains(why) && e.contains("--root DIR"),
                "{xdg:?}: {e}"
            );
        }
    }
}
