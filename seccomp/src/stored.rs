//! A compiled filter kept beside a container (in its state directory), so that `exec` loads
//! the container's filter without the profile: no validation, no cache key (the SHA-256 of the
//! profile serialized again), no cache lookup. It was compiled and checked against this kernel
//! when the container was created.
//!
//! Layout (integers little-endian, instructions host-endian as the kernel takes them):
//!
//! ```text
//! "BERTHSCS" | format u32 | flags u32 | notify u8 | n u32 | n × sock_filter | SHA-256 of
//! everything before [32]
//! ```
//!
//! A short, corrupt or foreign file decodes to nothing: the caller compiles the profile then.

use crate::bpf;
use crate::cache::Reader;
use crate::sha256;
use crate::Compiled;

const MAGIC: &[u8; 8] = b"BERTHSCS";
const FORMAT: u32 = 1;

pub(crate) fn encode(c: &Compiled) -> Vec<u8> {
    let mut b = Vec::with_capacity(64 + c.program.len() * 8);
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&FORMAT.to_le_bytes());
    b.extend_from_slice(&c.flags.to_le_bytes());
    b.push(u8::from(c.notify));
    b.extend_from_slice(&(c.program.len() as u32).to_le_bytes());
    bpf::to_bytes(&c.program, &mut b);
    let sum = sha256::digest(&b);
    b.extend_from_slice(&sum);
    b
}

pub(crate) fn decode(b: &[u8]) -> Option<Compiled> {
    let body_len = b.len().checked_sub(32)?;
    let (body, sum) = b.split_at(body_len);
    if sha256::digest(body) != sum {
        return None;
    }
    let mut r = Reader(body);
    if r.take(8)? != MAGIC || r.u32()? != FORMAT {
        return None;
    }
    let flags = r.u32()?;
    let notify = match r.take(1)? {
        [0] => false,
        [1] => true,
        _ => return None,
    };
    let n = r.u32()? as usize;
    if n == 0 || n > bpf::MAX_INSNS || r.0.len() != n * 8 {
        return None;
    }
    let program = bpf::parse(r.0).ok()?;
    Some(Compiled {
        program,
        flags,
        notify,
        notes: Vec::new(),
        from_cache: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_and_every_corruption_is_caught() {
        let c = Compiled {
            program: vec![
                bpf::stmt(bpf::RET | bpf::K, 0x7fc0_0000),
                bpf::stmt(bpf::RET | bpf::K, 0x7fff_0000),
            ],
            flags: 4,
            notify: true,
            notes: vec!["not kept".into()],
            from_cache: false,
        };
        let b = encode(&c);
        let back = decode(&b).unwrap();
        assert_eq!(back.program, c.program);
        assert_eq!((back.flags, back.notify), (4, true));
        assert!(back.notes.is_empty() && back.from_cache);
        for i in 0..b.len() {
            let mut x = b.clone();
            x[i] ^= 0x01;
            assert!(decode(&x).is_none(), "flipped byte {i}");
        }
        for n in 0..b.len() {
            assert!(decode(&b[..n]).is_none(), "truncated to {n}");
        }
    }
}
