//! `checkpoint`: the container's process tree written to CRIU images, then (unless
//! --leave-running or --pre-dump) its processes gone and the container `stopped`. CRIU freezes
//! the container through its freezer cgroup and thaws it again when the dump fails, so a failed
//! checkpoint leaves the container as it was.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use rust_criu::rust_criu_protobuf::rpc::{Criu_opts, Criu_req_type};

use super::options::{cgroups_mode, empty_ns};
use super::swrk::{self, Quiet, Request};
use super::{CheckpointOptions, CriuError, DESCRIPTORS_FILE};
use crate::container::{lifecycle, Container, Status};
use crate::error::Error;

const STEP: &str = "checkpoint";

/// Makes `dir` (and its parents, mode 0700 as runc does) and opens it (O_CLOEXEC; CRIU gets
/// it through `Request::inherit`).
pub(super) fn open_dir(
    step: &'static str,
    flag: &str,
    dir: &Path,
    make: bool,
) -> Result<OwnedFd, CriuError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let what = || format!("{flag} {}", dir.display());
    if make {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| CriuError::io(step, what(), e))?;
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .map_err(|e| CriuError::io(step, what(), e))?;
    Ok(f.into())
}

/// The /proc/PID/fd/{0,1,2} targets (runc's descriptors.json).
fn descriptors(pid: i32) -> Vec<String> {
    (0..3)
        .map(|i| {
            std::fs::read_link(format!("/proc/{pid}/fd/{i}"))
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        })
        .collect()
}

/// The `net[INODE]:extRootNetNS` external of a network namespace the spec joins by path (runc's
/// key), which CRIU then leaves out of the images.
pub(super) fn joined_netns(spec: &oci_spec::runtime::Spec) -> Option<std::path::PathBuf> {
    spec.linux()
        .as_ref()?
        .namespaces()
        .as_ref()?
        .iter()
        .find(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Network)?
        .path()
        .clone()
}

pub(super) const NETNS_KEY: &str = "extRootNetNS";

/// Checkpoints the locked container `c` with the CRIU binary `bin`.
pub fn checkpoint(c: &Container, bin: &Path, o: &CheckpointOptions) -> Result<(), Error> {
    o.check()?;
    c.require(&[Status::Running, Status::Paused], "checkpoint")?;
    let st = c.state.as_ref().expect("a running container has state");
    let spec = lifecycle::load_spec(c)?;
    if (o.pre_dump || o.parent_path.is_some()) && !swrk::tracks_memory(STEP, bin)? {
        let flag = if o.pre_dump {
            "--pre-dump"
        } else {
            "--parent-path"
        };
        return Err(CriuError::Usage(format!(
            "{flag}: CRIU cannot track memory changes on this kernel (no soft-dirty bits: `criu check --feature mem_dirty_track`), which incremental dumps need"
        ))
        .into());
    }
    let images = open_dir(STEP, "--image-path", &o.image_path, true)?;
    let work = match &o.work_path {
        Some(w) => Some(open_dir(STEP, "--work-path", w, true)?),
        None => None,
    };
    let desc = serde_json::to_vec(&descriptors(st.pid)).expect("strings serialise");
    std::fs::write(o.image_path.join(DESCRIPTORS_FILE), desc).map_err(|e| {
        CriuError::io(
            STEP,
            format!("write {}", o.image_path.join(DESCRIPTORS_FILE).display()),
            e,
        )
    })?;

    let mut opts = Criu_opts::new();
    opts.set_images_dir_fd(images.as_raw_fd());
    let mut inherit = vec![images.as_raw_fd()];
    if let Some(w) = &work {
        opts.set_work_dir_fd(w.as_raw_fd());
        inherit.push(w.as_raw_fd());
    }
    opts.set_log_level(4);
    opts.set_log_file("dump.log".into());
    opts.set_root(st.rootfs.display().to_string());
    opts.set_pid(st.pid);
    opts.set_manage_cgroups(true);
    opts.set_notify_scripts(true);
    opts.set_orphan_pts_master(true);
    opts.set_shell_job(o.shell_job);
    opts.set_leave_running(o.leave_running);
    opts.set_tcp_established(o.tcp_established);
    opts.set_ext_unix_sk(o.ext_unix_sk);
    opts.set_file_locks(o.file_locks);
    opts.set_auto_dedup(o.auto_dedup);
    opts.set_empty_ns(empty_ns(&o.empty_ns)?);
    if let Some(m) = cgroups_mode(o.manage_cgroups_mode.as_deref())? {
        opts.set_manage_cgroups_mode(m);
    }
    if let Some(p) = &o.parent_path {
        opts.set_parent_img(p.display().to_string());
        opts.set_track_mem(true);
    }
    if o.pre_dump {
        opts.set_track_mem(true);
    }
    // --page-server: the pages go to a `criu page-server` there instead of the image path;
    // with --lazy-pages, CRIU serves them itself there once the rest is dumped, and ends (and
    // the container's processes with it) when the restoring side has fetched them all.
    if let Some(ps) = &o.page_server {
        let (address, port) = super::options::page_server(ps)?;
        let mut info = rust_criu::rust_criu_protobuf::rpc::Criu_page_server_info::new();
        info.set_address(address);
        info.set_port(port);
        opts.ps = protobuf::MessageField::some(info);
    }
    if o.lazy_pages {
        if !swrk::lazy_pages(STEP, bin)? {
            return Err(lazy_unsupported().into());
        }
        opts.set_lazy_pages(true);
        if let Some(fd) = o.status_fd {
            opts.set_status_fd(fd);
            inherit.push(fd);
        }
    }
    // CRIU freezes the tree with the cgroup freezer rather than ptrace when told where it is.
    if let Some(rec) = &st.cgroup {
        if let Some(dir) = rec.paths.get("freezer").or_else(|| rec.paths.get("")) {
            opts.set_freeze_cgroup(dir.display().to_string());
        }
    }
    for (k, v) in super::mounts::for_dump(&spec, st.pid) {
        let mut m = rust_criu::rust_criu_protobuf::rpc::Ext_mount_map::new();
        m.set_key(k);
        m.set_val(v);
        opts.ext_mnt.push(m);
    }
    if let Some(ns) = joined_netns(&spec) {
        use std::os::unix::fs::MetadataExt;
        let ino = std::fs::metadata(&ns)
            .map_err(|e| CriuError::io(STEP, format!("linux.namespaces: {}", ns.display()), e))?
            .ino();
        opts.external.push(format!("net[{ino}]:{NETNS_KEY}"));
    }
    let req = Request {
        step: STEP,
        bin,
        ty: if o.pre_dump {
            Criu_req_type::PRE_DUMP
        } else {
            Criu_req_type::DUMP
        },
        opts: Some(opts),
        inherit,
        log: Some(o.log_dir().join("dump.log")),
    };
    swrk::call(req, &mut Quiet)?;
    Ok(())
}

/// `--lazy-pages` where CRIU cannot do it.
pub(super) fn lazy_unsupported() -> CriuError {
    CriuError::Usage(
        "--lazy-pages: CRIU cannot serve or restore memory lazily on this kernel (userfaultfd: `criu check --feature uffd-noncoop`)".into(),
    )
}
