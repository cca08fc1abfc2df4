//! Capabilities: the five sets of `process.capabilities`, applied in the order that works for
//! root and non-root users alike (bounding first; keep-caps across the uid switch; then
//! effective/permitted/inheritable; ambient last). No capability is inherited unless asked for
//! (the CVE-2022-27650 class). When `process.capabilities` is absent, nothing is changed, as
//! runc does.

use std::collections::{BTreeSet, HashSet};

use caps::{CapSet, Capability as Cap};
use oci_spec::runtime::{Capability as OciCap, LinuxCapabilities};

/// The capabilities this kernel knows, computed once per process (one read of
/// /proc/sys/kernel/cap_last_cap, or probing with prctl where that fails). `prime` runs it before
/// the fork, so the child (whose /proc is the container's) inherits the answer.
fn supported() -> &'static HashSet<Cap> {
    static SUPPORTED: std::sync::OnceLock<HashSet<Cap>> = std::sync::OnceLock::new();
    SUPPORTED.get_or_init(|| {
        caps::runtime::procfs_all_supported(None)
            .unwrap_or_else(|_| caps::runtime::thread_all_supported())
    })
}

/// Computes what the child will need before it is forked.
pub fn prime() {
    let _ = supported();
}

/// `c` as this kernel knows it, or None: a capability the caps crate does not name, or one
/// above the kernel's cap_last_cap.
fn available(c: &OciCap, supported: &HashSet<Cap>) -> Option<Cap> {
    let name = format!(
        "CAP_{}",
        c.to_string().to_uppercase().trim_start_matches("CAP_")
    );
    name.parse().ok().filter(|cap| supported.contains(cap))
}

fn to_caps(set: Option<&HashSet<OciCap>>) -> Result<HashSet<Cap>, String> {
    let supported = supported();
    // A capability this kernel does not have cannot be granted: skipped as runc skips it
    // (`warn_ignored` named it before the container was made).
    Ok(set
        .into_iter()
        .flatten()
        .filter_map(|c| available(c, supported))
        .collect())
}

/// Warns once, in runc's words, of the capability names that are ignored: `unknown` (names the
/// config parser dropped: see `config::parse_object_keeping`), and those of `caps` this kernel
/// does not have. Sorted, each once, as runc lists them.
pub fn warn_ignored(unknown: &[String], caps: Option<&LinuxCapabilities>) {
    let names = ignored(unknown, caps, supported());
    if !names.is_empty() {
        crate::logging::warn(format!(
            "ignoring unknown or unavailable capabilities: [{}]",
            names.join(" ")
        ));
    }
}

fn ignored(
    unknown: &[String],
    caps: Option<&LinuxCapabilities>,
    supported: &HashSet<Cap>,
) -> Vec<String> {
    let mut names: BTreeSet<String> = unknown.iter().cloned().collect();
    if let Some(c) = caps {
        for set in [
            c.bounding(),
            c.effective(),
            c.inheritable(),
            c.permitted(),
            c.ambient(),
        ] {
            for cap in set.iter().flatten() {
                if available(cap, supported).is_none() {
                    names.insert(crate::config::spec_name(cap).trim_matches('"').to_string());
                }
            }
        }
    }
    names.into_iter().collect()
}

/// Drops every capability not in `bounding` from the bounding set (needs CAP_SETPCAP, so it runs
/// before the identity switch).
pub fn apply_bounding(c: Option<&LinuxCapabilities>) -> Result<(), String> {
    let Some(c) = c else { return Ok(()) };
    let keep = to_caps(c.bounding().as_ref())?;
    for &cap in supported() {
        if !keep.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap)
                .map_err(|e| format!("process.capabilities.bounding: drop {cap}: {e}"))?;
        }
    }
    Ok(())
}

/// PR_SET_KEEPCAPS: keep permitted capabilities across setuid to a non-zero uid.
pub fn keep_caps(on: bool) -> Result<(), String> {
    // SAFETY: prctl with integer arguments only.
    let r = unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, on as libc::c_ulong, 0, 0, 0) };
    if r != 0 {
        return Err(format!(
            "prctl(PR_SET_KEEPCAPS): {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Sets permitted, inheritable and effective, then raises ambient.
pub fn apply(c: Option<&LinuxCapabilities>) -> Result<(), String> {
    let Some(c) = c else { return Ok(()) };
    let permitted = to_caps(c.permitted().as_ref())?;
    let inheritable = to_caps(c.inheritable().as_ref())?;
    let effective = to_caps(c.effective().as_ref())?;
    let ambient = to_caps(c.ambient().as_ref())?;
    // Order matters: effective must stay a subset of permitted at every step.
    caps::set(None, CapSet::Effective, &HashSet::new())
        .map_err(|e| format!("process.capabilities.effective: {e}"))?;
    caps::set(None, CapSet::Inheritable, &inheritable)
        .map_err(|e| format!("process.capabilities.inheritable: {e}"))?;
    caps::set(None, CapSet::Permitted, &permitted)
        .map_err(|e| format!("process.capabilities.permitted: {e}"))?;
    caps::set(None, CapSet::Effective, &effective)
        .map_err(|e| format!("process.capabilities.effective: {e}"))?;
    caps::clear(None, CapSet::Ambient).map_err(|e| format!("process.capabilities.ambient: {e}"))?;
    for cap in ambient {
        // Ambient needs the capability in both permitted and inheritable.
        if permitted.contains(&cap) && inheritable.contains(&cap) {
            caps::raise(None, CapSet::Ambient, cap)
                .map_err(|e| format!("process.capabilities.ambient: raise {cap}: {e}"))?;
        } else {
            crate::logging::debug(format!(
                "process.capabilities.ambient: {cap} ignored: not in both permitted and inheritable"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignored_names_are_the_unknown_and_the_unavailable_sorted_once() {
        let c: LinuxCapabilities = serde_json::from_str(
            r#"{"bounding":["CAP_CHOWN","CAP_BPF"],"effective":["CAP_BPF","CAP_KILL"]}"#,
        )
        .unwrap();
        // A kernel older than CAP_BPF (5.8): only chown and kill.
        let old: HashSet<Cap> = [Cap::CAP_CHOWN, Cap::CAP_KILL].into();
        let unknown = ["CAP_ZZZ".to_string(), "CAP_TEST_CAP".to_string()];
        assert_eq!(
            ignored(&unknown, Some(&c), &old),
            ["CAP_BPF", "CAP_TEST_CAP", "CAP_ZZZ"]
        );
        let all: HashSet<Cap> = [Cap::CAP_CHOWN, Cap::CAP_KILL, Cap::CAP_BPF].into();
        assert!(ignored(&[], Some(&c), &all).is_empty());
    }
}
