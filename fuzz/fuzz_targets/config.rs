//! config.json bytes through `create`'s parse and validation (berth::fuzzing::config).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: berth_fuzz::init(),
    |data: &[u8]| {
        if let Err(r) = berth::fuzzing::config(data, false) {
            berth_fuzz::check_rejection(data, &r, &[""]);
        }
    }
);
