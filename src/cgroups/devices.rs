//! Device access rules: `linux.resources.devices` plus the defaults every container needs,
//! written to the v1 devices controller (devices.allow / devices.deny, in order), or compiled
//! into an eBPF program of type BPF_PROG_TYPE_CGROUP_DEVICE and attached to the v2 cgroup.
//!
//! The eBPF program is generated from the state the v1 kernel would reach after the same rules
//! (a default verdict plus exceptions, see [`DeviceState`]), so both drivers decide alike.

use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::{bpf, fs, CgroupError};

/// Access bits, as the eBPF context encodes them (BPF_DEVCG_ACC_*).
pub const MKNOD: u8 = 1;
pub const READ: u8 = 2;
pub const WRITE: u8 = 4;
pub const RWM: u8 = MKNOD | READ | WRITE;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DevType {
    All,
    Char,
    Block,
}

impl DevType {
    fn letter(self) -> char {
        match self {
            DevType::All => 'a',
            DevType::Char => 'c',
            DevType::Block => 'b',
        }
    }
    /// BPF_DEVCG_DEV_*.
    fn bpf(self) -> i32 {
        match self {
            DevType::Block => 1,
            DevType::Char => 2,
            DevType::All => 0,
        }
    }
}

/// One rule; `None` major/minor is the wildcard `*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    pub allow: bool,
    pub typ: DevType,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: u8,
}

impl Rule {
    const fn c(major: Option<u32>, minor: Option<u32>, access: u8) -> Rule {
        Rule {
            allow: true,
            typ: DevType::Char,
            major,
            minor,
            access,
        }
    }

    /// The line for devices.allow / devices.deny, e.g. `c 1:3 rwm` or `a`.
    pub fn v1_line(&self) -> String {
        if self.typ == DevType::All {
            return "a".into();
        }
        let num = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
        let mut acc = String::new();
        for (bit, ch) in [(READ, 'r'), (WRITE, 'w'), (MKNOD, 'm')] {
            if self.access & bit != 0 {
                acc.push(ch);
            }
        }
        format!(
            "{} {}:{} {acc}",
            self.typ.letter(),
            num(self.major),
            num(self.minor)
        )
    }
}

/// The devices every container may use, appended after the spec's rules as runc does: mknod of
/// any device (the init creates /dev nodes), and /dev/{null,random,full,tty,zero,urandom},
/// /dev/pts/* and /dev/ptmx.
pub const DEFAULT_ALLOWED: [Rule; 10] = [
    Rule::c(None, None, MKNOD),
    Rule {
        allow: true,
        typ: DevType::Block,
        major: None,
        minor: None,
        access: MKNOD,
    },
    Rule::c(Some(1), Some(3), RWM),
    Rule::c(Some(1), Some(8), RWM),
    Rule::c(Some(1), Some(7), RWM),
    Rule::c(Some(5), Some(0), RWM),
    Rule::c(Some(1), Some(5), RWM),
    Rule::c(Some(1), Some(9), RWM),
    Rule::c(Some(136), None, RWM),
    Rule::c(Some(5), Some(2), RWM),
];

/// Converts and checks `linux.resources.devices`, then appends [`DEFAULT_ALLOWED`].
pub fn rules(spec: &[LinuxDeviceCgroup]) -> Result<Vec<Rule>, CgroupError> {
    let mut out = Vec::with_capacity(spec.len() + DEFAULT_ALLOWED.len());
    for (i, d) in spec.iter().enumerate() {
        let at = |f: &str| format!("linux.resources.devices[{i}]{f}");
        let typ = match d.typ() {
            None | Some(LinuxDeviceType::A) => DevType::All,
            // An unbuffered character device is a character device to the kernel.
            Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => DevType::Char,
            Some(LinuxDeviceType::B) => DevType::Block,
            Some(LinuxDeviceType::P) => {
                return Err(CgroupError::invalid(
                    at(".type"),
                    "\"p\" (FIFO) cannot be used in a device cgroup rule: use a, b or c",
                ))
            }
        };
        let num = |v: Option<i64>, f: &str| -> Result<Option<u32>, CgroupError> {
            match v {
                None | Some(-1) => Ok(None),
                Some(n) if (0..=u32::MAX as i64).contains(&n) => Ok(Some(n as u32)),
                Some(n) => Err(CgroupError::invalid(
                    at(f),
                    format!("{n} is not a device number (use -1 or omit it for any)"),
                )),
            }
        };
        let major = num(d.major(), ".major")?;
        let minor = num(d.minor(), ".minor")?;
        let access = match d.access().as_deref() {
            // The spec makes access optional; runc refuses a rule without one, Berth reads it
            // as all three (as crun does).
            None => RWM,
            Some(s) => parse_access(s).map_err(|msg| CgroupError::invalid(at(".access"), msg))?,
        };
        out.push(Rule {
            allow: d.allow(),
            typ,
            major,
            minor,
            access,
        });
    }
    out.extend(DEFAULT_ALLOWED);
    Ok(out)
}

/// An access string as runc reads it: r, w and m in any order and number; any other character
/// is ignored (runc passes them on and keeps only the r, w and m it knows), but an empty string,
/// or one naming none of the three, is refused.
fn parse_access(s: &str) -> Result<u8, String> {
    if s.is_empty() {
        return Err(
            "field cannot be empty: use a combination of r, w and m (or leave it out for all)"
                .into(),
        );
    }
    let a = s.chars().fold(0, |a, ch| match ch {
        'r' => a | READ,
        'w' => a | WRITE,
        'm' => a | MKNOD,
        _ => a,
    });
    if a == 0 {
        return Err(format!(
            "invalid access {s:?}: it names none of r, w and m (use a combination of them)"
        ));
    }
    Ok(a)
}

/// The characters of `linux.resources.devices[].access` values that [`rules`] ignores, as
/// warnings (`field: ...`), for the caller to print once.
pub fn ignored_access(devs: &[LinuxDeviceCgroup]) -> Vec<String> {
    devs.iter()
        .enumerate()
        .filter_map(|(i, d)| {
            let s = d.access().as_deref()?;
            let odd: String = s.chars().filter(|c| !"rwm".contains(*c)).collect();
            (!odd.is_empty() && parse_access(s).is_ok()).then(|| {
                format!("linux.resources.devices[{i}].access: ignoring {odd:?} in {s:?} (only r, w and m mean anything, as with runc)")
            })
        })
        .collect()
}

/// What the v1 devices controller holds after a sequence of rules: a default verdict and the
/// exceptions to it (kernel semantics: a rule of type `a` resets everything; a rule that agrees
/// with the default removes access from an identical exception; one that disagrees adds it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceState {
    pub default_allow: bool,
    pub exceptions: Vec<Rule>,
}

impl DeviceState {
    /// A new cgroup below an unrestricted parent allows everything.
    pub fn new() -> DeviceState {
        DeviceState {
            default_allow: true,
            exceptions: Vec::new(),
        }
    }

    pub fn from_rules(rules: &[Rule]) -> DeviceState {
        let mut s = DeviceState::new();
        for r in rules {
            s.apply(r);
        }
        s
    }

    pub fn apply(&mut self, r: &Rule) {
        if r.typ == DevType::All {
            self.default_allow = r.allow;
            self.exceptions.clear();
            return;
        }
        let same = |e: &Rule| e.typ == r.typ && e.major == r.major && e.minor == r.minor;
        if r.allow == self.default_allow {
            for e in self.exceptions.iter_mut().filter(|e| same(e)) {
                e.access &= !r.access;
            }
            self.exceptions.retain(|e| e.access != 0);
        } else if let Some(e) = self.exceptions.iter_mut().find(|e| same(e)) {
            e.access |= r.access;
        } else {
            self.exceptions.push(Rule {
                allow: !self.default_allow,
                ..*r
            });
        }
    }

    /// The kernel's verdict for one access (what the generated program must also answer).
    #[cfg(test)]
    pub fn permits(&self, typ: DevType, major: u32, minor: u32, access: u8) -> bool {
        let hit = |e: &&Rule, partial: bool| {
            e.typ == typ
                && e.major.is_none_or(|m| m == major)
                && e.minor.is_none_or(|m| m == minor)
                && if partial {
                    access & e.access != 0
                } else {
                    access & !e.access == 0
                }
        };
        if self.default_allow {
            !self.exceptions.iter().any(|e| hit(&e, true))
        } else {
            self.exceptions.iter().any(|e| hit(&e, false))
        }
    }
}

/// Writes the rules to a v1 devices cgroup, in order.
pub fn apply_v1(dir: &Path, rules: &[Rule]) -> Result<(), CgroupError> {
    // Each write(2) is one rule to the kernel, so each file is opened once for all of them.
    let mut open: [Option<std::fs::File>; 2] = [None, None];
    for r in rules {
        let (slot, file) = if r.allow {
            (0, "devices.allow")
        } else {
            (1, "devices.deny")
        };
        let line = r.v1_line();
        let fail = |e| fs::write_error("linux.resources.devices", dir, file, &line, e);
        let f = match &mut open[slot] {
            Some(f) => f,
            empty => empty.insert(fs::open_for_writes(dir, file).map_err(fail)?),
        };
        std::io::Write::write_all(f, line.as_bytes()).map_err(fail)?;
    }
    Ok(())
}

/// Compiles the rules and attaches the program to the v2 cgroup `dir`, replacing the program a
/// previous apply attached (the new one is attached first, so there is no unguarded moment).
pub fn apply_v2(dir: &Path, rules: &[Rule]) -> Result<(), CgroupError> {
    let prog = program(&DeviceState::from_rules(rules));
    bpf::replace_device_program(dir, &prog).map_err(|e| CgroupError::Io {
        what: "linux.resources.devices: attach the eBPF device program".into(),
        path: dir.to_path_buf(),
        source: e,
    })
}

/// One eBPF instruction (struct bpf_insn).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    /// dst in the low nibble, src in the high nibble.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

// Opcodes used by the program (class | op | source).
const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const MOV32_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const MOV64_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const AND32_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const RSH32_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const JNE32_K: u8 = 0x56; // BPF_JMP32 | BPF_JNE | BPF_K
const JEQ32_K: u8 = 0x16; // BPF_JMP32 | BPF_JEQ | BPF_K
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

/// The device program for `state`. Registers: r2 = device type, r3 = access, r4 = major,
/// r5 = minor (all from struct bpf_cgroup_dev_ctx in r1). Each exception is a block that jumps
/// to the next block when it does not match and returns its verdict when it does; after the
/// last block the default verdict is returned.
pub fn program(state: &DeviceState) -> Vec<Insn> {
    let mut p = vec![
        insn(LDX_W, 2, 1, 0, 0),
        insn(MOV32_X, 3, 2, 0, 0),
        insn(AND32_K, 2, 0, 0, 0xffff),
        insn(RSH32_K, 3, 0, 0, 16),
        insn(LDX_W, 4, 1, 4, 0),
        insn(LDX_W, 5, 1, 8, 0),
    ];
    for e in &state.exceptions {
        // Jumps in a block are written with off = -1 and patched to the block's end.
        let mut b: Vec<Insn> = Vec::new();
        if e.typ != DevType::All {
            b.push(insn(JNE32_K, 2, 0, -1, e.typ.bpf()));
        }
        if let Some(m) = e.major {
            b.push(insn(JNE32_K, 4, 0, -1, m as i32));
        }
        if let Some(m) = e.minor {
            b.push(insn(JNE32_K, 5, 0, -1, m as i32));
        }
        if e.allow {
            // Allowed only if every requested access bit is in the rule.
            if e.access & RWM != RWM {
                b.push(insn(MOV32_X, 1, 3, 0, 0));
                b.push(insn(AND32_K, 1, 0, 0, i32::from(!e.access & RWM)));
                b.push(insn(JNE32_K, 1, 0, -1, 0));
            }
        } else {
            // Denied if any requested access bit is in the rule.
            b.push(insn(MOV32_X, 1, 3, 0, 0));
            b.push(insn(AND32_K, 1, 0, 0, i32::from(e.access)));
            b.push(insn(JEQ32_K, 1, 0, -1, 0));
        }
        b.push(insn(MOV64_K, 0, 0, 0, e.allow as i32));
        b.push(insn(EXIT, 0, 0, 0, 0));
        let len = b.len();
        for (k, i) in b.iter_mut().enumerate() {
            if i.off == -1 {
                i.off = (len - k - 1) as i16;
            }
        }
        p.extend(b);
    }
    p.push(insn(MOV64_K, 0, 0, 0, state.default_allow as i32));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny interpreter for exactly the instructions [`program`] emits.
    fn run(prog: &[Insn], typ: DevType, major: u32, minor: u32, access: u8) -> bool {
        let ctx = [((access as u32) << 16) | typ.bpf() as u32, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        let mut steps = 0;
        loop {
            steps += 1;
            assert!(steps < 10_000, "program does not terminate");
            let i = prog[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_W => {
                    assert_eq!(src, 1, "loads only from the context");
                    r[dst] = ctx[(i.off / 4) as usize] as u64;
                }
                MOV32_X => r[dst] = r[src] & 0xffff_ffff,
                MOV64_K => r[dst] = i.imm as i64 as u64,
                AND32_K => r[dst] = (r[dst] as u32 & i.imm as u32) as u64,
                RSH32_K => r[dst] = ((r[dst] as u32) >> i.imm) as u64,
                JNE32_K | JEQ32_K => {
                    let eq = r[dst] as u32 == i.imm as u32;
                    if eq == (i.code == JEQ32_K) {
                        pc = (pc as i64 + i.off as i64) as usize;
                    }
                }
                EXIT => return r[0] != 0,
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    fn spec(json: &str) -> Vec<LinuxDeviceCgroup> {
        serde_json::from_str(json).unwrap()
    }

    /// Every combination the rules could care about gives the same verdict from the program as
    /// from the kernel's v1 semantics.
    fn check_program_matches(state: &DeviceState) {
        let prog = program(state);
        for typ in [DevType::Char, DevType::Block] {
            for major in [0, 1, 5, 8, 136, 250] {
                for minor in [0, 1, 2, 3, 5, 7, 9, 11] {
                    for access in 1..=RWM {
                        assert_eq!(
                            run(&prog, typ, major, minor, access),
                            state.permits(typ, major, minor, access),
                            "{typ:?} {major}:{minor} access {access:#b} with {state:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn default_spec_denies_all_but_the_default_devices() {
        let r = rules(&spec(r#"[{"allow":false,"access":"rwm"}]"#)).unwrap();
        let s = DeviceState::from_rules(&r);
        assert!(!s.default_allow);
        let prog = program(&s);
        assert!(run(&prog, DevType::Char, 1, 3, READ | WRITE)); // /dev/null
        assert!(run(&prog, DevType::Char, 136, 4, READ | WRITE)); // /dev/pts/4
        assert!(run(&prog, DevType::Block, 8, 0, MKNOD)); // mknod of anything
        assert!(!run(&prog, DevType::Block, 8, 0, READ)); // /dev/sda
        assert!(!run(&prog, DevType::Char, 1, 1, READ)); // /dev/mem
        assert!(!run(&prog, DevType::Char, 1, 11, WRITE)); // /dev/kmsg
        check_program_matches(&s);
    }

    #[test]
    fn allow_all_with_denied_exceptions_is_partial_like_the_kernel() {
        let r = rules(&spec(
            r#"[{"allow":true,"type":"a"},{"allow":false,"type":"c","major":1,"minor":11,"access":"w"}]"#,
        ))
        .unwrap();
        let s = DeviceState::from_rules(&r);
        assert!(s.default_allow);
        let prog = program(&s);
        assert!(run(&prog, DevType::Char, 1, 11, READ));
        assert!(!run(&prog, DevType::Char, 1, 11, WRITE));
        // Read+write asks for a denied bit: denied, as the v1 kernel does.
        assert!(!run(&prog, DevType::Char, 1, 11, READ | WRITE));
        check_program_matches(&s);
    }

    #[test]
    fn later_rules_override_earlier_ones() {
        // Allow /dev/kmsg read, then deny it again; allow a whole major with a partial access.
        let r = rules(&spec(
            r#"[{"allow":false},
                {"allow":true,"type":"c","major":1,"minor":11,"access":"rw"},
                {"allow":false,"type":"c","major":1,"minor":11,"access":"w"},
                {"allow":true,"type":"b","major":8,"access":"r"},
                {"allow":true,"type":"c","major":-1,"minor":2,"access":"m"}]"#,
        ))
        .unwrap();
        let s = DeviceState::from_rules(&r);
        assert!(s.permits(DevType::Char, 1, 11, READ));
        assert!(!s.permits(DevType::Char, 1, 11, WRITE));
        assert!(s.permits(DevType::Block, 8, 3, READ));
        assert!(!s.permits(DevType::Block, 8, 3, READ | WRITE));
        check_program_matches(&s);
        // And a reset in the middle forgets everything before it.
        let r = rules(&spec(
            r#"[{"allow":false,"type":"c","major":1,"minor":3},{"allow":true,"type":"a"}]"#,
        ))
        .unwrap();
        let s = DeviceState::from_rules(&r);
        assert!(s.default_allow && s.exceptions.is_empty());
        check_program_matches(&s);
    }

    #[test]
    fn v1_lines_and_validation() {
        assert_eq!(DEFAULT_ALLOWED[0].v1_line(), "c *:* m");
        assert_eq!(DEFAULT_ALLOWED[8].v1_line(), "c 136:* rwm");
        let r = rules(&spec(r#"[{"allow":false,"access":"rwm"}]"#)).unwrap();
        assert_eq!(r[0].v1_line(), "a");
        let e = rules(&spec(
            r#"[{"allow":true},{"allow":true,"type":"c","access":"x"}]"#,
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("linux.resources.devices[1].access: invalid access \"x\""),
            "{e}"
        );
        // As runc: any order, repeats, and characters other than r, w and m ignored.
        for (access, bits) in [
            ("mrw", RWM),
            ("rr", READ),
            ("rx", READ),
            ("w m", WRITE | MKNOD),
        ] {
            let json = format!(r#"[{{"allow":true,"type":"c","access":"{access}"}}]"#);
            assert_eq!(rules(&spec(&json)).unwrap()[0].access, bits, "{access}");
        }
        let e = rules(&spec(r#"[{"allow":true,"type":"c","access":""}]"#))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("linux.resources.devices[0].access: field cannot be empty"),
            "{e}"
        );
        let e = rules(&spec(r#"[{"allow":true,"type":"p"}]"#))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("linux.resources.devices[0].type:"), "{e}");
        let e = rules(&spec(r#"[{"allow":true,"type":"c","major":-5}]"#))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("linux.resources.devices[0].major:"), "{e}");
    }

    /// Loads and attaches the program for real, on a cgroup of this host's v2 hierarchy, and
    /// checks that a process in that cgroup is refused a denied device and given an allowed
    /// one.
    #[test]
    fn program_is_accepted_and_enforced_by_the_kernel() {
        let Some(mount) = super::super::layout::Layout::detect()
            .ok()
            .and_then(|l| l.unified.map(|u| u.mountpoint))
        else {
            println!("SKIP: no cgroup v2 hierarchy mounted");
            return;
        };
        if !nix::unistd::geteuid().is_root() {
            println!("SKIP: needs root");
            return;
        }
        let dir = mount.join(format!("berth-unit-devices-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        struct Rm(std::path::PathBuf);
        impl Drop for Rm {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir(&self.0);
            }
        }
        let _rm = Rm(dir.clone());
        let r = rules(&spec(r#"[{"allow":false,"access":"rwm"}]"#)).unwrap();
        apply_v2(&dir, &r).unwrap();
        // Applying again replaces the program instead of stacking a second one.
        apply_v2(&dir, &r).unwrap();
        assert_eq!(bpf::attached_device_programs(&dir).unwrap().len(), 1);
        let script = format!(
            "echo $$ > {}/cgroup.procs && head -c1 /dev/zero >/dev/null 2>&1; echo zero=$?; \
             echo x > /dev/null; echo null=$?",
            dir.display()
        );
        let out = std::process::Command::new("/bin/sh")
            .args(["-c", &script])
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&out.stdout);
        // /dev/zero (c 1:5) is a default device: allowed. Try a denied one as well.
        assert!(out.contains("zero=0"), "{out}");
        assert!(out.contains("null=0"), "{out}");
        let script = format!(
            "echo $$ > {}/cgroup.procs && head -c1 /dev/kmsg; echo kmsg=$?",
            dir.display()
        );
        let out = std::process::Command::new("/bin/sh")
            .args(["-c", &script])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(text.contains("kmsg=1"), "{text}");
        assert!(text.contains("Operation not permitted"), "{text}");
    }
}
