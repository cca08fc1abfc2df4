//! `linux.netDevices` (runtime-spec 1.3): host network interfaces moved into the container's
//! network namespace at `create`, renamed when `name` is given.
//!
//! As runc 1.3 does: each device is set down, its permanent global-scope addresses noted, then
//! moved and renamed in one rtnetlink request (so the name never clashes on the way), the
//! noted addresses are added again inside (the kernel drops a device's addresses when it
//! changes namespace; its MTU and hardware address stay), and it is set up there.
//!
//! On `delete` nothing is moved back, as in runc 1.3 (whose tests say the network namespace's
//! owner controls the device's lifecycle; the spec's drafts wavered): a device in a namespace
//! the container was given by path stays there; when the namespace is the container's own, it
//! dies with the container's last process and the kernel moves physical devices back to the
//! initial namespace and destroys virtual ones (dummy, veth with its peer, macvlan, …).
//!
//! Unlike runc, a `create` that fails after a device was moved gives it back: Berth holds the
//! target namespace open until `create` succeeds, and a failure moves each device back to the
//! host under its own name, with its addresses and link state as they were ([`Guard`]).
//!
//! Checked before any side effect ([`validate`]): a network namespace in `linux.namespaces`
//! (not the host's), interface names the kernel takes, no two devices given one name, no
//! device named `lo` in a new namespace (which has one), and each host interface present.

mod rtnl;

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use netlink_packet_route::address::AddressMessage;
use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::linux::namespaces::NsPlan;
use rtnl::Rtnl;

#[derive(Debug, thiserror::Error)]
pub enum NetdevError {
    /// What is wrong with the config, by JSON path.
    #[error("{field}: {msg}")]
    Invalid { field: String, msg: String },
    /// A request that failed while moving `linux.netDevices.<name>`.
    #[error("linux.netDevices.{name}: {what}: {source}")]
    Sys {
        name: String,
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl From<NetdevError> for crate::error::Error {
    fn from(e: NetdevError) -> Self {
        match e {
            NetdevError::Invalid { field, msg } => {
                crate::config::ConfigError::invalid(field, msg).into()
            }
            sys @ NetdevError::Sys { .. } => {
                crate::process::ProcessError::Init(sys.to_string()).into()
            }
        }
    }
}

impl NetdevError {
    /// As a config error (found by [`validate`], before any side effect).
    pub fn into_config(self) -> crate::config::ConfigError {
        match self {
            NetdevError::Invalid { field, msg } => crate::config::ConfigError::invalid(field, msg),
            NetdevError::Sys { name, what, source } => crate::config::ConfigError::invalid(
                format!("linux.netDevices.{name}"),
                format!("{what}: {source}"),
            ),
        }
    }
}

type R<T = ()> = Result<T, NetdevError>;

fn invalid(field: impl Into<String>, msg: impl Into<String>) -> NetdevError {
    NetdevError::Invalid {
        field: field.into(),
        msg: msg.into(),
    }
}

fn sys(name: &str, what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetdevError + '_ {
    let what = what.into();
    move |source| NetdevError::Sys {
        name: name.to_string(),
        what,
        source,
    }
}

/// The devices to move: host name → name in the container, in name order.
fn devices(spec: &Spec) -> BTreeMap<String, String> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.net_devices().as_ref())
        .into_iter()
        .flatten()
        .map(|(host, d)| {
            let inside = d
                .name()
                .as_deref()
                .filter(|n| !n.is_empty())
                .unwrap_or(host);
            (host.clone(), inside.to_string())
        })
        .collect()
}

/// Where the devices go: the network namespace joined by path, or the container's new one.
enum Target {
    Path(PathBuf),
    New,
}

fn target(spec: &Spec) -> Option<Target> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .into_iter()
        .flatten()
        .find(|n| n.typ() == LinuxNamespaceType::Network)
        .map(|n| match n.path() {
            Some(p) => Target::Path(p.clone()),
            None => Target::New,
        })
}

/// The kernel's rule for interface names (dev_valid_name): 1 to 15 bytes, not `.` or `..`,
/// no `/`, `:` or white space.
fn valid_name(n: &str) -> Result<(), String> {
    if n.is_empty() || n.len() > 15 {
        return Err(format!("{n:?} is not 1 to 15 bytes long"));
    }
    if n == "."
        || n == ".."
        || n.bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace())
    {
        return Err(format!(
            "{n:?} is not an interface name (no '/', ':', white space, \".\" or \"..\")"
        ));
    }
    Ok(())
}

/// The checks that need nothing but the config.
fn check_config(spec: &Spec) -> R<BTreeMap<String, String>> {
    let devs = devices(spec);
    let Some(first) = devs.keys().next() else {
        return Ok(devs);
    };
    let at = |n: &str| format!("linux.netDevices.{n}");
    let Some(target) = target(spec) else {
        return Err(invalid(
            at(first),
            "moving a network device needs a network namespace in linux.namespaces",
        ));
    };
    if let Target::New = target {
        let plan = NsPlan::from_spec(spec);
        if !plan.clone_flags.contains(CloneFlags::CLONE_NEWNET) {
            // The namespace is made by the child after it joined a user or pid namespace,
            // later than the parent moves devices.
            return Err(invalid(
                at(first),
                "moving a network device into a new network namespace is not supported \
                 together with a user or pid namespace joined by path",
            ));
        }
    }
    let mut given: BTreeMap<&str, &str> = BTreeMap::new();
    for (host, inside) in &devs {
        valid_name(host).map_err(|m| invalid(at(host), m))?;
        valid_name(inside).map_err(|m| invalid(format!("{}.name", at(host)), m))?;
        if let Some(other) = given.insert(inside, host) {
            return Err(invalid(
                format!("{}.name", at(host)),
                format!("{inside:?} is also the name of linux.netDevices.{other} in the container"),
            ));
        }
        if inside == "lo" && matches!(target, Target::New) {
            return Err(invalid(
                format!("{}.name", at(host)),
                "\"lo\" is the new network namespace's loopback device",
            ));
        }
    }
    Ok(devs)
}

/// Checks `linux.netDevices` before any side effect: the config, then that the network
/// namespace named by path is not the host's and that every device is on the host.
pub fn validate(spec: &Spec) -> R {
    let devs = check_config(spec)?;
    let Some(first) = devs.keys().next() else {
        return Ok(());
    };
    if let Some(Target::Path(p)) = target(spec) {
        let same = |a: &std::path::Path| std::fs::metadata(a).map(|m| (m.dev(), m.ino())).ok();
        if same(&p).is_some() && same(&p) == same("/proc/self/ns/net".as_ref()) {
            return Err(invalid(
                format!("linux.netDevices.{first}"),
                format!(
                    "the network namespace at {} is the host's: moving a device needs one \
                     of the container's own",
                    p.display()
                ),
            ));
        }
    }
    let mut nl = Rtnl::here().map_err(sys(first, "open an rtnetlink socket"))?;
    for host in devs.keys() {
        match nl.link(host).map_err(sys(host, "look it up"))? {
            Some(_) => {}
            None => {
                return Err(invalid(
                    format!("linux.netDevices.{host}"),
                    "no such network interface on the host",
                ))
            }
        }
    }
    Ok(())
}

/// A device moved into the container, and what it was on the host.
struct Moved {
    host: String,
    inside: String,
    was_up: bool,
    addresses: Vec<AddressMessage>,
}

/// The devices `create` moved, given back to the host if `create` fails: dropped without
/// [`Guard::keep`], it moves each back under its host name with its addresses and link state.
/// It holds the target namespace open, so a namespace whose processes were killed is still
/// there to take the devices from.
#[derive(Default)]
pub struct Guard {
    netns: Option<OwnedFd>,
    moved: Vec<Moved>,
}

impl Guard {
    /// `create` succeeded: the devices stay where they are.
    pub fn keep(&mut self) {
        self.moved.clear();
        self.netns = None;
    }

    fn give_back(&mut self) -> R {
        let Some(netns) = self.netns.take() else {
            return Ok(());
        };
        let host_ns = std::fs::File::open("/proc/self/ns/net")
            .map_err(|e| sys("?", "open /proc/self/ns/net")(e))?;
        let mut inside = Rtnl::in_netns(netns.as_fd())
            .map_err(|e| sys("?", "open an rtnetlink socket in the container")(e))?;
        let mut host = Rtnl::here().map_err(|e| sys("?", "open an rtnetlink socket")(e))?;
        for m in self.moved.drain(..).rev() {
            let Some(link) = inside.link(&m.inside).map_err(sys(&m.host, "look it up"))? else {
                continue;
            };
            let _ = inside.set_up(link.index, false);
            inside
                .move_to(link.index, &m.host, host_ns.as_fd())
                .map_err(sys(&m.host, "move it back to the host"))?;
            if let Some(l) = host.link(&m.host).map_err(sys(&m.host, "look it up"))? {
                for a in &m.addresses {
                    let _ = host.add_address(l.index, a);
                }
                if m.was_up {
                    let _ = host.set_up(l.index, true);
                }
            }
        }
        Ok(())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Err(e) = self.give_back() {
            crate::logging::warn(format!("giving network devices back to the host: {e}"));
        }
    }
}

/// Moves the devices of `linux.netDevices` into the network namespace of the container whose
/// init is `pid` (called by `create` right after the clone, before the init is released). The
/// moved devices are recorded in `guard`.
pub fn move_in(spec: &Spec, pid: i32, guard: &mut Guard) -> R {
    let devs = devices(spec);
    let Some(first) = devs.keys().next().cloned() else {
        return Ok(());
    };
    let path = match target(spec) {
        Some(Target::Path(p)) => p,
        _ => PathBuf::from(format!("/proc/{pid}/ns/net")),
    };
    let netns: OwnedFd = std::fs::File::open(&path)
        .map_err(sys(
            &first,
            format!("open the network namespace {}", path.display()),
        ))?
        .into();
    let mut host = Rtnl::here().map_err(sys(&first, "open an rtnetlink socket"))?;
    let mut inside = Rtnl::in_netns(netns.as_fd()).map_err(sys(
        &first,
        "open an rtnetlink socket in the container's network namespace",
    ))?;
    guard.netns = Some(netns.try_clone().map_err(sys(&first, "dup"))?);
    for (name, new_name) in &devs {
        let link = host
            .link(name)
            .map_err(sys(name, "look it up"))?
            .ok_or_else(|| {
                invalid(
                    format!("linux.netDevices.{name}"),
                    "no such network interface on the host",
                )
            })?;
        // The kernel moves first and renames after: a name taken in the target would leave
        // the device there under its host name. Refused before anything moves.
        if inside
            .link(new_name)
            .map_err(sys(name, "look up its new name in the container"))?
            .is_some()
        {
            return Err(invalid(
                format!("linux.netDevices.{name}"),
                format!(
                    "the container's network namespace already has a device named {new_name:?}"
                ),
            ));
        }
        let addresses: Vec<AddressMessage> = host
            .addresses(link.index)
            .map_err(sys(name, "list its addresses"))?;
        host.set_up(link.index, false)
            .map_err(sys(name, "set it down"))?;
        let moved = Moved {
            host: name.clone(),
            inside: new_name.clone(),
            was_up: link.up,
            addresses,
        };
        if let Err(e) = host.move_to(link.index, new_name, netns.as_fd()) {
            // Moved but not renamed (the name was taken meanwhile): the guard takes it back.
            if let Ok(Some(_)) = inside.link(name) {
                guard.moved.push(Moved {
                    inside: name.clone(),
                    ..moved
                });
            } else {
                // Still on the host: as it was.
                if moved.was_up {
                    let _ = host.set_up(link.index, true);
                }
            }
            return Err(sys(
                name,
                format!("move it into the container's network namespace as {new_name:?}"),
            )(e));
        }
        let carried: Vec<AddressMessage> = moved
            .addresses
            .iter()
            .filter(|a| rtnl::carried_over(a))
            .cloned()
            .collect();
        guard.moved.push(moved);
        let moved_link = inside
            .link(new_name)
            .map_err(sys(name, "look it up in the container"))?
            .ok_or_else(|| {
                sys(name, "look it up in the container")(std::io::Error::from_raw_os_error(
                    libc::ENODEV,
                ))
            })?;
        for a in &carried {
            inside
                .add_address(moved_link.index, a)
                .map_err(sys(name, "add its address in the container"))?;
        }
        inside
            .set_up(moved_link.index, true)
            .map_err(sys(name, "set it up in the container"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(linux: &str) -> Spec {
        serde_json::from_str(&format!(r#"{{"ociVersion":"1.0.2","linux":{linux}}}"#)).unwrap()
    }

    fn err(linux: &str) -> String {
        check_config(&spec(linux)).unwrap_err().to_string()
    }

    #[test]
    fn names_follow_the_kernel_s_rule() {
        for ok in ["eth0", "a", "dummy-1.2", "x234567890abcde"] {
            assert!(valid_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a:b", "a b", "x234567890abcdef"] {
            assert!(valid_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn config_errors_name_the_device() {
        assert_eq!(
            err(r#"{"netDevices":{"d0":{}}}"#),
            "linux.netDevices.d0: moving a network device needs a network namespace in \
             linux.namespaces"
        );
        let ns = r#""namespaces":[{"type":"network"}]"#;
        assert!(err(&format!(r#"{{{ns},"netDevices":{{"d/0":{{}}}}}}"#))
            .starts_with("linux.netDevices.d/0: "));
        assert!(err(&format!(
            r#"{{{ns},"netDevices":{{"d0":{{"name":"a:b"}}}}}}"#
        ))
        .starts_with("linux.netDevices.d0.name: "));
        assert_eq!(
            err(&format!(
                r#"{{{ns},"netDevices":{{"d0":{{"name":"eth0"}},"d1":{{"name":"eth0"}}}}}}"#
            )),
            "linux.netDevices.d1.name: \"eth0\" is also the name of linux.netDevices.d0 in \
             the container"
        );
        assert!(err(&format!(
            r#"{{{ns},"netDevices":{{"d0":{{"name":"lo"}}}}}}"#
        ))
        .contains("loopback"));
        // A device keeping its name clashes with one renamed to it.
        assert!(err(&format!(
            r#"{{{ns},"netDevices":{{"d0":{{}},"d1":{{"name":"d0"}}}}}}"#
        ))
        .starts_with("linux.netDevices.d1.name: "));
        assert!(err(
            r#"{"namespaces":[{"type":"user","path":"/u"},{"type":"network"}],"netDevices":{"d0":{}}}"#
        )
        .contains("not supported"));
        let fine = spec(&format!(
            r#"{{{ns},"netDevices":{{"d0":{{}},"d1":{{"name":"eth1"}}}}}}"#
        ));
        assert_eq!(check_config(&fine).unwrap().len(), 2);
        assert!(check_config(&spec("{}")).unwrap().is_empty());
    }
}
