//! Linux mechanisms used to build a container: small `unsafe` wrappers (`sys`), namespaces,
//! the root filesystem and mounts, devices, the console, capabilities and process identity.

pub mod capabilities;
pub mod console;
pub mod devices;
pub mod identity;
pub mod launcher;
pub mod lsm;
pub mod mempolicy;
pub mod mounts;
pub mod namespaces;
pub mod netdev;
pub mod procfs;
pub mod rootfs;
pub mod safepath;
pub mod sched;
pub mod sys;
