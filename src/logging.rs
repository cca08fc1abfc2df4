//! `--log FILE` / `--log-format text|json` / `--debug`, written the way runc writes them.
//!
//! json lines: `{"level":"error","msg":"…","time":"…"}` (containerd shows its users the last
//! error line of this file); text lines: logrus' `time="…" level=error msg="…"`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// `--trace` lines (see `trace`): written whenever tracing is on, whatever `--debug` says.
    Trace,
    Debug,
    Warn,
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Warn => "warning",
            Level::Error => "error",
        }
    }
}

struct Logger {
    file: Option<File>,
    json: bool,
    min: Level,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// `--debug` was given (and the logger is set up): the one load a disabled debug line costs.
static DEBUG: AtomicBool = AtomicBool::new(false);

/// Sets up the process-wide logger. Called once, from the CLI, before any command runs.
pub fn init(path: Option<&str>, json: bool, debug: bool) -> std::io::Result<()> {
    let file = match path {
        Some(p) if !p.is_empty() => Some(
            OpenOptions::new().create(true).append(true).open(p)?, // std opens with O_CLOEXEC
        ),
        _ => None,
    };
    let min = if debug { Level::Debug } else { Level::Warn };
    if LOGGER.set(Logger { file, json, min }).is_ok() {
        DEBUG.store(debug, Ordering::Relaxed);
    }
    Ok(())
}

/// Formats one log line in the configured format (without the trailing newline).
fn format_line(json: bool, level: Level, msg: &str) -> String {
    format_line_with(json, level, msg, &[])
}

/// [`format_line`] with fields: json keys beside `level`, `msg` and `time`; in text, logrus'
/// `key=value` after the message, in key order (as logrus sorts them).
fn format_line_with(
    json: bool,
    level: Level,
    msg: &str,
    fields: &[(&str, serde_json::Value)],
) -> String {
    let time = crate::timefmt::now_rfc3339();
    if json {
        let mut v = serde_json::json!({"level": level.as_str(), "msg": msg, "time": time});
        for (k, f) in fields {
            v[*k] = f.clone();
        }
        v.to_string()
    } else {
        let mut line = format!(
            "time={:?} level={} msg={}",
            time,
            level.as_str(),
            serde_json::Value::String(msg.to_string())
        );
        let mut sorted: Vec<_> = fields.iter().collect();
        sorted.sort_by_key(|(k, _)| *k);
        for (k, f) in sorted {
            let plain = |s: &str| {
                !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-._/:@^+".contains(c))
            };
            match f {
                serde_json::Value::String(s) if plain(s) => line.push_str(&format!(" {k}={s}")),
                f => line.push_str(&format!(" {k}={f}")),
            }
        }
        line
    }
}

/// Writes `line` and its newline with one write(2): a forked child (the container's init)
/// shares the file, and an O_APPEND write of one line is not interleaved with another's.
fn write_line(mut out: impl Write, line: String) {
    let mut buf = line.into_bytes();
    buf.push(b'\n');
    let _ = out.write_all(&buf);
}

pub fn log(level: Level, msg: &str) {
    let Some(l) = LOGGER.get() else {
        if level >= Level::Warn {
            eprintln!("{}", plain_line(level, msg));
        }
        return;
    };
    if level < l.min {
        return;
    }
    let line = format_line(l.json, level, msg);
    match l.file.as_ref() {
        Some(f) => write_line(f, line),
        None => write_line(std::io::stderr(), line),
    }
}

/// Writes one `trace` line with its fields (see `trace`), whatever `--debug` says: to the log
/// file, or else to stderr, unless the caller is a forked child (`forked`), whose stderr is
/// the container's.
pub fn trace_line(msg: &str, fields: &[(&str, serde_json::Value)], forked: bool) {
    let Some(l) = LOGGER.get() else { return };
    let line = format_line_with(l.json, Level::Trace, msg, fields);
    match l.file.as_ref() {
        Some(f) => write_line(f, line),
        None if !forked => write_line(std::io::stderr(), line),
        None => {}
    }
}

/// The one line a user reads on stderr: `berth: error: <msg>` (`berth: warning: <msg>`).
///
/// runc writes its fatal error as a logrus line (`time=… level=error msg=…`); scripts and tools
/// that scan stderr look for the word `error`. Berth keeps its short human line (the log file,
/// if any, gets the logrus/JSON form) and puts the level after the program name, as many Unix
/// tools do: every test matching on the message itself (e.g. `assert_one_error_line`) is
/// unaffected; only exact `berth: <msg>` comparisons changed.
fn plain_line(level: Level, msg: &str) -> String {
    format!("berth: {}: {msg}", level.as_str())
}

/// Reports a fatal error: to the log file (if any) in its format, and always one plain line on
/// stderr ([`plain_line`]).
pub fn fatal(msg: &str) {
    if let Some(l) = LOGGER.get() {
        if let Some(mut f) = l.file.as_ref() {
            let _ = writeln!(f, "{}", format_line(l.json, Level::Error, msg));
        }
    }
    let _ = writeln!(
        std::io::stderr(),
        "{}",
        plain_line(Level::Error, &one_line(msg))
    );
}

/// `msg` with its control characters escaped (`\n`, `\u{1b}`): an error quotes what the input
/// holds (a JSON key, a path, an argument), and it must stay one line on a terminal or in a
/// caller's log.
pub fn one_line(msg: &str) -> std::borrow::Cow<'_, str> {
    if !msg.chars().any(char::is_control) {
        return msg.into();
    }
    msg.chars()
        .map(|c| match c {
            c if c.is_control() => c.escape_default().to_string(),
            c => c.to_string(),
        })
        .collect::<String>()
        .into()
}

/// Whether debug lines are written (`--debug`).
#[inline]
pub fn debug_enabled() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

/// Logs a fixed debug line.
#[inline]
pub fn debug(msg: impl AsRef<str>) {
    if debug_enabled() {
        log(Level::Debug, msg.as_ref());
    }
}

/// Logs the debug line `f` builds, calling it only under `--debug`: without it, a step costs
/// one load and no formatting (`debug_with(|| format!("… {x}"))`).
#[inline]
pub fn debug_with<S: AsRef<str>>(f: impl FnOnce() -> S) {
    if debug_enabled() {
        log(Level::Debug, f().as_ref());
    }
}

pub fn warn(msg: impl AsRef<str>) {
    log(Level::Warn, msg.as_ref());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_escapes_control_characters() {
        assert_eq!(one_line("process.args: plain"), "process.args: plain");
        assert_eq!(
            one_line("process.e\nv: expected `,`\r\u{1b}[31m\t"),
            "process.e\\nv: expected `,`\\r\\u{1b}[31m\\t"
        );
    }

    #[test]
    fn json_line_has_level_msg_time() {
        let v: serde_json::Value =
            serde_json::from_str(&format_line(true, Level::Error, "boom \"x\"")).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "boom \"x\"");
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn trace_lines_carry_their_fields() {
        let fields = [
            ("step", serde_json::Value::from("mounts")),
            ("offset_us", 12.into()),
            ("detail", "cache hit".into()),
        ];
        let v: serde_json::Value =
            serde_json::from_str(&format_line_with(true, Level::Trace, "trace: m", &fields))
                .unwrap();
        assert_eq!(v["level"], "trace");
        assert_eq!(v["step"], "mounts");
        assert_eq!(v["offset_us"], 12);
        let t = format_line_with(false, Level::Trace, "trace: m", &fields);
        assert!(
            t.ends_with(
                r#" level=trace msg="trace: m" detail="cache hit" offset_us=12 step=mounts"#
            ),
            "{t}"
        );
    }

    #[test]
    fn text_line_is_logrus_style() {
        let l = format_line(false, Level::Warn, "a b");
        assert!(l.starts_with("time=\""), "{l}");
        assert!(l.contains(" level=warning msg=\"a b\""), "{l}");
    }
}
