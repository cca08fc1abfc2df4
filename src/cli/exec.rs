//! `berth exec [options] ID COMMAND [ARGS…]` or `berth exec [options] --process FILE ID`: runs
//! a new process in a running container and (unless --detach) waits for it, forwarding
//! signals; Berth's exit status is the process's (128+N when killed by signal N). As runc,
//! every argument after ID belongs to the command, and Berth's own failures exit 255.

use std::path::PathBuf;

use super::Global;
use crate::error::Error;
use crate::linux::console;
use crate::process::exec::{self, ExecOptions, Overrides};

#[derive(clap::Args, Debug)]
#[command(
    override_usage = "berth exec [OPTIONS] ID COMMAND [ARGS]...\n       berth exec [OPTIONS] --process FILE ID"
)]
pub struct Args {
    /// Path to an OCI process JSON (replaces the command line's COMMAND and process flags)
    #[arg(short = 'p', long, value_name = "FILE")]
    pub process: Option<PathBuf>,
    /// Allocate a pseudo-TTY (its master goes to --console-socket; without one, Berth relays it
    /// on its own terminal)
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Unix socket that receives the pty master (SCM_RIGHTS) when a TTY is allocated
    #[arg(long = "console-socket", value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Unix socket that receives a pidfd of the new process (SCM_RIGHTS)
    #[arg(long = "pidfd-socket", value_name = "PATH")]
    pub pidfd_socket: Option<PathBuf>,
    /// Do not wait for the process
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Write the process's host pid to this file
    #[arg(long = "pid-file", value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// Working directory in the container
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// Set an environment variable (KEY=value; repeatable)
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Run as this user: uid[:gid]
    #[arg(short = 'u', long, value_name = "UID[:GID]")]
    pub user: Option<String>,
    /// An additional group id (repeatable)
    #[arg(short = 'g', long = "additional-gids", value_name = "GID")]
    pub additional_gids: Vec<u32>,
    /// Add a capability to the process's bounding, effective and permitted sets (repeatable)
    #[arg(short = 'c', long = "cap", value_name = "CAP")]
    pub cap: Vec<String>,
    /// Set no_new_privileges for the process
    #[arg(long = "no-new-privs")]
    pub no_new_privs: bool,
    /// AppArmor profile for the process (applied only where AppArmor is enabled)
    #[arg(long, value_name = "PROFILE")]
    pub apparmor: Option<String>,
    /// SELinux label for the process (applied only where SELinux is enabled)
    #[arg(long = "process-label", value_name = "LABEL")]
    pub process_label: Option<String>,
    /// Pass N more fds (3 .. N+2) to the process
    #[arg(long = "preserve-fds", default_value_t = 0, value_name = "N")]
    pub preserve_fds: u32,
    /// Run in an existing sub-cgroup: [CONTROLLER[,CONTROLLER…]:]PATH (repeatable)
    #[arg(long, value_name = "[CONTROLLER:]PATH")]
    pub cgroup: Vec<String>,
    /// Allow exec into a paused container (the process starts when it is resumed)
    #[arg(long = "ignore-paused")]
    pub ignore_paused: bool,
    /// Container id (flags must come before it: an unknown flag is an error, as with runc)
    pub id: String,
    /// The command and its arguments (everything after the id, flags included)
    #[arg(
        value_name = "COMMAND [ARGS]...",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

impl Args {
    fn options(&self) -> ExecOptions {
        ExecOptions {
            process_file: self.process.clone(),
            args: self.command.clone(),
            overrides: Overrides {
                cwd: self.cwd.clone(),
                env: self.env.clone(),
                tty: self.tty,
                user: self.user.clone(),
                additional_gids: self.additional_gids.clone(),
                caps: self.cap.clone(),
                no_new_privs: self.no_new_privs,
                apparmor: self.apparmor.clone(),
                process_label: self.process_label.clone(),
            },
            console_socket: self.console_socket.clone(),
            console_fd: None,
            pidfd_socket: self.pidfd_socket.clone(),
            pid_file: self.pid_file.clone(),
            preserve_fds: self.preserve_fds,
            cgroup: self.cgroup.clone(),
            ignore_paused: self.ignore_paused,
            sigmask: None,
        }
    }
}

pub fn run(g: &Global, a: Args) -> Result<i32, Error> {
    match exec_and_wait(g, &a) {
        Ok(code) => Ok(code),
        Err(e) => {
            // runc's status for its own failures, which engines tell apart from the process's.
            crate::logging::fatal(&format!("exec failed: {e}"));
            Ok(255)
        }
    }
}

fn exec_and_wait(g: &Global, a: &Args) -> Result<i32, Error> {
    let id = &a.id;
    let mut opts = a.options();
    if a.detach {
        exec::exec(&g.root, id, &opts)?;
        return Ok(0);
    }
    // Block signals before the process exists so none is lost; the process itself gets the
    // mask we had.
    let mut old = nix::sys::signal::SigSet::empty();
    nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_BLOCK,
        None,
        Some(&mut old),
    )
    .map_err(|e| Error::sys("read signal mask", e))?;
    opts.sigmask = Some(old);
    // Without --console-socket, a process with a terminal sends its pty master back to Berth,
    // which relays it on its own terminal until the process exits (as `runc exec -t` does).
    let relay = match a.console_socket {
        None => {
            let (ours, theirs) =
                console::RelaySocket::pair().map_err(|e| Error::sys("console socketpair", e))?;
            opts.console_fd = Some(theirs);
            Some(ours)
        }
        Some(_) => None,
    };
    let mask = super::run::block_signals()?;
    let pid = exec::exec(&g.root, id, &opts)?;
    drop(opts);
    // The master was sent before the process called execve, so before exec returned.
    let tty = relay.as_ref().and_then(console::RelaySocket::relay);
    crate::trace::span("wait", || {
        super::run::wait_forwarding(pid, &mask, tty, None)
    })
}

#[cfg(test)]
mod tests {
    use crate::cli::{Cli, Cmd};
    use clap::Parser;

    fn parse(argv: &[&str]) -> super::Args {
        match Cli::try_parse_from(argv).unwrap().cmd {
            Some(Cmd::Exec(a)) => a,
            other => panic!("not exec: {other:?}"),
        }
    }

    #[test]
    fn everything_after_the_id_is_the_command() {
        let a = parse(&[
            "berth", "exec", "-t", "-e", "A=1", "c1", "sh", "-c", "-t", "--x",
        ]);
        assert!(a.tty);
        assert_eq!(a.env, ["A=1"]);
        assert_eq!(a.id, "c1");
        assert_eq!(a.command, ["sh", "-c", "-t", "--x"]);
    }

    #[test]
    fn runc_style_flags_parse() {
        let a = parse(&[
            "berth",
            "exec",
            "--process",
            "/p.json",
            "--detach",
            "--pid-file=/pf",
            "--console-socket",
            "/s",
            "--pidfd-socket",
            "/ps",
            "-u",
            "1000:1000",
            "-g",
            "10",
            "-g",
            "11",
            "--cap",
            "CAP_NET_ADMIN",
            "-c",
            "CAP_SYS_TIME",
            "--cgroup",
            "cpu,memory:sub",
            "--preserve-fds",
            "2",
            "--ignore-paused",
            "--no-new-privs",
            "--cwd",
            "/tmp",
            "--apparmor",
            "p",
            "--process-label",
            "l",
            "c1",
        ]);
        assert_eq!(a.id, "c1");
        assert!(a.command.is_empty());
        assert!(a.detach && a.ignore_paused && a.no_new_privs);
        assert_eq!(a.additional_gids, [10, 11]);
        assert_eq!(a.cap, ["CAP_NET_ADMIN", "CAP_SYS_TIME"]);
        assert_eq!(a.cgroup, ["cpu,memory:sub"]);
        assert_eq!(a.preserve_fds, 2);
        assert!(Cli::try_parse_from(["berth", "exec"]).is_err());
        // An unknown flag before the id is an error, not a container named "--bogus".
        assert!(Cli::try_parse_from(["berth", "exec", "--bogus", "c1", "true"]).is_err());
    }
}
