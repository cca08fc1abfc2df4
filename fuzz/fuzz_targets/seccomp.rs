//! A `linux.seccomp` profile validated and compiled to BPF (berth::fuzzing::seccomp).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: berth_fuzz::init(),
    |data: &[u8]| {
        match berth::fuzzing::seccomp(data) {
            // The kernel loads at most BPF_MAXINSNS (4096) instructions.
            Ok(len) => assert!((1..=4096).contains(&len), "a program of {len} instructions"),
            Err(r) => berth_fuzz::check_rejection(data, &r, &["linux.seccomp"]),
        }
    }
);
