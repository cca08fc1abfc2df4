//! Shared harness for integration tests: they drive the real `berth` binary, as root, on
//! busybox bundles, and check effects from inside (the container's output) and outside (/proc,
//! mountinfo, cgroupfs). Every `Runtime` removes its containers when dropped, pass or fail.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

pub fn berth_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_berth"))
}

/// Where Debian's busybox-static puts the binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// A fresh `--root` for one test; deletes (with --force) every container left in it on drop.
pub struct Runtime {
    pub root: tempfile::TempDir,
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
        Runtime { root }
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
        self.berth(&["run", "--bundle", bundle.path().to_str().unwrap(), id])
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
        for id in self.ids() {
            let _ = self.berth(&["delete", "--force", &id]);
        }
        // Directories of containers whose create was interrupted have no state.json.
        if let Ok(rd) = std::fs::read_dir(self.root.path()) {
            for e in rd.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                let _ = self.berth(&["delete", "--force", &id]);
            }
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

/// A unique container id for this test process.
pub fn unique_id(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}
