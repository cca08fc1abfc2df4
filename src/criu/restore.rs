//! `restore`: a container brought back from CRIU images. Berth makes what `create` would (the
//! state directory, the cgroup with `linux.resources`, the bundle's external mounts mapped
//! back), CRIU rebuilds the namespaces, mounts and processes inside it; the restored init is
//! Berth's child (`rst_sibling`). Anything that fails undoes all of it.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use rust_criu::rust_criu_protobuf::rpc::{
    Cgroup_root, Criu_opts, Criu_req_type, Ext_mount_map, Inherit_fd,
};

use super::dump::{joined_netns, open_dir, NETNS_KEY};
use super::options::{cgroups_mode, empty_ns};
use super::swrk::{self, Handler, Request};
use super::{CriuError, RestoreOptions, DESCRIPTORS_FILE};
use crate::cgroups::{self, Manager};
use crate::config::{self, Bundle};
use crate::container::{lifecycle, Container, StateError, Status, StoredState, CONFIG_FILE};
use crate::error::Error;

const STEP: &str = "restore";
/// Where the rootfs is bound for CRIU (it needs a mount point whose parent is not overmounted),
/// inside the container's state directory.
const CRIU_ROOT: &str = "criu-root";

/// A restored container (locked) and its init.
pub struct Restored {
    pub container: Container,
    pub pid: i32,
}

/// Restores container `id` under `root` from `o.image_path`, with the CRIU binary `bin`.
pub fn restore(root: &Path, id: &str, bin: &Path, o: &RestoreOptions) -> Result<Restored, Error> {
    crate::container::validate_id(id)?;
    o.check()?;
    let Bundle {
        dir,
        rootfs,
        spec,
        raw,
    } = config::load_bundle(&o.bundle)?;
    let images = open_dir(STEP, "--image-path", &o.image_path, false)?;
    if !o.image_path.join("inventory.img").is_file() {
        return Err(CriuError::Usage(format!(
            "{STEP}: --image-path {}: holds no CRIU images (no inventory.img)",
            o.image_path.display()
        ))
        .into());
    }
    let work = match &o.work_path {
        Some(w) => Some(open_dir(STEP, "--work-path", w, true)?),
        None => None,
    };
    if o.lazy_pages && !super::swrk::lazy_pages(STEP, bin)? {
        return Err(super::dump::lazy_unsupported().into());
    }
    let terminal = spec.process().as_ref().and_then(|p| p.terminal()) == Some(true);
    let console = match (&o.console_socket, &o.console_fd, terminal) {
        (Some(p), _, true) => Some(
            lifecycle::connect_unix(p)
                .map_err(|e| Error::sys(format!("--console-socket {}", p.display()), e))?,
        ),
        (None, Some(fd), true) => Some(
            fd.try_clone()
                .map_err(|e| Error::sys("console socket", e))?,
        ),
        (None, None, true) => {
            return Err(Error::Usage(
                "process.terminal is true: --console-socket is required".into(),
            ))
        }
        _ => None,
    };
    let netns =
        match joined_netns(&spec) {
            Some(p) => Some(open_ro(&p).map_err(|e| {
                CriuError::io(STEP, format!("linux.namespaces: {}", p.display()), e)
            })?),
            None => None,
        };
    let cgroup = cgroups::for_spec(&spec, id)?;
    // runc destroys a container it checkpointed; Berth keeps it, stopped (so that `state` says
    // what became of it), and a restore under the same id replaces it. Anything else by that
    // name is refused.
    match Container::load(root, id) {
        Ok(old) if old.status() == Status::Stopped => lifecycle::delete(old, false)?,
        Ok(_) => return Err(StateError::Exists(id.to_string()).into()),
        Err(StateError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let mut c = Container::create(root, id)?;
    let ctx = Ctx {
        bin,
        o,
        bundle: &dir,
        rootfs: &rootfs,
        spec: &spec,
        images,
        work,
        console,
        netns,
    };
    let mut pid = None;
    match build(&mut c, &ctx, &raw, cgroup.as_ref(), &mut pid) {
        Ok(()) => Ok(Restored {
            container: c,
            pid: pid.unwrap_or_default(),
        }),
        Err(e) => {
            if let Some(p) = pid {
                // SAFETY: kill(2) with integer arguments; the restored init is our child.
                unsafe { libc::kill(p, libc::SIGKILL) };
                let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(p), None);
            }
            let _ = cgroup.signal_all(libc::SIGKILL);
            let _ = cgroup.destroy();
            unbind_root(&c.dir);
            let _ = c.remove();
            Err(e)
        }
    }
}

struct Ctx<'a> {
    bin: &'a Path,
    o: &'a RestoreOptions,
    bundle: &'a Path,
    rootfs: &'a Path,
    spec: &'a oci_spec::runtime::Spec,
    images: OwnedFd,
    work: Option<OwnedFd>,
    console: Option<OwnedFd>,
    netns: Option<OwnedFd>,
}

fn open_ro(p: &Path) -> std::io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    Ok(std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(p)?
        .into())
}

fn unbind_root(dir: &Path) {
    let r = dir.join(CRIU_ROOT);
    let _ = umount2(&r, MntFlags::MNT_DETACH);
    let _ = std::fs::remove_dir(&r);
}

fn build(
    c: &mut Container,
    x: &Ctx<'_>,
    raw: &[u8],
    cgroup: &dyn Manager,
    pid: &mut Option<i32>,
) -> Result<(), Error> {
    c.write_file(CONFIG_FILE, raw)?;
    cgroup.create()?;
    if let Some(r) = x.spec.linux().as_ref().and_then(|l| l.resources().as_ref()) {
        cgroup.apply(r)?;
    }
    let record = cgroup.record();
    super::mounts::make_mountpoints(x.spec, x.bundle, x.rootfs).map_err(|(dest, e)| {
        CriuError::io(
            STEP,
            format!("mountpoint {dest} in {}", x.rootfs.display()),
            e,
        )
    })?;
    let croot = c.dir.join(CRIU_ROOT);
    std::fs::create_dir(&croot)
        .map_err(|e| CriuError::io(STEP, format!("mkdir {}", croot.display()), e))?;
    mount(
        Some(x.rootfs),
        &croot,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| CriuError::io(STEP, format!("bind the rootfs at {}", croot.display()), e))?;
    // CRIU makes this mount the container's root as it is: with `root.readonly` it must be
    // read-only already (runc leaves the restored root read-write).
    if x.spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        mount(
            None::<&str>,
            &croot,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(|e| {
            CriuError::io(
                STEP,
                format!("root.readonly: remount {}", croot.display()),
                e,
            )
        })?;
    }

    let mut opts = Criu_opts::new();
    opts.set_images_dir_fd(x.images.as_raw_fd());
    let mut inherit = vec![x.images.as_raw_fd()];
    if let Some(w) = &x.work {
        opts.set_work_dir_fd(w.as_raw_fd());
        inherit.push(w.as_raw_fd());
    }
    opts.set_log_level(4);
    opts.set_log_file("restore.log".into());
    opts.set_root(croot.display().to_string());
    opts.set_rst_sibling(true);
    opts.set_evasive_devices(true);
    opts.set_manage_cgroups(true);
    if let Some(yard) = cgroup_yard() {
        opts.set_cgroup_yard(yard.into());
    }
    opts.set_notify_scripts(true);
    opts.set_orphan_pts_master(true);
    opts.set_shell_job(x.o.shell_job);
    opts.set_tcp_established(x.o.tcp_established);
    opts.set_ext_unix_sk(x.o.ext_unix_sk);
    opts.set_file_locks(x.o.file_locks);
    opts.set_auto_dedup(x.o.auto_dedup);
    // --lazy-pages: memory comes on demand from a `criu lazy-pages` daemon, reached through
    // the `lazy-pages.socket` it made in the work directory.
    opts.set_lazy_pages(x.o.lazy_pages);
    opts.set_empty_ns(empty_ns(&x.o.empty_ns)?);
    if let Some(m) = cgroups_mode(x.o.manage_cgroups_mode.as_deref())? {
        opts.set_manage_cgroups_mode(m);
    }
    if let Some(p) = &x.o.lsm_profile {
        opts.set_lsm_profile(p.clone());
    }
    if let Some(c) = &x.o.lsm_mount_context {
        opts.set_lsm_mount_context(c.clone());
    }
    let dirs: Vec<PathBuf> = record.paths.values().cloned().collect();
    for (k, v) in super::mounts::for_restore(x.spec, x.bundle, &dirs) {
        let mut m = Ext_mount_map::new();
        m.set_key(k);
        m.set_val(v);
        opts.ext_mnt.push(m);
    }
    if let Some(ns) = &x.netns {
        let mut i = Inherit_fd::new();
        i.set_key(NETNS_KEY.into());
        i.set_fd(ns.as_raw_fd());
        opts.inherit_fd.push(i);
        inherit.push(ns.as_raw_fd());
    }
    // Pipes the container had as stdio are replaced by Berth's own stdio (runc does the same).
    for (i, d) in read_descriptors(&x.o.image_path).iter().enumerate() {
        if d.starts_with("pipe:") {
            let mut f = Inherit_fd::new();
            f.set_key(d.clone());
            f.set_fd(i as i32);
            opts.inherit_fd.push(f);
        }
    }
    #[allow(deprecated)]
    let prestart = x
        .spec
        .hooks()
        .as_ref()
        .and_then(|h| h.prestart().as_deref())
        .filter(|p| !p.is_empty());
    let mut h = Restoring {
        cgroup,
        pid: None,
        console: x.console.as_ref(),
        prestart: prestart.map(|p| (p, state_of(c, x, record.clone(), 0))),
    };
    let req = Request {
        step: STEP,
        bin: x.bin,
        ty: Criu_req_type::RESTORE,
        opts: Some(opts),
        inherit,
        log: Some(x.o.log_dir().join("restore.log")),
    };
    let result = swrk::call(req, &mut h);
    *pid = h.pid;
    let resp = result?;
    if pid.is_none() && resp.restore.has_pid() {
        *pid = Some(resp.restore.pid());
    }
    unbind_root(&c.dir);
    let p = pid.ok_or_else(|| CriuError::Rpc {
        step: STEP,
        msg: "CRIU did not say which process it restored".into(),
    })?;
    // The record again: a driver may make directories only once CRIU joined (systemd's).
    c.save(state_of(c, x, cgroup.record(), p))?;
    if let Some(pf) = &x.o.pid_file {
        lifecycle::write_pid_file(pf, p)?;
    }
    Ok(())
}

/// The host's cgroup v1 hierarchies, as CRIU's "cgroup yard" (a directory per hierarchy, named
/// as CRIU names them: `cpu,cpuacct`, `systemd`, `unified`, as /sys/fs/cgroup has them). Without
/// one CRIU mounts every hierarchy again in a yard of its own for the restore, and while it
/// does, a container being created elsewhere in its own cgroup namespace fails to mount its
/// cgroups (EBUSY, seen with pids on this kernel, 6.18).
fn cgroup_yard() -> Option<&'static str> {
    let tmpfs = nix::sys::statfs::statfs("/sys/fs/cgroup")
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC);
    tmpfs.then_some("/sys/fs/cgroup")
}

fn read_descriptors(images: &Path) -> Vec<String> {
    std::fs::read(images.join(DESCRIPTORS_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// The restored container's state, its init `pid`.
fn state_of(c: &Container, x: &Ctx<'_>, record: cgroups::CgroupRecord, pid: i32) -> StoredState {
    let stat = crate::container::read_stat(pid);
    let hooks = x.spec.hooks().as_ref();
    StoredState {
        id: c.id.clone(),
        pid,
        start_time: stat.map(|s| s.start).unwrap_or_default(),
        bundle: x.bundle.to_path_buf(),
        rootfs: x.rootfs.to_path_buf(),
        created: crate::timefmt::now_rfc3339(),
        annotations: x
            .spec
            .annotations()
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        cgroup: Some(record),
        poststart_hooks: false,
        poststop_hooks: hooks.is_some_and(|h| h.poststop().as_ref().is_some_and(|v| !v.is_empty())),
        seccomp_notify: false,
        init_comm: None,
        init_exe: None,
    }
}

/// The restore's side of the exchange with CRIU.
struct Restoring<'a> {
    cgroup: &'a dyn Manager,
    pid: Option<i32>,
    console: Option<&'a OwnedFd>,
    /// `hooks.prestart`, run (as runc does on restore) once CRIU has made the namespaces, with
    /// the state of the container to be.
    prestart: Option<(&'a [oci_spec::runtime::Hook], StoredState)>,
}

impl Handler for Restoring<'_> {
    /// CRIU joins the container's cgroup, and is told that it is the root of the restored
    /// tree's cgroups (`cg_root`, one per hierarchy, as the kernel shows them for CRIU), so that
    /// the processes land in the container's cgroup whatever it was called at dump (runc's way).
    fn spawned(&mut self, pid: i32, opts: &mut Criu_opts) -> Result<(), CriuError> {
        self.cgroup.add(pid).map_err(|e| {
            CriuError::io(
                STEP,
                "move CRIU into the container's cgroup",
                std::io::Error::other(e.to_string()),
            )
        })?;
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .map_err(|e| CriuError::io(STEP, format!("read /proc/{pid}/cgroup"), e))?;
        for line in text.lines() {
            let mut it = line.splitn(3, ':');
            let (Some(_), Some(ctrl), Some(path)) = (it.next(), it.next(), it.next()) else {
                continue;
            };
            let mut r = Cgroup_root::new();
            // As /proc/PID/cgroup names them ("" for the unified hierarchy), as runc passes them.
            r.set_ctrl(ctrl.to_string());
            r.set_path(path.to_string());
            opts.cg_root.push(r);
        }
        Ok(())
    }

    fn notify(&mut self, script: &str, pid: i32, fd: Option<OwnedFd>) -> Result<(), String> {
        match script {
            "post-restore" => self.pid = Some(pid),
            "setup-namespaces" => {
                if let Some((hooks, st)) = self.prestart.as_mut() {
                    st.pid = pid;
                    let state = serde_json::to_vec(&lifecycle::oci_state(st, Status::Creating))
                        .map_err(|e| e.to_string())?;
                    crate::hooks::run_all("prestart", hooks, &state).map_err(|e| e.to_string())?;
                }
            }
            "orphan-pts-master" => {
                let (Some(sock), Some(master)) = (self.console, fd) else {
                    return Err("a terminal was restored but there is no console socket".into());
                };
                crate::linux::console::send_fd(sock.as_raw_fd(), master.as_raw_fd())?;
            }
            _ => {}
        }
        Ok(())
    }
}
