//! An `exec --process` file's bytes (berth::fuzzing::process).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: berth_fuzz::init(),
    |data: &[u8]| {
        if let Err(r) = berth::fuzzing::process(data) {
            berth_fuzz::check_rejection(data, &r, &["process"]);
        }
    }
);
