//! `berth checkpoint [flags] ID`: runc's flags; the work is in `criu::checkpoint`.

use std::path::PathBuf;

use super::Global;
use crate::container::Container;
use crate::criu::CheckpointOptions;
use crate::error::Error;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where to write the images (default: ./checkpoint)
    #[arg(long = "image-path", value_name = "DIR")]
    pub image_path: Option<PathBuf>,
    /// Where CRIU writes its log and work files (default: the image path)
    #[arg(long = "work-path", value_name = "DIR")]
    pub work_path: Option<PathBuf>,
    /// An earlier pre-dump, relative to the image path, for an incremental dump
    #[arg(long = "parent-path", value_name = "DIR")]
    pub parent_path: Option<PathBuf>,
    /// Leave the processes running after the checkpoint
    #[arg(long = "leave-running")]
    pub leave_running: bool,
    /// Allow open TCP connections
    #[arg(long = "tcp-established")]
    pub tcp_established: bool,
    /// Allow external unix sockets
    #[arg(long = "ext-unix-sk")]
    pub ext_unix_sk: bool,
    /// Allow a shell job (a process attached to a terminal outside the container)
    #[arg(long = "shell-job")]
    pub shell_job: bool,
    /// Lazy migration: dump all but the memory, then serve it (userfaultfd) from --page-server
    #[arg(long = "lazy-pages")]
    pub lazy_pages: bool,
    /// Send the memory to a CRIU page server at ADDRESS:PORT (with --lazy-pages: serve it there)
    #[arg(long = "page-server", value_name = "ADDRESS:PORT")]
    pub page_server: Option<String>,
    /// With --lazy-pages: CRIU writes a zero byte to FD once its page server is ready
    #[arg(long = "status-fd", value_name = "FD")]
    pub status_fd: Option<i32>,
    /// Handle file locks
    #[arg(long = "file-locks")]
    pub file_locks: bool,
    /// Dump the memory only, leaving the container running (for --parent-path later)
    #[arg(long = "pre-dump")]
    pub pre_dump: bool,
    /// How CRIU handles cgroups: soft, full, strict or ignore
    #[arg(long = "manage-cgroups-mode", value_name = "MODE")]
    pub manage_cgroups_mode: Option<String>,
    /// A namespace to leave empty on restore (only `network`); repeatable
    #[arg(long = "empty-ns", value_name = "NS")]
    pub empty_ns: Vec<String>,
    /// Deduplicate the images against the parent's
    #[arg(long = "auto-dedup")]
    pub auto_dedup: bool,
    /// Container id
    pub id: String,
}

/// runc's default image path: `checkpoint` in the current directory. Paths are made absolute
/// so that error messages name them whatever the caller's directory.
pub(super) fn image_path(p: Option<PathBuf>) -> Result<PathBuf, Error> {
    let p = p.unwrap_or_else(|| PathBuf::from("checkpoint"));
    std::path::absolute(&p).map_err(|e| Error::sys(format!("--image-path {}", p.display()), e))
}

pub(super) fn work_path(p: Option<PathBuf>) -> Result<Option<PathBuf>, Error> {
    p.map(|p| {
        std::path::absolute(&p).map_err(|e| Error::sys(format!("--work-path {}", p.display()), e))
    })
    .transpose()
}

pub fn run(g: &Global, a: Args) -> Result<i32, Error> {
    let o = CheckpointOptions {
        image_path: image_path(a.image_path)?,
        work_path: work_path(a.work_path)?,
        parent_path: a.parent_path,
        leave_running: a.leave_running,
        tcp_established: a.tcp_established,
        ext_unix_sk: a.ext_unix_sk,
        shell_job: a.shell_job,
        file_locks: a.file_locks,
        pre_dump: a.pre_dump,
        auto_dedup: a.auto_dedup,
        lazy_pages: a.lazy_pages,
        page_server: a.page_server,
        status_fd: a.status_fd,
        manage_cgroups_mode: a.manage_cgroups_mode,
        empty_ns: a.empty_ns,
    };
    o.check()?;
    let c = Container::load(&g.root, &a.id)?;
    crate::criu::checkpoint(&c, &crate::criu::binary(g.criu.as_deref()), &o)?;
    Ok(0)
}
