//! Rootless Berth: run by an unprivileged user, or as uid 0 of a user namespace someone else
//! made (how rootless podman calls its runtime).
//!
//! What differs from a privileged caller, one concern per file:
//! * [`mod.rs`](self): who is calling ([`Caller`]) and what `--rootless true|false|auto` makes
//!   of it ([`Setting`], [`active`]), with runc's meaning.
//! * `root_dir.rs`: the default `--root` of an unprivileged caller, `$XDG_RUNTIME_DIR/berth`.
//! * `idmap.rs`: writing `linux.uidMappings` / `gidMappings` without privileges: the caller's
//!   own ids directly (with `setgroups` denied), more through newuidmap/newgidmap and
//!   /etc/subuid, /etc/subgid; a mapping the caller may not make is refused before any side
//!   effect.
//! * `cgroup.rs`: no writable cgroup and no resources asked for: the container runs without a
//!   cgroup; resources asked for without one are refused, naming the field.
//! * `signal.rs`: `kill --all` and `ps` of a container without a cgroup.
//! * `cache.rs`: the seccomp cache of a rootless caller, in its own cache directory.
//!
//! Device nodes the user may not `mknod` are bind-mounted from the host by `linux::devices`
//! (it does so in any user namespace).

pub mod cache;
pub mod cgroup;
pub mod idmap;
pub mod root_dir;
pub mod signal;

use std::sync::OnceLock;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum RootlessError {
    /// A command-line value (`--rootless`, `--root`) that cannot be used.
    #[error("{0}")]
    Usage(String),
    /// A field of config.json a rootless caller cannot have, by its JSON path.
    #[error("{field}: {msg}")]
    Field { field: String, msg: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl RootlessError {
    pub fn field(field: impl Into<String>, msg: impl Into<String>) -> Self {
        RootlessError::Field {
            field: field.into(),
            msg: msg.into(),
        }
    }
}

/// `--rootless`: a boolean as runc parses one (Go's strconv.ParseBool), or `auto` (the default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    On,
    Off,
    Auto,
}

impl Setting {
    pub fn parse(v: Option<&str>) -> Result<Setting, RootlessError> {
        Ok(match v.unwrap_or("auto") {
            "" | "auto" => Setting::Auto,
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Setting::On,
            "0" | "f" | "F" | "false" | "FALSE" | "False" => Setting::Off,
            other => {
                return Err(RootlessError::Usage(format!(
                    "--rootless {other:?}: want true, false or auto"
                )))
            }
        })
    }
}

/// Who runs Berth, as far as privileges go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The effective uid, in Berth's own user namespace.
    pub euid: u32,
    /// Berth runs in a user namespace other than the initial one (only looked up for uid 0:
    /// every other caller is rootless anyway).
    pub in_user_namespace: bool,
}

impl Caller {
    pub fn detect() -> Caller {
        let euid = nix::unistd::geteuid().as_raw();
        Caller {
            euid,
            in_user_namespace: euid == 0 && crate::linux::devices::in_user_namespace(),
        }
    }

    /// Rootless by nature: an unprivileged user, or uid 0 of a user namespace that is not the
    /// initial one (rootless podman made it and calls Berth inside).
    pub fn is_rootless(&self) -> bool {
        self.euid != 0 || self.in_user_namespace
    }

    /// Not root in the initial user namespace: what the default `--root` depends on.
    pub fn unprivileged(&self) -> bool {
        self.euid != 0
    }
}

/// What `--rootless` decides, as runc 1.1 decides it: `true`/`false` are taken as given; `auto`
/// means rootless for a non-root caller and for uid 0 in a non-initial user namespace. Rootless
/// only changes how cgroups are treated (see `cgroup.rs`): the id maps follow from the caller's
/// privileges whatever the flag says.
pub fn decide(setting: Setting, caller: Caller) -> bool {
    match setting {
        Setting::On => true,
        Setting::Off => false,
        Setting::Auto => caller.is_rootless(),
    }
}

/// The effective capability set (CapEff of /proc/self/status), read once: the runtime's own
/// process keeps its capabilities for the whole command (only the container's processes drop
/// theirs, after the fork).
pub(crate) fn effective_caps() -> u64 {
    static CAPS: OnceLock<u64> = OnceLock::new();
    *CAPS.get_or_init(|| {
        crate::linux::procfs::read_pseudo("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("CapEff:"))
                    .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            })
            .unwrap_or(0)
    })
}

/// Whether this process may make mounts in its own mount namespace (CAP_SYS_ADMIN in the user
/// namespace that owns it, which is its own: root, or uid 0 of rootless podman's namespace). An
/// unprivileged user may not: the bind sources of its container are cloned by the container's
/// init, inside the user namespace it owns, as runc's rootless init does.
pub fn may_mount_here() -> bool {
    const CAP_SYS_ADMIN: u32 = 21;
    effective_caps() & (1 << CAP_SYS_ADMIN) != 0
}

static SETTING: OnceLock<Setting> = OnceLock::new();
static ACTIVE: OnceLock<bool> = OnceLock::new();

/// Records `--rootless` (once, before the command runs). What it means is worked out when first
/// asked ([`active`]): most commands never need to know.
pub fn set_setting(s: Setting) {
    let _ = SETTING.set(s);
}

/// Whether this command runs in rootless mode: `--rootless` as [`decide`] reads it (`auto`
/// when it was not given).
pub fn active() -> bool {
    *ACTIVE.get_or_init(|| {
        let on = decide(
            SETTING.get().copied().unwrap_or(Setting::Auto),
            Caller::detect(),
        );
        crate::logging::debug_with(|| format!("rootless mode: {on}"));
        on
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rootless_flag_parses_as_runc_parses_it() {
        assert_eq!(Setting::parse(None).unwrap(), Setting::Auto);
        assert_eq!(Setting::parse(Some("auto")).unwrap(), Setting::Auto);
        for t in ["true", "1", "T", "TRUE", "True", "t"] {
            assert_eq!(Setting::parse(Some(t)).unwrap(), Setting::On, "{t}");
        }
        for f in ["false", "0", "F", "FALSE", "False", "f"] {
            assert_eq!(Setting::parse(Some(f)).unwrap(), Setting::Off, "{f}");
        }
        let e = Setting::parse(Some("yes")).unwrap_err().to_string();
        assert!(e.starts_with("--rootless \"yes\":"), "{e}");
    }

    #[test]
    fn auto_detects_unprivileged_callers_and_root_in_a_user_namespace() {
        let host_root = Caller {
            euid: 0,
            in_user_namespace: false,
        };
        let user = Caller {
            euid: 1000,
            in_user_namespace: false,
        };
        let podman = Caller {
            euid: 0,
            in_user_namespace: true,
        };
        assert!(!decide(Setting::Auto, host_root));
        assert!(decide(Setting::Auto, user));
        assert!(decide(Setting::Auto, podman));
        assert!(decide(Setting::On, host_root));
        assert!(!decide(Setting::Off, user));
        assert!(!podman.unprivileged() && user.unprivileged());
    }
}
