//! `compile_cached`: hits, misses, corrupt entries, and caches that cannot be used.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use berth_seccomp::{cache_entry_path, compile, compile_cached};
use common::{fixture, in_child, profile, Outcome, TempDir};

#[test]
fn second_call_hits_the_cache_and_gives_the_same_program() {
    let tmp = TempDir::new("cache-hit");
    let dir = tmp.path().join("seccomp-cache");
    let p = fixture("docker-20.10-default.json");

    let first = compile_cached(&p, &dir).unwrap();
    assert!(!first.from_cache());
    let entry = cache_entry_path(&p, &dir).unwrap();
    assert!(entry.is_file(), "{entry:?} written");
    assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
    assert_eq!(std::fs::metadata(&entry).unwrap().mode() & 0o777, 0o600);
    // Nothing but the entry is left behind (no temp files).
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);

    let second = compile_cached(&p, &dir).unwrap();
    assert!(second.from_cache());
    let fresh = compile(&p).unwrap();
    assert_eq!(second.program(), fresh.program());
    assert_eq!(second.flags(), fresh.flags());
    assert_eq!(second.uses_notify(), fresh.uses_notify());
    assert_eq!(second.notes(), fresh.notes());

    // A cached program loads and works like a fresh one.
    if cfg!(target_arch = "x86_64") {
        let out = in_child(|| {
            if !common::no_new_privs() || second.load().is_err() {
                return 1;
            }
            match common::sys(libc::SYS_acct, [0; 6]) {
                Err(libc::EPERM) => 0,
                _ => 2,
            }
        });
        assert_eq!(out, Outcome::Exited(0));
    }
}

#[test]
fn corrupt_or_truncated_entries_are_recompiled_and_rewritten() {
    let tmp = TempDir::new("cache-corrupt");
    let dir = tmp.path().join("c");
    let p = fixture("podman-4.3-default.json");
    let good = compile_cached(&p, &dir).unwrap();
    let entry = cache_entry_path(&p, &dir).unwrap();
    let bytes = std::fs::read(&entry).unwrap();

    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0xff;
    for bad in [
        flipped,
        bytes[..bytes.len() - 1].to_vec(),
        b"garbage".to_vec(),
        vec![],
    ] {
        std::fs::write(&entry, &bad).unwrap();
        let c = compile_cached(&p, &dir).unwrap();
        assert!(!c.from_cache(), "a corrupt entry is not used");
        assert_eq!(c.program(), good.program());
        assert_eq!(std::fs::read(&entry).unwrap(), bytes, "entry rewritten");
        assert!(compile_cached(&p, &dir).unwrap().from_cache());
    }
}

#[test]
fn different_profiles_get_different_entries() {
    let tmp = TempDir::new("cache-keys");
    let a = profile(
        r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}"#,
    );
    let b = profile(
        r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["write"],"action":"SCMP_ACT_ALLOW"}]}"#,
    );
    assert_ne!(
        cache_entry_path(&a, tmp.path()),
        cache_entry_path(&b, tmp.path())
    );
    let ca = compile_cached(&a, tmp.path()).unwrap();
    let cb = compile_cached(&b, tmp.path()).unwrap();
    assert_ne!(ca.program(), cb.program());
    assert!(compile_cached(&a, tmp.path()).unwrap().from_cache());
}

#[test]
fn an_unusable_cache_never_fails_the_compile() {
    let tmp = TempDir::new("cache-unusable");
    let p = fixture("docker-20.10-default.json");
    let fresh = compile(&p).unwrap();

    // The cache "directory" is below a regular file: it can't be created.
    let file = tmp.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let c = compile_cached(&p, &file.join("cache")).unwrap();
    assert!(!c.from_cache());
    assert_eq!(c.program(), fresh.program());
    assert!(
        c.notes().iter().any(|n| n.starts_with("seccomp cache ")),
        "{:?}",
        c.notes()
    );

    // A directory others may write to is neither read nor written.
    let open = tmp.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let c = compile_cached(&p, &open).unwrap();
    assert!(!c.from_cache());
    assert_eq!(std::fs::read_dir(&open).unwrap().count(), 0);
    assert!(!compile_cached(&p, &open).unwrap().from_cache());
}

#[test]
fn validation_runs_before_the_cache() {
    let tmp = TempDir::new("cache-invalid");
    let bad = profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":[],"action":"SCMP_ACT_ERRNO"}]}"#,
    );
    let e = compile_cached(&bad, tmp.path()).unwrap_err().to_string();
    assert!(e.starts_with("linux.seccomp.syscalls[0].names: "), "{e}");
}
