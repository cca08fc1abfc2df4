//! `berth create [--bundle DIR] [--pid-file F] [--console-socket S] [--no-pivot]
//! [--no-new-keyring] [--preserve-fds N] [--pidfd-socket S] ID`

use std::path::PathBuf;

use super::Global;
use crate::container::lifecycle::{self, CreateOptions};
use crate::error::Error;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub create: CreateFlags,
    /// Container id
    pub id: String,
}

/// Flags shared by `create` and `run`.
#[derive(clap::Args, Debug)]
pub struct CreateFlags {
    /// Path to the bundle directory
    #[arg(short = 'b', long, default_value = ".")]
    pub bundle: PathBuf,
    /// Unix socket that receives the pty master when process.terminal is set
    #[arg(long = "console-socket", value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Write the init's pid to this file
    #[arg(long = "pid-file", value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// Do not use pivot_root (MS_MOVE + chroot instead)
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Do not create a new session keyring
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    /// Pass N more fds (3 .. N+2) to the container
    #[arg(long = "preserve-fds", default_value_t = 0, value_name = "N")]
    pub preserve_fds: u32,
    /// Unix socket that receives a pidfd of the container's init (SCM_RIGHTS)
    #[arg(long = "pidfd-socket", value_name = "PATH")]
    pub pidfd_socket: Option<PathBuf>,
}

impl CreateFlags {
    pub fn options(&self) -> CreateOptions {
        CreateOptions {
            bundle: self.bundle.clone(),
            pid_file: self.pid_file.clone(),
            console_socket: self.console_socket.clone(),
            console_fd: None,
            no_pivot: self.no_pivot,
            no_new_keyring: self.no_new_keyring,
            preserve_fds: self.preserve_fds,
            pidfd_socket: self.pidfd_socket.clone(),
            start_now: false,
        }
    }
}

pub fn run(g: &Global, a: Args) -> Result<i32, Error> {
    let c = lifecycle::create(&g.root, &a.id, &a.create.options())?;
    crate::logging::debug_with(|| {
        format!(
            "create {}: state directory {}, init pid {}, cgroup {:?}",
            a.id,
            c.dir.display(),
            c.state.as_ref().map_or(0, |s| s.pid),
            c.state
                .as_ref()
                .and_then(|s| s.cgroup.as_ref())
                .map(|r| &r.paths)
        )
    });
    Ok(0)
}
