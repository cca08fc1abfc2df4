//! The process to run: the container's own process with `berth exec`'s flags applied, or a
//! `--process FILE` object completed from the container's process; the flag parsing helpers.

use std::path::Path;

use oci_spec::runtime::{Capability, LinuxCapabilities, Process};

use super::Overrides;
use crate::config::ConfigError;
use crate::error::{Error, Result};
use crate::linux::identity::id_range_error;

/// Reads `--process FILE`: an OCI process object. Errors name the field by its JSON path
/// (`process.args`, `process.user.uid`, …).
pub fn process_from_file(path: &Path) -> Result<Process> {
    use crate::config::limits;
    let what = format!("--process {}", path.display());
    let file = std::fs::File::open(path).map_err(|e| Error::sys(&what, e))?;
    let mut bytes = limits::read_bounded(file)
        .map_err(|e| Error::sys(&what, e))?
        .ok_or_else(|| Error::Usage(format!("{what}: {}", limits::too_large())))?;
    // runc's process type has a plain (not optional) user: a file without one runs as uid 0,
    // gid 0. oci-spec requires the field, so an object without it gets that default. (The tree
    // is built within the input bounds, which name what crosses them.)
    let tree = limits::value(&bytes, "process").map_err(|e| in_source(&what, e))?;
    if let Some(serde_json::Value::Object(mut o)) = tree {
        if !o.contains_key("user") {
            o.insert("user".into(), serde_json::json!({"uid": 0, "gid": 0}));
            bytes = serde_json::to_vec(&o).unwrap_or(bytes);
        }
    }
    let (p, ignored) = parse_process(&bytes).map_err(|e| in_source(&what, e))?;
    crate::config::check_process_fields(&p, "process").map_err(|e| in_source(&what, e))?;
    crate::linux::capabilities::warn_ignored(&ignored, p.capabilities().as_ref());
    Ok(p)
}

/// What a `--process` object leaves out comes from the container's own process, as runc does:
/// capabilities above all (an exec'd process never gets more than the container's because its
/// JSON omitted them), then noNewPrivileges, rlimits, oomScoreAdj and the LSM labels.
pub(super) fn inherit_from_container(p: &mut Process, c: &Process) {
    if p.capabilities().is_none() {
        p.set_capabilities(c.capabilities().clone());
    }
    if p.no_new_privileges().is_none() {
        p.set_no_new_privileges(c.no_new_privileges());
    }
    if p.rlimits().as_ref().is_none_or(|r| r.is_empty()) {
        p.set_rlimits(c.rlimits().clone());
    }
    if p.oom_score_adj().is_none() {
        p.set_oom_score_adj(c.oom_score_adj());
    }
    if p.apparmor_profile().as_ref().is_none_or(|a| a.is_empty()) {
        p.set_apparmor_profile(c.apparmor_profile().clone());
    }
    if p.selinux_label().as_ref().is_none_or(|l| l.is_empty()) {
        p.set_selinux_label(c.selinux_label().clone());
    }
}

/// Parses a process object with the config parser's field-naming errors (`process.user.uid`);
/// also returns the capability names it ignored (unknown to Berth).
fn parse_process(bytes: &[u8]) -> std::result::Result<(Process, Vec<String>), ConfigError> {
    crate::config::parse_object_keeping(bytes, "process")
}

/// Re-labels a config error with where the JSON came from, instead of "config.json".
fn in_source(what: &str, e: ConfigError) -> Error {
    match e {
        ConfigError::Parse { field, msg } => Error::Usage(format!("{what}: {field}{msg}")),
        ConfigError::Invalid { field, msg } => Error::Usage(format!("{what}: {field}: {msg}")),
        other => other.into(),
    }
}

/// The container's own process with the command line's changes, as runc makes it: args
/// replaced, env appended (a later KEY= replaces an earlier one), terminal only with --tty,
/// `--cap` added to bounding, effective and permitted (and ambient when the process has an
/// inheritable set).
pub fn process_from_flags(mut p: Process, args: &[String], o: &Overrides) -> Result<Process> {
    if args.is_empty() || args[0].is_empty() {
        return Err(Error::Usage(
            "exec: no command: give COMMAND [ARGS…] after the container id, or --process FILE"
                .into(),
        ));
    }
    p.set_args(Some(args.to_vec()));
    if let Some(cwd) = &o.cwd {
        p.set_cwd(cwd.clone());
    }
    if !o.env.is_empty() {
        let mut env = p.env().clone().unwrap_or_default();
        for (i, e) in o.env.iter().enumerate() {
            let Some((key, _)) = e.split_once('=').filter(|(k, _)| !k.is_empty()) else {
                return Err(Error::Usage(format!(
                    "--env {e:?} (#{}): not of the form KEY=value",
                    i + 1
                )));
            };
            env.retain(|old| old.split_once('=').map(|(k, _)| k) != Some(key));
            env.push(e.clone());
        }
        p.set_env(Some(env));
    }
    p.set_terminal(Some(o.tty));
    if o.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if let Some(a) = &o.apparmor {
        p.set_apparmor_profile(Some(a.clone()));
    }
    if let Some(l) = &o.process_label {
        p.set_selinux_label(Some(l.clone()));
    }
    if let Some(u) = &o.user {
        let (uid, gid) = parse_user(u)?;
        p.user_mut().set_uid(uid);
        if let Some(g) = gid {
            p.user_mut().set_gid(g);
        }
    }
    if !o.additional_gids.is_empty() {
        if let Some(m) = o.additional_gids.iter().find_map(|g| id_range_error(*g)) {
            return Err(Error::Usage(format!("--additional-gids {m}")));
        }
        let mut gids = p.user().additional_gids().clone().unwrap_or_default();
        gids.extend(&o.additional_gids);
        p.user_mut().set_additional_gids(Some(gids));
    }
    let mut unknown = Vec::new();
    if !o.caps.is_empty() {
        let mut caps = Vec::new();
        for c in &o.caps {
            match parse_cap(c)? {
                Ok(cap) => caps.push(cap),
                Err(name) => unknown.push(name),
            }
        }
        // Without process.capabilities nothing is dropped: there is nothing to add to.
        if let Some(pc) = p.capabilities().clone() {
            p.set_capabilities(Some(add_caps(pc, &caps)));
        }
    }
    crate::config::check_process_fields(&p, "process").map_err(|e| in_source("exec", e))?;
    crate::linux::capabilities::warn_ignored(&unknown, p.capabilities().as_ref());
    Ok(p)
}

/// `uid[:gid]`, numeric as runc takes it.
fn parse_user(u: &str) -> Result<(u32, Option<u32>)> {
    let bad = |what: &str, v: &str| {
        Error::Usage(format!(
            "--user {u:?}: bad {what} {v:?} (expected uid[:gid], numbers)"
        ))
    };
    let (uid, gid) = match u.split_once(':') {
        Some((a, b)) => (a, Some(b)),
        None => (u, None),
    };
    let uid = uid.parse().map_err(|_| bad("uid", uid))?;
    let gid = gid
        .map(|g| g.parse().map_err(|_| bad("gid", g)))
        .transpose()?;
    for (what, v) in [("uid", Some(uid)), ("gid", gid)] {
        if let Some(m) = v.and_then(id_range_error) {
            return Err(Error::Usage(format!("--user {u:?}: {what} {m}")));
        }
    }
    Ok((uid, gid))
}

/// `CAP_NET_ADMIN`, `NET_ADMIN` or `net_admin`. A name in capability form that Berth does not
/// know (newer than it, or made up) is `Err(name)`: ignored with a warning, as runc ignores
/// it; what is not a capability name at all is refused.
fn parse_cap(c: &str) -> Result<std::result::Result<Capability, String>> {
    let up = c.to_ascii_uppercase();
    let name = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    match serde_json::from_value(serde_json::Value::String(name.clone())) {
        Ok(cap) => Ok(Ok(cap)),
        Err(_) if crate::config::capability_form(&name) => Ok(Err(name)),
        Err(_) => Err(Error::Usage(format!(
            "--cap {c:?}: not a capability name (CAP_ followed by A-Z, 0-9, _)"
        ))),
    }
}

fn add_caps(mut pc: LinuxCapabilities, caps: &[Capability]) -> LinuxCapabilities {
    let add = |set: Option<&std::collections::HashSet<Capability>>| {
        let mut s = set.cloned().unwrap_or_default();
        s.extend(caps.iter().copied());
        Some(s)
    };
    let (b, e, p) = (
        add(pc.bounding().as_ref()),
        add(pc.effective().as_ref()),
        add(pc.permitted().as_ref()),
    );
    pc.set_bounding(b);
    pc.set_effective(e);
    pc.set_permitted(p);
    // Ambient needs the capability inheritable too; `--cap` does not add to inheritable.
    if pc.inheritable().is_some() {
        let a = add(pc.ambient().as_ref());
        pc.set_ambient(a);
    }
    pc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Process {
        serde_json::from_str(
            r#"{"user":{"uid":0,"gid":0},"cwd":"/","args":["sh"],"env":["PATH=/bin","A=1"],
               "terminal":true,
               "capabilities":{"bounding":["CAP_KILL"],"effective":["CAP_KILL"],
                               "permitted":["CAP_KILL"]}}"#,
        )
        .unwrap()
    }

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_override_the_container_process_as_runc_does() {
        let o = Overrides {
            cwd: Some("/tmp".into()),
            env: vec!["A=2".into(), "B=3".into()],
            user: Some("1000:1001".into()),
            additional_gids: vec![10],
            caps: vec!["net_admin".into()],
            no_new_privs: true,
            ..Default::default()
        };
        let p = process_from_flags(base(), &args(&["id", "-u"]), &o).unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &args(&["id", "-u"]));
        assert_eq!(p.cwd(), Path::new("/tmp"));
        assert_eq!(
            p.env().as_ref().unwrap(),
            &args(&["PATH=/bin", "A=2", "B=3"])
        );
        assert_eq!((p.user().uid(), p.user().gid()), (1000, 1001));
        assert_eq!(p.user().additional_gids().as_ref().unwrap(), &vec![10]);
        assert_eq!(
            p.terminal(),
            Some(false),
            "no --tty: no terminal, whatever the config says"
        );
        assert_eq!(p.no_new_privileges(), Some(true));
        let c = p.capabilities().as_ref().unwrap();
        for set in [c.bounding(), c.effective(), c.permitted()] {
            assert!(set.as_ref().unwrap().contains(&Capability::NetAdmin));
        }
        assert!(
            c.ambient().is_none(),
            "no inheritable set: ambient untouched"
        );
    }

    #[test]
    fn bad_flags_are_named() {
        let e = |o: Overrides, a: &[&str]| {
            process_from_flags(base(), &args(a), &o)
                .unwrap_err()
                .to_string()
        };
        assert!(e(Overrides::default(), &[]).contains("no command"));
        let u = e(
            Overrides {
                user: Some("bob".into()),
                ..Default::default()
            },
            &["id"],
        );
        assert!(u.contains("--user \"bob\": bad uid"), "{u}");
        let c = e(
            Overrides {
                caps: vec!["no such cap".into()],
                ..Default::default()
            },
            &["id"],
        );
        assert!(
            c.contains("--cap \"no such cap\": not a capability name"),
            "{c}"
        );
        let v = e(
            Overrides {
                env: vec!["NOEQUALS".into()],
                ..Default::default()
            },
            &["id"],
        );
        assert!(v.contains("--env \"NOEQUALS\""), "{v}");
        let w = e(
            Overrides {
                cwd: Some("relative".into()),
                ..Default::default()
            },
            &["id"],
        );
        assert!(w.contains("process.cwd: must be an absolute path"), "{w}");
    }

    #[test]
    fn unknown_cap_flags_are_left_out() {
        let o = Overrides {
            caps: vec!["CAP_NOPE".into(), "net_raw".into()],
            ..Default::default()
        };
        let p = process_from_flags(base(), &args(&["id"]), &o).unwrap();
        let c = p.capabilities().as_ref().unwrap();
        let want: std::collections::HashSet<_> = [Capability::Kill, Capability::NetRaw].into();
        assert_eq!(c.bounding().as_ref(), Some(&want));
    }

    #[test]
    fn process_file_errors_name_the_json_path() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.json");
        let err = |body: &str| {
            std::fs::write(&f, body).unwrap();
            process_from_file(&f).unwrap_err().to_string()
        };
        let e = err(r#"{"user":{"uid":0,"gid":0},"cwd":"/","args":[]}"#);
        assert!(
            e.contains("--process ") && e.contains(": process.args: must name a program"),
            "{e}"
        );
        let e = err(r#"{"user":{"uid":"x","gid":0},"cwd":"/","args":["a"]}"#);
        assert!(e.contains("process.user.uid: invalid type"), "{e}");
        let e = err(r#"{"user":{"uid":0,"gid":0},"cwd":"/","args":["a"],
                        "rlimits":[{"type":"RLIMIT_BOGUS","hard":1,"soft":1}]}"#);
        assert!(
            e.contains("process.rlimits[0].type: unknown rlimit \"RLIMIT_BOGUS\""),
            "{e}"
        );
        let e = err("null");
        assert!(e.contains("process"), "{e}");
        std::fs::write(
            &f,
            r#"{"user":{"uid":5,"gid":6},"cwd":"/w","args":["a","b"],"terminal":true}"#,
        )
        .unwrap();
        let p = process_from_file(&f).unwrap();
        assert_eq!(p.user().uid(), 5);
        assert_eq!(p.terminal(), Some(true));
    }

    #[test]
    fn a_process_file_past_the_input_bounds_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.json");
        let args = vec!["a"; 100_000];
        let body = serde_json::json!({"cwd": "/", "args": args});
        std::fs::write(&f, body.to_string()).unwrap();
        let e = process_from_file(&f).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "--process {}: process.args: 100000 entries, at most 65536 are accepted",
                f.display()
            )
        );
    }

    #[test]
    fn a_process_file_without_user_runs_as_root_as_with_runc() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.json");
        std::fs::write(&f, r#"{"cwd":"/","args":["id"]}"#).unwrap();
        let p = process_from_file(&f).unwrap();
        assert_eq!((p.user().uid(), p.user().gid()), (0, 0));
        // Errors elsewhere in such a file still name their field.
        std::fs::write(&f, r#"{"cwd":"/","args":["a"],"env":[1]}"#).unwrap();
        let e = process_from_file(&f).unwrap_err().to_string();
        assert!(e.contains("process.env[0]"), "{e}");
    }

    #[test]
    fn a_process_file_never_gets_more_than_the_container_process() {
        let mut p: Process = serde_json::from_str(
            r#"{"user":{"uid":0,"gid":0},"cwd":"/","args":["id"],"noNewPrivileges":false}"#,
        )
        .unwrap();
        let mut c = base();
        c.set_no_new_privileges(Some(true));
        c.set_rlimits(Some(vec![serde_json::from_str(
            r#"{"type":"RLIMIT_NOFILE","hard":64,"soft":64}"#,
        )
        .unwrap()]));
        inherit_from_container(&mut p, &c);
        assert_eq!(
            p.capabilities(),
            c.capabilities(),
            "capabilities from the container"
        );
        assert_eq!(p.rlimits(), c.rlimits());
        assert_eq!(p.no_new_privileges(), Some(false), "given values are kept");
    }
}
