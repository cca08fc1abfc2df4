//! Writing a new user namespace's id maps with or without privileges.
//!
//! The kernel lets a process write the maps of a user namespace it created in one of three
//! ways (user_namespaces(7)):
//! * with CAP_SETUID / CAP_SETGID in its own user namespace (root, or uid 0 of a namespace
//!   made by rootless podman): any ids mapped in that namespace;
//! * without them: exactly one line mapping its own euid (uid_map), or its own egid (gid_map),
//!   and then only once `setgroups` has been set to `deny`;
//! * anything else needs the setuid helpers newuidmap/newgidmap (Debian's `uidmap`), which map
//!   the caller's own id and the ranges /etc/subuid and /etc/subgid give it, as runc uses them.
//!
//! [`plan`] decides which way each map is written and checks every range against what the
//! caller may map, before any side effect: a refusal names `linux.uidMappings[N]`. [`write`]
//! then writes them for the container's init.
//!
//! Unprivileged writes need the init to be dumpable while they are made: the /proc files of a
//! non-dumpable process belong to root. [`needs_dumpable_child`] says when; the init turns
//! non-dumpable again as soon as its maps are written, before it enters anything of the
//! container's (the CVE-2019-5736 protection is unchanged from then on: no container process
//! exists before that moment).

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, Spec};

use super::RootlessError;

/// uid or gid: the two maps differ only in names and files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Uid,
    Gid,
}

impl Kind {
    pub fn field(self) -> &'static str {
        match self {
            Kind::Uid => "linux.uidMappings",
            Kind::Gid => "linux.gidMappings",
        }
    }
    fn proc_file(self) -> &'static str {
        match self {
            Kind::Uid => "uid_map",
            Kind::Gid => "gid_map",
        }
    }
    fn helper(self) -> &'static str {
        match self {
            Kind::Uid => "newuidmap",
            Kind::Gid => "newgidmap",
        }
    }
    fn subid_file(self) -> &'static str {
        match self {
            Kind::Uid => "/etc/subuid",
            Kind::Gid => "/etc/subgid",
        }
    }
    /// The capability that lets a process write this map for any mapped id.
    fn capability(self) -> u32 {
        match self {
            Kind::Uid => 7, // CAP_SETUID
            Kind::Gid => 6, // CAP_SETGID
        }
    }
}

/// How one map is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Writer {
    /// Berth writes /proc/PID/{uid,gid}_map itself.
    Direct,
    /// Through newuidmap/newgidmap at this path.
    Helper(PathBuf),
}

/// How a container's id maps are written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub uid: Writer,
    pub gid: Writer,
    /// Write `deny` to /proc/PID/setgroups before gid_map (an unprivileged direct gid map).
    pub deny_setgroups: bool,
}

impl Plan {
    /// Some map is written without CAP_SETUID/CAP_SETGID (so the init must be dumpable then).
    pub fn unprivileged(&self) -> bool {
        self.deny_setgroups || self.uid != Writer::Direct || self.gid != Writer::Direct
    }
}

/// What this process may map, read from the system.
#[derive(Clone, Debug, Default)]
pub struct Allowed {
    /// CAP_SETUID, CAP_SETGID in its own user namespace.
    pub cap_uid: bool,
    pub cap_gid: bool,
    /// The ids this process's user namespace maps (all of them in the initial one), as
    /// (first, count) ranges.
    pub mapped_uids: Vec<(u64, u64)>,
    pub mapped_gids: Vec<(u64, u64)>,
    pub euid: u32,
    pub egid: u32,
    /// The real uid's and gid's: what newuidmap/newgidmap accept as "own".
    pub ruid: u32,
    pub rgid: u32,
    /// /etc/subuid, /etc/subgid ranges of the caller, (first, count).
    pub sub_uids: Vec<(u64, u64)>,
    pub sub_gids: Vec<(u64, u64)>,
    pub newuidmap: Option<PathBuf>,
    pub newgidmap: Option<PathBuf>,
}

impl Allowed {
    pub fn detect() -> Allowed {
        use nix::unistd::{getegid, geteuid, getgid, getuid};
        let caps = super::effective_caps();
        let ruid = getuid().as_raw();
        let mut a = Allowed {
            cap_uid: caps & (1 << Kind::Uid.capability()) != 0,
            cap_gid: caps & (1 << Kind::Gid.capability()) != 0,
            mapped_uids: own_map("/proc/self/uid_map"),
            mapped_gids: own_map("/proc/self/gid_map"),
            euid: geteuid().as_raw(),
            egid: getegid().as_raw(),
            ruid,
            rgid: getgid().as_raw(),
            ..Default::default()
        };
        if a.cap_uid && a.cap_gid {
            // The subordinate ranges and the helpers only matter without the capabilities.
            return a;
        }
        // By name (from /etc/passwd, read here: NSS is not for a static binary) or by uid.
        let name = std::fs::read_to_string("/etc/passwd")
            .ok()
            .and_then(|t| user_name(&t, ruid));
        let subids = |file| {
            std::fs::read_to_string(file)
                .map(|t| subid_ranges(&t, name.as_deref(), ruid))
                .unwrap_or_default()
        };
        a.sub_uids = subids(Kind::Uid.subid_file());
        a.sub_gids = subids(Kind::Gid.subid_file());
        a.newuidmap = find_in_path(Kind::Uid.helper());
        a.newgidmap = find_in_path(Kind::Gid.helper());
        a
    }

    fn of(&self, k: Kind) -> KindAllowed<'_> {
        match k {
            Kind::Uid => KindAllowed {
                cap: self.cap_uid,
                mapped: &self.mapped_uids,
                effective: self.euid,
                real: self.ruid,
                sub: &self.sub_uids,
                helper: self.newuidmap.as_deref(),
            },
            Kind::Gid => KindAllowed {
                cap: self.cap_gid,
                mapped: &self.mapped_gids,
                effective: self.egid,
                real: self.rgid,
                sub: &self.sub_gids,
                helper: self.newgidmap.as_deref(),
            },
        }
    }
}

struct KindAllowed<'a> {
    cap: bool,
    mapped: &'a [(u64, u64)],
    effective: u32,
    real: u32,
    sub: &'a [(u64, u64)],
    helper: Option<&'a Path>,
}

/// The "inside" ranges of this process's own uid_map/gid_map: the ids it can name.
fn own_map(path: &str) -> Vec<(u64, u64)> {
    crate::linux::procfs::read_pseudo(path)
        .map(|t| {
            t.lines()
                .filter_map(|l| {
                    let f: Vec<u64> = l
                        .split_whitespace()
                        .filter_map(|x| x.parse().ok())
                        .collect();
                    (f.len() == 3).then(|| (f[0], f[2]))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The name of `uid` in an /etc/passwd text.
fn user_name(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 3 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[0].to_string())
    })
}

/// The caller's ranges in an /etc/subuid-style text: lines `NAME_OR_UID:FIRST:COUNT`.
pub fn subid_ranges(text: &str, name: Option<&str>, uid: u32) -> Vec<(u64, u64)> {
    let uid = uid.to_string();
    text.lines()
        .filter_map(|l| {
            let mut f = l.trim().splitn(3, ':');
            let (who, first, count) = (f.next()?, f.next()?, f.next()?);
            if who != uid && Some(who) != name {
                return None;
            }
            Some((first.trim().parse().ok()?, count.trim().parse().ok()?))
        })
        .filter(|&(_, c): &(u64, u64)| c > 0)
        .collect()
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// True when every id of [first, first+count) lies in one of `ranges` (their union).
fn covered(first: u64, count: u64, ranges: &[(u64, u64)]) -> bool {
    let end = first.saturating_add(count);
    let mut at = first;
    while at < end {
        match ranges
            .iter()
            .filter(|&&(s, c)| s <= at && at < s.saturating_add(c))
            .map(|&(s, c)| s.saturating_add(c))
            .max()
        {
            Some(next) => at = next,
            None => return false,
        }
    }
    true
}

fn show(ranges: &[(u64, u64)]) -> String {
    if ranges.is_empty() {
        return "none".into();
    }
    ranges
        .iter()
        .map(|&(s, c)| format!("{s}-{}", s + c - 1))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How the maps of `spec`'s new user namespace are written, or None when it has none. Every
/// range is checked against what this caller may map (`allowed`); nothing is changed.
pub fn plan_with(spec: &Spec, allowed: &Allowed) -> Result<Option<Plan>, RootlessError> {
    let Some(linux) = spec.linux().as_ref().filter(|_| new_user_namespace(spec)) else {
        return Ok(None);
    };
    let uid = writer(
        Kind::Uid,
        linux.uid_mappings().as_deref().unwrap_or_default(),
        &allowed.of(Kind::Uid),
    )?;
    let gid_maps = linux.gid_mappings().as_deref().unwrap_or_default();
    let ka = allowed.of(Kind::Gid);
    let gid = writer(Kind::Gid, gid_maps, &ka)?;
    let deny_setgroups = gid == Writer::Direct && !ka.cap && !gid_maps.is_empty();
    Ok(Some(Plan {
        uid,
        gid,
        deny_setgroups,
    }))
}

/// Whether `spec` asks for a new user namespace (one whose maps Berth writes).
fn new_user_namespace(spec: &Spec) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| {
            ns.iter()
                .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_none())
        })
}

/// [`plan_with`] for this process (what it may map is read once per command, and only for a
/// container with a new user namespace).
pub fn plan(spec: &Spec) -> Result<Option<Plan>, RootlessError> {
    static ALLOWED: std::sync::OnceLock<Allowed> = std::sync::OnceLock::new();
    if !new_user_namespace(spec) {
        return Ok(None);
    }
    plan_with(spec, ALLOWED.get_or_init(Allowed::detect))
}

fn writer(k: Kind, maps: &[LinuxIdMapping], a: &KindAllowed) -> Result<Writer, RootlessError> {
    let field = k.field();
    if a.cap {
        // Any id this namespace maps may be given to the container.
        for (i, m) in maps.iter().enumerate() {
            let (h, s) = (u64::from(m.host_id()), u64::from(m.size()));
            if !covered(h, s, a.mapped) {
                return Err(RootlessError::field(
                    format!("{field}[{i}]"),
                    format!(
                        "host ids {h}-{} are not mapped in Berth's own user namespace (it maps {})",
                        h + s.max(1) - 1,
                        show(a.mapped)
                    ),
                ));
            }
        }
        return Ok(Writer::Direct);
    }
    // Without the capability the kernel takes one line: the caller's own id, once.
    if let [m] = maps {
        if m.size() == 1 && m.host_id() == a.effective {
            return Ok(Writer::Direct);
        }
    }
    if maps.is_empty() {
        return Ok(Writer::Direct);
    }
    let own = [(u64::from(a.real), 1)];
    let may: Vec<(u64, u64)> = own.iter().chain(a.sub).copied().collect();
    let id = if k == Kind::Uid { "uid" } else { "gid" };
    for (i, m) in maps.iter().enumerate() {
        let (h, s) = (u64::from(m.host_id()), u64::from(m.size()));
        if !covered(h, s, &may) {
            return Err(RootlessError::field(
                format!("{field}[{i}]"),
                format!(
                    "host ids {h}-{} are not yours to map: {id} {} may map itself and its {} ranges ({})",
                    h + s.max(1) - 1,
                    a.real,
                    k.subid_file(),
                    show(a.sub)
                ),
            ));
        }
    }
    match a.helper {
        Some(p) => Ok(Writer::Helper(p.to_path_buf())),
        None => Err(RootlessError::field(
            field,
            format!(
                "mapping more than the caller's own {id} without privileges needs {}, which is not installed (Debian package uidmap)",
                k.helper()
            ),
        )),
    }
}

/// Whether the init must stay dumpable until its maps are written: some map is written
/// without the capability, and /proc/PID of a non-dumpable process is root's.
pub fn needs_dumpable_child(plan: Option<&Plan>) -> bool {
    plan.is_some_and(Plan::unprivileged)
}

/// Writes the id maps of `pid`'s user namespace as `plan` says.
pub fn write(spec: &Spec, plan: &Plan, pid: i32) -> Result<(), RootlessError> {
    let linux = spec.linux().as_ref();
    let maps = |k: Kind| -> &[LinuxIdMapping] {
        linux
            .and_then(|l| match k {
                Kind::Uid => l.uid_mappings().as_deref(),
                Kind::Gid => l.gid_mappings().as_deref(),
            })
            .unwrap_or_default()
    };
    write_one(Kind::Uid, maps(Kind::Uid), &plan.uid, pid)?;
    if plan.deny_setgroups {
        let f = crate::linux::procfs::ProcFile::Pid(pid, "setgroups");
        crate::linux::procfs::write_proc(f, b"deny").map_err(|source| RootlessError::Io {
            what: format!(
                "{}: write /proc/{pid}/setgroups (deny, required to map a gid without privileges)",
                Kind::Gid.field()
            ),
            source,
        })?;
    }
    write_one(Kind::Gid, maps(Kind::Gid), &plan.gid, pid)
}

fn write_one(k: Kind, maps: &[LinuxIdMapping], w: &Writer, pid: i32) -> Result<(), RootlessError> {
    let field = k.field();
    match w {
        Writer::Direct => {
            let body = crate::config::id_map_text(maps);
            let f = crate::linux::procfs::ProcFile::Pid(pid, k.proc_file());
            crate::linux::procfs::write_proc(f, body.as_bytes()).map_err(|source| {
                let why = match source.raw_os_error() {
                    Some(libc::EINVAL) => " (the kernel refused the mappings)",
                    Some(libc::EPERM) => {
                        " (not permitted: are the host ids mapped in Berth's own user namespace?)"
                    }
                    _ => "",
                };
                RootlessError::Io {
                    what: format!("{field}: write /proc/{pid}/{}{why}", k.proc_file()),
                    source,
                }
            })
        }
        Writer::Helper(path) => {
            let mut cmd = std::process::Command::new(path);
            cmd.arg(pid.to_string());
            for m in maps {
                cmd.args([
                    m.container_id().to_string(),
                    m.host_id().to_string(),
                    m.size().to_string(),
                ]);
            }
            cmd.stdin(std::process::Stdio::null());
            let out = cmd.output().map_err(|source| RootlessError::Io {
                what: format!("{field}: run {}", path.display()),
                source,
            })?;
            if out.status.success() {
                return Ok(());
            }
            let msg = String::from_utf8_lossy(&out.stderr);
            Err(RootlessError::field(
                field,
                format!(
                    "{} failed ({}): {}",
                    path.display(),
                    out.status,
                    crate::logging::one_line(msg.trim())
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(uid: &str, gid: &str) -> Spec {
        serde_json::from_str(&format!(
            r#"{{"ociVersion":"1.0.2","linux":{{"namespaces":[{{"type":"user"}}],
            "uidMappings":{uid},"gidMappings":{gid}}}}}"#
        ))
        .unwrap()
    }

    fn user() -> Allowed {
        Allowed {
            euid: 1000,
            egid: 1000,
            ruid: 1000,
            rgid: 1000,
            sub_uids: vec![(100000, 65536)],
            sub_gids: vec![(100000, 65536)],
            newuidmap: Some("/usr/bin/newuidmap".into()),
            newgidmap: Some("/usr/bin/newgidmap".into()),
            ..Default::default()
        }
    }

    const OWN: &str = r#"[{"containerID":0,"hostID":1000,"size":1}]"#;
    const MULTI: &str = r#"[{"containerID":0,"hostID":1000,"size":1},
                            {"containerID":1,"hostID":100000,"size":65536}]"#;

    #[test]
    fn own_ids_are_written_directly_with_setgroups_denied() {
        let p = plan_with(&spec(OWN, OWN), &user()).unwrap().unwrap();
        assert_eq!((p.uid, p.gid), (Writer::Direct, Writer::Direct));
        assert!(p.deny_setgroups);
        assert!(needs_dumpable_child(Some(
            &plan_with(&spec(OWN, OWN), &user()).unwrap().unwrap()
        )));
    }

    #[test]
    fn subordinate_ranges_go_through_the_helpers() {
        let p = plan_with(&spec(MULTI, MULTI), &user()).unwrap().unwrap();
        assert_eq!(p.uid, Writer::Helper("/usr/bin/newuidmap".into()));
        assert_eq!(p.gid, Writer::Helper("/usr/bin/newgidmap".into()));
        assert!(!p.deny_setgroups);
    }

    #[test]
    fn a_mapping_the_caller_may_not_make_names_its_index() {
        let bad = r#"[{"containerID":0,"hostID":1000,"size":1},
                      {"containerID":1,"hostID":200000,"size":10}]"#;
        let e = plan_with(&spec(bad, OWN), &user()).unwrap_err().to_string();
        assert!(
            e.starts_with("linux.uidMappings[1]: host ids 200000-200009 are not yours")
                && e.contains("100000-165535"),
            "{e}"
        );
        // Another user's uid alone, even size 1.
        let other = r#"[{"containerID":0,"hostID":0,"size":1}]"#;
        let e = plan_with(&spec(OWN, other), &user())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("linux.gidMappings[0]: host ids 0-0"), "{e}");
        // A range running past the end of the subordinate one.
        let past = r#"[{"containerID":0,"hostID":100000,"size":65537}]"#;
        let e = plan_with(&spec(past, OWN), &user())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("linux.uidMappings[0]:"), "{e}");
    }

    #[test]
    fn without_the_helpers_more_than_ones_own_id_is_refused() {
        let mut a = user();
        a.newuidmap = None;
        let e = plan_with(&spec(MULTI, OWN), &a).unwrap_err().to_string();
        assert!(
            e.starts_with("linux.uidMappings: ") && e.contains("newuidmap") && e.contains("uidmap"),
            "{e}"
        );
    }

    #[test]
    fn privileged_callers_write_directly_what_their_namespace_maps() {
        let root = Allowed {
            cap_uid: true,
            cap_gid: true,
            mapped_uids: vec![(0, 4294967295)],
            mapped_gids: vec![(0, 4294967295)],
            ..Default::default()
        };
        let p = plan_with(&spec(MULTI, MULTI), &root).unwrap().unwrap();
        assert!(!p.unprivileged());
        // uid 0 of rootless podman's namespace: 0-65536 mapped, nothing else.
        let podman = Allowed {
            mapped_uids: vec![(0, 65537)],
            mapped_gids: vec![(0, 65537)],
            ..root
        };
        let e = plan_with(&spec(MULTI, MULTI), &podman)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("linux.uidMappings[1]: host ids 100000-165535 are not mapped in Berth's own user namespace (it maps 0-65536)"),
            "{e}"
        );
    }

    #[test]
    fn no_new_user_namespace_no_plan() {
        let s: Spec = serde_json::from_str(
            r#"{"ociVersion":"1.0.2","linux":{"namespaces":[{"type":"user","path":"/proc/1/ns/user"}]}}"#,
        )
        .unwrap();
        assert_eq!(plan_with(&s, &user()).unwrap(), None);
    }

    #[test]
    fn subid_files_match_by_name_or_uid() {
        let t = "alice:100000:65536\n1000:300000:10\nbob:200000:65536\nbad line\nalice:5:0\n";
        assert_eq!(
            subid_ranges(t, Some("alice"), 1000),
            vec![(100000, 65536), (300000, 10)]
        );
        assert_eq!(subid_ranges(t, None, 42), vec![]);
        let passwd = "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n";
        assert_eq!(user_name(passwd, 1000).as_deref(), Some("alice"));
        assert_eq!(user_name(passwd, 7), None);
        assert!(covered(100000, 65536, &[(100000, 10), (100010, 65526)]));
        assert!(!covered(99999, 2, &[(100000, 10)]));
    }
}
