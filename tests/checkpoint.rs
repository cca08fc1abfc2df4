//! `checkpoint` and `restore` with a real CRIU (CRIU 4.1 or later: scripts/setup-deps.sh builds
//! it): a busybox container counting into /out/count is checkpointed (its processes gone, state
//! `stopped`), restored (the count goes on from where it stopped, not from zero), exec'd into,
//! and deleted without traces. Without a working CRIU every test says `SKIP` and checks the
//! error path instead. Containers run with stdio on /dev/null: CRIU cannot dump a file of the
//! host's mount namespace held open by the container (see `failed_checkpoint_…`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const COUNTER: &str =
    "echo kept > /tmp/marker; i=0; while [ ! -e /out/stop ]; do i=$((i+1)); echo $i > /out/count.new; mv /out/count.new /out/count; sleep 0.05; done; exit 7";

/// Whether the CRIU on PATH works here; otherwise prints why and checks that `features` says
/// checkpointing is not available.
fn criu_or_skip(test: &str) -> bool {
    let ok = Command::new("criu")
        .arg("check")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        println!(
            "SKIP: {test}: no working CRIU on PATH (`criu check` fails or criu is missing; scripts/setup-deps.sh builds CRIU 4.1.1)"
        );
        let f: serde_json::Value = serde_json::from_str(&Runtime::new().ok(&["features"])).unwrap();
        assert_eq!(
            f["annotations"]["org.opencontainers.runc.checkpoint.enabled"],
            "false"
        );
    }
    ok
}

fn counter_bundle() -> Bundle {
    let mut b = sh(COUNTER);
    b.edit(|c| {
        c["linux"]["resources"]["memory"] = serde_json::json!({ "limit": 64 << 20 });
        // A tmpfs, whose contents CRIU keeps in the images (the bind mount is /out).
        c["mounts"].as_array_mut().unwrap().push(serde_json::json!({
            "destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
            "options": ["nosuid", "nodev", "size=1m"]
        }));
    });
    b
}

/// A berth command with its (and the container's) stdio on /dev/null; waits for it.
fn quiet(rt: &Runtime, args: &[&str]) -> std::process::ExitStatus {
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut c = rt.cmd();
    c.arg("--log")
        .arg(log.path())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = c.spawn().expect("spawn berth");
    let mut status = None;
    wait_until(Duration::from_secs(30), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    let status = status.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("berth {args:?} did not finish within 30 s")
    });
    if !status.success() {
        eprintln!(
            "berth {args:?}: {status}: {}",
            std::fs::read_to_string(log.path()).unwrap_or_default()
        );
    }
    status
}

fn run_detached(rt: &Runtime, id: &str, b: &Bundle) {
    rt.track(id);
    assert!(quiet(rt, &["run", "-d", "--bundle", b.path_str(), id]).success());
}

fn count(b: &Bundle) -> u64 {
    let mut n = None;
    wait_until(SECS5, || {
        n = std::fs::read_to_string(b.out().join("count"))
            .ok()
            .and_then(|s| s.trim().parse().ok());
        n.is_some()
    });
    n.expect("/out/count holds a number")
}

fn wait_count_above(b: &Bundle, n: u64) -> u64 {
    let mut last = 0;
    let moved = wait_until(SECS10, || {
        last = count(b);
        last > n
    });
    assert!(moved, "the counter did not go past {n} (last {last})");
    last
}

/// A counter container running, detached, as `name-N`.
fn started(rt: &Runtime, name: &str) -> (Bundle, String) {
    let b = counter_bundle();
    let id = unique_id(name);
    run_detached(rt, &id, &b);
    (b, id)
}

/// `delete --force`, then nothing of the container may be left.
fn delete_clean(rt: &Runtime, id: &str, b: &Bundle) {
    rt.ok(&["delete", "--force", id]);
    assert_nothing_left(rt, id, b);
}

/// The container is running with the same init and still counts; then it is deleted, and
/// nothing of it is left.
fn still_counting_then_delete(rt: &Runtime, id: &str, b: &Bundle, pid: i32) {
    assert_eq!(rt.status(id), "running");
    assert_eq!(rt.pid(id), pid);
    let n = count(b);
    wait_count_above(b, n); // thawed: still counting
    delete_clean(rt, id, b);
}

/// `restore -d --image-path IMG -b BUNDLE ID`.
fn restore_d<'a>(img: &'a Path, b: &'a Bundle, id: &'a str) -> [&'a str; 7] {
    [
        "restore",
        "-d",
        "--image-path",
        s(img),
        "-b",
        b.path_str(),
        id,
    ]
}

fn images(b: &Bundle, name: &str) -> PathBuf {
    b.path().join(name)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The memory limit of `pid`'s memory cgroup, from cgroupfs (v1, or v2's memory.max).
fn memory_limit(pid: i32) -> String {
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for l in cg.lines() {
        let mut it = l.splitn(3, ':');
        let (_, ctrls, path) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
        let rel = path.trim_start_matches('/');
        for h in cgroup_hierarchies() {
            let v1 = ctrls.split(',').any(|c| c == "memory")
                && h.file_name()
                    .is_some_and(|n| n.to_string_lossy().contains("memory"));
            if v1 {
                return std::fs::read_to_string(h.join(rel).join("memory.limit_in_bytes"))
                    .unwrap()
                    .trim()
                    .to_string();
            }
            if ctrls.is_empty() {
                if let Ok(v) = std::fs::read_to_string(h.join(rel).join("memory.max")) {
                    return v.trim().to_string();
                }
            }
        }
    }
    panic!("no memory cgroup for {pid}:\n{cg}");
}

#[test]
fn checkpoint_stops_it_and_restore_goes_on_counting() {
    if !criu_or_skip("checkpoint_stops_it_and_restore_goes_on_counting") {
        return;
    }
    let rt = Runtime::new();
    let mut b = counter_bundle();
    let hook_out = b.out().join("prestart.json");
    b.edit(|c| {
        c["hooks"]["prestart"] = serde_json::json!([{
            "path": "/bin/sh",
            "args": ["sh", "-c", format!("cat > {}", hook_out.display())]
        }]);
    });
    let id = unique_id("ckpt");
    run_detached(&rt, &id, &b);
    let pid = rt.pid(&id);
    wait_count_above(&b, 10);
    let img = images(&b, "img");
    let work = images(&b, "work");
    rt.ok(&[
        "checkpoint",
        "--image-path",
        s(&img),
        "--work-path",
        s(&work),
        &id,
    ]);
    assert!(img.join("inventory.img").is_file(), "no images written");
    assert!(
        work.join("dump.log").is_file(),
        "no dump.log in the work path"
    );
    // Its processes are gone and it is stopped; the counter stands still.
    assert!(
        wait_until(SECS5, || !pid_alive(pid)),
        "init {pid} still runs"
    );
    assert_eq!(rt.status(&id), "stopped");
    std::fs::remove_file(&hook_out).expect("prestart ran at run");
    // A rootfs without the mountpoint of the bind mount (as one unpacked anew would be):
    // restore makes it.
    std::fs::remove_dir(b.rootfs().join("out")).unwrap();
    let frozen = count(&b);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(count(&b), frozen, "the counter moved after checkpoint");

    let status = quiet(
        &rt,
        &[
            "restore",
            "-d",
            "--image-path",
            s(&img),
            "--work-path",
            s(&work),
            "--bundle",
            b.path_str(),
            &id,
        ],
    );
    assert!(
        status.success(),
        "restore failed: {}",
        std::fs::read_to_string(work.join("restore.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("Error"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let st = rt.state(&id);
    assert_eq!(st["status"], "running", "{st}");
    let restored = st["pid"].as_i64().unwrap() as i32;
    assert!(restored > 0 && pid_alive(restored), "{st}");
    // prestart ran again, as runc runs it on restore, with the restored init's pid.
    let hook: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&hook_out).unwrap()).unwrap();
    assert_eq!(hook["pid"], restored, "{hook}");
    assert_eq!(hook["id"], id.as_str(), "{hook}");
    // The count goes on from where it stood, not from zero.
    let after = wait_count_above(&b, frozen);
    assert!(
        after > frozen && after < frozen + 200,
        "{frozen} then {after}"
    );
    // linux.resources again, in the container's cgroup.
    assert_eq!(memory_limit(restored), (64u64 << 20).to_string());
    // exec into the restored container.
    let seen: u64 = rt
        .ok(&["exec", &id, "cat", "/out/count"])
        .trim()
        .parse()
        .unwrap();
    assert!(seen >= frozen, "exec saw {seen}, checkpointed at {frozen}");
    // The tmpfs came back with what the container wrote in it.
    assert_eq!(rt.ok(&["exec", &id, "cat", "/tmp/marker"]).trim(), "kept");
    // The restored root is read-only as root.readonly says.
    let o = rt.berth(&["exec", &id, "sh", "-c", "echo x > /rofile"]);
    assert!(!o.status.success(), "the restored root is writable");

    rt.ok(&["delete", "--force", &id]);
    assert!(wait_until(SECS5, || !pid_alive(restored)));
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn leave_running_keeps_it_running() {
    if !criu_or_skip("leave_running_keeps_it_running") {
        return;
    }
    let rt = Runtime::new();
    let (b, id) = started(&rt, "ckpt-lr");
    let pid = rt.pid(&id);
    wait_count_above(&b, 3);
    let img = images(&b, "img");
    rt.ok(&[
        "checkpoint",
        "--leave-running",
        "--image-path",
        s(&img),
        &id,
    ]);
    assert!(img.join("inventory.img").is_file());
    still_counting_then_delete(&rt, &id, &b, pid);
}

#[test]
fn pre_dump_then_dump_with_parent_path_restores() {
    if !criu_or_skip("pre_dump_then_dump_with_parent_path_restores") {
        return;
    }
    let rt = Runtime::new();
    let (b, id) = started(&rt, "ckpt-pre");
    wait_count_above(&b, 3);
    let pre = images(&b, "pre");
    let fin = images(&b, "final");
    let tracks = Command::new("criu")
        .args(["check", "--feature", "mem_dirty_track"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !tracks {
        println!(
            "SKIP: pre_dump_then_dump_with_parent_path_restores: this kernel has no soft-dirty memory tracking (`criu check --feature mem_dirty_track` fails); checking the error instead"
        );
        let o = rt.berth(&["checkpoint", "--pre-dump", "--image-path", s(&pre), &id]);
        assert_one_error_line(&o, &["--pre-dump: CRIU cannot track memory changes"]);
        let o = rt.berth(&[
            "checkpoint",
            "--image-path",
            s(&fin),
            "--parent-path",
            "../pre",
            &id,
        ]);
        assert_one_error_line(&o, &["--parent-path: CRIU cannot track memory changes"]);
        assert_eq!(rt.status(&id), "running");
        assert!(
            !fin.exists(),
            "a refused checkpoint wrote {}",
            fin.display()
        );
        rt.ok(&["delete", "--force", &id]);
        assert_nothing_left(&rt, &id, &b);
        return;
    }
    rt.ok(&["checkpoint", "--pre-dump", "--image-path", s(&pre), &id]);
    assert_eq!(rt.status(&id), "running", "a pre-dump leaves it running");
    rt.ok(&[
        "checkpoint",
        "--image-path",
        s(&fin),
        "--parent-path",
        "../pre",
        &id,
    ]);
    assert_eq!(rt.status(&id), "stopped");
    let frozen = count(&b);
    assert!(quiet(&rt, &restore_d(&fin, &b, &id)).success());
    wait_count_above(&b, frozen);
    delete_clean(&rt, &id, &b);
}

#[test]
fn foreground_restore_exits_with_the_containers_status() {
    if !criu_or_skip("foreground_restore_exits_with_the_containers_status") {
        return;
    }
    let rt = Runtime::new();
    let (b, id) = started(&rt, "ckpt-fg");
    wait_count_above(&b, 3);
    let img = images(&b, "img");
    rt.ok(&["checkpoint", "--image-path", s(&img), &id]);
    let mut c = rt.cmd();
    c.args([
        "restore",
        "--image-path",
        s(&img),
        "--bundle",
        b.path_str(),
        &id,
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    assert!(rt.wait_status(&id, "running", SECS10), "not restored");
    std::fs::write(b.out().join("stop"), "").unwrap();
    let mut status = None;
    wait_until(SECS10, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    let Some(status) = status else {
        let _ = child.kill();
        panic!("restore did not return after the container exited");
    };
    assert_eq!(status.code(), Some(7), "the container's exit status");
    // Deleted afterwards, as `run` does.
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn failed_restore_leaves_nothing() {
    if !criu_or_skip("failed_restore_leaves_nothing") {
        return;
    }
    let rt = Runtime::new();
    let (b, id) = started(&rt, "ckpt-bad");
    wait_count_above(&b, 2);
    let img = images(&b, "img");
    rt.ok(&["checkpoint", "--image-path", s(&img), &id]);
    rt.ok(&["delete", &id]);
    // An image path that does not exist, one without images, then broken images.
    let o = rt.berth(&restore_d(Path::new("/nonexistent/img"), &b, &id));
    assert_one_error_line(&o, &["restore: --image-path /nonexistent/img"]);
    let empty = images(&b, "empty");
    std::fs::create_dir(&empty).unwrap();
    let o = rt.berth(&restore_d(&empty, &b, &id));
    assert_one_error_line(&o, &["holds no CRIU images"]);
    std::fs::write(img.join("pstree.img"), b"").unwrap();
    let o = rt.berth(&restore_d(&img, &b, &id));
    let log = img.join("restore.log");
    assert_one_error_line(
        &o,
        &[&format!(
            "restore: CRIU failed: see {}: Error (",
            log.display()
        )],
    );
    assert!(rt.ids().is_empty(), "{:?}", rt.ids());
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn failed_checkpoint_leaves_it_running() {
    if !criu_or_skip("failed_checkpoint_leaves_it_running") {
        return;
    }
    let rt = Runtime::new();
    let b = counter_bundle();
    let id = unique_id("ckpt-fail");
    // stdout on a host file the container's mount namespace cannot see: CRIU refuses it.
    rt.detached(
        &["run", "-d", "--bundle", b.path_str(), &id],
        b.path(),
        "run",
    )
    .assert_ok();
    let pid = rt.pid(&id);
    wait_count_above(&b, 2);
    let img = images(&b, "img");
    let o = rt.berth(&["checkpoint", "--image-path", s(&img), &id]);
    assert_one_error_line(
        &o,
        &[&format!(
            "checkpoint: CRIU failed: see {}: Error (",
            img.join("dump.log").display()
        )],
    );
    still_counting_then_delete(&rt, &id, &b, pid);
}

#[test]
fn bad_input_is_one_error_line() {
    let rt = Runtime::new();
    let b = counter_bundle();
    let img = images(&b, "img");
    let o = rt.berth(&["checkpoint", "--image-path", s(&img), "nosuch"]);
    assert_one_error_line(&o, &["\"nosuch\" does not exist"]);
    let o = rt.berth(&["checkpoint", "--lazy-pages", "--pre-dump", "nosuch"]);
    assert_one_error_line(&o, &["--lazy-pages: not with --pre-dump"]);
    let o = rt.berth(&["checkpoint", "--manage-cgroups-mode", "bogus", "nosuch"]);
    assert_one_error_line(&o, &["--manage-cgroups-mode \"bogus\""]);
    let o = rt.berth(&["restore", "--empty-ns", "pid", "-b", b.path_str(), "nosuch"]);
    assert_one_error_line(&o, &["--empty-ns \"pid\""]);
    let o = rt.berth(&["restore", "--no-pivot", "-b", b.path_str(), "nosuch"]);
    assert_one_error_line(&o, &["--no-pivot: "]);
    // A created container cannot be checkpointed; a running one cannot be restored over; a
    // missing CRIU is named.
    let id = unique_id("ckpt-in");
    rt.create(&id, &b);
    let o = rt.berth(&["checkpoint", "--image-path", s(&img), &id]);
    assert_one_error_line(&o, &["is created: cannot checkpoint"]);
    rt.ok(&["start", &id]);
    let o = rt.berth(&[
        "--criu",
        "/nonexistent/criu",
        "checkpoint",
        "--image-path",
        s(&img),
        &id,
    ]);
    assert_one_error_line(&o, &["checkpoint: cannot run CRIU \"/nonexistent/criu\""]);
    assert_eq!(rt.status(&id), "running");
    std::fs::create_dir_all(&img).unwrap();
    std::fs::write(img.join("inventory.img"), b"").unwrap();
    let o = rt.berth(&restore_d(&img, &b, &id));
    assert_one_error_line(&o, &[&format!("container \"{id}\" already exists")]);
    assert_eq!(rt.status(&id), "running");
    delete_clean(&rt, &id, &b);
}

#[test]
fn a_terminal_comes_back_over_the_console_socket() {
    if !criu_or_skip("a_terminal_comes_back_over_the_console_socket") {
        return;
    }
    let rt = Runtime::new();
    let mut b = counter_bundle();
    b.edit(|c| {
        c["process"]["terminal"] = true.into();
        c["process"]["args"] = serde_json::json!([
            "sh",
            "-c",
            "i=0; while true; do i=$((i+1)); echo $i > /out/count.new; mv /out/count.new /out/count; echo tick-$i; sleep 0.05; done"
        ]);
    });
    let id = unique_id("ckpt-tty");
    let sock = ConsoleSocket::new();
    rt.track(&id);
    let run = [
        "run",
        "-d",
        "--console-socket",
        &sock.path_str(),
        "--bundle",
        b.path_str(),
        &id,
    ];
    assert!(quiet(&rt, &run).success());
    let (master, _) = sock.recv_master(SECS10);
    assert!(read_until(&master, "tick-", SECS10).contains("tick-"));
    let img = images(&b, "img");
    rt.ok(&["checkpoint", "--image-path", s(&img), &id]);
    drop(master);
    let frozen = count(&b);
    let sock2 = ConsoleSocket::new();
    let restore = [
        "restore",
        "-d",
        "--console-socket",
        &sock2.path_str(),
        "--image-path",
        s(&img),
        "-b",
        b.path_str(),
        &id,
    ];
    assert!(quiet(&rt, &restore).success());
    let (master2, _) = sock2.recv_master(SECS10);
    let next = format!("tick-{}", frozen + 2);
    let out = read_until(&master2, &next, SECS10);
    assert!(out.contains(&next), "the restored terminal shows {out:?}");
    wait_count_above(&b, frozen);
    delete_clean(&rt, &id, &b);
}

/// A network namespace made with `ip netns add` (loopback up), removed on drop.
struct NetNs(String);

impl NetNs {
    fn new(name: &str) -> Option<NetNs> {
        let ok = Command::new("ip")
            .args(["netns", "add", name])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return None;
        }
        let ns = NetNs(name.to_string());
        let up = Command::new("ip")
            .args(["-n", name, "link", "set", "lo", "up"])
            .status()
            .is_ok_and(|s| s.success());
        up.then_some(ns)
    }
    fn path(&self) -> String {
        format!("/var/run/netns/{}", self.0)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn a_joined_network_namespace_and_a_listening_socket_come_back() {
    if !criu_or_skip("a_joined_network_namespace_and_a_listening_socket_come_back") {
        return;
    }
    let rt = Runtime::new();
    let id = unique_id("ckpt-net");
    let Some(ns) = NetNs::new(&id) else {
        panic!("ip netns add {id} failed (iproute2 is installed by scripts/setup-deps.sh)");
    };
    // The namespace joined by path is external: the restored container is in it again.
    let mut b = counter_bundle();
    b.namespace("network", Some(&ns.path()));
    run_detached(&rt, &id, &b);
    let netns = ns_link(rt.pid(&id), "net");
    wait_count_above(&b, 2);
    let img = images(&b, "img");
    rt.ok(&["checkpoint", "--image-path", s(&img), &id]);
    assert!(quiet(&rt, &restore_d(&img, &b, &id)).success());
    assert_eq!(
        ns_link(rt.pid(&id), "net"),
        netns,
        "restored in another network namespace"
    );
    delete_clean(&rt, &id, &b);

    // A server listening on TCP in it.
    let mut b = counter_bundle();
    b.namespace("network", Some(&ns.path()));
    b.args(&[
        "sh",
        "-c",
        &format!(
            "mkdir /tmp/www; echo served > /tmp/www/index.html; httpd -f -p 127.0.0.1:8080 -h /tmp/www & {COUNTER}"
        ),
    ]);
    run_detached(&rt, &id, &b);
    let get = || rt.berth(&["exec", &id, "wget", "-qO-", "http://127.0.0.1:8080/"]);
    assert!(
        wait_until(SECS5, || stdout(&get()).contains("served")),
        "httpd does not answer"
    );
    let img = images(&b, "img");
    let o = rt.berth(&["checkpoint", "--image-path", s(&img), &id]);
    if !o.status.success() && stderr(&o).contains("Can't get 1:") {
        // CRIU 4.1.1 reads SO_PASSCRED and SO_PASSSEC (1:16, 1:34) of every socket; this kernel
        // (6.18) refuses it for TCP sockets, whatever the runtime.
        println!(
            "SKIP: a_joined_network_namespace_and_a_listening_socket_come_back: this CRIU cannot dump a TCP socket on this kernel ({}); checking that the failed checkpoint left the server running",
            stderr(&o).trim()
        );
        assert_one_error_line(&o, &["checkpoint: CRIU failed: see", "sockets"]);
        assert_eq!(rt.status(&id), "running");
        assert_eq!(stdout(&get()).trim(), "served");
    } else {
        assert!(o.status.success(), "checkpoint: {}", stderr(&o));
        assert!(quiet(&rt, &restore_d(&img, &b, &id)).success());
        // The listening socket was restored: the server answers, without restarting.
        assert_eq!(stdout(&get()).trim(), "served");
    }
    delete_clean(&rt, &id, &b);
    drop(ns);
}

/// A free TCP port on loopback (bound and released: a page server binds it next).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills and reaps a helper process on drop (a page server the test started).
struct Reaped(std::process::Child);
impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `checkpoint --page-server`: the memory goes to a `criu page-server` on loopback, not to the
/// image path; with the page server's files added to the images, restore goes on counting.
#[test]
fn page_server_receives_the_memory_and_restore_goes_on() {
    if !criu_or_skip("page_server_receives_the_memory_and_restore_goes_on") {
        return;
    }
    let rt = Runtime::new();
    let (b, id) = started(&rt, "ckpt-ps");
    wait_count_above(&b, 3);
    let img = images(&b, "img");
    let pages = images(&b, "pages");
    std::fs::create_dir(&pages).unwrap();
    let port = free_port().to_string();
    let mut server = Reaped(
        Command::new("criu")
            .args([
                "page-server",
                "--images-dir",
                s(&pages),
                "--address",
                "127.0.0.1",
            ])
            .args(["--port", &port, "-o", "page-server.log", "-v4"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("criu page-server"),
    );
    let log = pages.join("page-server.log");
    assert!(
        wait_until(SECS10, || std::fs::read_to_string(&log)
            .is_ok_and(|l| l.contains("Starting page server"))),
        "the page server did not start: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    rt.ok(&[
        "checkpoint",
        "--page-server",
        &format!("127.0.0.1:{port}"),
        "--image-path",
        s(&img),
        &id,
    ]);
    assert_eq!(rt.status(&id), "stopped");
    let at_checkpoint = count(&b);
    // The page server ends with the dump it served.
    let mut ended = None;
    wait_until(SECS10, || {
        ended = server.0.try_wait().unwrap();
        ended.is_some()
    });
    assert!(ended.is_some_and(|s| s.success()), "page server: {ended:?}");
    let names = |d: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("pages-"))
            .collect();
        v.sort();
        v
    };
    assert!(
        names(&img).is_empty(),
        "pages in the image path: {:?}",
        names(&img)
    );
    assert!(!names(&pages).is_empty(), "no pages at the page server");
    for e in std::fs::read_dir(&pages).unwrap() {
        let e = e.unwrap();
        if e.file_name().to_string_lossy().ends_with(".img") {
            std::fs::copy(e.path(), img.join(e.file_name())).unwrap();
        }
    }
    assert!(quiet(&rt, &restore_d(&img, &b, &id)).success());
    assert_eq!(rt.status(&id), "running");
    let first = count(&b);
    assert!(
        first >= at_checkpoint && first < at_checkpoint + 100,
        "restored counter {first}, checkpointed {at_checkpoint}"
    );
    wait_count_above(&b, first);
    delete_clean(&rt, &id, &b);
}

/// `checkpoint --lazy-pages --page-server ADDR:PORT --status-fd FD`: CRIU dumps all but the
/// memory, starts its lazy page server on that port and writes a zero byte to FD. Should the
/// migration go no further (here the CRIU serving the pages is killed), the container goes on
/// running, as runc documents. The full lazy restore (`criu lazy-pages` + `restore
/// --lazy-pages`) fails on this machine inside CRIU 4.1.1 for runc and Berth alike
/// (`page-pipe: splice: -1: Bad file descriptor` on the serving side), so it is not asserted.
#[test]
fn lazy_pages_start_a_page_server_and_report_on_the_status_fd() {
    if !criu_or_skip("lazy_pages_start_a_page_server_and_report_on_the_status_fd") {
        return;
    }
    let rt = Runtime::new();
    let (b, id) = started(&rt, "ckpt-lazy");
    let pid = rt.pid(&id);
    wait_count_above(&b, 3);
    let img = images(&b, "img");
    std::fs::create_dir(&img).unwrap();
    let fifo = b.path().join("status");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let port = free_port().to_string();
    // The status fd is fd 3 of berth, opened by the shell that execs it.
    let berth = rt.cmd();
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg("f=$1; shift; exec \"$@\" 3>\"$f\"")
        .arg("sh")
        .arg(&fifo)
        .arg(berth.get_program())
        .args(berth.get_args())
        .args(["checkpoint", "--lazy-pages", "--page-server"])
        .arg(format!("127.0.0.1:{port}"))
        .args([
            "--status-fd",
            "3",
            "--image-path",
            s(&img),
            "--work-path",
            s(&img),
            &id,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut checkpoint = sh.spawn().unwrap();
    // Read the status byte in a thread: opening the FIFO blocks until berth has it open.
    let (tx, rx) = std::sync::mpsc::channel();
    let reader_fifo = fifo.clone();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut byte = [0xffu8; 1];
        let r = std::fs::File::open(&reader_fifo).and_then(|mut f| f.read(&mut byte));
        let _ = tx.send(r.map(|n| (n, byte[0])));
    });
    let got = rx.recv_timeout(Duration::from_secs(20));
    let dump_log = std::fs::read_to_string(img.join("dump.log")).unwrap_or_default();
    // The serving CRIU is berth's child; killing it ends the migration.
    let bpid = checkpoint.id();
    let criu: Vec<i32> = std::fs::read_to_string(format!("/proc/{bpid}/task/{bpid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    for c in &criu {
        // SAFETY: kill(2) on a pid number, the test's own grandchild (CRIU, still unreaped).
        unsafe { libc::kill(*c, libc::SIGKILL) };
    }
    let mut status = None;
    wait_until(SECS10, || {
        status = checkpoint.try_wait().unwrap();
        status.is_some()
    });
    if status.is_none() {
        let _ = checkpoint.kill();
    }
    let out = checkpoint.wait_with_output().unwrap();
    assert_eq!(
        got.ok().and_then(|r| r.ok()),
        Some((1, 0)),
        "no zero byte on the status fd; dump.log:\n{dump_log}"
    );
    assert!(
        dump_log.contains("Starting lazy pages server"),
        "CRIU was not asked for lazy pages:\n{dump_log}"
    );
    assert_eq!(criu.len(), 1, "berth's children: {criu:?}");
    assert!(
        !out.status.success(),
        "checkpoint succeeded without a migration"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("berth: error: checkpoint: ") && err.lines().count() == 1,
        "{err}"
    );
    // The container was left as it was.
    still_counting_then_delete(&rt, &id, &b, pid);
}

/// `--page-server`, `--lazy-pages` and `--status-fd` in the wrong form: one error line each,
/// and the container untouched.
#[test]
fn bad_page_server_and_status_fd_flags_are_refused() {
    let rt = Runtime::new();
    let b = sh("sleep 100");
    let id = unique_id("ckpt-flags");
    rt.create(&id, &b);
    for (args, needle) in [
        (
            vec!["--page-server", "127.0.0.1"],
            "--page-server \"127.0.0.1\": no port",
        ),
        (
            vec!["--page-server", "host:0"],
            "the port must be a number from 1 to 65535",
        ),
        (
            vec!["--status-fd", "2"],
            "--status-fd: only with --lazy-pages",
        ),
        (
            vec!["--lazy-pages", "--status-fd", "99"],
            "--status-fd 99: not an open file descriptor",
        ),
    ] {
        let mut a = vec!["checkpoint"];
        a.extend(args);
        a.push(&id);
        let o = rt.berth(&a);
        assert_one_error_line(&o, &[needle]);
        assert_eq!(rt.status(&id), "created");
    }
    rt.ok(&["delete", "--force", &id]);
    assert_nothing_left(&rt, &id, &b);
}
