//! What the fuzz targets share: set-up, and the checks every rejection must pass.

use std::collections::HashSet;

use berth::fuzzing::Rejection;
use serde_json::Value;

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

/// Every JSON path in `v`, spelled as Berth spells them (`process.args[0]`, and a key also
/// as `unified["memory.high"]`).
fn paths(v: &Value, at: &str, out: &mut HashSet<String>) {
    out.insert(at.to_string());
    match v {
        Value::Object(m) => {
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
        Value::Array(a) => {
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
    let doc = match serde_json::from_slice::<Value>(input) {
        Ok(v @ Value::Object(_)) => v,
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
