//! Small helpers for cgroupfs files: writes that never create files, reads, parsers for the
//! kernel's formats, and bounded waits on kernfs notifications.

use std::collections::BTreeMap;
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::CgroupError;

/// Writes `value` to `dir/file` as the kernel expects: one write(2), O_WRONLY|O_TRUNC, and never
/// O_CREAT (a file the kernel lacks must show up as ENOENT, not be created).
pub fn write(dir: &Path, file: &str, value: &str) -> io::Result<()> {
    open_for_writes(dir, file)?.write_all(value.as_bytes())
}

/// `dir/file` opened as [`write`] does, for files that take one value per write(2) (v1's
/// devices.allow and devices.deny).
pub fn open_for_writes(dir: &Path, file: &str) -> io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(dir.join(file))
}

/// Maps an I/O error on a cgroup path to a `CgroupError` that names what and where.
pub fn io(what: &str, path: &Path) -> impl FnOnce(io::Error) -> CgroupError {
    let (what, path) = (what.to_string(), path.to_path_buf());
    move |source| CgroupError::Io { what, path, source }
}

/// A value of 0 means "not set" in the OCI resource fields it is used for.
pub fn nz(v: Option<i64>) -> Option<i64> {
    v.filter(|&x| x != 0)
}

pub fn read(dir: &Path, file: &str) -> io::Result<String> {
    crate::linux::procfs::read_pseudo(dir.join(file))
}

pub fn exists(dir: &Path, file: &str) -> bool {
    dir.join(file).exists()
}

/// Parses a single number; "max" (cgroup v2) reads as u64::MAX.
pub fn parse_u64(s: &str) -> Option<u64> {
    let s = s.trim();
    if s == "max" {
        return Some(u64::MAX);
    }
    s.parse().ok()
}

pub fn read_u64(dir: &Path, file: &str) -> io::Result<u64> {
    let s = read(dir, file)?;
    parse_u64(&s).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: not a number: {:?}", dir.join(file).display(), s.trim()),
        )
    })
}

/// `key value` lines (memory.stat, cpu.stat, cgroup.events, …).
pub fn parse_kv(s: &str) -> BTreeMap<String, u64> {
    s.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let k = it.next()?;
            let v = parse_u64(it.next()?)?;
            Some((k.to_string(), v))
        })
        .collect()
}

pub fn read_kv(dir: &Path, file: &str) -> io::Result<BTreeMap<String, u64>> {
    Ok(parse_kv(&read(dir, file)?))
}

/// The pids listed in `dir/cgroup.procs`; a cgroup that is gone has none.
pub fn procs(dir: &Path) -> io::Result<Vec<i32>> {
    match read(dir, "cgroup.procs") {
        Ok(s) => Ok(s.lines().filter_map(|l| l.trim().parse().ok()).collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(vec![]),
        Err(e) => Err(e),
    }
}

/// Every pid in `dir` and the cgroups below it.
pub fn procs_recursive(dir: &Path) -> io::Result<Vec<i32>> {
    let mut out = procs(dir)?;
    for sub in subdirs(dir) {
        out.extend(procs_recursive(&sub)?);
    }
    Ok(out)
}

/// Child cgroups (subdirectories) of `dir`; none when it is gone.
pub fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return vec![];
    };
    rd.flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

/// A CPU or memory-node list as cpuset prints it ("0-3,8,10-11") → the numbers.
pub fn parse_list(s: &str) -> Vec<u16> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>()) {
                    out.extend(a..=b);
                }
            }
            None => {
                if let Ok(n) = part.parse() {
                    out.push(n);
                }
            }
        }
    }
    out
}

/// Waits until `dir/file` (a kernfs file that notifies on change, such as cgroup.events or
/// memory.events) satisfies `done`, sleeping in poll(2) on the file's POLLPRI notifications:
/// no polling loop. Returns false when `deadline` passes first.
pub fn wait_file(
    dir: &Path,
    file: &str,
    deadline: Instant,
    mut done: impl FnMut(&str) -> bool,
) -> io::Result<bool> {
    let mut f = std::fs::File::open(dir.join(file))?;
    let mut buf = String::new();
    loop {
        buf.clear();
        f.rewind()?;
        f.read_to_string(&mut buf)?;
        if done(&buf) {
            return Ok(true);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        wait_pri(&f, deadline - now)?;
    }
}

/// Sleeps until the kernfs file `f` reports a change (POLLPRI) or `timeout` passes.
pub fn wait_pri(f: &impl AsFd, timeout: Duration) -> io::Result<()> {
    let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
    let mut fds = [PollFd::new(f.as_fd(), PollFlags::POLLPRI)];
    match poll(
        &mut fds,
        PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
    ) {
        Ok(_) | Err(nix::errno::Errno::EINTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Builds the error for a failed write of `value` to `dir/file` for the JSON path `field`: a
/// missing file means the kernel lacks the knob.
pub fn write_error(field: &str, dir: &Path, file: &str, value: &str, e: io::Error) -> CgroupError {
    if e.kind() == io::ErrorKind::NotFound && dir.exists() {
        return CgroupError::Unsupported(format!(
            "{field}: not supported by this kernel ({} does not exist)",
            dir.join(file).display()
        ));
    }
    CgroupError::Write {
        field: field.to_string(),
        file: dir.join(file),
        value: value.to_string(),
        source: e,
    }
}

/// Writes and names the JSON path `field` on failure.
pub fn set(field: &str, dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    write(dir, file, value).map_err(|e| write_error(field, dir, file, value, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_formats() {
        assert_eq!(parse_u64("max\n"), Some(u64::MAX));
        assert_eq!(parse_u64(" 42\n"), Some(42));
        assert_eq!(parse_u64("x"), None);
        let kv = parse_kv("populated 1\nfrozen 0\n");
        assert_eq!(kv["populated"], 1);
        assert_eq!(kv["frozen"], 0);
        assert_eq!(parse_list("0-2,5,7-8\n"), vec![0, 1, 2, 5, 7, 8]);
        assert_eq!(parse_list(""), Vec::<u16>::new());
    }

    #[test]
    fn write_never_creates_files() {
        let d = tempfile::tempdir().unwrap();
        let e = set("linux.resources.cpu.idle", d.path(), "cpu.idle", "1").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("linux.resources.cpu.idle: not supported by this kernel"),
            "{msg}"
        );
        assert!(!d.path().join("cpu.idle").exists());
        std::fs::write(d.path().join("cpu.idle"), "0\n").unwrap();
        set("x", d.path(), "cpu.idle", "1").unwrap();
        assert_eq!(read(d.path(), "cpu.idle").unwrap(), "1");
    }

    #[test]
    fn wait_file_returns_at_once_when_satisfied_and_times_out_otherwise() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("cgroup.events"), "populated 0\nfrozen 1\n").unwrap();
        let soon = Instant::now() + Duration::from_millis(50);
        assert!(
            wait_file(d.path(), "cgroup.events", soon, |s| parse_kv(s)["frozen"]
                == 1)
            .unwrap()
        );
        // A regular file never reports POLLPRI: the wait sleeps until the deadline, once.
        let soon = Instant::now() + Duration::from_millis(30);
        assert!(
            !wait_file(d.path(), "cgroup.events", soon, |s| parse_kv(s)["frozen"]
                == 0)
            .unwrap()
        );
    }
}
