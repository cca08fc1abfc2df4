//! The flags of `checkpoint` and `restore` (runc's names), checked before any side effect.

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use rust_criu::rust_criu_protobuf::rpc::Criu_cg_mode;

use super::CriuError;

/// What `checkpoint` was asked for.
#[derive(Debug, Default)]
pub struct CheckpointOptions {
    pub image_path: PathBuf,
    pub work_path: Option<PathBuf>,
    /// Relative to `image_path` (CRIU's rule), for an incremental dump.
    pub parent_path: Option<PathBuf>,
    pub leave_running: bool,
    pub tcp_established: bool,
    pub ext_unix_sk: bool,
    pub shell_job: bool,
    pub file_locks: bool,
    pub pre_dump: bool,
    pub auto_dedup: bool,
    pub lazy_pages: bool,
    pub page_server: Option<String>,
    pub status_fd: Option<i32>,
    pub manage_cgroups_mode: Option<String>,
    pub empty_ns: Vec<String>,
}

/// What `restore` was asked for.
#[derive(Debug, Default)]
pub struct RestoreOptions {
    pub image_path: PathBuf,
    pub work_path: Option<PathBuf>,
    pub bundle: PathBuf,
    pub console_socket: Option<PathBuf>,
    /// An already connected console socket (foreground restore relays the pty itself).
    pub console_fd: Option<OwnedFd>,
    pub pid_file: Option<PathBuf>,
    pub no_pivot: bool,
    pub tcp_established: bool,
    pub ext_unix_sk: bool,
    pub shell_job: bool,
    pub file_locks: bool,
    pub auto_dedup: bool,
    pub lazy_pages: bool,
    pub manage_cgroups_mode: Option<String>,
    pub empty_ns: Vec<String>,
    /// Passed to CRIU as they are (runc's `--lsm-profile TYPE:NAME`, `--lsm-mount-context`).
    pub lsm_profile: Option<String>,
    pub lsm_mount_context: Option<String>,
}

/// `--manage-cgroups-mode`: runc's values.
pub fn cgroups_mode(v: Option<&str>) -> Result<Option<Criu_cg_mode>, CriuError> {
    Ok(match v {
        None => None,
        Some("soft") => Some(Criu_cg_mode::SOFT),
        Some("full") => Some(Criu_cg_mode::FULL),
        Some("strict") => Some(Criu_cg_mode::STRICT),
        Some("ignore") => Some(Criu_cg_mode::IGNORE),
        Some(o) => {
            return Err(CriuError::Usage(format!(
                "--manage-cgroups-mode {o:?}: use soft, full, strict or ignore"
            )))
        }
    })
}

/// `--empty-ns`: the namespaces CRIU leaves empty on restore, as clone flags. CRIU (and so
/// runc) accepts only the network namespace.
pub fn empty_ns(names: &[String]) -> Result<u32, CriuError> {
    let mut flags = 0;
    for n in names {
        match n.as_str() {
            "network" => flags |= libc::CLONE_NEWNET as u32,
            o => {
                return Err(CriuError::Usage(format!(
                    "--empty-ns {o:?}: CRIU can only leave the network namespace empty"
                )))
            }
        }
    }
    Ok(flags)
}

/// `--page-server ADDRESS:PORT` (runc's form; an IPv6 address in brackets, `[::1]:27277`).
pub fn page_server(v: &str) -> Result<(String, i32), CriuError> {
    let bad = |why: &str| {
        CriuError::Usage(format!(
            "--page-server {v:?}: {why}; use --page-server ADDRESS:PORT"
        ))
    };
    let (addr, port) = v.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    let addr = addr
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(addr);
    if addr.is_empty() {
        return Err(bad("no address"));
    }
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| bad("the port must be a number from 1 to 65535"))?;
    Ok((addr.to_string(), i32::from(port)))
}

impl CheckpointOptions {
    /// Refuses what cannot be honoured.
    pub fn check(&self) -> Result<(), CriuError> {
        if let Some(p) = &self.page_server {
            page_server(p)?;
        }
        if let Some(fd) = self.status_fd {
            // runc reads --status-fd only with --lazy-pages; given alone it would do nothing.
            if !self.lazy_pages {
                return Err(CriuError::Usage(
                    "--status-fd: only with --lazy-pages (CRIU writes to it once its lazy page server is ready)".into(),
                ));
            }
            if !crate::linux::sys::fd_is_open(fd) {
                return Err(CriuError::Usage(format!(
                    "--status-fd {fd}: not an open file descriptor"
                )));
            }
        }
        if self.lazy_pages && self.pre_dump {
            return Err(CriuError::Usage(
                "--lazy-pages: not with --pre-dump (a pre-dump copies memory, it serves none)"
                    .into(),
            ));
        }
        if let Some(p) = &self.parent_path {
            if p.is_absolute() {
                return Err(CriuError::Usage(format!(
                    "--parent-path {}: must be relative to --image-path (e.g. ../pre)",
                    p.display()
                )));
            }
        }
        cgroups_mode(self.manage_cgroups_mode.as_deref())?;
        empty_ns(&self.empty_ns)?;
        Ok(())
    }

    /// The directory CRIU writes its log (`dump.log`) in.
    pub fn log_dir(&self) -> &std::path::Path {
        self.work_path.as_deref().unwrap_or(&self.image_path)
    }
}

impl RestoreOptions {
    /// Refuses what cannot be honoured.
    pub fn check(&self) -> Result<(), CriuError> {
        if self.no_pivot {
            return Err(CriuError::Usage(
                "--no-pivot: CRIU rebuilds the container's mount namespace itself (with pivot_root); restore cannot honour it".into(),
            ));
        }
        cgroups_mode(self.manage_cgroups_mode.as_deref())?;
        empty_ns(&self.empty_ns)?;
        Ok(())
    }

    /// The directory CRIU writes its log (`restore.log`) in.
    pub fn log_dir(&self) -> &std::path::Path {
        self.work_path.as_deref().unwrap_or(&self.image_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_server_addresses() {
        assert_eq!(
            page_server("127.0.0.1:27277").unwrap(),
            ("127.0.0.1".into(), 27277)
        );
        assert_eq!(page_server("[::1]:5").unwrap(), ("::1".into(), 5));
        for bad in ["127.0.0.1", ":5", "host:0", "host:x", "host:70000"] {
            let e = page_server(bad).unwrap_err().to_string();
            assert!(e.starts_with(&format!("--page-server {bad:?}: ")), "{e}");
        }
    }

    #[test]
    fn flags_criu_cannot_honour_are_refused() {
        let o = CheckpointOptions {
            lazy_pages: true,
            page_server: Some("1.2.3.4:5".into()),
            ..Default::default()
        };
        assert!(o.check().is_ok());
        let o = CheckpointOptions {
            status_fd: Some(2),
            ..Default::default()
        };
        assert!(o
            .check()
            .unwrap_err()
            .to_string()
            .starts_with("--status-fd: only with --lazy-pages"));
        let o = CheckpointOptions {
            lazy_pages: true,
            status_fd: Some(1_000_000),
            ..Default::default()
        };
        assert!(o
            .check()
            .unwrap_err()
            .to_string()
            .starts_with("--status-fd 1000000: not an open"));
        let o = RestoreOptions {
            no_pivot: true,
            ..Default::default()
        };
        assert!(o
            .check()
            .unwrap_err()
            .to_string()
            .starts_with("--no-pivot:"));
        assert!(empty_ns(&["pid".into()]).is_err());
        assert_eq!(
            empty_ns(&["network".into()]).unwrap(),
            libc::CLONE_NEWNET as u32
        );
        assert_eq!(
            cgroups_mode(Some("full")).unwrap(),
            Some(Criu_cg_mode::FULL)
        );
        assert!(cgroups_mode(Some("bogus")).is_err());
        assert!(CheckpointOptions::default().check().is_ok());
    }
}
