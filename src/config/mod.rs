//! The bundle's `config.json`: read once, parsed into oci-spec types with the JSON path of any
//! error kept, then validated (`validate.rs`) before Berth causes any side effect.

pub mod limits;
mod validate;

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use thiserror::Error;

pub use validate::{check_process_fields, id_map_text, sysctl_field, validate};

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("bundle {bundle:?}: {what}: {source}")]
    Read {
        bundle: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The JSON did not parse or did not match the OCI types; `field` is its JSON path.
    #[error("config.json: {field}{msg}")]
    Parse { field: String, msg: String },
    /// A semantically invalid or unsupported value; `field` is its JSON path.
    #[error("config.json: {field}: {msg}")]
    Invalid { field: String, msg: String },
}

impl ConfigError {
    pub fn invalid(field: impl Into<String>, msg: impl Into<String>) -> Self {
        ConfigError::Invalid {
            field: field.into(),
            msg: msg.into(),
        }
    }
}

/// A bundle whose config has been loaded and validated.
pub struct Bundle {
    /// Absolute path of the bundle directory.
    pub dir: PathBuf,
    /// Absolute path of the root filesystem.
    pub rootfs: PathBuf,
    pub spec: Spec,
    /// config.json as read, kept beside the state (no second serialisation).
    pub raw: Vec<u8>,
}

/// Reads `<bundle>/config.json` and validates it. Nothing on the system is changed.
pub fn load_bundle(bundle: &Path) -> Result<Bundle, ConfigError> {
    let dir = std::path::absolute(bundle).map_err(|source| ConfigError::Read {
        bundle: bundle.to_path_buf(),
        what: "cannot resolve bundle path",
        source,
    })?;
    let bytes = std::fs::read(dir.join("config.json")).map_err(|source| ConfigError::Read {
        bundle: dir.clone(),
        what: "cannot read config.json",
        source,
    })?;
    let (spec, ignored) = parse_object_keeping(&bytes, "")?;
    let rootfs = validate(&spec, &dir)?;
    crate::linux::capabilities::warn_ignored(
        &ignored,
        spec.process()
            .as_ref()
            .and_then(|p| p.capabilities().as_ref()),
    );
    Ok(Bundle {
        dir,
        rootfs,
        spec,
        raw: bytes,
    })
}

/// Parses config.json bytes into a [`Spec`], naming the JSON path of the offending field.
pub fn parse(bytes: &[u8]) -> Result<Spec, ConfigError> {
    parse_object(bytes, "")
}

/// Parses the container's stored config.json: `create`'s copy of the bundle's, which [`parse`]
/// took then. Read by every `exec`, `kill`, `delete` and `update`, it skips [`parse`]'s bounded
/// pre-pass (a `serde_json::Value` of the whole document, which the bounds and the capability
/// names are checked on) and goes into the types at once: 0.5 against 1.3 ms for a config with
/// a 600-rule seccomp profile. (Plain `serde_json::from_slice` would take 0.3 ms, for 190 KB
/// more binary: a second instance of the whole `Spec` deserializer.) What that refuses, a
/// capability name the types do not know (which [`parse`] drops, with the same result), takes
/// [`parse`]: the two give the same `Spec` for any document [`parse`] accepts, and the same
/// error for any it refuses within its bounds.
pub fn parse_stored(bytes: &[u8]) -> Result<Spec, ConfigError> {
    typed_from_bytes(bytes, "").or_else(|_| parse(bytes))
}

/// Parses one JSON object into `T`. Error paths are prefixed with `at` (`process` for an
/// `exec --process` file, so that its fields are named as in config.json). Anything but an
/// object is refused: serde would otherwise take `[]` for a struct with every field missing.
/// Capability names this runtime does not know are dropped (see [`parse_object_keeping`]).
pub fn parse_object<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    at: &str,
) -> Result<T, ConfigError> {
    parse_object_keeping(bytes, at).map(|(v, _)| v)
}

/// [`parse_object`], also returning the capability names it dropped from the capability sets
/// (of `process`, or of the object itself when `at` is `process`): names in capability form
/// that neither Berth nor the oci-spec types know (`CAP_TEST_CAP`, a capability newer than
/// them), which runc ignores with a warning so that configs from newer hosts still run. They
/// are dropped before the typed deserialization, which would refuse them.
pub fn parse_object_keeping<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    at: &str,
) -> Result<(T, Vec<String>), ConfigError> {
    let pointer = if at.is_empty() {
        "/process/capabilities"
    } else {
        "/capabilities"
    };
    // The tree is built within the input bounds (limits.rs), which refuse a runaway document
    // before it is allocated. Only when there is a name to drop is the value deserialized from
    // the edited tree (whose errors carry no line and column); else straight from the bytes.
    if let Some(mut v) = limits::value(bytes, at)? {
        let base = if at.is_empty() { "process" } else { at };
        let dropped = match v.pointer_mut(pointer) {
            Some(caps) => drop_unknown_capabilities(caps, &format!("{base}.capabilities"))?,
            None => Vec::new(),
        };
        if !dropped.is_empty() {
            let value = typed(v, at)?;
            return Ok((value, dropped));
        }
    }
    Ok((typed_from_bytes(bytes, at)?, Vec::new()))
}

/// The five sets of `process.capabilities`.
const CAPABILITY_SETS: [&str; 5] = [
    "bounding",
    "effective",
    "inheritable",
    "permitted",
    "ambient",
];

/// Removes from each set of `caps` (at JSON path `at`) the names in capability form
/// (`CAP_[A-Z0-9_]+`) that are not known capabilities, and returns them. An entry that is not a
/// capability name at all (not a string, or not in that form) is an error naming it, by its
/// index in the file.
fn drop_unknown_capabilities(
    caps: &mut serde_json::Value,
    at: &str,
) -> Result<Vec<String>, ConfigError> {
    let mut dropped = Vec::new();
    for set in CAPABILITY_SETS {
        // A set that is not an array is left to the typed deserialization to report.
        let Some(list) = caps.get_mut(set).and_then(|l| l.as_array_mut()) else {
            continue;
        };
        let mut keep = Vec::with_capacity(list.len());
        for (k, entry) in list.drain(..).enumerate() {
            let not_a_name = |what: String| ConfigError::Parse {
                field: format!("{at}.{set}[{k}]: "),
                msg: format!("{what} is not a capability name (CAP_ followed by A-Z, 0-9, _)"),
            };
            let Some(name) = entry.as_str() else {
                return Err(not_a_name(entry.to_string()));
            };
            if serde_json::from_value::<oci_spec::runtime::Capability>(entry.clone()).is_ok() {
                keep.push(entry);
            } else if capability_form(name) {
                dropped.push(name.to_string());
            } else {
                return Err(not_a_name(format!("{name:?}")));
            }
        }
        *list = keep;
    }
    Ok(dropped)
}

/// `CAP_` followed by capital letters, digits and `_`: how capabilities are named.
pub fn capability_form(name: &str) -> bool {
    name.strip_prefix("CAP_").is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    })
}

/// Deserializes the edited tree `v` into `T`, naming the field of an error (by path; the tree
/// has no line and column to give).
fn typed<T: serde::de::DeserializeOwned>(v: serde_json::Value, at: &str) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(v).map_err(|e| path_error(e, at))
}

/// The field named by a serde_path_to_error error, prefixed with `at`, and its message.
fn path_error(e: serde_path_to_error::Error<serde_json::Error>, at: &str) -> ConfigError {
    let path = match e.path().to_string() {
        p if p == "." || p.is_empty() => at.to_string(),
        p if at.is_empty() => p,
        p => format!("{at}.{p}"),
    };
    let inner = e.into_inner();
    parse_error(&path, &inner)
}

/// Deserializes `bytes` (one JSON object) into `T`.
fn typed_from_bytes<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    at: &str,
) -> Result<T, ConfigError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        let found = match first {
            None => "the file is empty",
            Some(b'[') => "found an array",
            Some(b'"') => "found a string",
            Some(b'n') => "found null",
            Some(b't' | b'f') => "found a boolean",
            Some(b'-' | b'0'..=b'9') => "found a number",
            Some(_) => "found something that is not JSON",
        };
        return Err(ConfigError::Parse {
            field: String::new(),
            msg: format!("must be a JSON object ({found})"),
        });
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| path_error(e, at))?;
    // One object and nothing after it but white space.
    de.end().map_err(|e| parse_error("", &e))?;
    Ok(value)
}

/// The spec's name for an enum value (`"pid"`, `"RLIMIT_NOFILE"`), quoted, as config.json
/// spells it: what the user wrote, not Berth's Rust name for it.
pub fn spec_name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => format!("{s:?}"),
        Ok(other) => other.to_string(),
        Err(_) => "?".into(),
    }
}

/// Turns a serde error at `path` into a message that names the field and what is wrong with it,
/// e.g. `process.rlimits[1].type: unknown rlimit "RLIMIT_FOO"`.
fn parse_error(path: &str, err: &serde_json::Error) -> ConfigError {
    let raw = err.to_string();
    // serde_json appends " at line L column C"; keep the position, it helps with big files.
    let (text, pos) = match raw.rfind(" at line ") {
        Some(i) => (&raw[..i], &raw[i + 1..]),
        None => (raw.as_str(), ""),
    };
    let msg = if let Some(rest) = text.strip_prefix("unknown variant `") {
        let value = rest.split('`').next().unwrap_or(rest);
        format!("unknown {} {value:?}", noun_for(path))
    } else if let Some(rest) = text.strip_prefix("no variant for ") {
        // oci-spec's capability parser: "no variant for CAP_NOPE (converted to NOPE)".
        let value = rest.split(" (converted").next().unwrap_or(rest);
        format!("unknown {} {value:?}", noun_for(path))
    } else {
        text.to_string()
    };
    let field = if path.is_empty() {
        String::new()
    } else {
        format!("{path}: ")
    };
    let msg = if pos.is_empty() {
        msg
    } else {
        format!("{msg} ({pos})")
    };
    ConfigError::Parse { field, msg }
}

/// What kind of value lives at a JSON path, for "unknown X" messages.
fn noun_for(path: &str) -> &'static str {
    let last = path.rsplit('.').next().unwrap_or(path);
    let parent = path.rsplit('.').nth(1).unwrap_or("");
    if path.starts_with("process.capabilities.") {
        "capability"
    } else if parent.starts_with("rlimits[") {
        "rlimit"
    } else if parent.starts_with("namespaces[") {
        "namespace type"
    } else if path.starts_with("linux.seccomp") {
        match last.split('[').next().unwrap_or(last) {
            "defaultAction" | "action" => "action",
            "architectures" => "architecture",
            "flags" => "flag",
            "op" => "operator",
            _ => "value",
        }
    } else if parent.starts_with("devices[") {
        "device type"
    } else {
        "value"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> String {
        parse(json.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn unknown_rlimit_names_its_path() {
        let e = err(
            r#"{"ociVersion":"1.0.2","process":{"user":{"uid":0,"gid":0},"cwd":"/",
            "rlimits":[{"type":"RLIMIT_NOFILE","hard":1,"soft":1},{"type":"RLIMIT_FOO","hard":1,"soft":1}]}}"#,
        );
        assert!(
            e.starts_with("config.json: process.rlimits[1].type: unknown rlimit \"RLIMIT_FOO\""),
            "{e}"
        );
    }

    #[test]
    fn a_stored_config_parses_as_it_did_at_create() {
        let plain = br#"{"ociVersion":"1.0.2","process":{"user":{"uid":0,"gid":0},"cwd":"/",
            "args":["sh"],"capabilities":{"bounding":["CAP_CHOWN"]}},"root":{"path":"rootfs"},
            "linux":{"seccomp":{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["kcmp"],
            "action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":1,"op":"SCMP_CMP_EQ"}]}]}}}"#;
        // The types refuse an unknown capability name: the checked path drops it.
        let newer = br#"{"ociVersion":"1.0.2","process":{"user":{"uid":0,"gid":0},"cwd":"/",
            "capabilities":{"bounding":["CAP_CHOWN","CAP_NEWER_THAN_US"]}}}"#;
        for doc in [&plain[..], &newer[..]] {
            assert_eq!(parse_stored(doc).unwrap(), parse(doc).unwrap());
        }
        assert!(
            typed_from_bytes::<Spec>(newer, "").is_err(),
            "the fallback is taken"
        );
        // And what parse refuses, parse_stored refuses the same way.
        assert_eq!(
            parse_stored(b"[]").unwrap_err().to_string(),
            parse(b"[]").unwrap_err().to_string()
        );
    }

    #[test]
    fn unknown_capability_names_are_dropped_and_returned() {
        let (spec, dropped): (Spec, _) = parse_object_keeping(
            br#"{"ociVersion":"1.0.2","process":{"user":{"uid":0,"gid":0},"cwd":"/",
            "capabilities":{"bounding":["CAP_CHOWN","CAP_NOPE","kill"],"ambient":["CAP_X1"]}}}"#,
            "",
        )
        .unwrap();
        assert_eq!(dropped, ["CAP_NOPE", "CAP_X1"]);
        let caps = spec
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .clone()
            .unwrap();
        assert_eq!(caps.bounding().as_ref().map(|b| b.len()), Some(2));
        assert_eq!(caps.ambient().as_ref().map(|a| a.len()), Some(0));
        // As a process object (exec --process), the sets are at the top.
        let (_, dropped): (oci_spec::runtime::Process, _) = parse_object_keeping(
            br#"{"user":{"uid":0,"gid":0},"cwd":"/","capabilities":{"effective":["CAP_NOPE"]}}"#,
            "process",
        )
        .unwrap();
        assert_eq!(dropped, ["CAP_NOPE"]);
    }

    #[test]
    fn what_is_not_a_capability_name_names_its_path() {
        let e = err(
            r#"{"ociVersion":"1.0.2","process":{"user":{"uid":0,"gid":0},"cwd":"/",
            "capabilities":{"bounding":["CAP_CHOWN","CAP_NOPE","cap nope"]}}}"#,
        );
        assert_eq!(
            e,
            "config.json: process.capabilities.bounding[2]: \"cap nope\" is not a capability \
             name (CAP_ followed by A-Z, 0-9, _)"
        );
        assert!(
            capability_form("CAP_A1_B") && !capability_form("CAP_") && !capability_form("cap_x")
        );
        // With nothing to drop, errors keep their position in the file.
        let e = err(
            r#"{"ociVersion":"1.0.2","process":{"user":{"uid":0,"gid":0},"cwd":"/",
            "capabilities":{"bounding":["CAP_CHOWN"]}},"linux":{"sysctl":5}}"#,
        );
        assert!(
            e.contains("linux.sysctl: invalid type") && e.contains("line 2"),
            "{e}"
        );
    }

    #[test]
    fn wrong_type_names_its_path() {
        let e = err(r#"{"ociVersion":"1.0.2","linux":{"resources":{"memory":{"limit":"lots"}}}}"#);
        assert!(
            e.contains("linux.resources.memory.limit: invalid type"),
            "{e}"
        );
    }

    #[test]
    fn only_one_object_is_a_config() {
        for (body, found) in [
            ("[]", "found an array"),
            ("null", "found null"),
            ("-1", "found a number"),
            ("\"s\"", "found a string"),
            ("false", "found a boolean"),
            ("  \n", "the file is empty"),
        ] {
            assert_eq!(
                err(body),
                format!("config.json: must be a JSON object ({found})")
            );
        }
        let e = err(r#"{"ociVersion":"1.0.2"} {"#);
        assert!(e.starts_with("config.json: trailing characters"), "{e}");
    }

    #[test]
    fn spec_names_are_the_json_spellings() {
        use oci_spec::runtime::{LinuxNamespaceType, PosixRlimitType};
        assert_eq!(spec_name(&LinuxNamespaceType::Network), "\"network\"");
        assert_eq!(
            spec_name(&PosixRlimitType::RlimitNofile),
            "\"RLIMIT_NOFILE\""
        );
    }

    #[test]
    fn malformed_json_is_reported() {
        let e = err(r#"{"ociVersion": "#);
        assert!(e.starts_with("config.json: "), "{e}");
    }
}
