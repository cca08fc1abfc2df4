//! Bounds on the JSON Berth reads (config.json, state.json, `exec --process`, `update
//! --resources`): how many entries an array or object may hold, how deeply they may nest and
//! how many values the document may hold in all, so that a hostile or runaway file is refused
//! with one line naming the JSON path instead of being allocated.
//!
//! The check is the document's one untyped parse: [`value`] builds the `serde_json::Value`
//! that [`super::parse_object_keeping`] needs anyway, counting as it goes and stopping at the
//! first bound crossed, before the array is allocated further. A document that is not
//! well-formed JSON is left to the typed parse, whose message gives the line and column.
//!
//! The bounds are far above what engines write: Kubernetes pods carry thousands of env entries
//! and mounts, docker's default seccomp profile about 450 values; a large real config is some
//! 20,000 values.

use std::fmt::Write;
use std::io::Read;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::ConfigError;

/// Entries of one array, or keys of one object.
pub const MAX_ENTRIES: usize = 65_536;
/// Arrays and objects nested in each other, the top object counting as one. serde_json stops
/// at 128 with "recursion limit exceeded"; this one is lower so that the message states it.
pub const MAX_DEPTH: usize = 64;
/// Values in the whole document: the top object, each array entry and each object member's
/// value.
/// With the per-array bound this keeps the tree Berth builds to some 100 MB at worst.
pub const MAX_VALUES: usize = 1 << 20;
/// The largest JSON file Berth reads besides config.json (whose bound, the same, is
/// `container::lifecycle::MAX_CONFIG_BYTES`): `exec --process` and `update --resources`.
pub const MAX_FILE_BYTES: u64 = 32 << 20;

/// Parses `bytes` into a tree, within the bounds above. `at` is the JSON path of the document
/// itself (`process` for an `exec --process` file, `` for config.json), prefixed to the path
/// of an error. `Ok(None)`: not well-formed JSON (or more than one value), for the typed parse
/// to report.
pub fn value(bytes: &[u8], at: &str) -> Result<Option<Value>, ConfigError> {
    let mut walk = Walk::default();
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = Node { walk: &mut walk }
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v));
    match (parsed, walk.crossed) {
        (Ok(v), _) => Ok(Some(v)),
        (Err(_), Some(msg)) => Err(ConfigError::Parse {
            field: format!("{}: ", path(at, &walk.path)),
            msg,
        }),
        (Err(_), None) => Ok(None),
    }
}

/// [`value`] for a document only checked, not used (`update --resources`).
pub fn check(bytes: &[u8], at: &str) -> Result<(), ConfigError> {
    value(bytes, at).map(drop)
}

/// Reads at most [`MAX_FILE_BYTES`] from `r`; `Ok(None)` if there is more.
pub fn read_bounded(r: impl std::io::Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    r.take(MAX_FILE_BYTES + 1).read_to_end(&mut buf)?;
    Ok((buf.len() as u64 <= MAX_FILE_BYTES).then_some(buf))
}

/// The message for a file above [`MAX_FILE_BYTES`].
pub fn too_large() -> String {
    format!("larger than {MAX_FILE_BYTES} bytes (32 MiB)")
}

/// One step of a JSON path.
enum Step {
    Key(String),
    Index(usize),
}

/// The walk's state: depth and count so far; once a bound is crossed, its message and the path
/// to it (innermost step first, gathered as the error unwinds).
#[derive(Default)]
struct Walk {
    depth: usize,
    values: usize,
    crossed: Option<String>,
    path: Vec<Step>,
    /// The bound crossed is the document's count, at a value whose container is to be named:
    /// the first step unwound (the value's own) is left out.
    skip_step: bool,
}

impl Walk {
    /// Records that a bound was crossed; the error unwinds the parse.
    fn cross<E: de::Error>(&mut self, msg: String) -> E {
        self.crossed = Some(msg);
        E::custom("input bound crossed")
    }

    /// One more value in the document.
    fn count<E: de::Error>(&mut self) -> Result<(), E> {
        self.values += 1;
        if self.values > MAX_VALUES {
            self.skip_step = true;
            return Err(self.cross(format!(
                "the document holds more than {MAX_VALUES} JSON values (array entries and \
                 object members), at most {MAX_VALUES} are accepted"
            )));
        }
        Ok(())
    }

    /// Entering an array or object.
    fn enter<E: de::Error>(&mut self) -> Result<(), E> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.cross(format!(
                "{} levels of nested arrays and objects, at most {MAX_DEPTH} are accepted",
                self.depth
            )));
        }
        Ok(())
    }

    /// A step of the path to a crossed bound, as the error passes through its container.
    fn unwind(&mut self, step: Step) {
        if self.skip_step {
            self.skip_step = false;
        } else if self.crossed.is_some() {
            self.path.push(step);
        }
    }
}

/// `at` followed by the steps (gathered innermost first), spelled as serde_path_to_error
/// spells paths: `process.env`, `mounts[3].options`.
fn path(at: &str, steps: &[Step]) -> String {
    let mut p = at.to_string();
    for s in steps.iter().rev() {
        match s {
            Step::Key(k) if p.is_empty() => p.push_str(k),
            Step::Key(k) => {
                p.push('.');
                p.push_str(k);
            }
            Step::Index(i) => {
                let _ = write!(p, "[{i}]");
            }
        }
    }
    p
}

/// One value of the document, built as serde_json's own `Value` would be.
struct Node<'w> {
    walk: &'w mut Walk,
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.walk.count()?;
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // JSON has no NaN or infinity: serde_json never hands one over.
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let walk = self.walk;
        walk.enter()?;
        let mut out = Vec::new();
        loop {
            if out.len() == MAX_ENTRIES {
                match count_rest(MAX_ENTRIES, || seq.next_element::<IgnoredAny>()) {
                    Ok(MAX_ENTRIES) => break,
                    n => return Err(walk.cross(too_many(n, "entries"))),
                }
            }
            match seq.next_element_seed(Node { walk: &mut *walk }) {
                Ok(Some(v)) => out.push(v),
                Ok(None) => break,
                Err(e) => {
                    walk.unwind(Step::Index(out.len()));
                    return Err(e);
                }
            }
        }
        walk.depth -= 1;
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let walk = self.walk;
        walk.enter()?;
        let mut out = Map::new();
        let mut n = 0;
        loop {
            if n == MAX_ENTRIES {
                match count_rest(MAX_ENTRIES, || map.next_entry::<IgnoredAny, IgnoredAny>()) {
                    Ok(MAX_ENTRIES) => break,
                    n => return Err(walk.cross(too_many(n, "keys"))),
                }
            }
            let Some(key) = map.next_key::<String>()? else {
                break;
            };
            match map.next_value_seed(Node { walk: &mut *walk }) {
                // A repeated key: the last one counts, as in serde_json's own Value.
                Ok(v) => {
                    out.insert(key, v);
                }
                Err(e) => {
                    walk.unwind(Step::Key(key));
                    return Err(e);
                }
            }
            n += 1;
        }
        walk.depth -= 1;
        Ok(Value::Object(out))
    }
}

/// `seen` entries plus those `next` still yields, read without being built: `Err` with the
/// count so far when the rest cannot be read (malformed, or nested too deeply for serde_json).
fn count_rest<T, E>(
    seen: usize,
    mut next: impl FnMut() -> Result<Option<T>, E>,
) -> Result<usize, usize> {
    let mut n = seen;
    loop {
        match next() {
            Ok(Some(_)) => n += 1,
            Ok(None) => return Ok(n),
            Err(_) => return Err(n),
        }
    }
}

/// "100000 entries, at most 65536 are accepted" (or "more than 65537 …" for a count cut short
/// by what follows).
fn too_many(n: Result<usize, usize>, what: &str) -> String {
    let n = match n {
        Ok(n) => n.to_string(),
        Err(n) => format!("more than {n}"),
    };
    format!("{n} {what}, at most {MAX_ENTRIES} are accepted")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str, at: &str) -> String {
        match value(json.as_bytes(), at) {
            Err(ConfigError::Parse { field, msg }) => format!("{field}{msg}"),
            other => panic!("not refused: {other:?}"),
        }
    }

    fn array(n: usize) -> String {
        format!("[{}]", vec!["0"; n].join(","))
    }

    #[test]
    fn an_array_at_the_bound_is_accepted_one_more_is_named() {
        let ok = format!(r#"{{"process":{{"env":{}}}}}"#, array(MAX_ENTRIES));
        let v = value(ok.as_bytes(), "").unwrap().unwrap();
        assert_eq!(v["process"]["env"].as_array().unwrap().len(), MAX_ENTRIES);
        let big = format!(r#"{{"process":{{"env":{}}}}}"#, array(100_000));
        assert_eq!(
            err(&big, ""),
            "process.env: 100000 entries, at most 65536 are accepted"
        );
        // Paths through arrays, and under the document's own path.
        let big = format!(r#"{{"a":[1,{{"b":{}}}]}}"#, array(MAX_ENTRIES + 1));
        assert_eq!(
            err(&big, "process"),
            "process.a[1].b: 65537 entries, at most 65536 are accepted"
        );
    }

    #[test]
    fn an_object_with_too_many_keys_is_named() {
        let keys: Vec<String> = (0..MAX_ENTRIES + 5)
            .map(|i| format!(r#""k{i}":"v""#))
            .collect();
        let big = format!(r#"{{"annotations":{{{}}}}}"#, keys.join(","));
        assert_eq!(
            err(&big, ""),
            "annotations: 65541 keys, at most 65536 are accepted"
        );
    }

    #[test]
    fn nesting_deeper_than_the_bound_is_named() {
        let nest = |n: usize| format!(r#"{{"x":{}0{}}}"#, "[".repeat(n), "]".repeat(n));
        // The top object is one level.
        assert!(value(nest(MAX_DEPTH - 1).as_bytes(), "").unwrap().is_some());
        let e = err(&nest(MAX_DEPTH), "");
        let want_path = format!("x{}", "[0]".repeat(MAX_DEPTH - 1));
        assert_eq!(
            e,
            format!("{want_path}: 65 levels of nested arrays and objects, at most 64 are accepted")
        );
        // Far deeper than serde_json's own limit (128): still this message, not serde's.
        assert!(err(&nest(10_000), "")
            .ends_with(": 65 levels of nested arrays and objects, at most 64 are accepted"));
    }

    #[test]
    fn the_whole_document_is_bounded() {
        // 17 arrays of 65,536 entries: each within its bound, more than 2^20 values in all.
        let a = array(MAX_ENTRIES);
        let members: Vec<String> = (0..17).map(|i| format!(r#""a{i}":{a}"#)).collect();
        let big = format!("{{{}}}", members.join(","));
        let e = err(&big, "");
        assert!(
            e.starts_with("a15: the document holds more than 1048576 JSON values"),
            "{e}"
        );
    }

    #[test]
    fn the_tree_is_serde_jsons_own() {
        let text = r#"{"a":[1,-2,3.5,"s\n",null,true,{"b":{}}],"a":7,"u":18446744073709551615,
            "k\u0041":"esc"}"#;
        let want: Value = serde_json::from_str(text).unwrap();
        assert_eq!(value(text.as_bytes(), "").unwrap(), Some(want));
    }

    #[test]
    fn malformed_json_is_left_to_the_typed_parse() {
        for text in [r#"{"a":[1,2"#, r#"{"a":1} x"#, "", r#"{"a":tru}"#] {
            assert!(value(text.as_bytes(), "").unwrap().is_none(), "{text}");
        }
        // Also when the array is past its bound but broken afterwards.
        let broken = format!(
            r#"{{"a":{}"#,
            &array(MAX_ENTRIES + 3)[..MAX_ENTRIES * 2 + 4]
        );
        let e = err(&broken, "");
        assert!(
            e.starts_with("a: more than 6553")
                && e.ends_with(" entries, at most 65536 are accepted"),
            "{e}"
        );
    }

    #[test]
    fn files_are_read_up_to_the_bound() {
        let small = read_bounded(&b"{}"[..]).unwrap();
        assert_eq!(small.as_deref(), Some(&b"{}"[..]));
        let big = std::io::repeat(b' ').take(MAX_FILE_BYTES + 1);
        assert!(read_bounded(big).unwrap().is_none());
        let exact = std::io::repeat(b' ').take(MAX_FILE_BYTES);
        assert!(read_bounded(exact).unwrap().is_some());
    }
}
