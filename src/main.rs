//! Berth: a low-level OCI container runtime with runc's command line.
//!
//! Reading order for newcomers: `cli/` (one file per verb, arguments only) →
//! `config/` (config.json → validated spec, JSON-path errors) → `container/`
//! (state on disk, locking, lifecycle) → `process/` (spawning the container's
//! init and its setup sequence, top to bottom) → `linux/` (namespaces, rootfs,
//! mounts, devices, console, capabilities, …) → `cgroups/` → `hooks`.

// Berth has its own C `main` instead of Rust's runtime start-up, which reads /proc/self/maps
// and sets up an alternate signal stack (work a short-lived runtime does not need) and
// ignores SIGPIPE without telling anyone. Berth ignores SIGPIPE itself, remembering what its
// caller had set, and gives container processes that back (`linux::sys::restore_sigpipe`).
// The rest of std works the same (glibc hands std the arguments and environment before main).
#![cfg_attr(not(test), no_main)]

mod cgroups;
mod cli;
mod config;
mod container;
mod error;
mod fault;
mod hooks;
mod linux;
mod logging;
mod process;
mod selfprotect;
mod timefmt;

#[cfg(not(test))]
#[no_mangle]
pub extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    linux::sys::ignore_sigpipe();
    // process::exit flushes std's buffered stdout, as returning from Rust's main would.
    std::process::exit(cli::main())
}

/// In test builds the test harness has the `main`; this keeps Berth's own entry (and all the
/// code behind it) reachable there, so none of it is reported unused.
#[cfg(test)]
#[allow(dead_code)]
fn entry_for_tests() -> i32 {
    linux::sys::ignore_sigpipe();
    cli::main()
}
