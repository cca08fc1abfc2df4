//! `berth features`: the document parses, and what it lists is real — every capability can be
//! given with `exec --cap`, every namespace can be created, every mount option and hook works.

mod common;
use common::*;

use std::process::Stdio;
use std::str::FromStr;

use serde_json::{json, Value};

fn features() -> Value {
    let rt = Runtime::new();
    let out = rt.ok(&["features"]);
    serde_json::from_str(&out).expect("features prints JSON")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("a list")
        .iter()
        .map(|s| s.as_str().expect("a string").to_string())
        .collect()
}

/// create + start (the container's stdio on files: a pipe would be held open by it).
fn create_start(rt: &Runtime, b: &Bundle, id: &str) {
    rt.create(id, b);
    rt.ok(&["start", id]);
}

#[test]
fn document_has_the_spec_fields() {
    let f = features();
    assert_eq!(f["ociVersionMin"], "1.0.0");
    assert!(f["ociVersionMax"].as_str().unwrap().starts_with("1."));
    assert!(
        !f.to_string().contains("null"),
        "absent fields are left out"
    );
    let linux = &f["linux"];
    for key in [
        "namespaces",
        "capabilities",
        "cgroup",
        "apparmor",
        "selinux",
    ] {
        assert!(linux.get(key).is_some(), "linux.{key}");
    }
    // The systemd driver (--systemd-cgroup), for the system's and the user's systemd.
    assert_eq!(linux["cgroup"]["systemd"], true);
    assert_eq!(linux["cgroup"]["systemdUser"], true);
    // Each LSM is reported as this host has it (the machines this suite runs on have neither).
    let apparmor = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim_start().starts_with('Y'));
    let selinux = std::path::Path::new("/sys/fs/selinux/enforce").exists();
    assert_eq!(linux["apparmor"]["enabled"], apparmor);
    assert_eq!(linux["selinux"]["enabled"], selinux);
    // intelRdt: as the host has resctrl mounted (tests/intel_rdt.rs checks it against mountinfo).
    assert_eq!(
        linux["mountExtensions"]["idmap"]["enabled"], true,
        "mount_setattr (5.12+)"
    );
    assert_eq!(linux["seccomp"]["enabled"], true);
    // v1 is claimed exactly when the host has v1 hierarchies (which the cgroup driver uses).
    let host_v1 = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| {
            l.split_once(" - ")
                .is_some_and(|(_, p)| p.starts_with("cgroup "))
        });
    assert_eq!(linux["cgroup"]["v1"], host_v1);
    assert!(f["annotations"]["berth.version"].is_string());
}

#[test]
fn every_listed_capability_can_be_given_with_exec_cap() {
    let f = features();
    let caps = strings(&f["linux"]["capabilities"]);
    // Exactly the ones this kernel knows and Berth may hand out (its bounding set, which this
    // test process shares; this VM lacks CAP_SYS_RESOURCE, for instance).
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let bnd = status.lines().find(|l| l.starts_with("CapBnd:")).unwrap();
    let bnd = u64::from_str_radix(bnd.split('\t').nth(1).unwrap(), 16).unwrap();
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let want = (0..=last).filter(|b| bnd & (1 << b) != 0).count();
    assert_eq!(caps.len(), want, "{caps:?}");
    let rt = Runtime::new();
    let b = Bundle::sh("sleep 1000");
    let id = unique_id("featcaps");
    create_start(&rt, &b, &id);
    let mut args = vec!["exec".to_string()];
    for c in &caps {
        args.push("--cap".into());
        args.push(c.clone());
    }
    args.push(id.clone());
    args.extend(["sh", "-c", "grep -E '^Cap(Eff|Bnd)' /proc/self/status"].map(String::from));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = rt.ok(&argv);
    for line in out.lines() {
        let mask = u64::from_str_radix(line.split('\t').nth(1).unwrap(), 16).unwrap();
        for c in &caps {
            let bit = caps::Capability::from_str(c).unwrap().index();
            assert_ne!(mask & (1 << bit), 0, "{c} missing from {line}");
        }
    }
}

#[test]
fn every_listed_namespace_can_be_created() {
    let f = features();
    let listed = strings(&f["linux"]["namespaces"]);
    for n in ["mount", "pid", "network", "ipc", "uts", "cgroup", "user"] {
        assert!(listed.contains(&n.to_string()), "{n} on this kernel");
    }
    let rt = Runtime::new();
    let mut b = Bundle::sh("sleep 1000");
    b.edit(|c| {
        c["linux"]["namespaces"] =
            Value::Array(listed.iter().map(|n| json!({"type": n})).collect());
        if listed.contains(&"user".to_string()) {
            let map = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
            c["linux"]["uidMappings"] = map.clone();
            c["linux"]["gidMappings"] = map;
        }
    });
    let id = unique_id("featns");
    create_start(&rt, &b, &id);
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    for n in &listed {
        let file = match n.as_str() {
            "mount" => "mnt",
            "network" => "net",
            other => other,
        };
        let ours = std::fs::read_link(format!("/proc/self/ns/{file}")).unwrap();
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{file}")).unwrap();
        assert_ne!(ours, theirs, "{n}: the container got its own");
    }
}

#[test]
fn every_listed_mount_option_mounts() {
    let f = features();
    let opts = strings(&f["mountOptions"]);
    let src = tempfile::tempdir().unwrap();
    let rt = Runtime::new();
    let mut b = Bundle::sh("sleep 1000");
    b.edit(|c| {
        let mounts = c["mounts"].as_array_mut().unwrap();
        for o in &opts {
            // `remount` changes a mount already there: Berth takes it on a bind mount (a
            // no-op after the bind; runc 1.1.5 fails it there too), and a fresh tmpfs with it
            // fails in both (EINVAL).
            let bind = o == "bind" || o == "rbind" || o == "remount";
            mounts.push(json!({
                "destination": format!("/opt/{o}"),
                "type": if bind { "bind" } else { "tmpfs" },
                "source": if bind { src.path().to_str().unwrap() } else { "tmpfs" },
                "options": [o],
            }));
        }
    });
    let id = unique_id("featmnt");
    create_start(&rt, &b, &id);
    let mountinfo = rt.ok(&["exec", &id, "cat", "/proc/self/mountinfo"]);
    for o in &opts {
        let dest = format!("/opt/{o}");
        let line = mountinfo
            .lines()
            .find(|l| l.split(' ').nth(4) == Some(dest.as_str()))
            .unwrap_or_else(|| panic!("{dest} not mounted:\n{mountinfo}"));
        let per_mount: Vec<&str> = line.split(' ').nth(5).unwrap().split(',').collect();
        if [
            "ro",
            "nosuid",
            "nodev",
            "noexec",
            "noatime",
            "relatime",
            "nosymfollow",
        ]
        .contains(&o.as_str())
        {
            assert!(per_mount.contains(&o.as_str()), "{o}: {line}");
        }
        // The recursive forms set the same per-mount flag (mount_setattr).
        if let Some(flag) = o
            .strip_prefix('r')
            .filter(|f| ["ro", "nosuid", "nodev", "noexec", "noatime", "nosymfollow"].contains(f))
        {
            assert!(per_mount.contains(&flag), "{o}: {line}");
        }
        // Propagation shows in the optional fields (before " - ").
        let optional = line.split(" - ").next().unwrap();
        if o == "shared" || o == "rshared" {
            assert!(optional.contains(" shared:"), "{o}: {line}");
        }
        if o == "unbindable" || o == "runbindable" {
            assert!(optional.contains(" unbindable"), "{o}: {line}");
        }
        if o == "rw" {
            assert!(per_mount.contains(&"rw"), "{line}");
        }
    }
}

#[test]
fn every_listed_hook_runs() {
    let f = features();
    let hooks = strings(&f["hooks"]);
    let rt = Runtime::new();
    let mut b = Bundle::sh("true");
    let host_log = b.rootfs().join("tmp/hooks.log");
    b.edit(|c| {
        // startContainer writes inside the container's (otherwise read-only) root.
        c["root"]["readonly"] = json!(false);
        let mut h = serde_json::Map::new();
        for name in &hooks {
            // startContainer runs inside the container, after pivot_root; the others see the
            // host's paths.
            let log = if name == "startContainer" {
                "/tmp/hooks.log".to_string()
            } else {
                host_log.display().to_string()
            };
            h.insert(
                name.clone(),
                json!([{"path": "/bin/sh", "args": ["sh", "-c", format!("echo {name} >> {log}")]}]),
            );
        }
        c["hooks"] = Value::Object(h);
    });
    let id = unique_id("feathooks");
    let pidfile = b.path().join("init.pid");
    let log = b.path().join("create.stderr");
    let st = rt
        .cmd()
        .args(["create", "--bundle", b.path().to_str().unwrap()])
        .args(["--pid-file", pidfile.to_str().unwrap(), &id])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .status()
        .unwrap();
    assert!(st.success(), "{}", std::fs::read_to_string(&log).unwrap());
    rt.ok(&["start", &id]);
    // Wait (bounded, on a pidfd) for the container's `true` to exit, then delete it.
    let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().parse().unwrap();
    // SAFETY: pidfd_open with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    if fd >= 0 {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; then the fd is closed.
        unsafe {
            libc::poll(&mut p, 1, 5000);
            libc::close(fd);
        }
    }
    rt.ok(&["delete", &id]);
    let ran = std::fs::read_to_string(&host_log).unwrap_or_default();
    for name in &hooks {
        assert!(
            ran.lines().any(|l| l == name),
            "{name} did not run: {ran:?}"
        );
    }
}

#[test]
fn every_listed_seccomp_action_loads_and_every_supported_flag_is_accepted() {
    let f = features();
    let sc = &f["linux"]["seccomp"];
    let actions = strings(&sc["actions"]);
    assert!(actions.iter().any(|a| a == "SCMP_ACT_ERRNO"), "{actions:?}");
    let rt = Runtime::new();
    for action in &actions {
        // NOTIFY needs an agent (tests/seccomp.rs has one); the others load on their own.
        if action == "SCMP_ACT_NOTIFY" {
            continue;
        }
        let mut rule = json!({"names": ["acct"], "action": action});
        if action == "SCMP_ACT_ERRNO" || action == "SCMP_ACT_TRACE" {
            rule["errnoRet"] = json!(1);
        }
        let mut b = Bundle::sh("true");
        b.edit(|c| {
            c["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule]})
        });
        let o = rt.run(&unique_id("feat-sc"), &b);
        assert!(o.status.success(), "{action}: {}", stderr(&o));
    }
    for flag in strings(&sc["supportedFlags"]) {
        if flag == "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV" {
            continue; // only meaningful (and accepted) together with a NOTIFY listener
        }
        let mut b = Bundle::sh("true");
        b.edit(|c| {
            c["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": [flag],
                "syscalls": [{"names": ["acct"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]})
        });
        let o = rt.run(&unique_id("feat-flag"), &b);
        assert!(o.status.success(), "{flag}: {}", stderr(&o));
    }
}

/// Every field of runc's `features` document (runc 1.1, /usr/sbin/runc) is in Berth's with the
/// same JSON type, and each of runc's lists is covered by Berth's: engines written against
/// runc's document find what they look for. Where runc claims what this host cannot give
/// (a capability outside the caller's bounding set), Berth reports the host.
#[test]
fn document_has_runcs_shape_and_covers_its_lists() {
    const RUNC: &str = "/usr/sbin/runc";
    if !std::path::Path::new(RUNC).exists() {
        println!("SKIP: {RUNC} not installed (scripts/setup-deps.sh installs it)");
        return;
    }
    let o = std::process::Command::new(RUNC)
        .arg("features")
        .output()
        .unwrap();
    assert!(o.status.success(), "runc features: {}", stderr(&o));
    let runc: Value = serde_json::from_slice(&o.stdout).expect("runc features prints JSON");
    let ours = features();
    // runc names its own build; Berth's are berth.version and berth.commit.
    let runc_only = [
        "annotations.org.opencontainers.runc.version",
        "annotations.org.opencontainers.runc.commit",
    ];
    let mut compared = 0;
    fn walk(at: &str, theirs: &Value, ours: &Value, skip: &[&str], n: &mut usize) {
        *n += 1;
        let kind = |v: &Value| match v {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        assert_eq!(
            kind(ours),
            kind(theirs),
            "{at}: runc has {theirs}, Berth {ours}"
        );
        if let Value::Object(m) = theirs {
            for (k, v) in m {
                let path = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                if skip.contains(&path.as_str()) {
                    continue;
                }
                let mine = ours.get(k).unwrap_or_else(|| panic!("{path} is missing"));
                walk(&path, v, mine, skip, n);
            }
        }
    }
    walk("", &runc, &ours, &runc_only, &mut compared);
    assert!(compared > 20, "only {compared} fields compared");

    let set =
        |v: &Value| -> std::collections::BTreeSet<String> { strings(v).into_iter().collect() };
    let covered = |what: &str, theirs: &Value, ours: &Value| {
        let missing: Vec<String> = set(theirs).difference(&set(ours)).cloned().collect();
        assert!(
            missing.is_empty(),
            "{what}: runc lists {missing:?}, Berth does not"
        );
    };
    assert_eq!(set(&ours["hooks"]), set(&runc["hooks"]), "hooks");
    covered("mountOptions", &runc["mountOptions"], &ours["mountOptions"]);
    covered(
        "linux.namespaces",
        &runc["linux"]["namespaces"],
        &ours["linux"]["namespaces"],
    );
    for k in ["actions", "operators", "archs"] {
        covered(
            &format!("linux.seccomp.{k}"),
            &runc["linux"]["seccomp"][k],
            &ours["linux"]["seccomp"][k],
        );
    }
    // Capabilities: runc lists every one it knows; Berth those it can grant from here.
    let bounding = caps::read(None, caps::CapSet::Bounding).unwrap();
    let grantable: Vec<Value> = strings(&runc["linux"]["capabilities"])
        .into_iter()
        .filter(|c| caps::Capability::from_str(c).is_ok_and(|c| bounding.contains(&c)))
        .map(Value::String)
        .collect();
    covered(
        "linux.capabilities (within Berth's bounding set)",
        &Value::Array(grantable),
        &ours["linux"]["capabilities"],
    );
    assert_eq!(
        ours["annotations"]["io.github.seccomp.libseccomp.version"],
        runc["annotations"]["io.github.seccomp.libseccomp.version"],
        "the same libseccomp loads both runtimes' filters"
    );
}
