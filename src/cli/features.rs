//! `berth features`: the OCI runtime features document (runtime-spec features.md) — what this
//! Berth, on this kernel, really supports. Anything Berth does not implement, or the kernel does
//! not offer, is reported as unsupported or left out; nothing is claimed on faith.

use std::collections::HashMap;
use std::io::Write;

use oci_spec::runtime::{
    Apparmor, Cgroup, Features, IDMap, IntelRdt, LinuxFeature, LinuxNamespaceType, MemoryPolicy,
    MountExtensions, NetDevices, Selinux,
};
use serde::Serialize;
use serde_json::Value;

use super::Global;
use crate::container::lifecycle::OCI_VERSION;
use crate::error::Error;

#[derive(clap::Args, Debug)]
pub struct Args {}

/// The document's top level in the spec's (and runc's) order; below it, keys are sorted.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Ordered {
    oci_version_min: Value,
    oci_version_max: Value,
    #[serde(skip_serializing_if = "Value::is_null")]
    hooks: Value,
    #[serde(skip_serializing_if = "Value::is_null")]
    mount_options: Value,
    #[serde(skip_serializing_if = "Value::is_null")]
    linux: Value,
    #[serde(skip_serializing_if = "Value::is_null")]
    annotations: Value,
    #[serde(skip_serializing_if = "Value::is_null")]
    potentially_unsafe_config_annotations: Value,
}

fn document(criu: Option<&str>) -> Ordered {
    let v = prune_nulls(serde_json::to_value(features(criu)).expect("features serialise"));
    let Value::Object(mut m) = v else {
        unreachable!("features serialise to an object")
    };
    let mut take = |k: &str| m.remove(k).unwrap_or(Value::Null);
    let doc = Ordered {
        oci_version_min: take("ociVersionMin"),
        oci_version_max: take("ociVersionMax"),
        hooks: take("hooks"),
        mount_options: take("mountOptions"),
        linux: take("linux"),
        annotations: take("annotations"),
        potentially_unsafe_config_annotations: take("potentiallyUnsafeConfigAnnotations"),
    };
    debug_assert!(m.is_empty(), "features fields not printed: {m:?}");
    doc
}

pub fn run(g: &Global, _a: Args) -> Result<i32, Error> {
    let doc = document(g.criu.as_deref());
    // Four-space indentation, as runc prints it.
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    doc.serialize(&mut ser).expect("JSON serialises");
    out.push(b'\n');
    std::io::stdout()
        .write_all(&out)
        .map_err(|e| Error::sys("write to stdout", e))?;
    Ok(0)
}

/// The features document (`criu`: the --criu flag).
pub fn features(criu: Option<&str>) -> Features {
    let mut f = Features::default();
    f.set_oci_version_min("1.0.0".to_string());
    f.set_oci_version_max(OCI_VERSION.to_string());
    f.set_hooks(Some(HOOKS.iter().map(|h| h.to_string()).collect()));
    // Every option src/linux/mounts/options.rs takes itself; options a filesystem interprets
    // (`mode=`, `size=`, …) pass through as data and are not listed, as runc lists only its own.
    f.set_mount_options(Some(
        crate::linux::mounts::options::known()
            .into_iter()
            .map(String::from)
            .collect(),
    ));
    let mut linux = LinuxFeature::default();
    linux.set_namespaces(Some(namespaces()));
    linux.set_capabilities(Some(capabilities()));
    linux.set_cgroup(Some(cgroup()));
    // seccomp: what libseccomp and this kernel accept (probed, not assumed).
    let seccomp = berth_seccomp::features();
    linux.set_seccomp(Some(seccomp.to_oci()));
    // AppArmor and SELinux labels are applied (by create and exec) where the host enables the
    // LSM; where it does not, Berth cannot apply them.
    let lsm = crate::linux::lsm::Enabled::detect();
    let mut aa = Apparmor::default();
    aa.set_enabled(Some(lsm.apparmor));
    linux.set_apparmor(Some(aa));
    let mut se = Selinux::default();
    se.set_enabled(Some(lsm.selinux));
    linux.set_selinux(Some(se));
    // linux.intelRdt: applied where resctrl is mounted (runc reports what the host has).
    let mut rdt = IntelRdt::default();
    rdt.set_enabled(Some(crate::resctrl::mounted(std::path::Path::new(
        crate::resctrl::ROOT,
    ))));
    linux.set_intel_rdt(Some(rdt));
    // Id-mapped bind mounts (mounts[].uidMappings/gidMappings, idmap, ridmap) need the
    // kernel's mount_setattr (5.12); whether a given filesystem allows them is its own matter.
    let mut idmap = IDMap::default();
    idmap.set_enabled(Some(crate::linux::mounts::idmap::supported()));
    let mut ext = MountExtensions::default();
    ext.set_idmap(Some(idmap));
    linux.set_mount_extensions(Some(ext));
    // linux.memoryPolicy: every mode and flag is passed on to set_mempolicy.
    let (modes, flags) = crate::linux::mempolicy::features();
    let mut mp = MemoryPolicy::default();
    mp.set_modes(Some(modes));
    mp.set_flags(Some(flags));
    linux.set_memory_policy(Some(mp));
    // linux.netDevices: moved in at create (src/linux/netdev/).
    let mut nd = NetDevices::default();
    nd.set_enabled(Some(true));
    linux.set_net_devices(Some(nd));
    f.set_linux(Some(linux));
    let mut annotations = HashMap::from([
        (
            "berth.version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
        ("berth.commit".to_string(), env!("BERTH_COMMIT").to_string()),
        // runc's key: the libseccomp that loads the filters (libseccomp's own report).
        (
            "io.github.seccomp.libseccomp.version".to_string(),
            seccomp.libseccomp_version.clone(),
        ),
    ]);
    // runc's key for checkpoint/restore (runc always says "true"): here whether the CRIU that
    // checkpoint and restore would run passes its CHECK request now, and its version then.
    let criu = crate::criu::usable(&crate::criu::binary(criu));
    annotations.insert(
        "org.opencontainers.runc.checkpoint.enabled".to_string(),
        criu.is_some().to_string(),
    );
    if let Some(v) = criu {
        annotations.insert("berth.criu.version".to_string(), v);
    }
    f.set_annotations(Some(annotations));
    f
}

/// Every hook the runtime spec defines; Berth runs all of them (lifecycle.rs and init.rs).
const HOOKS: &[&str] = &[
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// The namespace types this kernel has (each one Berth can create and join).
fn namespaces() -> Vec<LinuxNamespaceType> {
    use LinuxNamespaceType as T;
    [
        (T::Cgroup, "cgroup"),
        (T::Ipc, "ipc"),
        (T::Mount, "mnt"),
        (T::Network, "net"),
        (T::Pid, "pid"),
        (T::User, "user"),
        (T::Uts, "uts"),
        (T::Time, "time"),
    ]
    .into_iter()
    .filter(|(_, file)| std::path::Path::new("/proc/self/ns").join(file).exists())
    .map(|(t, _)| t)
    .collect()
}

/// The capabilities Berth can give a container: those this kernel knows that are in Berth's
/// own bounding set (no process can grant more; in a restricted host or a nested runtime that
/// is fewer than the kernel knows), and that the OCI names cover.
fn capabilities() -> Vec<String> {
    let bounding = caps::read(None, caps::CapSet::Bounding).unwrap_or_default();
    let mut known: Vec<caps::Capability> = caps::runtime::thread_all_supported()
        .into_iter()
        .filter(|c| bounding.contains(c))
        .filter(|c| {
            serde_json::from_value::<oci_spec::runtime::Capability>(serde_json::Value::String(
                c.to_string(),
            ))
            .is_ok()
        })
        .collect();
    known.sort_by_key(|c| c.index());
    known.into_iter().map(|c| c.to_string()).collect()
}

/// The cgroupfs driver handles v1 and v2 (and hybrid hosts); the systemd driver
/// (`--systemd-cgroup`) talks to the system's systemd, or the user's in rootless mode; rdma
/// limits apply where the kernel has the rdma controller.
fn cgroup() -> Cgroup {
    let v1 = std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|mi| {
        mi.lines().any(|l| {
            l.split_once(" - ")
                .is_some_and(|(_, post)| post.split(' ').next() == Some("cgroup"))
        })
    });
    let mut c = Cgroup::default();
    // The cgroup v2 driver is there; the kernel must offer cgroup2.
    let v2 = std::fs::read_to_string("/proc/filesystems")
        .is_ok_and(|f| f.lines().any(|l| l.trim_end().ends_with("\tcgroup2")));
    c.set_v1(Some(v1));
    c.set_v2(Some(v2));
    c.set_systemd(Some(true));
    c.set_systemd_user(Some(true));
    let rdma = std::fs::read_to_string("/proc/cgroups").is_ok_and(|t| {
        t.lines()
            .any(|l| l.split_whitespace().next() == Some("rdma") && l.ends_with('1'))
    });
    c.set_rdma(Some(rdma));
    c
}

/// Drops `null` members, which the oci-spec types write for absent optional fields (runc's
/// document omits them).
fn prune_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, prune_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(prune_nulls).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_has_the_spec_fields_and_no_nulls() {
        let v = serde_json::to_value(document(None)).unwrap();
        let s = v.to_string();
        assert!(!s.contains("null"), "{s}");
        assert_eq!(v["ociVersionMax"], OCI_VERSION);
        assert_eq!(v["linux"]["cgroup"]["systemd"], true);
        // mount_setattr is in every kernel Berth runs its tests on (5.12 and later).
        assert_eq!(v["linux"]["mountExtensions"]["idmap"]["enabled"], true);
        assert_eq!(v["linux"]["seccomp"]["enabled"], true);
        let actions = v["linux"]["seccomp"]["actions"].as_array().unwrap();
        assert!(
            actions.iter().any(|a| a == "SCMP_ACT_NOTIFY"),
            "{actions:?}"
        );
        let caps = v["linux"]["capabilities"].as_array().unwrap();
        assert_eq!(caps[0], "CAP_CHOWN", "ordered by number");
        assert!(caps.iter().any(|c| c == "CAP_SYS_ADMIN"));
        let ns = v["linux"]["namespaces"].as_array().unwrap();
        for n in ["mount", "pid", "network", "user"] {
            assert!(ns.iter().any(|x| x == n), "{n} in {ns:?}");
        }
    }
}
