//! `exec`: a new process inside a running container (the "tenant"). Kept apart from `init.rs`,
//! as runc keeps its init and setns paths apart, but ending in the same `exec_user_process`.
//!
//! One fork, no helper process, no re-exec:
//!
//!  host side (Berth)                          │ the forked child (becomes the user's program)
//!  ───────────────────────────────────────────┼───────────────────────────────────────────────
//!  pidfd of the init, checked against the     │
//!  stored start time; which namespaces differ │
//!  setns(pidfd, PID): only our *children* go  │
//!  into the container's pid namespace         │
//!  clone3 ─────────────────────────────────────▶ non-dumpable; joins the cgroup (host paths)
//!  setns back to our own pid namespace        │ setns(pidfd, mnt|net|ipc|uts|cgroup), user,
//!  waits: EOF = execve done; E = error        │ time; setsid; keyring; console; rlimits; LSM;
//!                                             │ identity, caps, NNP, cwd check, fds; execve
//!
//! Its host pid is clone3's return value, so nothing needs to be reported back on success: the
//! sync socket is close-on-exec, and end-of-stream on it means execve succeeded. A setup error
//! arrives on it as one line.

use std::convert::Infallible;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};
use nix::sys::wait::waitpid;
use nix::unistd::{setresgid, setresuid, setsid, Gid, Pid, Uid};
use oci_spec::runtime::{Capability, LinuxCapabilities, Process, Spec};

use super::sync::{self, Channel};
use super::{init, sys, ProcessError};
use crate::cgroups::{self, CgroupRecord, Manager};
use crate::config::ConfigError;
use crate::container::{lifecycle, Container, StateError, Status, StoredState};
use crate::error::{Error, Result};
use crate::linux::sys::{clone3_fork, exit_now, Forked};
use crate::linux::{console, identity, launcher};

/// What `berth exec` was asked for, as the command line gives it.
#[derive(Debug, Default)]
pub struct ExecOptions {
    /// `--process FILE`: the whole process, as JSON (containerd, docker and conmon use this).
    pub process_file: Option<PathBuf>,
    /// The command and its arguments (ignored with `--process`, as runc does).
    pub args: Vec<String>,
    pub overrides: Overrides,
    pub console_socket: Option<PathBuf>,
    /// Unix socket that receives a pidfd of the new process (SCM_RIGHTS), as runc sends it.
    pub pidfd_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: u32,
    /// `--cgroup [CONTROLLER[,CONTROLLER…]:]PATH`, repeatable.
    pub cgroup: Vec<String>,
    pub ignore_paused: bool,
    /// The signal mask the process gets (the caller's, before it blocked signals to forward
    /// them).
    pub sigmask: Option<SigSet>,
}

/// Command-line changes to the container's own process (without `--process`).
#[derive(Debug, Default)]
pub struct Overrides {
    pub cwd: Option<PathBuf>,
    pub env: Vec<String>,
    pub tty: bool,
    /// `uid[:gid]`
    pub user: Option<String>,
    pub additional_gids: Vec<u32>,
    pub caps: Vec<String>,
    pub no_new_privs: bool,
    pub apparmor: Option<String>,
    pub process_label: Option<String>,
}

/// Runs a new process in container `id` and returns its host pid once it has called execve
/// (or failed to: then the error names what went wrong).
pub fn exec(root: &Path, id: &str, opts: &ExecOptions) -> Result<i32> {
    let c = Container::load(root, id)?;
    match c.status() {
        Status::Stopped => return Err(wrong_state(&c, Status::Stopped, "")),
        Status::Paused if !opts.ignore_paused => {
            return Err(wrong_state(
                &c,
                Status::Paused,
                " (resume it, or use --ignore-paused)",
            ))
        }
        _ => {}
    }
    let spec = lifecycle::load_spec(&c)?;
    let process = match (&opts.process_file, spec.process()) {
        (Some(path), container) => {
            if !opts.args.is_empty() {
                crate::logging::debug(
                    "exec: --process given: the command line's COMMAND is ignored",
                );
            }
            let mut p = process_from_file(path)?;
            if let Some(c) = container {
                inherit_from_container(&mut p, c);
            }
            p
        }
        (None, Some(base)) => process_from_flags(base.clone(), &opts.args, &opts.overrides)?,
        (None, None) => {
            return Err(Error::Usage(format!(
                "container {id:?} has no process in its config: use --process FILE"
            )))
        }
    };
    // Compiled before any side effect (usually straight from the cache): the container's
    // seccomp profile applies to exec'd processes too.
    let seccomp = lifecycle::compile_seccomp(&spec)?;
    let lsm = crate::linux::lsm::Enabled::detect_for(&process);
    // The Berth binary must stay out of the container's reach (see `selfprotect`); decided
    // before connecting to any socket, since it may mean re-executing Berth. A process given
    // capabilities beyond the config's bounding set is remembered: it could reach later ones.
    if process_reaches_beyond(&spec, &process) {
        c.write_file(PRIVILEGED_EXEC, b"")?;
    }
    let earlier_privileged = c.read_file(PRIVILEGED_EXEC).is_ok();
    let launcher = lifecycle::protect(
        &spec,
        Some(&process),
        seccomp.as_ref(),
        lsm,
        earlier_privileged,
    )?;
    let terminal = process.terminal() == Some(true);
    let console_socket = match (&opts.console_socket, terminal) {
        (Some(p), true) => Some(
            lifecycle::connect_unix(p)
                .map_err(|e| Error::sys(format!("--console-socket {}", p.display()), e))?,
        ),
        (None, true) => {
            return Err(Error::Usage(
                "process.terminal is true (--tty): --console-socket is required".into(),
            ))
        }
        _ => None,
    };
    let pidfd_socket = match &opts.pidfd_socket {
        Some(p) => Some(
            lifecycle::connect_unix(p)
                .map_err(|e| Error::sys(format!("--pidfd-socket {}", p.display()), e))?,
        ),
        None => None,
    };
    let preserve_fds = opts.preserve_fds + lifecycle::listen_fds();
    check_preserved_fds(preserve_fds)?;
    let cgroup = match c.state.as_ref().and_then(|st| st.cgroup.as_ref()) {
        Some(rec) => Some(cgroup_join(rec, &opts.cgroup)?),
        None if !opts.cgroup.is_empty() => {
            return Err(Error::Usage(format!(
                "--cgroup: container {id:?} has no cgroup to join"
            )))
        }
        None => None,
    };
    let notify = match (&seccomp, &c.state) {
        (Some(sc), Some(st)) if sc.uses_notify() => Some((&spec, st.clone())),
        _ => None,
    };
    let target = Target::open(&c)?;
    // The lock is not held while the process starts: it may be frozen in a paused container
    // (--ignore-paused) until `resume`, which needs the lock.
    drop(c);
    let sigmask = match opts.sigmask {
        Some(m) => m,
        None => current_sigmask()?,
    };
    let cfg = ExecConfig {
        container_id: id,
        process: &process,
        seccomp,
        preserve_fds,
        console_socket,
        cgroup,
        sigmask,
        lsm,
        launcher,
        notify,
    };
    let pid = spawn(&cfg, &target)?;
    if let Some(sock) = &pidfd_socket {
        if let Err(e) = send_pidfd(sock, pid) {
            kill_and_reap(pid);
            return Err(e);
        }
    }
    if let Some(pf) = &opts.pid_file {
        lifecycle::write_pid_file(pf, pid)?;
    }
    Ok(pid)
}

/// The state-directory file that records an `exec` of a process with capabilities (those
/// `selfprotect::reaches`) beyond the container's bounding set.
const PRIVILEGED_EXEC: &str = "privileged-exec";

/// Whether `process` holds a capability that reaches other processes' memory and files which
/// the container's bounding set does not grant.
fn process_reaches_beyond(spec: &Spec, process: &Process) -> bool {
    let bounding = spec
        .process()
        .as_ref()
        .and_then(|p| p.capabilities().as_ref())
        .and_then(|c| c.bounding().clone())
        .unwrap_or_default();
    let Some(c) = process.capabilities() else {
        return false;
    };
    [
        c.bounding(),
        c.effective(),
        c.permitted(),
        c.inheritable(),
        c.ambient(),
    ]
    .into_iter()
    .flatten()
    .flatten()
    .any(|cap| crate::selfprotect::reaches(cap) && !bounding.contains(cap))
}

/// Sends a pidfd of `pid` (our child, so its pid cannot be reused yet) over `sock`.
fn send_pidfd(sock: &OwnedFd, pid: i32) -> Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    use std::os::fd::AsRawFd;
    let pidfd =
        crate::linux::sys::pidfd_open(pid).map_err(|e| Error::sys("pidfd of the process", e))?;
    let fds = [pidfd.as_raw_fd()];
    let iov = [std::io::IoSlice::new(b"pidfd")];
    sendmsg::<()>(
        sock.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(|e| Error::sys("--pidfd-socket: send the pidfd", e))?;
    Ok(())
}

fn wrong_state(c: &Container, status: Status, hint: &'static str) -> Error {
    StateError::WrongState {
        id: c.id.clone(),
        status,
        op: "exec into",
        hint,
    }
    .into()
}

fn current_sigmask() -> Result<SigSet> {
    let mut old = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_BLOCK, None, Some(&mut old))
        .map_err(|e| Error::sys("read signal mask", e))?;
    Ok(old)
}

// ───────────────────────────── the process to run ─────────────────────────────

/// Reads `--process FILE`: an OCI process object. Errors name the field by its JSON path
/// (`process.args`, `process.user.uid`, …).
pub fn process_from_file(path: &Path) -> Result<Process> {
    let what = format!("--process {}", path.display());
    let bytes = std::fs::read(path).map_err(|e| Error::sys(&what, e))?;
    let p = parse_process(&bytes).map_err(|e| in_source(&what, e))?;
    crate::config::check_process_fields(&p, "process").map_err(|e| in_source(&what, e))?;
    Ok(p)
}

/// What a `--process` object leaves out comes from the container's own process, as runc does:
/// capabilities above all (an exec'd process never gets more than the container's because its
/// JSON omitted them), then noNewPrivileges, rlimits, oomScoreAdj and the LSM labels.
fn inherit_from_container(p: &mut Process, c: &Process) {
    if p.capabilities().is_none() {
        p.set_capabilities(c.capabilities().clone());
    }
    if p.no_new_privileges().is_none() {
        p.set_no_new_privileges(c.no_new_privileges());
    }
    if p.rlimits().as_ref().is_none_or(|r| r.is_empty()) {
        p.set_rlimits(c.rlimits().clone());
    }
    if p.oom_score_adj().is_none() {
        p.set_oom_score_adj(c.oom_score_adj());
    }
    if p.apparmor_profile().as_ref().is_none_or(|a| a.is_empty()) {
        p.set_apparmor_profile(c.apparmor_profile().clone());
    }
    if p.selinux_label().as_ref().is_none_or(|l| l.is_empty()) {
        p.set_selinux_label(c.selinux_label().clone());
    }
}

/// Parses a process object, reusing the config parser's field-naming errors: the object is
/// parsed as the `process` of a minimal config.
fn parse_process(bytes: &[u8]) -> std::result::Result<Process, ConfigError> {
    let mut doc = Vec::with_capacity(bytes.len() + 40);
    doc.extend_from_slice(br#"{"ociVersion":"1.0.0","process":"#);
    doc.extend_from_slice(bytes);
    doc.extend_from_slice(b"\n}");
    let spec = crate::config::parse(&doc)?;
    spec.process()
        .clone()
        .ok_or_else(|| ConfigError::invalid("process", "null: expected a process object"))
}

/// Re-labels a config error with where the JSON came from, instead of "config.json".
fn in_source(what: &str, e: ConfigError) -> Error {
    match e {
        ConfigError::Parse { field, msg } => Error::Usage(format!("{what}: {field}{msg}")),
        ConfigError::Invalid { field, msg } => Error::Usage(format!("{what}: {field}: {msg}")),
        other => other.into(),
    }
}

/// The container's own process with the command line's changes, as runc makes it: args
/// replaced, env appended (a later KEY= replaces an earlier one), terminal only with --tty,
/// `--cap` added to bounding, effective and permitted (and ambient when the process has an
/// inheritable set).
pub fn process_from_flags(mut p: Process, args: &[String], o: &Overrides) -> Result<Process> {
    if args.is_empty() || args[0].is_empty() {
        return Err(Error::Usage(
            "exec: no command: give COMMAND [ARGS…] after the container id, or --process FILE"
                .into(),
        ));
    }
    p.set_args(Some(args.to_vec()));
    if let Some(cwd) = &o.cwd {
        p.set_cwd(cwd.clone());
    }
    if !o.env.is_empty() {
        let mut env = p.env().clone().unwrap_or_default();
        for (i, e) in o.env.iter().enumerate() {
            let Some((key, _)) = e.split_once('=').filter(|(k, _)| !k.is_empty()) else {
                return Err(Error::Usage(format!(
                    "--env {e:?} (#{}): not of the form KEY=value",
                    i + 1
                )));
            };
            env.retain(|old| old.split_once('=').map(|(k, _)| k) != Some(key));
            env.push(e.clone());
        }
        p.set_env(Some(env));
    }
    p.set_terminal(Some(o.tty));
    if o.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if let Some(a) = &o.apparmor {
        p.set_apparmor_profile(Some(a.clone()));
    }
    if let Some(l) = &o.process_label {
        p.set_selinux_label(Some(l.clone()));
    }
    if let Some(u) = &o.user {
        let (uid, gid) = parse_user(u)?;
        p.user_mut().set_uid(uid);
        if let Some(g) = gid {
            p.user_mut().set_gid(g);
        }
    }
    if !o.additional_gids.is_empty() {
        let mut gids = p.user().additional_gids().clone().unwrap_or_default();
        gids.extend(&o.additional_gids);
        p.user_mut().set_additional_gids(Some(gids));
    }
    if !o.caps.is_empty() {
        let caps = o
            .caps
            .iter()
            .map(|c| parse_cap(c))
            .collect::<Result<Vec<_>>>()?;
        // Without process.capabilities nothing is dropped: there is nothing to add to.
        if let Some(pc) = p.capabilities().clone() {
            p.set_capabilities(Some(add_caps(pc, &caps)));
        }
    }
    crate::config::check_process_fields(&p, "process").map_err(|e| in_source("exec", e))?;
    Ok(p)
}

/// `uid[:gid]`, numeric as runc takes it.
fn parse_user(u: &str) -> Result<(u32, Option<u32>)> {
    let bad = |what: &str, v: &str| {
        Error::Usage(format!(
            "--user {u:?}: bad {what} {v:?} (expected uid[:gid], numbers)"
        ))
    };
    let (uid, gid) = match u.split_once(':') {
        Some((a, b)) => (a, Some(b)),
        None => (u, None),
    };
    let uid = uid.parse().map_err(|_| bad("uid", uid))?;
    let gid = gid
        .map(|g| g.parse().map_err(|_| bad("gid", g)))
        .transpose()?;
    Ok((uid, gid))
}

/// `CAP_NET_ADMIN`, `NET_ADMIN` or `net_admin`.
fn parse_cap(c: &str) -> Result<Capability> {
    let up = c.to_ascii_uppercase();
    let name = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    serde_json::from_value(serde_json::Value::String(name.clone()))
        .map_err(|_| Error::Usage(format!("--cap {c:?}: unknown capability {name:?}")))
}

fn add_caps(mut pc: LinuxCapabilities, caps: &[Capability]) -> LinuxCapabilities {
    let add = |set: Option<&std::collections::HashSet<Capability>>| {
        let mut s = set.cloned().unwrap_or_default();
        s.extend(caps.iter().copied());
        Some(s)
    };
    let (b, e, p) = (
        add(pc.bounding().as_ref()),
        add(pc.effective().as_ref()),
        add(pc.permitted().as_ref()),
    );
    pc.set_bounding(b);
    pc.set_effective(e);
    pc.set_permitted(p);
    // Ambient needs the capability inheritable too; `--cap` does not add to inheritable.
    if pc.inheritable().is_some() {
        let a = add(pc.ambient().as_ref());
        pc.set_ambient(a);
    }
    pc
}

/// Fds 3..3+n must be fds our caller handed us (open, not close-on-exec): otherwise one of
/// Berth's own fds could sit there and be passed into the container.
fn check_preserved_fds(n: u32) -> Result<()> {
    for fd in 3..3 + n as RawFd {
        // SAFETY: F_GETFD only reads the flags of an fd number; no memory is involved.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if flags < 0 {
            return Err(Error::Usage(format!(
                "--preserve-fds {n}: fd {fd} is not open"
            )));
        }
        if flags & libc::FD_CLOEXEC != 0 {
            return Err(Error::Usage(format!(
                "--preserve-fds {n}: fd {fd} was not passed to berth (it is close-on-exec)"
            )));
        }
    }
    Ok(())
}

// ───────────────────────────── cgroups ─────────────────────────────

/// Where the new process goes: the container's cgroup, or a sub-cgroup of it (`--cgroup`).
pub struct CgroupJoin {
    /// The container's cgroup, or `--cgroup PATH`'s sub-cgroup in every hierarchy.
    manager: Box<dyn Manager>,
    /// `--cgroup CONTROLLER:PATH`: the cgroup.procs files of those sub-cgroups, in the
    /// controllers' v1 hierarchies, joined after `manager`.
    controller_procs: Vec<PathBuf>,
}

/// Builds the cgroup placement from the container's record and the `--cgroup` arguments
/// (runc's rules: one PATH for all, or CONTROLLER[,CONTROLLER…]:PATH pairs; sub-cgroups must
/// exist).
fn cgroup_join(rec: &CgroupRecord, args: &[String]) -> Result<CgroupJoin> {
    let subs = parse_sub_cgroups(args)?;
    let mut join = CgroupJoin {
        manager: cgroups::from_record(rec),
        controller_procs: Vec::new(),
    };
    for (ctrl, sub) in subs {
        match ctrl {
            None => join.manager = cgroups::from_record(&sub_record(rec, &sub)),
            Some(ctrl) => {
                let hier = v1_hierarchy(&ctrl).ok_or_else(|| {
                    Error::Usage(format!(
                        "--cgroup {ctrl}:{}: no cgroup v1 hierarchy has the {ctrl:?} controller",
                        sub.display()
                    ))
                })?;
                // The container's own directory in that hierarchy, as its record names it.
                let own = rec
                    .paths
                    .iter()
                    .find(|(c, d)| c.split(',').any(|x| x == ctrl) || d.starts_with(&hier))
                    .map(|(_, d)| d.clone())
                    .unwrap_or_else(|| hier.join(rec.path.trim_start_matches('/')));
                let dir = own.join(&sub);
                if !dir.is_dir() {
                    return Err(Error::Usage(format!(
                        "--cgroup {ctrl}:{}: {} does not exist (the sub-cgroup must be created first)",
                        sub.display(),
                        dir.display()
                    )));
                }
                join.controller_procs.push(dir.join("cgroup.procs"));
            }
        }
    }
    Ok(join)
}

/// The record of a sub-cgroup of the container's (the one place that builds a record).
fn sub_record(rec: &CgroupRecord, sub: &Path) -> CgroupRecord {
    let mut r = rec.clone();
    r.path = format!("{}/{}", rec.path.trim_end_matches('/'), sub.display());
    for dir in r.paths.values_mut() {
        *dir = dir.join(sub);
    }
    r.created.clear();
    r
}

/// Parses `--cgroup` arguments into (controller or None for all, relative sub-path).
fn parse_sub_cgroups(args: &[String]) -> Result<Vec<(Option<String>, PathBuf)>> {
    let mut out: Vec<(Option<String>, PathBuf)> = Vec::new();
    for a in args {
        let (ctrls, path) = match a.split_once(':') {
            Some((c, p)) => (Some(c), p),
            None => {
                if args.len() != 1 {
                    return Err(Error::Usage(format!(
                        "--cgroup {a:?}: with several --cgroup, each needs a CONTROLLER: prefix"
                    )));
                }
                (None, a.as_str())
            }
        };
        let sub = clean_sub_path(a, path)?;
        match ctrls {
            None => out.push((None, sub)),
            Some(list) => {
                for c in list.split(',') {
                    if c.is_empty() {
                        return Err(Error::Usage(format!(
                            "--cgroup {a:?}: empty controller name"
                        )));
                    }
                    if out.iter().any(|(x, _)| x.as_deref() == Some(c)) {
                        return Err(Error::Usage(format!(
                            "--cgroup: controller {c:?} given more than once"
                        )));
                    }
                    out.push((Some(c.to_string()), sub.clone()));
                }
            }
        }
    }
    Ok(out)
}

/// A sub-cgroup path stays below the container's cgroup: no `..`, leading `/` ignored.
fn clean_sub_path(arg: &str, p: &str) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(Error::Usage(format!(
                    "--cgroup {arg:?}: the sub-cgroup path must stay inside the container's cgroup (no \"..\")"
                )))
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err(Error::Usage(format!(
            "--cgroup {arg:?}: empty sub-cgroup path"
        )));
    }
    Ok(out)
}

/// The mount point of the v1 hierarchy that holds `controller` (`name=systemd` style names
/// too), from /proc/self/mountinfo.
fn v1_hierarchy(controller: &str) -> Option<PathBuf> {
    let mi = crate::linux::procfs::read_pseudo("/proc/self/mountinfo").ok()?;
    mi.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        let mut post = post.split(' ');
        if post.next()? != "cgroup" {
            return None;
        }
        let super_opts = post.nth(1)?;
        let mp = pre.split(' ').nth(4)?;
        super_opts
            .split(',')
            .any(|o| o == controller)
            .then(|| PathBuf::from(mp))
    })
}

// ───────────────────────────── the container's init ─────────────────────────────

/// The container's init, pinned by a pidfd, and which of its namespaces differ from ours.
pub struct Target {
    pid: i32,
    pidfd: OwnedFd,
    join_user: bool,
    join_mount: bool,
    join_pid: bool,
    /// The init's time namespace for children (what its program runs in once started), when it
    /// differs from ours.
    time: Option<OwnedFd>,
    /// The init's root, when it has no mount namespace of its own (it chrooted instead).
    root: Option<OwnedFd>,
}

impl Target {
    /// Opens the init of container `c`. The pidfd is checked against the stored start time,
    /// so a recycled pid is never joined; the few /proc files read by pid are re-checked
    /// against the pidfd afterwards.
    pub fn open(c: &Container) -> Result<Target> {
        let st: &StoredState = c.state.as_ref().ok_or_else(|| {
            Error::from(StateError::WrongState {
                id: c.id.clone(),
                status: Status::Stopped,
                op: "exec into",
                hint: "",
            })
        })?;
        let stopped = || -> Error {
            StateError::WrongState {
                id: st.id.clone(),
                status: Status::Stopped,
                op: "exec into",
                hint: "",
            }
            .into()
        };
        let pidfd = match crate::linux::sys::pidfd_open(st.pid) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Err(stopped()),
            Err(e) => return Err(Error::sys("pidfd_open of the container's init", e)),
        };
        // The pidfd was taken first: if the pid still names the recorded init now, the pidfd
        // is that init.
        if c.live_pid() != Some(st.pid) {
            return Err(stopped());
        }
        let differs = |ours: &str, theirs: &str| -> Result<bool> {
            let a = std::fs::metadata(format!("/proc/self/ns/{ours}"));
            let b = std::fs::metadata(format!("/proc/{}/ns/{theirs}", st.pid));
            match (a, b) {
                (Ok(a), Ok(b)) => Ok(a.dev() != b.dev() || a.ino() != b.ino()),
                // A namespace type this kernel does not have: nothing to join.
                (Err(e), _) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                (_, Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Err(stopped()),
                (Err(e), _) | (_, Err(e)) => Err(Error::sys(format!("stat namespace {ours}"), e)),
            }
        };
        let join_user = differs("user", "user")?;
        let join_mount = differs("mnt", "mnt")?;
        let join_pid = differs("pid", "pid")?;
        let time = if differs("time", "time_for_children")? {
            Some(open_path(
                &format!("/proc/{}/ns/time_for_children", st.pid),
                false,
            )?)
        } else {
            None
        };
        let root = if join_mount {
            None
        } else {
            Some(open_path(&format!("/proc/{}/root", st.pid), true)?)
        };
        // Everything read by pid above belongs to the init only if it is still alive now.
        if pidfd_exited(&pidfd) {
            return Err(stopped());
        }
        Ok(Target {
            pid: st.pid,
            pidfd,
            join_user,
            join_mount,
            join_pid,
            time,
            root,
        })
    }
}

fn open_path(path: &str, dir: bool) -> Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut flags = libc::O_CLOEXEC;
    if dir {
        flags |= libc::O_DIRECTORY | libc::O_PATH;
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(|e| Error::sys(format!("open {path}"), e))?;
    Ok(f.into())
}

/// A pidfd becomes readable when its process exits.
fn pidfd_exited(pidfd: &OwnedFd) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
}

// ───────────────────────────── spawning ─────────────────────────────

/// Everything the child needs; shared with it by fork.
struct ExecConfig<'a> {
    container_id: &'a str,
    process: &'a Process,
    seccomp: Option<berth_seccomp::Compiled>,
    preserve_fds: u32,
    console_socket: Option<OwnedFd>,
    cgroup: Option<CgroupJoin>,
    sigmask: SigSet,
    lsm: crate::linux::lsm::Enabled,
    /// The final exec goes through the launcher (see `selfprotect`).
    launcher: bool,
    /// For SCMP_ACT_NOTIFY: the container's config and state, to hand the notify fd to the
    /// seccomp agent.
    notify: Option<(&'a Spec, crate::container::StoredState)>,
}

/// Forks the process into the container and waits until it has called execve. Returns its
/// host pid. On a setup error the child has exited and is reaped before returning.
fn spawn(cfg: &ExecConfig, t: &Target) -> Result<i32> {
    let (ours, theirs) = sync::pair().map_err(sys("socketpair"))?;
    // Born directly in the container's cgroup where the driver offers it (cgroup v2).
    let cgroup_fd = cfg
        .cgroup
        .as_ref()
        .filter(|c| c.controller_procs.is_empty())
        .and_then(|c| c.manager.clone_into_fd());
    // setns(PID) changes the pid namespace of our children only: the fork below is born in the
    // container's, and we step back at once.
    let own_pidns = if t.join_pid {
        let own = open_path("/proc/self/ns/pid", false)?;
        setns(&t.pidfd, CloneFlags::CLONE_NEWPID)
            .map_err(|e| Error::sys("join the container's pid namespace", e))?;
        Some(own)
    } else {
        None
    };
    crate::linux::capabilities::prime();
    // Non-dumpable before the fork, so the child is never, even for an instant, an open
    // /proc/<pid>/exe to container processes (see `selfprotect`).
    init::set_dumpable(false).map_err(|e| Error::Usage(format!("exec: {e}")))?;
    let forked = clone3_fork(0, cgroup_fd);
    if !matches!(forked, Ok(Forked::Child)) {
        if let Some(own) = &own_pidns {
            if let Err(e) = setns(own, CloneFlags::CLONE_NEWPID) {
                crate::logging::warn(format!("return to berth's own pid namespace: {e}"));
            }
        }
    }
    let child = match forked {
        Ok(Forked::Child) => {
            drop(ours);
            child_main(cfg, t, theirs, cgroup_fd.is_some())
        }
        Ok(Forked::Parent(pid)) => pid,
        Err(e) if e.raw_os_error() == Some(libc::ENOMEM) && t.join_pid => {
            return Err(ProcessError::Init(format!(
                "container {:?} is stopping: its pid namespace has no init any more",
                cfg.container_id
            ))
            .into())
        }
        Err(e) => return Err(Error::sys("clone3", e)),
    };
    drop(theirs);
    let mut reply = ours.recv();
    while let (Ok(Some((sync::NOTIFY_FD, fdnum))), Some((spec, st))) = (&reply, &cfg.notify) {
        if let Err(e) = lifecycle::pass_notify_fd(spec, st, child, fdnum).and_then(|()| {
            ours.send(sync::NOTIFY_DONE, &[])
                .map_err(|e| Error::sys("release the exec'd process", e))
        }) {
            kill_and_reap(child);
            return Err(e);
        }
        reply = ours.recv();
    }
    match reply {
        // End of stream: the socket was closed by execve (close-on-exec).
        Ok(None) => Ok(child),
        Ok(Some((sync::ERROR, msg))) => {
            let _ = waitpid(Pid::from_raw(child), None);
            Err(ProcessError::Init(String::from_utf8_lossy(&msg).into_owned()).into())
        }
        Ok(Some((launcher::FAILED, msg))) => {
            let _ = waitpid(Pid::from_raw(child), None);
            Err(lifecycle::launch_failed(&msg).into())
        }
        Ok(Some((t, _))) => {
            kill_and_reap(child);
            Err(ProcessError::Init(format!(
                "protocol error: unexpected message {:?} from the exec'd process",
                t as char
            ))
            .into())
        }
        Err(e) => {
            kill_and_reap(child);
            Err(Error::sys("read from the exec'd process", e))
        }
    }
}

fn kill_and_reap(pid: i32) {
    let _ = nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    let _ = waitpid(Pid::from_raw(pid), None);
}

/// The child: never returns. It execs the user's program or reports one error line and exits.
fn child_main(cfg: &ExecConfig, t: &Target, ch: Channel, born_in_cgroup: bool) -> ! {
    match setup_and_exec(cfg, t, born_in_cgroup, &ch) {
        Ok(never) => match never {},
        Err(msg) => {
            ch.send_error(&msg);
            exit_now(1)
        }
    }
}

/// The child's sequence, top to bottom.
fn setup_and_exec(
    cfg: &ExecConfig,
    t: &Target,
    born_in_cgroup: bool,
    ch: &Channel,
) -> std::result::Result<Infallible, String> {
    // No container process may open /proc/<us>/{exe,mem,fd,root} while Berth's code runs in
    // the container: that reaches the host binary and the fds below (CVE-2019-5736 class).
    // execve makes the user's program dumpable again.
    init::set_dumpable(false)?;
    crate::linux::sched::apply_affinity(
        cfg.process.exec_cpu_affinity().as_ref(),
        false,
        "process",
    )?;

    // 1. Cgroup, while host paths are still ours (and before the cgroup namespace, which
    //    would hide them).
    if let Some(cg) = &cfg.cgroup {
        // cgroup.procs reads pids in the writer's pid namespace: ours is the container's now.
        let me = nix::unistd::getpid().as_raw();
        if !born_in_cgroup {
            cg.manager.add(me).map_err(|e| e.to_string())?;
        }
        for procs in &cg.controller_procs {
            std::fs::write(procs, me.to_string())
                .map_err(|e| format!("--cgroup: join {}: {e}", procs.display()))?;
        }
    }

    // 2. Namespaces: the pid namespace is already ours (we were born in it).
    enter_namespaces(t)?;
    if let Some(root) = &t.root {
        nix::unistd::fchdir(root).map_err(|e| format!("enter the container's root: {e}"))?;
        nix::unistd::chroot(".").map_err(|e| format!("chroot to the container's root: {e}"))?;
    }
    setsid().map_err(|e| format!("setsid: {e}"))?;
    init::join_session_keyring(cfg.container_id);

    // 3. The process's own settings.
    let p = cfg.process;
    if p.terminal() == Some(true) {
        let sock = cfg
            .console_socket
            .as_ref()
            .ok_or("process.terminal is set but no --console-socket was given")?;
        console::setup_for_exec(sock, p.console_size()).map_err(|e| format!("console: {e}"))?;
    }
    identity::apply_process_limits(p)?;

    // 4. The caller's signal mask (Berth blocked everything to forward signals); then identity,
    //    capabilities, no_new_privileges, seccomp, cwd (checked inside), fds, execve.
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&cfg.sigmask), None)
        .map_err(|e| format!("restore signal mask: {e}"))?;
    let hand_over = |fd: std::os::fd::RawFd| -> std::result::Result<(), String> {
        ch.send(sync::NOTIFY_FD, &fd.to_ne_bytes())
            .map_err(|e| format!("linux.seccomp: pass the notify fd: {e}"))?;
        ch.expect(sync::NOTIFY_DONE).map(|_| ())
    };
    let seccomp = cfg.seccomp.as_ref().map(|filter| init::Seccomp {
        filter,
        hand_over_notify_fd: &hand_over,
    });
    init::exec_user_process(
        p,
        cfg.preserve_fds,
        "process",
        seccomp.as_ref(),
        cfg.lsm,
        cfg.launcher.then_some(&ch.0),
    )
}

/// Joins the init's namespaces through its pidfd. As host root, everything but the user
/// namespace first (a namespace the container joined from the host stays reachable), then the
/// user namespace; if that order is refused (a rootless caller), the other way round.
fn enter_namespaces(t: &Target) -> std::result::Result<(), String> {
    let mut others = CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWCGROUP;
    if t.join_mount {
        others |= CloneFlags::CLONE_NEWNS;
    }
    let join = |flags: CloneFlags| {
        setns(&t.pidfd, flags).map_err(|e| {
            if e == nix::errno::Errno::ESRCH {
                format!("the container's init (pid {}) exited", t.pid)
            } else {
                format!("join the container's namespaces ({}): {e}", ns_names(flags))
            }
        })
    };
    match setns(&t.pidfd, others) {
        Ok(()) => {
            if t.join_user {
                join(CloneFlags::CLONE_NEWUSER)?;
            }
        }
        Err(nix::errno::Errno::EPERM) if t.join_user => {
            join(CloneFlags::CLONE_NEWUSER)?;
            join(others)?;
        }
        Err(_) => join(others)?,
    }
    if t.join_user {
        setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
            .map_err(|e| format!("become gid 0 in the container's user namespace: {e}"))?;
        setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
            .map_err(|e| format!("become uid 0 in the container's user namespace: {e}"))?;
    }
    if let Some(time) = &t.time {
        setns(time, CloneFlags::from_bits_retain(libc::CLONE_NEWTIME))
            .map_err(|e| format!("join the container's time namespace: {e}"))?;
    }
    Ok(())
}

fn ns_names(flags: CloneFlags) -> String {
    [
        (CloneFlags::CLONE_NEWUSER, "user"),
        (CloneFlags::CLONE_NEWNS, "mount"),
        (CloneFlags::CLONE_NEWNET, "network"),
        (CloneFlags::CLONE_NEWIPC, "ipc"),
        (CloneFlags::CLONE_NEWUTS, "uts"),
        (CloneFlags::CLONE_NEWCGROUP, "cgroup"),
    ]
    .iter()
    .filter(|(f, _)| flags.contains(*f))
    .map(|(_, n)| *n)
    .collect::<Vec<_>>()
    .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn base() -> Process {
        serde_json::from_str(
            r#"{"user":{"uid":0,"gid":0},"cwd":"/","args":["sh"],"env":["PATH=/bin","A=1"],
               "terminal":true,
               "capabilities":{"bounding":["CAP_KILL"],"effective":["CAP_KILL"],
                               "permitted":["CAP_KILL"]}}"#,
        )
        .unwrap()
    }

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_override_the_container_process_as_runc_does() {
        let o = Overrides {
            cwd: Some("/tmp".into()),
            env: vec!["A=2".into(), "B=3".into()],
            user: Some("1000:1001".into()),
            additional_gids: vec![10],
            caps: vec!["net_admin".into()],
            no_new_privs: true,
            ..Default::default()
        };
        let p = process_from_flags(base(), &args(&["id", "-u"]), &o).unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &args(&["id", "-u"]));
        assert_eq!(p.cwd(), Path::new("/tmp"));
        assert_eq!(
            p.env().as_ref().unwrap(),
            &args(&["PATH=/bin", "A=2", "B=3"])
        );
        assert_eq!((p.user().uid(), p.user().gid()), (1000, 1001));
        assert_eq!(p.user().additional_gids().as_ref().unwrap(), &vec![10]);
        assert_eq!(
            p.terminal(),
            Some(false),
            "no --tty: no terminal, whatever the config says"
        );
        assert_eq!(p.no_new_privileges(), Some(true));
        let c = p.capabilities().as_ref().unwrap();
        for set in [c.bounding(), c.effective(), c.permitted()] {
            assert!(set.as_ref().unwrap().contains(&Capability::NetAdmin));
        }
        assert!(
            c.ambient().is_none(),
            "no inheritable set: ambient untouched"
        );
    }

    #[test]
    fn bad_flags_are_named() {
        let e = |o: Overrides, a: &[&str]| {
            process_from_flags(base(), &args(a), &o)
                .unwrap_err()
                .to_string()
        };
        assert!(e(Overrides::default(), &[]).contains("no command"));
        let u = e(
            Overrides {
                user: Some("bob".into()),
                ..Default::default()
            },
            &["id"],
        );
        assert!(u.contains("--user \"bob\": bad uid"), "{u}");
        let c = e(
            Overrides {
                caps: vec!["CAP_NOPE".into()],
                ..Default::default()
            },
            &["id"],
        );
        assert!(c.contains("--cap \"CAP_NOPE\": unknown capability"), "{c}");
        let v = e(
            Overrides {
                env: vec!["NOEQUALS".into()],
                ..Default::default()
            },
            &["id"],
        );
        assert!(v.contains("--env \"NOEQUALS\""), "{v}");
        let w = e(
            Overrides {
                cwd: Some("relative".into()),
                ..Default::default()
            },
            &["id"],
        );
        assert!(w.contains("process.cwd: must be an absolute path"), "{w}");
    }

    #[test]
    fn process_file_errors_name_the_json_path() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.json");
        let err = |body: &str| {
            std::fs::write(&f, body).unwrap();
            process_from_file(&f).unwrap_err().to_string()
        };
        let e = err(r#"{"user":{"uid":0,"gid":0},"cwd":"/","args":[]}"#);
        assert!(
            e.contains("--process ") && e.contains(": process.args: must name a program"),
            "{e}"
        );
        let e = err(r#"{"user":{"uid":"x","gid":0},"cwd":"/","args":["a"]}"#);
        assert!(e.contains("process.user.uid: invalid type"), "{e}");
        let e = err(r#"{"user":{"uid":0,"gid":0},"cwd":"/","args":["a"],
                        "rlimits":[{"type":"RLIMIT_BOGUS","hard":1,"soft":1}]}"#);
        assert!(
            e.contains("process.rlimits[0].type: unknown rlimit \"RLIMIT_BOGUS\""),
            "{e}"
        );
        let e = err("null");
        assert!(e.contains("process"), "{e}");
        std::fs::write(
            &f,
            r#"{"user":{"uid":5,"gid":6},"cwd":"/w","args":["a","b"],"terminal":true}"#,
        )
        .unwrap();
        let p = process_from_file(&f).unwrap();
        assert_eq!(p.user().uid(), 5);
        assert_eq!(p.terminal(), Some(true));
    }

    #[test]
    fn a_process_file_never_gets_more_than_the_container_process() {
        let mut p: Process = serde_json::from_str(
            r#"{"user":{"uid":0,"gid":0},"cwd":"/","args":["id"],"noNewPrivileges":false}"#,
        )
        .unwrap();
        let mut c = base();
        c.set_no_new_privileges(Some(true));
        c.set_rlimits(Some(vec![serde_json::from_str(
            r#"{"type":"RLIMIT_NOFILE","hard":64,"soft":64}"#,
        )
        .unwrap()]));
        inherit_from_container(&mut p, &c);
        assert_eq!(
            p.capabilities(),
            c.capabilities(),
            "capabilities from the container"
        );
        assert_eq!(p.rlimits(), c.rlimits());
        assert_eq!(p.no_new_privileges(), Some(false), "given values are kept");
    }

    #[test]
    fn sub_cgroups_follow_runc_rules() {
        let one = parse_sub_cgroups(&args(&["sub/x"])).unwrap();
        assert_eq!(one, vec![(None, PathBuf::from("sub/x"))]);
        let many = parse_sub_cgroups(&args(&["cpu,memory:a", "pids:/b"])).unwrap();
        assert_eq!(
            many,
            vec![
                (Some("cpu".into()), PathBuf::from("a")),
                (Some("memory".into()), PathBuf::from("a")),
                (Some("pids".into()), PathBuf::from("b")),
            ]
        );
        for bad in [
            &["a", "b"][..],
            &["cpu:a", "cpu:b"],
            &["../x"],
            &["cpu:"],
            &[":x"],
        ] {
            assert!(parse_sub_cgroups(&args(bad)).is_err(), "{bad:?}");
        }
        let rec = CgroupRecord {
            path: "/c1".into(),
            paths: [("pids".to_string(), PathBuf::from("/sys/fs/cgroup/pids/c1"))].into(),
            created: vec![PathBuf::from("/sys/fs/cgroup/pids/p")],
        };
        let sub = sub_record(&rec, Path::new("s/t"));
        assert_eq!(sub.path, "/c1/s/t");
        assert_eq!(
            sub.paths["pids"],
            PathBuf::from("/sys/fs/cgroup/pids/c1/s/t")
        );
        assert!(
            sub.created.is_empty(),
            "a sub-cgroup never removes the container's parents"
        );
    }

    #[test]
    fn preserved_fds_must_be_inherited_ones() {
        // Every fd this test process opened itself is close-on-exec (std's default).
        let f = std::fs::File::open("/proc/self/stat").unwrap();
        let fd = f.as_raw_fd();
        assert!(check_preserved_fds((fd - 2) as u32).is_err());
        assert!(check_preserved_fds(0).is_ok());
    }
}
