//! `berth features`' seccomp section: what this build, libseccomp and the running kernel support.

use libseccomp::{ScmpAction, ScmpArch, ScmpFilterContext};

use crate::compile::{lib_version, scmp_arch, ALL_ARCHES};
use crate::sys;

/// The seccomp part of `berth features` (the runtime spec's `features.md`). Every list is
/// probed, not hard-coded: actions by `seccomp(SECCOMP_GET_ACTION_AVAIL)`, architectures by
/// adding them to a libseccomp filter, flags by `seccomp(SECCOMP_SET_MODE_FILTER)` with no
/// program (which checks the flags and installs nothing).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Features {
    /// Seccomp support is compiled in (always true for this crate).
    pub enabled: bool,
    /// `SCMP_ACT_*` the kernel supports.
    pub actions: Vec<String>,
    /// `SCMP_CMP_*`; libseccomp implements all of them.
    pub operators: Vec<String>,
    /// `SCMP_ARCH_*` the linked libseccomp can build filters for.
    pub archs: Vec<String>,
    /// `SECCOMP_FILTER_FLAG_*` Berth knows.
    pub known_flags: Vec<String>,
    /// The known flags the kernel accepts.
    pub supported_flags: Vec<String>,
    /// The linked libseccomp, e.g. "2.5.4" (not part of the spec's object; for `--version`).
    pub libseccomp_version: String,
}

const ACTIONS: [(&str, u32); 9] = [
    ("SCMP_ACT_KILL", sys::RET_KILL_THREAD),
    ("SCMP_ACT_KILL_PROCESS", sys::RET_KILL_PROCESS),
    ("SCMP_ACT_KILL_THREAD", sys::RET_KILL_THREAD),
    ("SCMP_ACT_TRAP", sys::RET_TRAP),
    ("SCMP_ACT_ERRNO", sys::RET_ERRNO),
    ("SCMP_ACT_TRACE", sys::RET_TRACE),
    ("SCMP_ACT_ALLOW", sys::RET_ALLOW),
    ("SCMP_ACT_LOG", sys::RET_LOG),
    ("SCMP_ACT_NOTIFY", sys::RET_USER_NOTIF),
];

/// Actions every seccomp filter kernel has had (Linux 3.5+), used when the kernel predates
/// SECCOMP_GET_ACTION_AVAIL (4.14).
const BASE_ACTIONS: [u32; 5] = [
    sys::RET_KILL_THREAD,
    sys::RET_TRAP,
    sys::RET_ERRNO,
    sys::RET_TRACE,
    sys::RET_ALLOW,
];

const OPERATORS: [&str; 7] = [
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
];

/// Probes what this build and kernel support. Side-effect free (no filter is installed).
pub fn features() -> Features {
    let actions = ACTIONS
        .iter()
        .filter(|(_, ret)| {
            sys::action_available(*ret).unwrap_or_else(|| BASE_ACTIONS.contains(ret))
        })
        .map(|(n, _)| n.to_string())
        .collect();

    // One filter per architecture: libseccomp won't mix endiannesses in a filter, so probing
    // next to the native one would hide the big-endian architectures.
    let archs = ALL_ARCHES
        .iter()
        .filter(|&&a| {
            ScmpFilterContext::new(ScmpAction::Allow).is_ok_and(|mut ctx| {
                ctx.remove_arch(ScmpArch::native()).is_ok() && ctx.add_arch(scmp_arch(a)).is_ok()
            })
        })
        .map(|a| a.to_string())
        .collect();

    let supported = sys::supported_flags();
    Features {
        enabled: true,
        actions,
        operators: OPERATORS.iter().map(|s| s.to_string()).collect(),
        archs,
        known_flags: sys::ALL_FLAGS.iter().map(|(n, _)| n.to_string()).collect(),
        supported_flags: sys::ALL_FLAGS
            .iter()
            .filter(|(_, f)| supported & f != 0)
            .map(|(n, _)| n.to_string())
            .collect(),
        libseccomp_version: lib_version(),
    }
}

impl Features {
    /// The runtime spec's `seccomp` object of `features.json`, as oci-spec types.
    pub fn to_oci(&self) -> oci_spec::runtime::Seccomp {
        let mut s = oci_spec::runtime::Seccomp::default();
        s.set_enabled(Some(self.enabled))
            .set_actions(Some(
                self.actions.iter().filter_map(|a| a.parse().ok()).collect(),
            ))
            .set_operators(Some(self.operators.clone()))
            .set_archs(Some(
                self.archs.iter().filter_map(|a| a.parse().ok()).collect(),
            ))
            .set_known_flags(Some(self.known_flags.clone()))
            .set_supported_flags(Some(self.supported_flags.clone()));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_this_kernel() {
        let f = features();
        assert!(f.enabled);
        // Linux 6.x and libseccomp 2.5 know all of these.
        for a in [
            "SCMP_ACT_ALLOW",
            "SCMP_ACT_ERRNO",
            "SCMP_ACT_KILL_PROCESS",
            "SCMP_ACT_LOG",
        ] {
            assert!(f.actions.iter().any(|x| x == a), "{a} in {:?}", f.actions);
        }
        assert!(f.archs.iter().any(|x| x == "SCMP_ARCH_X86_64"));
        assert!(f.archs.iter().any(|x| x == "SCMP_ARCH_AARCH64"));
        assert!(
            f.archs.iter().any(|x| x == "SCMP_ARCH_S390X"),
            "big-endian too"
        );
        assert_eq!(f.known_flags.len(), 4);
        assert!(f
            .supported_flags
            .iter()
            .any(|x| x == "SECCOMP_FILTER_FLAG_LOG"));
        let oci = f.to_oci();
        assert_eq!(oci.actions().as_ref().unwrap().len(), f.actions.len());
        assert_eq!(oci.archs().as_ref().unwrap().len(), f.archs.len());
    }
}
