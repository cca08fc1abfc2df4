//! What the fuzz targets (fuzz/) found, checked on the real binary: each refusal is one line
//! naming the field, nothing left behind.

mod common;
use common::*;

/// A JSON key holding a control character (here a newline, `"e\nv"`) is quoted in the error
/// (the path of a syntax error inside its value); the line on stderr must stay one line.
#[test]
fn control_characters_in_a_json_key_keep_the_error_on_one_line() {
    let rt = Runtime::new();
    let id = unique_id("fuzz-ctl-key");
    let b = Bundle::busybox();
    let mut text = serde_json::to_string(&b.config).unwrap();
    let at = text.find("\"process\":{").expect("process in config") + "\"process\":{".len();
    text.insert_str(at, r#""e\nv":[1 2],"#);
    std::fs::write(b.path().join("config.json"), &text).unwrap();
    let o = rt.berth(&["create", "--bundle", b.path_str(), &id]);
    assert_one_error_line(&o, &["config.json: process.e\\nv: expected `,` or `]`"]);
    assert_nothing_left(&rt, &id, &b);
}

/// A corrupt state.json names the field that is wrong, by its JSON path.
#[test]
fn corrupt_state_json_names_the_field() {
    let rt = Runtime::new();
    let id = unique_id("fuzz-state");
    let dir = rt.root.path().join(&id);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("state.json"),
        format!(
            r#"{{"id":"{id}","pid":1,"start_time":1,"bundle":"/b","rootfs":"/r","created":"","cgroup":{{"path":5}}}}"#
        ),
    )
    .unwrap();
    let o = rt.berth(&["state", &id]);
    assert_one_error_line(
        &o,
        &["is corrupt", "cgroup.path: invalid type: integer `5`"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An `events --interval` too long for a duration was a panic (abort, exit 134).
#[test]
fn an_interval_beyond_any_duration_is_refused() {
    let rt = Runtime::new();
    let o = rt.berth(&["events", "--interval", "99999999999999999999s", "some-id"]);
    assert_one_error_line(
        &o,
        &["--interval", "invalid duration \"99999999999999999999s\""],
    );
    assert_eq!(o.status.code(), Some(1), "{o:?}");
}

/// A key given twice is refused where the first occurrence is wrong, and the error names that
/// field (the fuzz harness once looked it up in the last occurrence only).
#[test]
fn a_duplicate_key_is_refused_at_its_first_wrong_occurrence() {
    let rt = Runtime::new();
    let id = unique_id("fuzz-dup-key");
    let b = Bundle::busybox();
    let mut text = serde_json::to_string(&b.config).unwrap();
    let at = text.find("\"process\":{").expect("process in config") + "\"process\":{".len();
    text.insert_str(
        at,
        r#""capabilities":{"bounding":["CAP_KILL"],"permitted":["AP_KHLL"]},"#,
    );
    std::fs::write(b.path().join("config.json"), &text).unwrap();
    let o = rt.berth(&["create", "--bundle", b.path_str(), &id]);
    assert_one_error_line(&o, &["process.capabilities.permitted[0]", "AP_KHLL"]);
    assert_nothing_left(&rt, &id, &b);
}
