//! Validation of `linux.seccomp` and its conversion to libseccomp terms (a [`Plan`]).
//!
//! oci-spec's serde already refuses unknown action, operator, architecture and flag names, so
//! what is left here are the semantic rules of the runtime spec and of runc:
//!
//! * `defaultAction` may not be `SCMP_ACT_NOTIFY`, and no rule may notify on `write` (runc: the
//!   runtime itself must still be able to run once the filter is in place);
//! * `errnoRet`/`defaultErrnoRet` only go with `SCMP_ACT_ERRNO` and `SCMP_ACT_TRACE` (the spec:
//!   "the runtime MUST print an error and fail"); an errno must be one the kernel can return
//!   (0..=4095), a trace value must fit its 16 bits; both default to EPERM;
//! * `names` has at least one entry and no empty name; an argument index is 0..=5;
//! * `listenerPath` is required once a rule uses `SCMP_ACT_NOTIFY`, and `listenerMetadata` needs
//!   `listenerPath`.
//!
//! * the profile expands to at most [`MAX_RULES`] rules per architecture in all (see there: a
//!   bound of Berth's own, on libseccomp's compile time).
//!
//! What is *not* an error, as in runc: syscall names libseccomp does not know (skipped, with a
//! note), rules whose action equals the default action (skipped: libseccomp refuses them), and
//! `valueTwo` on operators other than `SCMP_CMP_MASKED_EQ` (ignored).

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator,
};

use crate::SeccompError;

/// Linux syscalls have at most six arguments.
const MAX_ARGS: usize = 6;
/// The kernel caps the errno of SECCOMP_RET_ERRNO at MAX_ERRNO.
const MAX_ERRNO: u32 = 4095;

/// The most rules, counted once per architecture of the filter, that a profile may hand
/// libseccomp (see [`Plan::rules`]). libseccomp's time to build a filter grows with the
/// square of that number. Measured with berth-seccomp's `compile` (release build, 2-core VM
/// loaded by other builds, so high), one syscall name per rule with one argument condition
/// unless said:
///
/// | rules × architectures                         | compile time |
/// |-----------------------------------------------|-------------:|
/// | 1,071 (357 names × 3: docker 20.10's default) |        12 ms |
/// | 4,095 (1,365 × 3)                             |      0.19 s  |
/// | 8,190 (2,730 × 3)                             |      0.73 s  |
/// | 8,192 (8,192 × 1)                             |      1.0 s   |
/// | 12,000 (4,000 × 3)                            |      2.1 s   |
/// | 16,383 (5,461 × 3)                            |      2.9 s   |
/// | 20,000 (2,000 × 10)                           |  2.0–5.4 s   |
/// | 40,000 (4,000 × 10)                           |      9.3 s   |
/// | 160,000 (16,000 names, no conditions, × 10)   |       40 s   |
///
/// Docker's and podman's default profiles (357 and 434 rules, for x86_64, x86 and x32: 1,071
/// and 1,302) stay 6 to 8 times below the bound; above it a profile is refused instead of
/// holding the runtime for seconds to minutes.
pub(crate) const MAX_RULES: usize = 8192;

/// A validated profile, in libseccomp's terms, borrowing the profile's strings.
#[derive(Debug)]
pub(crate) struct Plan<'a> {
    pub default: ScmpAction,
    /// The default action lets syscalls through (ALLOW, LOG, TRACE): no ENOSYS stub then.
    pub default_permissive: bool,
    /// The default action already answers ENOSYS: no ENOSYS stub needed.
    pub default_is_enosys: bool,
    /// `architectures`, with their index in the profile.
    pub arches: Vec<(usize, Arch)>,
    /// `flags`; `None` when the field is absent (which is not the same as `[]`, see lib.rs).
    pub flags: Option<Vec<(usize, LinuxSeccompFilterFlag)>>,
    pub entries: Vec<Entry<'a>>,
    /// Some rule uses SCMP_ACT_NOTIFY.
    pub notify: bool,
}

impl Plan<'_> {
    /// The rules `compile` hands libseccomp: for each entry whose action is not the default
    /// one, each name once, or once per condition when the conditions are split (names
    /// libseccomp does not know are counted too: they are only skipped when compiling).
    pub fn rules(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| !e.same_as_default)
            .map(|e| {
                let per_name = if e.split { e.conds.len() } else { 1 };
                e.names.len().saturating_mul(per_name)
            })
            .fold(0, usize::saturating_add)
    }

    /// The architectures of the filter: the native one and those of the profile, each once.
    pub fn architectures(&self) -> usize {
        let concrete = |a: ScmpArch| {
            if a == ScmpArch::Native {
                ScmpArch::native()
            } else {
                a
            }
        };
        let mut all = vec![ScmpArch::native()];
        for &(_, a) in &self.arches {
            let a = concrete(crate::compile::scmp_arch(a));
            if !all.contains(&a) {
                all.push(a);
            }
        }
        all.len()
    }
}

/// One `syscalls[i]` entry.
#[derive(Debug)]
pub(crate) struct Entry<'a> {
    /// `i`, for error paths and notes.
    pub at: usize,
    pub names: Vec<&'a str>,
    pub action: ScmpAction,
    /// The action equals the default action: the entry adds nothing and is skipped.
    pub same_as_default: bool,
    pub conds: Vec<ScmpArgCompare>,
    /// Several conditions test the same argument. libseccomp cannot AND those in one rule, so,
    /// like runc, each condition becomes a rule of its own (the conditions are then ORed).
    pub split: bool,
}

pub(crate) fn validate(p: &LinuxSeccomp) -> Result<Plan<'_>, SeccompError> {
    let default_oci = p.default_action();
    if default_oci == LinuxSeccompAction::ScmpActNotify {
        return Err(SeccompError::invalid(
            "linux.seccomp.defaultAction",
            "SCMP_ACT_NOTIFY cannot be the default action: the runtime's own syscalls after \
             loading the filter (handing the notify fd over, execve) would wait for an agent \
             that does not have the fd yet",
        ));
    }
    let default = action(
        default_oci,
        p.default_errno_ret(),
        "linux.seccomp.defaultErrnoRet",
        "defaultAction",
    )?;

    let listener_set = p
        .listener_path()
        .as_ref()
        .is_some_and(|l| !l.as_os_str().is_empty());
    if p.listener_metadata().is_some() && !listener_set {
        return Err(SeccompError::invalid(
            "linux.seccomp.listenerMetadata",
            "may only be set together with listenerPath",
        ));
    }

    let arches = p
        .architectures()
        .iter()
        .flatten()
        .copied()
        .enumerate()
        .collect();
    let flags = p
        .flags()
        .as_ref()
        .map(|f| f.iter().copied().enumerate().collect());

    let mut entries = Vec::new();
    let mut first_notify = None;
    for (i, s) in p.syscalls().iter().flatten().enumerate() {
        let at = format!("linux.seccomp.syscalls[{i}]");
        if s.names().is_empty() {
            return Err(SeccompError::invalid(
                format!("{at}.names"),
                "must name at least one syscall",
            ));
        }
        let mut names = Vec::with_capacity(s.names().len());
        for (j, n) in s.names().iter().enumerate() {
            if n.is_empty() {
                return Err(SeccompError::invalid(
                    format!("{at}.names[{j}]"),
                    "empty syscall name",
                ));
            }
            if n.contains('\0') {
                return Err(SeccompError::invalid(
                    format!("{at}.names[{j}]"),
                    "syscall name contains a NUL byte",
                ));
            }
            names.push(n.as_str());
        }
        let act = action(
            s.action(),
            s.errno_ret(),
            &format!("{at}.errnoRet"),
            "action",
        )?;
        if s.action() == LinuxSeccompAction::ScmpActNotify && first_notify.is_none() {
            first_notify = Some(i);
        }

        let args = s.args().as_deref().unwrap_or_default();
        let mut per_index = [0usize; MAX_ARGS];
        let mut conds = Vec::with_capacity(args.len());
        for (k, a) in args.iter().enumerate() {
            let index = a.index();
            if index >= MAX_ARGS {
                return Err(SeccompError::invalid(
                    format!("{at}.args[{k}].index"),
                    format!("{index} is out of range: a syscall has arguments 0 to 5"),
                ));
            }
            per_index[index] += 1;
            conds.push(condition(a));
        }
        entries.push(Entry {
            at: i,
            names,
            action: act,
            same_as_default: act == default,
            conds,
            split: per_index.iter().any(|&n| n > 1),
        });
    }

    let plan = Plan {
        default,
        default_permissive: matches!(
            default_oci,
            LinuxSeccompAction::ScmpActAllow
                | LinuxSeccompAction::ScmpActLog
                | LinuxSeccompAction::ScmpActTrace
        ),
        default_is_enosys: default == ScmpAction::Errno(libc::ENOSYS),
        arches,
        flags,
        entries,
        notify: first_notify.is_some(),
    };
    let (rules, arches) = (plan.rules(), plan.architectures());
    let total = rules.saturating_mul(arches);
    if total > MAX_RULES {
        return Err(SeccompError::invalid(
            "linux.seccomp.syscalls",
            format!(
                "{rules} rules (syscall names, times their conditions where split) for {arches} \
                 architectures make {total}, at most {MAX_RULES} are accepted: libseccomp's \
                 compile time grows with the square of that number"
            ),
        ));
    }

    if let Some(i) = first_notify {
        if !listener_set {
            return Err(SeccompError::invalid(
                "linux.seccomp.listenerPath",
                format!(
                    "required: linux.seccomp.syscalls[{i}].action is SCMP_ACT_NOTIFY, and its \
                     notify fd must be sent to a seccomp agent"
                ),
            ));
        }
    }

    Ok(plan)
}

/// An OCI action and its errno/trace value in libseccomp's terms (as runc maps them: KILL is
/// KILL_THREAD, ERRNO and TRACE default to EPERM).
fn action(
    a: LinuxSeccompAction,
    errno: Option<u32>,
    errno_path: &str,
    action_field: &str,
) -> Result<ScmpAction, SeccompError> {
    use LinuxSeccompAction::*;
    if let Some(e) = errno {
        match a {
            ScmpActErrno if e > MAX_ERRNO => {
                return Err(SeccompError::invalid(
                    errno_path,
                    format!("{e} is not an errno the kernel can return (0 to {MAX_ERRNO})"),
                ))
            }
            ScmpActTrace if e > u32::from(u16::MAX) => {
                return Err(SeccompError::invalid(
                    errno_path,
                    format!("{e} does not fit the 16 bits SCMP_ACT_TRACE passes to the tracer"),
                ))
            }
            ScmpActErrno | ScmpActTrace => {}
            other => {
                return Err(SeccompError::invalid(
                    errno_path,
                    format!(
                        "only valid when {action_field} is SCMP_ACT_ERRNO or SCMP_ACT_TRACE, \
                         not {other}"
                    ),
                ))
            }
        }
    }
    let eperm = libc::EPERM as u32;
    Ok(match a {
        ScmpActKill | ScmpActKillThread => ScmpAction::KillThread,
        ScmpActKillProcess => ScmpAction::KillProcess,
        ScmpActTrap => ScmpAction::Trap,
        // Range-checked above: at most 4095.
        ScmpActErrno => ScmpAction::Errno(errno.unwrap_or(eperm) as i32),
        // Range-checked above: fits u16.
        ScmpActTrace => ScmpAction::Trace(errno.unwrap_or(eperm) as u16),
        ScmpActLog => ScmpAction::Log,
        ScmpActAllow => ScmpAction::Allow,
        ScmpActNotify => ScmpAction::Notify,
    })
}

/// One argument condition. For SCMP_CMP_MASKED_EQ, `value` is the mask and `valueTwo` the value
/// the masked argument must equal (`(arg & value) == valueTwo`), as in runc and libseccomp.
fn condition(a: &LinuxSeccompArg) -> ScmpArgCompare {
    use LinuxSeccompOperator::*;
    // `index` was checked to be < 6.
    let index = a.index() as u32;
    let op = match a.op() {
        ScmpCmpNe => ScmpCompareOp::NotEqual,
        ScmpCmpLt => ScmpCompareOp::Less,
        ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        ScmpCmpEq => ScmpCompareOp::Equal,
        ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        ScmpCmpGt => ScmpCompareOp::Greater,
        ScmpCmpMaskedEq => {
            return ScmpArgCompare::new(
                index,
                ScmpCompareOp::MaskedEqual(a.value()),
                a.value_two().unwrap_or(0),
            )
        }
    };
    ScmpArgCompare::new(index, op, a.value())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> LinuxSeccomp {
        serde_json::from_str(json).unwrap()
    }

    fn err(json: &str) -> String {
        validate(&parse(json)).unwrap_err().to_string()
    }

    #[test]
    fn errno_defaults_to_eperm_and_kill_is_kill_thread() {
        let p = parse(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
                {"names":["a"],"action":"SCMP_ACT_KILL"},
                {"names":["b"],"action":"SCMP_ACT_TRACE"},
                {"names":["c"],"action":"SCMP_ACT_ERRNO","errnoRet":38}]}"#,
        );
        let plan = validate(&p).unwrap();
        assert_eq!(plan.default, ScmpAction::Errno(libc::EPERM));
        assert_eq!(plan.entries[0].action, ScmpAction::KillThread);
        assert_eq!(
            plan.entries[1].action,
            ScmpAction::Trace(libc::EPERM as u16)
        );
        assert_eq!(plan.entries[2].action, ScmpAction::Errno(38));
        assert!(!plan.default_permissive && !plan.default_is_enosys);
    }

    #[test]
    fn same_action_as_default_is_marked_not_refused() {
        let p = parse(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":1,"syscalls":[
                {"names":["a"],"action":"SCMP_ACT_ERRNO"},
                {"names":["b"],"action":"SCMP_ACT_ERRNO","errnoRet":2}]}"#,
        );
        let plan = validate(&p).unwrap();
        assert!(plan.entries[0].same_as_default);
        assert!(!plan.entries[1].same_as_default);
    }

    #[test]
    fn repeated_argument_index_splits_the_rule() {
        let p = parse(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
                {"names":["a"],"action":"SCMP_ACT_ERRNO","args":[
                    {"index":0,"value":1,"op":"SCMP_CMP_EQ"},{"index":1,"value":1,"op":"SCMP_CMP_EQ"}]},
                {"names":["b"],"action":"SCMP_ACT_ERRNO","args":[
                    {"index":0,"value":1,"op":"SCMP_CMP_EQ"},{"index":0,"value":2,"op":"SCMP_CMP_EQ"}]}]}"#,
        );
        let plan = validate(&p).unwrap();
        assert!(!plan.entries[0].split);
        assert!(plan.entries[1].split);
    }

    #[test]
    fn errors_name_the_json_path() {
        assert_eq!(
            err(r#"{"defaultAction":"SCMP_ACT_NOTIFY","listenerPath":"/x"}"#)
                .split(':')
                .next(),
            Some("linux.seccomp.defaultAction")
        );
        assert!(
            err(r#"{"defaultAction":"SCMP_ACT_KILL","defaultErrnoRet":1}"#)
                .starts_with("linux.seccomp.defaultErrnoRet: only valid when defaultAction")
        );
        assert!(
            err(r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":5000}"#)
                .starts_with("linux.seccomp.defaultErrnoRet: 5000 is not an errno")
        );
        assert!(err(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
                {"names":["a"],"action":"SCMP_ACT_ERRNO"},
                {"names":[],"action":"SCMP_ACT_ERRNO"}]}"#)
        .starts_with("linux.seccomp.syscalls[1].names: must name"));
        assert!(err(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
                {"names":["a","b",""],"action":"SCMP_ACT_ERRNO"}]}"#)
        .starts_with("linux.seccomp.syscalls[0].names[2]: empty"));
        assert!(err(r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
                {"names":["a"],"action":"SCMP_ACT_ALLOW","errnoRet":1}]}"#)
        .starts_with(
            "linux.seccomp.syscalls[0].errnoRet: only valid when action is SCMP_ACT_ERRNO or \
             SCMP_ACT_TRACE, not SCMP_ACT_ALLOW"
        ));
        assert!(err(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
                {"names":["a"],"action":"SCMP_ACT_TRACE","errnoRet":70000}]}"#)
        .starts_with("linux.seccomp.syscalls[0].errnoRet: 70000 does not fit"));
        assert!(err(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
                {"names":["a"],"action":"SCMP_ACT_ERRNO"},
                {"names":["a"],"action":"SCMP_ACT_ERRNO"},
                {"names":["a"],"action":"SCMP_ACT_ERRNO","args":[
                    {"index":1,"value":1,"op":"SCMP_CMP_EQ"},{"index":6,"value":1,"op":"SCMP_CMP_EQ"}]}]}"#)
        .starts_with("linux.seccomp.syscalls[2].args[1].index: 6 is out of range"));
        assert!(err(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
                {"names":["mkdir"],"action":"SCMP_ACT_NOTIFY"}]}"#)
        .starts_with("linux.seccomp.listenerPath: required: linux.seccomp.syscalls[0].action"));
        assert!(
            err(r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerMetadata":"m"}"#)
                .starts_with("linux.seccomp.listenerMetadata: ")
        );
    }

    /// A profile with one entry of `names` (each `name`) and `conds` conditions on argument 0,
    /// for the architectures `arches`.
    fn sized(name: &str, names: usize, conds: usize, arches: &[&str]) -> LinuxSeccomp {
        let args: Vec<_> = (0..conds)
            .map(|v| serde_json::json!({"index": 0, "value": v, "op": "SCMP_CMP_EQ"}))
            .collect();
        parse(
            &serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO", "architectures": arches,
                "syscalls": [{"names": vec![name; names], "action": "SCMP_ACT_ALLOW",
                              "args": args}]})
            .to_string(),
        )
    }

    #[test]
    fn rules_are_bounded_per_architecture() {
        const X86: [&str; 3] = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"];
        // 2,730 names × 3 architectures = 8,190: accepted; 2,731 make 8,193.
        let plan_of = |p: &LinuxSeccomp| {
            let plan = validate(p).unwrap();
            (plan.rules(), plan.architectures())
        };
        assert_eq!(plan_of(&sized("read", 2730, 0, &X86)), (2730, 3));
        assert_eq!(
            validate(&sized("read", 2731, 0, &X86))
                .unwrap_err()
                .to_string(),
            "linux.seccomp.syscalls: 2731 rules (syscall names, times their conditions where \
             split) for 3 architectures make 8193, at most 8192 are accepted: libseccomp's \
             compile time grows with the square of that number"
        );
        // The native architecture is always in the filter, and counted once.
        assert_eq!(plan_of(&sized("read", 8192, 0, &[])), (8192, 1));
        assert_eq!(
            plan_of(&sized(
                "read",
                1,
                0,
                &["SCMP_ARCH_NATIVE", "SCMP_ARCH_X86_64"]
            )),
            (1, 1)
        );
        assert!(validate(&sized("read", 8193, 0, &[])).is_err());
        // Conditions on one argument are split: one rule each, per name.
        assert_eq!(plan_of(&sized("ioctl", 2, 2, &[])), (4, 1));
        assert_eq!(plan_of(&sized("ioctl", 1, 8192, &[])), (8192, 1));
        let e = validate(&sized("ioctl", 91, 91, &[])).unwrap_err();
        assert!(e.to_string().contains("8281 rules"), "{e}");
        // Entries with the default action are skipped, not handed to libseccomp.
        let same = parse(
            &serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
                {"names": vec!["read"; 20_000], "action": "SCMP_ACT_ERRNO"}]})
            .to_string(),
        );
        assert_eq!(plan_of(&same), (0, 1));
    }

    #[test]
    fn the_engines_default_profiles_are_far_below_the_rule_bound() {
        for f in ["docker-20.10-default.json", "podman-4.3-default.json"] {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");
            let p: LinuxSeccomp =
                serde_json::from_slice(&std::fs::read(format!("{path}{f}")).unwrap()).unwrap();
            let plan = validate(&p).unwrap();
            let total = plan.rules() * plan.architectures();
            eprintln!(
                "{f}: {} rules × {} architectures = {total}",
                plan.rules(),
                plan.architectures()
            );
            assert!(total * 5 < MAX_RULES, "{f}: {total}");
        }
    }

    #[test]
    fn notify_with_listener_and_masked_eq_are_fine() {
        let p = parse(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/run/agent.sock",
                "listenerMetadata":"m","syscalls":[
                {"names":["mkdir"],"action":"SCMP_ACT_NOTIFY"},
                {"names":["clone"],"action":"SCMP_ACT_ERRNO","args":[
                    {"index":0,"value":2114060288,"valueTwo":0,"op":"SCMP_CMP_MASKED_EQ"}]}]}"#,
        );
        let plan = validate(&p).unwrap();
        assert!(plan.notify);
        assert_eq!(
            plan.entries[1].conds[0],
            ScmpArgCompare::new(0, ScmpCompareOp::MaskedEqual(2114060288), 0)
        );
    }
}
