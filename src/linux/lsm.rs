//! AppArmor and SELinux: `process.apparmorProfile` and `process.selinuxLabel` are applied only
//! when that LSM is enabled on the host (otherwise accepted and ignored, as engines expect: they
//! only send them where the LSM exists). Which LSMs are enabled is read on the host side before
//! the fork (never from the container's /sys); the label is set for the next execve through the
//! thread's own attr file (/proc/thread-self/attr/…), opened under a verified procfs (see
//! `procfs::write_proc`).

use super::procfs::{self, ProcFile};

/// Which LSMs the host has enabled.
#[derive(Clone, Copy, Debug, Default)]
pub struct Enabled {
    pub apparmor: bool,
    pub selinux: bool,
}

impl Enabled {
    /// Looks only when `p` asks for a label (the common case costs nothing).
    pub fn detect_for(p: &oci_spec::runtime::Process) -> Enabled {
        let asks = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
        if !asks(p.apparmor_profile()) && !asks(p.selinux_label()) {
            return Enabled::default();
        }
        Enabled::detect()
    }

    pub fn detect() -> Enabled {
        Enabled {
            apparmor: std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
                .is_ok_and(|s| s.trim() == "Y"),
            selinux: nix::sys::statfs::statfs("/sys/fs/selinux")
                .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::SELINUX_MAGIC),
        }
    }
}

/// What to write where for the next exec, given which LSMs are enabled.
fn plan(
    apparmor: Option<&str>,
    selinux: Option<&str>,
    apparmor_on: bool,
    selinux_on: bool,
) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(p) = apparmor.filter(|p| !p.is_empty() && apparmor_on) {
        out.push(("attr/apparmor/exec", format!("exec {p}")));
    }
    if let Some(l) = selinux.filter(|l| !l.is_empty() && selinux_on) {
        out.push(("attr/exec", l.to_string()));
    }
    out
}

/// Sets the labels the next execve takes (in the container, after pivot_root or setns).
pub fn set_exec_labels(
    on: Enabled,
    apparmor: Option<&str>,
    selinux: Option<&str>,
) -> Result<(), String> {
    let writes = plan(apparmor, selinux, on.apparmor, on.selinux);
    if writes.is_empty() {
        if apparmor.is_some_and(|p| !p.is_empty()) || selinux.is_some_and(|l| !l.is_empty()) {
            crate::logging::debug("AppArmor/SELinux label ignored: that LSM is not enabled");
        }
        return Ok(());
    }
    for (file, value) in writes {
        procfs::write_proc(ProcFile::OwnThread(file), value.as_bytes())
            .map_err(|e| format!("set {file} to {value:?}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::plan;

    #[test]
    fn labels_apply_only_where_the_lsm_is_enabled() {
        assert!(plan(Some("docker-default"), Some("system_u:r"), false, false).is_empty());
        assert_eq!(
            plan(Some("docker-default"), None, true, false),
            vec![("attr/apparmor/exec", "exec docker-default".to_string())]
        );
        assert_eq!(
            plan(None, Some("system_u:system_r:container_t:s0"), true, true),
            vec![("attr/exec", "system_u:system_r:container_t:s0".to_string())]
        );
        assert!(plan(Some(""), Some(""), true, true).is_empty());
    }
}
