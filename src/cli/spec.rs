//! `berth spec [--bundle DIR] [--rootless]`: writes a default config.json that runs `sh` in a
//! typical container, as `runc spec` (1.1) does: the same fields and values, indented with tabs.
//!
//! Differences from `runc spec` 1.1.5 that are kept on purpose (tests/cli_runc_compat.rs compares
//! the two field by field and allows exactly these):
//! * `ociVersion`: the runtime-spec version Berth implements (runc 1.1 writes "1.0.2-dev").
//! * `hostname`: "berth" instead of "runc".
//! * `process.capabilities.ambient`: omitted. runc 1.1 lists the three capabilities there
//!   without listing them as inheritable, so the kernel can never raise them (runc ignored the
//!   error; runc 1.2 dropped the field for that reason). Berth would have to refuse or ignore
//!   them too, so it does not write them.
//! * `--rootless`: no `/sys/fs/cgroup` mount. runc keeps it and falls back to other mounts
//!   when the kernel refuses a cgroup mount in the user namespace; Berth's rootless config only
//!   bind-mounts `/sys` (which already holds the host's cgroup mounts, read-only).
//! * `linux.namespaces`: a cgroup namespace on every host. runc 1.1 adds it only when
//!   /sys/fs/cgroup is cgroup2 (unified); Berth always does, so the container sees its own
//!   cgroup as `/` on v1 and hybrid hosts too (the tests' bundles, made with `berth spec`,
//!   rely on that).
//! * Key order: serde_json writes object keys sorted, runc in Go struct order. Same JSON.

use std::path::PathBuf;

use serde_json::json;

use super::Global;
use crate::error::Error;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Bundle directory to write config.json into
    #[arg(short = 'b', long, default_value = ".")]
    pub bundle: PathBuf,
    /// A config for a rootless container (user namespace mapping the current user)
    #[arg(long = "rootless", id = "spec_rootless")]
    pub rootless: bool,
}

pub fn default_spec(rootless: bool) -> serde_json::Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    let mut spec = json!({
        "ociVersion": crate::container::lifecycle::OCI_VERSION,
        "process": {
            "terminal": true,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "berth",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    });
    if rootless {
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        let linux = spec["linux"].as_object_mut().expect("object");
        // runc drops the device rules (no device cgroup without privileges): no `resources`.
        linux.remove("resources");
        let ns = linux["namespaces"].as_array_mut().expect("array");
        ns.retain(|n| n["type"] != "network");
        ns.push(json!({"type": "user"}));
        let map = |id| json!([{"containerID": 0, "hostID": id, "size": 1}]);
        linux.insert("uidMappings".into(), map(uid));
        linux.insert("gidMappings".into(), map(gid));
        let mounts = spec["mounts"].as_array_mut().expect("array");
        mounts.retain(|m| m["destination"] != "/sys" && m["destination"] != "/sys/fs/cgroup");
        mounts.push(
            json!({"destination": "/sys", "type": "none", "source": "/sys",
            "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}),
        );
        for m in mounts.iter_mut() {
            if m["destination"] == "/dev/pts" {
                m["options"] = json!([
                    "nosuid",
                    "noexec",
                    "newinstance",
                    "ptmxmode=0666",
                    "mode=0620"
                ]);
            }
        }
    }
    spec
}

pub fn run(_g: &Global, a: Args) -> Result<i32, Error> {
    let path = a.bundle.join("config.json");
    if path.exists() {
        return Err(Error::Usage(format!(
            "{} exists; remove it first",
            path.display()
        )));
    }
    // Tab-indented, as runc writes it.
    let mut body = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut body, fmt);
    serde::Serialize::serialize(&default_spec(a.rootless), &mut ser).expect("json");
    body.push(b'\n');
    std::fs::write(&path, body).map_err(|e| Error::sys(format!("write {}", path.display()), e))?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn default_specs_parse_as_oci() {
        for rootless in [false, true] {
            let v = super::default_spec(rootless);
            let s = crate::config::parse(v.to_string().as_bytes()).unwrap();
            assert_eq!(
                s.process().as_ref().unwrap().args().as_ref().unwrap()[0],
                "sh"
            );
        }
    }
}
