//! A fake cgroupfs directory for the drivers' unit tests: the files the kernel would have, so
//! that a write to a missing file fails as it would.

/// A temporary cgroup directory holding `files` with their contents.
pub fn fake(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (f, v) in files {
        std::fs::write(d.path().join(f), v).unwrap();
    }
    d
}

/// The contents of `f` in a fake cgroup directory.
pub fn get(d: &tempfile::TempDir, f: &str) -> String {
    std::fs::read_to_string(d.path().join(f)).unwrap()
}
