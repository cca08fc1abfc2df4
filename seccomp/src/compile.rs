//! From a validated [`Plan`] to a BPF program: libseccomp builds the filter, exports it
//! (`seccomp_export_bpf` into a memfd), and the ENOSYS stub is put in front of it.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{FromRawFd, OwnedFd};

use libseccomp::{ScmpArch, ScmpFilterContext, ScmpSyscall, ScmpVersion};
use oci_spec::runtime::Arch;

use crate::bpf::{self, SockFilter};
use crate::enosys;
use crate::profile::Plan;
use crate::SeccompError;

/// libseccomp's binary-tree optimization pays off on long rule lists; runc turns it on above
/// 32 rules (libseccomp <= 2.5.4 misbehaves with it on an empty filter).
const OPTIMIZE_ABOVE: usize = 32;

/// The program and the debug notes made while building it.
#[derive(Debug)]
pub(crate) struct Built {
    pub program: Vec<SockFilter>,
    pub notes: Vec<String>,
}

pub(crate) fn build(plan: &Plan<'_>) -> Result<Built, SeccompError> {
    let mut notes = Vec::new();
    let lib_err = |path: String, what: String| {
        move |e: libseccomp::error::SeccompError| SeccompError::Libseccomp {
            path,
            what,
            msg: e.to_string(),
        }
    };

    let mut ctx = ScmpFilterContext::new(plan.default).map_err(lib_err(
        "linux.seccomp.defaultAction".into(),
        "creating the filter".into(),
    ))?;

    // The native architecture is always in a new filter; the profile's are added to it.
    let mut arches = vec![ScmpArch::native()];
    for &(i, arch) in &plan.arches {
        let scmp = scmp_arch(arch);
        ctx.add_arch(scmp).map_err(|e| SeccompError::Libseccomp {
            path: format!("linux.seccomp.architectures[{i}]"),
            what: if e.errno() == Some(libseccomp::error::SeccompErrno::EDOM) {
                // One filter holds architectures of one endianness only.
                format!(
                    "{arch} cannot share a filter with the native architecture ({:?}): \
                     different byte order",
                    ScmpArch::native()
                )
            } else {
                format!("{arch} is not supported by libseccomp {}", lib_version())
            },
            msg: e.to_string(),
        })?;
        let concrete = if scmp == ScmpArch::Native {
            ScmpArch::native()
        } else {
            scmp
        };
        if !arches.contains(&concrete) {
            arches.push(concrete);
        }
    }

    let n_names: usize = plan.entries.iter().map(|e| e.names.len()).sum();
    if n_names > OPTIMIZE_ABOVE {
        if let Err(e) = ctx.set_ctl_optimize(2) {
            notes.push(format!(
                "linux.seccomp: libseccomp binary tree optimization not available: {e}"
            ));
        }
    }

    for e in &plan.entries {
        let at = format!("linux.seccomp.syscalls[{}]", e.at);
        if e.same_as_default {
            notes.push(format!(
                "{at}: the action equals defaultAction; rule skipped as redundant"
            ));
            continue;
        }
        for (j, &name) in e.names.iter().enumerate() {
            let Ok(sys) = ScmpSyscall::from_name(name) else {
                notes.push(format!(
                    "{at}.names[{j}]: syscall {name:?} is unknown to libseccomp {}; skipped",
                    lib_version()
                ));
                continue;
            };
            let add = |ctx: &mut ScmpFilterContext,
                       conds: &[libseccomp::ScmpArgCompare]|
             -> Result<(), SeccompError> {
                ctx.add_rule_conditional(e.action, sys, conds)
                    .map(|_| ())
                    .map_err(lib_err(
                        format!("{at}.names[{j}]"),
                        format!("adding the rule for {name:?}"),
                    ))
            };
            if e.split {
                for c in &e.conds {
                    add(&mut ctx, std::slice::from_ref(c))?;
                }
            } else {
                add(&mut ctx, &e.conds)?;
            }
        }
    }

    let filter = export(&ctx)?;

    let mut program = Vec::new();
    if !plan.default_permissive && !plan.default_is_enosys {
        let names: Vec<&str> = plan
            .entries
            .iter()
            .flat_map(|e| e.names.iter().copied())
            .collect();
        let maxima = enosys::arch_maxima(&arches, &names);
        program = enosys::stub(&maxima).map_err(SeccompError::Compile)?;
    }
    program.extend_from_slice(&filter);

    if program.len() > bpf::MAX_INSNS {
        return Err(SeccompError::invalid(
            "linux.seccomp.syscalls",
            format!(
                "the filter compiles to {} BPF instructions, more than the kernel's limit of {}",
                program.len(),
                bpf::MAX_INSNS
            ),
        ));
    }
    Ok(Built { program, notes })
}

/// Exports the filter's BPF through a memfd and parses it back.
fn export(ctx: &ScmpFilterContext) -> Result<Vec<SockFilter>, SeccompError> {
    let io = |what: &str, e: std::io::Error| SeccompError::Compile(format!("{what}: {e}"));
    // SAFETY: a constant NUL-terminated name and flags; the returned fd is checked below.
    let fd = unsafe { libc::memfd_create(c"berth-seccomp-bpf".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io("memfd_create", std::io::Error::last_os_error()));
    }
    // SAFETY: memfd_create just returned this fd and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    ctx.export_bpf(&fd)
        .map_err(|e| SeccompError::Compile(format!("libseccomp: exporting the BPF: {e}")))?;
    let mut file = File::from(fd);
    file.seek(SeekFrom::Start(0))
        .map_err(|e| io("rewinding the export", e))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| io("reading the export", e))?;
    bpf::parse(&bytes).map_err(SeccompError::Compile)
}

pub(crate) fn scmp_arch(a: Arch) -> ScmpArch {
    match a {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}

/// Every architecture of the runtime spec (SCMP_ARCH_NATIVE is only an alias).
pub(crate) const ALL_ARCHES: [Arch; 23] = [
    Arch::ScmpArchX86,
    Arch::ScmpArchX86_64,
    Arch::ScmpArchX32,
    Arch::ScmpArchArm,
    Arch::ScmpArchAarch64,
    Arch::ScmpArchMips,
    Arch::ScmpArchMips64,
    Arch::ScmpArchMips64n32,
    Arch::ScmpArchMipsel,
    Arch::ScmpArchMipsel64,
    Arch::ScmpArchMipsel64n32,
    Arch::ScmpArchPpc,
    Arch::ScmpArchPpc64,
    Arch::ScmpArchPpc64le,
    Arch::ScmpArchS390,
    Arch::ScmpArchS390x,
    Arch::ScmpArchParisc,
    Arch::ScmpArchParisc64,
    Arch::ScmpArchRiscv64,
    Arch::ScmpArchLoongarch64,
    Arch::ScmpArchM68k,
    Arch::ScmpArchSh,
    Arch::ScmpArchSheb,
];

/// "2.5.4", or "(unknown version)".
pub(crate) fn lib_version() -> String {
    match ScmpVersion::current() {
        Ok(v) => format!("{}.{}.{}", v.major, v.minor, v.micro),
        Err(_) => "(unknown version)".into(),
    }
}

/// libseccomp's name for the native architecture ("x86_64"), for the cache key.
pub(crate) fn native_arch_name() -> String {
    format!("{:?}", ScmpArch::native())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::interp::{run, Data};
    use crate::profile::validate;
    use oci_spec::runtime::LinuxSeccomp;

    const X86_64: u32 = 0xc000_003e;
    const ALLOW: u32 = 0x7fff_0000;

    fn build_json(json: &str) -> Built {
        let p: LinuxSeccomp = serde_json::from_str(json).unwrap();
        build(&validate(&p).unwrap()).unwrap()
    }

    fn nr(name: &str) -> u32 {
        ScmpSyscall::from_name(name).unwrap().as_raw_syscall() as u32
    }

    fn skip_on_other_arch() -> bool {
        ScmpArch::native() != ScmpArch::X8664
    }

    #[test]
    fn libseccomp_program_starts_by_loading_the_arch() {
        let b = build_json(r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#);
        assert_eq!(b.program[0], bpf::stmt(bpf::LD | bpf::W | bpf::ABS, 4));
    }

    #[test]
    fn every_operator_matches_what_it_should() {
        if skip_on_other_arch() {
            return;
        }
        let b = build_json(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["getpriority"],"action":"SCMP_ACT_ERRNO","errnoRet":1,"args":[{"index":0,"value":5,"op":"SCMP_CMP_NE"}]},
            {"names":["setpriority"],"action":"SCMP_ACT_ERRNO","errnoRet":2,"args":[{"index":1,"value":5,"op":"SCMP_CMP_LT"}]},
            {"names":["dup3"],"action":"SCMP_ACT_ERRNO","errnoRet":3,"args":[{"index":2,"value":5,"op":"SCMP_CMP_LE"}]},
            {"names":["dup2"],"action":"SCMP_ACT_ERRNO","errnoRet":4,"args":[{"index":1,"value":5,"op":"SCMP_CMP_GE"}]},
            {"names":["kill"],"action":"SCMP_ACT_ERRNO","errnoRet":5,"args":[{"index":1,"value":5,"op":"SCMP_CMP_GT"}]},
            {"names":["tkill"],"action":"SCMP_ACT_ERRNO","errnoRet":6,"args":[{"index":1,"value":5,"op":"SCMP_CMP_EQ"}]},
            {"names":["fcntl"],"action":"SCMP_ACT_ERRNO","errnoRet":7,"args":[{"index":2,"value":240,"valueTwo":32,"op":"SCMP_CMP_MASKED_EQ"}]},
            {"names":["personality"],"action":"SCMP_ACT_ERRNO","errnoRet":8,"args":[{"index":0,"value":4294967295,"op":"SCMP_CMP_EQ"}]}
            ]}"#,
        );
        let r = |name: &str, args: &[u64]| {
            run(&b.program, &Data::new(X86_64, nr(name)).with_args(args))
        };
        let errno = |e: u16| bpf::ret_errno(e);
        assert_eq!(r("getpriority", &[5]), ALLOW);
        assert_eq!(r("getpriority", &[4]), errno(1));
        assert_eq!(r("setpriority", &[0, 4]), errno(2));
        assert_eq!(r("setpriority", &[0, 5]), ALLOW);
        assert_eq!(r("dup3", &[0, 0, 5]), errno(3));
        assert_eq!(r("dup3", &[0, 0, 6]), ALLOW);
        assert_eq!(r("dup2", &[0, 5]), errno(4));
        assert_eq!(r("dup2", &[0, 4]), ALLOW);
        assert_eq!(r("kill", &[0, 6]), errno(5));
        assert_eq!(r("kill", &[0, 5]), ALLOW);
        assert_eq!(r("tkill", &[0, 5]), errno(6));
        assert_eq!(r("tkill", &[0, 1 << 32 | 5]), ALLOW); // all 64 bits compared
        assert_eq!(r("fcntl", &[0, 0, 0x2f]), errno(7));
        assert_eq!(r("fcntl", &[0, 0, 0x4f]), ALLOW);
        assert_eq!(r("personality", &[0xffff_ffff]), errno(8));
        assert_eq!(r("personality", &[0]), ALLOW);
    }

    #[test]
    fn same_index_conditions_become_alternatives() {
        if skip_on_other_arch() {
            return;
        }
        let b = build_json(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["getpriority"],"action":"SCMP_ACT_ERRNO","errnoRet":9,"args":[
                {"index":0,"value":1,"op":"SCMP_CMP_EQ"},{"index":0,"value":2,"op":"SCMP_CMP_EQ"}]}]}"#,
        );
        let r = |a: u64| {
            run(
                &b.program,
                &Data::new(X86_64, nr("getpriority")).with_args(&[a]),
            )
        };
        assert_eq!(r(1), bpf::ret_errno(9));
        assert_eq!(r(2), bpf::ret_errno(9));
        assert_eq!(r(0), ALLOW);
    }

    #[test]
    fn unknown_names_and_redundant_rules_become_notes() {
        let b = build_json(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
            {"names":["getpid","no_such_syscall_x"],"action":"SCMP_ACT_ALLOW"},
            {"names":["getppid"],"action":"SCMP_ACT_ERRNO"}]}"#,
        );
        assert_eq!(b.notes.len(), 2, "{:?}", b.notes);
        assert!(b.notes[0].starts_with(
            "linux.seccomp.syscalls[0].names[1]: syscall \"no_such_syscall_x\" is unknown"
        ));
        assert!(b.notes[1].starts_with("linux.seccomp.syscalls[1]: the action equals"));
    }

    #[test]
    fn enosys_stub_only_for_restrictive_defaults() {
        if skip_on_other_arch() {
            return;
        }
        let enosys = bpf::ret_errno(libc::ENOSYS as u16);
        let high = Data::new(X86_64, 1000);
        let b = build_json(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["getpid","read"],"action":"SCMP_ACT_ALLOW"}]}"#,
        );
        assert_eq!(run(&b.program, &high), enosys);
        // Below the profile's largest syscall, the default action stays.
        assert_eq!(
            run(&b.program, &Data::new(X86_64, nr("write"))),
            bpf::ret_errno(libc::EPERM as u16)
        );
        assert_eq!(run(&b.program, &Data::new(X86_64, nr("getpid"))), ALLOW);

        let b = build_json(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["getpid"],"action":"SCMP_ACT_ERRNO"}]}"#,
        );
        assert_eq!(run(&b.program, &high), ALLOW);
        let b = build_json(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":38,"syscalls":[{"names":["getpid"],"action":"SCMP_ACT_ALLOW"}]}"#,
        );
        assert_eq!(b.program[0], bpf::stmt(bpf::LD | bpf::W | bpf::ABS, 4));
        assert_eq!(run(&b.program, &high), enosys);
    }

    #[test]
    fn foreign_byte_order_arch_names_its_path() {
        if ScmpArch::native() != ScmpArch::X8664 {
            return;
        }
        let p: LinuxSeccomp = serde_json::from_str(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86","SCMP_ARCH_S390X"]}"#,
        )
        .unwrap();
        let e = build(&validate(&p).unwrap()).unwrap_err().to_string();
        assert!(
            e.starts_with("linux.seccomp.architectures[1]: SCMP_ARCH_S390X cannot share a filter"),
            "{e}"
        );
    }

    #[test]
    fn unsupported_arch_names_its_path() {
        let v = ScmpVersion::current().unwrap();
        if (v.major, v.minor) >= (2, 6) {
            return; // LoongArch is known from libseccomp 2.6 on.
        }
        let p: LinuxSeccomp = serde_json::from_str(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86","SCMP_ARCH_LOONGARCH64"]}"#,
        )
        .unwrap();
        let e = build(&validate(&p).unwrap()).unwrap_err().to_string();
        assert!(
            e.starts_with("linux.seccomp.architectures[1]: SCMP_ARCH_LOONGARCH64 is not supported"),
            "{e}"
        );
    }
}
