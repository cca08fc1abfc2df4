//! cgroups where runc sets the behaviour: nested cgroupsPath levels in a v1 cpuset hierarchy,
//! pre-existing cgroups (busy ones are shared, frozen ones refused), the device access strings
//! runc accepts, and a memory limit the container cannot live under. Each test that makes a
//! cgroup of its own removes it (killing what is left in it) whatever the outcome.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::json;

/// The v1 hierarchy holding `controller`, if this host has one.
fn v1_mount(controller: &str) -> Option<PathBuf> {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mi.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        let mut post = post.split(' ');
        let (fstype, opts) = (post.next()?, post.nth(1)?);
        let mp = pre.split(' ').nth(4)?;
        (fstype == "cgroup" && opts.split(',').any(|o| o == controller)).then(|| PathBuf::from(mp))
    })
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.join(file).display()))
        .trim()
        .to_string()
}

/// A cgroup `/NAME` of the test's own, in every hierarchy or just some; on drop (pass or fail)
/// it is thawed, emptied (SIGKILL) and removed, with everything below it.
struct TestCgroup {
    name: String,
}

impl TestCgroup {
    fn named(prefix: &str) -> TestCgroup {
        TestCgroup {
            name: format!("{prefix}-{}", std::process::id()),
        }
    }

    /// `/NAME` as a linux.cgroupsPath (absolute: from each hierarchy's root).
    fn path(&self) -> String {
        format!("/{}", self.name)
    }

    fn dir(&self, mount: &Path) -> PathBuf {
        mount.join(&self.name)
    }
    /// Makes `/NAME` in every hierarchy, with the root's cpus and mems in a v1 cpuset one.
    fn make_everywhere(&self) {
        for h in cgroup_hierarchies() {
            let d = self.dir(&h);
            std::fs::create_dir(&d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
            for f in ["cpuset.cpus", "cpuset.mems"] {
                if d.join(f).exists() {
                    std::fs::write(d.join(f), read(&h, f)).unwrap();
                }
            }
        }
    }

    /// Asserts that `/NAME` (the `what` cgroup) is still in every hierarchy.
    fn assert_still_everywhere(&self, what: &str) {
        for h in cgroup_hierarchies() {
            let d = self.dir(&h);
            assert!(d.is_dir(), "the {what} cgroup {} was removed", d.display());
        }
    }

    /// Moves `pid` into `/NAME` in every hierarchy.
    fn add(&self, pid: u32) {
        for h in cgroup_hierarchies() {
            let d = self.dir(&h);
            std::fs::write(d.join("cgroup.procs"), pid.to_string())
                .unwrap_or_else(|e| panic!("add {pid} to {}: {e}", d.display()));
        }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        fn remove(d: &Path) {
            if let Ok(rd) = std::fs::read_dir(d) {
                for e in rd
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                {
                    remove(&e.path());
                }
            }
            for _ in 0..100 {
                let _ = std::fs::write(d.join("freezer.state"), "THAWED");
                let _ = std::fs::write(d.join("cgroup.freeze"), "0");
                let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
                for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    // SAFETY: kill(2) with integer arguments.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                if std::fs::remove_dir(d).is_ok() || !d.exists() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        for h in cgroup_hierarchies() {
            remove(&self.dir(&h));
        }
    }
}

/// The container's cgroup for v1 `controller` as /proc/PID/cgroup names it.
fn cgroup_of(pid: i32, controller: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    text.lines()
        .find_map(|l| {
            let mut it = l.splitn(3, ':');
            let (_, ctrls, path) = (it.next()?, it.next()?, it.next()?);
            ctrls
                .split(',')
                .any(|c| c == controller)
                .then(|| path.to_string())
        })
        .unwrap_or_else(|| panic!("no {controller} line in /proc/{pid}/cgroup: {text}"))
}

/// A process of the test's, killed and reaped on drop.
struct Foreign(Child);

impl Drop for Foreign {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Asserts that every line of /proc/PID/cgroup (every hierarchy) names `path`.
fn assert_in_cgroup(pid: i32, path: &str) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for l in text.lines() {
        assert!(
            l.ends_with(&format!(":{path}")),
            "{pid} is not in {path}: {l}"
        );
    }
}

#[test]
fn nested_cgroups_path_below_an_empty_cpuset_level_gets_cpus_and_mems() {
    // cgroupsPath /PARENT/pod/ID where PARENT exists with no cpus or mems (as a fresh cpuset
    // cgroup someone else made) and pod is new: as runc does, every level is given its
    // parent's values on the way down, else the init cannot join ("No space left on device").
    let Some(cpuset) = v1_mount("cpuset") else {
        println!("SKIP: no v1 cpuset hierarchy on this host");
        return;
    };
    let parent = TestCgroup::named("berth-conf-cpuset");
    std::fs::create_dir(parent.dir(&cpuset)).unwrap();
    assert_eq!(read(&parent.dir(&cpuset), "cpuset.cpus"), "");
    let rt = Runtime::new();
    let id = unique_id("nestcpuset");
    let mut b = Bundle::sh("true");
    b.edit(|c| c["linux"]["cgroupsPath"] = json!(format!("{}/pod/{id}", parent.path())));
    let o = rt.run_timeout(&id, &b, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    for f in ["cpuset.cpus", "cpuset.mems"] {
        assert_eq!(
            read(&parent.dir(&cpuset), f),
            read(&cpuset, f),
            "{f} of the parent level"
        );
    }
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn a_cgroup_that_already_has_processes_is_shared_with_a_warning() {
    // runc 1.1 warns "container's cgroup is not empty: N process(es) found" and runs the
    // container there; delete ends the container and leaves the other processes (and their
    // cgroup) alone.
    if cgroup_hierarchies().is_empty() {
        println!("SKIP: no cgroup hierarchy on this host");
        return;
    }
    let cg = TestCgroup::named("berth-conf-busy");
    cg.make_everywhere();
    let mut foreign = Foreign(Command::new("/bin/sleep").arg("300").spawn().unwrap());
    cg.add(foreign.0.id());
    let rt = Runtime::new();
    let id = unique_id("sharedcg");
    let mut b = Bundle::sh("sleep 300");
    b.edit(|c| c["linux"]["cgroupsPath"] = json!(cg.path()));
    let d = rt.create_detached(&id, &b, &[]);
    d.assert_ok();
    assert!(
        d.stderr()
            .contains("container's cgroup is not empty: 1 process(es) found"),
        "no warning: {}",
        d.stderr()
    );
    rt.ok(&["start", &id]);
    let pid = rt.pid(&id);
    assert_in_cgroup(pid, &cg.path());
    let t = Instant::now();
    rt.ok(&["delete", "--force", &id]);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "delete took {:?}",
        t.elapsed()
    );
    assert!(
        wait_until(SECS5, || !pid_alive(pid)),
        "the container's init {pid} lives on"
    );
    assert!(
        foreign.0.try_wait().unwrap().is_none(),
        "delete killed the process that was in the cgroup before the container"
    );
    cg.assert_still_everywhere("shared");
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn a_frozen_cgroup_is_refused_before_anything_runs() {
    // runc: "container's cgroup unexpectedly frozen" (the init would hang in it). The cgroup
    // is not the container's: it is left as it was.
    let freezer = match v1_mount("freezer") {
        Some(m) => (m, "freezer.state", "FROZEN"),
        None => match cgroup_hierarchies()
            .into_iter()
            .find(|h| h.join("cgroup.controllers").exists())
        {
            Some(m) => (m, "cgroup.freeze", "1"),
            None => {
                println!("SKIP: no freezer on this host (neither v1 freezer nor cgroup v2)");
                return;
            }
        },
    };
    let cg = TestCgroup::named("berth-conf-frozen");
    cg.make_everywhere();
    let (mount, file, value) = freezer;
    std::fs::write(cg.dir(&mount).join(file), value).unwrap();
    let rt = Runtime::new();
    let id = unique_id("frozencg");
    let mut b = Bundle::sh("true");
    b.edit(|c| c["linux"]["cgroupsPath"] = json!(cg.path()));
    let t = Instant::now();
    let d = rt.create_detached(&id, &b, &[]);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "create took {:?}",
        t.elapsed()
    );
    assert_one_error_line_in(
        &d,
        &[
            "linux.cgroupsPath",
            "container's cgroup unexpectedly frozen",
        ],
    );
    cg.assert_still_everywhere("frozen");
    assert!(
        read(&cg.dir(&mount), file).starts_with(value),
        "the cgroup was thawed"
    );
    assert_nothing_left(&rt, &id, &b);
}

/// A bundle whose device rules deny everything, then give `access` to /dev/mem (c 1:1), a
/// device none of the default rules names.
fn device_bundle(access: &str) -> Bundle {
    let mut b = Bundle::sh("true");
    b.edit(|c| {
        c["linux"]["resources"]["devices"] = json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 1, "access": access}
        ])
    });
    b
}

/// Creates one container per `(access, want)` of `cases` (see [`device_bundle`]) and hands
/// `check` its `create` result; then deletes it and makes sure nothing of it is left.
fn for_each_access(
    name: &str,
    cases: &[(&str, &str)],
    check: impl Fn(&Runtime, &str, &Detached, &str, &str),
) {
    let rt = Runtime::new();
    for (i, (access, want)) in cases.iter().enumerate() {
        let id = unique_id(&format!("{name}{i}"));
        let b = device_bundle(access);
        let d = rt.create_detached(&id, &b, &[]);
        check(&rt, &id, &d, access, want);
        let _ = rt.berth(&["delete", "--force", &id]);
        assert_nothing_left(&rt, &id, &b);
    }
}

/// Asserts that a failed command printed one line on stderr, holding every one of `needles`.
fn assert_one_error_line_in(d: &Detached, needles: &[&str]) {
    let err = d.stderr();
    assert!(!d.status.success(), "it succeeded: {err}");
    let l = lines(&err);
    assert_eq!(l.len(), 1, "want one error line: {err}");
    for n in needles {
        assert!(l[0].contains(n), "error line lacks {n:?}: {}", l[0]);
    }
}

#[test]
fn device_access_strings_runc_accepts_are_accepted() {
    // runc 1.1.5 takes r, w and m in any order and number, and ignores other characters when
    // at least one of the three is there; the v1 devices list shows what it meant.
    let devices = v1_mount("devices");
    let cases = [
        ("mrw", "rwm"),
        ("rr", "r"),
        ("rwmr", "rwm"),
        ("wm", "wm"),
        ("rx", "r"),
        ("r w", "rw"),
    ];
    for_each_access("devaccess", &cases, |rt, id, d, access, meant| {
        assert!(
            d.status.success(),
            "access {access:?} refused: {}",
            d.stderr()
        );
        if let Some(mount) = &devices {
            let dir = mount.join(cgroup_of(rt.pid(id), "devices").trim_start_matches('/'));
            let list = read(&dir, "devices.list");
            assert!(
                list.lines().any(|l| l == format!("c 1:1 {meant}")),
                "access {access:?}: want c 1:1 {meant} in\n{list}"
            );
        }
    });
}

#[test]
fn device_access_strings_runc_refuses_are_refused() {
    // runc: "device access at 1 field cannot be empty"; a string naming none of r, w and m
    // gives it a devices cgroup that "doesn't precisely match target".
    let cases = [
        ("", "field cannot be empty"),
        ("x", "invalid access \"x\""),
        ("R", "invalid access \"R\""),
    ];
    for_each_access("devbad", &cases, |_, _, d, _, why| {
        assert_one_error_line_in(d, &["linux.resources.devices[1].access", why]);
    });
}

/// Prints `SKIP:` and returns true when this host has no memory controller (neither v1 nor in
/// the v2 hierarchy).
fn skip_without_memory_controller() -> bool {
    let has = v1_mount("memory").is_some()
        || cgroup_hierarchies().iter().any(|h| {
            std::fs::read_to_string(h.join("cgroup.controllers"))
                .is_ok_and(|c| c.split_whitespace().any(|x| x == "memory"))
        });
    if !has {
        println!("SKIP: no memory cgroup controller on this host");
    }
    !has
}

#[test]
fn a_memory_limit_the_init_cannot_live_under_is_one_clear_line() {
    // 4096 bytes: the kernel either refuses the write (EBUSY: runc's "unable to set memory
    // limit to 4096 (current usage: …)") or reclaims down to it and then OOM-kills the init in
    // its setup, which then says nothing itself. Either way the field and the usage are named.
    if skip_without_memory_controller() {
        return;
    }
    let rt = Runtime::new();
    let id = unique_id("memtiny");
    let mut b = Bundle::sh("true");
    b.edit(|c| c["linux"]["resources"]["memory"] = json!({"limit": 4096}));
    let d = rt.create_detached(&id, &b, &[]);
    assert_one_error_line_in(&d, &["linux.resources.memory.limit", "4096", "usage"]);
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn update_to_a_memory_limit_below_the_usage_is_one_clear_line() {
    if skip_without_memory_controller() {
        return;
    }
    let rt = Runtime::new();
    let id = unique_id("memupd");
    let b = Bundle::sh("sleep 300");
    rt.create(&id, &b);
    rt.ok(&["start", &id]);
    let o = rt.berth(&["update", "--memory", "1", &id]);
    assert_one_error_line(&o, &["linux.resources.memory.limit", "usage"]);
    assert_eq!(
        rt.status(&id),
        "running",
        "the container did not survive the refused update"
    );
    rt.ok(&["delete", "--force", &id]);
    assert_nothing_left(&rt, &id, &b);
}
