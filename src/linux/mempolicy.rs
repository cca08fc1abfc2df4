//! `linux.memoryPolicy` (runtime-spec 1.3): the NUMA memory policy of the container's processes,
//! set with set_mempolicy(2) by the init before it execs (and by `exec` before it forks the new
//! process: a policy is inherited across fork and execve, as runc applies it to both).
//!
//! Checked at `create` before any side effect: `nodes` in the kernel's node-list syntax
//! (`0-3,5`), no nodes for the modes that take none, some for those that need them, and the two
//! node-numbering flags not together. The mode and flag names themselves are checked by the
//! typed parse (`linux.memoryPolicy.mode: unknown value …`).
//!
//! Nodes this host does not have are left to the kernel, as runc 1.3 does: it keeps the nodes
//! that exist (and that the cpuset allows) and refuses with EINVAL only when none is left; that
//! refusal fails `create` with an error naming the field and the nodes this host allows.

use oci_spec::runtime::{LinuxMemoryPolicy, MemoryPolicyFlagType as F, MemoryPolicyModeType as M};

/// The highest node number a mask may hold: the kernel reads at most a page of bits.
const MAX_NODE: u32 = 4096 * 8 - 2;

fn mode_number(m: M) -> i32 {
    match m {
        M::MpolDefault => 0,
        M::MpolPreferred => 1,
        M::MpolBind => 2,
        M::MpolInterleave => 3,
        M::MpolLocal => 4,
        M::MpolPreferredMany => 5,
        M::MpolWeightedInterleave => 6,
    }
}

fn flag_bits(f: F) -> i32 {
    match f {
        F::MpolFStaticNodes => 1 << 15,
        F::MpolFRelativeNodes => 1 << 14,
        F::MpolFNumaBalancing => 1 << 13,
    }
}

/// The spec's name of a mode, as config.json spells it.
fn mode_name(m: M) -> String {
    crate::config::spec_name(&m).trim_matches('"').to_string()
}

/// Parses a node list (`0-3,5`; empty means no node) into node numbers, sorted and unique.
pub fn parse_nodes(s: &str) -> Result<Vec<u32>, String> {
    let mut nodes = Vec::new();
    if s.trim().is_empty() {
        return Ok(nodes);
    }
    for part in s.split(',') {
        let part = part.trim();
        let num = |t: &str| -> Result<u32, String> {
            let t = t.trim();
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "{part:?} is not a node number or range (like 0-3,5)"
                ));
            }
            match t.parse::<u32>() {
                Ok(n) if n <= MAX_NODE => Ok(n),
                _ => Err(format!("node {t} is too large (at most {MAX_NODE})")),
            }
        };
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let n = num(part)?;
                (n, n)
            }
        };
        if lo > hi {
            return Err(format!("range {part:?} ends before it starts"));
        }
        nodes.extend(lo..=hi);
    }
    nodes.sort_unstable();
    nodes.dedup();
    Ok(nodes)
}

/// Checks `linux.memoryPolicy`; an error is (JSON path, message).
pub fn validate(p: Option<&LinuxMemoryPolicy>) -> Result<(), (String, String)> {
    let Some(p) = p else { return Ok(()) };
    const AT: &str = "linux.memoryPolicy";
    let nodes =
        parse_nodes(p.nodes().as_deref().unwrap_or("")).map_err(|m| (format!("{AT}.nodes"), m))?;
    let mode = p.mode();
    match mode {
        M::MpolDefault | M::MpolLocal if !nodes.is_empty() => {
            return Err((
                format!("{AT}.nodes"),
                format!("{} takes no nodes (got {})", mode_name(mode), nodes.len()),
            ))
        }
        M::MpolBind | M::MpolInterleave | M::MpolWeightedInterleave | M::MpolPreferredMany
            if nodes.is_empty() =>
        {
            return Err((
                format!("{AT}.nodes"),
                format!("{} needs at least one node", mode_name(mode)),
            ))
        }
        _ => {}
    }
    let flags = p.flags().as_deref().unwrap_or_default();
    if flags.contains(&F::MpolFStaticNodes) && flags.contains(&F::MpolFRelativeNodes) {
        return Err((
            format!("{AT}.flags"),
            "MPOL_F_STATIC_NODES and MPOL_F_RELATIVE_NODES exclude each other".into(),
        ));
    }
    Ok(())
}

/// The node mask as set_mempolicy takes it: words of bits, and `maxnode` (the kernel reads
/// `maxnode - 1` bits).
fn node_mask(nodes: &[u32]) -> (Vec<libc::c_ulong>, libc::c_ulong) {
    let bits = libc::c_ulong::BITS;
    let Some(&max) = nodes.last() else {
        return (Vec::new(), 0);
    };
    let mut mask = vec![0 as libc::c_ulong; (max / bits) as usize + 1];
    for &n in nodes {
        mask[(n / bits) as usize] |= 1 << (n % bits);
    }
    let maxnode = (mask.len() as libc::c_ulong) * libc::c_ulong::from(bits) + 1;
    (mask, maxnode)
}

/// Sets the calling process's memory policy from `linux.memoryPolicy` (validated). The error
/// is one line naming the field.
pub fn apply(p: Option<&LinuxMemoryPolicy>) -> Result<(), String> {
    let Some(p) = p else { return Ok(()) };
    let text = p.nodes().as_deref().unwrap_or("");
    let nodes = parse_nodes(text).map_err(|m| format!("linux.memoryPolicy.nodes: {m}"))?;
    let flags = p
        .flags()
        .iter()
        .flatten()
        .fold(0, |acc, f| acc | flag_bits(*f));
    let (mask, maxnode) = node_mask(&nodes);
    set_mempolicy(mode_number(p.mode()) | flags, &mask, maxnode).map_err(|e| {
        let allowed = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Mems_allowed_list:"))
                    .map(|v| v.trim().to_string())
            })
            .unwrap_or_else(|| "?".into());
        let hint = if e.raw_os_error() == Some(libc::EINVAL) {
            format!(" (the memory nodes this host allows: {allowed})")
        } else {
            String::new()
        };
        format!(
            "linux.memoryPolicy: set_mempolicy({}, nodes {text:?}): {e}{hint}",
            mode_name(p.mode())
        )
    })
}

/// set_mempolicy(2) for the calling thread (Berth is single-threaded, so the process).
fn set_mempolicy(mode: i32, mask: &[libc::c_ulong], maxnode: libc::c_ulong) -> std::io::Result<()> {
    let ptr = if mask.is_empty() {
        std::ptr::null()
    } else {
        mask.as_ptr()
    };
    // SAFETY: `ptr` is null or points to `mask`, whose `mask.len()` words hold the
    // `maxnode - 1` bits the kernel reads; it outlives the call, which only reads it.
    let r = unsafe { libc::syscall(libc::SYS_set_mempolicy, mode, ptr, maxnode) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The features document's `linux.memoryPolicy`: every mode and flag Berth passes on (the
/// kernel decides, per host, what it accepts), in the spec's spelling.
pub fn features() -> (Vec<String>, Vec<String>) {
    let modes = [
        M::MpolDefault,
        M::MpolBind,
        M::MpolInterleave,
        M::MpolWeightedInterleave,
        M::MpolPreferred,
        M::MpolPreferredMany,
        M::MpolLocal,
    ];
    let flags = [
        F::MpolFNumaBalancing,
        F::MpolFRelativeNodes,
        F::MpolFStaticNodes,
    ];
    (
        modes.into_iter().map(mode_name).collect(),
        flags
            .into_iter()
            .map(|f| crate::config::spec_name(&f).trim_matches('"').to_string())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(json: &str) -> LinuxMemoryPolicy {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn node_lists_parse_like_the_kernel_s() {
        assert_eq!(parse_nodes("").unwrap(), Vec::<u32>::new());
        assert_eq!(parse_nodes("0").unwrap(), [0]);
        assert_eq!(parse_nodes("3,0-2, 2").unwrap(), [0, 1, 2, 3]);
        for bad in ["0-", "-1", "a", "1,,2", "3-1", "0-9876543210", "1 2"] {
            assert!(parse_nodes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn masks_hold_the_nodes_bits() {
        let (m, max) = node_mask(&[0, 2, 64]);
        assert_eq!(m, [0b101, 1]);
        assert_eq!(max, 129);
        assert_eq!(node_mask(&[]), (vec![], 0));
    }

    #[test]
    fn validation_names_the_field() {
        let err = |j: &str| validate(Some(&policy(j))).unwrap_err();
        assert_eq!(
            err(r#"{"mode":"MPOL_DEFAULT","nodes":"0-7"}"#),
            (
                "linux.memoryPolicy.nodes".into(),
                "MPOL_DEFAULT takes no nodes (got 8)".into()
            )
        );
        assert_eq!(err(r#"{"mode":"MPOL_BIND"}"#).0, "linux.memoryPolicy.nodes");
        assert_eq!(
            err(r#"{"mode":"MPOL_BIND","nodes":"0-9876543210"}"#).0,
            "linux.memoryPolicy.nodes"
        );
        assert_eq!(
            err(r#"{"mode":"MPOL_BIND","nodes":"0","flags":["MPOL_F_STATIC_NODES","MPOL_F_RELATIVE_NODES"]}"#).0,
            "linux.memoryPolicy.flags"
        );
        for ok in [
            r#"{"mode":"MPOL_DEFAULT"}"#,
            r#"{"mode":"MPOL_PREFERRED"}"#,
            r#"{"mode":"MPOL_INTERLEAVE","nodes":"0"}"#,
            r#"{"mode":"MPOL_BIND","nodes":"0-7","flags":["MPOL_F_STATIC_NODES"]}"#,
        ] {
            assert!(validate(Some(&policy(ok))).is_ok(), "{ok}");
        }
    }

    #[test]
    fn unknown_names_are_refused_by_the_typed_parse() {
        assert!(serde_json::from_str::<LinuxMemoryPolicy>(r#"{"mode":"INTERLEAVE"}"#).is_err());
        assert!(serde_json::from_str::<LinuxMemoryPolicy>(
            r#"{"mode":"MPOL_BIND","flags":["badflag"]}"#
        )
        .is_err());
    }
}
