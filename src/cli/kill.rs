//! `berth kill [--all] ID [SIGNAL]`: SIGNAL as a name (with or without SIG) or a number;
//! TERM by default.

use super::Global;
use crate::container::{lifecycle, Container};
use crate::error::Error;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Send the signal to every process in the container
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Container id
    pub id: String,
    /// Signal name or number
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
}

pub fn parse_signal(s: &str) -> Result<i32, Error> {
    if let Ok(n) = s.parse::<i32>() {
        // 0 is kill(2)'s existence check; runc accepts it too.
        if (0..=64).contains(&n) {
            return Ok(n);
        }
        return Err(Error::Usage(format!("invalid signal number {n}")));
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    if let Some(rt) = name.strip_prefix("SIGRTMIN") {
        let base = libc::SIGRTMIN();
        let off: i32 = if rt.is_empty() {
            0
        } else {
            rt.parse().unwrap_or(-1)
        };
        if (0..=(libc::SIGRTMAX() - base)).contains(&off) {
            return Ok(base + off);
        }
    }
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| Error::Usage(format!("unknown signal {s:?}")))
}

pub fn run(g: &Global, a: Args) -> Result<i32, Error> {
    let sig = parse_signal(&a.signal)?;
    let c = Container::load(&g.root, &a.id)?;
    crate::logging::debug_with(|| {
        format!(
            "kill {}: signal {sig} to {}",
            a.id,
            if a.all {
                "every process".to_string()
            } else {
                format!("init pid {}", c.state.as_ref().map_or(0, |s| s.pid))
            }
        )
    });
    lifecycle::kill(&c, sig, a.all)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::parse_signal;

    #[test]
    fn signals_by_name_short_name_and_number() {
        assert_eq!(parse_signal("KILL").unwrap(), 9);
        assert_eq!(parse_signal("SIGKILL").unwrap(), 9);
        assert_eq!(parse_signal("term").unwrap(), 15);
        assert_eq!(parse_signal("15").unwrap(), 15);
        assert_eq!(parse_signal("SIGRTMIN+1").unwrap(), libc::SIGRTMIN() + 1);
        assert!(parse_signal("SIGFOO").is_err());
        assert_eq!(parse_signal("0").unwrap(), 0);
        assert!(parse_signal("-1").is_err());
        assert!(parse_signal("99").is_err());
    }
}
