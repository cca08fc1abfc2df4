//! A container's state.json as the commands read it (berth::fuzzing::state).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: berth_fuzz::init(),
    |data: &[u8]| {
        match berth::fuzzing::state(data) {
            Ok(out) => {
                assert!(out.is_empty() || serde_json::from_str::<serde_json::Value>(&out).is_ok())
            }
            Err(r) => berth_fuzz::check_rejection(data, &r, &[""]),
        }
    }
);
