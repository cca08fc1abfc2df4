//! The `berth` binary: everything is in the library (src/lib.rs); this is only its entry.

// Berth has its own C `main` instead of Rust's runtime start-up, which reads /proc/self/maps
// and sets up an alternate signal stack (work a short-lived runtime does not need) and
// ignores SIGPIPE without telling anyone. Berth ignores SIGPIPE itself, remembering what its
// caller had set, and gives container processes that back (`linux::sys::restore_sigpipe`).
// The rest of std works the same (glibc hands std the arguments and environment before main).
// (`cargo test --all-targets` builds this file as a test too: then the harness has the `main`,
// and there are no tests here; they are in the library.)
#![cfg_attr(not(test), no_main)]

#[cfg(not(test))]
#[no_mangle]
pub extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    // process::exit flushes std's buffered stdout, as returning from Rust's main would.
    std::process::exit(berth::run())
}
