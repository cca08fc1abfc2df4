//! `linux.sysctl` entries that conflict with the spec's own fields, and capability names this
//! runtime or kernel does not know (ignored with runc's warning) against ones that are not
//! capability names at all (refused, naming the field): in config.json, `exec --cap` and
//! `exec --process`. Every case leaves nothing behind.

mod common;

use common::*;
use serde_json::json;

/// `run` of `b` fails with one line holding `needles`, runs nothing, leaves nothing.
fn assert_refused(name: &str, b: &Bundle, needles: &[&str]) {
    let rt = Runtime::new();
    let id = unique_id(name);
    let o = rt.run_timeout(&id, b, &[]);
    assert_one_error_line(&o, needles);
    assert!(!stdout(&o).contains("SHOULD-NOT-RUN"), "{name}");
    assert!(rt.ids().is_empty(), "{name}: berth list is not empty");
    assert_nothing_left(&rt, &id, b);
}

/// `kernel.hostname` would override (or be overridden by) `hostname`: refused as runc refuses
/// it, whether or not `hostname` is set.
#[test]
fn kernel_hostname_sysctl_is_refused_as_conflicting_with_hostname() {
    for (name, hostname) in [
        ("sysctl-hostname", Some("box")),
        ("sysctl-hostname-unset", None),
    ] {
        let mut b = Bundle::sh("echo SHOULD-NOT-RUN");
        b.edit(|c| {
            c["linux"]["sysctl"] = json!({"kernel.hostname": "other"});
            match hostname {
                Some(h) => c["hostname"] = json!(h),
                None => {
                    c.as_object_mut().unwrap().remove("hostname");
                }
            }
        });
        assert_refused(
            name,
            &b,
            &[
                "linux.sysctl[\"kernel.hostname\"]",
                "conflicts with the OCI \"hostname\" field",
            ],
        );
    }
}

/// `kernel.domainname` stays accepted (runc 1.1.5 accepts it; Docker sets its domain name so).
#[test]
fn kernel_domainname_sysctl_is_still_applied() {
    let rt = Runtime::new();
    let mut b = Bundle::sh("cat /proc/sys/kernel/domainname");
    b.edit(|c| c["linux"]["sysctl"] = json!({"kernel.domainname": "example.test"}));
    let id = unique_id("sysctl-domainname");
    let o = rt.run_timeout(&id, &b, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(lines(&stdout(&o)), ["example.test"]);
    assert_nothing_left(&rt, &id, &b);
}

/// Capability numbers (capability.h).
const CHOWN: u32 = 0;
const KILL: u32 = 5;
const NET_RAW: u32 = 13;

/// `Cap…:` lines' value for a set holding `bits`, as /proc/PID/status prints it.
fn mask(bits: &[u32]) -> String {
    format!("{:016x}", bits.iter().fold(0u64, |m, b| m | 1 << b))
}

/// `/proc/self/status`'s `NAME:` value in `out`.
fn cap_line<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {name} in {out:?}"))
}

/// Asserts that stderr holds exactly one line, runc's warning naming `names` (sorted).
fn assert_one_warning(o: &std::process::Output, names: &str) {
    let err = stderr(o);
    let want = format!("ignoring unknown or unavailable capabilities: [{names}]");
    assert_eq!(lines(&err).len(), 1, "one line on stderr: {err:?}");
    assert!(
        err.contains("level=warning") && err.contains(&want),
        "{want:?} in {err:?}"
    );
}

const STATUS: &str = "grep -E '^Cap(Inh|Prm|Eff|Bnd)' /proc/self/status";

/// Names in capability form that this runtime does not know (newer than it, or made up) are
/// dropped from every set, with one warning listing them (runc's), and the container runs.
#[test]
fn unknown_capability_names_are_ignored_with_one_warning() {
    let rt = Runtime::new();
    let mut b = Bundle::sh(STATUS);
    b.edit(|c| {
        let caps = json!(["CAP_CHOWN", "CAP_TEST_CAP", "CAP_KILL", "CAP_ZZZ"]);
        for set in ["bounding", "effective", "permitted"] {
            c["process"]["capabilities"][set] = caps.clone();
        }
        c["process"]["capabilities"]["inheritable"] = json!(["CAP_NEWER_THAN_THIS", "CAP_ZZZ"]);
    });
    let id = unique_id("caps-unknown");
    let o = rt.run_timeout(&id, &b, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_one_warning(&o, "CAP_NEWER_THAN_THIS CAP_TEST_CAP CAP_ZZZ");
    let out = stdout(&o);
    for set in ["CapBnd", "CapPrm", "CapEff"] {
        assert_eq!(cap_line(&out, set), mask(&[CHOWN, KILL]), "{set}: {out}");
    }
    assert_eq!(cap_line(&out, "CapInh"), mask(&[]), "{out}");
    assert_nothing_left(&rt, &id, &b);
}

/// What is not a capability name in form stays an error, naming the entry by its index in the
/// config (ignored names before it do not shift it).
#[test]
fn what_is_not_a_capability_name_is_refused_naming_the_entry() {
    for (name, value, needle) in [
        ("caps-not-a-name", json!("NOT A CAP"), "\"NOT A CAP\""),
        ("caps-not-a-string", json!(7), "7"),
    ] {
        let mut b = Bundle::sh("echo SHOULD-NOT-RUN");
        b.edit(|c| {
            c["process"]["capabilities"]["bounding"] =
                json!(["CAP_CHOWN", "CAP_TEST_CAP", "CAP_KILL", value]);
        });
        assert_refused(
            name,
            &b,
            &[
                "process.capabilities.bounding[3]",
                "capability name",
                needle,
            ],
        );
    }
}

/// A container running `sleep`, with the default capabilities.
struct Sleeper {
    rt: Runtime,
    bundle: Bundle,
    id: String,
}

impl Sleeper {
    fn new(name: &str) -> Sleeper {
        let rt = Runtime::new();
        let bundle = Bundle::sh("exec sleep 1000");
        let id = unique_id(name);
        rt.create(&id, &bundle);
        rt.ok(&["start", &id]);
        Sleeper { rt, bundle, id }
    }

    fn exec(&self, flags: &[&str], cmd: &[&str]) -> std::process::Output {
        let mut args = vec!["exec"];
        args.extend_from_slice(flags);
        args.push(&self.id);
        args.extend_from_slice(cmd);
        self.rt.berth(&args)
    }

    fn done(self) {
        self.rt.ok(&["delete", "--force", &self.id]);
        assert_nothing_left(&self.rt, &self.id, &self.bundle);
    }
}

/// `exec --cap NAME`: an unknown name in capability form is ignored with the warning (runc's),
/// the known ones are added; a name that is not one is refused, naming the flag.
#[test]
fn exec_cap_ignores_unknown_names_with_a_warning() {
    let c = Sleeper::new("caps-exec-flag");
    let base = c.exec(&[], &["sh", "-c", STATUS]);
    assert!(base.status.success(), "{}", stderr(&base));
    let base_eff = u64::from_str_radix(cap_line(&stdout(&base), "CapEff"), 16).unwrap();
    assert_eq!(base_eff & 1 << NET_RAW, 0, "the default set has no NET_RAW");
    let o = c.exec(
        &["--cap", "CAP_TEST_CAP", "--cap", "CAP_NET_RAW"],
        &["sh", "-c", STATUS],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_one_warning(&o, "CAP_TEST_CAP");
    let eff = u64::from_str_radix(cap_line(&stdout(&o), "CapEff"), 16).unwrap();
    assert_eq!(eff, base_eff | 1 << NET_RAW, "{}", stdout(&o));
    let o = c.exec(&["--cap", "not a cap"], &["true"]);
    assert_one_error_line(&o, &["--cap \"not a cap\"", "capability name"]);
    c.done();
}

/// `exec --process FILE`: the same for the file's capability sets.
#[test]
fn exec_process_file_ignores_unknown_capability_names_with_a_warning() {
    let c = Sleeper::new("caps-exec-process");
    let file = c.bundle.path().join("process.json");
    let write = |caps: serde_json::Value| {
        let p = json!({
            "args": ["sh", "-c", STATUS], "env": ["PATH=/bin"], "cwd": "/",
            "user": {"uid": 0, "gid": 0},
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps}
        });
        std::fs::write(&file, p.to_string()).unwrap();
    };
    write(json!(["CAP_KILL", "CAP_NEWER"]));
    let o = c.exec(&["--process", file.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_one_warning(&o, "CAP_NEWER");
    assert_eq!(cap_line(&stdout(&o), "CapEff"), mask(&[KILL]));
    write(json!(["CAP_KILL", "CAP_NEWER", "kill it"]));
    let o = c.exec(&["--process", file.to_str().unwrap()], &[]);
    assert_one_error_line(&o, &["process.capabilities.bounding[2]", "capability name"]);
    c.done();
}
