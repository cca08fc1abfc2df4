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
