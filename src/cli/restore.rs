//! `berth restore [flags] ID`: runc's flags; the work is in `criu::restore`. Without --detach
//! it waits for the restored container and exits with its status, forwarding signals, and then
//! deletes it, as `run` does.

use std::path::PathBuf;

use super::checkpoint::{image_path, work_path};
use super::run::{block_signals, wait_forwarding};
use super::Global;
use crate::container::{lifecycle, Container, StateError};
use crate::criu::RestoreOptions;
use crate::error::Error;
use crate::linux::console;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where the images are (default: ./checkpoint)
    #[arg(long = "image-path", value_name = "DIR")]
    pub image_path: Option<PathBuf>,
    /// Where CRIU writes its log and work files (default: the image path)
    #[arg(long = "work-path", value_name = "DIR")]
    pub work_path: Option<PathBuf>,
    /// The bundle (default: the current directory)
    #[arg(short = 'b', long, default_value = ".")]
    pub bundle: PathBuf,
    /// A unix socket to send the restored terminal's pty master to
    #[arg(long = "console-socket", value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Do not wait for the container
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Write the restored init's pid to FILE
    #[arg(long = "pid-file", value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// Do not become a subreaper of the restored init
    #[arg(long = "no-subreaper")]
    pub no_subreaper: bool,
    /// Not supported by restore (CRIU rebuilds the mount namespace itself)
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Allow open TCP connections
    #[arg(long = "tcp-established")]
    pub tcp_established: bool,
    /// Allow external unix sockets
    #[arg(long = "ext-unix-sk")]
    pub ext_unix_sk: bool,
    /// Allow a shell job
    #[arg(long = "shell-job")]
    pub shell_job: bool,
    /// Handle file locks
    #[arg(long = "file-locks")]
    pub file_locks: bool,
    /// How CRIU handles cgroups: soft, full, strict or ignore
    #[arg(long = "manage-cgroups-mode", value_name = "MODE")]
    pub manage_cgroups_mode: Option<String>,
    /// Restore memory on demand from a `criu lazy-pages` daemon (its socket in --work-path)
    #[arg(long = "lazy-pages")]
    pub lazy_pages: bool,
    /// A namespace to restore empty (only `network`); repeatable
    #[arg(long = "empty-ns", value_name = "NS")]
    pub empty_ns: Vec<String>,
    /// Deduplicate the images while restoring
    #[arg(long = "auto-dedup")]
    pub auto_dedup: bool,
    /// The LSM profile to restore the processes with, TYPE:NAME (e.g. apparmor:PROFILE)
    #[arg(long = "lsm-profile", value_name = "TYPE:NAME")]
    pub lsm_profile: Option<String>,
    /// The SELinux context for the restored mounts
    #[arg(long = "lsm-mount-context", value_name = "CONTEXT")]
    pub lsm_mount_context: Option<String>,
    /// Container id
    pub id: String,
}

/// containerd's runc shim (go-runc) writes `-no-subreaper` with one dash, which runc's flag
/// parser accepts for any long flag: for `restore`, its long flags written that way are given
/// their two dashes. Nothing else on the command line is touched.
pub(super) fn single_dash_flags(
    args: impl Iterator<Item = std::ffi::OsString>,
) -> Vec<std::ffi::OsString> {
    let args: Vec<std::ffi::OsString> = args.collect();
    let Some(at) = super::narrow::verb_at(&args) else {
        return args;
    };
    if args[at] != "restore" {
        return args;
    }
    let cmd = <Args as clap::Args>::augment_args(clap::Command::new("restore"));
    let long: Vec<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_string))
        .collect();
    args.into_iter()
        .enumerate()
        .map(|(i, a)| match a.to_str() {
            Some(s) if i > at && s.len() > 2 && !s.starts_with("--") => {
                let name = &s[1..];
                let bare = name.split_once('=').map_or(name, |(n, _)| n);
                if bare.len() > 1 && long.iter().any(|l| l == bare) {
                    format!("-{s}").into()
                } else {
                    a
                }
            }
            _ => a,
        })
        .collect()
}

pub fn run(g: &Global, a: Args) -> Result<i32, Error> {
    let mut o = RestoreOptions {
        image_path: image_path(a.image_path)?,
        work_path: work_path(a.work_path)?,
        bundle: a.bundle,
        console_socket: a.console_socket,
        console_fd: None,
        pid_file: a.pid_file,
        no_pivot: a.no_pivot,
        tcp_established: a.tcp_established,
        ext_unix_sk: a.ext_unix_sk,
        shell_job: a.shell_job,
        file_locks: a.file_locks,
        auto_dedup: a.auto_dedup,
        lazy_pages: a.lazy_pages,
        manage_cgroups_mode: a.manage_cgroups_mode,
        empty_ns: a.empty_ns,
        lsm_profile: a.lsm_profile,
        lsm_mount_context: a.lsm_mount_context,
    };
    o.check()?;
    if !a.detach && !a.no_subreaper {
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    }
    // In the foreground without --console-socket, a restored terminal's master comes to Berth
    // itself, which relays it (as `run` does).
    let console_pair = if !a.detach && o.console_socket.is_none() {
        let (ours, theirs) =
            console::RelaySocket::pair().map_err(|e| Error::sys("console socketpair", e))?;
        o.console_fd = Some(theirs);
        Some(ours)
    } else {
        None
    };
    // Signals are blocked before the restored processes run, so none is lost.
    let mask = if a.detach {
        None
    } else {
        Some(block_signals()?)
    };
    let bin = crate::criu::binary(g.criu.as_deref());
    let restored = crate::criu::restore(&g.root, &a.id, &bin, &o)?;
    drop(o);
    let Some(mask) = mask else {
        return Ok(0);
    };
    let tty = console_pair.as_ref().and_then(|s| s.relay());
    let crate::criu::Restored { container, pid } = restored;
    drop(container); // release the lock while the container runs
    let waited = wait_forwarding(pid, &mask, tty, None);
    match Container::load(&g.root, &a.id) {
        Ok(c) => lifecycle::delete(c, true)?,
        Err(StateError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    waited
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn go_runc_single_dash_flags_are_read_as_runc_reads_them() {
        let a = |v: &[&str]| v.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        let got = single_dash_flags(
            a(&[
                "berth",
                "--root",
                "/r",
                "restore",
                "--detach",
                "-no-subreaper",
                "-d",
                "-b",
                "x",
                "id",
            ])
            .into_iter(),
        );
        assert_eq!(
            got,
            a(&[
                "berth",
                "--root",
                "/r",
                "restore",
                "--detach",
                "--no-subreaper",
                "-d",
                "-b",
                "x",
                "id"
            ])
        );
        // Other verbs are left alone (exec's command line is the container's).
        let exec = a(&["berth", "exec", "id", "ls", "-no-subreaper"]);
        assert_eq!(single_dash_flags(exec.clone().into_iter()), exec);
        let c = super::super::Cli::try_parse_from(single_dash_flags(
            a(&["berth", "restore", "-no-subreaper", "-pid-file=/p", "id"]).into_iter(),
        ))
        .unwrap();
        assert!(
            matches!(c.cmd, Some(super::super::Cmd::Restore(ref r)) if r.no_subreaper && r.pid_file.as_deref() == Some(std::path::Path::new("/p")))
        );
    }
}
