//! Entry points for the fuzz targets (fuzz/, cargo-fuzz): each one takes what a user (or an
//! engine) hands Berth and runs exactly what Berth does with it before its first side effect —
//! parsing and validation — through the same functions the commands call. Nothing here
//! changes the system: the only files written are the fuzzer's own scratch files under
//! /dev/shm (`--resources` and state.json are read from a file, as Berth reads them).
//!
//! A rejection comes back as a [`Rejection`]: the JSON path the error names (when it names
//! one) and the one-line message a user would see. The targets check those; a panic, a hang
//! or an allocation past the fuzzer's limit is a bug in Berth.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use oci_spec::runtime::{LinuxResources, LinuxSeccomp, Process, Spec};

use crate::cgroups::CgroupError;
use crate::config::ConfigError;
use crate::error::Error;

/// Why an input was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The JSON path of the field the error is about (`process.user.uid`), as the message
    /// names it; None when the error is about the document as a whole (not JSON, not an
    /// object) or is not about the input.
    pub path: Option<String>,
    /// The message as Berth prints it.
    pub msg: String,
}

impl Rejection {
    /// `msg` as `berth: …` prints it (logging::fatal).
    fn at(path: &str, msg: String) -> Self {
        let path = path.trim_end_matches(": ");
        Rejection {
            path: (!path.is_empty()).then(|| path.to_string()),
            msg: crate::logging::one_line(&msg).into_owned(),
        }
    }
}

impl From<ConfigError> for Rejection {
    fn from(e: ConfigError) -> Self {
        let msg = e.to_string();
        match e {
            ConfigError::Parse { field, .. } | ConfigError::Invalid { field, .. } => {
                Rejection::at(&field, msg)
            }
            ConfigError::Read { .. } => Rejection::at("", msg),
        }
    }
}

impl From<CgroupError> for Rejection {
    fn from(e: CgroupError) -> Self {
        let msg = e.to_string();
        match e {
            CgroupError::Invalid { field, .. } | CgroupError::Write { field, .. } => {
                Rejection::at(&field, msg)
            }
            // Text only, e.g. "linux.resources.pids.limit: the pids cgroup controller is not
            // available on this host".
            _ => Rejection::at(&leading_path(&msg, "linux."), msg),
        }
    }
}

impl From<berth_seccomp::SeccompError> for Rejection {
    fn from(e: berth_seccomp::SeccompError) -> Self {
        Rejection::at(e.json_path().unwrap_or(""), e.to_string())
    }
}

/// The JSON path a plain-text message starts with (`linux.resources.pids.limit: …`), if it
/// starts with `start`.
fn leading_path(msg: &str, start: &str) -> String {
    match msg.split_once(": ") {
        Some((p, _)) if p.starts_with(start) && !p.contains(' ') => p.to_string(),
        _ => String::new(),
    }
}

/// Errors of the CLI layer are plain text (`--resources: memory.limit: …`): the path is what
/// follows `prefix`, up to the next ": ".
fn from_text(e: Error, prefix: &str) -> Rejection {
    let msg = e.to_string();
    let path = msg
        .strip_prefix(prefix)
        .map_or(String::new(), |m| leading_path(m, ""));
    Rejection::at(&path, msg)
}

/// The fuzzer's scratch directory: a bundle with an empty `rootfs/`, and a state root.
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // Warnings (e.g. "linux.devices[0].path: … is outside /dev") go nowhere.
        let _ = crate::logging::init(Some("/dev/null"), false, false);
        let base = Path::new("/dev/shm");
        let base = if base.is_dir() {
            base.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        remove_stale(&base);
        let dir = base.join(format!("berth-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("bundle/rootfs")).expect("fuzz scratch directory");
        std::fs::create_dir_all(dir.join("root/c")).expect("fuzz scratch directory");
        dir
    })
}

/// Scratch directories of fuzzers that are gone (a crash exits without [`cleanup`]).
fn remove_stale(base: &Path) {
    for e in std::fs::read_dir(base).into_iter().flatten().flatten() {
        let name = e.file_name();
        let pid = name.to_str().and_then(|n| n.strip_prefix("berth-fuzz-"));
        if pid.is_some_and(|p| !Path::new("/proc").join(p).exists()) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Removes the scratch directory (call once, when the fuzzer exits).
pub fn cleanup() {
    let _ = std::fs::remove_dir_all(scratch());
}

/// `create`'s checks on `config.json` bytes, in its order, up to its first side effect:
/// parse, validate (against a bundle whose `root.path` `rootfs` exists), then the cgroup
/// placement and `linux.resources` against this host. `linux.seccomp` is validated and
/// compiled when `with_seccomp` is set (libseccomp is slow; the `seccomp` target covers it).
pub fn config(bytes: &[u8], with_seccomp: bool) -> Result<(), Rejection> {
    let bundle = scratch().join("bundle");
    let spec: Spec = crate::config::parse(bytes)?;
    crate::config::validate(&spec, &bundle)?;
    if with_seccomp {
        if let Some(profile) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
            berth_seccomp::compile(profile)?;
        }
    }
    crate::cgroups::for_spec(&spec, "fuzz")?;
    Ok(())
}

/// A `linux.seccomp` object (the JSON of the profile alone): validated and compiled to BPF,
/// as `create` does (without the on-disk cache). Returns the program's length.
pub fn seccomp(bytes: &[u8]) -> Result<usize, Rejection> {
    let profile: LinuxSeccomp = crate::config::parse_object(bytes, "linux.seccomp")?;
    Ok(berth_seccomp::compile(&profile)?.program().len())
}

/// `exec --process FILE`'s checks on the file's bytes (process_from_file, after its read).
pub fn process(bytes: &[u8]) -> Result<(), Rejection> {
    let p: Process = crate::config::parse_object(bytes, "process")?;
    crate::config::check_process_fields(&p, "process")?;
    Ok(())
}

/// `update --resources FILE`: the file read and parsed as `update` does, then checked against
/// this host's cgroups as `update` checks it before writing any value.
pub fn resources(bytes: &[u8]) -> Result<(), Rejection> {
    let file = scratch().join("resources.json");
    std::fs::write(&file, bytes).expect("fuzz scratch file");
    let args = crate::cli::update::Args {
        resources: Some(file.display().to_string()),
        id: "fuzz".into(),
        ..Default::default()
    };
    let r: LinuxResources =
        crate::cli::update::resources(&args).map_err(|e| from_text(e, "--resources: "))?;
    let mut spec = Spec::default();
    let mut linux = spec.linux().clone().unwrap_or_default();
    linux.set_resources(Some(r));
    spec.set_linux(Some(linux));
    crate::cgroups::for_spec(&spec, "fuzz")?;
    Ok(())
}

/// A container's `state.json`, read as every command reads it (`Container::load`: lock, read,
/// parse), then its status derived and its OCI state rendered as `berth state` prints it.
pub fn state(bytes: &[u8]) -> Result<String, Rejection> {
    let root = scratch().join("root");
    std::fs::write(root.join("c/state.json"), bytes).expect("fuzz scratch file");
    // "state of container "c" is corrupt (PATH): FIELD: …"
    let c = crate::container::Container::load(&root, "c").map_err(|e| {
        let msg = e.to_string();
        let path = msg
            .split_once("): ")
            .map_or(String::new(), |(_, m)| leading_path(m, ""));
        Rejection::at(&path, msg)
    })?;
    let Some(st) = &c.state else {
        return Ok(String::new());
    };
    let status = c.status();
    let _ = c.live_pid();
    let state = crate::container::lifecycle::oci_state(st, status);
    Ok(serde_json::to_string_pretty(&state).expect("state serialises"))
}

/// The command line (`argv[0]` included) parsed as `berth` parses it, without running the
/// command; then the checks the verbs make on their arguments before any side effect (the
/// signal of `kill`, the flags of `update`). Err is the one line Berth prints.
pub fn args(argv: &[std::ffi::OsString]) -> Result<(), String> {
    use crate::cli::{Cli, Cmd};
    use clap::Parser;
    let cli = match Cli::try_parse_from(argv) {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => return Ok(()), // --help and friends
        Err(e) => return Err(crate::cli::usage_error_line(&e.render().to_string())),
    };
    match &cli.cmd {
        Some(Cmd::Kill(a)) => {
            crate::cli::kill::parse_signal(&a.signal).map_err(|e| e.to_string())?;
        }
        Some(Cmd::Update(a)) if a.resources.is_none() => {
            crate::cli::update::resources(a).map_err(|e| e.to_string())?;
        }
        _ => {}
    }
    Ok(())
}
