//! What the fuzz targets share: set-up, and the checks every rejection must pass.

use std::collections::HashSet;

use berth::fuzzing::Rejection;

/// Once per fuzzing process: the scratch directory goes when the fuzzer exits normally.
pub fn init() {
    extern "C" fn cleanup() {
        berth::fuzzing::cleanup();
    }
    // SAFETY: registers a plain function with no arguments, run once at exit(3).
    unsafe {
        libc::atexit(cleanup);
    }
}

/// A JSON document that keeps every occurrence of a duplicate key (serde_json's `Value` keeps
/// only the last, but Berth's typed parse may refuse a value inside an earlier one).
enum Doc {
    Object(Vec<(String, Doc)>),
    Array(Vec<Doc>),
    Scalar,
}

impl<'de> serde::Deserialize<'de> for Doc {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Doc;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Doc, E> {
                Ok(Doc::Scalar)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Doc, E> {
                Ok(Doc::Scalar)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Doc, E> {
                Ok(Doc::Scalar)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Doc, E> {
                Ok(Doc::Scalar)
            }
            fn visit_str<E>(self, _: &str) -> Result<Doc, E> {
                Ok(Doc::Scalar)
            }
            fn visit_unit<E>(self) -> Result<Doc, E> {
                Ok(Doc::Scalar)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Doc, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = a.next_element()? {
                    v.push(x);
                }
                Ok(Doc::Array(v))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Doc, A::Error> {
                let mut v = Vec::new();
                while let Some(kv) = a.next_entry()? {
                    v.push(kv);
                }
                Ok(Doc::Object(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// Every JSON path in `v`, spelled as Berth spells them (`process.args[0]`, and a key also
/// as `unified["memory.high"]`), from every occurrence of a duplicate key.
fn paths(v: &Doc, at: &str, out: &mut HashSet<String>) {
    out.insert(at.to_string());
    match v {
        Doc::Object(m) => {
            for (k, child) in m {
                // Berth quotes some keys (`unified["memory.high"]`), as Rust's Debug does.
                out.insert(format!("{at}[{k:?}]"));
                let p = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                paths(child, &p, out);
            }
        }
        Doc::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                paths(child, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// `a.b[2]` → `a.b`; `a.b` → `a`; `a` → ``.
fn parent(p: &str) -> &str {
    if p.ends_with(']') {
        if let Some(i) = p.rfind('[') {
            return &p[..i];
        }
    }
    p.rfind('.').map_or("", |i| &p[..i])
}

/// The checks on a refused input: one line of text; a JSON path that names a field of the
/// input (or a missing field of an object that is there), written below `root` (the object's
/// own path in config.json: `process`, `linux.seccomp`, `linux.resources`, or ``); no path
/// only for an input that is not a JSON object at all.
pub fn check_rejection(input: &[u8], r: &Rejection, roots: &[&str]) {
    if std::env::var_os("BERTH_FUZZ_SHOW").is_some() {
        eprintln!("rejected: {r:?}");
    }
    assert!(!r.msg.trim().is_empty(), "empty error message");
    assert!(
        !r.msg.contains('\n'),
        "error message spans lines: {:?}",
        r.msg
    );
    // Every occurrence of a key counts: Berth may refuse a value in the first of two.
    let doc = match serde_json::from_slice::<Doc>(input) {
        Ok(d @ Doc::Object(_)) => d,
        // Not an object: the error is about the document as a whole.
        _ => return,
    };
    let Some(path) = &r.path else {
        // serde names a field of the top object itself: "duplicate field `pids`".
        assert!(
            r.msg.contains(" field `"),
            "a JSON object was refused without naming a field: {}",
            r.msg
        );
        return;
    };
    let rel = roots
        .iter()
        .find_map(|root| {
            if root.is_empty() {
                Some(path.as_str())
            } else if path == root {
                Some("")
            } else {
                path.strip_prefix(root).and_then(|p| p.strip_prefix('.'))
            }
        })
        .unwrap_or_else(|| panic!("path {path:?} is not below {roots:?}: {}", r.msg));
    let mut known = HashSet::new();
    paths(&doc, "", &mut known);
    assert!(
        known.contains(rel) || known.contains(parent(rel)),
        "the error names {path:?}, which is not in the input: {}",
        r.msg
    );
}
