//! Capabilities: the five sets of `process.capabilities`, applied in the order that works for
//! root and non-root users alike (bounding first; keep-caps across the uid switch; then
//! effective/permitted/inheritable; ambient last). No capability is inherited unless asked for
//! (the CVE-2022-27650 class). When `process.capabilities` is absent, nothing is changed, as
//! runc does.

use std::collections::HashSet;

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

fn to_caps(set: Option<&HashSet<OciCap>>) -> Result<HashSet<Cap>, String> {
    let supported = supported();
    let mut out = HashSet::new();
    for c in set.into_iter().flatten() {
        let name = format!(
            "CAP_{}",
            c.to_string().to_uppercase().trim_start_matches("CAP_")
        );
        let cap: Cap = name
            .parse()
            .map_err(|_| format!("process.capabilities: unknown capability {name:?}"))?;
        // A capability this kernel does not know cannot be granted; skip it as runc does.
        if supported.contains(&cap) {
            out.insert(cap);
        }
    }
    Ok(out)
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
