//! The `process` object's effects, seen from inside the container: user, groups, umask,
//! rlimits, capabilities, noNewPrivileges, oomScoreAdj, env, cwd, args; plus linux.sysctl.

mod common;
use common::*;

use serde_json::json;

/// The value of `Key:` in /proc/self/status output.
fn status_field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("{key} not in:\n{status}"))
        .trim()
}

/// Berth changes no signal disposition the container would inherit: in particular SIGPIPE
/// is not ignored (Rust's usual start-up ignores it; Berth does without that start-up).
#[test]
fn the_process_inherits_no_ignored_or_blocked_signal_from_berth() {
    let rt = Runtime::new();
    let st = rt.run_stdout("signals", &sh("cat /proc/self/status"));
    let mask = |k| u64::from_str_radix(status_field(&st, k), 16).unwrap();
    let sigpipe = 1u64 << (libc::SIGPIPE - 1);
    assert_eq!(mask("SigIgn") & sigpipe, 0, "SIGPIPE ignored:\n{st}");
    assert_eq!(mask("SigBlk"), 0, "signals blocked:\n{st}");
}

#[test]
fn user_uid_gid_and_additional_gids() {
    let rt = Runtime::new();
    let mut b = sh("cat /proc/self/status");
    b.edit(|c| {
        c["process"]["user"] = json!({"uid": 1000, "gid": 1001, "additionalGids": [20, 30]})
    });
    let st = rt.run_stdout("user", &b);
    let ids = |k| {
        status_field(&st, k)
            .split_whitespace()
            .map(|s| s.parse::<u32>().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids("Uid"), [1000; 4]);
    assert_eq!(ids("Gid"), [1001; 4]);
    // Exactly additionalGids: like runc, not the user's /etc/group memberships (wheel, 10).
    let mut g = ids("Groups");
    g.sort();
    assert_eq!(g, [20, 30], "supplementary groups");
}

#[test]
fn user_without_additional_gids_has_only_its_etc_group_groups() {
    let rt = Runtime::new();
    let mut b = sh("cat /proc/self/status");
    b.edit(|c| c["process"]["user"] = json!({"uid": 65534, "gid": 65534}));
    let st = rt.run_stdout("nobody", &b);
    assert_eq!(status_field(&st, "Groups"), "", "nobody is in no group");
}

#[test]
fn home_comes_from_etc_passwd_unless_set() {
    let rt = Runtime::new();
    let mut b = sh("echo $HOME");
    b.edit(|c| c["process"]["user"] = json!({"uid": 1000, "gid": 1000}));
    assert_eq!(rt.run_stdout("home", &b), "/home/user\n");
    b.edit(|c| {
        c["process"]["env"]
            .as_array_mut()
            .unwrap()
            .push(json!("HOME=/elsewhere"))
    });
    assert_eq!(rt.run_stdout("home2", &b), "/elsewhere\n");
}

#[test]
fn umask_is_applied() {
    let rt = Runtime::new();
    let mut b = sh("umask");
    b.edit(|c| c["process"]["user"]["umask"] = json!(0o077));
    assert_eq!(rt.run_stdout("umask", &b).trim(), "0077");
}

#[test]
fn default_umask_is_0022() {
    let rt = Runtime::new();
    let b = sh("umask");
    assert_eq!(rt.run_stdout("umask0", &b).trim(), "0022");
}

#[test]
fn rlimits_are_applied() {
    let rt = Runtime::new();
    let mut b = sh("grep -E '^Max (open files|processes|core file size)' /proc/self/limits");
    b.edit(|c| {
        c["process"]["rlimits"] = json!([
            {"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456},
            {"type": "RLIMIT_NPROC", "soft": 77, "hard": 88},
            {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}
        ])
    });
    let out = rt.run_stdout("rlimits", &b);
    let row = |name: &str| -> Vec<String> {
        let l = out.lines().find(|l| l.starts_with(name)).expect(&out);
        l[name.len()..]
            .split_whitespace()
            .take(2)
            .map(String::from)
            .collect()
    };
    assert_eq!(row("Max open files"), ["123", "456"]);
    assert_eq!(row("Max processes"), ["77", "88"]);
    assert_eq!(row("Max core file size"), ["0", "0"]);
}

fn caps_of(st: &str) -> [u64; 5] {
    let f = |k| u64::from_str_radix(status_field(st, k), 16).unwrap();
    [
        f("CapInh"),
        f("CapPrm"),
        f("CapEff"),
        f("CapBnd"),
        f("CapAmb"),
    ]
}

const CAP_CHOWN: u64 = 1 << 0;
const CAP_KILL: u64 = 1 << 5;
const CAP_NET_BIND_SERVICE: u64 = 1 << 10;
const CAP_NET_RAW: u64 = 1 << 13;
const CAP_AUDIT_WRITE: u64 = 1 << 29;

#[test]
fn default_spec_capabilities() {
    let rt = Runtime::new();
    let b = sh("cat /proc/self/status");
    let st = rt.run_stdout("defcaps", &b);
    let want = CAP_KILL | CAP_NET_BIND_SERVICE | CAP_AUDIT_WRITE;
    assert_eq!(
        caps_of(&st),
        [0, want, want, want, 0],
        "Inh Prm Eff Bnd Amb"
    );
}

#[test]
fn capability_sets_are_applied_exactly() {
    let rt = Runtime::new();
    let mut b = sh("cat /proc/self/status");
    b.edit(|c| {
        c["process"]["capabilities"] = json!({
            "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"],
            "permitted": ["CAP_CHOWN", "CAP_KILL"],
            "effective": ["CAP_CHOWN"],
            "inheritable": ["CAP_KILL"]
        })
    });
    let st = rt.run_stdout("caps", &b);
    // For uid 0, execve(2) raises the effective set to the permitted one (the kernel's "root"
    // rule; runc shows the same).
    assert_eq!(
        caps_of(&st),
        [
            CAP_KILL,
            CAP_CHOWN | CAP_KILL,
            CAP_CHOWN | CAP_KILL,
            CAP_CHOWN | CAP_KILL | CAP_NET_RAW,
            0
        ],
        "Inh Prm Eff Bnd Amb"
    );
}

#[test]
fn ambient_capabilities_reach_a_non_root_user() {
    let rt = Runtime::new();
    let mut b = sh("cat /proc/self/status");
    let raw = json!(["CAP_NET_RAW"]);
    b.edit(|c| {
        c["process"]["user"] = json!({"uid": 1000, "gid": 1000});
        c["process"]["capabilities"] = json!({
            "bounding": raw, "permitted": raw, "effective": raw, "inheritable": raw, "ambient": raw
        });
    });
    let st = rt.run_stdout("ambient", &b);
    assert_eq!(caps_of(&st), [CAP_NET_RAW; 5], "Inh Prm Eff Bnd Amb");
}

#[test]
fn a_non_root_user_without_ambient_capabilities_has_none_effective() {
    let rt = Runtime::new();
    let mut b = sh("cat /proc/self/status");
    b.edit(|c| c["process"]["user"] = json!({"uid": 1000, "gid": 1000}));
    let st = rt.run_stdout("nonroot", &b);
    let [inh, prm, eff, _bnd, amb] = caps_of(&st);
    assert_eq!((inh, prm, eff, amb), (0, 0, 0, 0), "{st}");
}

#[test]
fn no_new_privileges() {
    let rt = Runtime::new();
    let mut b = sh("cat /proc/self/status");
    let st = rt.run_stdout("nnp1", &b);
    assert_eq!(status_field(&st, "NoNewPrivs"), "1");
    b.edit(|c| c["process"]["noNewPrivileges"] = json!(false));
    let st = rt.run_stdout("nnp0", &b);
    assert_eq!(status_field(&st, "NoNewPrivs"), "0");
}

#[test]
fn oom_score_adj() {
    let rt = Runtime::new();
    let mut b = sh("cat /proc/self/oom_score_adj");
    b.edit(|c| c["process"]["oomScoreAdj"] = json!(500));
    assert_eq!(rt.run_stdout("oom", &b).trim(), "500");
}

#[test]
fn env_is_exactly_the_configured_one() {
    let rt = Runtime::new();
    let mut b = sh("env");
    b.edit(|c| c["process"]["env"] = json!(["PATH=/bin", "FOO=bar baz", "EMPTY=", "TERM=dumb"]));
    let id = unique_id("env");
    let mut cmd = rt.cmd();
    cmd.env("BERTH_TEST_SECRET", "must-not-leak")
        .args(["run", "--bundle", b.path_str(), &id]);
    let o = output_timeout(cmd, std::time::Duration::from_secs(30));
    assert!(o.status.success(), "{}", stderr(&o));
    let mut vars: Vec<String> = stdout(&o)
        .lines()
        .filter(|l| !l.starts_with("PWD=") && !l.starts_with("SHLVL="))
        .map(String::from)
        .collect();
    vars.sort();
    assert_eq!(
        vars,
        [
            "EMPTY=",
            "FOO=bar baz",
            "HOME=/root",
            "PATH=/bin",
            "TERM=dumb"
        ],
        "the runtime's environment leaked or the config's was changed"
    );
}

#[test]
fn cwd_is_entered_and_created_if_missing() {
    let rt = Runtime::new();
    let mut b = sh("pwd");
    b.edit(|c| c["process"]["cwd"] = json!("/var/lib/app/data"));
    assert_eq!(rt.run_stdout("cwd", &b), "/var/lib/app/data\n");
    assert!(b.rootfs().join("var/lib/app/data").is_dir());
}

#[test]
fn cwd_created_for_a_non_root_user_is_usable() {
    let rt = Runtime::new();
    let mut b = sh("pwd");
    b.edit(|c| {
        c["process"]["cwd"] = json!("/home/user/work");
        c["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    });
    assert_eq!(rt.run_stdout("cwduser", &b), "/home/user/work\n");
}

#[test]
fn args_are_passed_verbatim() {
    let rt = Runtime::new();
    let mut b = sh("");
    b.args(&[
        "sh",
        "-c",
        "printf '[%s]' \"$0\" \"$@\"",
        "zero",
        "a b",
        "c'd",
        "",
        "$HOME",
    ]);
    assert_eq!(rt.run_stdout("args", &b), "[zero][a b][c'd][][$HOME]");
}

#[test]
fn program_is_found_through_the_configured_path() {
    let rt = Runtime::new();
    let mut b = sh("");
    std::fs::create_dir_all(b.rootfs().join("opt/tools")).unwrap();
    std::os::unix::fs::symlink("/bin/busybox", b.rootfs().join("opt/tools/mytool")).unwrap();
    // busybox runs the applet named by argv[0]; "echo" through a renamed link would fail, so
    // the link is called through PATH and told which applet to be.
    b.args(&["mytool"]);
    b.edit(|c| c["process"]["env"] = json!(["PATH=/opt/tools"]));
    let id = unique_id("pathlookup");
    let o = rt.run_timeout(&id, &b, &[]);
    // busybox: "mytool: applet not found" proves /opt/tools/mytool was executed.
    assert!(
        stderr(&o).contains("mytool: applet not found"),
        "exit {:?}: {}",
        o.status.code(),
        stderr(&o)
    );
}

#[test]
fn sysctls_are_set_in_the_containers_namespaces_only() {
    let rt = Runtime::new();
    let mut b = sh("cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni");
    b.edit(|c| c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1", "kernel.shmmni": "1234"}));
    let host_fwd = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let host_shm = std::fs::read_to_string("/proc/sys/kernel/shmmni").unwrap();
    assert_eq!(rt.run_stdout("sysctl", &b), "1\n1234\n");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host_fwd
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/shmmni").unwrap(),
        host_shm
    );
}

#[test]
fn process_starts_in_its_own_session() {
    let rt = Runtime::new();
    // /proc/self/stat: field 6 is the session id; in a pid namespace the init leads session 1.
    let b = sh("set -- $(cat /proc/$$/stat); echo sid=$6");
    assert_eq!(rt.run_stdout("session", &b), "sid=1\n");
}

#[test]
fn personality_domain_and_flags() {
    let rt = Runtime::new();
    let mut b =
        sh("uname -m; grep -c . /proc/self/personality 2>/dev/null; cat /proc/self/personality");
    b.edit(|c| {
        c["linux"]["personality"] = json!({"domain": "LINUX32", "flags": ["ADDR_NO_RANDOMIZE"]})
    });
    let out = rt.run_stdout("persona", &b);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("i686"), "{out}");
    // PER_LINUX32 (0x8) | ADDR_NO_RANDOMIZE (0x40000), as /proc/PID/personality prints it.
    assert!(out.contains("00040008"), "{out}");
}

#[test]
fn unknown_personality_flag_names_its_path() {
    let rt = Runtime::new();
    let mut b = sh("true");
    b.edit(|c| c["linux"]["personality"] = json!({"domain": "LINUX", "flags": ["NOPE"]}));
    let o = rt.run(&unique_id("persona-bad"), &b);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("linux.personality.flags[0]"),
        "{}",
        stderr(&o)
    );
    assert!(rt.ids().is_empty());
}

#[test]
fn io_priority_scheduler_and_cpu_affinity() {
    let rt = Runtime::new();
    let mut b = sh(
        "ionice -p $$; cut -d' ' -f19,41 /proc/self/stat; grep Cpus_allowed_list /proc/self/status",
    );
    b.edit(|c| {
        c["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_IDLE", "priority": 0});
        c["process"]["scheduler"] = json!({"policy": "SCHED_BATCH", "nice": 7});
        c["process"]["execCPUAffinity"] = json!({"initial": "0", "final": "0"});
    });
    let out = rt.run_stdout("sched", &b);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("idle"), "{out}");
    // nice 7, policy 3 (SCHED_BATCH), as /proc/PID/stat fields 19 and 41 show them.
    assert_eq!(lines.next(), Some("7 3"), "{out}");
    assert_eq!(
        lines.next().map(|l| l.split_whitespace().last()),
        Some(Some("0")),
        "{out}"
    );
}

#[test]
fn bad_scheduler_values_name_their_field() {
    let rt = Runtime::new();
    let mut b = sh("true");
    b.edit(|c| c["process"]["scheduler"] = json!({"policy": "SCHED_FIFO", "priority": 0}));
    let o = rt.run(&unique_id("sched-bad"), &b);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("process.scheduler.priority"),
        "{}",
        stderr(&o)
    );
    assert!(rt.ids().is_empty());
}

#[test]
fn unsupported_linux_fields_are_refused_not_ignored() {
    let rt = Runtime::new();
    let (field, value) = ("intelRdt", json!({"closID": "x"}));
    let mut b = sh("true");
    b.edit(|c| c["linux"][field] = value);
    let o = rt.run(&unique_id("unsupported"), &b);
    assert!(!o.status.success(), "{field}");
    assert!(
        stderr(&o).contains(&format!("linux.{field}")),
        "{}",
        stderr(&o)
    );
    assert!(rt.ids().is_empty());
}
