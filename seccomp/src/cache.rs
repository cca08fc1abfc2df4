//! The on-disk cache of compiled programs.
//!
//! An entry is `<cache_dir>/<key>.bpf`, where `key` is the SHA-256 of: this format's version,
//! the crate version, libseccomp's version, the native architecture and the profile serialized
//! back to JSON (serde writes struct fields in a fixed order, so equal profiles give equal
//! bytes). Only the program and the build notes are cached: flags and NOTIFY use are derived
//! from the profile on every call, with the running kernel's answers.
//!
//! Entry layout (integers little-endian, instructions host-endian as the kernel takes them):
//!
//! ```text
//! "BERTHSCB" | format u32 | key digest [32] | n u32 | n × sock_filter | len u32 | notes (UTF-8,
//! '\n'-separated) | SHA-256 of everything before [32]
//! ```
//!
//! Entries are written to a temp file in the same directory and renamed into place, so readers
//! see a whole entry or none. A short, corrupt, foreign or stale entry fails the checks and is
//! simply recompiled and overwritten. The directory is created 0700; an existing one that is not
//! owned by us, or that others may write to, is not used (someone else could plant a filter).
//! No cache problem ever fails the container: the caller just compiles.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use oci_spec::runtime::LinuxSeccomp;

use crate::bpf::{self, SockFilter};
use crate::compile::{lib_version, native_arch_name};
use crate::sha256;

const MAGIC: &[u8; 8] = b"BERTHSCB";
const FORMAT: u32 = 1;
/// No real entry comes close (4096 instructions are 32 KiB).
const MAX_ENTRY: u64 = 1 << 20;

/// What is cached for one profile.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub program: Vec<SockFilter>,
    pub notes: Vec<String>,
}

/// The cache key of a profile: 64 hex digits.
pub(crate) fn key(profile: &LinuxSeccomp) -> Option<[u8; 32]> {
    let json = serde_json::to_vec(profile).ok()?;
    let mut m = Vec::with_capacity(json.len() + 128);
    m.extend_from_slice(b"berth-seccomp cache\0");
    m.extend_from_slice(&FORMAT.to_le_bytes());
    for part in [
        env!("CARGO_PKG_VERSION").to_string(),
        lib_version(),
        native_arch_name(),
    ] {
        m.extend_from_slice(part.as_bytes());
        m.push(0);
    }
    m.extend_from_slice(&json);
    Some(sha256::digest(&m))
}

pub(crate) fn entry_path(dir: &Path, key: &[u8; 32]) -> PathBuf {
    dir.join(format!("{}.bpf", sha256::hex(key)))
}

/// Is `dir` ours alone? Only then do we trust what is in it.
fn trusted(dir: &Path) -> bool {
    match fs::symlink_metadata(dir) {
        // SAFETY: geteuid has no preconditions and cannot fail.
        Ok(m) => m.is_dir() && m.uid() == unsafe { libc::geteuid() } && m.mode() & 0o022 == 0,
        Err(_) => false,
    }
}

/// The entry for `key`, if there is a sound one.
pub(crate) fn read(dir: &Path, key: &[u8; 32]) -> Option<Entry> {
    if !trusted(dir) {
        return None;
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW) // std adds O_CLOEXEC
        .open(entry_path(dir, key))
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() > MAX_ENTRY {
        return None;
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_ENTRY).read_to_end(&mut bytes).ok()?;
    decode(&bytes, key)
}

/// Stores `entry` under `key`, atomically. Errors are for the caller to ignore.
pub(crate) fn write(dir: &Path, key: &[u8; 32], entry: &Entry) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    if !trusted(dir) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "cache directory is not private to this user",
        ));
    }
    let final_path = entry_path(dir, key);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let tmp = dir.join(format!(
        ".{}.{}.{nanos}.tmp",
        sha256::hex(key),
        std::process::id()
    ));
    let result = (|| {
        let mut f: File = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(&encode(entry, key))?;
        drop(f);
        fs::rename(&tmp, &final_path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn encode(e: &Entry, key: &[u8; 32]) -> Vec<u8> {
    let notes = e.notes.join("\n");
    let mut b = Vec::with_capacity(64 + e.program.len() * 8 + notes.len());
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&FORMAT.to_le_bytes());
    b.extend_from_slice(key);
    b.extend_from_slice(&(e.program.len() as u32).to_le_bytes());
    bpf::to_bytes(&e.program, &mut b);
    b.extend_from_slice(&(notes.len() as u32).to_le_bytes());
    b.extend_from_slice(notes.as_bytes());
    let sum = sha256::digest(&b);
    b.extend_from_slice(&sum);
    b
}

fn decode(b: &[u8], key: &[u8; 32]) -> Option<Entry> {
    let body_len = b.len().checked_sub(32)?;
    let (body, sum) = b.split_at(body_len);
    if sha256::digest(body) != sum {
        return None;
    }
    let mut r = Reader(body);
    if r.take(8)? != MAGIC || r.u32()? != FORMAT || r.take(32)? != key {
        return None;
    }
    let n = r.u32()? as usize;
    if n == 0 || n > bpf::MAX_INSNS {
        return None;
    }
    let program = bpf::parse(r.take(n * 8)?).ok()?;
    let notes_len = r.u32()? as usize;
    let notes = std::str::from_utf8(r.take(notes_len)?).ok()?;
    if !r.0.is_empty() {
        return None;
    }
    let notes = if notes.is_empty() {
        Vec::new()
    } else {
        notes.split('\n').map(str::to_string).collect()
    };
    Some(Entry { program, notes })
}

/// Reads a byte string front to back (also `stored`'s).
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (h, t) = self.0.split_at(n);
        self.0 = t;
        Some(h)
    }
    pub(crate) fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_and_every_corruption_is_caught() {
        let key = [7u8; 32];
        let e = Entry {
            program: vec![bpf::stmt(bpf::RET | bpf::K, 0x7fff_0000)],
            notes: vec!["a".into(), "b".into()],
        };
        let b = encode(&e, &key);
        assert_eq!(decode(&b, &key), Some(e.clone()));
        assert_eq!(decode(&b, &[8u8; 32]), None);
        for i in 0..b.len() {
            let mut c = b.clone();
            c[i] ^= 0x01;
            assert_eq!(decode(&c, &key), None, "flipped byte {i}");
        }
        for n in 0..b.len() {
            assert_eq!(decode(&b[..n], &key), None, "truncated to {n}");
        }
        let none = Entry { notes: vec![], ..e };
        assert_eq!(decode(&encode(&none, &key), &key), Some(none));
    }
}
