//! Shared harness for integration tests: they drive the real `berth` binary, as root, on
//! busybox bundles, and check effects from inside (the container's output) and outside (/proc,
//! mountinfo, cgroupfs). Every `Runtime` removes its containers when dropped, pass or fail.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// The runtime under test: Berth, or the binary named by $BERTH_TEST_RUNTIME (e.g. `runc`),
/// to check that a test describes runc's behaviour rather than Berth's.
pub fn berth_bin() -> PathBuf {
    match std::env::var_os("BERTH_TEST_RUNTIME") {
        Some(r) if !r.is_empty() => PathBuf::from(r),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_berth")),
    }
}

/// Where Debian's busybox-static puts the binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// A fresh `--root` for one test; deletes (with --force) every container left in it on drop.
pub struct Runtime {
    pub root: tempfile::TempDir,
    /// Ids given to create/run through the helpers (see [`Runtime::track`]), for the
    /// last-resort cleanup on drop.
    seen: std::cell::RefCell<Vec<String>>,
}

impl Default for Runtime {
    fn default() -> Self {
        Self::new()
    }
}

impl Runtime {
    pub fn new() -> Runtime {
        let root = tempfile::Builder::new()
            .prefix("berth-test-root-")
            .tempdir_in(std::env::temp_dir())
            .expect("temp root");
        Runtime {
            root,
            seen: Default::default(),
        }
    }

    /// Remembers `id` so that drop cleans up after it even if the runtime lost track of it.
    pub fn track(&self, id: &str) {
        self.seen.borrow_mut().push(id.to_string());
    }

    /// A `berth --root R` command, ready for more arguments.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(berth_bin());
        c.arg("--root").arg(self.root.path());
        c.stdin(Stdio::null());
        c
    }

    /// Runs `berth --root R ARGS…` and returns its output (stdout/stderr captured).
    pub fn berth(&self, args: &[&str]) -> Output {
        capture(self.cmd().args(args))
    }

    /// Like [`berth`], but panics with both streams if it failed.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.berth(args);
        assert!(
            o.status.success(),
            "berth {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `berth run --bundle B ID` in the foreground, capturing output.
    pub fn run(&self, id: &str, bundle: &Bundle) -> Output {
        self.track(id);
        self.berth(&["run", "--bundle", bundle.path().to_str().unwrap(), id])
    }

    /// Runs `bundle` to completion as a container named after `name` and returns its stdout,
    /// panicking (with both streams) if it failed.
    pub fn run_stdout(&self, name: &str, bundle: &Bundle) -> String {
        let id = unique_id(name);
        let o = self.run_timeout(&id, bundle, &[]);
        assert!(
            o.status.success(),
            "{name}: exit {}\nstdout: {}\nstderr: {}",
            o.status,
            stdout(&o),
            stderr(&o)
        );
        stdout(&o)
    }

    /// `berth state ID` parsed.
    pub fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id])).expect("state is JSON")
    }

    pub fn ids(&self) -> Vec<String> {
        let o = self.berth(&["list", "-q"]);
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let mut all = self.ids();
        all.extend(self.seen.borrow().iter().cloned());
        for id in self.ids() {
            let _ = self.berth(&["delete", "--force", &id]);
        }
        // Directories of containers whose create was interrupted have no state.json.
        if let Ok(rd) = std::fs::read_dir(self.root.path()) {
            for e in rd.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                let _ = self.berth(&["delete", "--force", &id]);
                all.push(id);
            }
        }
        // Last resort when the runtime under test failed to clean up: kill what is left in
        // the containers' cgroups (named after their ids) and remove them, so that a failing
        // test still leaves the machine clean.
        for id in all {
            force_remove_cgroups(&id);
        }
    }
}

/// Kills every process in `<hierarchy>/<id>` of each cgroup hierarchy and removes the
/// directories (test cleanup only).
pub fn force_remove_cgroups(id: &str) {
    if id.is_empty() || id.contains('/') || id.starts_with('.') {
        return;
    }
    for h in cgroup_hierarchies() {
        let d = h.join(id);
        if !d.is_dir() {
            continue;
        }
        for _ in 0..50 {
            let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                // SAFETY: kill(2) with integer arguments.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            if std::fs::remove_dir(&d).is_ok() || !d.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// An OCI bundle with a busybox root filesystem and the `berth spec` defaults (terminal off).
pub struct Bundle {
    pub dir: tempfile::TempDir,
    pub config: Value,
}

impl Bundle {
    /// A busybox bundle whose process runs `sh -c SCRIPT`.
    pub fn sh(script: &str) -> Bundle {
        let mut b = Bundle::busybox();
        b.config["process"]["args"] = serde_json::json!(["sh", "-c", script]);
        b.save();
        b
    }

    pub fn busybox() -> Bundle {
        let dir = tempfile::Builder::new()
            .prefix("berth-test-bundle-")
            .tempdir_in(std::env::temp_dir())
            .expect("temp bundle");
        make_busybox_rootfs(&dir.path().join("rootfs"));
        let out = Command::new(berth_bin())
            .args(["spec", "--bundle"])
            .arg(dir.path())
            .output()
            .expect("berth spec");
        assert!(out.status.success(), "berth spec: {out:?}");
        let path = dir.path().join("config.json");
        let mut config: Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).expect("spec JSON");
        config["process"]["terminal"] = Value::Bool(false);
        let b = Bundle { dir, config };
        b.save();
        b
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// Edits the config with `f` and writes it.
    pub fn edit(&mut self, f: impl FnOnce(&mut Value)) -> &mut Self {
        f(&mut self.config);
        self.save();
        self
    }

    pub fn save(&self) {
        std::fs::write(
            self.dir.path().join("config.json"),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }
}

/// A minimal root filesystem: busybox-static with its applets as symlinks, /etc/passwd and
/// /etc/group, and the usual empty mount points.
pub fn make_busybox_rootfs(rootfs: &Path) {
    for d in [
        "bin", "proc", "sys", "dev", "etc", "tmp", "root", "home", "var", "run",
    ] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy(BUSYBOX, rootfs.join("bin/busybox"))
        .expect("copy /bin/busybox (install Debian's busybox-static)");
    let list = Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet));
        }
    }
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\nuser:x:1000:1000:user:/home/user:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        rootfs.join("etc/group"),
        "root:x:0:\nwheel:x:10:user\nnogroup:x:65534:\nuser:x:1000:\n",
    )
    .unwrap();
}

/// Runs `cmd` with stdout and stderr captured in temporary files, not pipes: a container's init
/// inherits Berth's stdio and keeps it open after `create` returns (as with runc), so waiting
/// for EOF on a pipe would wait for the container.
pub fn capture(cmd: &mut Command) -> Output {
    let out = tempfile::tempfile().expect("temp file");
    let err = tempfile::tempfile().expect("temp file");
    let status = cmd
        .stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap())
        .status()
        .expect("run berth");
    let read = |mut f: std::fs::File| {
        use std::io::{Read, Seek};
        let mut v = Vec::new();
        f.rewind().unwrap();
        f.read_to_end(&mut v).unwrap();
        v
    };
    Output {
        status,
        stdout: read(out),
        stderr: read(err),
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Whether this kernel has namespaces of kind `ns` (`time`, `cgroup`, ...), as /proc/self/ns
/// shows them. A test that needs one prints `SKIP:` and returns when it is missing.
pub fn kernel_has_namespace(ns: &str) -> bool {
    Path::new("/proc/self/ns").join(ns).exists()
}

/// Prints the `SKIP:` line for a test that cannot run on this kernel; returns whether it must.
pub fn skip_without_namespace(test: &str, ns: &str) -> bool {
    if kernel_has_namespace(ns) {
        return false;
    }
    println!("SKIP: {test}: this kernel has no {ns} namespace (/proc/self/ns/{ns} is missing)");
    true
}

/// A non-zero seed for a test's random choices: `$var` when set (to replay a run), else one
/// taken from the clock.
pub fn test_seed(var: &str) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
        | 1
}

/// A unique container id for this test process.
pub fn unique_id(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

// ---------------------------------------------------------------------------------------------
// Extensions used by the lifecycle, CLI, error, cleanup, hooks, console, namespace, process and
// security suites and by conformance/. Everything below is additive: the API above is unchanged.
// ---------------------------------------------------------------------------------------------

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// A busybox bundle running `sh -c SCRIPT` with the full default spec, plus a writable host
/// directory bound at `/out` (see [`Bundle::out`]) for the container to leave results in.
pub fn sh(script: &str) -> Bundle {
    let mut b = Bundle::sh(script);
    b.with_out_mount();
    b
}

impl Bundle {
    /// Removes the `/sys/fs/cgroup` mount from the config (see [`sh`]).
    pub fn without_cgroup_mount(&mut self) -> &mut Self {
        self.edit(|c| {
            if let Some(m) = c["mounts"].as_array_mut() {
                m.retain(|m| m["destination"] != "/sys/fs/cgroup");
            }
        })
    }

    /// Host side of the container's `/out`.
    pub fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    /// Binds [`Bundle::out`] read-write at `/out` in the container (the root is read-only in
    /// the default spec).
    pub fn with_out_mount(&mut self) -> &mut Self {
        let out = self.out();
        std::fs::create_dir_all(&out).unwrap();
        std::fs::create_dir_all(self.rootfs().join("out")).unwrap();
        self.edit(|c| {
            c["mounts"].as_array_mut().unwrap().push(serde_json::json!({
                "destination": "/out", "type": "bind", "source": out,
                "options": ["rbind", "rw"]
            }));
        })
    }

    /// Sets `process.args`.
    pub fn args(&mut self, args: &[&str]) -> &mut Self {
        self.edit(|c| c["process"]["args"] = serde_json::json!(args))
    }

    /// Removes the namespace of type `ty` from `linux.namespaces`.
    pub fn without_namespace(&mut self, ty: &str) -> &mut Self {
        self.edit(|c| {
            c["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .retain(|n| n["type"] != ty)
        })
    }

    /// Adds (or replaces) a namespace entry.
    pub fn namespace(&mut self, ty: &str, path: Option<&str>) -> &mut Self {
        self.without_namespace(ty);
        self.edit(|c| {
            let mut n = serde_json::json!({ "type": ty });
            if let Some(p) = path {
                n["path"] = p.into();
            }
            c["linux"]["namespaces"].as_array_mut().unwrap().push(n);
        })
    }

    pub fn path_str(&self) -> &str {
        self.path().to_str().unwrap()
    }

    /// Reads a file the container wrote under `/out`.
    pub fn read_out(&self, name: &str) -> String {
        std::fs::read_to_string(self.out().join(name))
            .unwrap_or_else(|e| panic!("read /out/{name}: {e}"))
    }
}

impl Runtime {
    pub fn root_str(&self) -> &str {
        self.root.path().to_str().unwrap()
    }

    /// `berth run EXTRA… --bundle B ID`, foreground, capturing output.
    pub fn run_with(&self, id: &str, bundle: &Bundle, extra: &[&str]) -> Output {
        self.track(id);
        let mut args = vec!["run"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--bundle", bundle.path_str(), id]);
        self.berth(&args)
    }

    /// `berth create --bundle B ID`, panicking on failure. The container's stdio goes to
    /// files beside the bundle (see [`Runtime::create_detached`]).
    pub fn create(&self, id: &str, bundle: &Bundle) {
        self.create_detached(id, bundle, &[]).assert_ok();
    }

    /// The container's status from `berth state`.
    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Waits (up to `timeout`) until `berth state` reports `want`.
    pub fn wait_status(&self, id: &str, want: &str, timeout: Duration) -> bool {
        wait_until(timeout, || {
            let o = self.berth(&["state", id]);
            o.status.success()
                && serde_json::from_slice::<Value>(&o.stdout).is_ok_and(|v| v["status"] == want)
        })
    }

    /// The container's init pid from `berth state`.
    pub fn pid(&self, id: &str) -> i32 {
        self.state(id)["pid"].as_i64().expect("pid") as i32
    }
}

/// Polls `f` every 10 ms until it holds or `timeout` passes (tests only; Berth never polls).
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until `path` exists.
pub fn wait_for_file(path: &Path, timeout: Duration) -> bool {
    wait_until(timeout, || path.exists())
}

pub const SECS5: Duration = Duration::from_secs(5);
pub const SECS10: Duration = Duration::from_secs(10);

/// True while `pid` is a live (not zombie) process.
pub fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rfind(')')
            .and_then(|i| s[i + 2..].chars().next())
            .is_some_and(|st| st != 'Z' && st != 'X'),
        Err(_) => false,
    }
}

/// The inode of `/proc/PID/ns/NS`, e.g. `net:[4026531840]`.
pub fn ns_link(pid: i32, ns: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Non-empty lines of `s`.
pub fn lines(s: &str) -> Vec<&str> {
    s.lines().filter(|l| !l.trim().is_empty()).collect()
}

/// Asserts that a failed command printed exactly one non-empty line on stderr, which contains
/// every one of `needles`, and exited non-zero.
pub fn assert_one_error_line(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert!(
        !o.status.success(),
        "expected failure, got {}\nstdout: {}\nstderr: {err}",
        o.status,
        stdout(o)
    );
    let l = lines(&err);
    assert_eq!(l.len(), 1, "expected exactly one error line, got:\n{err}");
    for n in needles {
        assert!(l[0].contains(n), "error line lacks {n:?}: {}", l[0]);
    }
}

/// Every trace a container `id` created with `rt` from `bundle` could leave on the host:
/// a state directory, a cgroup directory in any hierarchy, a mount, a process. Returns what was
/// found (empty when clean). Scoped to this id and these paths, so tests running in parallel
/// (and other users of the machine) do not disturb it.
pub fn traces(rt: &Runtime, id: &str, bundle: &Bundle) -> Vec<String> {
    let mut found = Vec::new();
    let state = rt.root.path().join(id);
    if state.exists() {
        found.push(format!("state directory {}", state.display()));
    }
    for dir in cgroup_hierarchies() {
        let d = dir.join(id);
        if d.exists() {
            found.push(format!("cgroup {}", d.display()));
        }
    }
    let markers = [rt.root_str(), bundle.path_str()];
    if let Ok(mi) = std::fs::read_to_string("/proc/self/mountinfo") {
        for l in mi.lines().filter(|l| markers.iter().any(|m| l.contains(m))) {
            found.push(format!("mount {l}"));
        }
    }
    for (pid, cmd) in processes() {
        if markers.iter().any(|m| cmd.contains(m)) || cmd.contains(id) {
            found.push(format!("process {pid}: {cmd}"));
        }
    }
    found
}

/// Asserts [`traces`] is empty, allowing a moment for the kernel to finish reaping.
pub fn assert_nothing_left(rt: &Runtime, id: &str, bundle: &Bundle) {
    let mut t = Vec::new();
    let clean = wait_until(Duration::from_secs(2), || {
        t = traces(rt, id, bundle);
        t.is_empty()
    });
    assert!(
        clean,
        "container {id} left traces behind:\n{}",
        t.join("\n")
    );
}

/// Every cgroup hierarchy root (v1 controllers, the v2 mount), from /proc/self/mountinfo.
pub fn cgroup_hierarchies() -> Vec<PathBuf> {
    let Ok(mi) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return vec![];
    };
    mi.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let fstype = post.split(' ').next()?;
            let mp = pre.split(' ').nth(4)?;
            (fstype == "cgroup" || fstype == "cgroup2").then(|| PathBuf::from(mp))
        })
        .collect()
}

/// (pid, command line with spaces for NULs) of every process but this one.
pub fn processes() -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        if let Ok(b) = std::fs::read(e.path().join("cmdline")) {
            if !b.is_empty() {
                let s = String::from_utf8_lossy(&b).replace('\0', " ");
                out.push((pid, s.trim_end().to_string()));
            }
        }
    }
    out
}

/// A `--console-socket` for one test: a listening unix socket that receives the pty master.
pub struct ConsoleSocket {
    pub dir: tempfile::TempDir,
    listener: std::os::unix::net::UnixListener,
}

impl ConsoleSocket {
    pub fn new() -> ConsoleSocket {
        let dir = tempfile::Builder::new()
            .prefix("berth-test-console-")
            .tempdir_in(std::env::temp_dir())
            .unwrap();
        let listener = std::os::unix::net::UnixListener::bind(dir.path().join("sock")).unwrap();
        ConsoleSocket { dir, listener }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    pub fn path_str(&self) -> String {
        self.path().to_string_lossy().into_owned()
    }

    /// Accepts the runtime's connection and receives one fd over SCM_RIGHTS (the pty master),
    /// with the name sent beside it. Waits at most `timeout`.
    pub fn recv_master(&self, timeout: Duration) -> (OwnedFd, String) {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        use std::io::IoSliceMut;
        use std::os::fd::FromRawFd;
        self.listener.set_nonblocking(true).unwrap();
        let mut conn = None;
        assert!(
            wait_until(timeout, || match self.listener.accept() {
                Ok((s, _)) => {
                    conn = Some(s);
                    true
                }
                Err(_) => false,
            }),
            "nobody connected to the console socket"
        );
        let conn = conn.unwrap();
        conn.set_nonblocking(false).unwrap();
        conn.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = [0u8; 4096];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .expect("recvmsg on the console socket");
        let mut fd = None;
        for c in msg.cmsgs().expect("control messages") {
            if let ControlMessageOwned::ScmRights(fds) = c {
                fd = fds.first().copied();
            }
        }
        let n = msg.bytes;
        let fd = fd.expect("no fd received over the console socket");
        let name = String::from_utf8_lossy(&buf[..n]).into_owned();
        // SAFETY: the fd was just received over SCM_RIGHTS and is owned by nobody else.
        (unsafe { OwnedFd::from_raw_fd(fd) }, name)
    }
}

impl Default for ConsoleSocket {
    fn default() -> Self {
        Self::new()
    }
}

/// Reads from `fd` until `want` appears or EOF/EIO/timeout; returns what was read.
pub fn read_until(fd: &OwnedFd, want: &str, timeout: Duration) -> String {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let end = Instant::now() + timeout;
    let mut got = Vec::new();
    loop {
        if String::from_utf8_lossy(&got).contains(want) {
            break;
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        let ms = PollTimeout::try_from(left.as_millis().min(60_000) as i32).unwrap();
        match poll(&mut fds, ms) {
            Ok(0) => break,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
        let mut buf = [0u8; 4096];
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Runs `cmd` with captured output, killing it (and failing the test) after `timeout`, so a
/// hung runtime can never hang the suite.
pub fn output_timeout(mut cmd: Command, timeout: Duration) -> Output {
    use std::io::Read;
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let mut status = None;
    wait_until(timeout, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{cmd:?} did not finish within {timeout:?}");
    };
    Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

/// A finished command whose output went to files (see [`Runtime::detached`]).
pub struct Detached {
    pub status: std::process::ExitStatus,
    /// The runtime's and the container's stdout.
    pub stdout: PathBuf,
    /// The runtime's and the container's stderr.
    pub stderr: PathBuf,
}

impl Detached {
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
    /// Panics with the runtime's stderr unless it succeeded.
    pub fn assert_ok(&self) -> &Self {
        assert!(
            self.status.success(),
            "berth failed ({}): {}",
            self.status,
            self.stderr()
        );
        self
    }
}

impl Runtime {
    /// Runs a command whose container outlives it (`create`, `run -d`): a container inherits
    /// the runtime's stdio, as with runc, so pipes would stay open until the container exits.
    /// Stdout and stderr go to files under `dir` named after `tag`.
    pub fn detached(&self, args: &[&str], dir: &Path, tag: &str) -> Detached {
        if let Some(id) = args.last() {
            self.track(id);
        }
        let stdout = dir.join(format!("{tag}.stdout"));
        let stderr = dir.join(format!("{tag}.stderr"));
        let mut cmd = self.cmd();
        cmd.args(args)
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap());
        let mut child = cmd.spawn().expect("spawn berth");
        let mut status = None;
        wait_until(Duration::from_secs(30), || {
            status = child.try_wait().unwrap();
            status.is_some()
        });
        let status = status.unwrap_or_else(|| {
            let _ = child.kill();
            panic!("berth {args:?} did not finish within 30 s")
        });
        Detached {
            status,
            stdout,
            stderr,
        }
    }

    /// `berth create --bundle B ID` with the container's stdio in files beside the bundle
    /// (`<bundle>/<id>.stdout`, `.stderr`).
    pub fn create_detached(&self, id: &str, bundle: &Bundle, extra: &[&str]) -> Detached {
        let mut args = vec!["create"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--bundle", bundle.path_str(), id]);
        self.detached(&args, bundle.path(), id)
    }

    /// `berth run` in the foreground with a timeout (30 s).
    pub fn run_timeout(&self, id: &str, bundle: &Bundle, extra: &[&str]) -> Output {
        self.track(id);
        let mut cmd = self.cmd();
        cmd.arg("run")
            .args(extra)
            .args(["--bundle", bundle.path_str(), id]);
        output_timeout(cmd, Duration::from_secs(30))
    }
}

/// The fds a process had, from the output of `exec ls /proc/self/fd` run as that process:
/// sorted, without the directory fd ls itself opened (the last one: the lowest free fd after
/// the inherited ones, or, if more were leaked, still a number that shows the leak). A shell
/// is not asked directly: busybox sh holds transient fds while it forks commands.
pub fn fd_list(ls: &str) -> Vec<i32> {
    let mut v: Vec<i32> = ls
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect();
    v.sort_unstable();
    v.pop();
    v
}
