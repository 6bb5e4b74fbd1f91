//! The kernel's arguments and answers, as pure conversions the FreeBSD
//! runtime needs: how the plan's typed values become `jail_set(2)` and
//! `nmount(2)` name/value pairs, which mounts to undo and in what order,
//! what sysctl values and rctl's usage string say. No system calls
//! and no `unsafe`, so all of it is compiled and unit tested on every OS,
//! while the code that hands these to the kernel (`sys`) only builds on
//! FreeBSD.

#![forbid(unsafe_code)]

use std::ffi::CString;
use std::path::{Path, PathBuf};

use crate::plan::{Fstype, JailMount, JailParam, Jsys, ParamValue};

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

/// A jail's resource use from `rctl_get_racct(2)`'s output
/// ("cputime=0,datasize=..,memoryuse=1234,..,maxproc=3,.."). racct counts
/// every jail while `kern.racct.enable` is on, whether or not a rule limits
/// it. `cputime` is whole seconds; racct's I/O resources (`readbps`,
/// `writebps`, ...) are rates, not totals, so I/O stays unmeasured.
pub fn racct_usage(text: &str) -> sandboxd_core::Usage {
    let get = |key: &str| {
        text.trim_end_matches('\0')
            .trim()
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.parse::<u64>().ok())
    };
    sandboxd_core::Usage {
        memory_bytes: get("memoryuse"),
        pids: get("maxproc"),
        cpu_usec: get("cputime").and_then(|s| s.checked_mul(1_000_000)),
        io_read_bytes: None,
        io_write_bytes: None,
    }
}

/// The rctl filter that matches every rule of a jail.
pub fn rctl_jail_filter(jail: &str) -> String {
    format!("jail:{jail}")
}

/// Device nodes a jail's devfs must never show. Ruleset 4
/// (`devfsrules_jail`) hides them; if the ruleset is not loaded the kernel
/// silently creates it empty, and the mount would show every device.
pub const FORBIDDEN_DEVICES: [&str; 4] = ["mem", "kmem", "io", "bpf"];

#[cfg(test)]
mod tests;
