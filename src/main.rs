//! Berth: a low-level OCI container runtime with runc's command line.
//!
//! Reading order for newcomers: `cli/` (one file per verb, arguments only) →
//! `config/` (config.json → validated spec, JSON-path errors) → `container/`
//! (state on disk, locking, lifecycle) → `process/` (spawning the container's
//! init and its setup sequence, top to bottom) → `linux/` (namespaces, rootfs,
//! mounts, devices, console, capabilities, …) → `cgroups/` → `hooks`.

mod cgroups;
mod cli;
mod config;
mod container;
mod error;
mod hooks;
mod linux;
mod logging;
mod process;
mod selfprotect;
mod timefmt;

fn main() {
    let code = cli::main();
    std::process::exit(code);
}
