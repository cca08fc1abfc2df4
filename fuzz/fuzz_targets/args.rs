//! The command line: the input's NUL-separated strings after `berth` (berth::fuzzing::args).
#![no_main]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: berth_fuzz::init(),
    |data: &[u8]| {
        let mut argv = vec![OsString::from("berth")];
        if !data.is_empty() {
            argv.extend(data.split(|&b| b == 0).map(|a| OsString::from_vec(a.to_vec())));
        }
        if let Err(line) = berth::fuzzing::args(&argv) {
            assert!(!line.trim().is_empty(), "empty usage error");
            assert!(!line.contains('\n'), "usage error spans lines: {line:?}");
        }
    }
);
