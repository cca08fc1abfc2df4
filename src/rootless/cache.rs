//! Where a rootless caller's seccomp cache goes: `$XDG_CACHE_HOME/berth/seccomp`, else
//! `$HOME/.cache/berth/seccomp` (the XDG base directory rule), since root's
//! /var/cache/berth/seccomp is not its to write. The cache makes the directory (0700); without
//! either variable the profile is compiled each time, as before.

use std::path::PathBuf;

/// The rootless seccomp cache directory from the environment's `XDG_CACHE_HOME` and `HOME`.
pub fn seccomp_dir_from(xdg_cache_home: Option<&str>, home: Option<&str>) -> Option<PathBuf> {
    let abs = |v: Option<&str>| v.filter(|d| d.starts_with('/')).map(PathBuf::from);
    abs(xdg_cache_home)
        .or_else(|| abs(home).map(|h| h.join(".cache")))
        .map(|d| d.join("berth/seccomp"))
}

/// The cache directory for this command: None unless it runs rootless.
pub fn seccomp_dir() -> Option<PathBuf> {
    if !super::active() {
        return None;
    }
    let var = |k| std::env::var(k).ok();
    seccomp_dir_from(var("XDG_CACHE_HOME").as_deref(), var("HOME").as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xdg_cache_home_then_home() {
        let d = |x, h| seccomp_dir_from(x, h).map(|p| p.display().to_string());
        assert_eq!(
            d(Some("/c"), Some("/h")).as_deref(),
            Some("/c/berth/seccomp")
        );
        assert_eq!(
            d(None, Some("/h")).as_deref(),
            Some("/h/.cache/berth/seccomp")
        );
        // Relative values are ignored, as the XDG rule says.
        assert_eq!(
            d(Some("c"), Some("/h")).as_deref(),
            Some("/h/.cache/berth/seccomp")
        );
        assert_eq!(d(None, None), None);
    }
}
