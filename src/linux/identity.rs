//! The process's identity and limits: uid, gid, supplementary groups (`additionalGids`, as runc
//! sets them), HOME (from the container's /etc/passwd), umask, rlimits, oom score and
//! personality.

use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
use oci_spec::runtime::{PosixRlimitType, Process};

/// The highest uid or gid Berth accepts, as runc: 2^31 - 1. Above it lie ids that tools read as
/// negative and, at the top, u32::MAX, which setresuid(2) and setresgid(2) take as -1, "leave
/// this id unchanged": a process asking for it would keep running as root.
pub const MAX_ID: u32 = 2_147_483_647;

/// runc's wording for an id out of range, kept so that users and engines recognise it.
pub const ID_RANGE: &str = "uids and gids must be in range 0-2147483647";

/// Why `v` cannot be a uid or gid (`V: uids and gids must be in range 0-2147483647`), or None.
pub fn id_range_error(v: u32) -> Option<String> {
    (v > MAX_ID).then(|| format!("{v}: {ID_RANGE}"))
}

pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: String,
    pub umask: u32,
}

/// Resolves `process.user` in the container (after pivot_root): HOME comes from its
/// /etc/passwd; the supplementary groups are exactly `additionalGids`. Like runc and crun, Berth
/// does not add the user's /etc/group memberships: an OCI user always names its gid.
pub fn resolve(p: &Process) -> Result<Identity, String> {
    let u = p.user();
    let mut home = "/".to_string();
    if let Ok(passwd) = std::fs::read_to_string("/etc/passwd") {
        for line in passwd.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() >= 6 && f[2].parse::<u32>().ok() == Some(u.uid()) {
                home = f[5].to_string();
                break;
            }
        }
    }
    let mut groups: Vec<u32> = u.additional_gids().iter().flatten().copied().collect();
    groups.sort_unstable();
    groups.dedup();
    Ok(Identity {
        uid: u.uid(),
        gid: u.gid(),
        groups,
        home,
        umask: u.umask().unwrap_or(0o022),
    })
}

/// Switches to the identity: groups, then gid, then uid (the order that keeps permission).
pub fn switch(id: &Identity) -> Result<(), String> {
    // Validation refused these already; checked again where it matters, so that -1 ("no
    // change") can never reach setresuid/setresgid/setgroups whatever path built the identity.
    let fields = [("uid", id.uid), ("gid", id.gid)].into_iter();
    let groups = id.groups.iter().map(|g| ("additionalGids", *g));
    for (field, v) in fields.chain(groups) {
        if let Some(m) = id_range_error(v) {
            return Err(format!("process.user.{field}: {m}"));
        }
    }
    let groups: Vec<Gid> = id.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    // setgroups is denied in user namespaces whose /proc/PID/setgroups says "deny".
    if let Err(e) = setgroups(&groups) {
        let denied = crate::linux::procfs::read_pseudo("/proc/self/setgroups")
            .map(|s| s.trim() == "deny")
            .unwrap_or(false);
        if !denied || !groups.is_empty() {
            return Err(format!("process.user.additionalGids: setgroups: {e}"));
        }
    }
    let g = Gid::from_raw(id.gid);
    setresgid(g, g, g).map_err(|e| format!("process.user.gid: setgid {}: {e}", id.gid))?;
    let u = Uid::from_raw(id.uid);
    setresuid(u, u, u).map_err(|e| format!("process.user.uid: setuid {}: {e}", id.uid))?;
    // The umask is set by the caller, before the seccomp filter (init::exec_user_process).
    Ok(())
}

/// oomScoreAdj, written by the parent through the host's /proc before the child runs on (so no
/// mount of the container's can redirect the write). Children inherit it.
pub fn write_oom_score_adj(pid: i32, p: &Process) -> Result<(), String> {
    if let Some(adj) = p.oom_score_adj() {
        let f = crate::linux::procfs::ProcFile::Pid(pid, "oom_score_adj");
        crate::linux::procfs::write_proc(f, adj.to_string().as_bytes())
            .map_err(|e| format!("process.oomScoreAdj: {adj}: {e}"))?;
    }
    Ok(())
}

/// `linux.personality`: the execution domain and flags, set before exec.
pub fn apply_personality(p: Option<&oci_spec::runtime::LinuxPersonality>) -> Result<(), String> {
    use oci_spec::runtime::LinuxPersonalityDomain as D;
    let Some(p) = p else { return Ok(()) };
    let mut persona: libc::c_ulong = match p.domain() {
        D::PerLinux => 0x0000,
        D::PerLinux32 => 0x0008,
    };
    for (i, f) in p.flags().iter().flatten().enumerate() {
        persona |= personality_flag(f)
            .ok_or_else(|| format!("linux.personality.flags[{i}]: unknown flag {f:?}"))?;
    }
    // SAFETY: personality(2) takes an integer.
    if unsafe { libc::personality(persona) } == -1 {
        return Err(format!(
            "linux.personality: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// The personality(2) flag for a name (linux/personality.h).
pub fn personality_flag(name: &str) -> Option<libc::c_ulong> {
    Some(match name {
        "UNAME26" => 0x0020000,
        "ADDR_NO_RANDOMIZE" => 0x0040000,
        "FDPIC_FUNCPTRS" => 0x0080000,
        "MMAP_PAGE_ZERO" => 0x0100000,
        "ADDR_COMPAT_LAYOUT" => 0x0200000,
        "READ_IMPLIES_EXEC" => 0x0400000,
        "ADDR_LIMIT_32BIT" => 0x0800000,
        "SHORT_INODE" => 0x1000000,
        "WHOLE_SECONDS" => 0x2000000,
        "STICKY_TIMEOUTS" => 0x4000000,
        "ADDR_LIMIT_3GB" => 0x8000000,
        _ => return None,
    })
}

/// rlimits: set while still root in the container.
pub fn apply_process_limits(p: &Process) -> Result<(), String> {
    for (i, r) in p.rlimits().iter().flatten().enumerate() {
        let lim = libc::rlimit {
            rlim_cur: r.soft(),
            rlim_max: r.hard(),
        };
        // SAFETY: `lim` is a valid rlimit that outlives the call.
        let rc = unsafe { libc::setrlimit(rlimit_resource(r.typ()) as _, &lim) };
        if rc != 0 {
            return Err(format!(
                "process.rlimits[{i}]: setrlimit {}: {}",
                crate::config::spec_name(&r.typ()),
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

/// The resource number of an rlimit type.
fn rlimit_resource(t: PosixRlimitType) -> libc::c_int {
    use PosixRlimitType as T;
    (match t {
        T::RlimitCpu => libc::RLIMIT_CPU,
        T::RlimitFsize => libc::RLIMIT_FSIZE,
        T::RlimitData => libc::RLIMIT_DATA,
        T::RlimitStack => libc::RLIMIT_STACK,
        T::RlimitCore => libc::RLIMIT_CORE,
        T::RlimitRss => libc::RLIMIT_RSS,
        T::RlimitNproc => libc::RLIMIT_NPROC,
        T::RlimitNofile => libc::RLIMIT_NOFILE,
        T::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        T::RlimitAs => libc::RLIMIT_AS,
        T::RlimitLocks => libc::RLIMIT_LOCKS,
        T::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        T::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        T::RlimitNice => libc::RLIMIT_NICE,
        T::RlimitRtprio => libc::RLIMIT_RTPRIO,
        T::RlimitRttime => libc::RLIMIT_RTTIME,
    }) as libc::c_int
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switch_never_passes_minus_one() {
        // Refused before any system call: this test process keeps its identity.
        for (uid, gid, groups, field) in [
            (u32::MAX, 0, vec![], "process.user.uid"),
            (0, u32::MAX, vec![], "process.user.gid"),
            (0, 0, vec![10, u32::MAX], "process.user.additionalGids"),
            (MAX_ID + 1, 0, vec![], "process.user.uid"),
        ] {
            let id = Identity {
                uid,
                gid,
                groups,
                home: "/".into(),
                umask: 0o022,
            };
            let e = switch(&id).unwrap_err();
            assert!(e.starts_with(field) && e.ends_with(ID_RANGE), "{e}");
        }
    }
}
