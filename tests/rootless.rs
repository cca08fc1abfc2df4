//! Rootless Berth, run by a real unprivileged user: each test makes a throwaway system user
//! (useradd, with subordinate id ranges), a busybox bundle that user owns, and runs Berth as
//! that user through `setpriv --reuid --regid --init-groups`. The user, its files and every
//! process it still has are removed when the test ends, pass or fail ([`User`]'s Drop).
//!
//! Where runc (1.1.5, /usr/sbin/runc) is installed, the same scenarios run with it as the same
//! user and must come out the same way.
//!
//! Needs root (to make users), util-linux's setpriv, and for the multi-range test Debian's
//! uidmap (newuidmap/newgidmap; scripts/setup-deps.sh installs it). Nothing is installed here.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const RUNC: &str = "/usr/sbin/runc";
/// Subordinate ids given to each user: one 65536-id range of its own.
const SUB_COUNT: u32 = 65536;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A throwaway system user with a home-like directory of its own (`dir`, mode 0755) holding
/// its bundles and state.
struct User {
    name: String,
    uid: u32,
    gid: u32,
    /// The first subordinate uid and gid (`SUB_COUNT` of each).
    sub: u32,
    dir: tempfile::TempDir,
    /// A Berth binary this user may execute.
    berth: PathBuf,
}

/// Runs a shadow tool (useradd, usermod, userdel), retrying while another one holds the lock
/// on /etc/passwd (other tests, other users of the machine).
fn shadow(tool: &str, args: &[&str]) -> Output {
    let mut last = None;
    for _ in 0..100 {
        let o = Command::new(tool)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{tool}: {e}"));
        // 10: "cannot lock /etc/passwd" (useradd, userdel); usermod says 10 or 1 with "lock".
        let locked = !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("lock");
        if !locked {
            return o;
        }
        last = Some(o);
        std::thread::sleep(Duration::from_millis(50));
    }
    last.expect("tried")
}

fn have(tool: &str) -> bool {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .any(|d| Path::new(d).join(tool).exists())
}

impl User {
    /// A new user, or None (with a SKIP line) when this machine cannot make one.
    fn new(test: &str) -> Option<User> {
        if !nix::unistd::geteuid().is_root() {
            println!("SKIP: {test}: needs root to create a throwaway user");
            return None;
        }
        for t in ["useradd", "usermod", "userdel", "setpriv"] {
            if !have(t) {
                println!("SKIP: {test}: {t} is not installed");
                return None;
            }
        }
        let seq = SEQ.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let name = format!("brl{pid}x{seq}");
        let o = shadow(
            "useradd",
            &[
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                &name,
            ],
        );
        assert!(o.status.success(), "useradd {name}: {o:?}");
        // From here on Drop removes the user whatever happens.
        let dir = tempfile::Builder::new()
            .prefix("berth-rootless-")
            .tempdir()
            .expect("temp dir");
        let mut u = User {
            name,
            uid: 0,
            gid: 0,
            sub: 65536 * (100 + (pid % 1000) * 8 + seq % 8),
            dir,
            berth: berth_bin(),
        };
        let id = |flag: &str| -> u32 {
            let o = Command::new("id").args([flag, &u.name]).output().unwrap();
            String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
        };
        u.uid = id("-u");
        u.gid = id("-g");
        let range = format!("{}-{}", u.sub, u.sub + SUB_COUNT - 1);
        let o = shadow(
            "usermod",
            &["--add-subuids", &range, "--add-subgids", &range, &u.name],
        );
        assert!(o.status.success(), "usermod --add-subuids {range}: {o:?}");
        chown_tree(u.dir.path(), u.uid, u.gid);
        std::fs::set_permissions(u.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        // The test binary may sit below a directory this user cannot enter: then a copy.
        if !u
            .cmd(Path::new("/bin/sh"))
            .args(["-c", "test -x \"$0\""])
            .arg(&u.berth)
            .status()
            .unwrap()
            .success()
        {
            let copy = u.dir.path().join("berth");
            std::fs::copy(&u.berth, &copy).unwrap();
            std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
            u.berth = copy;
        }
        Some(u)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The `--root` the tests give Berth (and runc, with `rroot`).
    fn root(&self) -> PathBuf {
        self.path("root")
    }

    /// `PROG` run as this user, with a clean environment.
    fn cmd(&self, prog: &Path) -> Command {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid",
            &self.uid.to_string(),
            "--regid",
            &self.gid.to_string(),
            "--init-groups",
            "--",
        ])
        .arg(prog)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", self.dir.path())
        .current_dir(self.dir.path())
        .stdin(Stdio::null());
        c
    }

    /// `berth --root ROOT ARGS…` as this user.
    fn berth(&self, args: &[&str]) -> Output {
        capture(
            self.cmd(&self.berth)
                .arg("--root")
                .arg(self.root())
                .args(args),
        )
    }

    fn berth_ok(&self, args: &[&str]) -> String {
        let o = self.berth(args);
        assert!(o.status.success(), "berth {args:?} as {}: {o:?}", self.name);
        stdout(&o)
    }

    /// `runc --root RROOT ARGS…` as this user, or None when runc is not installed.
    fn runc(&self, args: &[&str]) -> Option<Output> {
        if !Path::new(RUNC).exists() {
            println!("SKIP: the runc comparison: {RUNC} is not installed");
            return None;
        }
        let root = self.path("rroot");
        Some(capture(
            self.cmd(Path::new(RUNC)).arg("--root").arg(root).args(args),
        ))
    }

    /// A busybox bundle this user owns, its config written by `berth spec --rootless` run as
    /// this user, running `sh -c SCRIPT` without a terminal.
    fn bundle(&self, name: &str, script: &str) -> PathBuf {
        let b = self.path(name);
        make_busybox_rootfs(&b.join("rootfs"));
        chown_tree(&b, self.uid, self.gid);
        let o = capture(
            self.cmd(&self.berth)
                .args(["spec", "--rootless", "--bundle"])
                .arg(&b),
        );
        assert!(o.status.success(), "berth spec --rootless: {o:?}");
        edit(&b, |c| {
            c["process"]["terminal"] = json!(false);
            c["process"]["args"] = json!(["sh", "-c", script]);
        });
        b
    }

    /// This user's live processes (pid), and those of its subordinate uids, from /proc.
    fn processes(&self) -> Vec<i32> {
        let (first, end) = (self.sub, self.sub + SUB_COUNT);
        processes_where(|uid| uid == self.uid || (first..end).contains(&uid))
    }

    /// Asserts that nothing of container `id` is left: no state directory under `root`, no
    /// process of this user, no mount of the bundle's.
    fn assert_clean(&self, root: &Path, id: &str, bundle: &Path) {
        assert!(
            !root.join(id).exists(),
            "state directory {} left behind",
            root.join(id).display()
        );
        assert!(
            wait_until(SECS5, || self.processes().is_empty()),
            "processes of {} left behind: {:?}",
            self.name,
            self.processes()
        );
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let b = bundle.to_string_lossy();
        assert!(
            !mounts.lines().any(|l| l.contains(b.as_ref())),
            "a mount of {b} left behind"
        );
    }
}

impl Drop for User {
    fn drop(&mut self) {
        // Every process the user still has, by pid (only this user's), then the user itself.
        for _ in 0..50 {
            let left = self.processes();
            if left.is_empty() {
                break;
            }
            for p in left {
                // SAFETY: kill(2) with integer arguments.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let range = format!("{}-{}", self.sub, self.sub + SUB_COUNT - 1);
        let _ = shadow(
            "usermod",
            &["--del-subuids", &range, "--del-subgids", &range, &self.name],
        );
        let o = shadow("userdel", &[&self.name]);
        if !o.status.success() {
            eprintln!("userdel {}: {o:?}", self.name);
        }
        // The files go with `dir` (a TempDir, removed by root).
    }
}

/// Live processes with any uid (real, effective, saved, fs) for which `owned` holds.
fn processes_where(owned: impl Fn(u32) -> bool) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if status_ids(pid, "Uid:").into_iter().any(&owned) && pid_alive(pid) {
            out.push(pid);
        }
    }
    out
}

/// The four ids of a `Uid:` or `Gid:` line of /proc/PID/status.
fn status_ids(pid: i32, key: &str) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| {
            v.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn chown_tree(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
    let m = std::fs::symlink_metadata(p).unwrap();
    if m.is_dir() {
        for e in std::fs::read_dir(p).unwrap().flatten() {
            chown_tree(&e.path(), uid, gid);
        }
    }
}

fn edit(bundle: &Path, f: impl FnOnce(&mut Value)) {
    let path = bundle.join("config.json");
    let mut c: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    f(&mut c);
    std::fs::write(&path, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
}

fn b(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The lines of /proc/PID/uid_map (three numbers) in `text`, in fields.
fn map_fields(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() == 3 && f.iter().all(|x| x.parse::<u64>().is_ok())
        })
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[test]
fn spec_rootless_and_run_as_an_unprivileged_user() {
    let Some(u) = User::new("spec_rootless_and_run_as_an_unprivileged_user") else {
        return;
    };
    let script = "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map; \
                  grep -E '^Cap(Eff|Bnd)' /proc/self/status";
    let bundle = u.bundle("b1", script);
    let id = "r1";
    let o = u.berth(&["run", "--bundle", b(&bundle), id]);
    assert!(o.status.success(), "run as {}: {o:?}", u.name);
    let out = stdout(&o);
    let l = lines(&out);
    assert_eq!(&l[..2], ["0", "0"], "uid and gid inside: {out}");
    let uid = u.uid.to_string();
    let gid = u.gid.to_string();
    assert_eq!(
        map_fields(&out),
        vec![
            vec!["0".to_string(), uid, "1".into()],
            vec!["0".into(), gid, "1".into()]
        ],
        "{out}"
    );
    u.assert_clean(&u.root(), id, &bundle);
    // The state root is the user's alone.
    let m = std::fs::metadata(u.root()).unwrap();
    assert_eq!(
        (m.mode() & 0o7777, m.uid()),
        (0o700, u.uid),
        "--root mode and owner"
    );

    // runc, as the same user on the same bundle, sees the same.
    if let Some(r) = u.runc(&["run", "--bundle", b(&bundle), "rc1"]) {
        assert!(r.status.success(), "runc run as {}: {r:?}", u.name);
        assert_eq!(
            map_fields(&stdout(&r)),
            map_fields(&out),
            "runc: {}",
            stdout(&r)
        );
        assert_eq!(&lines(&stdout(&r))[..2], ["0", "0"]);
        u.assert_clean(&u.path("rroot"), "rc1", &bundle);
    }
}

#[test]
fn lifecycle_as_an_unprivileged_user() {
    let Some(u) = User::new("lifecycle_as_an_unprivileged_user") else {
        return;
    };
    let bundle = u.bundle("b2", "exec sleep 1000");
    let id = "lc";
    u.berth_ok(&["create", "--bundle", b(&bundle), id]);
    let st: Value = serde_json::from_str(&u.berth_ok(&["state", id])).unwrap();
    assert_eq!(st["status"], "created");
    let pid = st["pid"].as_i64().unwrap() as i32;
    // On the host the container's init is the user: every uid and gid of it.
    assert_eq!(status_ids(pid, "Uid:"), vec![u.uid; 4]);
    assert_eq!(status_ids(pid, "Gid:"), vec![u.gid; 4]);
    assert!(u.berth_ok(&["list", "-q"]).lines().any(|l| l == id));
    u.berth_ok(&["start", id]);
    let st: Value = serde_json::from_str(&u.berth_ok(&["state", id])).unwrap();
    assert_eq!(st["status"], "running");
    // exec joins the user namespace the user owns: uid 0 there, the same map.
    let out = u.berth_ok(&["exec", id, "sh", "-c", "id -u; cat /proc/self/uid_map"]);
    let uid = u.uid.to_string();
    assert_eq!(lines(&out)[0], "0", "{out}");
    assert_eq!(
        map_fields(&out),
        vec![vec!["0".to_string(), uid, "1".into()]]
    );
    // A detached exec'd process, then `kill --all TERM`: without a cgroup the processes of the
    // container's pid namespace are signalled. The init (a pid 1 without a TERM handler)
    // survives; the other one does not.
    let pf = u.path("exec.pid");
    u.berth_ok(&["exec", "-d", "--pid-file", b(&pf), id, "sleep", "2000"]);
    let epid: i32 = std::fs::read_to_string(&pf)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(pid_alive(epid));
    assert_eq!(status_ids(epid, "Uid:"), vec![u.uid; 4]);
    // ps lists both, without a cgroup (runc 1.1.5's fails there).
    let listed: Vec<i32> =
        serde_json::from_str(&u.berth_ok(&["ps", "--format", "json", id])).unwrap();
    assert_eq!(listed, {
        let mut v = vec![pid, epid];
        v.sort();
        v
    });
    u.berth_ok(&["kill", "--all", id, "TERM"]);
    assert!(
        wait_until(SECS5, || !pid_alive(epid)),
        "kill --all missed {epid}"
    );
    assert!(pid_alive(pid), "the init ignores TERM as pid 1");
    u.berth_ok(&["kill", id, "KILL"]);
    assert!(wait_until(SECS5, || {
        serde_json::from_str::<Value>(&u.berth_ok(&["state", id])).unwrap()["status"] == "stopped"
    }));
    u.berth_ok(&["delete", id]);
    assert_eq!(u.berth_ok(&["list", "-q"]).trim(), "");
    u.assert_clean(&u.root(), id, &bundle);
}

#[test]
fn the_default_root_is_xdg_runtime_dir_or_a_clear_error() {
    let Some(u) = User::new("the_default_root_is_xdg_runtime_dir_or_a_clear_error") else {
        return;
    };
    let bundle = u.bundle("b3", "exec sleep 1000");
    let xdg = u.path("xdg");
    std::fs::create_dir(&xdg).unwrap();
    chown_tree(&xdg, u.uid, u.gid);
    std::fs::set_permissions(&xdg, std::fs::Permissions::from_mode(0o700)).unwrap();
    let berth = |args: &[&str], xdg: Option<&Path>| {
        let mut c = u.cmd(&u.berth);
        if let Some(x) = xdg {
            c.env("XDG_RUNTIME_DIR", x);
        }
        capture(c.args(args))
    };
    let o = berth(&["create", "--bundle", b(&bundle), "x1"], Some(&xdg));
    assert!(o.status.success(), "{o:?}");
    let root = xdg.join("berth");
    assert!(
        root.join("x1").is_dir(),
        "state under $XDG_RUNTIME_DIR/berth"
    );
    let m = std::fs::metadata(&root).unwrap();
    assert_eq!((m.mode() & 0o777, m.uid()), (0o700, u.uid));
    let o = berth(&["list", "-q"], Some(&xdg));
    assert_eq!(stdout(&o).trim(), "x1");
    // Without XDG_RUNTIME_DIR (and no --root): one line saying what to do, for every command
    // that needs a root, and nothing done.
    for args in [
        &["list"][..],
        &["state", "x1"],
        &["delete", "--force", "x1"],
    ] {
        let o = berth(args, None);
        assert_one_error_line(&o, &["--root", "XDG_RUNTIME_DIR"]);
    }
    assert!(root.join("x1").is_dir());
    // An XDG_RUNTIME_DIR that is not a directory: said so.
    let o = berth(&["list"], Some(Path::new("/nonexistent-xdg")));
    assert_one_error_line(&o, &["XDG_RUNTIME_DIR=/nonexistent-xdg"]);
    // `spec` needs no root.
    let o = capture(
        u.cmd(&u.berth)
            .args(["spec", "--rootless", "--bundle"])
            .arg(u.dir.path()),
    );
    assert!(o.status.success(), "{o:?}");
    let o = berth(&["delete", "--force", "x1"], Some(&xdg));
    assert!(o.status.success(), "{o:?}");
    u.assert_clean(&root, "x1", &bundle);
    // runc: without XDG_RUNTIME_DIR it falls back to /run/runc and fails there too.
    if Path::new(RUNC).exists() {
        let o = capture(u.cmd(Path::new(RUNC)).args(["state", "x1"]));
        assert!(!o.status.success(), "{o:?}");
    }
}

#[test]
fn resources_without_a_writable_cgroup_are_refused_naming_the_field() {
    let test = "resources_without_a_writable_cgroup_are_refused_naming_the_field";
    let Some(u) = User::new(test) else { return };
    let bundle = u.bundle("b4", "true");
    edit(&bundle, |c| {
        c["linux"]["resources"] = json!({"memory": {"limit": 67108864}});
    });
    let o = u.berth(&["run", "--bundle", b(&bundle), "m1"]);
    assert_one_error_line(
        &o,
        &["linux.resources.memory.limit", "rootless", "not writable"],
    );
    u.assert_clean(&u.root(), "m1", &bundle);
    // runc 1.1.5 refuses it too ("cannot set memory limit: container could not join or
    // create cgroup").
    if let Some(r) = u.runc(&["run", "--bundle", b(&bundle), "m1"]) {
        assert!(!r.status.success(), "runc: {r:?}");
        u.assert_clean(&u.path("rroot"), "m1", &bundle);
    }
    // Device rules alone ask for nothing a rootless container can have: it runs (as runc's).
    edit(&bundle, |c| {
        c["linux"]["resources"] = json!({"devices": [{"allow": false, "access": "rwm"}]});
    });
    let o = u.berth(&["run", "--bundle", b(&bundle), "m2"]);
    assert!(o.status.success(), "{o:?}");
    u.assert_clean(&u.root(), "m2", &bundle);
}

#[test]
fn rootless_false_keeps_cgroup_permission_errors() {
    let Some(u) = User::new("rootless_false_keeps_cgroup_permission_errors") else {
        return;
    };
    let bundle = u.bundle("b5", "true");
    let o = capture(u.cmd(&u.berth).arg("--root").arg(u.root()).args([
        "--rootless",
        "false",
        "run",
        "--bundle",
        b(&bundle),
        "f1",
    ]));
    assert_one_error_line(&o, &["cgroup", "Permission denied"]);
    u.assert_clean(&u.root(), "f1", &bundle);
    // `true` and `auto` (and no flag) run it; a value that is none of them is refused.
    for v in ["true", "auto"] {
        let o = capture(u.cmd(&u.berth).arg("--root").arg(u.root()).args([
            "--rootless",
            v,
            "run",
            "--bundle",
            b(&bundle),
            "f2",
        ]));
        assert!(o.status.success(), "--rootless {v}: {o:?}");
    }
    let o = u.berth(&["--rootless", "maybe", "list"]);
    assert_one_error_line(&o, &["--rootless \"maybe\"", "true, false or auto"]);
    u.assert_clean(&u.root(), "f2", &bundle);
    if let Some(r) = u.runc(&["--rootless", "false", "run", "--bundle", b(&bundle), "f1"]) {
        assert!(!r.status.success(), "runc --rootless false: {r:?}");
        u.assert_clean(&u.path("rroot"), "f1", &bundle);
    }
}

/// The mapping of a multi-range test: the user's own id as 0, its subordinate range from 1.
fn multi_range(own: u32, sub: u32) -> Value {
    json!([
        {"containerID": 0, "hostID": own, "size": 1},
        {"containerID": 1, "hostID": sub, "size": SUB_COUNT}
    ])
}

#[test]
fn multi_range_mappings_go_through_newuidmap() {
    let test = "multi_range_mappings_go_through_newuidmap";
    if !have("newuidmap") || !have("newgidmap") {
        println!("SKIP: {test}: newuidmap/newgidmap are not installed (Debian package uidmap)");
        return;
    }
    let Some(u) = User::new(test) else { return };
    let out = u.path("out");
    std::fs::create_dir(&out).unwrap();
    chown_tree(&out, u.uid, u.gid);
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
    let bundle = u.bundle("b6", "true");
    edit(&bundle, |c| {
        c["linux"]["uidMappings"] = multi_range(u.uid, u.sub);
        c["linux"]["gidMappings"] = multi_range(u.gid, u.sub);
        c["process"]["user"] = json!({"uid": 1000, "gid": 1000});
        c["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/out", "type": "bind", "source": out, "options": ["rbind", "rw"]}));
    });
    let script = "id -u; cat /proc/self/uid_map /proc/self/gid_map; touch /out/f-$0";
    let run = |runtime: &str, args: &[&str]| -> Option<Output> {
        edit(&bundle, |c| {
            c["process"]["args"] = json!(["sh", "-c", script, runtime]);
        });
        if runtime == "berth" {
            Some(u.berth(args))
        } else {
            u.runc(args)
        }
    };
    let o = run("berth", &["run", "--bundle", b(&bundle), "mr1"]).unwrap();
    assert!(o.status.success(), "{o:?}");
    let text = stdout(&o);
    assert_eq!(lines(&text)[0], "1000", "{text}");
    let maps = map_fields(&text);
    let want = |own: u32| {
        vec![
            vec!["0".to_string(), own.to_string(), "1".into()],
            vec!["1".to_string(), u.sub.to_string(), SUB_COUNT.to_string()],
        ]
    };
    assert_eq!(maps[..2], want(u.uid)[..], "{text}");
    assert_eq!(maps[2..], want(u.gid)[..], "{text}");
    // uid 1000 inside is subordinate uid sub+999 outside.
    let m = std::fs::metadata(out.join("f-berth")).unwrap();
    assert_eq!((m.uid(), m.gid()), (u.sub + 999, u.sub + 999));
    u.assert_clean(&u.root(), "mr1", &bundle);
    if let Some(r) = run("runc", &["run", "--bundle", b(&bundle), "mr1"]) {
        assert!(r.status.success(), "runc: {r:?}");
        assert_eq!(map_fields(&stdout(&r)), maps);
        let m = std::fs::metadata(out.join("f-runc")).unwrap();
        assert_eq!((m.uid(), m.gid()), (u.sub + 999, u.sub + 999));
        u.assert_clean(&u.path("rroot"), "mr1", &bundle);
    }
}

#[test]
fn a_mapping_the_user_may_not_make_names_it_before_any_side_effect() {
    let test = "a_mapping_the_user_may_not_make_names_it_before_any_side_effect";
    let Some(u) = User::new(test) else { return };
    let bundle = u.bundle("b7", "true");
    // One range past the end of the user's subordinate uids.
    edit(&bundle, |c| {
        c["linux"]["uidMappings"] = multi_range(u.uid, u.sub + 1);
    });
    let o = u.berth(&["run", "--bundle", b(&bundle), "nm1"]);
    assert_one_error_line(
        &o,
        &["linux.uidMappings[1]: host ids", "are not yours to map"],
    );
    assert!(!u.root().exists(), "not even the state root is made");
    u.assert_clean(&u.root(), "nm1", &bundle);
    // Another user's gid, alone.
    edit(&bundle, |c| {
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": u.uid, "size": 1}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 1}]);
    });
    let o = u.berth(&["run", "--bundle", b(&bundle), "nm2"]);
    assert_one_error_line(&o, &["linux.gidMappings[0]: host ids 0-0"]);
    u.assert_clean(&u.root(), "nm2", &bundle);
    if let Some(r) = u.runc(&["run", "--bundle", b(&bundle), "nm2"]) {
        assert!(!r.status.success(), "runc maps another user's gid? {r:?}");
        u.assert_clean(&u.path("rroot"), "nm2", &bundle);
    }
}

#[test]
fn a_rootless_user_cannot_touch_roots_containers() {
    let test = "a_rootless_user_cannot_touch_roots_containers";
    let Some(u) = User::new(test) else { return };
    // root's container, in a root-owned --root opened up to everyone (0755): each container's
    // own directory and state still keep the user out.
    let rt = Runtime::new();
    std::fs::set_permissions(rt.root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bundle = Bundle::sh("exec sleep 1000");
    let id = unique_id("rootc");
    rt.track(&id);
    rt.ok(&[
        "run",
        "-d",
        "--bundle",
        bundle.path().to_str().unwrap(),
        &id,
    ]);
    let pid = rt.pid(&id);
    let root = rt.root.path().to_str().unwrap().to_string();
    let as_user = |args: &[&str]| capture(u.cmd(&u.berth).arg("--root").arg(&root).args(args));
    for args in [
        &["state", &id][..],
        &["kill", &id, "KILL"],
        &["kill", "--all", &id, "KILL"],
        &["delete", "--force", &id],
        &["exec", &id, "true"],
        &["pause", &id],
    ] {
        let o = as_user(args);
        assert_one_error_line(&o, &["Permission denied"]);
    }
    // Nor with the signal itself.
    let o = capture(
        u.cmd(Path::new("/bin/sh"))
            .arg("-c")
            .arg(format!("kill -9 {pid}")),
    );
    assert!(!o.status.success(), "the user signalled root's init: {o:?}");
    assert!(pid_alive(pid));
    assert_eq!(rt.status(&id), "running");
    // A root-owned 0700 root: the user cannot even list it.
    std::fs::set_permissions(rt.root.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_one_error_line(&as_user(&["list"]), &["Permission denied"]);
    rt.ok(&["delete", "--force", &id]);
}

/// A cgroup directory in every hierarchy, handed to a user (chowned, as a delegated subtree);
/// removed on drop, after killing what is left in it.
struct Delegation {
    dirs: Vec<PathBuf>,
}

impl Delegation {
    fn new(u: &User, name: &str) -> Delegation {
        let mut d = Delegation { dirs: vec![] };
        for h in cgroup_hierarchies() {
            let dir = h.join(name);
            std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
            d.dirs.push(dir.clone());
            // A v1 cpuset cgroup starts empty: give it its parent's cpus and mems.
            for f in ["cpuset.cpus", "cpuset.mems"] {
                if let Ok(v) = std::fs::read_to_string(h.join(f)) {
                    std::fs::write(dir.join(f), v.trim()).unwrap();
                }
            }
            chown_tree(&dir, u.uid, u.gid);
        }
        d
    }

    /// `cmd` (a `setpriv …` command), started by a root shell that first moves itself into the
    /// delegated cgroups: the user's Berth runs there, and places containers below.
    fn wrap(&self, cmd: &Command) -> Command {
        let mut script = String::new();
        for d in &self.dirs {
            script.push_str(&format!(
                "echo $$ > {}/cgroup.procs || exit 99; ",
                d.display()
            ));
        }
        script.push_str("exec \"$@\"");
        let mut c = Command::new("/bin/sh");
        c.arg("-c")
            .arg(script)
            .arg("sh")
            .arg(cmd.get_program())
            .args(cmd.get_args())
            .env_clear()
            .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))))
            .stdin(Stdio::null());
        if let Some(dir) = cmd.get_current_dir() {
            c.current_dir(dir);
        }
        c
    }
}

impl Drop for Delegation {
    fn drop(&mut self) {
        // A frozen process does not die of SIGKILL until thawed: thaw everything first.
        for d in &self.dirs {
            let mut all = vec![d.clone()];
            if let Ok(rd) = std::fs::read_dir(d) {
                all.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
            }
            for s in all {
                let _ = std::fs::write(s.join("freezer.state"), "THAWED");
                let _ = std::fs::write(s.join("cgroup.freeze"), "0");
            }
        }
        for d in self.dirs.iter().rev() {
            let mut sub: Vec<PathBuf> = vec![d.clone()];
            if let Ok(rd) = std::fs::read_dir(d) {
                sub.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
            }
            for s in sub.iter().rev() {
                for _ in 0..50 {
                    let procs = std::fs::read_to_string(s.join("cgroup.procs")).unwrap_or_default();
                    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                        // SAFETY: kill(2) with integer arguments.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                    if std::fs::remove_dir(s).is_ok() || !s.exists() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}

#[test]
fn a_delegated_cgroup_is_used_with_its_limits() {
    let test = "a_delegated_cgroup_is_used_with_its_limits";
    let Some(u) = User::new(test) else { return };
    let Some(memory) = cgroup_hierarchies()
        .into_iter()
        .find(|h| h.ends_with("memory"))
    else {
        println!("SKIP: {test}: no v1 memory hierarchy (the check reads memory.limit_in_bytes)");
        return;
    };
    let name = format!("berth-rootless-{}", u.name);
    let deleg = Delegation::new(&u, &name);
    let bundle = u.bundle("b8", "exec sleep 1000");
    edit(&bundle, |c| {
        c["linux"]["resources"] = json!({"memory": {"limit": 67108864},
            "devices": [{"allow": false, "access": "rwm"}]});
    });
    let berth = |args: &[&str]| {
        let mut c = u.cmd(&u.berth);
        c.arg("--root").arg(u.root()).args(args);
        capture(&mut deleg.wrap(&c))
    };
    let o = berth(&["create", "--bundle", b(&bundle), "dg"]);
    assert!(o.status.success(), "create in a delegated cgroup: {o:?}");
    // Relative to Berth's own cgroup (the delegated one), as for root.
    let dir = memory.join(&name).join("dg");
    let limit = std::fs::read_to_string(dir.join("memory.limit_in_bytes")).unwrap();
    assert_eq!(limit.trim(), "67108864");
    let st: Value = serde_json::from_str(&stdout(&berth(&["state", "dg"]))).unwrap();
    let pid = st["pid"].as_i64().unwrap();
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap();
    assert!(procs.lines().any(|l| l == pid.to_string()), "{procs}");
    // With a cgroup, pause works rootless too.
    let o = berth(&["start", "dg"]);
    assert!(o.status.success(), "start: {o:?}");
    let o = berth(&["pause", "dg"]);
    assert!(o.status.success(), "pause: {o:?}");
    let st: Value = serde_json::from_str(&stdout(&berth(&["state", "dg"]))).unwrap();
    assert_eq!(st["status"], "paused");
    let o = berth(&["delete", "--force", "dg"]);
    assert!(o.status.success(), "delete: {o:?}");
    assert!(!dir.exists(), "the container's cgroup is removed");
    u.assert_clean(&u.root(), "dg", &bundle);
}

#[test]
fn uid_0_of_a_user_namespace_is_rootless_too() {
    // How rootless podman calls its runtime: inside a user namespace it made, as its uid 0.
    let test = "uid_0_of_a_user_namespace_is_rootless_too";
    if !have("unshare") {
        println!("SKIP: {test}: unshare (util-linux) is not installed");
        return;
    }
    let Some(u) = User::new(test) else { return };
    let bundle = u.bundle("b9", "exec sleep 1000");
    edit(&bundle, |c| {
        let l = &mut c["linux"];
        l.as_object_mut().unwrap().remove("uidMappings");
        l.as_object_mut().unwrap().remove("gidMappings");
        l["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|n| n["type"] != "user");
    });
    let xdg = u.path("xdg");
    std::fs::create_dir(&xdg).unwrap();
    chown_tree(&xdg, u.uid, u.gid);
    // One user namespace made by `unshare -r` (the same ids mapped), as podman keeps one for
    // all its commands: uid 0 there, no --root, XDG_RUNTIME_DIR honoured (USER is not root),
    // no cgroup.
    let script = r#"B=$0; set -e
        # The init keeps create's stdio: a file, not a pipe.
        $B --debug create --bundle "$1" ns0 >"$XDG_RUNTIME_DIR/create.log" 2>&1
        grep -o 'rootless mode: true' "$XDG_RUNTIME_DIR/create.log"
        test -d "$XDG_RUNTIME_DIR/berth/ns0" && echo state-in-xdg
        $B start ns0
        $B exec ns0 sh -c 'echo exec-uid=$(id -u); cat /proc/self/uid_map'
        $B kill ns0 KILL
        $B delete --force ns0
        echo done"#;
    let o = capture(
        u.cmd(Path::new("/usr/bin/unshare"))
            .args(["--user", "--map-root-user", "--", "/bin/sh", "-c", script])
            .arg(&u.berth)
            .arg(&bundle)
            .env("XDG_RUNTIME_DIR", &xdg)
            .env("USER", &u.name),
    );
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    for want in ["rootless mode: true", "state-in-xdg", "exec-uid=0", "done"] {
        assert!(out.contains(want), "{want:?} missing: {out}");
    }
    let maps = map_fields(&out);
    assert_eq!(
        maps,
        vec![vec!["0".to_string(), u.uid.to_string(), "1".into()]]
    );
    u.assert_clean(&xdg.join("berth"), "ns0", &bundle);
}

#[test]
fn seccomp_hooks_and_capabilities_work_rootless() {
    let test = "seccomp_hooks_and_capabilities_work_rootless";
    let Some(u) = User::new(test) else { return };
    let out = u.path("hooks.out");
    let bundle = u.bundle(
        "b10",
        "grep -E '^(Seccomp|CapEff):' /proc/self/status; unshare -U true; echo unshare=$?",
    );
    let hook = |tag: &str| {
        json!({"path": "/bin/sh",
               "args": ["sh", "-c", format!("echo {tag} $(id -u) >> {}", out.display())]})
    };
    edit(&bundle, |c| {
        c["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["unshare"], "action": "SCMP_ACT_ERRNO"}]});
        c["hooks"] =
            json!({"createRuntime": [hook("createRuntime")], "poststop": [hook("poststop")]});
    });
    let o = u.berth(&["run", "--bundle", b(&bundle), "sh1"]);
    assert!(o.status.success(), "{o:?}");
    let text = stdout(&o);
    assert!(text.contains("Seccomp:\t2"), "a filter is loaded: {text}");
    assert!(
        text.contains("unshare=1"),
        "unshare is refused by it: {text}"
    );
    // The spec's three capabilities, within the user namespace (CAP_AUDIT_WRITE, CAP_KILL,
    // CAP_NET_BIND_SERVICE: 0x20000420).
    assert!(text.contains("CapEff:\t0000000020000420"), "{text}");
    // Hooks run on the host, as the user.
    let hooks = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        lines(&hooks),
        [
            format!("createRuntime {}", u.uid),
            format!("poststop {}", u.uid)
        ]
    );
    u.assert_clean(&u.root(), "sh1", &bundle);
    // The compiled filter is cached in the user's own cache directory ($HOME/.cache here),
    // mode 0700, and the next run finds it there.
    let cache = u.path(".cache/berth/seccomp");
    let m = std::fs::metadata(&cache).expect("seccomp cache in $HOME/.cache");
    assert_eq!((m.mode() & 0o777, m.uid()), (0o700, u.uid));
    let entries = || -> Vec<(PathBuf, u64, i64)> {
        let mut v: Vec<_> = std::fs::read_dir(&cache)
            .unwrap()
            .flatten()
            .map(|e| {
                let m = e.metadata().unwrap();
                (e.path(), m.ino(), m.mtime_nsec())
            })
            .collect();
        v.sort();
        v
    };
    let before = entries();
    assert!(!before.is_empty(), "an entry");
    let o = u.berth(&["run", "--bundle", b(&bundle), "sh2"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(entries(), before, "read from the cache, not written again");
    u.assert_clean(&u.root(), "sh2", &bundle);
}

#[test]
fn devices_are_bind_mounted_from_the_host() {
    let test = "devices_are_bind_mounted_from_the_host";
    if !Path::new("/dev/fuse").exists() {
        println!("SKIP: {test}: the host has no /dev/fuse to bind");
        return;
    }
    let Some(u) = User::new(test) else { return };
    let script = "stat -c '%n %F %t:%T' /dev/null /dev/fuse; echo x > /dev/null && echo null-ok";
    let bundle = u.bundle("b11", script);
    edit(&bundle, |c| {
        c["linux"]["devices"] =
            json!([{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]);
    });
    let o = u.berth(&["run", "--bundle", b(&bundle), "dv1"]);
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    // No mknod in a user namespace: the host's nodes, bound.
    for want in [
        "/dev/null character special file 1:3",
        "/dev/fuse character special file a:e5",
        "null-ok",
    ] {
        assert!(out.contains(want), "{want:?} missing: {out}");
    }
    u.assert_clean(&u.root(), "dv1", &bundle);
    if let Some(r) = u.runc(&["run", "--bundle", b(&bundle), "dv1"]) {
        assert!(r.status.success(), "runc: {r:?}");
        assert_eq!(lines(&stdout(&r)), lines(&out), "runc");
        u.assert_clean(&u.path("rroot"), "dv1", &bundle);
    }
}
