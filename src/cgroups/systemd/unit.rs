//! `linux.cgroupsPath` in systemd form, `slice:prefix:name`, and where systemd puts the unit.
//!
//! runc's rules, which engines rely on: the container's cgroup is the transient scope
//! `prefix-name.scope` (or, for a name ending in `.slice`, that slice) in the slice `slice`
//! (`system.slice` when empty, `user.slice` in rootless mode). A slice's dashes name its
//! parents, as systemd expands them: `a-b.slice` lives in `a.slice`, so its cgroup is
//! `/a.slice/a-b.slice`.

use super::super::CgroupError;

const FIELD: &str = "linux.cgroupsPath";
const FORM: &str =
    "expected \"slice:prefix:name\" for the systemd cgroup driver (e.g. \"system.slice:berth:c1\")";

/// The unit a container's cgroup is.
#[derive(Clone)]
#[cfg_attr(test, derive(Debug, PartialEq, Eq))]
pub struct UnitPath {
    /// The parent slice, e.g. `kubepods-pod1.slice`.
    pub slice: String,
    /// The unit: `prefix-name.scope`, or `name` when that ends in `.slice`.
    pub unit: String,
}

impl UnitPath {
    /// From `linux.cgroupsPath` (None or empty: the default slice, prefix `berth`, the id).
    pub fn parse(path: Option<&str>, id: &str, rootless: bool) -> Result<UnitPath, CgroupError> {
        let default_slice = if rootless {
            "user.slice"
        } else {
            "system.slice"
        };
        let Some(path) = path.filter(|p| !p.is_empty()) else {
            return Ok(UnitPath {
                slice: default_slice.into(),
                unit: format!("berth-{id}.scope"),
            });
        };
        let parts: Vec<&str> = path.split(':').collect();
        let [slice, prefix, name] = parts[..] else {
            return Err(CgroupError::invalid(FIELD, format!("{path:?}: {FORM}")));
        };
        if name.is_empty() {
            return Err(CgroupError::invalid(
                FIELD,
                format!("{path:?}: the name (after the second ':') is empty; {FORM}"),
            ));
        }
        let slice = if slice.is_empty() {
            default_slice
        } else {
            slice
        };
        // Checked now (the expansion refuses a malformed slice), not when systemd refuses it.
        expand_slice(slice).map_err(|m| CgroupError::invalid(FIELD, format!("{path:?}: {m}")))?;
        let unit = if name.ends_with(".slice") {
            expand_slice(name)
                .map_err(|m| CgroupError::invalid(FIELD, format!("{path:?}: {m}")))?;
            name.to_string()
        } else {
            // runc joins them with a dash even when the prefix is empty.
            format!("{prefix}-{name}.scope")
        };
        if let Some(c) = unit.chars().find(|c| !unit_char(*c)) {
            return Err(CgroupError::invalid(
                FIELD,
                format!("{path:?}: {c:?} cannot be part of a systemd unit name ({unit:?})"),
            ));
        }
        Ok(UnitPath {
            slice: slice.to_string(),
            unit,
        })
    }

    pub fn is_slice(&self) -> bool {
        self.unit.ends_with(".slice")
    }

    /// The unit's cgroup below systemd's root, e.g.
    /// `/kubepods.slice/kubepods-pod1.slice/cri-containerd-c1.scope`. A slice unit's place is
    /// fixed by its own name (systemd puts `a-b.slice` in `a.slice` whatever else is asked).
    pub fn cgroup(&self) -> String {
        if self.is_slice() {
            return expand_slice(&self.unit).unwrap_or_default();
        }
        format!(
            "{}/{}",
            expand_slice(&self.slice).unwrap_or_default(),
            self.unit
        )
    }
}

/// Characters systemd accepts in a unit name.
fn unit_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_' | '.' | '\\' | '@')
}

/// `a-b-c.slice` → `/a.slice/a-b.slice/a-b-c.slice`; `-.slice` (the root slice) → ``.
pub fn expand_slice(slice: &str) -> Result<String, String> {
    let Some(stem) = slice.strip_suffix(".slice") else {
        return Err(format!(
            "{slice:?} is not a slice (a slice's name ends in \".slice\")"
        ));
    };
    if slice.contains('/') {
        return Err(format!("{slice:?}: a slice's name cannot contain '/'"));
    }
    if stem == "-" {
        return Ok(String::new());
    }
    if stem.is_empty() || stem.starts_with('-') || stem.ends_with('-') || stem.contains("--") {
        return Err(format!(
            "{slice:?}: a slice's name is dash-separated parts, none of them empty"
        ));
    }
    let mut out = String::new();
    let mut prefix = String::new();
    for part in stem.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        out.push('/');
        out.push_str(&prefix);
        out.push_str(".slice");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_expand_into_their_parents() {
        assert_eq!(expand_slice("system.slice").unwrap(), "/system.slice");
        assert_eq!(
            expand_slice("kubepods-besteffort-pod12.slice").unwrap(),
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12.slice"
        );
        assert_eq!(expand_slice("-.slice").unwrap(), "");
        for bad in [
            "a--b.slice",
            "-a.slice",
            "a-.slice",
            ".slice",
            "a.scope",
            "a/b.slice",
        ] {
            assert!(expand_slice(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cgroups_path_names_the_scope_and_its_slice() {
        let u = UnitPath::parse(Some("kubepods-pod1.slice:cri-containerd:c1"), "x", false).unwrap();
        assert_eq!(u.slice, "kubepods-pod1.slice");
        assert_eq!(u.unit, "cri-containerd-c1.scope");
        assert_eq!(
            u.cgroup(),
            "/kubepods.slice/kubepods-pod1.slice/cri-containerd-c1.scope"
        );
        let u = UnitPath::parse(Some(":berth:c2"), "x", false).unwrap();
        assert_eq!(
            (u.slice.as_str(), u.unit.as_str()),
            ("system.slice", "berth-c2.scope")
        );
        assert_eq!(u.cgroup(), "/system.slice/berth-c2.scope");
        let u = UnitPath::parse(None, "id9", false).unwrap();
        assert_eq!(u.unit, "berth-id9.scope");
        assert_eq!(
            UnitPath::parse(Some("::n"), "x", true).unwrap().slice,
            "user.slice"
        );
        // runc: an empty prefix still gets its dash.
        assert_eq!(
            UnitPath::parse(Some("a.slice::n"), "x", false)
                .unwrap()
                .unit,
            "-n.scope"
        );
    }

    #[test]
    fn a_name_ending_in_slice_makes_a_slice() {
        let u = UnitPath::parse(Some("a.slice:p:a-b.slice"), "x", false).unwrap();
        assert!(u.is_slice());
        assert_eq!(u.cgroup(), "/a.slice/a-b.slice");
        let u = UnitPath::parse(Some("system.slice:p:x.slice"), "x", false).unwrap();
        assert_eq!(u.cgroup(), "/x.slice");
    }

    #[test]
    fn malformed_paths_name_the_field_and_the_form() {
        for bad in [
            "foo",
            "a:b",
            "a:b:c:d",
            "/kubepods/c1",
            "a.slice:p:",
            "nope:p:n",
            "a.slice:p:n/x",
        ] {
            let e = UnitPath::parse(Some(bad), "x", false)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("linux.cgroupsPath: "), "{bad}: {e}");
        }
        let e = UnitPath::parse(Some("a:b"), "x", false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("slice:prefix:name"), "{e}");
    }
}
