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
    assert!(!d.status.success(), "create succeeded in a frozen cgroup");
    let err = d.stderr();
    let l = lines(&err);
    assert_eq!(l.len(), 1, "expected one error line: {err}");
    assert!(
        l[0].contains("linux.cgroupsPath")
            && l[0].contains("container's cgroup unexpectedly frozen"),
        "{err}"
    );
    cg.assert_still_everywhere("frozen");
    assert!(
        read(&cg.dir(&mount), file).starts_with(value),
        "the cgroup was thawed"
    );
    assert_nothing_left(&rt, &id, &b);
}
