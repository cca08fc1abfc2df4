//! The command line, runc's: global flags, one file per verb. Files here parse arguments and
//! call into `container::lifecycle`; they hold no runtime logic.

mod checkpoint;
mod create;
mod delete;
mod events;
mod exec;
mod features;
pub(crate) mod kill;
mod list;
mod narrow;
mod pause;
mod ps;
mod restore;
mod resume;
mod run;
mod spec;
mod start;
mod state;
pub(crate) mod update;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::error::Error;

#[derive(Parser, Debug)]
#[command(
    name = "berth",
    about = "Berth: a low-level OCI container runtime (runc-compatible)",
    disable_version_flag = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
}

#[derive(clap::Args, Debug)]
pub struct Global {
    /// Directory for container state (tmpfs recommended) [default: /run/berth, or
    /// $XDG_RUNTIME_DIR/berth for a non-root user]
    #[arg(long = "root", value_name = "ROOT")]
    pub root_flag: Option<PathBuf>,
    /// The state directory in use: `--root`, or this caller's default (set before dispatch).
    #[arg(skip)]
    pub root: PathBuf,
    /// Write log lines to FILE (default: stderr)
    #[arg(long, value_name = "FILE")]
    pub log: Option<String>,
    /// Log format: text or json
    #[arg(long = "log-format", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Log debug output
    #[arg(long)]
    pub debug: bool,
    /// Log each step's start offset and duration (µs), and a total (also BERTH_TRACE=1)
    #[arg(long)]
    pub trace: bool,
    /// Use the systemd cgroup driver
    #[arg(long = "systemd-cgroup")]
    pub systemd_cgroup: bool,
    /// Ignore cgroup permission errors ('true', 'false', or 'auto': rootless for a non-root
    /// user and for uid 0 in a user namespace)
    #[arg(long, value_name = "true|false|auto")]
    pub rootless: Option<String>,
    /// The CRIU binary for checkpoint and restore (default: criu on PATH)
    #[arg(long, value_name = "PATH")]
    pub criu: Option<String>,
    /// Print the version
    #[arg(short = 'v', long)]
    pub version: bool,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Create a container (its init waits for `start`)
    Create(create::Args),
    /// Start a created container's process
    Start(start::Args),
    /// Create and start a container, and wait for it unless --detach
    Run(run::Args),
    /// Print a container's state as JSON
    State(state::Args),
    /// Send a signal to a container's init (or all its processes)
    Kill(kill::Args),
    /// Delete a container and everything it holds
    Delete(delete::Args),
    /// List containers
    List(list::Args),
    /// Write a default config.json
    Spec(spec::Args),
    /// Suspend every process of a container
    Pause(pause::Args),
    /// Resume a paused container
    Resume(resume::Args),
    /// Change a container's resource limits
    Update(Box<update::Args>),
    /// Print a container's resource usage and OOM events as JSON lines
    Events(events::Args),
    /// List a container's processes
    Ps(ps::Args),
    /// Run a new process inside a running container
    Exec(exec::Args),
    /// Print the OCI features this runtime supports, as JSON
    Features(features::Args),
    /// Checkpoint a running container with CRIU
    Checkpoint(checkpoint::Args),
    /// Restore a container from a CRIU checkpoint
    Restore(restore::Args),
    /// Print the version (the same as --version)
    Version,
}

fn version_text() -> String {
    format!(
        "berth version {}\ncommit: {}\nspec: {}\nlibseccomp: {}\n",
        env!("CARGO_PKG_VERSION"),
        env!("BERTH_COMMIT"),
        crate::container::lifecycle::OCI_VERSION,
        libseccomp_version(),
    )
}

fn libseccomp_version() -> String {
    std::fs::read_link("/usr/lib/x86_64-linux-gnu/libseccomp.so.2")
        .ok()
        .and_then(|p| {
            p.to_string_lossy()
                .strip_prefix("libseccomp.so.")
                .map(str::to_string)
        })
        .unwrap_or_else(|| "unknown".into())
}

/// clap's multi-line usage error as one line: its first paragraph without the "error: " prefix
/// (e.g. "the following required arguments were not provided: <ID>"), then a pointer to --help.
pub(crate) fn usage_error_line(rendered: &str) -> String {
    let first: Vec<&str> = rendered
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let text = first.join(" ");
    let text = text.strip_prefix("error: ").unwrap_or(&text);
    format!("{} (see berth --help)", crate::logging::one_line(text))
}

/// Parses the command line, runs the command, reports any error; returns the exit code.
pub fn main() -> i32 {
    let mut cli = match narrow::parse(restore::single_dash_flags(std::env::args_os())) {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            // --help and friends.
            let _ = e.print();
            return 0;
        }
        Err(e) => {
            // One line, like every other Berth error (runc also exits 1 here). Engines read
            // errors from --log (containerd shows its last error line), so it goes there too:
            // the log flags are found without the parser that failed.
            let line = usage_error_line(&e.render().to_string());
            let args: Vec<String> = std::env::args().collect();
            match log_flags(&args) {
                (Some(log), json) if crate::logging::init(Some(&log), json, false).is_ok() => {
                    crate::logging::fatal(&line)
                }
                _ => crate::logging::fatal(&line),
            }
            return 1;
        }
    };
    let g = &mut cli.global;
    if g.version || matches!(cli.cmd, Some(Cmd::Version)) {
        print!("{}", version_text());
        return 0;
    }
    if let Err(e) = crate::logging::init(g.log.as_deref(), g.log_format == "json", g.debug) {
        crate::logging::fatal(&format!("--log {}: {e}", g.log.as_deref().unwrap_or("")));
        return 1;
    }
    crate::trace::init(crate::trace::wanted(
        g.trace,
        std::env::var_os("BERTH_TRACE").as_deref(),
    ));
    crate::logging::debug_with(|| {
        format!("command line: {:?}", std::env::args().collect::<Vec<_>>())
    });
    let Some(cmd) = cli.cmd else {
        crate::logging::fatal("no command given (see berth --help)");
        return 1;
    };
    let code = match prepare(g, &cmd).and_then(|()| dispatch(g, cmd)) {
        Ok(code) => {
            crate::logging::debug_with(|| format!("exit status {code}"));
            code
        }
        Err(e) => {
            crate::logging::fatal(&e.to_string());
            1
        }
    };
    crate::trace::finish();
    code
}

/// `--log FILE` and `--log-format json` from raw arguments (both `--flag v` and `--flag=v`).
fn log_flags(args: &[String]) -> (Option<String>, bool) {
    let mut log = None;
    let mut json = false;
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (a.as_str(), None),
        };
        match name {
            "--log" => log = inline.or_else(|| it.next().cloned()),
            "--log-format" => {
                json = inline.or_else(|| it.next().cloned()).as_deref() == Some("json")
            }
            _ => {}
        }
    }
    (log, json)
}

/// The global flags that need more than parsing: `--rootless`, and `--root` or its default
/// (for the commands that use one).
fn prepare(g: &mut Global, cmd: &Cmd) -> Result<(), Error> {
    use crate::rootless;
    rootless::set_setting(rootless::Setting::parse(g.rootless.as_deref())?);
    if !matches!(cmd, Cmd::Spec(_) | Cmd::Features(_) | Cmd::Version) {
        g.root = rootless::root_dir::resolve(
            g.root_flag.as_deref(),
            rootless::Caller::detect,
            &rootless::root_dir::Env::current(),
        )?;
    }
    Ok(())
}

fn dispatch(g: &Global, cmd: Cmd) -> Result<i32, Error> {
    crate::cgroups::use_systemd(g.systemd_cgroup);
    if !matches!(cmd, Cmd::Spec(_) | Cmd::Features(_)) {
        check_root(&g.root)?;
    }
    match cmd {
        Cmd::Create(a) => create::run(g, a),
        Cmd::Start(a) => start::run(g, a),
        Cmd::Run(a) => run::run(g, a),
        Cmd::State(a) => state::run(g, a),
        Cmd::Kill(a) => kill::run(g, a),
        Cmd::Delete(a) => delete::run(g, a),
        Cmd::List(a) => list::run(g, a),
        Cmd::Spec(a) => spec::run(g, a),
        Cmd::Pause(a) => pause::run(g, a),
        Cmd::Resume(a) => resume::run(g, a),
        Cmd::Update(a) => update::run(g, *a),
        Cmd::Events(a) => events::run(g, a),
        Cmd::Ps(a) => ps::run(g, a),
        Cmd::Exec(a) => exec::run(g, a),
        Cmd::Features(a) => features::run(g, a),
        Cmd::Checkpoint(a) => checkpoint::run(g, a),
        Cmd::Restore(a) => restore::run(g, a),
        Cmd::Version => {
            print!("{}", version_text());
            Ok(0)
        }
    }
}

/// `--root` must be a directory if it exists (`create` makes it when it does not): a file there
/// would otherwise surface later, per command, as "File exists", "not found" or an empty list.
fn check_root(root: &std::path::Path) -> Result<(), Error> {
    let not_dir =
        |why: &str| Error::Usage(format!("--root {}: not a directory{why}", root.display()));
    match std::fs::metadata(root) {
        Ok(m) if !m.is_dir() => Err(not_dir("")),
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
            Err(not_dir(" (a component of the path is a file)"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn log_flags_are_found_without_the_parser() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            log_flags(&a(&["berth", "--log", "/l", "--log-format=json", "bogus"])),
            (Some("/l".to_string()), true)
        );
        assert_eq!(
            log_flags(&a(&["berth", "--log=/x", "exec"])),
            (Some("/x".to_string()), false)
        );
        assert_eq!(log_flags(&a(&["berth", "exec"])), (None, false));
    }

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn usage_errors_fit_on_one_line() {
        let e = Cli::try_parse_from(["berth", "list", "--bogus"]).unwrap_err();
        let l = usage_error_line(&e.render().to_string());
        assert!(!l.contains('\n') && l.contains("'--bogus'"), "{l}");
        let e = Cli::try_parse_from(["berth", "state"]).unwrap_err();
        let l = usage_error_line(&e.render().to_string());
        assert!(l.contains("<ID>") && !l.starts_with("error"), "{l}");
    }

    #[test]
    fn runc_style_invocations_parse() {
        let c = Cli::try_parse_from([
            "berth",
            "--root",
            "/r",
            "--log",
            "/l",
            "--log-format=json",
            "create",
            "--bundle",
            "/b",
            "--pid-file=/p",
            "id1",
        ])
        .unwrap();
        assert_eq!(c.global.root_flag, Some(PathBuf::from("/r")));
        assert!(matches!(c.cmd, Some(Cmd::Create(ref a)) if a.id == "id1"));
        let k = Cli::try_parse_from(["berth", "kill", "--all", "id1", "9"]).unwrap();
        assert!(matches!(k.cmd, Some(Cmd::Kill(ref a)) if a.all && a.signal == "9"));
    }
}
