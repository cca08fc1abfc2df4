//! `options` of one mount → [`Opts`], the way runc reads them: the tables of plain MS_* flags,
//! propagation and recursive (`r*`) attributes, and what is left over as filesystem data.
//! Every kind of mount (and rootfs.rs, for the late read-only pass) starts from [`parse`].
//!
//! Audit against runc's accepted options (libcontainer/specconv; runc 1.1.5's `features` lists
//! the same names but `idmap`/`ridmap`), every one taken here:
//! - plain MS_* flags: `acl async atime bind defaults dev diratime dirsync exec iversion lazytime
//!   loud mand noacl noatime nodev nodiratime noexec noiversion nolazytime nomand norelatime
//!   nostrictatime nosuid nosymfollow rbind relatime remount ro rw silent strictatime suid
//!   symfollow sync` → [`FLAGS`], applied;
//! - propagation `private shared slave unbindable` and their `r*` forms → [`PROPAGATION`],
//!   applied after the mount, in order;
//! - recursive attributes (mount_setattr with AT_RECURSIVE) `rro rrw rnosuid rsuid rnodev rdev
//!   rnoexec rexec rnodiratime rdiratime rrelatime rnorelatime rnoatime ratime rstrictatime
//!   rnostrictatime rnosymfollow rsymfollow` → [`REC_ATTRS`], applied;
//! - extensions `tmpcopyup`, `idmap`, `ridmap`, applied;
//! - anything else is filesystem data, as in runc (the kernel refuses what it does not know).
//!
//! Differences: crun's inline `idmap=…`/`ridmap=…` mappings and an empty option are refused
//! with the option's index (runc has no inline form).

use nix::mount::MsFlags;

use super::{field, R};

/// Parsed `options` of one mount.
#[derive(Debug, Clone)]
pub struct Opts {
    /// MS_* flags requested on.
    pub set: MsFlags,
    /// MS_* flags explicitly requested off (`rw`, `suid`, `dev`, `exec`, `atime`, …).
    pub clear: MsFlags,
    /// Propagation changes, in order (MS_SHARED/SLAVE/PRIVATE/UNBINDABLE, maybe with MS_REC).
    pub propagation: Vec<MsFlags>,
    /// Recursive mount attributes (MOUNT_ATTR_*) set and cleared with AT_RECURSIVE.
    pub rec_set: u64,
    pub rec_clr: u64,
    /// Everything else, passed to the filesystem, with its index in `options`.
    pub data: Vec<(usize, String)>,
    pub bind: bool,
    /// `tmpcopyup`: copy the destination's contents into the new tmpfs.
    pub copyup: bool,
    /// `idmap` / `ridmap` (the last one given): its index in `options`, and whether it is
    /// `ridmap` (the id mapping applies to every mount of an `rbind` tree).
    pub idmap: Option<(usize, bool)>,
}

pub(super) const ATIME_ENUM: MsFlags = MsFlags::MS_NOATIME
    .union(MsFlags::MS_RELATIME)
    .union(MsFlags::MS_STRICTATIME);
/// Flags that are per mount (not per superblock).
pub(super) const MNT_FLAGS: MsFlags = MsFlags::MS_RDONLY
    .union(MsFlags::MS_NOSUID)
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC)
    .union(MsFlags::MS_NODIRATIME)
    .union(ATIME_ENUM)
    .union(NOSYMFOLLOW);
pub(super) const NOSYMFOLLOW: MsFlags = MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW);
/// Flags the kernel may lock on a mount inherited from a more privileged user namespace.
pub(super) const LOCKABLE: MsFlags = MsFlags::MS_RDONLY
    .union(MsFlags::MS_NOSUID)
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC)
    .union(MsFlags::MS_NODIRATIME)
    .union(ATIME_ENUM);

/// Plain options: (name, clears?, flag).
const FLAGS: &[(&str, bool, MsFlags)] = &[
    ("acl", false, MsFlags::MS_POSIXACL),
    ("async", true, MsFlags::MS_SYNCHRONOUS),
    ("atime", true, MsFlags::MS_NOATIME),
    ("bind", false, MsFlags::MS_BIND),
    ("defaults", false, MsFlags::empty()),
    ("dev", true, MsFlags::MS_NODEV),
    ("diratime", true, MsFlags::MS_NODIRATIME),
    ("dirsync", false, MsFlags::MS_DIRSYNC),
    ("exec", true, MsFlags::MS_NOEXEC),
    ("iversion", false, MsFlags::MS_I_VERSION),
    ("lazytime", false, MsFlags::MS_LAZYTIME),
    ("loud", true, MsFlags::MS_SILENT),
    ("mand", false, MsFlags::MS_MANDLOCK),
    ("noacl", true, MsFlags::MS_POSIXACL),
    ("noatime", false, MsFlags::MS_NOATIME),
    ("nodev", false, MsFlags::MS_NODEV),
    ("nodiratime", false, MsFlags::MS_NODIRATIME),
    ("noexec", false, MsFlags::MS_NOEXEC),
    ("noiversion", true, MsFlags::MS_I_VERSION),
    ("nolazytime", true, MsFlags::MS_LAZYTIME),
    ("nomand", true, MsFlags::MS_MANDLOCK),
    ("norelatime", true, MsFlags::MS_RELATIME),
    ("nostrictatime", true, MsFlags::MS_STRICTATIME),
    ("nosuid", false, MsFlags::MS_NOSUID),
    ("nosymfollow", false, NOSYMFOLLOW),
    ("rbind", false, MsFlags::MS_BIND.union(MsFlags::MS_REC)),
    ("relatime", false, MsFlags::MS_RELATIME),
    ("remount", false, MsFlags::MS_REMOUNT),
    ("ro", false, MsFlags::MS_RDONLY),
    ("rw", true, MsFlags::MS_RDONLY),
    ("silent", false, MsFlags::MS_SILENT),
    ("strictatime", false, MsFlags::MS_STRICTATIME),
    ("suid", true, MsFlags::MS_NOSUID),
    ("symfollow", true, NOSYMFOLLOW),
    ("sync", false, MsFlags::MS_SYNCHRONOUS),
];

const PROPAGATION: &[(&str, MsFlags)] = &[
    ("private", MsFlags::MS_PRIVATE),
    ("shared", MsFlags::MS_SHARED),
    ("slave", MsFlags::MS_SLAVE),
    ("unbindable", MsFlags::MS_UNBINDABLE),
    ("rprivate", MsFlags::MS_PRIVATE.union(MsFlags::MS_REC)),
    ("rshared", MsFlags::MS_SHARED.union(MsFlags::MS_REC)),
    ("rslave", MsFlags::MS_SLAVE.union(MsFlags::MS_REC)),
    ("runbindable", MsFlags::MS_UNBINDABLE.union(MsFlags::MS_REC)),
];

use libc::{
    MOUNT_ATTR_NOATIME as A_NOATIME, MOUNT_ATTR_NODEV as A_NODEV,
    MOUNT_ATTR_NODIRATIME as A_NODIRATIME, MOUNT_ATTR_NOEXEC as A_NOEXEC,
    MOUNT_ATTR_NOSUID as A_NOSUID, MOUNT_ATTR_NOSYMFOLLOW as A_NOSYMFOLLOW,
    MOUNT_ATTR_RDONLY as A_RDONLY, MOUNT_ATTR_RELATIME as A_RELATIME,
    MOUNT_ATTR_STRICTATIME as A_STRICTATIME, MOUNT_ATTR__ATIME as A_ATIME,
};

/// Recursive options: (name, clears?, MOUNT_ATTR_*).
const REC_ATTRS: &[(&str, bool, u64)] = &[
    ("rro", false, A_RDONLY),
    ("rrw", true, A_RDONLY),
    ("rnosuid", false, A_NOSUID),
    ("rsuid", true, A_NOSUID),
    ("rnodev", false, A_NODEV),
    ("rdev", true, A_NODEV),
    ("rnoexec", false, A_NOEXEC),
    ("rexec", true, A_NOEXEC),
    ("rnodiratime", false, A_NODIRATIME),
    ("rdiratime", true, A_NODIRATIME),
    ("rrelatime", false, A_RELATIME),
    ("rnorelatime", true, A_RELATIME),
    ("rnoatime", false, A_NOATIME),
    ("ratime", true, A_NOATIME),
    ("rstrictatime", false, A_STRICTATIME),
    ("rnostrictatime", true, A_STRICTATIME),
    ("rnosymfollow", false, A_NOSYMFOLLOW),
    ("rsymfollow", true, A_NOSYMFOLLOW),
];

/// Parses `options` of `mounts[i]` the way runc does: known flags, propagation, recursive
/// attributes and extensions are taken out; anything else is filesystem data.
pub fn parse(i: usize, options: &[String]) -> R<Opts> {
    let mut o = Opts::default();
    for (j, opt) in options.iter().enumerate() {
        let name = opt.as_str();
        if let Some(&(_, clear, f)) = FLAGS.iter().find(|(n, _, _)| *n == name) {
            if f.contains(MsFlags::MS_BIND) {
                o.bind = true;
            }
            if clear {
                o.set.remove(f);
                o.clear.insert(f);
            } else {
                o.clear.remove(f);
                o.set.insert(f);
            }
        } else if let Some(&(_, p)) = PROPAGATION.iter().find(|(n, _)| *n == name) {
            o.propagation.push(p);
        } else if let Some(&(_, clear, a)) = REC_ATTRS.iter().find(|(n, _, _)| *n == name) {
            // The atime attributes are an enum inside MOUNT_ATTR__ATIME: setting one means
            // clearing the whole field first.
            if a & A_ATIME == a {
                if !clear {
                    o.rec_clr |= A_ATIME;
                    o.rec_set = (o.rec_set & !A_ATIME) | a;
                } else if o.rec_set & A_ATIME == a {
                    o.rec_set &= !A_ATIME;
                }
            } else if clear {
                o.rec_set &= !a;
                o.rec_clr |= a;
            } else {
                o.rec_clr &= !a;
                o.rec_set |= a;
            }
        } else if name == "tmpcopyup" {
            o.copyup = true;
        } else if name == "idmap" || name == "ridmap" {
            o.idmap = Some((j, name == "ridmap"));
        } else if name.starts_with("idmap=") || name.starts_with("ridmap=") {
            // crun's inline syntax; runc (and Berth) take the mappings from uidMappings and
            // gidMappings only.
            return Err(field(
                i,
                &format!("options[{j}]"),
                format!(
                    "{name:?}: mappings inside the option are not supported; give \
                     uidMappings and gidMappings on the mount"
                ),
            ));
        } else if name.is_empty() {
            return Err(field(i, &format!("options[{j}]"), "empty option"));
        } else {
            o.data.push((j, opt.clone()));
        }
    }
    Ok(o)
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            set: MsFlags::empty(),
            clear: MsFlags::empty(),
            propagation: Vec::new(),
            rec_set: 0,
            rec_clr: 0,
            data: Vec::new(),
            bind: false,
            copyup: false,
            idmap: None,
        }
    }
}

impl Opts {
    pub fn data_string(&self) -> String {
        let v: Vec<&str> = self.data.iter().map(|(_, s)| s.as_str()).collect();
        v.join(",")
    }
}

/// Every option name Berth takes itself (not passed to the filesystem), sorted, as `features`
/// lists them. `idmap` and `ridmap` are left out, as runc leaves them out: they are reported by
/// `linux.mountExtensions.idmap`.
pub fn known() -> Vec<&'static str> {
    let mut v: Vec<&str> = FLAGS.iter().map(|(n, _, _)| *n).collect();
    v.extend(PROPAGATION.iter().map(|(n, _)| *n));
    v.extend(REC_ATTRS.iter().map(|(n, _, _)| *n));
    v.push("tmpcopyup");
    v.sort_unstable();
    v
}

/// The option names of MS_* flags, e.g. "nosuid, nodev".
pub(super) fn names(f: MsFlags) -> String {
    FLAGS
        .iter()
        .filter(|(n, clear, fl)| !clear && !fl.is_empty() && f.contains(*fl) && *n != "rbind")
        .map(|(n, _, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(v: &[&str]) -> Opts {
        parse(0, &v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn flags_propagation_and_data_are_separated() {
        let o = opts(&[
            "rbind", "ro", "nosuid", "rslave", "size=10m", "mode=755", "private",
        ]);
        assert!(o.bind);
        assert!(o.set.contains(
            MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID
        ));
        assert_eq!(
            o.propagation,
            vec![MsFlags::MS_SLAVE | MsFlags::MS_REC, MsFlags::MS_PRIVATE]
        );
        assert_eq!(o.data_string(), "size=10m,mode=755");
        assert_eq!(o.data[0].0, 4);
    }

    #[test]
    fn later_options_win() {
        let o = opts(&["ro", "rw", "nosuid", "suid", "noexec"]);
        assert!(!o.set.contains(MsFlags::MS_RDONLY));
        assert!(o.clear.contains(MsFlags::MS_RDONLY | MsFlags::MS_NOSUID));
        assert!(o.set.contains(MsFlags::MS_NOEXEC));
    }

    #[test]
    fn recursive_attributes() {
        let o = opts(&["rro", "rnosuid", "rnoatime", "rstrictatime", "rexec"]);
        assert_eq!(o.rec_set, A_RDONLY | A_NOSUID | A_STRICTATIME);
        assert_eq!(o.rec_clr, A_ATIME | A_NOEXEC);
    }

    #[test]
    fn idmap_options_are_taken_out_and_the_last_one_wins() {
        let o = opts(&["rbind", "ridmap", "nosuid", "idmap"]);
        assert_eq!(o.idmap, Some((3, false)));
        assert!(o.data.is_empty());
        assert_eq!(opts(&["bind", "ridmap"]).idmap, Some((1, true)));
        assert_eq!(opts(&["bind"]).idmap, None);
    }

    #[test]
    fn inline_idmap_mappings_are_refused_with_their_index() {
        let e = parse(3, &["rbind".into(), "idmap=uids=0-1000-10".into()]).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "mounts[3].options[1]: \"idmap=uids=0-1000-10\": mappings inside the option"
            ),
            "{e}"
        );
    }

    /// Every option runc 1.2 takes is recognised (none falls through to filesystem data).
    #[test]
    fn every_runc_1_2_option_is_taken() {
        let runc =
            "acl async atime bind defaults dev diratime dirsync exec iversion lazytime loud \
            mand noacl noatime nodev nodiratime noexec noiversion nolazytime nomand norelatime \
            nostrictatime nosuid nosymfollow rbind relatime remount ro rw silent strictatime \
            suid symfollow sync private shared slave unbindable rprivate rshared rslave \
            runbindable rro rrw rnosuid rsuid rnodev rdev rnoexec rexec rnodiratime rdiratime \
            rrelatime rnorelatime rnoatime ratime rstrictatime rnostrictatime rnosymfollow \
            rsymfollow tmpcopyup idmap ridmap";
        for name in runc.split_whitespace() {
            let o = opts(&[name]);
            assert!(o.data.is_empty(), "{name} fell through to data");
        }
        assert!(opts(&["nosymfollow"]).set.contains(NOSYMFOLLOW));
        assert_eq!(opts(&["rnosymfollow"]).rec_set, A_NOSYMFOLLOW);
        assert_eq!(opts(&["rsymfollow"]).rec_clr, A_NOSYMFOLLOW);
        assert!(opts(&["tmpcopyup"]).copyup);
        assert!(opts(&["acl"]).set.contains(MsFlags::MS_POSIXACL));
        assert!(opts(&["acl", "noacl"]).clear.contains(MsFlags::MS_POSIXACL));
        assert!(
            known().windows(2).all(|w| w[0] < w[1]),
            "sorted, no repeats"
        );
        for name in runc.split_whitespace().filter(|n| !n.ends_with("idmap")) {
            assert!(known().contains(&name), "{name} not in known()");
        }
        let e = parse(2, &["ro".into(), String::new()]).unwrap_err();
        assert!(e.to_string().starts_with("mounts[2].options[1]: "), "{e}");
    }

    #[test]
    fn flag_names_for_messages() {
        assert_eq!(
            names(MsFlags::MS_NOSUID | MsFlags::MS_NODEV),
            "nodev, nosuid"
        );
    }
}
