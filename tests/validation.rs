//! Validation and error messages (issue 15 §0): every bad value is refused before any side
//! effect with one line naming the field by its JSON path (or the flag), a non-zero exit, and
//! nothing left behind; what is in range is accepted and takes effect.

mod common;
use common::*;

use std::process::Output;

use serde_json::{json, Value};

/// runc's phrase for a uid or gid out of range.
const ID_RANGE: &str = "uids and gids must be in range 0-2147483647";

/// The script of a bundle that must not run: it leaves /out/ran.
const RAN: &str = "echo ran > /out/ran";

/// `create` of `b` as `name` must fail with one line holding every needle, the program must
/// not have run, and nothing may be left behind.
fn refused(name: &str, b: Bundle, needles: &[&str]) {
    let rt = Runtime::new();
    let id = unique_id(name);
    let d = rt.create_detached(&id, &b, &[]);
    let err = d.stderr();
    assert!(
        !d.status.success(),
        "{name}: create succeeded; stderr: {err}"
    );
    let l = lines(&err);
    assert_eq!(l.len(), 1, "{name}: expected one error line, got:\n{err}");
    for n in needles {
        assert!(l[0].contains(n), "{name}: error line lacks {n:?}: {}", l[0]);
    }
    assert!(!b.out().join("ran").exists(), "{name}: the program ran");
    assert!(rt.ids().is_empty(), "{name}: {:?} listed", rt.ids());
    assert_nothing_left(&rt, &id, &b);
}

/// A bundle whose process would leave /out/ran (see [`refused`]), edited by `f`.
fn bundle(f: impl FnOnce(&mut Value)) -> Bundle {
    let mut b = sh(RAN);
    b.edit(f);
    b
}

/// A new user namespace mapping container ids 0..65536 to host 100000.., with `f` applied.
fn userns_bundle(f: impl FnOnce(&mut Value)) -> Bundle {
    let mut b = sh(RAN);
    b.namespace("user", None);
    b.edit(|c| {
        let map = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        c["linux"]["uidMappings"] = map.clone();
        c["linux"]["gidMappings"] = map;
        f(c)
    });
    // Reachable by the mapped root, for the cases that are accepted.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(b.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    b
}

// ---------------------------------------------------------------------------------------------
// 1. uids and gids above 2147483647: u32::MAX is -1 to setresuid(2), "unchanged" (root stays).
// ---------------------------------------------------------------------------------------------

#[test]
fn user_ids_above_2147483647_are_refused() {
    let max = u32::MAX;
    for (name, uid, gid, field) in [
        ("uid-max", max, 0, "process.user.uid"),
        ("gid-max", 0, max, "process.user.gid"),
        ("uid-2p31", 1 << 31, 0, "process.user.uid"),
        ("gid-2p31", 1000, 1 << 31, "process.user.gid"),
    ] {
        let b = bundle(|c| c["process"]["user"] = json!({"uid": uid, "gid": gid}));
        refused(&format!("ids-{name}"), b, &[field, ID_RANGE]);
    }
    let b =
        bundle(|c| c["process"]["user"] = json!({"uid": 0, "gid": 0, "additionalGids": [10, max]}));
    let field = "process.user.additionalGids[1]";
    refused("ids-agid-max", b, &[field, ID_RANGE]);
}

#[test]
fn user_id_2147483647_is_accepted_and_used() {
    let rt = Runtime::new();
    let mut b = Bundle::sh("id -u; id -g; grep ^Groups: /proc/self/status");
    b.edit(|c| {
        c["process"]["user"] =
            json!({"uid": 2147483647u32, "gid": 2147483647u32, "additionalGids": [2147483647u32]})
    });
    let out = rt.run_stdout("ids-top", &b);
    let l = lines(&out);
    assert_eq!(l[..2], ["2147483647", "2147483647"], "{out}");
    assert_eq!(
        l[2].split_whitespace().collect::<Vec<_>>(),
        ["Groups:", "2147483647"]
    );
}

#[test]
fn id_mappings_out_of_range_are_refused() {
    if skip_without_namespace("id_mappings_out_of_range_are_refused", "user") {
        return;
    }
    let m = |c: u64, h: u64, s: u64| json!([{"containerID": c, "hostID": h, "size": s}]);
    // A second mapping after the usual 0..65536 -> 100000.. one.
    let second = |c: u64, h: u64, s: u64| {
        json!([{"containerID": 0, "hostID": 100000, "size": 65536},
               {"containerID": c, "hostID": h, "size": s}])
    };
    let cases: Vec<(&str, &str, Value, &[&str])> = vec![
        (
            "host-max",
            "uidMappings",
            m(0, 4294967295, 1),
            &["linux.uidMappings[0].hostID", ID_RANGE],
        ),
        (
            "ctr-2p31",
            "gidMappings",
            m(2147483648, 100000, 1),
            &["linux.gidMappings[0].containerID", ID_RANGE],
        ),
        (
            "host-size",
            "uidMappings",
            m(0, 100000, 4294967295),
            &["linux.uidMappings[0].size", "hostID 100000"],
        ),
        (
            "ctr-size",
            "gidMappings",
            m(2147483647, 0, 2147483649),
            &["linux.gidMappings[0].size", "containerID 2147483647"],
        ),
        (
            "size-zero",
            "uidMappings",
            second(70000, 300000, 0),
            &["linux.uidMappings[1].size"],
        ),
        (
            "overlap-ctr",
            "uidMappings",
            second(1000, 300000, 10),
            &[
                "linux.uidMappings[1]",
                "containerID range overlaps",
                "linux.uidMappings[0]",
            ],
        ),
        (
            "overlap-host",
            "gidMappings",
            second(70000, 165535, 10),
            &[
                "linux.gidMappings[1]",
                "hostID range overlaps",
                "linux.gidMappings[0]",
            ],
        ),
    ];
    for (name, list, maps, needles) in cases {
        let b = userns_bundle(|c| c["linux"][list] = maps);
        refused(&format!("map-{name}"), b, needles);
    }
    // The process's ids must be mapped: setresuid(2) would refuse them.
    let b = userns_bundle(|c| c["process"]["user"] = json!({"uid": 70000, "gid": 0}));
    refused(
        "map-unmapped-uid",
        b,
        &["process.user.uid", "70000", "linux.uidMappings"],
    );
    let b = userns_bundle(|c| {
        c["process"]["user"] = json!({"uid": 0, "gid": 0, "additionalGids": [5, 65536]})
    });
    refused(
        "map-unmapped-agid",
        b,
        &[
            "process.user.additionalGids[1]",
            "65536",
            "linux.gidMappings",
        ],
    );
}

#[test]
fn adjacent_id_mappings_are_accepted() {
    if skip_without_namespace("adjacent_id_mappings_are_accepted", "user") {
        return;
    }
    // Ranges that touch but do not overlap, up to the last valid id (4294967294).
    let maps = json!([{"containerID": 0, "hostID": 100000, "size": 65536},
                      {"containerID": 65536, "hostID": 165536, "size": 10},
                      {"containerID": 2147483647u32, "hostID": 200000, "size": 2147483648u32}]);
    let b = userns_bundle(|c| {
        c["process"]["args"] = json!(["sleep", "1000"]);
        c["linux"]["uidMappings"] = maps.clone();
        c["linux"]["gidMappings"] = maps;
    });
    let rt = Runtime::new();
    let id = unique_id("map-adjacent");
    rt.create(&id, &b);
    let pid = rt.pid(&id);
    let got = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
    let got: Vec<Vec<&str>> = got
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        got,
        [
            ["0", "100000", "65536"],
            ["65536", "165536", "10"],
            ["2147483647", "200000", "2147483648"]
        ],
    );
    rt.ok(&["delete", "--force", &id]);
    assert_nothing_left(&rt, &id, &b);
}

/// A started container whose init sleeps, for `exec`.
struct Running {
    rt: Runtime,
    bundle: Bundle,
    id: String,
    pid: i32,
}

fn running(name: &str) -> Running {
    let rt = Runtime::new();
    let bundle = sh("sleep 1000");
    let id = unique_id(name);
    rt.create(&id, &bundle);
    rt.ok(&["start", &id]);
    let pid = rt.pid(&id);
    Running {
        rt,
        bundle,
        id,
        pid,
    }
}

impl Running {
    fn exec(&self, flags: &[&str], cmd: &[&str]) -> Output {
        self.rt
            .berth(&[&["exec"][..], flags, &[self.id.as_str()], cmd].concat())
    }

    /// Processes in the container's pid namespace besides its init.
    fn others(&self) -> Vec<i32> {
        let ns = ns_link(self.pid, "pid");
        processes()
            .into_iter()
            .map(|(p, _)| p)
            .filter(|&p| p != self.pid && ns_link(p, "pid") == ns)
            .collect()
    }

    /// `exec FLAGS… ID sh -c "echo ran; id -u"` must fail with one line holding every needle,
    /// and no process may be left in the container.
    fn refused(&self, flags: &[&str], needles: &[&str]) {
        let o = self.exec(flags, &["sh", "-c", "echo ran; id -u"]);
        assert!(
            !stdout(&o).contains("ran"),
            "exec {flags:?} ran: {}",
            stdout(&o)
        );
        assert_one_error_line(&o, needles);
        assert_eq!(
            self.others(),
            Vec::<i32>::new(),
            "exec {flags:?} left processes"
        );
        assert_eq!(self.rt.status(&self.id), "running");
    }

    /// Writes `process` as a --process file and returns its path.
    fn process_file(&self, name: &str, process: &Value) -> String {
        let f = self.bundle.path().join(name);
        std::fs::write(&f, serde_json::to_vec(process).unwrap()).unwrap();
        f.to_str().unwrap().to_string()
    }
}

#[test]
fn exec_user_above_2147483647_is_refused() {
    let c = running("exec-ids");
    for (flags, needles) in [
        (["--user", "4294967295"], ["--user", "uid 4294967295"]),
        (["--user", "4294967295:0"], ["--user", "uid 4294967295"]),
        (["--user", "0:4294967295"], ["--user", "gid 4294967295"]),
        (["--user", "2147483648:0"], ["--user", "uid 2147483648"]),
        (
            ["--additional-gids", "4294967295"],
            ["--additional-gids", "4294967295"],
        ),
    ] {
        c.refused(&flags, &[needles[0], needles[1], ID_RANGE]);
    }
    let f = c.process_file(
        "uid.json",
        &json!({"args": ["sh", "-c", "echo ran; id -u"], "cwd": "/",
                "user": {"uid": 4294967295u32, "gid": 0}}),
    );
    c.refused(&["--process", &f], &["process.user.uid", ID_RANGE]);
    let f = c.process_file(
        "agid.json",
        &json!({"args": ["sh", "-c", "echo ran; id -u"], "cwd": "/",
                "user": {"uid": 0, "gid": 0, "additionalGids": [4294967295u32]}}),
    );
    c.refused(
        &["--process", &f],
        &["process.user.additionalGids[0]", ID_RANGE],
    );
    // The top of the range is accepted, and is who the process runs as.
    let o = c.exec(
        &["--user", "2147483647:2147483647"],
        &["sh", "-c", "id -u; id -g"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(lines(&stdout(&o)), ["2147483647", "2147483647"]);
}

// ---------------------------------------------------------------------------------------------
// 2. NUL bytes cannot be passed to execve(2), chdir(2) or mount(2): refused at create.
// ---------------------------------------------------------------------------------------------

#[test]
fn nul_bytes_are_refused_at_create() {
    const NUL: &str = "contains a NUL byte";
    let b = bundle(|c| c["process"]["args"] = json!(["sh", "-c\u{0}x", RAN]));
    refused("nul-args", b, &["process.args[1]", NUL]);
    let b = bundle(|c| c["process"]["env"] = json!(["PATH=/bin", "A=1\u{0}2"]));
    refused("nul-env", b, &["process.env[1]", NUL]);
    let b = bundle(|c| c["process"]["cwd"] = json!("/tmp\u{0}/x"));
    refused("nul-cwd", b, &["process.cwd", NUL]);
    let b = bundle(|c| {
        c["hooks"] = json!({"createRuntime": [{"path": "/bin/true", "args": ["true", "a\u{0}b"]}]})
    });
    refused("nul-hook", b, &["hooks.createRuntime[0].args[1]", NUL]);
    let b = bundle(|c| {
        c["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/mnt\u{0}x", "type": "tmpfs", "source": "tmpfs"}))
    });
    refused("nul-mount", b, &["].destination", NUL]);
}

#[test]
fn nul_bytes_are_refused_by_exec() {
    const NUL: &str = "contains a NUL byte";
    let c = running("exec-nul");
    let f = c.process_file(
        "args.json",
        &json!({"args": ["sh", "-c", "echo ran; id -u", "a\u{0}b"], "cwd": "/",
                "user": {"uid": 0, "gid": 0}}),
    );
    c.refused(&["--process", &f], &["process.args[3]", NUL]);
    let f = c.process_file(
        "env.json",
        &json!({"args": ["sh", "-c", "echo ran; id -u"], "cwd": "/",
                "env": ["A\u{0}=1"], "user": {"uid": 0, "gid": 0}}),
    );
    c.refused(&["--process", &f], &["process.env[0]", NUL]);
}

// ---------------------------------------------------------------------------------------------
// 3. Messages name the field and use the spec's names, never Berth's internal ones.
// ---------------------------------------------------------------------------------------------

#[test]
fn messages_use_the_spec_names() {
    let dup_ns = |ty: &'static str| {
        bundle(move |c| {
            let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
            ns.push(json!({"type": ty}));
        })
    };
    for ty in ["pid", "network", "mount"] {
        let b = dup_ns(ty);
        let n = b.config["linux"]["namespaces"].as_array().unwrap().len() - 1;
        let want = format!("linux.namespaces[{n}].type: duplicate namespace \"{ty}\"");
        refused(&format!("dup-ns-{ty}"), b, &[&want]);
    }
    let b = bundle(|c| {
        c["process"]["rlimits"] = json!([
            {"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024},
            {"type": "RLIMIT_NOFILE", "hard": 64, "soft": 64}
        ])
    });
    refused(
        "dup-rlimit",
        b,
        &["process.rlimits[1].type: duplicate rlimit \"RLIMIT_NOFILE\""],
    );
    let mut b = bundle(|c| c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"}));
    b.without_namespace("network");
    refused(
        "sysctl-ns",
        b,
        &["linux.sysctl[\"net.ipv4.ip_forward\"]: needs a network namespace"],
    );
    let b = bundle(|c| c["process"]["scheduler"] = json!({"policy": "SCHED_FIFO", "priority": 0}));
    refused(
        "sched-fifo",
        b,
        &[
            "process.scheduler.priority",
            "0 is outside 1..99 for SCHED_FIFO",
        ],
    );
    let b = bundle(|c| c["process"]["scheduler"] = json!({"policy": "SCHED_BATCH", "priority": 5}));
    refused(
        "sched-batch",
        b,
        &["process.scheduler.priority", "must be 0 for SCHED_BATCH"],
    );
}

#[test]
fn setrlimit_errors_use_the_spec_name() {
    // A hard limit above the kernel's nr_open cannot be set, even by root: the error is found
    // by setrlimit(2) at create and must name the rlimit as the spec does.
    let nr_open: u64 = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let over = nr_open + 1;
    let b = bundle(|c| {
        c["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "hard": over, "soft": over}])
    });
    refused(
        "setrlimit",
        b,
        &[
            "process.rlimits[0]",
            "RLIMIT_NOFILE",
            "Operation not permitted",
        ],
    );
}

#[test]
fn a_config_that_is_not_an_object_is_named() {
    for (name, body) in [
        ("array", "[]"),
        ("null", "null"),
        ("number", "42"),
        ("string", "\"x\""),
        ("bool", " true\n"),
        ("empty", ""),
    ] {
        let b = bundle(|_| {});
        std::fs::write(b.path().join("config.json"), body).unwrap();
        refused(
            &format!("not-object-{name}"),
            b,
            &["config.json: must be a JSON object"],
        );
    }
    let b = bundle(|_| {});
    let cfg = std::fs::read_to_string(b.path().join("config.json")).unwrap();
    std::fs::write(b.path().join("config.json"), cfg + "\n{}").unwrap();
    refused("trailing", b, &["config.json: trailing characters"]);
    let c = running("exec-not-object");
    for (name, body) in [("array", json!([])), ("number", json!(7))] {
        let f = c.process_file(&format!("{name}.json"), &body);
        c.refused(&["--process", &f], &[&f, "must be a JSON object"]);
    }
}

#[test]
fn a_root_that_is_a_file_is_named_by_every_command() {
    let rt = Runtime::new();
    let file = rt.root.path().join("not-a-dir");
    std::fs::write(&file, "keep me").unwrap();
    let root = file.to_str().unwrap();
    let b = sh(RAN);
    let id = unique_id("root-file");
    let bundle = b.path_str();
    let want = format!("--root {root}: not a directory");
    let commands: &[&[&str]] = &[
        &["create", "--bundle", bundle, &id],
        &["run", "--bundle", bundle, &id],
        &["start", &id],
        &["state", &id],
        &["kill", &id, "KILL"],
        &["delete", &id],
        &["delete", "--force", &id],
        &["list"],
        &["ps", &id],
        &["pause", &id],
        &["resume", &id],
        &["update", "--pids-limit", "10", &id],
        &["events", "--stats", &id],
        &["exec", &id, "true"],
    ];
    let at_root = |root: &str, args: &[&str]| {
        let mut cmd = std::process::Command::new(berth_bin());
        cmd.arg("--root").arg(root).args(args);
        output_timeout(cmd, SECS10)
    };
    for args in commands {
        assert_one_error_line(&at_root(root, args), &[&want]);
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "keep me",
            "{args:?}"
        );
    }
    let below = format!("{root}/sub");
    let o = at_root(&below, &["list"]);
    assert_one_error_line(&o, &[&format!("--root {below}: not a directory")]);
    assert!(!b.out().join("ran").exists(), "the program ran");
    force_remove_cgroups(&id);
}
