// 1. Records the git commit Berth was built from, for `berth --version` (dockerd parses
//    `commit:`).
// 2. Assembles the launcher (src/linux/launcher/<arch>.S) into a tiny static executable that
//    src/linux/launcher.rs embeds. Where no launcher exists for the target architecture, the
//    `berth_launcher` cfg stays unset and Berth protects itself by re-executing instead.
// 3. Release builds: hands src/hot-path.order to the linker (bench/hotpath.py says why), and
//    writes a link map where BERTH_LINK_MAP names one (bench/hotpath.py reads it).
use std::path::PathBuf;
use std::process::Command;

fn main() {
    commit();
    launcher();
    link_order();
}

/// The start path's functions first and together in .text: a container's start then faults in
/// a few hundred KB of the binary instead of most of it. lld's --symbol-ordering-file; rustc
/// links x86_64-unknown-linux-gnu with its own lld since 1.90. Names the file lists that the
/// binary lacks (renamed by a toolchain or dependency upgrade) are ignored; CI's
/// `bench/hotpath.py --check` notices. BERTH_HOT_ORDER=0 turns it off (e.g. for GNU ld).
fn link_order() {
    println!("cargo:rerun-if-changed=src/hot-path.order");
    println!("cargo:rerun-if-env-changed=BERTH_LINK_MAP");
    println!("cargo:rerun-if-env-changed=BERTH_HOT_ORDER");
    if let Ok(map) = std::env::var("BERTH_LINK_MAP") {
        println!("cargo:rustc-link-arg-bins=-Wl,-Map={map}");
    }
    let release = std::env::var("PROFILE").as_deref() == Ok("release");
    let target = std::env::var("TARGET").unwrap_or_default();
    let off = std::env::var("BERTH_HOT_ORDER").as_deref() == Ok("0");
    let order = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"))
        .join("src/hot-path.order");
    if release && target == "x86_64-unknown-linux-gnu" && !off && order.exists() {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}

fn launcher() {
    println!("cargo:rustc-check-cfg=cfg(berth_launcher)");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let src = PathBuf::from(format!("src/linux/launcher/{arch}.S"));
    println!("cargo:rerun-if-changed=src/linux/launcher");
    if !src.exists() {
        return;
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("launcher");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    println!("cargo:rerun-if-env-changed=CC");
    // Static, no libc, no build id, non-executable stack, one segment (-n), stripped.
    let status = Command::new(&cc)
        .args([
            "-nostdlib",
            "-static",
            "-Wl,--build-id=none",
            "-Wl,-z,noexecstack",
            "-Wl,-n",
            "-s",
            "-o",
        ])
        .arg(&out)
        .arg(&src)
        .status()
        .unwrap_or_else(|e| panic!("run {cc} to assemble {}: {e}", src.display()));
    assert!(
        status.success(),
        "{cc} failed to assemble {}",
        src.display()
    );
    println!("cargo:rustc-cfg=berth_launcher");
}

fn commit() {
    let commit = std::env::var("BERTH_COMMIT").ok().unwrap_or_else(|| {
        Command::new("git")
            .args(["rev-parse", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "unknown".to_string())
    });
    println!("cargo:rustc-env=BERTH_COMMIT={commit}");
    println!("cargo:rerun-if-env-changed=BERTH_COMMIT");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
}
