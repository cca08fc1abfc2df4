//! Semantic checks on a parsed spec, before any side effect. Each error names its JSON path.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, Spec};

use super::{spec_name, ConfigError};

type R<T = ()> = Result<T, ConfigError>;

fn bad(field: impl Into<String>, msg: impl Into<String>) -> ConfigError {
    ConfigError::invalid(field, msg)
}

/// Validates `spec` for a bundle at `bundle`; returns the absolute rootfs path.
pub fn validate(spec: &Spec, bundle: &Path) -> R<PathBuf> {
    check_version(spec)?;
    let rootfs = check_root(spec, bundle)?;
    check_process(spec)?;
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| bad("linux", "required on Linux"))?;
    let ns = check_namespaces(spec)?;
    check_id_mappings(spec, &ns)?;
    check_hostname(spec, &ns)?;
    check_mounts(spec)?;
    check_sysctl(spec, &ns)?;
    check_devices(spec)?;
    check_hooks(spec)?;
    if let Some(p) = linux.rootfs_propagation() {
        if !matches!(
            p.as_str(),
            "" | "shared"
                | "rshared"
                | "slave"
                | "rslave"
                | "private"
                | "rprivate"
                | "unbindable"
                | "runbindable"
        ) {
            return Err(bad(
                "linux.rootfsPropagation",
                format!("unknown propagation {p:?}"),
            ));
        }
    }
    if let Some(rdt) = linux.intel_rdt() {
        crate::resctrl::validate(rdt, Path::new(crate::resctrl::ROOT))
            .map_err(|e| e.into_config())?;
    }
    crate::linux::mempolicy::validate(linux.memory_policy().as_ref())
        .map_err(|(f, m)| bad(f, m))?;
    crate::linux::netdev::validate(spec).map_err(|e| e.into_config())?;
    if let Some(p) = linux.personality() {
        for (i, f) in p.flags().iter().flatten().enumerate() {
            if crate::linux::identity::personality_flag(f).is_none() {
                return Err(bad(
                    format!("linux.personality.flags[{i}]"),
                    format!("unknown personality flag {f:?}"),
                ));
            }
        }
    }
    if linux.time_offsets().is_some() && !ns.new_ns(LinuxNamespaceType::Time) {
        return Err(bad(
            "linux.timeOffsets",
            "time offsets need a new time namespace in linux.namespaces",
        ));
    }
    if let Some(offsets) = linux.time_offsets() {
        for clock in offsets.keys() {
            if clock != "monotonic" && clock != "boottime" {
                return Err(bad(
                    format!("linux.timeOffsets.{clock}"),
                    "only monotonic and boottime clocks have offsets",
                ));
            }
        }
    }
    Ok(rootfs)
}

fn check_version(spec: &Spec) -> R {
    let v = spec.version();
    if v.is_empty() {
        return Err(bad("ociVersion", "missing"));
    }
    if !v.starts_with("1.") {
        return Err(bad(
            "ociVersion",
            format!("unsupported version {v:?} (Berth supports 1.x)"),
        ));
    }
    Ok(())
}

fn check_root(spec: &Spec, bundle: &Path) -> R<PathBuf> {
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| bad("root", "required"))?;
    let path = root.path();
    if path.as_os_str().is_empty() {
        return Err(bad("root.path", "empty"));
    }
    let abs = if path.is_absolute() {
        path.clone()
    } else {
        bundle.join(path)
    };
    match std::fs::metadata(&abs) {
        Ok(m) if m.is_dir() => Ok(abs),
        Ok(_) => Err(bad(
            "root.path",
            format!("rootfs {} is not a directory", abs.display()),
        )),
        Err(e) => Err(bad("root.path", format!("rootfs {}: {e}", abs.display()))),
    }
}

fn check_process(spec: &Spec) -> R {
    let p = spec
        .process()
        .as_ref()
        .ok_or_else(|| bad("process", "required by create"))?;
    check_process_fields(p, "process")
}

/// Checks a process object (the container's, or one given to `exec --process`).
pub fn check_process_fields(p: &oci_spec::runtime::Process, at: &str) -> R {
    match p.args() {
        Some(a) if !a.is_empty() && !a[0].is_empty() => {}
        _ => return Err(bad(format!("{at}.args"), "must name a program to run")),
    }
    check_user(p.user(), &format!("{at}.user"))?;
    no_nul_in(&format!("{at}.args"), p.args())?;
    no_nul_in(&format!("{at}.env"), p.env())?;
    no_nul(|| format!("{at}.cwd"), p.cwd().as_os_str().as_bytes())?;
    if !p.cwd().is_absolute() {
        return Err(bad(
            format!("{at}.cwd"),
            format!("must be an absolute path, got {:?}", p.cwd()),
        ));
    }
    for (i, e) in p.env().iter().flatten().enumerate() {
        if !e.contains('=') || e.starts_with('=') {
            return Err(bad(
                format!("{at}.env[{i}]"),
                format!("{e:?} is not of the form KEY=value"),
            ));
        }
    }
    let mut seen = Vec::new();
    for (i, r) in p.rlimits().iter().flatten().enumerate() {
        if seen.contains(&r.typ()) {
            return Err(bad(
                format!("{at}.rlimits[{i}].type"),
                format!("duplicate rlimit {}", spec_name(&r.typ())),
            ));
        }
        seen.push(r.typ());
        if r.soft() > r.hard() {
            return Err(bad(
                format!("{at}.rlimits[{i}]"),
                format!("soft limit {} exceeds hard limit {}", r.soft(), r.hard()),
            ));
        }
    }
    crate::linux::sched::validate(p.io_priority().as_ref(), p.scheduler().as_ref(), at)
        .map_err(|(field, msg)| bad(field, msg))?;
    if let Some(adj) = p.oom_score_adj() {
        if !(-1000..=1000).contains(&adj) {
            return Err(bad(
                format!("{at}.oomScoreAdj"),
                format!("{adj} is outside -1000..1000"),
            ));
        }
    }
    if let Some(sz) = p.console_size() {
        if p.terminal() != Some(true) && (sz.height() > 0 || sz.width() > 0) {
            crate::logging::warn(format!("{at}.consoleSize is ignored without {at}.terminal"));
        }
    }
    Ok(())
}

/// uid, gid and additionalGids within runc's range: above it, u32::MAX is -1 to setresuid(2),
/// "unchanged", and the process would stay root.
fn check_user(u: &oci_spec::runtime::User, at: &str) -> R {
    check_id(format!("{at}.uid"), u.uid())?;
    check_id(format!("{at}.gid"), u.gid())?;
    for (i, g) in u.additional_gids().iter().flatten().enumerate() {
        check_id(format!("{at}.additionalGids[{i}]"), *g)?;
    }
    Ok(())
}

/// execve(2), chdir(2) and mount(2) take C strings, which end at a NUL byte: a value holding one
/// cannot be passed on, so it is refused here rather than failing at start.
fn no_nul(field: impl FnOnce() -> String, value: &[u8]) -> R {
    match value.contains(&0) {
        true => Err(bad(field(), "contains a NUL byte")),
        false => Ok(()),
    }
}

/// [`no_nul`] for each string of a list, named `AT[i]`.
fn no_nul_in(at: &str, list: &Option<Vec<String>>) -> R {
    for (i, v) in list.iter().flatten().enumerate() {
        no_nul(|| format!("{at}[{i}]"), v.as_bytes())?;
    }
    Ok(())
}

fn check_id(field: String, v: u32) -> R {
    match crate::linux::identity::id_range_error(v) {
        Some(m) => Err(bad(field, m)),
        None => Ok(()),
    }
}

/// Which namespaces the container gets, new or joined by path.
pub struct NamespaceSet {
    entries: Vec<(LinuxNamespaceType, bool)>, // (type, has path)
}

impl NamespaceSet {
    pub fn has(&self, t: LinuxNamespaceType) -> bool {
        self.entries.iter().any(|(x, _)| *x == t)
    }
    pub fn new_ns(&self, t: LinuxNamespaceType) -> bool {
        self.entries.iter().any(|(x, p)| *x == t && !p)
    }
}

fn check_namespaces(spec: &Spec) -> R<NamespaceSet> {
    let mut entries = Vec::new();
    let linux = spec.linux().as_ref().expect("checked by caller");
    for (i, n) in linux.namespaces().iter().flatten().enumerate() {
        let t = n.typ();
        if entries.iter().any(|(x, _)| *x == t) {
            return Err(bad(
                format!("linux.namespaces[{i}].type"),
                format!("duplicate namespace {}", spec_name(&t)),
            ));
        }
        if let Some(path) = n.path() {
            if !path.is_absolute() {
                return Err(bad(
                    format!("linux.namespaces[{i}].path"),
                    format!("must be absolute, got {path:?}"),
                ));
            }
            if let Err(e) = std::fs::metadata(path) {
                return Err(bad(
                    format!("linux.namespaces[{i}].path"),
                    format!("{}: {e}", path.display()),
                ));
            }
        }
        entries.push((t, n.path().is_some()));
    }
    Ok(NamespaceSet { entries })
}

fn check_id_mappings(spec: &Spec, ns: &NamespaceSet) -> R {
    let linux = spec.linux().as_ref().expect("checked by caller");
    let uid = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    let gid = linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    if ns.new_ns(LinuxNamespaceType::User) {
        if !uid {
            return Err(bad(
                "linux.uidMappings",
                "a new user namespace needs uid mappings",
            ));
        }
        if !gid {
            return Err(bad(
                "linux.gidMappings",
                "a new user namespace needs gid mappings",
            ));
        }
    } else if uid || gid {
        let field = if uid {
            "linux.uidMappings"
        } else {
            "linux.gidMappings"
        };
        return Err(bad(field, "id mappings need a new user namespace"));
    }
    let (uids, gids) = (
        linux.uid_mappings().as_deref().unwrap_or_default(),
        linux.gid_mappings().as_deref().unwrap_or_default(),
    );
    check_mapping_list("linux.uidMappings", uids)?;
    check_mapping_list("linux.gidMappings", gids)?;
    match spec.process() {
        Some(p) if ns.new_ns(LinuxNamespaceType::User) => check_user_mapped(p.user(), uids, gids),
        _ => Ok(()),
    }
}

/// In a new user namespace, the process's ids must be mapped: setresuid(2) and setgroups(2)
/// refuse unmapped ids with EINVAL.
fn check_user_mapped(
    u: &oci_spec::runtime::User,
    uids: &[LinuxIdMapping],
    gids: &[LinuxIdMapping],
) -> R {
    let mapped = |v: u32, maps: &[LinuxIdMapping]| {
        maps.iter().any(|m| {
            v.checked_sub(m.container_id())
                .is_some_and(|d| d < m.size())
        })
    };
    let mut need = vec![
        ("uid".to_string(), u.uid(), "linux.uidMappings", uids),
        ("gid".to_string(), u.gid(), "linux.gidMappings", gids),
    ];
    for (i, g) in u.additional_gids().iter().flatten().enumerate() {
        need.push((
            format!("additionalGids[{i}]"),
            *g,
            "linux.gidMappings",
            gids,
        ));
    }
    for (field, v, list, maps) in need {
        if !mapped(v, maps) {
            return Err(bad(
                format!("process.user.{field}"),
                format!("{v} is not mapped in the container's user namespace by {list}"),
            ));
        }
    }
    Ok(())
}

/// The kernel's limit on lines in one uid_map or gid_map (since Linux 4.15).
const MAX_ID_MAP_LINES: usize = 340;

/// What the kernel's uid_map and gid_map accept (user_namespaces(7)), checked here so that a
/// bad mapping is named before any side effect rather than being an EINVAL from the write.
fn check_mapping_list(at: &str, maps: &[LinuxIdMapping]) -> R {
    if maps.len() > MAX_ID_MAP_LINES {
        return Err(bad(
            at,
            format!(
                "{} mappings; the kernel takes at most {MAX_ID_MAP_LINES}",
                maps.len()
            ),
        ));
    }
    for (i, m) in maps.iter().enumerate() {
        let f = |k: &str| format!("{at}[{i}].{k}");
        // A range's first ids get the limit of process.user's ids (runc's); a range may still
        // reach up to 4294967294, as the kernel allows.
        check_id(f("containerID"), m.container_id())?;
        check_id(f("hostID"), m.host_id())?;
        if m.size() == 0 {
            return Err(bad(f("size"), "must be at least 1"));
        }
        for (k, start) in [("containerID", m.container_id()), ("hostID", m.host_id())] {
            // The range [start, start+size) must end before u32::MAX, the invalid id (-1).
            if u64::from(start) + u64::from(m.size()) > u64::from(u32::MAX) {
                return Err(bad(
                    f("size"),
                    format!(
                        "{k} {start} + size {} goes beyond the last id, 4294967294",
                        m.size()
                    ),
                ));
            }
        }
        for (j, o) in maps[..i].iter().enumerate() {
            let over = |a: u32, b: u32| {
                u64::from(a) < u64::from(b) + u64::from(o.size())
                    && u64::from(b) < u64::from(a) + u64::from(m.size())
            };
            for (k, a, b) in [
                ("containerID", m.container_id(), o.container_id()),
                ("hostID", m.host_id(), o.host_id()),
            ] {
                if over(a, b) {
                    return Err(bad(
                        format!("{at}[{i}]"),
                        format!("its {k} range overlaps that of {at}[{j}]"),
                    ));
                }
            }
        }
    }
    let len = id_map_text(maps).len();
    if len >= 4096 {
        return Err(bad(
            at,
            format!("{len} bytes as a map; the kernel takes less than 4096 in one write"),
        ));
    }
    Ok(())
}

/// The text written to /proc/PID/uid_map or gid_map: one `containerID hostID size` line each.
pub fn id_map_text(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

fn check_hostname(spec: &Spec, ns: &NamespaceSet) -> R {
    let uts = ns.has(LinuxNamespaceType::Uts);
    for (field, v) in [
        ("hostname", spec.hostname()),
        ("domainname", spec.domainname()),
    ] {
        if v.as_ref().is_some_and(|h| !h.is_empty()) && !uts {
            return Err(bad(
                field,
                "cannot be set without a UTS namespace in linux.namespaces",
            ));
        }
    }
    Ok(())
}

fn check_mounts(spec: &Spec) -> R {
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        no_nul(
            || format!("mounts[{i}].destination"),
            m.destination().as_os_str().as_bytes(),
        )?;
        if let Some(src) = m.source() {
            no_nul(|| format!("mounts[{i}].source"), src.as_os_str().as_bytes())?;
        }
        no_nul_in(&format!("mounts[{i}].options"), m.options())?;
        if !m.destination().is_absolute() {
            return Err(bad(
                format!("mounts[{i}].destination"),
                format!("must be an absolute path, got {:?}", m.destination()),
            ));
        }
        let ty = m.typ().as_deref().unwrap_or("");
        let bind = m
            .options()
            .iter()
            .flatten()
            .any(|o| o == "bind" || o == "rbind");
        if (bind || ty == "bind") && m.source().is_none() {
            return Err(bad(
                format!("mounts[{i}].source"),
                "a bind mount needs a source",
            ));
        }
        if bind || ty == "bind" {
            let src = m.source().as_ref().expect("checked above");
            if src.is_absolute() {
                if let Err(e) = std::fs::symlink_metadata(src) {
                    return Err(bad(
                        format!("mounts[{i}].source"),
                        format!("{}: {e}", src.display()),
                    ));
                }
            }
        }
    }
    // Id-mapped mounts: kinds, mapping sizes and ranges (linux::mounts::idmap).
    crate::linux::mounts::idmap::check(spec).map_err(|(field, msg)| bad(field, msg))
}

/// sysctls are namespaced; one that is not (or whose namespace the container shares with the
/// host) would change the host, so it is refused as runc refuses it. So is `kernel.hostname`,
/// which `hostname` sets (runc 1.1.5 refuses it whether or not `hostname` is set; it accepts
/// `kernel.domainname`, which Docker uses for its domain name).
fn check_sysctl(spec: &Spec, ns: &NamespaceSet) -> R {
    let linux = spec.linux().as_ref().expect("checked by caller");
    for key in linux.sysctl().iter().flat_map(|m| m.keys()) {
        let field = sysctl_field(key);
        let dotted = key.replace('/', ".");
        if dotted == "kernel.hostname" {
            // runc's words.
            return Err(bad(
                field,
                format!(
                    "sysctl {key:?} is not allowed as it conflicts with the OCI \"hostname\" \
                     field (set hostname instead)"
                ),
            ));
        }
        let ipc = matches!(
            dotted.as_str(),
            "kernel.msgmax"
                | "kernel.msgmnb"
                | "kernel.msgmni"
                | "kernel.sem"
                | "kernel.shmall"
                | "kernel.shmmax"
                | "kernel.shmmni"
                | "kernel.shm_rmid_forced"
        ) || dotted.starts_with("fs.mqueue.");
        let need = if ipc {
            LinuxNamespaceType::Ipc
        } else if dotted.starts_with("net.") {
            LinuxNamespaceType::Network
        } else if dotted == "kernel.domainname" {
            LinuxNamespaceType::Uts
        } else {
            return Err(bad(
                field,
                "not a namespaced sysctl; refusing to change the host",
            ));
        };
        if !ns.has(need) {
            return Err(bad(
                field,
                format!(
                    "needs a {} namespace in linux.namespaces",
                    spec_name(&need).trim_matches('"')
                ),
            ));
        }
        if dotted.contains("..") || dotted.starts_with('.') {
            return Err(bad(field, "invalid sysctl name"));
        }
    }
    Ok(())
}

/// The JSON path of `linux.sysctl`'s entry `key`: bracketed, since the key has dots of its own.
pub fn sysctl_field(key: &str) -> String {
    format!("linux.sysctl[{key:?}]")
}

fn check_devices(spec: &Spec) -> R {
    use oci_spec::runtime::LinuxDeviceType as T;
    let linux = spec.linux().as_ref().expect("checked by caller");
    for (i, d) in linux.devices().iter().flatten().enumerate() {
        if !d.path().is_absolute() {
            return Err(bad(
                format!("linux.devices[{i}].path"),
                format!("must be an absolute path, got {:?}", d.path()),
            ));
        }
        if !d.path().starts_with("/dev") {
            crate::logging::warn(format!(
                "linux.devices[{i}].path: {} is outside /dev",
                d.path().display()
            ));
        }
        if matches!(d.typ(), T::C | T::B | T::U) && (d.major() < 0 || d.minor() < 0) {
            return Err(bad(
                format!("linux.devices[{i}]"),
                "major and minor required",
            ));
        }
    }
    Ok(())
}

fn check_hooks(spec: &Spec) -> R {
    let Some(h) = spec.hooks() else {
        return Ok(());
    };
    #[allow(deprecated)]
    let lists = [
        ("prestart", h.prestart()),
        ("createRuntime", h.create_runtime()),
        ("createContainer", h.create_container()),
        ("startContainer", h.start_container()),
        ("poststart", h.poststart()),
        ("poststop", h.poststop()),
    ];
    for (name, list) in lists {
        for (i, hook) in list.iter().flatten().enumerate() {
            let at = format!("hooks.{name}[{i}]");
            no_nul(|| format!("{at}.path"), hook.path().as_os_str().as_bytes())?;
            no_nul_in(&format!("{at}.args"), hook.args())?;
            no_nul_in(&format!("{at}.env"), hook.env())?;
            if !hook.path().is_absolute() {
                return Err(bad(
                    format!("hooks.{name}[{i}].path"),
                    format!("must be an absolute path, got {:?}", hook.path()),
                ));
            }
            if hook.timeout().is_some_and(|t| t <= 0) {
                return Err(bad(
                    format!("hooks.{name}[{i}].timeout"),
                    "must be a positive number of seconds",
                ));
            }
        }
    }
    Ok(())
}
