//! Berth: a low-level OCI container runtime with runc's command line.
//!
//! Reading order for newcomers: `cli/` (one file per verb, arguments only) →
//! `config/` (config.json → validated spec, JSON-path errors) → `container/`
//! (state on disk, locking, lifecycle) → `process/` (spawning the container's
//! init and its setup sequence, top to bottom) → `linux/` (namespaces, rootfs,
//! mounts, devices, console, capabilities, …) → `cgroups/` → `hooks`.
//!
//! The crate is a library so that the fuzz targets in `fuzz/` can reach the parsers and
//! validators ([`fuzzing`]); the `berth` binary (src/main.rs) only calls [`run`]. Everything
//! else stays private to the crate.

mod cgroups;
mod cli;
mod config;
mod container;
mod criu;
mod error;
mod fault;
pub mod fuzzing;
mod hooks;
mod linux;
mod logging;
mod pidfd;
mod process;
mod resctrl;
mod rootless;
mod sdnotify;
mod selfprotect;
mod timefmt;
mod trace;

/// The `berth` command: parses the command line, runs the command, reports any error, and
/// returns the exit code.
pub fn run() -> i32 {
    linux::sys::ignore_sigpipe();
    cli::main()
}
