//! An `update --resources` file's bytes (berth::fuzzing::resources).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: berth_fuzz::init(),
    |data: &[u8]| {
        if let Err(r) = berth::fuzzing::resources(data) {
            // Parse errors name the path in the object; the cgroup checks name it as in
            // config.json.
            berth_fuzz::check_rejection(data, &r, &["linux.resources", ""]);
        }
    }
);
