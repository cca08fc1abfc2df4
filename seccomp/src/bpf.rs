//! Classic BPF as the kernel's seccomp filter takes it: the instruction type, the opcodes this
//! crate emits, the parser for libseccomp's export and (for tests) a small interpreter.

use std::mem::{align_of, size_of};

/// One BPF instruction, laid out exactly like the kernel's `struct sock_filter`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SockFilter {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

// `Compiled::load` hands a pointer to our instructions to the kernel as `struct sock_filter *`.
const _: () = assert!(size_of::<SockFilter>() == size_of::<libc::sock_filter>());
const _: () = assert!(align_of::<SockFilter>() == align_of::<libc::sock_filter>());
const _: () = assert!(size_of::<SockFilter>() == 8);

/// The kernel refuses longer programs (BPF_MAXINSNS).
pub const MAX_INSNS: usize = 4096;

// Instruction classes and fields (linux/bpf_common.h).
pub const LD: u16 = 0x00;
pub const LDX: u16 = 0x01;
pub const ST: u16 = 0x02;
pub const STX: u16 = 0x03;
pub const ALU: u16 = 0x04;
pub const JMP: u16 = 0x05;
pub const RET: u16 = 0x06;
pub const MISC: u16 = 0x07;
pub const W: u16 = 0x00;
pub const IMM: u16 = 0x00;
pub const ABS: u16 = 0x20;
pub const MEM: u16 = 0x60;
pub const JA: u16 = 0x00;
pub const JEQ: u16 = 0x10;
pub const JGT: u16 = 0x20;
pub const JGE: u16 = 0x30;
pub const JSET: u16 = 0x40;
pub const K: u16 = 0x00;
pub const X: u16 = 0x08;
pub const A: u16 = 0x10;

/// Offsets into `struct seccomp_data`.
pub const DATA_NR: u32 = 0;
pub const DATA_ARCH: u32 = 4;

/// `SECCOMP_RET_ERRNO | errno`.
pub const fn ret_errno(errno: u16) -> u32 {
    0x0005_0000 | errno as u32
}

pub const fn stmt(code: u16, k: u32) -> SockFilter {
    SockFilter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

pub const fn jump(code: u16, k: u32, jt: u8, jf: u8) -> SockFilter {
    SockFilter { code, jt, jf, k }
}

/// Parses the byte stream `seccomp_export_bpf` writes: host-endian `struct sock_filter`s.
pub fn parse(bytes: &[u8]) -> Result<Vec<SockFilter>, String> {
    if bytes.is_empty() {
        return Err("libseccomp exported an empty program".into());
    }
    if !bytes.len().is_multiple_of(8) {
        return Err(format!(
            "libseccomp exported {} bytes, not a whole number of 8-byte instructions",
            bytes.len()
        ));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| SockFilter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect())
}

/// The inverse of [`parse`], used by the cache.
pub fn to_bytes(prog: &[SockFilter], out: &mut Vec<u8>) {
    for i in prog {
        out.extend_from_slice(&i.code.to_ne_bytes());
        out.push(i.jt);
        out.push(i.jf);
        out.extend_from_slice(&i.k.to_ne_bytes());
    }
}

/// A cBPF interpreter over `struct seccomp_data`, enough for what libseccomp and the ENOSYS stub
/// emit: it tells what a program returns for a system call without loading it (Berth asks
/// whether a profile lets its launcher's system calls through; the tests check programs).
pub mod interp {
    use super::*;

    /// What the kernel would see for one syscall.
    #[derive(Clone, Copy, Debug)]
    pub struct Data {
        pub nr: u32,
        pub arch: u32,
        pub ip: u64,
        pub args: [u64; 6],
    }

    impl Data {
        pub fn new(arch: u32, nr: u32) -> Self {
            Data {
                nr,
                arch,
                ip: 0,
                args: [0; 6],
            }
        }
        pub fn with_args(mut self, args: &[u64]) -> Self {
            self.args[..args.len()].copy_from_slice(args);
            self
        }
        fn bytes(&self) -> Vec<u8> {
            let mut b = Vec::with_capacity(64);
            b.extend_from_slice(&self.nr.to_ne_bytes());
            b.extend_from_slice(&self.arch.to_ne_bytes());
            b.extend_from_slice(&self.ip.to_ne_bytes());
            for a in self.args {
                b.extend_from_slice(&a.to_ne_bytes());
            }
            b
        }
    }

    /// Runs `prog` on `data` and returns the seccomp action value, like the kernel would.
    #[cfg(test)]
    pub fn run(prog: &[SockFilter], data: &Data) -> u32 {
        evaluate(prog, data).expect("a program the interpreter understands")
    }

    /// Runs `prog` on `data`: the seccomp action value, or `None` for a program this
    /// interpreter does not understand (an instruction it lacks, a jump or load out of range).
    /// cBPF only jumps forward, so this ends within `prog.len()` steps.
    pub fn evaluate(prog: &[SockFilter], data: &Data) -> Option<u32> {
        let mem_in = data.bytes();
        let (mut a, mut x) = (0u32, 0u32);
        let mut scratch = [0u32; 16];
        let mut pc = 0usize;
        loop {
            let i = *prog.get(pc)?;
            pc += 1;
            let class = i.code & 0x07;
            match class {
                LD | LDX => {
                    let v = match i.code & 0xe0 {
                        ABS => {
                            let o = i.k as usize;
                            u32::from_ne_bytes(mem_in.get(o..o + 4)?.try_into().ok()?)
                        }
                        IMM => i.k,
                        MEM => *scratch.get(i.k as usize)?,
                        _ => return None,
                    };
                    if class == LD {
                        a = v
                    } else {
                        x = v
                    }
                }
                ST => *scratch.get_mut(i.k as usize)? = a,
                STX => *scratch.get_mut(i.k as usize)? = x,
                ALU => {
                    let src = if i.code & X != 0 { x } else { i.k };
                    a = match i.code & 0xf0 {
                        0x00 => a.wrapping_add(src),
                        0x10 => a.wrapping_sub(src),
                        0x20 => a.wrapping_mul(src),
                        0x30 => a.checked_div(src)?,
                        0x40 => a | src,
                        0x50 => a & src,
                        0x60 => a.checked_shl(src)?,
                        0x70 => a.checked_shr(src)?,
                        0x80 => a.wrapping_neg(),
                        0xa0 => a ^ src,
                        _ => return None,
                    };
                }
                JMP => {
                    let src = if i.code & X != 0 { x } else { i.k };
                    let taken = match i.code & 0xf0 {
                        JA => {
                            pc += i.k as usize;
                            continue;
                        }
                        JEQ => a == src,
                        JGT => a > src,
                        JGE => a >= src,
                        JSET => a & src != 0,
                        _ => return None,
                    };
                    pc += if taken { i.jt } else { i.jf } as usize;
                }
                RET => return Some(if i.code & 0x18 == A { a } else { i.k }),
                MISC => {
                    if i.code & 0xf8 == 0 {
                        x = a
                    } else {
                        a = x
                    }
                }
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_round_trips() {
        let prog = vec![stmt(LD | W | ABS, DATA_ARCH), jump(JMP | JEQ | K, 7, 1, 2)];
        let mut b = Vec::new();
        to_bytes(&prog, &mut b);
        assert_eq!(b.len(), 16);
        assert_eq!(parse(&b).unwrap(), prog);
        assert!(parse(&b[..15]).is_err());
        assert!(parse(&[]).is_err());
    }
}
