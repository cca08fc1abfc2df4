//! The lifecycle operations behind the CLI verbs: create, start, kill, delete, and the OCI state
//! JSON they report. Each verb takes the container's lock for its whole run.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    bind, connect, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr,
};
use oci_spec::runtime::Spec;
use serde::Serialize;

use super::state::{proc_stat, CONFIG_FILE, SECCOMP_FILE};
use super::{Container, Status, StoredState};
use crate::cgroups::{self, Manager};
use crate::config::{self, Bundle};
use crate::error::{Error, Result};
use crate::fault;
use crate::linux::launcher;
use crate::linux::namespaces::NsPlan;
use crate::process::{self, sync, InitConfig, StartWait};
use crate::selfprotect;
use crate::trace;

/// The runtime-spec version Berth implements (reported in state JSON and `--version`).
pub const OCI_VERSION: &str = "1.2.1";

pub struct CreateOptions {
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    /// An already connected console socket (`run` in the foreground relays the pty itself);
    /// used when process.terminal is set and no --console-socket was given.
    pub console_fd: Option<OwnedFd>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    /// `--pidfd-socket`: receives a pidfd of the init (see `pidfd`).
    pub pidfd_socket: Option<PathBuf>,
    /// The caller starts the container at once (`run`): the init waits on a socketpair
    /// instead of a start.sock file.
    pub start_now: bool,
}

/// The OCI state of a container, as `state` prints it and hooks read it on stdin. Field order
/// and names follow runc's `state` (annotations before owner).
#[derive(Serialize)]
pub struct OciState<'a> {
    #[serde(rename = "ociVersion")]
    pub oci_version: &'a str,
    pub id: &'a str,
    pub pid: i32,
    pub status: Status,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    pub created: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: &'a BTreeMap<String, String>,
    pub owner: &'a str,
}

pub fn oci_state<'a>(st: &'a StoredState, status: Status) -> OciState<'a> {
    OciState {
        oci_version: OCI_VERSION,
        id: &st.id,
        pid: if status == Status::Stopped { 0 } else { st.pid },
        status,
        bundle: &st.bundle,
        rootfs: &st.rootfs,
        created: &st.created,
        owner: "",
        annotations: &st.annotations,
    }
}

/// The state given to hooks on stdin.
fn hook_state(st: &StoredState, status: Status) -> Vec<u8> {
    serde_json::to_vec(&oci_state(st, status)).expect("state serialises")
}

/// Creates a container: validates the bundle, then builds everything, undoing it all on error.
/// Returns the locked container (status `created`).
pub fn create(root: &Path, id: &str, opts: &CreateOptions) -> Result<Container> {
    let parse = trace::step("config");
    super::validate_id(id)?;
    check_config_size(&opts.bundle)?;
    let Bundle {
        dir,
        rootfs,
        mut spec,
        raw,
    } = config::load_bundle(&opts.bundle)?;
    parse.end();
    fault::point("create:config-parsed")?;
    // $NOTIFY_SOCKET: the container gets a notify socket of its own (see `sdnotify`).
    let notify = crate::sdnotify::host_socket().is_some();
    if notify {
        let root = std::path::absolute(root).map_err(|e| Error::sys("--root", e))?;
        crate::sdnotify::add_to_spec(&mut spec, &root.join(id));
    }
    let terminal = spec.process().as_ref().and_then(|p| p.terminal()) == Some(true);
    if terminal && opts.console_socket.is_none() && opts.console_fd.is_none() {
        return Err(Error::Usage(
            "process.terminal is true: --console-socket is required (or set terminal to false)"
                .into(),
        ));
    }
    let seccomp = compile_seccomp(&spec)?;
    let validate = trace::step("validate");
    let lsm = spec
        .process()
        .as_ref()
        .map(crate::linux::lsm::Enabled::detect_for)
        .unwrap_or_default();
    // The binary about to enter the container must stay out of its reach (CVE-2019-5736):
    // decided before any side effect, since it may mean re-executing Berth.
    let launcher = protect(&spec, spec.process().as_ref(), seccomp.as_ref(), lsm, false)?;
    let cgroup = cgroups::for_spec(&spec, id)?;
    // Id maps this caller may not make are refused now, naming the mapping (rootless).
    crate::rootless::idmap::plan(&spec)?;
    validate.end();
    fault::point("create:validated")?;
    let console = match (&opts.console_socket, &opts.console_fd, terminal) {
        (Some(p), _, true) => Some(
            connect_unix(p)
                .map_err(|e| Error::sys(format!("--console-socket {}", p.display()), e))?,
        ),
        (None, Some(fd), true) => Some(
            fd.try_clone()
                .map_err(|e| Error::sys("console socket", e))?,
        ),
        _ => None,
    };
    let pidfd_socket = opts
        .pidfd_socket
        .as_deref()
        .map(crate::pidfd::connect)
        .transpose()?;
    // First side effect: the container directory (fails if the id is taken).
    let mut c = trace::span("state-dir", || Container::create(root, id))?;
    let checked = Checked {
        bundle: &dir,
        rootfs: &rootfs,
        spec: &spec,
        raw: &raw,
        console,
        seccomp,
        lsm,
        launcher,
        notify,
        pidfd_socket,
    };
    match build(&mut c, checked, cgroup.as_ref(), opts) {
        Ok(()) => Ok(c),
        Err(e) => {
            // An init the OOM killer ended in its setup says nothing; its cgroup tells why.
            let e = cgroup.oom_kill_error().map_or(e, Error::from);
            let undo = trace::step("undo");
            let _ = cgroup.destroy();
            let _ = c.remove();
            undo.end();
            // runtime-spec lifecycle: a failed create continues at "destroy", then poststop.
            if let Some(h) = spec.hooks().as_ref().and_then(|h| h.poststop().as_ref()) {
                let st = StoredState {
                    id: id.to_string(),
                    pid: 0,
                    start_time: 0,
                    bundle: dir.clone(),
                    rootfs: rootfs.clone(),
                    created: String::new(),
                    annotations: BTreeMap::new(),
                    cgroup: None,
                    ..Default::default()
                };
                let _t = trace::step("hook:poststop");
                crate::hooks::run_all_warn("poststop", h, &hook_state(&st, Status::Stopped));
            }
            Err(e)
        }
    }
}

/// The largest config.json `create` accepts (runc has no limit of its own; this one keeps a
/// runaway file from being read, copied and parsed whole; the error states the limit).
pub const MAX_CONFIG_BYTES: u64 = 32 << 20;

fn check_config_size(bundle: &Path) -> Result<()> {
    match std::fs::metadata(bundle.join("config.json")) {
        Ok(m) if m.len() > MAX_CONFIG_BYTES => Err(Error::Usage(format!(
            "config.json: larger than {MAX_CONFIG_BYTES} bytes (32 MiB): {} bytes",
            m.len()
        ))),
        // Reading it reports any other problem, by name.
        _ => Ok(()),
    }
}

/// What `create` has validated and prepared before its first side effect.
struct Checked<'a> {
    bundle: &'a Path,
    rootfs: &'a Path,
    spec: &'a Spec,
    raw: &'a [u8],
    console: Option<OwnedFd>,
    seccomp: Option<berth_seccomp::Compiled>,
    lsm: crate::linux::lsm::Enabled,
    /// The final exec goes through the launcher (see `selfprotect`).
    launcher: bool,
    /// The container gets a notify socket (`sdnotify`).
    notify: bool,
    pidfd_socket: Option<OwnedFd>,
}

fn build(
    c: &mut Container,
    checked: Checked<'_>,
    cgroup: &dyn Manager,
    opts: &CreateOptions,
) -> Result<()> {
    let Checked {
        bundle,
        rootfs,
        spec,
        raw,
        console,
        seccomp,
        lsm,
        launcher,
        notify,
        pidfd_socket,
    } = checked;
    fault::point("create:state-dir-made")?;
    // The bytes create already read: the stored copy needs no second serialisation.
    trace::span("config-copy", || {
        c.write_file(CONFIG_FILE, raw)?;
        // exec loads the container's filter from this copy, without the profile.
        match &seccomp {
            Some(s) => c.write_file(SECCOMP_FILE, &s.to_stored()),
            None => Ok(()),
        }
    })?;
    fault::point("create:config-copied")?;
    if notify {
        crate::sdnotify::make_dir(c)?;
    }
    let start = if opts.start_now {
        let (ours, theirs) = sync::pair().map_err(|e| Error::sys("start socketpair", e))?;
        c.start_conn = Some(ours.0);
        StartWait::Connected(theirs.0)
    } else {
        StartWait::Listener(listen_start(c)?)
    };
    fault::point("create:start-socket-made")?;
    let annotations: BTreeMap<String, String> = spec
        .annotations()
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut st = StoredState {
        id: c.id.clone(),
        pid: 0,
        start_time: 0,
        bundle: bundle.to_path_buf(),
        rootfs: rootfs.to_path_buf(),
        created: crate::timefmt::now_rfc3339(),
        annotations,
        cgroup: None,
        poststart_hooks: spec
            .hooks()
            .as_ref()
            .is_some_and(|h| h.poststart().as_ref().is_some_and(|v| !v.is_empty())),
        poststop_hooks: spec
            .hooks()
            .as_ref()
            .is_some_and(|h| h.poststop().as_ref().is_some_and(|v| !v.is_empty())),
        seccomp_notify: seccomp.as_ref().is_some_and(|s| s.uses_notify()),
        init_comm: None,
        init_exe: None,
    };
    // If this process is killed half-way, there is no state.json yet: `delete --force` then
    // finds the cgroup from the stored config (see `delete`).
    trace::span("cgroup", || cgroup.create())?;
    fault::point("create:cgroup-made")?;
    // The init enters its cgroup itself where the driver lets it (see `cgroups::Entry`).
    let entry = cgroup.entry();
    #[allow(deprecated)]
    let parent_hooks = spec.hooks().as_ref().is_some_and(|h| {
        h.prestart().as_ref().is_some_and(|v| !v.is_empty())
            || h.create_runtime().as_ref().is_some_and(|v| !v.is_empty())
            || h.create_container().as_ref().is_some_and(|v| !v.is_empty())
    });
    let cfg = InitConfig {
        id: &c.id,
        spec,
        rootfs,
        bundle,
        ns: NsPlan::from_spec(spec),
        no_pivot: opts.no_pivot,
        no_new_keyring: opts.no_new_keyring,
        preserve_fds: opts.preserve_fds + listen_fds(),
        console_socket: console,
        start,
        close_in_child: c
            .dir_fds()
            .into_iter()
            .chain(c.start_conn.as_ref().map(|fd| fd.as_raw_fd()))
            .chain(pidfd_socket.as_ref().map(|fd| fd.as_raw_fd()))
            .chain(entry.iter().flat_map(|e| e.fds()))
            .collect(),
        cgroup_entry: entry.as_ref(),
        seccomp,
        lsm,
        launcher,
        parent_hooks,
    };
    // linux.netDevices moved in by `placed`: given back to the host unless create succeeds.
    let mut netdevs = crate::linux::netdev::Guard::default();
    // linux.intelRdt's group, if `placed` made it: removed unless create succeeds.
    let mut rdt = crate::resctrl::Guard::default();
    let mut parent = ParentSide {
        spec,
        cgroup,
        entered: entry.is_some(),
        st: &mut st,
        netdevs: &mut netdevs,
        rdt: &mut rdt,
    };
    let pid = process::spawn(&cfg, &mut parent)?;
    st.pid = pid;
    // The record names the parent directories the driver made, so delete removes them too;
    // taken once the init exists (the systemd driver makes some only then).
    st.cgroup = cgroup.recorded();
    if let Some(s) = super::state::read_stat(pid) {
        st.start_time = s.start;
        st.init_comm = Some(s.comm);
    }
    st.init_exe = super::state::exe_identity(pid);
    // From here on the init exists: a failure must end it (and whatever it left in its cgroup)
    // before `create` removes the cgroup and the directory, or it would outlive every record
    // of it. runc does the same for its pid file (terminate, then destroy).
    let recorded = (|| -> Result<()> {
        let _t = trace::step("state-save");
        fault::point("create:init-ready")?;
        if let Some(sock) = &pidfd_socket {
            crate::pidfd::send(sock, pid, crate::pidfd::STANDARD)?;
        }
        if let Some(d) = rdt.owned() {
            use std::os::unix::ffi::OsStrExt;
            c.write_file(crate::resctrl::RECORD, d.as_os_str().as_bytes())?;
        }
        c.save(st.clone())?;
        fault::point("create:state-saved")?;
        if let Some(pf) = &opts.pid_file {
            write_pid_file(pf, pid)?;
            fault::point("create:pid-file-written")?;
        }
        Ok(())
    })();
    match recorded {
        Ok(()) => {
            netdevs.keep();
            rdt.keep();
        }
        Err(_) => kill_all_and_wait(&st),
    }
    recorded
}

/// Where compiled seccomp filters are cached between containers (keyed by a hash of the
/// profile, the libseccomp version and the architecture). BERTH_SECCOMP_CACHE overrides it;
/// a rootless caller's goes to its own cache directory (see `rootless::cache`).
fn seccomp_cache_dir() -> PathBuf {
    std::env::var_os("BERTH_SECCOMP_CACHE")
        .map(PathBuf::from)
        .or_else(crate::rootless::cache::seccomp_dir)
        .unwrap_or_else(|| PathBuf::from("/var/cache/berth/seccomp"))
}

/// Validates and compiles `linux.seccomp` (before any side effect: errors name the field).
pub fn compile_seccomp(spec: &Spec) -> Result<Option<berth_seccomp::Compiled>> {
    let Some(profile) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) else {
        return Ok(None);
    };
    let mut t = trace::step("seccomp");
    let compiled = berth_seccomp::compile_cached(profile, &seccomp_cache_dir())
        .map_err(process::ProcessError::from)?;
    t.detail(|| {
        if compiled.from_cache() {
            "cache hit"
        } else {
            "compiled"
        }
    });
    t.end();
    for note in compiled.notes() {
        crate::logging::debug(format!("linux.seccomp: {note}"));
    }
    Ok(Some(compiled))
}

/// $LISTEN_FDS (systemd socket activation) fds are passed on too, as runc does.
pub(crate) fn listen_fds() -> u32 {
    std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

struct ParentSide<'a> {
    spec: &'a Spec,
    cgroup: &'a dyn Manager,
    /// The init enters its cgroup itself (`InitConfig::cgroup_entry`): no `add`.
    entered: bool,
    st: &'a mut StoredState,
    netdevs: &'a mut crate::linux::netdev::Guard,
    rdt: &'a mut crate::resctrl::Guard,
}

impl process::Parent for ParentSide<'_> {
    fn placed(&mut self, pid: i32, write_maps: bool) -> Result<()> {
        fault::point("create:init-spawned")?;
        if write_maps {
            trace::span("id-maps", || process::write_id_maps(self.spec, pid))?;
            fault::point("create:id-maps-written")?;
        }
        if let Some(p) = self.spec.process() {
            crate::linux::identity::write_oom_score_adj(pid, p)
                .map_err(process::ProcessError::Init)?;
            fault::point("create:oom-score-adj-written")?;
        }
        crate::linux::netdev::move_in(self.spec, pid, self.netdevs)?;
        if !self.entered {
            trace::span("cgroup-join", || self.cgroup.add(pid))?;
        }
        fault::point("create:cgroup-joined")?;
        let root = Path::new(crate::resctrl::ROOT);
        crate::resctrl::join(root, self.spec, &self.st.id, pid, self.rdt)?;
        if let Some(r) = self
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref())
        {
            trace::span("resources", || self.cgroup.apply(r))?;
            fault::point("create:resources-written")?;
        }
        Ok(())
    }

    fn write_maps(&mut self, pid: i32) -> Result<()> {
        trace::span("id-maps", || process::write_id_maps(self.spec, pid))?;
        fault::point("create:id-maps-written")?;
        Ok(())
    }

    fn seccomp_listener(&mut self, pid: i32, fd: OwnedFd) -> Result<()> {
        self.st.pid = pid;
        pass_notify_fd(self.spec, self.st, Status::Creating, pid, fd.as_fd())
    }

    fn run_hooks(&mut self, pid: i32) -> Result<Vec<u8>> {
        self.st.pid = pid;
        let state = hook_state(self.st, Status::Creating);
        if let Some(h) = self.spec.hooks() {
            #[allow(deprecated)]
            if let Some(p) = h.prestart() {
                let mut t = trace::step("hook:prestart");
                t.count(p.len());
                crate::hooks::run_all("prestart", p, &state)?;
            }
            if let Some(c) = h.create_runtime() {
                let mut t = trace::step("hook:createRuntime");
                t.count(c.len());
                crate::hooks::run_all("createRuntime", c, &state)?;
            }
        }
        fault::point("create:hooks-run")?;
        Ok(state)
    }
}

/// The start socket is reached through the locked directory's fd, so its path stays short
/// whatever --root and the id are.
fn start_socket_addr(c: &Container) -> Result<UnixAddr> {
    let p = format!(
        "/proc/self/fd/{}/{}",
        c.lock_fd(),
        super::state::START_SOCKET
    );
    UnixAddr::new(p.as_str()).map_err(|e| Error::sys("start socket address", e))
}

/// A unix SOCK_SEQPACKET socket (message boundaries kept, close-on-exec).
fn seqpacket_socket() -> Result<OwnedFd> {
    socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| Error::sys("start socket", e))
}

fn listen_start(c: &Container) -> Result<OwnedFd> {
    let fd = seqpacket_socket()?;
    bind(fd.as_raw_fd(), &start_socket_addr(c)?).map_err(|e| Error::sys("bind start socket", e))?;
    listen(&fd, Backlog::new(1).expect("valid backlog"))
        .map_err(|e| Error::sys("listen on start socket", e))?;
    Ok(fd)
}

pub(crate) fn connect_unix(path: &Path) -> std::io::Result<OwnedFd> {
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    connect(fd.as_raw_fd(), &UnixAddr::new(path)?)?;
    Ok(fd)
}

/// Writes the pid file atomically (temporary file in the same directory, then rename).
pub fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let abs = std::path::absolute(path).map_err(|e| Error::sys("--pid-file", e))?;
    let dir = abs.parent().unwrap_or(Path::new("/"));
    let name = abs.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{}.tmp", name.unwrap_or_default()));
    std::fs::write(&tmp, pid.to_string())
        .map_err(|e| Error::sys(format!("--pid-file {}", tmp.display()), e))?;
    std::fs::rename(&tmp, &abs)
        .map_err(|e| Error::sys(format!("--pid-file {}", abs.display()), e))?;
    Ok(())
}

/// Decides how the Berth binary is kept out of the reach of a process about to run `process`
/// in the container `spec` configures (see `selfprotect`); re-executes Berth when that is the
/// answer. Returns whether the final exec goes through the launcher.
pub(crate) fn protect(
    spec: &Spec,
    process: Option<&oci_spec::runtime::Process>,
    seccomp: Option<&berth_seccomp::Compiled>,
    lsm: crate::linux::lsm::Enabled,
    earlier_privileged_exec: bool,
) -> Result<bool> {
    let default = oci_spec::runtime::Process::default();
    let exposure = selfprotect::Exposure::of(
        spec,
        process.unwrap_or(&default),
        seccomp,
        lsm,
        earlier_privileged_exec,
    );
    let method =
        selfprotect::apply(&exposure).map_err(|e| Error::sys("protect the berth binary", e))?;
    Ok(method == selfprotect::Method::Launcher)
}

/// The error for a launcher's report that the final execve failed.
pub(crate) fn launch_failed(payload: &[u8]) -> process::ProcessError {
    process::ProcessError::Init(match launcher::decode_failure(payload) {
        Some((errno, path)) => format!("exec {path:?}: {errno}"),
        None => "exec failed (unreadable report from the launcher)".into(),
    })
}

/// Releases a created container's init to exec the user's program, then runs poststart hooks.
pub fn start(c: &mut Container) -> Result<()> {
    let (fd, from_socket_file) = match c.start_conn.take() {
        // `run`: this process created the init and holds the other end of its socketpair, so
        // the container is `created` by construction (no start.sock shows it).
        Some(fd) => (fd, false),
        None => {
            c.require_startable()?;
            let fd = seqpacket_socket()?;
            connect(fd.as_raw_fd(), &start_socket_addr(c)?)
                .map_err(|e| handshake_failed(c, "connect to the container's init", e))?;
            (fd, true)
        }
    };
    let st = c.state.clone().expect("created container has state");
    let handshake = trace::step("start");
    let ch = sync::Channel(fd);
    ch.send(sync::START, &hook_state(&st, Status::Created))
        .map_err(|e| handshake_failed(c, "release the container's init", e))?;
    fault::point("start:released")?;
    // The stored config is parsed only when something below needs it.
    let spec = if st.poststart_hooks {
        Some(load_spec(c)?)
    } else {
        None
    };
    let reply = ch
        .recv()
        .map_err(|e| handshake_failed(c, "wait for the container's init", e))?;
    // End of stream: the program is exec'd. (A seccomp notify fd went to the agent during
    // `create`, as with runc.)
    let result = match reply {
        Some((sync::ERROR, msg)) => Err(process::ProcessError::Init(
            String::from_utf8_lossy(&msg).into_owned(),
        )),
        Some((launcher::FAILED, msg)) => Err(launch_failed(&msg)),
        _ => Ok(()),
    };
    if from_socket_file {
        c.remove_start_socket();
    }
    handshake.end();
    result?;
    fault::point("start:init-running")?;
    if let Some(h) = spec
        .as_ref()
        .and_then(|s| s.hooks().as_ref())
        .and_then(|h| h.poststart().as_ref())
    {
        let mut t = trace::step("hook:poststart");
        t.count(h.len());
        crate::hooks::run_all_warn("poststart", h, &hook_state(&st, Status::Running));
    }
    Ok(())
}

/// The error for a failed exchange with a created init: when the init is no longer waiting
/// (it exited, or another `start` released it), that is the error, in runc's words.
fn handshake_failed(c: &Container, what: &str, e: impl Into<std::io::Error>) -> Error {
    match c.require_startable() {
        Err(refused) => refused.into(),
        Ok(()) => Error::sys(what, e),
    }
}

/// The runtime spec's `State` as runc gives it to a seccomp agent: none of `berth state`'s
/// other fields (rootfs, created, owner).
#[derive(Serialize)]
struct AgentState<'a> {
    #[serde(rename = "ociVersion")]
    oci_version: &'a str,
    id: &'a str,
    status: Status,
    pid: i32,
    bundle: &'a Path,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: &'a BTreeMap<String, String>,
}

/// Sends the seccomp notify fd of process `pid` (the init during `create`, with status
/// `creating`; an exec'd process, with `running`), with the container process state, to the
/// agent at `linux.seccomp.listenerPath`, as runc does.
pub fn pass_notify_fd(
    spec: &Spec,
    st: &StoredState,
    status: Status,
    pid: i32,
    fd: std::os::fd::BorrowedFd<'_>,
) -> Result<()> {
    let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
    let Some(path) = seccomp.and_then(|s| s.listener_path().as_ref()) else {
        return Err(Error::Usage(
            "linux.seccomp.listenerPath: required by SCMP_ACT_NOTIFY".into(),
        ));
    };
    let state = serde_json::to_vec(&AgentState {
        oci_version: OCI_VERSION,
        id: &st.id,
        status,
        pid: st.pid,
        bundle: &st.bundle,
        annotations: &st.annotations,
    })
    .expect("state serialises");
    berth_seccomp::send_listener(
        path,
        seccomp.and_then(|s| s.listener_metadata().as_deref()),
        fd,
        pid,
        &state,
    )
    .map_err(process::ProcessError::from)?;
    Ok(())
}

/// The container's seccomp filter for `exec`: the copy create kept, or (a container made
/// by an older Berth, a damaged copy) `linux.seccomp` compiled again, usually from the cache.
pub fn exec_seccomp(c: &Container, spec: &Spec) -> Result<Option<berth_seccomp::Compiled>> {
    if spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
        .is_none()
    {
        return Ok(None);
    }
    let mut t = trace::step("seccomp");
    if let Some(s) = c
        .read_file(SECCOMP_FILE)
        .ok()
        .and_then(|b| berth_seccomp::Compiled::from_stored(&b))
    {
        t.detail(|| "stored");
        return Ok(Some(s));
    }
    drop(t);
    compile_seccomp(spec)
}

/// The container's config as it was at create.
pub fn load_spec(c: &Container) -> Result<Spec> {
    let b = c.read_file(CONFIG_FILE)?;
    Ok(config::parse_stored(&b)?)
}

/// Sends `sig` to the init (or, with `all`, to every process in the container's cgroup).
/// With `all`, the cgroup is frozen while it is signalled so no process escapes by forking (as
/// runc; a stopped container may still have processes when it shared the host's pid namespace).
/// SIGKILL to a paused container thaws it, so that it dies.
pub fn kill(c: &Container, sig: i32, all: bool) -> Result<()> {
    let status = if all {
        c.require(
            &[
                Status::Created,
                Status::Running,
                Status::Paused,
                Status::Stopped,
            ],
            "kill",
        )?
    } else {
        c.require(&[Status::Created, Status::Running, Status::Paused], "kill")?
    };
    // A container without state (an interrupted create) has nothing recorded to signal.
    let Some(st) = c.state.as_ref() else {
        return Ok(());
    };
    if all {
        match &st.cgroup {
            Some(rec) => cgroups::from_record(rec).signal_all(sig)?,
            // No cgroup (rootless): the processes of the init's own pid namespace.
            None => crate::rootless::signal::signal_pid_namespace(st.pid, st.start_time, sig)
                .map(drop)
                .map_err(|e| Error::sys(format!("send signal {sig}"), e))?,
        }
        return Ok(());
    }
    signal_init(st, sig)?;
    if status == Status::Paused && sig == libc::SIGKILL {
        if let Some(rec) = &st.cgroup {
            cgroups::from_record(rec).thaw()?;
        }
    }
    Ok(())
}

/// Signals the init through a pidfd whose start time has been checked: never a reused pid.
fn signal_init(st: &StoredState, sig: i32) -> Result<()> {
    let pidfd = match crate::linux::sys::pidfd_open(st.pid) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(()),
        Err(e) => return Err(Error::sys("pidfd_open", e)),
    };
    // The pidfd pins the process; check it is still ours.
    if proc_stat(st.pid).map(|s| s.0) != Some(st.start_time) {
        return Ok(());
    }
    match crate::linux::sys::pidfd_send_signal(pidfd.as_raw_fd(), sig) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
        Err(e) => Err(Error::sys(format!("send signal {sig}"), e)),
    }
}

/// Kills the init (if it is still the container's) and then every process left in the
/// container's cgroup with SIGKILL, and waits on their pidfds (blocking, no polling loop) until
/// they are gone, so that the cgroup can be removed. Without a pid namespace the init's death
/// does not take its descendants with it: they are killed one by one, as runc does, in rounds
/// while new ones appear.
fn kill_all_and_wait(st: &StoredState) {
    use crate::linux::sys::{pidfd_open, pidfd_send_signal};
    let mut fds = Vec::new();
    if let Ok(fd) = pidfd_open(st.pid) {
        // The pidfd pins the process; check it is still ours.
        if proc_stat(st.pid).map(|s| s.0) == Some(st.start_time) {
            let _ = pidfd_send_signal(fd.as_raw_fd(), libc::SIGKILL);
            fds.push(fd);
        }
    }
    wait_exited(&fds);
    let Some(rec) = &st.cgroup else { return };
    let m = cgroups::from_record(rec);
    for _ in 0..10 {
        let pids = m.pids().unwrap_or_default();
        if pids.is_empty() {
            break;
        }
        let fds: Vec<OwnedFd> = pids.iter().filter_map(|p| pidfd_open(*p).ok()).collect();
        for fd in &fds {
            let _ = pidfd_send_signal(fd.as_raw_fd(), libc::SIGKILL);
        }
        wait_exited(&fds);
    }
}

/// Blocks until every process behind `pidfds` has exited (10 s at most each).
fn wait_exited(pidfds: &[OwnedFd]) {
    for fd in pidfds {
        let mut p = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut p, PollTimeout::from(10_000u16));
    }
}

/// Deletes a container: with `force`, kills it first. Removes its cgroup and state, then runs
/// poststop hooks.
pub fn delete(c: Container, force: bool) -> Result<()> {
    let status = c.status();
    match status {
        Status::Stopped => {}
        Status::Created => {}
        _ if force => {}
        _ => {
            c.require(&[Status::Stopped], "delete")?;
        }
    }
    // The stored config is needed for poststop hooks, or to find the cgroup of a create that
    // was killed before it saved its state.
    let spec = match &c.state {
        Some(st) if !st.poststop_hooks => None,
        _ => load_spec(&c).ok(),
    };
    if let Some(st) = &c.state {
        let kill = trace::step("kill");
        if let Some(rec) = st.cgroup.as_ref().filter(|_| status != Status::Stopped) {
            // Freeze-kill-thaw (or cgroup.kill): also ends a paused container.
            let _ = cgroups::from_record(rec).signal_all(libc::SIGKILL);
        }
        // A stopped container may still have processes in its cgroup (no pid namespace).
        kill_all_and_wait(st);
        kill.end();
        fault::point("delete:killed")?;
        if let Some(rec) = &st.cgroup {
            trace::span("cgroup-remove", || cgroups::from_record(rec).destroy())?;
        }
        fault::point("delete:cgroup-removed")?;
    } else if let Some(spec) = &spec {
        // A create killed before it saved its state: its cgroups are where it placed them.
        if let Ok(m) = cgroups::for_spec(spec, &c.id) {
            if m.exists() {
                let _ = m.signal_all(libc::SIGKILL);
            }
            m.destroy()?;
        }
    }
    let root = Path::new(crate::resctrl::ROOT);
    crate::resctrl::remove_recorded(root, c.read_file(crate::resctrl::RECORD).ok())?;
    let state = c.state.clone();
    trace::span("state-remove", || c.remove())?;
    fault::point("delete:state-removed")?;
    if let (Some(spec), Some(st)) = (spec, state) {
        if let Some(h) = spec.hooks().as_ref().and_then(|h| h.poststop().as_ref()) {
            let mut t = trace::step("hook:poststop");
            t.count(h.len());
            crate::hooks::run_all_warn("poststop", h, &hook_state(&st, Status::Stopped));
        }
    }
    Ok(())
}
