//! Prints how long compiling Docker's default profile takes, with and without the cache.
//! Figures only, no assertions:
//!
//! ```text
//! cargo run --release -p berth-seccomp --example compile_time [-- PROFILE.json]
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use berth_seccomp::{compile, compile_cached};
use oci_spec::runtime::LinuxSeccomp;

fn main() {
    let path = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/docker-20.10-default.json")
        });
    let bytes = std::fs::read(&path).expect("profile readable");
    let profile: LinuxSeccomp = serde_json::from_slice(&bytes).expect("profile parses");

    let base = std::env::temp_dir().join(format!("berth-seccomp-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);

    let c = compile(&profile).expect("profile compiles");
    println!("profile: {}", path.display());
    println!(
        "program: {} BPF instructions, flags {:#x}, {} notes",
        c.program().len(),
        c.flags(),
        c.notes().len()
    );

    report("compile (libseccomp, no cache)", 50, |_| {
        compile(&profile).unwrap();
    });
    report("compile_cached, cold (empty cache dir)", 50, |i| {
        let c = compile_cached(&profile, &base.join(format!("cold-{i}"))).unwrap();
        assert!(!c.from_cache());
    });
    let warm = base.join("warm");
    compile_cached(&profile, &warm).unwrap();
    report("compile_cached, warm (cache hit)", 500, |_| {
        let c = compile_cached(&profile, &warm).unwrap();
        assert!(c.from_cache());
    });

    let _ = std::fs::remove_dir_all(&base);
}

fn report(what: &str, n: usize, mut f: impl FnMut(usize)) {
    f(usize::MAX); // warm-up (page cache, libseccomp's lazy state)
    let mut times: Vec<Duration> = (0..n)
        .map(|i| {
            let t = Instant::now();
            f(i);
            t.elapsed()
        })
        .collect();
    times.sort();
    let mean = times.iter().sum::<Duration>() / n as u32;
    println!(
        "{what:<42} n={n:<4} min {:>9.1?}  median {:>9.1?}  mean {:>9.1?}  max {:>9.1?}",
        times[0],
        times[n / 2],
        mean,
        times[n - 1]
    );
}
