//! The bundle's `config.json`: read once, parsed into oci-spec types with the JSON path of any
//! error kept, then validated (`validate.rs`) before Berth causes any side effect.

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
    let spec = parse(&bytes)?;
    let rootfs = validate(&spec, &dir)?;
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

/// Parses one JSON object into `T`. Error paths are prefixed with `at` (`process` for an
/// `exec --process` file, so that its fields are named as in config.json). Anything but an
/// object is refused: serde would otherwise take `[]` for a struct with every field missing.
pub fn parse_object<T: serde::de::DeserializeOwned>(
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
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = match e.path().to_string() {
            p if p == "." || p.is_empty() => at.to_string(),
            p if at.is_empty() => p,
            p => format!("{at}.{p}"),
        };
        let inner = e.into_inner();
        parse_error(&path, &inner)
    })?;
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
    fn unknown_capability_names_its_path() {
        let e = err(
            r#"{"ociVersion":"1.0.2","process":{"user":{"uid":0,"gid":0},"cwd":"/",
            "capabilities":{"bounding":["CAP_CHOWN","CAP_NOPE"]}}}"#,
        );
        assert!(
            e.starts_with("config.json: process.capabilities.bounding[1]: unknown capability"),
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
