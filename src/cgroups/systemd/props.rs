//! Unit properties: `linux.resources` as the properties systemd has for them (runc's choice of
//! names and conversions, which engines and operators compare against), the
//! `org.systemd.property.NAME` annotations, and the D-Bus value type that carries them.
//!
//! What systemd cannot express is not here: the fs driver writes it in the unit's cgroup.

use oci_spec::runtime::LinuxResources;
use rustbus::wire::errors::MarshalError;
use rustbus::wire::marshal::traits::SignatureBuffer;
use rustbus::wire::marshal::MarshalContext;
use rustbus::{Marshal, Signature};

use super::super::devices::{self, DevType, DeviceState};
use super::super::CgroupError;

/// One property value, sent as a D-Bus variant.
#[derive(Clone)]
#[cfg_attr(test, derive(Debug, PartialEq))]
pub enum Value {
    Str(String),
    Bool(bool),
    U64(u64),
    U32(u32),
    I32(i32),
    /// `au` (PIDs).
    U32s(Vec<u32>),
    /// `ay` (a CPU or memory-node bitmask).
    Bytes(Vec<u8>),
    /// `as` (Wants).
    Strs(Vec<String>),
    /// `a(ss)` (DeviceAllow: node or group, access).
    Pairs(Vec<(String, String)>),
}

impl Signature for Value {
    fn signature() -> rustbus::signature::Type {
        rustbus::signature::Type::Container(rustbus::signature::Container::Variant)
    }
    fn alignment() -> usize {
        1
    }
    fn sig_str(s: &mut SignatureBuffer) {
        s.push_static("v");
    }
    fn has_sig(sig: &str) -> bool {
        sig.starts_with('v')
    }
}

impl Marshal for Value {
    fn marshal(&self, ctx: &mut MarshalContext) -> Result<(), MarshalError> {
        match self {
            Value::Str(s) => s.as_str().marshal_as_variant(ctx),
            Value::Bool(b) => b.marshal_as_variant(ctx),
            Value::U64(v) => v.marshal_as_variant(ctx),
            Value::U32(v) => v.marshal_as_variant(ctx),
            Value::I32(v) => v.marshal_as_variant(ctx),
            Value::U32s(v) => v.marshal_as_variant(ctx),
            Value::Bytes(v) => v.marshal_as_variant(ctx),
            Value::Strs(v) => v.marshal_as_variant(ctx),
            Value::Pairs(v) => v.marshal_as_variant(ctx),
        }
    }
}

/// Properties in the order they are sent (systemd applies them in order: a later one wins).
pub type Props = Vec<(String, Value)>;

fn p(name: &str, v: Value) -> (String, Value) {
    (name.to_string(), v)
}

/// `-1` (unlimited) is systemd's "infinity".
fn limit(v: i64) -> u64 {
    if v < 0 {
        u64::MAX
    } else {
        v as u64
    }
}

/// cgroup v1 cpu.shares (2…262144) to cgroup v2 cpu.weight (1…10000), runc's linear map.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142
}

/// blkio.weight (10…1000) to io.weight (1…10000), runc's linear map.
pub fn blkio_to_io_weight(w: u64) -> u64 {
    if w == 0 {
        return 0;
    }
    1 + (w.clamp(10, 1000) - 10) * 9999 / 990
}

/// The default CFS period, when only a quota is given.
const DEFAULT_PERIOD_US: u64 = 100_000;

/// CPUQuotaPerSecUSec (and CPUQuotaPeriodUSec) from quota/period: systemd keeps the quota as
/// time per second, rounded up here to whole per cent, as runc does (systemd would round it).
fn cpu_quota(out: &mut Props, quota: Option<i64>, period: Option<u64>) {
    let quota = quota.filter(|&q| q != 0);
    let period = period.filter(|&p| p != 0);
    if let Some(per) = period {
        out.push(p("CPUQuotaPeriodUSec", Value::U64(per)));
    }
    if quota.is_none() && period.is_none() {
        return;
    }
    let per_sec = match quota {
        Some(q) if q > 0 => {
            let per = period.unwrap_or(DEFAULT_PERIOD_US);
            let v = (q as u64).saturating_mul(1_000_000) / per;
            v.div_ceil(10_000) * 10_000
        }
        _ => u64::MAX,
    };
    out.push(p("CPUQuotaPerSecUSec", Value::U64(per_sec)));
}

/// "0-2,5" to systemd's bitmask bytes (bit n of byte n/8 is CPU or node n).
pub fn cpu_mask(list: &str, field: &str) -> Result<Vec<u8>, CgroupError> {
    let bad = || {
        CgroupError::invalid(
            field,
            format!("{list:?} is not a list of ranges like 0-3,6"),
        )
    };
    let mut mask = Vec::new();
    for part in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let a: usize = a.parse().map_err(|_| bad())?;
        let b: usize = b.parse().map_err(|_| bad())?;
        if a > b || b >= 8192 {
            return Err(bad());
        }
        for n in a..=b {
            if mask.len() <= n / 8 {
                mask.resize(n / 8 + 1, 0);
            }
            mask[n / 8] |= 1 << (n % 8);
        }
    }
    Ok(mask)
}

/// What systemd is told of `linux.resources`: `v2` when systemd drives the controllers on the
/// unified hierarchy (then the v2 names and scales), else the v1 ones.
pub fn resources(r: &LinuxResources, v2: bool) -> Result<Props, CgroupError> {
    let mut out = Props::new();
    if let Some(m) = r.memory() {
        if let Some(l) = m.limit().filter(|&l| l != 0) {
            out.push(p(
                if v2 { "MemoryMax" } else { "MemoryLimit" },
                Value::U64(limit(l)),
            ));
        }
        if v2 {
            if let Some(l) = m.reservation().filter(|&l| l != 0) {
                out.push(p("MemoryLow", Value::U64(limit(l))));
            }
            // OCI's swap is memory+swap (v1's memsw); systemd's MemorySwapMax is swap alone.
            if let Some(s) = m.swap().filter(|&s| s != 0) {
                let v = match (s, m.limit()) {
                    (s, _) if s < 0 => u64::MAX,
                    (s, Some(l)) if l > 0 && s >= l => (s - l) as u64,
                    (s, _) => s as u64,
                };
                out.push(p("MemorySwapMax", Value::U64(v)));
            }
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(s) = c.shares().filter(|&s| s != 0) {
            if v2 {
                out.push(p("CPUWeight", Value::U64(shares_to_weight(s))));
            } else {
                out.push(p("CPUShares", Value::U64(s)));
            }
        }
        cpu_quota(&mut out, c.quota(), c.period());
        if v2 {
            if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
                let m = cpu_mask(cpus, "linux.resources.cpu.cpus")?;
                out.push(p("AllowedCPUs", Value::Bytes(m)));
            }
            if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
                let m = cpu_mask(mems, "linux.resources.cpu.mems")?;
                out.push(p("AllowedMemoryNodes", Value::Bytes(m)));
            }
        }
    }
    if let Some(pl) = r.pids().as_ref().map(|x| x.limit()).filter(|&l| l != 0) {
        out.push(p("TasksMax", Value::U64(limit(pl))));
    }
    if let Some(w) = r
        .block_io()
        .as_ref()
        .and_then(|b| b.weight())
        .filter(|&w| w != 0)
    {
        if v2 {
            out.push(p("IOWeight", Value::U64(blkio_to_io_weight(w as u64))));
        } else {
            out.push(p("BlockIOWeight", Value::U64(w as u64)));
        }
    }
    if v2 {
        unified(&mut out, r)?;
    }
    if let Some(d) = r.devices() {
        device_props(&mut out, &devices::rules(d)?);
    }
    Ok(out)
}

/// The `linux.resources.unified` keys systemd has a property for (v2 only).
fn unified(out: &mut Props, r: &LinuxResources) -> Result<(), CgroupError> {
    let Some(u) = r.unified() else {
        return Ok(());
    };
    for (k, v) in u {
        let name = match k.as_str() {
            "memory.high" => "MemoryHigh",
            "memory.low" => "MemoryLow",
            "memory.min" => "MemoryMin",
            "memory.max" => "MemoryMax",
            "memory.swap.max" => "MemorySwapMax",
            "pids.max" => "TasksMax",
            "cpu.weight" => "CPUWeight",
            _ => continue,
        };
        let v = v.trim();
        let n = if v == "max" {
            u64::MAX
        } else {
            v.parse::<u64>().map_err(|_| {
                CgroupError::invalid(
                    format!("linux.resources.unified.{k}"),
                    format!("{v:?} is not a number or \"max\""),
                )
            })?
        };
        out.retain(|(n2, _)| n2 != name);
        out.push(p(name, Value::U64(n)));
    }
    Ok(())
}

/// DevicePolicy and DeviceAllow for the container's device rules. systemd only has allow
/// lists: a deny-by-default set becomes `strict` with its exceptions, allow-all becomes
/// `auto` with none; a set that denies some devices of an allowed whole cannot be said, so
/// systemd is told to deny everything and the fs driver's rules (written after) are what holds.
/// Never looser than the rules: when systemd re-applies its view (on an update or a reload),
/// the container cannot gain a device.
fn device_props(out: &mut Props, rules: &[devices::Rule]) {
    let st = DeviceState::from_rules(rules);
    if st.default_allow {
        if st.exceptions.is_empty() {
            out.push(p("DevicePolicy", Value::Str("auto".into())));
            out.push(p("DeviceAllow", Value::Pairs(vec![])));
        } else {
            crate::logging::warn(
                "linux.resources.devices: systemd has no deny lists; the unit denies all devices and the rules are written to cgroupfs",
            );
            out.push(p("DevicePolicy", Value::Str("strict".into())));
            out.push(p("DeviceAllow", Value::Pairs(vec![])));
        }
        return;
    }
    let groups = std::fs::read_to_string("/proc/devices").unwrap_or_default();
    let mut allow = Vec::new();
    for e in &st.exceptions {
        let mut acc = String::new();
        for (bit, ch) in [
            (devices::READ, 'r'),
            (devices::WRITE, 'w'),
            (devices::MKNOD, 'm'),
        ] {
            if e.access & bit != 0 {
                acc.push(ch);
            }
        }
        let kind = if e.typ == DevType::Block {
            "block"
        } else {
            "char"
        };
        let node = match (e.major, e.minor) {
            (None, None) => format!("{kind}-*"),
            (None, Some(_)) => {
                crate::logging::warn(format!(
                    "linux.resources.devices: systemd cannot allow {}; only cgroupfs has it",
                    e.v1_line()
                ));
                continue;
            }
            (Some(maj), None) => match device_group(&groups, kind, maj) {
                Some(g) => format!("{kind}-{g}"),
                None => {
                    crate::logging::warn(format!(
                        "linux.resources.devices: no {kind} device group has major {maj} in /proc/devices; only cgroupfs allows {}",
                        e.v1_line()
                    ));
                    continue;
                }
            },
            (Some(maj), Some(min)) => format!("/dev/{kind}/{maj}:{min}"),
        };
        allow.push((node, acc));
    }
    out.push(p("DevicePolicy", Value::Str("strict".into())));
    out.push(p("DeviceAllow", Value::Pairs(allow)));
}

/// The name /proc/devices gives major `maj` in its "Character" or "Block" section.
fn device_group(text: &str, kind: &str, maj: u32) -> Option<String> {
    let header = if kind == "block" {
        "Block devices:"
    } else {
        "Character devices:"
    };
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.ends_with("devices:") {
            inside = line == header;
            continue;
        }
        if !inside {
            continue;
        }
        let mut it = line.split_whitespace();
        if it.next().and_then(|n| n.parse::<u32>().ok()) == Some(maj) {
            return it.next().map(str::to_string);
        }
    }
    None
}

/// The D-Bus type of a unit property that an annotation may set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Bool,
    U64,
    U32,
    I32,
    Str,
}

/// The properties `org.systemd.property.NAME` may name, typed (systemd refuses a value of the
/// wrong type with a message that names neither the annotation nor the type).
const KNOWN: &[(&str, Kind)] = &[
    ("CPUAccounting", Kind::Bool),
    ("MemoryAccounting", Kind::Bool),
    ("IOAccounting", Kind::Bool),
    ("BlockIOAccounting", Kind::Bool),
    ("TasksAccounting", Kind::Bool),
    ("IPAccounting", Kind::Bool),
    ("Delegate", Kind::Bool),
    ("SendSIGKILL", Kind::Bool),
    ("SendSIGHUP", Kind::Bool),
    ("MemoryOOMGroup", Kind::Bool),
    ("CPUWeight", Kind::U64),
    ("StartupCPUWeight", Kind::U64),
    ("CPUShares", Kind::U64),
    ("StartupCPUShares", Kind::U64),
    ("CPUQuotaPerSecUSec", Kind::U64),
    ("CPUQuotaPeriodUSec", Kind::U64),
    ("MemoryMin", Kind::U64),
    ("MemoryLow", Kind::U64),
    ("MemoryHigh", Kind::U64),
    ("MemoryMax", Kind::U64),
    ("MemorySwapMax", Kind::U64),
    ("MemoryLimit", Kind::U64),
    ("TasksMax", Kind::U64),
    ("IOWeight", Kind::U64),
    ("StartupIOWeight", Kind::U64),
    ("BlockIOWeight", Kind::U64),
    ("StartupBlockIOWeight", Kind::U64),
    ("TimeoutStopUSec", Kind::U64),
    ("RuntimeMaxUSec", Kind::U64),
    ("RuntimeRandomizedExtraUSec", Kind::U64),
    ("ManagedOOMMemoryPressureLimit", Kind::U32),
    ("KillSignal", Kind::I32),
    ("FinalKillSignal", Kind::I32),
    ("CollectMode", Kind::Str),
    ("KillMode", Kind::Str),
    ("OOMPolicy", Kind::Str),
    ("Description", Kind::Str),
    ("ManagedOOMSwap", Kind::Str),
    ("ManagedOOMMemoryPressure", Kind::Str),
    ("ManagedOOMPreference", Kind::Str),
    ("DevicePolicy", Kind::Str),
];

pub const ANNOTATION_PREFIX: &str = "org.systemd.property.";

/// The `org.systemd.property.NAME` annotations as properties (runc's convention: a name
/// ending in a lower-case letter and `Sec` takes seconds and is sent as its `USec` form).
pub fn from_annotations<'a>(
    ann: impl Iterator<Item = (&'a String, &'a String)>,
) -> Result<Props, CgroupError> {
    let mut out = Props::new();
    for (k, v) in ann {
        let Some(name) = k.strip_prefix(ANNOTATION_PREFIX) else {
            continue;
        };
        let field = format!("annotations[{k:?}]");
        let secs = name
            .strip_suffix("Sec")
            .filter(|t| t.ends_with(|c: char| c.is_ascii_lowercase()));
        let real = match secs {
            Some(t) => format!("{t}USec"),
            None => name.to_string(),
        };
        let Some(&(_, kind)) = KNOWN.iter().find(|(n, _)| *n == real) else {
            let names: Vec<&str> = KNOWN.iter().map(|(n, _)| *n).collect();
            return Err(CgroupError::invalid(
                field,
                format!(
                    "{name:?} is not a unit property Berth can pass to systemd (known: {})",
                    names.join(", ")
                ),
            ));
        };
        let value = if secs.is_some() {
            Value::U64(seconds(v).ok_or_else(|| {
                CgroupError::invalid(&field, format!("{v:?} is not a number of seconds"))
            })?)
        } else {
            typed(kind, v).ok_or_else(|| {
                CgroupError::invalid(&field, format!("{v:?} is not a {}", kind_name(kind)))
            })?
        };
        out.push((real, value));
    }
    Ok(out)
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Bool => "boolean (true or false)",
        Kind::U64 => "64-bit unsigned number (or \"infinity\")",
        Kind::U32 => "32-bit unsigned number",
        Kind::I32 => "32-bit signed number",
        Kind::Str => "string",
    }
}

/// A value as written in an annotation: plain (`100`, `true`, `inactive-or-failed`) or in
/// GVariant text form as runc's users write it (`uint64 100`, `'inactive-or-failed'`).
fn typed(kind: Kind, v: &str) -> Option<Value> {
    let v = v.trim();
    let num = |prefixes: &[&str]| -> String {
        let mut s = v;
        for pre in prefixes {
            if let Some(rest) = s.strip_prefix(pre) {
                s = rest.trim_start();
            }
        }
        s.to_string()
    };
    Some(match kind {
        Kind::Bool => Value::Bool(match v {
            "true" | "yes" | "1" => true,
            "false" | "no" | "0" => false,
            _ => return None,
        }),
        Kind::U64 => {
            let s = num(&["uint64", "uint32"]);
            Value::U64(if s == "infinity" {
                u64::MAX
            } else {
                s.parse().ok()?
            })
        }
        Kind::U32 => Value::U32(num(&["uint32"]).parse().ok()?),
        Kind::I32 => Value::I32(num(&["int32"]).parse().ok()?),
        Kind::Str => {
            let s = v
                .strip_prefix('\'')
                .and_then(|s| s.strip_suffix('\''))
                .or_else(|| v.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
                .unwrap_or(v);
            Value::Str(s.to_string())
        }
    })
}

/// Seconds (whole or fractional, optionally `uint64 N`) to microseconds.
fn seconds(v: &str) -> Option<u64> {
    let v = v.trim();
    let v = v
        .strip_prefix("uint64")
        .or_else(|| v.strip_prefix("double"))
        .map_or(v, str::trim_start);
    if v == "infinity" {
        return Some(u64::MAX);
    }
    let f: f64 = v.parse().ok()?;
    if !(0.0..1.8e13).contains(&f) {
        return None;
    }
    Some((f * 1e6).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn res(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
    }

    fn get<'a>(ps: &'a Props, name: &str) -> Option<&'a Value> {
        ps.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    #[test]
    fn v1_resources_use_the_v1_names() {
        let r = res(
            r#"{"memory":{"limit":67108864},"cpu":{"shares":512,"quota":50000,"period":100000},"pids":{"limit":64},"blockIO":{"weight":300}}"#,
        );
        let ps = resources(&r, false).unwrap();
        assert_eq!(get(&ps, "MemoryLimit"), Some(&Value::U64(64 << 20)));
        assert_eq!(get(&ps, "CPUShares"), Some(&Value::U64(512)));
        assert_eq!(get(&ps, "CPUQuotaPerSecUSec"), Some(&Value::U64(500_000)));
        assert_eq!(get(&ps, "CPUQuotaPeriodUSec"), Some(&Value::U64(100_000)));
        assert_eq!(get(&ps, "TasksMax"), Some(&Value::U64(64)));
        assert_eq!(get(&ps, "BlockIOWeight"), Some(&Value::U64(300)));
        assert_eq!(get(&ps, "MemoryMax"), None);
    }

    #[test]
    fn v2_resources_convert_scales() {
        let r = res(
            r#"{"memory":{"limit":1000,"swap":3000,"reservation":500},"cpu":{"shares":1024,"cpus":"0-1,3"},"pids":{"limit":-1},"blockIO":{"weight":500},"unified":{"memory.high":"900"}}"#,
        );
        let ps = resources(&r, true).unwrap();
        assert_eq!(get(&ps, "MemoryMax"), Some(&Value::U64(1000)));
        assert_eq!(get(&ps, "MemorySwapMax"), Some(&Value::U64(2000)));
        assert_eq!(get(&ps, "MemoryLow"), Some(&Value::U64(500)));
        assert_eq!(get(&ps, "MemoryHigh"), Some(&Value::U64(900)));
        assert_eq!(get(&ps, "CPUWeight"), Some(&Value::U64(39)));
        assert_eq!(get(&ps, "AllowedCPUs"), Some(&Value::Bytes(vec![0b1011])));
        assert_eq!(get(&ps, "TasksMax"), Some(&Value::U64(u64::MAX)));
        assert_eq!(
            get(&ps, "IOWeight"),
            Some(&Value::U64(1 + 490 * 9999 / 990))
        );
    }

    #[test]
    fn quota_is_per_second_rounded_up_to_a_per_cent() {
        let mut ps = Props::new();
        cpu_quota(&mut ps, Some(12345), None);
        assert_eq!(get(&ps, "CPUQuotaPerSecUSec"), Some(&Value::U64(130_000)));
        let mut ps = Props::new();
        cpu_quota(&mut ps, Some(-1), Some(50_000));
        assert_eq!(get(&ps, "CPUQuotaPerSecUSec"), Some(&Value::U64(u64::MAX)));
        assert_eq!(get(&ps, "CPUQuotaPeriodUSec"), Some(&Value::U64(50_000)));
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
    }

    #[test]
    fn device_rules_become_an_allow_list() {
        let r = res(
            r#"{"devices":[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":10,"minor":200,"access":"rw"}]}"#,
        );
        let ps = resources(&r, false).unwrap();
        assert_eq!(get(&ps, "DevicePolicy"), Some(&Value::Str("strict".into())));
        let Some(Value::Pairs(allow)) = get(&ps, "DeviceAllow") else {
            panic!("no DeviceAllow: {ps:?}")
        };
        assert!(
            allow.contains(&("/dev/char/10:200".into(), "rw".into())),
            "{allow:?}"
        );
        assert!(
            allow.contains(&("/dev/char/1:3".into(), "rwm".into())),
            "{allow:?}"
        );
        assert!(allow.contains(&("char-*".into(), "m".into())), "{allow:?}");
        // Allow-all: nothing to restrict.
        let ps = resources(
            &res(r#"{"devices":[{"allow":true,"access":"rwm"}]}"#),
            false,
        )
        .unwrap();
        assert_eq!(get(&ps, "DevicePolicy"), Some(&Value::Str("auto".into())));
        // A deny list cannot be said: deny everything (never looser).
        let ps = resources(
            &res(r#"{"devices":[{"allow":true,"access":"rwm"},{"allow":false,"type":"c","major":10,"minor":200,"access":"rwm"}]}"#),
            false,
        )
        .unwrap();
        assert_eq!(get(&ps, "DevicePolicy"), Some(&Value::Str("strict".into())));
        assert_eq!(get(&ps, "DeviceAllow"), Some(&Value::Pairs(vec![])));
    }

    #[test]
    fn proc_devices_groups() {
        let t = "Character devices:\n  1 mem\n136 pts\n\nBlock devices:\n  8 sd\n";
        assert_eq!(device_group(t, "char", 136).as_deref(), Some("pts"));
        assert_eq!(device_group(t, "block", 8).as_deref(), Some("sd"));
        assert_eq!(device_group(t, "block", 136), None);
    }

    #[test]
    fn annotations_are_typed_by_name() {
        let mut a = BTreeMap::new();
        a.insert("org.systemd.property.TimeoutStopSec".into(), "2.5".into());
        a.insert(
            "org.systemd.property.CollectMode".into(),
            "'inactive-or-failed'".into(),
        );
        a.insert("org.systemd.property.TasksAccounting".into(), "true".into());
        a.insert(
            "org.systemd.property.MemoryHigh".into(),
            "uint64 1000".into(),
        );
        a.insert("other".into(), "x".into());
        let ps = from_annotations(a.iter()).unwrap();
        assert_eq!(get(&ps, "TimeoutStopUSec"), Some(&Value::U64(2_500_000)));
        assert_eq!(
            get(&ps, "CollectMode"),
            Some(&Value::Str("inactive-or-failed".into()))
        );
        assert_eq!(get(&ps, "TasksAccounting"), Some(&Value::Bool(true)));
        assert_eq!(get(&ps, "MemoryHigh"), Some(&Value::U64(1000)));
        assert_eq!(ps.len(), 4);
    }

    #[test]
    fn bad_annotations_name_the_annotation() {
        for (k, v) in [
            ("org.systemd.property.Bogus", "1"),
            ("org.systemd.property.TasksMax", "lots"),
            ("org.systemd.property.Delegate", "maybe"),
            ("org.systemd.property.TimeoutStopSec", "-3"),
        ] {
            let a = BTreeMap::from([(k.to_string(), v.to_string())]);
            let e = from_annotations(a.iter()).unwrap_err().to_string();
            assert!(e.starts_with(&format!("annotations[{k:?}]: ")), "{e}");
        }
    }

    #[test]
    fn masks() {
        assert_eq!(cpu_mask("0", "f").unwrap(), vec![1]);
        assert_eq!(cpu_mask("8-9", "f").unwrap(), vec![0, 3]);
        assert!(cpu_mask("3-1", "f").is_err());
        assert!(cpu_mask("x", "f").is_err());
    }
}
