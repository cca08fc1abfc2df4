//! Namespaces: which ones a container gets new, which it joins by path, and how they are
//! entered (at clone time where possible, else by setns/unshare in the child).

use std::os::fd::AsFd;
use std::path::PathBuf;

use nix::sched::{setns, unshare, CloneFlags};
use oci_spec::runtime::{LinuxNamespaceType as T, Spec};

pub fn flag(t: T) -> CloneFlags {
    match t {
        T::Mount => CloneFlags::CLONE_NEWNS,
        T::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        T::Uts => CloneFlags::CLONE_NEWUTS,
        T::Ipc => CloneFlags::CLONE_NEWIPC,
        T::User => CloneFlags::CLONE_NEWUSER,
        T::Pid => CloneFlags::CLONE_NEWPID,
        T::Network => CloneFlags::CLONE_NEWNET,
        T::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// How the container's namespaces are entered.
#[derive(Debug)]
pub struct NsPlan {
    /// Namespaces created by clone3 itself (the fast path).
    pub clone_flags: CloneFlags,
    /// Namespaces joined by path in the child, user first.
    pub joins: Vec<(T, PathBuf)>,
    /// Namespaces the child creates with unshare(2) after joining.
    pub unshare_flags: CloneFlags,
    /// The container has its own user namespace (its id maps are written by the parent).
    pub new_user: bool,
    /// The pid namespace is entered after clone (new after a joined user namespace, or joined by
    /// path), so the child must fork once more for its init to live in it.
    pub fork_for_pid: bool,
    /// The flags of that fork: CLONE_NEWPID when the pid namespace is new (made by the fork
    /// itself, owned by the user namespace the child is in by then), none when it was joined.
    pub fork_flags: CloneFlags,
    pub new_mount: bool,
    pub new_pid: bool,
}

impl NsPlan {
    pub fn from_spec(spec: &Spec) -> NsPlan {
        let mut new = CloneFlags::empty();
        let mut joins = Vec::new();
        let mut p = NsPlan {
            clone_flags: CloneFlags::empty(),
            joins: Vec::new(),
            unshare_flags: CloneFlags::empty(),
            new_user: false,
            fork_for_pid: false,
            fork_flags: CloneFlags::empty(),
            new_mount: false,
            new_pid: false,
        };
        for n in spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_ref())
            .into_iter()
            .flatten()
        {
            match n.path() {
                Some(path) => joins.push((n.typ(), path.clone())),
                None => new |= flag(n.typ()),
            }
        }
        // The user namespace is joined first: it grants the capabilities that joining the others
        // (owned by it) needs.
        joins.sort_by_key(|(t, _)| *t != T::User);
        p.new_user = new.contains(CloneFlags::CLONE_NEWUSER);
        p.new_mount = new.contains(CloneFlags::CLONE_NEWNS);
        p.new_pid = new.contains(CloneFlags::CLONE_NEWPID);
        let joins_user = joins.iter().any(|(t, _)| *t == T::User);
        let joins_pid = joins.iter().any(|(t, _)| *t == T::Pid);
        // A time namespace's offsets must be written before any process enters it, and a cgroup
        // namespace's root is the cgroup its creator is in: both are unshared by the child, the
        // latter only once the parent has moved it into the container's cgroup.
        let late = flag(T::Time) | CloneFlags::CLONE_NEWCGROUP;
        // Fast path: everything new is created by clone3 in one step. It is only correct when
        // the joined namespaces can still be entered from inside the new ones, i.e. no user
        // namespace is both new and combined with joins, and no pid namespace is joined.
        let fast = !joins_user && !joins_pid && (!p.new_user || joins.is_empty());
        if fast {
            p.clone_flags = new - late;
            p.unshare_flags = new & late;
        } else {
            // A new pid namespace is made by the extra fork (unshare would leave this process
            // outside it anyway).
            p.unshare_flags = new - CloneFlags::CLONE_NEWPID;
            p.fork_for_pid = p.new_pid || joins_pid;
            p.fork_flags = new & CloneFlags::CLONE_NEWPID;
        }
        p.joins = joins;
        p
    }

    /// True when the child must ask the parent to write its id maps after unsharing.
    pub fn maps_after_unshare(&self) -> bool {
        self.new_user && !self.clone_flags.contains(CloneFlags::CLONE_NEWUSER)
    }
}

/// Joins each namespace in `joins` (child side). Every path is opened first, while this
/// process still has the host's credentials, then each is joined in order (the user namespace
/// first), as runc does: once in another user namespace, /proc/PID/ns/* of a process that is
/// not dumpable (another container's init before `start`) may no longer be opened.
pub fn join_all(joins: &[(T, PathBuf)]) -> Result<(), String> {
    let files = joins
        .iter()
        .map(|(t, path)| {
            std::fs::File::open(path)
                .map_err(|e| format!("open namespace {t:?} at {}: {e}", path.display()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    for ((t, path), f) in joins.iter().zip(&files) {
        let mut step = crate::trace::step("ns-join");
        step.detail(|| format!("{t:?}"));
        setns(f.as_fd(), flag(*t))
            .map_err(|e| format!("join {t:?} namespace {}: {e}", path.display()))?;
    }
    Ok(())
}

/// The namespaces `flags` names ("user, mount, uts"), for messages and trace lines.
pub fn names(flags: CloneFlags) -> String {
    [
        (CloneFlags::CLONE_NEWUSER, "user"),
        (CloneFlags::CLONE_NEWNS, "mount"),
        (CloneFlags::CLONE_NEWPID, "pid"),
        (CloneFlags::CLONE_NEWNET, "network"),
        (CloneFlags::CLONE_NEWIPC, "ipc"),
        (CloneFlags::CLONE_NEWUTS, "uts"),
        (CloneFlags::CLONE_NEWCGROUP, "cgroup"),
        (CloneFlags::from_bits_retain(libc::CLONE_NEWTIME), "time"),
    ]
    .iter()
    .filter(|(f, _)| flags.contains(*f))
    .map(|(_, n)| *n)
    .collect::<Vec<_>>()
    .join(", ")
}

pub fn unshare_new(flags: CloneFlags) -> Result<(), String> {
    if flags.is_empty() {
        return Ok(());
    }
    unshare(flags).map_err(|e| format!("unshare namespaces {flags:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(ns: &str) -> Spec {
        serde_json::from_str(&format!(
            r#"{{"ociVersion":"1.0.2","linux":{{"namespaces":{ns}}}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn all_new_namespaces_go_to_clone3() {
        let p = NsPlan::from_spec(&spec(
            r#"[{"type":"pid"},{"type":"mount"},{"type":"network"},{"type":"user"},{"type":"time"}]"#,
        ));
        assert!(p
            .clone_flags
            .contains(CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWUSER));
        assert!(!p.clone_flags.contains(flag(T::Time)));
        assert_eq!(p.unshare_flags, flag(T::Time));
    }

    #[test]
    fn cgroup_namespace_is_unshared_after_the_move_into_the_cgroup() {
        let p = NsPlan::from_spec(&spec(r#"[{"type":"pid"},{"type":"cgroup"}]"#));
        assert!(!p.clone_flags.contains(CloneFlags::CLONE_NEWCGROUP));
        assert!(p.unshare_flags.contains(CloneFlags::CLONE_NEWCGROUP));
        assert!(!p.fork_for_pid && !p.maps_after_unshare());
    }

    #[test]
    fn joining_net_keeps_the_fast_path() {
        let p = NsPlan::from_spec(&spec(
            r#"[{"type":"pid"},{"type":"mount"},{"type":"network","path":"/proc/1/ns/net"}]"#,
        ));
        assert!(p.clone_flags.contains(CloneFlags::CLONE_NEWPID));
        assert_eq!(p.joins.len(), 1);
        assert!(!p.fork_for_pid);
    }

    #[test]
    fn joining_a_user_namespace_joins_it_first_and_forks_for_pid() {
        let p = NsPlan::from_spec(&spec(
            r#"[{"type":"network","path":"/n"},{"type":"user","path":"/u"},{"type":"pid"},{"type":"mount"}]"#,
        ));
        assert!(p.clone_flags.is_empty());
        assert_eq!(p.joins[0].0, T::User);
        assert!(p.unshare_flags.contains(CloneFlags::CLONE_NEWNS));
        assert!(!p.unshare_flags.contains(CloneFlags::CLONE_NEWPID));
        assert!(p.fork_for_pid);
        assert_eq!(p.fork_flags, CloneFlags::CLONE_NEWPID);
    }

    #[test]
    fn a_joined_pid_namespace_is_entered_by_a_plain_fork() {
        let p = NsPlan::from_spec(&spec(
            r#"[{"type":"user","path":"/u"},{"type":"pid","path":"/p"},{"type":"mount"}]"#,
        ));
        assert!(p.fork_for_pid);
        assert!(p.fork_flags.is_empty());
    }
}
