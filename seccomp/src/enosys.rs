//! The ENOSYS stub put in front of libseccomp's program (what runc calls "patchbpf").
//!
//! A profile is written against the syscalls its author knew of. A syscall newer than all of
//! them (clone3, faccessat2, … when the profile predates them) would get the *default* action,
//! typically EPERM, and glibc only falls back to the older syscall on ENOSYS: programs break
//! instead of degrading. So, per architecture of the filter, any syscall number *greater than
//! the largest one the profile names* (resolved for that architecture) returns ENOSYS, as an
//! unknown syscall would without seccomp. Everything else falls through, unchanged, to
//! libseccomp's program (which starts by loading the architecture itself).
//!
//! Like runc, the stub is left out when the default action lets syscalls through (ALLOW, LOG,
//! TRACE) or already returns ENOSYS. Unlike runc, the native architecture is covered even when
//! the profile lists no `architectures`. The same heuristic's limit applies: a syscall added
//! out of order in the table (below the profile's largest number) still gets the default. On
//! x32 this covers little, as x32's own compat numbers (512–547) are its largest.
//!
//! Layout (all conditional jumps are forward and short; only `ja` reaches the filter):
//!
//! ```text
//!       ld  [arch]
//!       jeq AUDIT_ARCH_1, sec1        ; one per architecture with a known maximum
//!       …
//!       ja  filter
//! sec1: ld  [nr]
//!       jgt MAX_1, enosys1
//!       ja  filter
//! enosys1: ret ERRNO(ENOSYS)
//!       …
//! filter: <libseccomp's program>
//! ```
//!
//! x86_64 and x32 share AUDIT_ARCH_X86_64: their section first tests the x32 bit of the
//! syscall number and compares with the maximum of the right ABI. s390(x) additionally answers
//! ENOSYS for syscall 0, which the kernel uses to multiplex large syscall numbers it does not
//! know (as runc does).

use libseccomp::{ScmpArch, ScmpSyscall};

use crate::bpf::{self, jump, stmt, SockFilter, ABS, JEQ, JGT, JMP, JSET, K, LD, RET, W};

const ENOSYS: u32 = bpf::ret_errno(libc::ENOSYS as u16);
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const AUDIT_ARCH_S390: u32 = 0x0000_0016;
const AUDIT_ARCH_S390X: u32 = 0x8000_0016;

/// The kernel's AUDIT_ARCH_* value for a libseccomp architecture. SCMP_ARCH_* equals
/// AUDIT_ARCH_* except for x32 (a libseccomp-only value; the kernel reports x86_64) and native.
pub(crate) fn audit_arch(arch: ScmpArch) -> Option<u32> {
    Some(match arch {
        ScmpArch::Native => {
            let native = ScmpArch::native();
            // libseccomp never answers "native" for the native architecture; don't recurse if so.
            return if native == ScmpArch::Native {
                None
            } else {
                audit_arch(native)
            };
        }
        ScmpArch::X86 => 0x4000_0003,
        ScmpArch::X8664 | ScmpArch::X32 => AUDIT_ARCH_X86_64,
        ScmpArch::Arm => 0x4000_0028,
        ScmpArch::Aarch64 => 0xc000_00b7,
        ScmpArch::Loongarch64 => 0xc000_0102,
        ScmpArch::M68k => 0x0000_0004,
        ScmpArch::Mips => 0x0000_0008,
        ScmpArch::Mips64 => 0x8000_0008,
        ScmpArch::Mips64N32 => 0xa000_0008,
        ScmpArch::Mipsel => 0x4000_0008,
        ScmpArch::Mipsel64 => 0xc000_0008,
        ScmpArch::Mipsel64N32 => 0xe000_0008,
        ScmpArch::Ppc => 0x0000_0014,
        ScmpArch::Ppc64 => 0x8000_0015,
        ScmpArch::Ppc64Le => 0xc000_0015,
        ScmpArch::S390 => AUDIT_ARCH_S390,
        ScmpArch::S390X => AUDIT_ARCH_S390X,
        ScmpArch::Parisc => 0x0000_000f,
        ScmpArch::Parisc64 => 0x8000_000f,
        ScmpArch::Riscv64 => 0xc000_00f3,
        ScmpArch::Sheb => 0x0000_002a,
        ScmpArch::Sh => 0x4000_002a,
        _ => return None,
    })
}

/// The largest syscall number among `names` on `arch`, if any resolves there.
pub(crate) fn max_syscall<'a>(arch: ScmpArch, names: impl Iterator<Item = &'a str>) -> Option<u32> {
    names
        .filter_map(|n| ScmpSyscall::from_name_by_arch(n, arch).ok())
        .map(|s| s.as_raw_syscall())
        // Negative numbers are libseccomp's pseudo-syscalls: absent on this architecture.
        .filter(|&nr| nr >= 0)
        .map(|nr| nr as u32)
        .max()
}

/// What the stub knows about one AUDIT_ARCH value.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct ArchMax {
    pub audit: u32,
    /// Largest syscall number, for all architectures but x86_64/x32.
    pub max: Option<u32>,
    /// On AUDIT_ARCH_X86_64: largest x86_64 and largest x32 syscall number (with the x32 bit).
    pub x86_64: Option<u32>,
    pub x32: Option<u32>,
}

/// Collects the maxima for the filter's architectures (`arches`, native first), grouped by
/// AUDIT_ARCH value, in a stable order.
pub(crate) fn arch_maxima(arches: &[ScmpArch], names: &[&str]) -> Vec<ArchMax> {
    let mut out: Vec<ArchMax> = Vec::new();
    for &arch in arches {
        let arch = if arch == ScmpArch::Native {
            ScmpArch::native()
        } else {
            arch
        };
        let Some(audit) = audit_arch(arch) else {
            continue;
        };
        let max = max_syscall(arch, names.iter().copied());
        let idx = match out.iter().position(|m| m.audit == audit) {
            Some(i) => i,
            None => {
                out.push(ArchMax {
                    audit,
                    ..Default::default()
                });
                out.len() - 1
            }
        };
        let m = &mut out[idx];
        match arch {
            ScmpArch::X8664 => m.x86_64 = max,
            ScmpArch::X32 => m.x32 = max,
            _ => m.max = max,
        }
    }
    out.retain(|m| m.max.is_some() || m.x86_64.is_some() || m.x32.is_some());
    out
}

/// Builds the stub for `maxima`; empty when there is nothing to check.
pub(crate) fn stub(maxima: &[ArchMax]) -> Result<Vec<SockFilter>, String> {
    if maxima.is_empty() {
        return Ok(Vec::new());
    }
    let mut a = Asm::default();
    let filter = a.label();
    let sections: Vec<Label> = maxima.iter().map(|_| a.label()).collect();

    a.insn(stmt(LD | W | ABS, bpf::DATA_ARCH));
    for (m, &sec) in maxima.iter().zip(&sections) {
        a.jcond(JEQ, m.audit, Some(sec), None);
    }
    a.ja(filter);

    for (m, &sec) in maxima.iter().zip(&sections) {
        let enosys = a.label();
        a.here(sec);
        a.insn(stmt(LD | W | ABS, bpf::DATA_NR));
        if m.audit == AUDIT_ARCH_X86_64 {
            let x32 = a.label();
            a.jcond(JSET, X32_SYSCALL_BIT, Some(x32), None);
            if let Some(max) = m.x86_64 {
                a.jcond(JGT, max, Some(enosys), None);
            }
            a.ja(filter);
            a.here(x32);
            if let Some(max) = m.x32 {
                a.jcond(JGT, max, Some(enosys), None);
            }
            a.ja(filter);
        } else {
            if m.audit == AUDIT_ARCH_S390 || m.audit == AUDIT_ARCH_S390X {
                a.jcond(JEQ, 0, Some(enosys), None);
            }
            if let Some(max) = m.max {
                a.jcond(JGT, max, Some(enosys), None);
            }
            a.ja(filter);
        }
        a.here(enosys);
        a.insn(stmt(RET | K, ENOSYS));
    }
    a.here(filter);
    a.assemble()
}

/// A tiny forward-only assembler with labels.
#[derive(Default)]
struct Asm {
    items: Vec<Item>,
    labels: usize,
}

#[derive(Clone, Copy)]
struct Label(usize);

enum Item {
    Insn(SockFilter),
    /// `code` is the jump kind (JEQ, JGT, JSET); `None` targets fall through.
    Jcond {
        code: u16,
        k: u32,
        jt: Option<Label>,
        jf: Option<Label>,
    },
    Ja(Label),
    Here(Label),
}

impl Asm {
    fn label(&mut self) -> Label {
        self.labels += 1;
        Label(self.labels - 1)
    }
    fn insn(&mut self, i: SockFilter) {
        self.items.push(Item::Insn(i));
    }
    fn jcond(&mut self, code: u16, k: u32, jt: Option<Label>, jf: Option<Label>) {
        self.items.push(Item::Jcond { code, k, jt, jf });
    }
    fn ja(&mut self, l: Label) {
        self.items.push(Item::Ja(l));
    }
    fn here(&mut self, l: Label) {
        self.items.push(Item::Here(l));
    }

    fn assemble(self) -> Result<Vec<SockFilter>, String> {
        let mut at = vec![usize::MAX; self.labels];
        let mut pos = 0;
        for it in &self.items {
            match it {
                Item::Here(l) => at[l.0] = pos,
                _ => pos += 1,
            }
        }
        let mut out = Vec::with_capacity(pos);
        let offset = |from: usize, l: Label| -> Result<usize, String> {
            let to = at[l.0];
            if to == usize::MAX || to <= from {
                return Err("ENOSYS stub: jump to an unplaced or earlier label".into());
            }
            Ok(to - from - 1)
        };
        for it in &self.items {
            let here = out.len();
            match *it {
                Item::Insn(i) => out.push(i),
                Item::Ja(l) => {
                    let off = u32::try_from(offset(here, l)?)
                        .map_err(|_| "ENOSYS stub: jump too long".to_string())?;
                    out.push(stmt(JMP | bpf::JA, off));
                }
                Item::Jcond { code, k, jt, jf } => {
                    let short = |l: Option<Label>| -> Result<u8, String> {
                        match l {
                            None => Ok(0),
                            Some(l) => u8::try_from(offset(here, l)?).map_err(|_| {
                                "ENOSYS stub: conditional jump longer than 255".to_string()
                            }),
                        }
                    };
                    out.push(jump(JMP | code | K, k, short(jt)?, short(jf)?));
                }
                Item::Here(_) => {}
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::interp::{run, Data};

    const FILTER_MARK: u32 = 0x7fff_1234;

    /// The stub followed by a one-instruction "filter" that returns a marker.
    fn prog(maxima: &[ArchMax]) -> Vec<SockFilter> {
        let mut p = stub(maxima).unwrap();
        p.push(stmt(RET | K, FILTER_MARK));
        p
    }

    #[test]
    fn plain_arch_enosys_above_max_only() {
        let p = prog(&[ArchMax {
            audit: 0x4000_0003,
            max: Some(400),
            ..Default::default()
        }]);
        assert_eq!(run(&p, &Data::new(0x4000_0003, 400)), FILTER_MARK);
        assert_eq!(run(&p, &Data::new(0x4000_0003, 0)), FILTER_MARK);
        assert_eq!(run(&p, &Data::new(0x4000_0003, 401)), ENOSYS);
        // Another architecture goes to the filter untouched (its bad-arch action decides).
        assert_eq!(run(&p, &Data::new(0xc000_00b7, 5000)), FILTER_MARK);
    }

    #[test]
    fn x86_64_and_x32_are_told_apart() {
        let both = ArchMax {
            audit: AUDIT_ARCH_X86_64,
            x86_64: Some(441),
            x32: Some(X32_SYSCALL_BIT | 547),
            ..Default::default()
        };
        let p = prog(&[
            both.clone(),
            ArchMax {
                audit: 0x4000_0003,
                max: Some(450),
                ..Default::default()
            },
        ]);
        let x = AUDIT_ARCH_X86_64;
        assert_eq!(run(&p, &Data::new(x, 441)), FILTER_MARK);
        assert_eq!(run(&p, &Data::new(x, 442)), ENOSYS);
        assert_eq!(run(&p, &Data::new(x, X32_SYSCALL_BIT | 547)), FILTER_MARK);
        assert_eq!(run(&p, &Data::new(x, X32_SYSCALL_BIT | 548)), ENOSYS);
        assert_eq!(run(&p, &Data::new(0x4000_0003, 451)), ENOSYS);
        assert_eq!(run(&p, &Data::new(0x4000_0003, 450)), FILTER_MARK);

        // Without x32 in the filter, x32 syscalls are left to the filter.
        let p = prog(&[ArchMax { x32: None, ..both }]);
        assert_eq!(run(&p, &Data::new(x, X32_SYSCALL_BIT | 9999)), FILTER_MARK);
        assert_eq!(run(&p, &Data::new(x, 9999)), ENOSYS);
    }

    #[test]
    fn s390x_multiplexer_gets_enosys() {
        let p = prog(&[ArchMax {
            audit: AUDIT_ARCH_S390X,
            max: Some(440),
            ..Default::default()
        }]);
        assert_eq!(run(&p, &Data::new(AUDIT_ARCH_S390X, 0)), ENOSYS);
        assert_eq!(run(&p, &Data::new(AUDIT_ARCH_S390X, 1)), FILTER_MARK);
        assert_eq!(run(&p, &Data::new(AUDIT_ARCH_S390X, 441)), ENOSYS);
    }

    #[test]
    fn nothing_known_means_no_stub() {
        assert!(stub(&[]).unwrap().is_empty());
        assert!(arch_maxima(&[ScmpArch::X86], &["no_such_syscall_anywhere"]).is_empty());
    }

    #[test]
    fn maxima_resolve_per_arch() {
        let m = arch_maxima(
            &[ScmpArch::X8664, ScmpArch::X32, ScmpArch::X86],
            &["read", "clone3", "chown32"],
        );
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].audit, AUDIT_ARCH_X86_64);
        assert_eq!(m[0].x86_64, Some(435)); // clone3; chown32 does not exist on x86_64
        assert_eq!(m[0].x32, Some(X32_SYSCALL_BIT | 435));
        assert_eq!(m[1].max, Some(435));
    }
}
