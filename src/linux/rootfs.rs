//! The container's root filesystem (MINIMAL FIRST CUT: being replaced by the full
//! implementation with safe path resolution, every mount option, devices, masked paths).

use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::unistd::{chdir, pivot_root};
use oci_spec::runtime::Spec;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RootfsError {
    #[error("{field}: {msg}")]
    Mount { field: String, msg: String },
    #[error("{what}: {source}")]
    Sys {
        what: String,
        #[source]
        source: nix::Error,
    },
}

fn sys(what: impl Into<String>) -> impl FnOnce(nix::Error) -> RootfsError {
    let what = what.into();
    move |source| RootfsError::Sys { what, source }
}

pub struct Options {
    pub no_pivot: bool,
}

/// Runs in the child, in its new mount namespace, before the createRuntime hooks: makes the
/// host's mounts invisible to propagation, binds the rootfs onto itself and mounts `mounts`.
pub fn prepare(spec: &Spec, rootfs: &Path, _opts: &Options) -> Result<(), RootfsError> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(sys("make / rslave"))?;
    mount(
        Some(rootfs),
        rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(sys("bind rootfs"))?;
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        let dest = rootfs.join(m.destination().strip_prefix("/").unwrap_or(m.destination()));
        let _ = std::fs::create_dir_all(&dest);
        let ty = m.typ().as_deref().unwrap_or("none");
        let mut flags = MsFlags::empty();
        let mut data = Vec::new();
        for o in m.options().iter().flatten() {
            match o.as_str() {
                "bind" | "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
                "nosuid" => flags |= MsFlags::MS_NOSUID,
                "nodev" => flags |= MsFlags::MS_NODEV,
                "noexec" => flags |= MsFlags::MS_NOEXEC,
                "ro" => flags |= MsFlags::MS_RDONLY,
                "rw" | "newinstance_ignored" => {}
                "strictatime" => flags |= MsFlags::MS_STRICTATIME,
                "relatime" => flags |= MsFlags::MS_RELATIME,
                "noatime" => flags |= MsFlags::MS_NOATIME,
                o => data.push(o.to_string()),
            }
        }
        let data = data.join(",");
        mount(
            m.source().as_deref(),
            &dest,
            Some(ty),
            flags,
            if data.is_empty() {
                None
            } else {
                Some(data.as_str())
            },
        )
        .map_err(|e| RootfsError::Mount {
            field: format!("mounts[{i}]"),
            msg: format!("mount {ty} on {}: {e}", m.destination().display()),
        })?;
    }
    Ok(())
}

/// Makes `rootfs` the process's root (pivot_root, or MS_MOVE + chroot with --no-pivot).
pub fn enter(rootfs: &Path, _opts: &Options) -> Result<(), RootfsError> {
    chdir(rootfs).map_err(sys("chdir to rootfs"))?;
    pivot_root(".", ".").map_err(sys("pivot_root"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(sys("detach old root"))?;
    chdir("/").map_err(sys("chdir /"))?;
    Ok(())
}

/// After pivot_root: read-only root, masked and read-only paths, rootfs propagation.
pub fn finish(_spec: &Spec) -> Result<(), RootfsError> {
    Ok(())
}

/// Writes a sysctl under /proc/sys (after pivot_root, the container's own procfs).
pub fn write_sysctl(key: &str, value: &str) -> Result<(), RootfsError> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    std::fs::write(&path, value).map_err(|e| RootfsError::Mount {
        field: format!("linux.sysctl.{key}"),
        msg: e.to_string(),
    })
}
