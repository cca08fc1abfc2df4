//! Bad profiles are refused with the JSON path of the offending field; runc's lenient cases
//! (unknown syscall names, redundant rules) are not errors.

mod common;

use berth_seccomp::{compile, SeccompError};
use common::profile;

fn err(json: &str) -> SeccompError {
    compile(&profile(json)).expect_err("profile must be refused")
}

fn assert_path(json: &str, path: &str, says: &str) {
    let e = err(json);
    assert_eq!(e.json_path(), Some(path), "{e}");
    let msg = e.to_string();
    assert!(msg.starts_with(&format!("{path}: ")), "{msg}");
    assert!(msg.contains(says), "{msg:?} should say {says:?}");
}

#[test]
fn each_bad_field_is_named() {
    assert_path(
        r#"{"defaultAction":"SCMP_ACT_NOTIFY","listenerPath":"/run/a.sock"}"#,
        "linux.seccomp.defaultAction",
        "SCMP_ACT_NOTIFY cannot be the default action",
    );
    assert_path(
        r#"{"defaultAction":"SCMP_ACT_KILL_PROCESS","defaultErrnoRet":1}"#,
        "linux.seccomp.defaultErrnoRet",
        "only valid when defaultAction is SCMP_ACT_ERRNO or SCMP_ACT_TRACE",
    );
    assert_path(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["read"],"action":"SCMP_ACT_ERRNO"},
            {"names":["read"],"action":"SCMP_ACT_ERRNO"},
            {"names":["read"],"action":"SCMP_ACT_ERRNO"},
            {"names":["read"],"action":"SCMP_ACT_LOG","errnoRet":5}]}"#,
        "linux.seccomp.syscalls[3].errnoRet",
        "not SCMP_ACT_LOG",
    );
    assert_path(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["read"],"action":"SCMP_ACT_ERRNO","errnoRet":4096}]}"#,
        "linux.seccomp.syscalls[0].errnoRet",
        "4096 is not an errno",
    );
    assert_path(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["read"],"action":"SCMP_ACT_ERRNO"},
            {"names":["read"],"action":"SCMP_ACT_ERRNO"},
            {"names":["read"],"action":"SCMP_ACT_ERRNO",
             "args":[{"index":9,"value":1,"op":"SCMP_CMP_EQ"}]}]}"#,
        "linux.seccomp.syscalls[2].args[0].index",
        "9 is out of range",
    );
    assert_path(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":[],"action":"SCMP_ACT_ERRNO"}]}"#,
        "linux.seccomp.syscalls[0].names",
        "at least one",
    );
    assert_path(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["read",""],"action":"SCMP_ACT_ERRNO"}]}"#,
        "linux.seccomp.syscalls[0].names[1]",
        "empty",
    );
    assert_path(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["read"],"action":"SCMP_ACT_ERRNO"},
            {"names":["mkdir"],"action":"SCMP_ACT_NOTIFY"}]}"#,
        "linux.seccomp.listenerPath",
        "linux.seccomp.syscalls[1].action is SCMP_ACT_NOTIFY",
    );
    assert_path(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerMetadata":"x"}"#,
        "linux.seccomp.listenerMetadata",
        "listenerPath",
    );
}

#[test]
fn runc_lenient_cases_compile() {
    // Unknown syscall names are skipped with a note, as runc does.
    let c = compile(&profile(
        r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
            {"names":["read","not_a_syscall_at_all","write"],"action":"SCMP_ACT_ALLOW"}]}"#,
    ))
    .unwrap();
    assert!(c
        .notes()
        .iter()
        .any(|n| n
            .starts_with("linux.seccomp.syscalls[0].names[1]: syscall \"not_a_syscall_at_all\"")));
    // A rule with the default action is skipped, not an error (libseccomp would refuse it).
    let c = compile(&profile(
        r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":1,"syscalls":[
            {"names":["read"],"action":"SCMP_ACT_ERRNO"},
            {"names":["write"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#,
    ))
    .unwrap();
    assert_eq!(c.notes().len(), 2, "{:?}", c.notes());
    // valueTwo next to a non-masked operator is ignored (docker sends "valueTwo": 0).
    compile(&profile(
        r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["personality"],
            "action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":8,"valueTwo":0,"op":"SCMP_CMP_EQ"}]}]}"#,
    ))
    .unwrap();
    // Syscalls of other architectures only (chown32 is x86-only) are fine.
    compile(&profile(
        r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["chown32"],"action":"SCMP_ACT_ALLOW"}]}"#,
    ))
    .unwrap();
}

#[test]
fn unknown_names_are_refused_by_the_parser_not_here() {
    // oci-spec's serde rejects unknown actions/operators/arches/flags at parse time; Berth's
    // config parser turns that into a JSON-path error of its own.
    for bad in [
        r#"{"defaultAction":"SCMP_ACT_NOPE"}"#,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_VAX"]}"#,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_NOPE"]}"#,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":1,"op":"SCMP_CMP_APPROX"}]}]}"#,
    ] {
        assert!(serde_json::from_str::<oci_spec::runtime::LinuxSeccomp>(bad).is_err());
    }
}
