//! The kernel's arguments and answers, as pure conversions the FreeBSD
//! runtime needs: how the plan's typed values become `jail_set(2)` and
//! `nmount(2)` name/value pairs, which mounts to undo and in what order,
//! what sysctl values and rctl's usage string say. No system calls
//! and no `unsafe`, so all of it is compiled and unit tested on every OS,
//! while the code that hands these to the kernel (`sys`) only builds on
//! FreeBSD.

#![forbid(unsafe_code)]

use std::ffi::CString;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::plan::{
    Fstype, HostAlias, IFCONFIG, JailMount, JailParam, JailStep, Jsys, PFCTL, ParamValue,
};

/// One `jail_set(2)` iovec pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JailIov {
    /// The parameter's name, NUL-terminated.
    pub name: CString,
    /// The value's bytes as the kernel reads them, or `None` for a
    /// parameter given by name alone (a boolean: "persist",
    /// "allow.nomount").
    pub value: Option<Vec<u8>>,
}

/// Why the plan's parameters cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A name or string value contains a NUL byte.
    #[error("jail parameter {0:?}: contains a NUL byte")]
    Nul(String),
    /// An integer parameter does not fit the kernel's `int`.
    #[error("jail parameter {name:?}: {value} does not fit a C int")]
    IntRange {
        /// The parameter.
        name: String,
        /// The value.
        value: i64,
    },
}

/// The kernel spelling of a false boolean: `no` before the last
/// component ("allow.mount" → "allow.nomount", "persist" → "nopersist").
/// `jail_set(2)` sets a boolean by the mere presence of its name, whatever
/// value comes with it, so a false one must be sent under this name.
pub fn negated_name(name: &str) -> String {
    match name.rsplit_once('.') {
        Some((prefix, last)) => format!("{prefix}.no{last}"),
        None => format!("no{name}"),
    }
}

/// The `jail_set(2)` value of a jailsys parameter (`JAIL_SYS_*`).
pub fn jsys_value(j: Jsys) -> i32 {
    match j {
        Jsys::Disable => 0,
        Jsys::New => 1,
        Jsys::Inherit => 2,
    }
}

fn cstring(name: &str, s: &str) -> Result<CString, EncodeError> {
    CString::new(s).map_err(|_| EncodeError::Nul(name.to_owned()))
}

/// The iovec pairs for `jail_set(JAIL_CREATE)`, in the plan's order:
/// strings NUL-terminated, integers and jailsys values as a native C
/// `int`, booleans by name alone (false ones under [`negated_name`]),
/// address lists as packed `in_addr`/`in6_addr` arrays (network order).
/// Exactly the plan's parameters, nothing added: the plan itself carries
/// `persist`.
pub fn jail_iovecs(params: &[JailParam]) -> Result<Vec<JailIov>, EncodeError> {
    let mut out = Vec::with_capacity(params.len());
    for p in params {
        let name = &p.name;
        let (key, value) = match &p.value {
            ParamValue::Str(s) => (name.clone(), Some(cstring(name, s)?.into_bytes_with_nul())),
            ParamValue::Int(v) => {
                let n = i32::try_from(*v).map_err(|_| EncodeError::IntRange {
                    name: name.clone(),
                    value: *v,
                })?;
                (name.clone(), Some(n.to_ne_bytes().to_vec()))
            }
            ParamValue::Bool(true) => (name.clone(), None),
            ParamValue::Bool(false) => (negated_name(name), None),
            ParamValue::Jsys(j) => (name.clone(), Some(jsys_value(*j).to_ne_bytes().to_vec())),
            ParamValue::Ip4(a) => (
                name.clone(),
                Some(a.iter().flat_map(|a| a.octets()).collect()),
            ),
            ParamValue::Ip6(a) => (
                name.clone(),
                Some(a.iter().flat_map(|a| a.octets()).collect()),
            ),
        };
        out.push(JailIov {
            name: cstring(name, &key)?,
            value,
        });
    }
    Ok(out)
}

/// The `nmount(2)` name/value pairs of one mount, in order. `fspath` is the
/// resolved mount point on the host; `from` the resolved source directory
/// of a nullfs mount. Options "name=value" become a pair, a bare "name"
/// (`ro`, `nosuid`) a name without value, which `nmount` turns into the
/// corresponding `MNT_*` flag.
pub fn nmount_pairs(
    m: &JailMount,
    fspath: &str,
    from: Option<&str>,
) -> Vec<(String, Option<String>)> {
    let mut pairs = vec![
        ("fstype".to_owned(), Some(m.fstype.as_str().to_owned())),
        ("fspath".to_owned(), Some(fspath.to_owned())),
    ];
    match (m.fstype, from) {
        // mount_nullfs(8) passes the lower directory as "target"; every
        // supported kernel accepts it.
        (Fstype::Nullfs, Some(from)) => pairs.push(("target".to_owned(), Some(from.to_owned()))),
        // An update names an existing mount; tmpfs refuses options it cannot
        // change, "from" among them on older kernels.
        _ if m.update => {}
        (fstype, _) => pairs.push(("from".to_owned(), Some(fstype.as_str().to_owned()))),
    }
    for o in &m.options {
        match o.split_once('=') {
            Some((k, v)) => pairs.push((k.to_owned(), Some(v.to_owned()))),
            None => pairs.push((o.clone(), None)),
        }
    }
    pairs
}

/// Why a path inside the jail cannot be walked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path:?}: not an absolute path without '.', '..' or empty components")]
pub struct BadPath {
    /// The path.
    pub path: String,
}

/// The components of an absolute, normalised path ("/" has none).
/// Validation already refused anything else; this refuses it again rather
/// than walk `..` out of the root.
pub fn components(path: &str) -> Result<Vec<&str>, BadPath> {
    let bad = || BadPath {
        path: path.to_owned(),
    };
    let rest = path.strip_prefix('/').ok_or_else(bad)?;
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let parts: Vec<&str> = rest.split('/').collect();
    if parts
        .iter()
        .any(|c| c.is_empty() || *c == "." || *c == "..")
    {
        return Err(bad());
    }
    Ok(parts)
}

/// The host path of `target` inside the jail rooted at `root`, from its
/// checked components (never a string join of an unchecked path).
pub fn host_path(root: &Path, target: &str) -> Result<PathBuf, BadPath> {
    Ok(components(target)?
        .into_iter()
        .fold(root.to_owned(), |p, c| p.join(c)))
}

/// The mounts at or below `dir`, from the kernel's mount list (oldest
/// first, as `getfsstat(2)` returns it), in the order to unmount them:
/// newest first, so a mount is always undone before the one under it.
pub fn mounts_to_undo<T: Clone>(mounts: &[(PathBuf, T)], dir: &Path) -> Vec<(PathBuf, T)> {
    mounts
        .iter()
        .rev()
        .filter(|(on, _)| on.starts_with(dir))
        .cloned()
        .collect()
}

/// Which code runs a plan step. Every step has exactly one: the plan's
/// steps are the only list the daemon (`netcfg::prepare`), the backend's
/// `setup` and `enter`, and the generic supervisor work from, and the
/// rendered plan shows the same list, so what the plan says is what runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Executor {
    /// `Backend::prepare` in the daemon, before the supervisor starts.
    Prepare,
    /// The backend's `Isolation::setup` in the supervisor, in plan order.
    Setup,
    /// The backend's `Isolation::enter`, in each forked child.
    Enter,
    /// The generic supervisor (`sandboxd_supervisor`), from the launch
    /// config the backend derived from the same plan (rlimits, argv, user).
    Generic,
}

/// Who runs `step`. No wildcard: a new step must be given a runner here,
/// or it would be planned and shown but never executed.
pub fn executor(step: &JailStep) -> Executor {
    match step {
        JailStep::CheckAddresses
        | JailStep::AddAliases
        | JailStep::AddLoopbackAlias(_)
        | JailStep::LoadPfRules => Executor::Prepare,
        JailStep::WriteResolvConf
        | JailStep::Mounts
        | JailStep::CreateJail
        | JailStep::RctlRules
        | JailStep::LoopbackUp => Executor::Setup,
        JailStep::JailAttach => Executor::Enter,
        JailStep::ReapAcquire
        | JailStep::Fork
        | JailStep::SetRlimit(_)
        | JailStep::NoNewPrivs
        | JailStep::SetGroups(_)
        | JailStep::SetGid(_)
        | JailStep::SetUid(_)
        | JailStep::Chdir(_)
        | JailStep::Closefrom
        | JailStep::Execve { .. } => Executor::Generic,
    }
}

/// The steps `runner` executes, in plan order.
pub fn steps_for(steps: &[JailStep], runner: Executor) -> impl Iterator<Item = &JailStep> {
    steps.iter().filter(move |s| executor(s) == runner)
}

/// The program and arguments the plan's main process runs (`/bin/sh
/// /etc/rc` in place of the default `/sbin/init`).
pub fn main_argv(steps: &[JailStep]) -> Option<&[String]> {
    steps.iter().find_map(|s| match s {
        JailStep::Execve { argv, .. } => Some(argv.as_slice()),
        _ => None,
    })
}

/// A boolean or integer sysctl's raw bytes (1 byte for `SYSCTL_BOOL` such
/// as `kern.racct.enable`, 4 for an int): true if any byte is non-zero.
pub fn sysctl_flag(bytes: &[u8]) -> bool {
    bytes.iter().any(|b| *b != 0)
}

/// A string sysctl's raw bytes, up to the first NUL.
pub fn sysctl_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Memory and process counts from `rctl_get_racct(2)`'s output
/// ("cputime=0,datasize=..,memoryuse=1234,..,maxproc=3,..").
pub fn racct_usage(text: &str) -> (Option<u64>, Option<u64>) {
    let get = |key: &str| {
        text.trim_end_matches('\0')
            .trim()
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.parse().ok())
    };
    (get("memoryuse"), get("maxproc"))
}

/// The rctl filter that matches every rule of a jail.
pub fn rctl_jail_filter(jail: &str) -> String {
    format!("jail:{jail}")
}

/// What the daemon did to the host for one sandbox's network, recorded in
/// the sandbox's directory as it goes, so `cleanup` can undo exactly that
/// by the sandbox id alone (never an address the host had on its own).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HostNetRecord {
    /// Aliases the daemon added.
    pub aliases: Vec<HostAlias>,
    /// The pf anchor it loaded rules into.
    pub pf_anchor: Option<String>,
}

/// The record's file name in the sandbox directory.
pub const HOST_NET_RECORD: &str = "hostnet.json";

/// The interface of the per-sandbox loopback alias (LOOPBACK without
/// VIMAGE).
pub const LOOPBACK_INTERFACE: &str = "lo0";

/// The per-sandbox loopback address as a host alias: added, recorded and
/// removed exactly like a RESTRICTED address.
pub fn loopback_host_alias(address: Ipv4Addr) -> HostAlias {
    HostAlias {
        interface: LOOPBACK_INTERFACE.to_owned(),
        address: IpAddr::V4(address),
    }
}

/// ifconfig(8) arguments that add (`add`) or remove an alias.
pub fn ifconfig_alias_args(alias: &HostAlias, add: bool) -> Vec<String> {
    let af = if alias.address.is_ipv4() {
        "inet"
    } else {
        "inet6"
    };
    let (address, verb) = if add {
        (alias.with_prefix(), "alias")
    } else {
        (alias.address.to_string(), "-alias")
    };
    vec![
        alias.interface.clone(),
        af.to_owned(),
        address,
        verb.to_owned(),
    ]
}

/// pfctl(8) arguments that load rules from stdin into `anchor`.
pub fn pfctl_load_args(anchor: &str) -> Vec<String> {
    ["-a", anchor, "-f", "-"].map(str::to_owned).to_vec()
}

/// pfctl(8) arguments that flush what the backend loads into `anchor`:
/// its rules, then its nat/rdr rules, as two calls. Not `-F all`: on
/// FreeBSD 15.1 that exits 1 on an anchor, even an empty or missing one,
/// because it also flushes tables after the anchor's ruleset is gone.
pub fn pfctl_flush_args(anchor: &str) -> [Vec<String>; 2] {
    ["rules", "nat"].map(|what| ["-a", anchor, "-F", what].map(str::to_owned).to_vec())
}

/// What undoing a sandbox's host network does to the host, one call per
/// action: `netcfg` runs the commands and keeps the record file; tests
/// make them fail at will.
pub trait HostNetOps {
    /// Runs `program args` for `step`; Err says what failed.
    fn run(&mut self, step: &'static str, program: &str, args: &[String]) -> Result<(), String>;
    /// Whether a host interface holds `address` (true when unknown: then
    /// removing it is tried).
    fn address_present(&mut self, address: IpAddr) -> bool;
    /// Writes what is left to undo, so a crash midway loses nothing.
    fn save(&mut self, record: &HostNetRecord) -> Result<(), String>;
}

/// Undoes `record`: flushes its pf anchor, then removes its aliases,
/// newest first. The resources are independent, so a failure does not
/// stop the others; each is dropped from the record once undone, and the
/// record is saved after every change. Returns what is left (empty when
/// all went) and every error. With `anchor_without_record` (the id's
/// anchor on a host with pf), an anchor the record does not name is
/// flushed too, ignoring failures: a daemon that died between loading and
/// recording it may have left rules, or none.
pub fn undo_host_net(
    mut record: HostNetRecord,
    anchor_without_record: Option<&str>,
    ops: &mut impl HostNetOps,
) -> (HostNetRecord, Vec<String>) {
    let mut errors = Vec::new();
    if let Some(anchor) = record.pf_anchor.clone() {
        let mut flushed = true;
        for args in pfctl_flush_args(&anchor) {
            if let Err(e) = ops.run("flush pf anchor", PFCTL, &args) {
                errors.push(e);
                flushed = false;
            }
        }
        if flushed {
            record.pf_anchor = None;
            errors.extend(ops.save(&record).err());
        }
    } else if let Some(anchor) = anchor_without_record {
        for args in pfctl_flush_args(anchor) {
            let _ = ops.run("flush pf anchor", PFCTL, &args);
        }
    }
    // Newest first; `kept` holds the ones whose removal failed.
    let mut kept = Vec::new();
    while let Some(alias) = record.aliases.pop() {
        let removed = !ops.address_present(alias.address)
            || ops
                .run(
                    "remove alias",
                    IFCONFIG,
                    &ifconfig_alias_args(&alias, false),
                )
                .map_err(|e| errors.push(e))
                .is_ok();
        if removed {
            let left = HostNetRecord {
                aliases: record
                    .aliases
                    .iter()
                    .chain(kept.iter().rev())
                    .cloned()
                    .collect(),
                pf_anchor: record.pf_anchor.clone(),
            };
            errors.extend(ops.save(&left).err());
        } else {
            kept.push(alias);
        }
    }
    kept.reverse();
    record.aliases = kept;
    (record, errors)
}

/// The rules file `pfctl -f -` reads: one rule a line.
pub fn pf_rules_text(rules: &[String]) -> String {
    rules.iter().map(|r| format!("{r}\n")).collect()
}

/// `pfctl -s info` says pf is enabled.
pub fn pf_enabled(info: &str) -> bool {
    info.lines()
        .any(|l| l.trim_start().starts_with("Status: Enabled"))
}

/// `pfctl -s nat` (the main ruleset's translation rules) hooks the
/// sandboxd anchors: `nat-anchor "sandboxd/*"` and `rdr-anchor
/// "sandboxd/*"`.
pub fn pf_has_anchors(nat: &str) -> bool {
    let has = |kind: &str| {
        let want = format!("{kind} \"sandboxd/*\"");
        nat.lines().any(|l| l.trim_start().starts_with(&want))
    };
    has("nat-anchor") && has("rdr-anchor")
}

/// The interface of `route -n get -inet default`'s answer ("interface:
/// em0"), if any.
pub fn route_interface(route: &str) -> Option<String> {
    route.lines().find_map(|l| {
        l.trim()
            .strip_prefix("interface:")
            .map(|i| i.trim().to_owned())
            .filter(|i| !i.is_empty())
    })
}

/// Device nodes a jail's devfs must never show. Ruleset 4
/// (`devfsrules_jail`) hides them; if the ruleset is not loaded the kernel
/// silently creates it empty, and the mount would show every device.
pub const FORBIDDEN_DEVICES: [&str; 4] = ["mem", "kmem", "io", "bpf"];

#[cfg(test)]
mod tests;
