//! Nothing left behind: whatever stage a create fails at, however a container ends, and even
//! when the runtime itself is killed mid-create, the host ends up with no state directory, no
//! cgroup, no mount and no process of the container.

mod common;
use common::*;

use std::process::Stdio;

use serde_json::json;

#[test]
fn the_leftover_check_sees_a_live_container() {
    // Guards the harness: `traces` must find what a container holds, or every "nothing left"
    // assertion of the suites would pass vacuously.
    let rt = Runtime::new();
    let id = unique_id("selfcheck");
    // Not a lone command, or sh would exec sleep and the id would leave the command line.
    let b = sh(&format!("sleep 30; true # {id}"));
    rt.create(&id, &b);
    rt.ok(&["start", &id]);
    let t = traces(&rt, &id, &b);
    assert!(t.iter().any(|x| x.starts_with("state directory")), "{t:?}");
    assert!(t.iter().any(|x| x.starts_with("cgroup ")), "{t:?}");
    assert!(t.iter().any(|x| x.starts_with("process ")), "{t:?}");
    rt.ok(&["delete", "--force", &id]);
    assert_nothing_left(&rt, &id, &b);
}

/// A create that fails inside the container's init, after namespaces, cgroup and state exist.
fn late_failure(name: &str, edit: impl FnOnce(&mut Bundle), needle: &str) {
    let rt = Runtime::new();
    let mut b = sh("echo ran > /out/ran");
    edit(&mut b);
    let id = unique_id(name);
    let d = rt.create_detached(&id, &b, &[]);
    let err = d.stderr();
    assert!(!d.status.success(), "{name}: create succeeded");
    assert_eq!(lines(&err).len(), 1, "{name}: {err}");
    assert!(
        err.contains(needle),
        "{name}: error lacks {needle:?}: {err}"
    );
    assert!(!b.out().join("ran").exists());
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn failed_mount_leaves_nothing() {
    late_failure(
        "badmount",
        |b| {
            b.edit(|c| {
                c["mounts"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"destination": "/mnt", "type": "nosuchfs", "source": "none"}))
            });
        },
        "mounts[",
    );
}

#[test]
fn joining_a_file_that_is_not_a_namespace_leaves_nothing() {
    late_failure(
        "notans",
        |b| {
            b.namespace("network", Some("/etc/hostname"));
        },
        "/etc/hostname",
    );
}

#[test]
fn failed_sysctl_leaves_nothing() {
    late_failure(
        "badsysctl",
        |b| {
            b.edit(|c| c["linux"]["sysctl"] = json!({"net.ipv4.no_such_knob": "1"}));
        },
        "linux.sysctl[\"net.ipv4.no_such_knob\"]",
    );
}

#[test]
fn too_long_hostname_leaves_nothing() {
    late_failure(
        "longhost",
        |b| {
            b.edit(|c| c["hostname"] = json!("h".repeat(100)));
        },
        "hostname",
    );
}

#[test]
fn failed_run_leaves_nothing() {
    let rt = Runtime::new();
    let mut b = sh("true");
    b.edit(|c| {
        c["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/mnt", "type": "nosuchfs", "source": "none"}))
    });
    let id = unique_id("badrun");
    let o = rt.run_timeout(&id, &b, &[]);
    assert!(!o.status.success());
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn a_container_that_exits_is_fully_removed_by_delete() {
    let rt = Runtime::new();
    let id = unique_id("exits");
    let b = sh(&format!("exit 0 # {id}"));
    rt.create(&id, &b);
    rt.ok(&["start", &id]);
    assert!(rt.wait_status(&id, "stopped", SECS10));
    rt.ok(&["delete", &id]);
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn delete_force_kills_every_process_without_a_pid_namespace() {
    // Without a pid namespace, killing the init does not kill its children: the runtime must
    // kill everything in the container's cgroup (runc: signalAllProcesses).
    let rt = Runtime::new();
    let id = unique_id("nopidns");
    // Each pipeline member is a subshell whose command line carries the id.
    let mut b = sh(&format!(
        "touch /out/ready; {{ sleep 100; true; }} | {{ sleep 100; true; }} # {id}"
    ));
    b.without_namespace("pid");
    rt.create(&id, &b);
    rt.ok(&["start", &id]);
    assert!(wait_for_file(&b.out().join("ready"), SECS10));
    rt.ok(&["delete", "--force", &id]);
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn delete_of_a_stopped_container_kills_what_its_init_left_behind() {
    // The init died but, without a pid namespace, its children live on in the cgroup. runc's
    // destroy kills them (and can then remove the cgroup).
    let rt = Runtime::new();
    let id = unique_id("orphans");
    let mut b = sh(&format!(
        "touch /out/ready; {{ sleep 100; true; }} | {{ sleep 100; true; }} # {id}"
    ));
    b.without_namespace("pid");
    rt.create(&id, &b);
    rt.ok(&["start", &id]);
    assert!(wait_for_file(&b.out().join("ready"), SECS10));
    rt.ok(&["kill", &id, "KILL"]);
    assert!(rt.wait_status(&id, "stopped", SECS10));
    let o = rt.berth(&["delete", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn a_killed_create_is_cleaned_up_by_delete_force() {
    // The runtime is SIGKILLed while a createRuntime hook runs: its lock dies with it, and
    // `delete --force` (what engines do after a failed create) must still find and remove
    // everything, the cgroup included.
    let rt = Runtime::new();
    let mut b = sh("true");
    let hook_pid = b.out().join("hook.pid");
    let script = format!("echo $$ > {}; exec sleep 60", hook_pid.display());
    b.edit(|c| {
        c["hooks"] = json!({"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", script]}]})
    });
    let id = unique_id("killedcreate");
    rt.track(&id);
    let mut child = rt
        .cmd()
        .args(["create", "--bundle", b.path_str(), &id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The file appears before `echo` has written to it: wait for the pid itself.
    assert!(
        wait_until(SECS10, || std::fs::read_to_string(&hook_pid)
            .is_ok_and(|s| s.trim().parse::<i32>().is_ok())),
        "the hook never ran"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    // The hook is the runtime's child, not the container's: the test ends it itself.
    let hook: i32 = b.read_out("hook.pid").trim().parse().unwrap();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(hook),
        nix::sys::signal::Signal::SIGKILL,
    );
    let o = rt.berth(&["delete", "--force", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn many_containers_in_a_row_leave_nothing() {
    let rt = Runtime::new();
    let b = sh("true");
    for i in 0..10 {
        let id = unique_id(&format!("row{i}"));
        let o = rt.run_timeout(&id, &b, &[]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_nothing_left(&rt, &id, &b);
    }
    assert!(
        std::fs::read_dir(rt.root.path()).unwrap().next().is_none(),
        "the state root is not empty"
    );
}

/// Every `<hierarchy>/<rel>` that exists.
fn cgroup_dirs(rel: &str) -> Vec<String> {
    cgroup_hierarchies()
        .into_iter()
        .map(|h| h.join(rel))
        .filter(|d| d.exists())
        .map(|d| d.display().to_string())
        .collect()
}

#[test]
fn nested_cgroups_path_is_removed_with_the_parents_berth_made() {
    // linux.cgroupsPath with parents that do not exist yet: delete, and a failed create, must
    // remove the container's cgroup and the parents the runtime created for it. (Stricter than
    // runc 1.1, which leaves the parents behind.)
    let parent = unique_id("cgparent");
    for (name, fail) in [("nested-ok", false), ("nested-fail", true)] {
        let rt = Runtime::new();
        let id = unique_id(name);
        let path = format!("/{parent}/{name}/{id}");
        let mut b = sh("true");
        b.edit(|c| c["linux"]["cgroupsPath"] = json!(path));
        if fail {
            b.edit(|c| {
                c["mounts"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"destination": "/mnt", "type": "nosuchfs", "source": "none"}))
            });
        }
        let d = rt.create_detached(&id, &b, &[]);
        assert_eq!(d.status.success(), !fail, "{name}: {}", d.stderr());
        if !fail {
            assert!(
                !cgroup_dirs(path.trim_start_matches('/')).is_empty(),
                "no cgroup made"
            );
            rt.ok(&["delete", &id]);
        }
        let left = cgroup_dirs(&parent);
        // Clean up before asserting, so that a failure leaves the machine clean.
        for d in &left {
            let _ = std::fs::remove_dir(format!("{d}/{name}/{id}"));
            let _ = std::fs::remove_dir(format!("{d}/{name}"));
            let _ = std::fs::remove_dir(d);
        }
        assert!(left.is_empty(), "{name}: cgroups left: {left:?}");
        assert_nothing_left(&rt, &id, &b);
    }
}

/// A restore killed after it bound the rootfs at `criu-root` in the state directory (CRIU
/// restores from there) leaves an interrupted container. `delete --force` unmounts that and
/// removes the directory; it never deletes through the mount, which would empty the bundle's
/// root filesystem (it did).
#[test]
fn delete_force_of_an_interrupted_restore_keeps_the_rootfs_bound_in_it() {
    let rt = Runtime::new();
    let id = unique_id("intr-restore");
    let rootfs = tempfile::tempdir().unwrap();
    std::fs::create_dir(rootfs.path().join("bin")).unwrap();
    std::fs::write(rootfs.path().join("bin/sh"), "keep me").unwrap();
    let dir = rt.root.path().join(&id);
    let croot = dir.join("criu-root");
    std::fs::create_dir_all(&croot).unwrap();
    let o = std::process::Command::new("mount")
        .args([
            "--rbind",
            rootfs.path().to_str().unwrap(),
            croot.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "mount: {}", stderr(&o));
    let mounted = |p: &std::path::Path| {
        let p = p.to_str().unwrap().to_string();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(p.as_str()))
    };
    assert!(mounted(&croot));
    let list = rt.ok(&["list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with(&id) && l.contains("interrupted")),
        "{list}"
    );
    let o = rt.berth(&["delete", "--force", &id]);
    let left = mounted(&croot);
    if left {
        let _ = std::process::Command::new("umount")
            .args(["-l", croot.to_str().unwrap()])
            .status();
    }
    assert!(o.status.success(), "delete --force: {}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(rootfs.path().join("bin/sh"))
            .ok()
            .as_deref(),
        Some("keep me"),
        "the rootfs bound in the state directory was deleted through the mount"
    );
    assert!(!left, "criu-root is still mounted");
    assert!(!dir.exists(), "{} is left", dir.display());
}
