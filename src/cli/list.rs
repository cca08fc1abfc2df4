//! `berth list [--format table|json] [--quiet]`

use super::Global;
use crate::container::{self, lifecycle, Listed};
use crate::error::Error;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output format: table or json
    #[arg(short = 'f', long, default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
    /// Print only the ids
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// The owner column: the user name of the state directory's owner, from /etc/passwd (read
/// directly, as a statically linked runc does: no NSS modules are loaded), or `#UID`.
fn owner_name(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| passwd_name(&text, uid))
        .unwrap_or_else(|| format!("#{uid}"))
}

/// The first `name:x:UID:...` line of a passwd file with this uid.
fn passwd_name(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let mut f = line.split(':');
        let name = f.next()?;
        let id = f.nth(1)?;
        (!name.is_empty() && !name.starts_with('#') && id.parse() == Ok(uid))
            .then(|| name.to_string())
    })
}

/// Lays out rows like Go's tabwriter with runc's settings (min width 12, padding 3).
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len() + 3)
                .max()
                .unwrap_or(0)
                .max(12)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == cols {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}", w = widths[i]));
            }
        }
        out.push('\n');
    }
    out
}

/// One container in `list --format json`: runc's fields, in runc's order (its containerState).
#[derive(serde::Serialize)]
struct Entry<'a> {
    #[serde(rename = "ociVersion")]
    oci_version: &'a str,
    id: &'a str,
    pid: i32,
    status: String,
    bundle: &'a std::path::Path,
    rootfs: &'a std::path::Path,
    created: &'a str,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    annotations: &'a std::collections::BTreeMap<String, String>,
    owner: String,
}

pub fn run(g: &Global, a: Args) -> Result<i32, Error> {
    let all = container::list(&g.root)?;
    if a.quiet {
        for (st, _, _) in &all {
            println!("{}", st.id);
        }
        return Ok(0);
    }
    // The init's pid while it lives; 0 once stopped, or when no state records it.
    let pid = |st: &container::StoredState, listed: &Listed| match listed {
        Listed::Known(s) if *s != container::Status::Stopped => st.pid,
        _ => 0,
    };
    if a.format == "json" {
        let items: Vec<Entry> = all
            .iter()
            .map(|(st, listed, uid)| Entry {
                oci_version: lifecycle::OCI_VERSION,
                id: &st.id,
                pid: pid(st, listed),
                status: listed.to_string(),
                bundle: &st.bundle,
                rootfs: &st.rootfs,
                created: &st.created,
                annotations: &st.annotations,
                owner: owner_name(*uid),
            })
            .collect();
        // runc prints `null` for an empty list (a nil Go slice).
        if items.is_empty() {
            println!("null");
        } else {
            println!(
                "{}",
                serde_json::to_string(&items).expect("list serialises")
            );
        }
        return Ok(0);
    }
    let mut rows = vec![["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
        .map(String::from)
        .to_vec()];
    for (st, listed, uid) in &all {
        rows.push(vec![
            st.id.clone(),
            pid(st, listed).to_string(),
            listed.to_string(),
            st.bundle.display().to_string(),
            st.created.clone(),
            owner_name(*uid),
        ]);
    }
    print!("{}", table(&rows));
    Ok(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn table_pads_to_tabwriter_widths() {
        let t = super::table(&[
            vec!["ID".into(), "PID".into()],
            vec!["a-very-long-id".into(), "1".into()],
        ]);
        assert_eq!(t, "ID               PID\na-very-long-id   1\n");
    }

    #[test]
    fn owner_names_come_from_passwd_lines() {
        let passwd = "#comment:x:0:0\nroot:x:0:0:root:/root:/bin/sh\nbad line\nbob:x:1000:1000::/home/bob:/bin/sh\n";
        assert_eq!(super::passwd_name(passwd, 0).as_deref(), Some("root"));
        assert_eq!(super::passwd_name(passwd, 1000).as_deref(), Some("bob"));
        assert_eq!(super::passwd_name(passwd, 7), None);
    }
}
