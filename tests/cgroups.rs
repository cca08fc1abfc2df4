//! cgroups through the real binary on this host's layout (v1, v2 or hybrid): each resource is
//! checked in the kernel's own files and, where it shows, by its effect inside the container;
//! pause/resume, update, events, ps, kill --all and delete. Every test checks in its teardown
//! that no cgroup of its container is left in any hierarchy.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// Cgroup mounts of this host: (mount point, fstype, super options).
fn mounts() -> Vec<(PathBuf, String, String)> {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    mi.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let mp = pre.split(' ').nth(4)?;
            let mut post = post.split(' ');
            let fstype = post.next()?;
            let opts = post.nth(1)?;
            (fstype == "cgroup" || fstype == "cgroup2")
                .then(|| (PathBuf::from(mp), fstype.to_string(), opts.to_string()))
        })
        .collect()
}

/// The v1 mount point holding `controller`.
fn v1_mount(controller: &str) -> Option<PathBuf> {
    mounts()
        .into_iter()
        .find(|(_, t, o)| t == "cgroup" && o.split(',').any(|x| x == controller))
        .map(|m| m.0)
}

fn unified_mount() -> Option<PathBuf> {
    mounts().into_iter().find(|m| m.1 == "cgroup2").map(|m| m.0)
}

fn unified_controllers() -> Vec<String> {
    unified_mount()
        .and_then(|m| std::fs::read_to_string(m.join("cgroup.controllers")).ok())
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// Whether this host has cgroup v1 hierarchies with controllers (v1 or hybrid).
fn has_v1() -> bool {
    v1_mount("memory").is_some()
}

/// The directory of `pid`'s cgroup for a v1 controller (or "" for the unified hierarchy).
fn cg_dir(pid: i64, controller: &str) -> PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for l in text.lines() {
        let mut it = l.splitn(3, ':');
        let (_, ctrls, path) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
        let hit = if controller.is_empty() {
            ctrls.is_empty()
        } else {
            ctrls.split(',').any(|c| c == controller)
        };
        if hit {
            let mount = if controller.is_empty() {
                unified_mount().unwrap()
            } else {
                v1_mount(controller).unwrap()
            };
            return mount.join(path.trim_start_matches('/'));
        }
    }
    panic!("no {controller:?} line in /proc/{pid}/cgroup:\n{text}");
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.join(file).display()))
        .trim()
        .to_string()
}

/// Every directory named `name` in any cgroup hierarchy (searched a few levels deep).
fn cgroups_named(name: &str) -> Vec<PathBuf> {
    fn walk(d: &Path, name: &str, depth: u32, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let p = e.path();
            if e.file_name().to_string_lossy() == name {
                out.push(p.clone());
            }
            if depth > 0 {
                walk(&p, name, depth - 1, out);
            }
        }
    }
    let mut out = Vec::new();
    for (m, _, _) in mounts() {
        walk(&m, name, 4, &mut out);
    }
    out
}

/// Checks at the end of a test (after the Runtime's cleanup, so declare it first) that no
/// cgroup named after the container is left anywhere.
struct NoLeftovers(Vec<String>);

impl Drop for NoLeftovers {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        for n in &self.0 {
            let left = cgroups_named(n);
            assert!(left.is_empty(), "cgroups left behind: {left:?}");
        }
    }
}

/// A busybox bundle running `script`, without the cgroup filesystem mount (not what these
/// tests are about), and with a /dev/null (busybox sh opens it for background jobs) made by
/// the container itself (CAP_MKNOD; the device rules allow c 1:3).
fn bundle(script: &str) -> Bundle {
    let mut b = Bundle::sh(&format!(
        "[ -e /dev/null ] || mknod -m 666 /dev/null c 1 3; {script}"
    ));
    b.edit(|c| {
        let mounts: Vec<Value> = c["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["type"] != "cgroup" && m["type"] != "cgroup2")
            .cloned()
            .collect();
        c["mounts"] = Value::Array(mounts);
        c["root"]["readonly"] = json!(false);
        for set in ["bounding", "effective", "permitted"] {
            c["process"]["capabilities"][set]
                .as_array_mut()
                .unwrap()
                .push(json!("CAP_MKNOD"));
        }
    });
    b
}

/// Whether `pid` is gone (or a zombie waiting for its reaper).
fn dead(pid: i64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')),
        Err(_) => true,
    }
}

/// `berth create` + `start`, with the container's stdio away from the test's pipes. Returns
/// the init's pid.
fn start(rt: &Runtime, id: &str, b: &Bundle) -> i64 {
    create(rt, id, b).unwrap_or_else(|e| panic!("{e}"));
    rt.ok(&["start", id]);
    rt.state(id)["pid"].as_i64().unwrap()
}

/// `berth create`; Err(stderr) if it fails.
fn create(rt: &Runtime, id: &str, b: &Bundle) -> Result<(), String> {
    let err = tempfile::NamedTempFile::new().unwrap();
    let st = rt
        .cmd()
        .args(["create", "--bundle", b.path().to_str().unwrap(), id])
        .stdout(Stdio::null())
        .stderr(err.reopen().unwrap())
        .status()
        .unwrap();
    if st.success() {
        Ok(())
    } else {
        Err(std::fs::read_to_string(err.path()).unwrap())
    }
}

fn set_resources(b: &mut Bundle, r: Value) {
    b.edit(|c| {
        let mut res = c["linux"]["resources"].clone();
        for (k, v) in r.as_object().unwrap() {
            res[k] = v.clone();
        }
        c["linux"]["resources"] = res;
    });
}

#[test]
fn resources_are_written_to_the_kernel_files() {
    if !has_v1() {
        println!("SKIP: this test reads cgroup v1 files; this host has cgroup v2 only");
        return;
    }
    let id = unique_id("res");
    let _clean = NoLeftovers(vec![id.clone()]);
    let rt = Runtime::new();
    let mut b = bundle("sleep 300");
    let mut r = json!({
        "memory": {"limit": 67108864, "reservation": 33554432, "swappiness": 20,
                   "disableOOMKiller": true},
        "cpu": {"shares": 512, "cpus": "0", "mems": "0"},
        "pids": {"limit": 20},
    });
    let cpu_root = v1_mount("cpu").unwrap();
    let cfs = has_cfs_bandwidth();
    if cfs {
        r["cpu"]["quota"] = json!(20000);
        r["cpu"]["period"] = json!(100000);
    }
    // Optional knobs, checked where this kernel has them.
    let optional = [
        (
            cpu_root.join("cpu.cfs_burst_us"),
            "cpu",
            "burst",
            json!(1000),
        ),
        (cpu_root.join("cpu.idle"), "cpu", "idle", json!(0)),
        (
            cpu_root.join("cpu.rt_runtime_us"),
            "cpu",
            "realtimeRuntime",
            json!(10000),
        ),
        (
            v1_mount("memory")
                .unwrap()
                .join("memory.kmem.tcp.limit_in_bytes"),
            "memory",
            "kernelTCP",
            json!(1048576),
        ),
    ];
    for (file, group, key, v) in &optional {
        if file.exists() {
            r[group][key] = v.clone();
        }
    }
    let memsw = v1_mount("memory")
        .unwrap()
        .join("memory.memsw.limit_in_bytes")
        .exists();
    if memsw {
        r["memory"]["swap"] = json!(134217728);
    }
    set_resources(&mut b, r);
    let pid = start(&rt, &id, &b);
    let mem = cg_dir(pid, "memory");
    assert_eq!(read(&mem, "memory.limit_in_bytes"), "67108864");
    assert_eq!(read(&mem, "memory.soft_limit_in_bytes"), "33554432");
    assert_eq!(read(&mem, "memory.swappiness"), "20");
    if memsw {
        assert_eq!(read(&mem, "memory.memsw.limit_in_bytes"), "134217728");
    }
    let cpu = cg_dir(pid, "cpu");
    assert_eq!(read(&cpu, "cpu.shares"), "512");
    if cfs {
        assert_eq!(read(&cpu, "cpu.cfs_quota_us"), "20000");
        assert_eq!(read(&cpu, "cpu.cfs_period_us"), "100000");
    }
    assert!(read(&mem, "memory.oom_control").contains("oom_kill_disable 1"));
    let files = [
        (&cpu, "cpu.cfs_burst_us", "1000"),
        (&cpu, "cpu.idle", "0"),
        (&cpu, "cpu.rt_runtime_us", "10000"),
        (&mem, "memory.kmem.tcp.limit_in_bytes", "1048576"),
    ];
    for (dir, f, want) in files {
        if dir.join(f).exists() {
            assert_eq!(read(dir, f), want, "{f}");
        }
    }
    let cpuset = cg_dir(pid, "cpuset");
    assert_eq!(read(&cpuset, "cpuset.cpus"), "0");
    assert_eq!(read(&cpuset, "cpuset.mems"), "0");
    assert_eq!(read(&cg_dir(pid, "pids"), "pids.max"), "20");
    // The container is in its cgroup in every hierarchy, the unified one included, and
    // nowhere else: every path ends with the id.
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for l in text.lines() {
        assert!(l.ends_with(&format!("/{id}")), "{l}");
    }
    // Placed as runc places a container without linux.cgroupsPath: below the runtime's own
    // cgroup in each hierarchy.
    let me = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let my_mem = me
        .lines()
        .find_map(|l| l.split_once(":memory:").map(|x| x.1.to_string()))
        .unwrap();
    let want = Path::new(&my_mem).join(&id);
    assert!(
        mem.ends_with(want.strip_prefix("/").unwrap()),
        "{mem:?} vs {want:?}"
    );
}

/// The files a fresh (non-root) cgroup gets in the v1 hierarchy at `mount`: what this kernel
/// offers there (BFQ's blkio.bfq.* files, for one, exist only while BFQ is loaded, and never in
/// the root cgroup). The probe directory is removed before returning.
fn fresh_cgroup_files(mount: &Path) -> Vec<String> {
    let probe = mount.join(format!(
        "probe-{}-{}",
        std::process::id(),
        unique_id("files")
    ));
    std::fs::create_dir(&probe).unwrap_or_else(|e| panic!("mkdir {}: {e}", probe.display()));
    let names = std::fs::read_dir(&probe)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    std::fs::remove_dir(&probe).unwrap_or_else(|e| panic!("rmdir {}: {e}", probe.display()));
    names
}

/// CFS bandwidth control (cpu.cfs_quota_us) is a kernel option (CONFIG_CFS_BANDWIDTH); says
/// `SKIP:` for the quota checks when it is missing.
fn has_cfs_bandwidth() -> bool {
    let ok = v1_mount("cpu").is_some_and(|m| {
        fresh_cgroup_files(&m)
            .iter()
            .any(|f| f == "cpu.cfs_quota_us")
    });
    if !ok {
        println!("SKIP: cpu.quota/period: this kernel has no CFS bandwidth control");
    }
    ok
}

#[test]
fn blkio_weight_follows_runc_and_unsupported_knobs_fail_clearly() {
    let Some(blkio) = v1_mount("blkio") else {
        println!("SKIP: no v1 blkio hierarchy");
        return;
    };
    let files = fresh_cgroup_files(&blkio);
    let has = |f: &str| files.iter().any(|x| x == f);
    let rt = Runtime::new();
    // CFQ's blkio.weight is gone from recent kernels; runc then writes BFQ's. A kernel with
    // neither (no BFQ loaded: schedulers `none mq-deadline kyber`) cannot take a weight.
    let weight_file = ["blkio.weight", "blkio.bfq.weight"]
        .into_iter()
        .find(|f| has(f));
    let id = unique_id("blkio");
    let _clean = NoLeftovers(vec![id.clone()]);
    let mut b = bundle("sleep 300");
    set_resources(&mut b, json!({"blockIO": {"weight": 300}}));
    match weight_file {
        Some(file) => {
            let pid = start(&rt, &id, &b);
            let d = cg_dir(pid, "blkio");
            assert_eq!(read(&d, file), "300");
            rt.ok(&["delete", "--force", &id]);
        }
        None => {
            println!(
                "SKIP: writing blockIO.weight: this kernel has neither blkio.weight nor \
                 blkio.bfq.weight (no CFQ or BFQ); asserting the error path instead"
            );
            let e = create(&rt, &id, &b).unwrap_err();
            assert!(
                e.contains("linux.resources.blockIO.weight: not supported by this kernel"),
                "{e}"
            );
            assert_eq!(e.trim().lines().count(), 1, "one error line: {e}");
            assert!(rt.ids().is_empty());
        }
    }
    if !has("blkio.leaf_weight") {
        // A knob the kernel lacks: a clear error naming the field, and nothing left behind.
        let id2 = unique_id("leafw");
        let _clean2 = NoLeftovers(vec![id2.clone()]);
        let mut b = bundle("true");
        set_resources(&mut b, json!({"blockIO": {"leafWeight": 300}}));
        let e = create(&rt, &id2, &b).unwrap_err();
        assert!(
            e.contains("linux.resources.blockIO.leafWeight: not supported by this kernel"),
            "{e}"
        );
        assert!(rt.ids().is_empty());
    } else {
        println!("SKIP: the leafWeight error path: this kernel has blkio.leaf_weight");
    }
}

#[test]
fn invalid_or_missing_resources_are_refused_before_anything_is_made() {
    let rt = Runtime::new();
    let mut ids = Vec::new();
    let mut cases: Vec<(Value, &str)> = vec![
        (
            json!({"memory": {"swappiness": 200}}),
            "linux.resources.memory.swappiness: 200 is out of range (0-100)",
        ),
        (
            json!({"memory": {"limit": 2000000, "swap": 1000000}}),
            "linux.resources.memory.swap: the memory+swap limit 1000000 must be at least memory.limit (2000000)",
        ),
        (
            json!({"cpu": {"shares": 1}}),
            "linux.resources.cpu.shares: 1 is out of range (2-262144)",
        ),
        (
            json!({"hugepageLimits": [{"pageSize": "3MB", "limit": 0}]}),
            "linux.resources.hugepageLimits[0].pageSize: hugepage size \"3MB\" is not supported",
        ),
        (
            json!({"devices": [{"allow": true, "type": "c", "access": "x"}]}),
            "linux.resources.devices[0].access: invalid access \"x\"",
        ),
    ];
    if v1_mount("net_cls").is_none() {
        cases.push((
            json!({"network": {"classID": 1048577}}),
            "linux.resources.network.classID: the net_cls cgroup controller is not available",
        ));
    }
    if v1_mount("net_prio").is_none() {
        cases.push((
            json!({"network": {"priorities": [{"name": "lo", "priority": 1}]}}),
            "linux.resources.network.priorities: the net_prio cgroup controller is not available",
        ));
    }
    if v1_mount("rdma").is_none() && !unified_controllers().iter().any(|c| c == "rdma") {
        cases.push((
            json!({"rdma": {"mlx5_0": {"hcaHandles": 3}}}),
            "linux.resources.rdma: the rdma cgroup controller is not available",
        ));
    }
    if has_v1() && unified_mount().is_some() {
        cases.push((
            json!({"unified": {"memory.high": "1000000"}}),
            "linux.resources.unified[\"memory.high\"]: the memory controller is not in this host's cgroup v2 hierarchy",
        ));
    }
    if unified_mount().is_none() {
        cases.push((
            json!({"unified": {"memory.high": "1000000"}}),
            "linux.resources.unified: cgroup v2 is not available on this host",
        ));
    }
    for (i, (r, want)) in cases.into_iter().enumerate() {
        let id = unique_id(&format!("bad{i}"));
        ids.push(id.clone());
        let mut b = bundle("true");
        set_resources(&mut b, r);
        let e = create(&rt, &id, &b).unwrap_err();
        assert!(e.contains(want), "want {want:?} in: {e}");
        assert!(cgroups_named(&id).is_empty(), "{id}: cgroups made");
    }
    assert!(rt.ids().is_empty());
    drop(rt);
    drop(NoLeftovers(ids));
}

#[test]
fn fork_bomb_stops_at_the_pids_limit() {
    if v1_mount("pids").is_none() && !unified_controllers().iter().any(|c| c == "pids") {
        println!("SKIP: no pids controller");
        return;
    }
    let id = unique_id("forkbomb");
    let _clean = NoLeftovers(vec![id.clone()]);
    let rt = Runtime::new();
    // Forks until refused, then reports how many children it got.
    let mut b = bundle(
        "n=0; while [ $n -lt 64 ]; do sleep 100 & n=$((n+1)); echo $n > /tmp/n; done; echo all-forked",
    );
    set_resources(&mut b, json!({"pids": {"limit": 10}}));
    let o = rt.run(&id, &b);
    let out = stdout(&o) + &stderr(&o);
    assert!(!out.contains("all-forked"), "{out}");
    assert!(
        out.contains("can't fork") || out.contains("Resource temporarily unavailable"),
        "{out}"
    );
    // The shell itself and at most 9 sleeps fit under the limit.
    let n: u32 = std::fs::read_to_string(b.rootfs().join("tmp/n"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(n < 10, "forked {n} children under pids.limit 10");
}

#[test]
fn denied_devices_give_eperm_and_defaults_are_allowed() {
    let id = unique_id("devices");
    let _clean = NoLeftovers(vec![id.clone()]);
    let rt = Runtime::new();
    let mut b = bundle(
        "mknod /dev/mem0 c 1 1 && head -c1 /dev/mem0 > /dev/null; echo mem=$?; \
         mknod /dev/null0 c 1 3 && echo hi > /dev/null0; echo null=$?; \
         mknod /dev/kmsg0 c 1 11 && echo hi > /dev/kmsg0; echo kmsg=$?",
    );
    b.edit(|c| {
        // Allow reading /dev/kmsg only: writing stays denied.
        c["linux"]["resources"]["devices"]
            .as_array_mut()
            .unwrap()
            .push(json!({"allow": true, "type": "c", "major": 1, "minor": 11, "access": "r"}));
    });
    let o = rt.run(&id, &b);
    let out = stdout(&o);
    let err = stderr(&o);
    assert!(out.contains("mem=1"), "{out}{err}");
    assert!(out.contains("null=0"), "{out}{err}");
    assert!(out.contains("kmsg=1"), "{out}{err}");
    assert_eq!(err.matches("Operation not permitted").count(), 2, "{err}");
}

#[test]
fn device_rules_are_listed_in_order_on_v1() {
    let Some(_) = v1_mount("devices") else {
        println!("SKIP: no v1 devices hierarchy (cgroup v2 uses an eBPF program, unit-tested)");
        return;
    };
    let id = unique_id("devlist");
    let _clean = NoLeftovers(vec![id.clone()]);
    let rt = Runtime::new();
    let mut b = bundle("sleep 300");
    b.edit(|c| {
        c["linux"]["resources"]["devices"]
            .as_array_mut()
            .unwrap()
            .push(json!({"allow": true, "type": "b", "major": 7, "access": "r"}));
    });
    let pid = start(&rt, &id, &b);
    let list = read(&cg_dir(pid, "devices"), "devices.list");
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(
        lines,
        [
            "b 7:* r",
            "c *:* m",
            "b *:* m",
            "c 1:3 rwm",
            "c 1:8 rwm",
            "c 1:7 rwm",
            "c 5:0 rwm",
            "c 1:5 rwm",
            "c 1:9 rwm",
            "c 136:* rwm",
            "c 5:2 rwm"
        ]
    );
}

/// The freezer as the host sees it: "FROZEN"/"THAWED" (v1) or "1"/"0" (v2).
fn frozen(pid: i64) -> bool {
    if v1_mount("freezer").is_some() {
        read(&cg_dir(pid, "freezer"), "freezer.state") == "FROZEN"
    } else {
        read(&cg_dir(pid, ""), "cgroup.freeze") == "1"
    }
}

fn list_status(rt: &Runtime, id: &str) -> String {
    let v: Value = serde_json::from_str(&rt.ok(&["list", "--format", "json"])).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap()["status"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn pause_and_resume() {
    let id = unique_id("pause");
    let _clean = NoLeftovers(vec![id.clone()]);
    let rt = Runtime::new();
    // A counter that only moves while the container runs.
    let b = bundle("i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.05; done");
    let pid = start(&rt, &id, &b);
    rt.ok(&["pause", &id]);
    assert!(frozen(pid));
    assert_eq!(rt.state(&id)["status"], "paused");
    assert_eq!(list_status(&rt, &id), "paused");
    let count = || std::fs::read_to_string(b.rootfs().join("tmp/count")).unwrap();
    let c1 = count();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(count(), c1, "a paused container does not run");
    // Pausing twice is refused, as runc does.
    let o = rt.berth(&["pause", &id]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("is paused"), "{}", stderr(&o));
    rt.ok(&["resume", &id]);
    assert!(!frozen(pid));
    assert_eq!(rt.state(&id)["status"], "running");
    assert_eq!(list_status(&rt, &id), "running");
    let o = rt.berth(&["resume", &id]);
    assert!(!o.status.success(), "resume of a running container");
    let t = Instant::now();
    while count() == c1 {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "counter did not move after resume"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn delete_force_ends_a_paused_container_and_removes_its_cgroups() {
    let id = unique_id("delpaused");
    let _clean = NoLeftovers(vec![id.clone()]);
    let rt = Runtime::new();
    // Extra processes too, so the whole cgroup must die.
    let b = bundle("sleep 300 & sleep 300 & sleep 300");
    let pid = start(&rt, &id, &b);
    rt.ok(&["pause", &id]);
    assert!(frozen(pid));
    let t = Instant::now();
    rt.ok(&["delete", "--force", &id]);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(rt.ids().is_empty());
    assert!(cgroups_named(&id).is_empty());
    assert!(dead(pid));
}

#[test]
fn delete_after_sigkill_removes_the_cgroups() {
    let id = unique_id("delkill");
    let _clean = NoLeftovers(vec![id.clone()]);
    let rt = Runtime::new();
    let b = bundle("sleep 300");
    start(&rt, &id, &b);
    rt.ok(&["kill", &id, "KILL"]);
    // No --force: delete waits for the init to be gone, then removes everything.
    let t = Instant::now();
    loop {
        let o = rt.berth(&["delete", &id]);
        if o.status.success() {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "{}", stderr(&o));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(cgroups_named(&id).is_empty());
}

#[test]
fn kill_all_signals_every_process_in_the_cgroup() {
    let id = unique_id("killall");
    let _clean = NoLeftovers(vec![id.clone()]);
    let rt = Runtime::new();
    // The init survives TERM (it handles it); its children do not (an ignored signal would be
    // inherited, a handler is not).
    let b = bundle("trap 'echo TERM' TERM; sleep 300 & sleep 300 & while true; do sleep 1; done");
    let pid = start(&rt, &id, &b);
    let procs = |pid: i64| {
        read(
            &cg_dir(pid, if has_v1() { "pids" } else { "" }),
            "cgroup.procs",
        )
        .lines()
        .count()
    };
    let t = Instant::now();
    while procs(pid) < 4 {
        assert!(t.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(20));
    }
    rt.ok(&["kill", "--all", &id, "TERM"]);
    let t = Instant::now();
    // Only the init (and its current `sleep 1`) survive.
    while procs(pid) > 2 {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "children survived kill --all"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(rt.state(&id)["status"], "running");
    rt.ok(&["kill", "--all", &id, "KILL"]);
    let t = Instant::now();
    while rt.state(&id)["status"] != "stopped" {
        assert!(t.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn update_changes_the_limits_and_the_stored_config() {
    if !has_v1() {
        println!("SKIP: reads cgroup v1 files");
        return;
    }
    let id = unique_id("update");
    let _clean = NoLeftovers(vec![id.clone()]);
    let rt = Runtime::new();
    let mut b = bundle("sleep 300");
    let cfs = has_cfs_bandwidth();
    let mut r = json!({"memory": {"limit": 67108864}, "pids": {"limit": 20}});
    let mut args = vec![
        "update",
        "--memory",
        "96m",
        "--pids-limit",
        "40",
        "--cpu-share",
        "256",
    ];
    if cfs {
        r["cpu"] = json!({"quota": 20000, "period": 100000});
        args.extend(["--cpu-quota", "30000"]);
    }
    set_resources(&mut b, r);
    let pid = start(&rt, &id, &b);
    args.push(&id);
    rt.ok(&args);
    let mem = cg_dir(pid, "memory");
    let cpu = cg_dir(pid, "cpu");
    assert_eq!(read(&mem, "memory.limit_in_bytes"), (96 << 20).to_string());
    if cfs {
        assert_eq!(read(&cpu, "cpu.cfs_quota_us"), "30000");
        assert_eq!(read(&cpu, "cpu.cfs_period_us"), "100000");
    }
    assert_eq!(read(&cpu, "cpu.shares"), "256");
    assert_eq!(read(&cg_dir(pid, "pids"), "pids.max"), "40");
    // --resources on standard input, as containerd and docker use it.
    let mut child = rt
        .cmd()
        .args(["update", "--resources", "-", &id])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"memory":{"limit":134217728},"cpu":{"cpus":"0"},"pids":{"limit":50}}"#)
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(read(&mem, "memory.limit_in_bytes"), "134217728");
    assert_eq!(read(&cg_dir(pid, "cpuset"), "cpuset.cpus"), "0");
    assert_eq!(read(&cg_dir(pid, "pids"), "pids.max"), "50");
    // The stored config has every value, old and new.
    let cfg: Value = serde_json::from_slice(
        &std::fs::read(rt.root.path().join(&id).join("config.json")).unwrap(),
    )
    .unwrap();
    let r = &cfg["linux"]["resources"];
    assert_eq!(r["memory"]["limit"], 134217728);
    if cfs {
        assert_eq!(r["cpu"]["quota"], 30000);
        assert_eq!(r["cpu"]["period"], 100000);
    }
    assert_eq!(r["cpu"]["shares"], 256);
    assert_eq!(r["cpu"]["cpus"], "0");
    assert_eq!(r["pids"]["limit"], 50);
    assert_eq!(r["devices"][0]["allow"], false, "device rules kept");
    // Errors name the field; nothing changes.
    let o = rt.berth(&["update", "--memory", "lots", &id]);
    assert!(
        stderr(&o).contains("--memory: invalid size"),
        "{}",
        stderr(&o)
    );
    let o = rt.berth(&["update", "--l3-cache-schema", "L3:0=f", &id]);
    assert!(
        stderr(&o).contains("Intel RDT is not supported"),
        "{}",
        stderr(&o)
    );
    let o = rt.berth(&["update", "--cpu-share", "1", &id]);
    assert!(
        stderr(&o).contains("linux.resources.cpu.shares: 1 is out of range"),
        "{}",
        stderr(&o)
    );
    assert_eq!(read(&cpu, "cpu.shares"), "256");
}

#[test]
fn events_print_runc_stats_json() {
    let id = unique_id("events");
    let _clean = NoLeftovers(vec![id.clone()]);
    let rt = Runtime::new();
    let mut b = bundle("sleep 300 & sleep 300");
    set_resources(
        &mut b,
        json!({"memory": {"limit": 67108864}, "pids": {"limit": 30}}),
    );
    start(&rt, &id, &b);
    let out = rt.ok(&["events", "--stats", &id]);
    assert_eq!(out.lines().count(), 1, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["type"], "stats");
    assert_eq!(v["id"], id.as_str());
    let d = &v["data"];
    assert_eq!(d["memory"]["usage"]["limit"], 67108864);
    assert!(d["memory"]["usage"]["usage"].as_u64().unwrap() > 0);
    assert!(d["pids"]["current"].as_u64().unwrap() >= 2, "{d}");
    assert_eq!(d["pids"]["limit"], 30);
    assert!(d["cpu"]["usage"]["total"].as_u64().unwrap() > 0);
    for k in [
        "cpu",
        "cpuset",
        "memory",
        "pids",
        "blkio",
        "hugetlb",
        "intel_rdt",
    ] {
        assert!(d.get(k).is_some(), "{k} missing: {d}");
    }
    // The stream: a stats line per interval.
    let mut child = rt
        .cmd()
        .args(["events", "--interval", "100ms", &id])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = read_lines(&mut child, 2, Duration::from_secs(5));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(lines.len(), 2, "{lines:?}");
    for l in lines {
        let v: Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["type"], "stats");
    }
    let o = rt.berth(&["events", "--interval", "0s", &id]);
    assert!(
        stderr(&o).contains("interval must be greater than 0"),
        "{}",
        stderr(&o)
    );
}

/// Reads up to `n` lines from the child's stdout within `limit`.
fn read_lines(child: &mut Child, n: usize, limit: Duration) -> Vec<String> {
    use std::io::BufRead;
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let end = Instant::now() + limit;
    let mut v = Vec::new();
    while v.len() < n {
        match rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
            Ok(l) => v.push(l),
            Err(_) => break,
        }
    }
    v
}

#[test]
fn events_report_the_oom_killer_and_end_with_the_container() {
    let id = unique_id("oom");
    let _clean = NoLeftovers(vec![id.clone()]);
    let rt = Runtime::new();
    // Waits for `go`, then has sort hold far more than the limit in memory; the OOM killer
    // ends sort, and the container goes on.
    let mut b = bundle(
        "while [ ! -e /tmp/go ]; do sleep 0.05; done; \
         yes 0123456789abcdef | head -c 67108864 | sort | wc -l > /tmp/sorted; sleep 300",
    );
    let mut mem = json!({"limit": 16777216});
    if v1_mount("memory").is_some_and(|m| m.join("memory.memsw.limit_in_bytes").exists())
        || unified_controllers().iter().any(|c| c == "memory")
    {
        mem["swap"] = json!(16777216);
    }
    set_resources(&mut b, json!({"memory": mem}));
    start(&rt, &id, &b);
    let mut child = rt
        .cmd()
        .args(["events", "--interval", "30s", &id])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Give events time to register before the OOM happens.
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(b.rootfs().join("tmp/go"), "").unwrap();
    let lines = read_lines(&mut child, 1, Duration::from_secs(20));
    if lines.is_empty() {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert_eq!(lines.len(), 1, "no OOM event");
    let v: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(v, json!({"type": "oom", "id": id}));
    // The stream ends by itself once the container is gone.
    rt.ok(&["delete", "--force", &id]);
    let t = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            assert!(st.success());
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "events did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn ps_lists_the_container_processes() {
    let id = unique_id("ps");
    let _clean = NoLeftovers(vec![id.clone()]);
    let rt = Runtime::new();
    let b = bundle("sleep 301 & sleep 302");
    let pid = start(&rt, &id, &b);
    // Once both sleeps run, the set of processes no longer changes.
    let t = Instant::now();
    let mut table = rt.ok(&["ps", &id]);
    while !(table.contains("sleep 301") && table.contains("sleep 302")) {
        assert!(t.elapsed() < Duration::from_secs(5), "{table}");
        std::thread::sleep(Duration::from_millis(20));
        table = rt.ok(&["ps", &id]);
    }
    let v: Value = serde_json::from_str(&rt.ok(&["ps", "--format", "json", &id])).unwrap();
    let pids: Vec<i64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_i64().unwrap())
        .collect();
    assert!(pids.contains(&pid), "{pids:?} lacks init {pid}");
    let mut lines = table.lines();
    assert!(lines.next().unwrap().contains("PID"));
    let rest: Vec<&str> = lines.collect();
    assert_eq!(rest.len(), pids.len(), "{table}");
    // ps arguments after the id are passed on.
    let custom = rt.ok(&["ps", &id, "-o", "pid,comm"]);
    let header: Vec<&str> = custom.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["PID", "COMMAND"], "{custom}");
    assert_eq!(custom.lines().count(), pids.len() + 1, "{custom}");
}

#[test]
fn absolute_cgroups_path_and_the_parents_berth_made_are_removed() {
    let id = unique_id("abspath");
    let parent = format!("berth-test-{}", std::process::id());
    let _clean = NoLeftovers(vec![parent.clone(), id.clone()]);
    let rt = Runtime::new();
    let mut b = bundle("sleep 300");
    b.edit(|c| c["linux"]["cgroupsPath"] = json!(format!("/{parent}/x/{id}")));
    let pid = start(&rt, &id, &b);
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for l in text.lines() {
        assert!(l.ends_with(&format!(":/{parent}/x/{id}")), "{l}");
    }
    rt.ok(&["delete", "--force", &id]);
    assert!(cgroups_named(&parent).is_empty());
}

#[test]
fn hugetlb_on_the_unified_hierarchy_of_a_hybrid_host() {
    if !has_v1() || !unified_controllers().iter().any(|c| c == "hugetlb") {
        println!("SKIP: needs a hybrid host whose cgroup v2 hierarchy holds hugetlb");
        return;
    }
    let id = unique_id("hugetlb");
    let _clean = NoLeftovers(vec![id.clone()]);
    let rt = Runtime::new();
    let mut b = bundle("sleep 300");
    set_resources(
        &mut b,
        json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
               "unified": {"hugetlb.1GB.max": "0"}}),
    );
    let pid = start(&rt, &id, &b);
    let u = cg_dir(pid, "");
    assert_eq!(read(&u, "hugetlb.2MB.max"), "4194304");
    if u.join("hugetlb.2MB.rsvd.max").exists() {
        assert_eq!(read(&u, "hugetlb.2MB.rsvd.max"), "4194304");
    }
    if u.join("hugetlb.1GB.max").exists() {
        assert_eq!(read(&u, "hugetlb.1GB.max"), "0");
    }
    let s: Value = serde_json::from_str(&rt.ok(&["events", "--stats", &id])).unwrap();
    assert!(s["data"]["hugetlb"].get("2MB").is_some(), "{s}");
}

#[test]
fn cgroup_v2_with_controllers() {
    let Some(mount) = unified_mount() else {
        println!("SKIP: no cgroup v2 hierarchy on this host");
        return;
    };
    if has_v1() {
        println!(
            "SKIP: cgroup v2 at {} holds only [{}] next to v1 hierarchies (hybrid); the v2 driver is unit-tested on a fake tree and hugetlb on v2 is tested above",
            mount.display(),
            unified_controllers().join(" ")
        );
        return;
    }
    let id = unique_id("v2");
    let _clean = NoLeftovers(vec![id.clone()]);
    let rt = Runtime::new();
    let mut b = bundle("sleep 300");
    let have = unified_controllers();
    let mut r = json!({});
    if have.iter().any(|c| c == "memory") {
        r["memory"] = json!({"limit": 67108864, "swap": 134217728});
    }
    if have.iter().any(|c| c == "cpu") {
        r["cpu"] = json!({"shares": 1024, "quota": 20000, "period": 100000});
    }
    if have.iter().any(|c| c == "pids") {
        r["pids"] = json!({"limit": 20});
    }
    set_resources(&mut b, r);
    let pid = start(&rt, &id, &b);
    let d = cg_dir(pid, "");
    if have.iter().any(|c| c == "memory") {
        assert_eq!(read(&d, "memory.max"), "67108864");
        if d.join("memory.swap.max").exists() {
            assert_eq!(read(&d, "memory.swap.max"), "67108864");
        }
    }
    if have.iter().any(|c| c == "cpu") {
        assert_eq!(read(&d, "cpu.weight"), "100");
        assert_eq!(read(&d, "cpu.max"), "20000 100000");
    }
    if have.iter().any(|c| c == "pids") {
        assert_eq!(read(&d, "pids.max"), "20");
    }
    rt.ok(&["pause", &id]);
    assert_eq!(read(&d, "cgroup.freeze"), "1");
    assert_eq!(rt.state(&id)["status"], "paused");
    rt.ok(&["resume", &id]);
    assert_eq!(read(&d, "cgroup.freeze"), "0");
}

#[test]
fn delete_cleans_up_after_a_create_that_was_killed() {
    let id = unique_id("killedcg");
    let _clean = NoLeftovers(vec![id.clone()]);
    let rt = Runtime::new();
    let b = bundle("sleep 300");
    create(&rt, &id, &b).unwrap();
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    assert!(!cgroups_named(&id).is_empty());
    // What a create killed after making the cgroups and starting the init leaves: no
    // state.json, but the config copy.
    std::fs::remove_file(rt.root.path().join(&id).join("state.json")).unwrap();
    rt.ok(&["delete", "--force", &id]);
    assert!(cgroups_named(&id).is_empty());
    let t = Instant::now();
    while !dead(pid) {
        assert!(t.elapsed() < Duration::from_secs(5), "init survived");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A cgroup2 mount covered by a tmpfs (as a benchmark hides a hybrid host's unified part) is no
/// hierarchy: Berth runs on the v1 ones and leaves the tmpfs as it was. It used to pass the
/// tmpfs directory to clone3 (CLONE_INTO_CGROUP), which failed with EBADF.
#[test]
fn a_covered_unified_mount_is_not_used() {
    let Some(unified) = unified_mount().filter(|_| has_v1()) else {
        eprintln!("skipped: not a hybrid host");
        return;
    };
    let id = unique_id("covered");
    let _clean = NoLeftovers(vec![id.clone()]);
    let rt = Runtime::new();
    let mut b = bundle("cat /proc/self/cgroup");
    b.without_namespace("cgroup");
    // In a mount namespace of its own, so the tmpfs goes away with it.
    let script = format!(
        "mount --make-rprivate / && mount -t tmpfs tmpfs {u} && \
         \"$0\" --root {root} run --bundle {b} {id}; rc=$?; ls -A {u}; exit $rc",
        u = unified.display(),
        root = rt.root_str(),
        b = b.path_str(),
    );
    rt.track(&id);
    let o = capture(
        Command::new("unshare")
            .args(["-m", "sh", "-c", &script])
            .arg(berth_bin()),
    );
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    // The container's memory cgroup is its own; the tmpfs got nothing.
    let out = stdout(&o);
    assert!(
        out.lines()
            .any(|l| l.contains(":memory:") && l.contains(&id)),
        "{out}"
    );
    assert!(
        !out.lines().any(|l| l == id),
        "a directory in the tmpfs: {out}"
    );
}
