//! Prints what `berth_seccomp::features()` probes on this machine, as the runtime spec's
//! `features.json` "seccomp" object: `cargo run -p berth-seccomp --example features`.

fn main() {
    let f = berth_seccomp::features();
    println!("libseccomp {}", f.libseccomp_version);
    println!(
        "{}",
        serde_json::to_string_pretty(&f.to_oci()).expect("serializable")
    );
}
