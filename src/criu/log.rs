//! CRIU's log: the line that says why a request failed.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// How much of the end of the log is read (CRIU's logs at level 4 run to megabytes).
const TAIL: u64 = 256 << 10;

/// The last `Error (file:line): …` line of the log at `path` that says why, without its
/// timestamp: CRIU's cascade of summaries after the cause ("Dump files (pid: N) failed with
/// -1", "Dumping FAILED.", a helper's exit status, what it logs while cleaning up after that)
/// are passed over, and its warning about RLIMIT_NOFILE is never taken.
pub fn last_error(path: &Path) -> Option<String> {
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(TAIL))).ok()?;
    let mut b = Vec::new();
    f.read_to_end(&mut b).ok()?;
    last_error_in(&String::from_utf8_lossy(&b))
}

fn last_error_in(text: &str) -> Option<String> {
    let errors: Vec<&str> = text
        .lines()
        .filter_map(|l| l.find("Error (").map(|i| l[i..].trim()))
        // Logged by every run that is not allowed to raise its fd limit: never the cause.
        .filter(|l| !l.contains("Can't setup RLIMIT_NOFILE"))
        .collect();
    // What went wrong comes before CRIU's "… FAILED." (what it logs while cleaning up after
    // that is a consequence).
    let end = errors
        .iter()
        .rposition(|l| l.ends_with("FAILED."))
        .unwrap_or(errors.len());
    errors[..end]
        .iter()
        .rev()
        .chain(errors[end..].iter().rev())
        .find(|l| !is_summary(l))
        .or(errors.last())
        .map(|l| {
            let l = crate::logging::one_line(l);
            // CRIU runs helpers (iptables-restore to lock a network namespace, tar for a
            // tmpfs, ip): name what is missing.
            if l.contains("execvp(\"") && l.ends_with("No such file or directory") {
                format!("{l} (CRIU needs this program on its PATH)")
            } else {
                l.to_string()
            }
        })
}

fn is_summary(l: &str) -> bool {
    l.ends_with("FAILED.")
        || l.contains(") failed with -")
        // A helper's exit status; the line before it says why (execvp failed: …).
        || l.contains("): exited, status=")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_error_line_without_its_timestamp() {
        let log = "(00.001) Warn (a.c:1): x\n(00.002) Error (criu/mount.c:12): mnt: first\n\
                   (00.003) 1: Error (criu/cr-restore.c:9): second one\n(00.004) Unlock\n\
                   (00.005) Error (criu/cr-dump.c:1681): Dump files (pid: 7) failed with -1\n\
                   (00.006) Error (criu/cr-dump.c:2111): Dumping FAILED.\n\
                   (00.007) Error (criu/cgroup.c:1998): cg: cgroupd: recv req error\n";
        assert_eq!(
            last_error_in(log).as_deref(),
            Some("Error (criu/cr-restore.c:9): second one")
        );
        assert_eq!(last_error_in("(00.1) fine\n"), None);
    }

    /// A helper CRIU could not run (here iptables-restore, for the network lock, on a host
    /// without iptables) is named, not the exit status CRIU logs after it.
    #[test]
    fn a_missing_helper_is_named() {
        let log = "(00.02) Error (criu/util.c:1533): rlimit: Can't setup RLIMIT_NOFILE for self\n\
                   Error (criu/util.c:641): execvp(\"iptables-restore\", ...) failed: No such file or directory\n\
                   (00.05) Error (criu/util.c:656): exited, status=1\n\
                   (00.06) Error (criu/cr-dump.c:2111): Dumping FAILED.\n";
        assert_eq!(
            last_error_in(log).as_deref(),
            Some(
                "Error (criu/util.c:641): execvp(\"iptables-restore\", ...) failed: No such file \
                 or directory (CRIU needs this program on its PATH)"
            )
        );
        // Only the RLIMIT_NOFILE warning (CRIU was killed): nothing to say; the caller says
        // how CRIU ended instead.
        assert_eq!(
            last_error_in(
                "(00.02) Error (criu/util.c:1533): rlimit: Can't setup RLIMIT_NOFILE for self\n"
            ),
            None
        );
        // Only summaries: the last one is still better than nothing.
        assert_eq!(
            last_error_in("(00.05) Error (criu/util.c:656): exited, status=2\n").as_deref(),
            Some("Error (criu/util.c:656): exited, status=2")
        );
    }
}
