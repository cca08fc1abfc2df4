//! Berth next to runc 1.1 (installed as /usr/sbin/runc): what engines and users see from the
//! command line — `spec` output, help and version, error phrases, `--debug` log lines.

mod common;
use common::*;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

const RUNC: &str = "/usr/sbin/runc";

fn runc_present() -> bool {
    Path::new(RUNC).exists()
}

/// Runs `<bin> spec [extra]` in a fresh directory; returns the raw config.json.
fn spec_text(bin: &Path, extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(bin)
        .current_dir(dir.path())
        .arg("spec")
        .args(extra)
        .output()
        .unwrap();
    assert!(o.status.success(), "{} spec: {}", bin.display(), stderr(&o));
    std::fs::read_to_string(dir.path().join("config.json")).unwrap()
}

// ---- spec --------------------------------------------------------------------------------

/// `berth spec` writes runc 1.1's config field by field, except the differences documented in
/// src/cli/spec.rs, which are applied to runc's output here before comparing.
#[test]
fn spec_matches_runc_except_documented_differences() {
    if !runc_present() {
        println!("SKIP: {RUNC} not installed");
        return;
    }
    for extra in [&[][..], &["--rootless"][..]] {
        let berth_text = spec_text(&berth_bin(), extra);
        let runc_text = spec_text(Path::new(RUNC), extra);
        assert!(
            berth_text.starts_with("{\n\t\"") && berth_text.ends_with("}\n"),
            "tab-indented like runc's: {berth_text:.40}"
        );
        let berth: Value = serde_json::from_str(&berth_text).unwrap();
        let mut want: Value = serde_json::from_str(&runc_text).unwrap();
        // The documented differences.
        want["ociVersion"] = berth["ociVersion"].clone();
        assert_eq!(want["hostname"], "runc");
        want["hostname"] = "berth".into();
        let caps = want["process"]["capabilities"].as_object_mut().unwrap();
        assert!(caps.remove("ambient").is_some(), "runc 1.1 writes ambient");
        if !extra.is_empty() {
            let mounts = want["mounts"].as_array_mut().unwrap();
            let n = mounts.len();
            mounts.retain(|m| m["destination"] != "/sys/fs/cgroup");
            assert_eq!(
                mounts.len(),
                n - 1,
                "runc's rootless spec mounts /sys/fs/cgroup"
            );
        }
        assert_eq!(berth, want, "berth spec {extra:?} vs runc spec {extra:?}");
    }
}
