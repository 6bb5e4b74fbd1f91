//! Turning the spec flags (`cli::SpecFlags`, `cli::ProcessFlags`) into a
//! `SandboxSpec` / `ProcessSpec`.
//!
//! Each value parser returns a plain reason; the caller wraps it into a
//! one-line usage error naming the flag and the value (`--memory 64X: ...`).
//! The flag syntax is checked here (`256M`, `8080:80/udp`, `SRC:DST:ro`), as
//! are contradictions between flags. Whether a value is valid (names,
//! paths, ports, labels, DNS, signals) is `sandboxd_core::validate`'s rule,
//! the one the daemon applies, so the two cannot drift apart; what depends
//! on the daemon's configuration (caps, allowed mount sources) is left to it.

use std::collections::HashMap;
use std::net::IpAddr;

use sandboxd_core::validate::{
    MAX_DNS_SEARCH, MAX_DNS_SERVERS, check_absolute_path, check_domain_name, check_hostname_value,
    check_image_name, check_label_key, check_label_value, check_port, check_sandbox_name,
    check_signal,
};
use sandboxd_proto::v1::{
    Isolation, Limit, Limits, Mount, NetworkMode, NetworkPolicy, PortForward, ProcessSpec,
    Protocol, Requirement, SandboxJoin, SandboxMode, SandboxSpec, User,
};

use crate::cli::{NetworkFlags, ProcessFlags, SpecFlags};
use crate::error::CliError;

/// Looks up a variable in the local environment (injected so tests do not
/// depend on the real environment).
pub(crate) type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The real environment.
pub(crate) fn local_env(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

/// A usage error for `flag value: reason`.
fn flag_err(flag: &str, value: &str, reason: impl std::fmt::Display) -> CliError {
    let shown = if value.is_empty() || value.contains(char::is_whitespace) {
        format!("{value:?}")
    } else {
        value.to_owned()
    };
    CliError::Usage(format!("{flag} {shown}: {reason}"))
}

/// Parses `value` with `parse`, naming `flag` in the error.
fn with_flag<T>(
    flag: &str,
    value: &str,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, CliError> {
    parse(value).map_err(|reason| flag_err(flag, value, reason))
}

/// A byte size: an integer with an optional K/M/G/T suffix (1024-based; `KB`,
/// `KiB` and lower case accepted too, all meaning the same).
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, suffix) = s.split_at(split);
    if digits.is_empty() {
        return Err("expected a number with an optional K, M, G or T suffix, e.g. 512M".into());
    }
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(format!("unknown size suffix {suffix:?} (use K, M, G or T)")),
    };
    let n: u64 = digits.parse().map_err(|_| "number too large".to_owned())?;
    let bytes = n
        .checked_mul(1u64 << shift)
        .ok_or_else(|| "size too large".to_owned())?;
    if bytes == 0 {
        return Err("must be greater than 0".into());
    }
    Ok(bytes)
}

/// A positive integer count.
pub(crate) fn parse_count(s: &str) -> Result<u64, String> {
    let n: u64 = s
        .parse()
        .map_err(|_| "expected a positive integer".to_owned())?;
    if n == 0 {
        return Err("must be greater than 0".into());
    }
    Ok(n)
}

/// CPUs as a decimal (`0.5`, `2`, at most 3 decimals) or milli-CPUs (`500m`),
/// to milli-CPUs. Done in integers so `0.3` is exactly 300.
pub(crate) fn parse_cpus(s: &str) -> Result<u64, String> {
    const SYNTAX: &str = "expected CPUs like 0.5 or 2, or milli-CPUs like 500m";
    let millis = if let Some(m) = s.strip_suffix('m') {
        if m.is_empty() || !m.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SYNTAX.into());
        }
        m.parse::<u64>()
            .map_err(|_| "number too large".to_owned())?
    } else {
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if (int.is_empty() && frac.is_empty()) || !all_digits(int) || !all_digits(frac) {
            return Err(SYNTAX.into());
        }
        if frac.len() > 3 {
            return Err("at most 3 decimals (the quota is in milli-CPUs)".into());
        }
        let whole: u64 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| "number too large".to_owned())?
        };
        // frac has at most 3 digits, so padding to 3 and parsing cannot fail
        // except on empty, handled by the default.
        let frac_millis: u64 = format!("{frac:0<3}").parse().unwrap_or(0);
        whole
            .checked_mul(1000)
            .and_then(|w| w.checked_add(frac_millis))
            .ok_or_else(|| "number too large".to_owned())?
    };
    if millis == 0 {
        return Err("must be greater than 0".into());
    }
    Ok(millis)
}

/// A numeric id (uid or gid).
fn parse_id(s: &str, what: &str) -> Result<u32, String> {
    s.parse::<u32>().map_err(|_| {
        format!(
            "{what} must be numeric (names are not resolved: this host's user database says nothing about the sandbox's)"
        )
    })
}

/// `UID[:GID]` plus supplementary groups, to a `User`; `None` when nothing
/// was given (the daemon's unprivileged default applies).
pub(crate) fn parse_user(user: Option<&str>, groups: &[String]) -> Result<Option<User>, CliError> {
    let mut out = User::default();
    if let Some(u) = user {
        let (uid, gid) = match u.split_once(':') {
            Some((uid, gid)) => (uid, Some(gid)),
            None => (u, None),
        };
        out.uid = Some(with_flag("--user", u, |_| parse_id(uid, "UID"))?);
        if let Some(gid) = gid {
            out.gid = Some(with_flag("--user", u, |_| parse_id(gid, "GID"))?);
        }
    }
    for g in groups {
        out.additional_gids
            .push(with_flag("--group", g, |g| parse_id(g, "GID"))?);
    }
    if user.is_none() && groups.is_empty() {
        return Ok(None);
    }
    Ok(Some(out))
}

/// `KEY=VALUE` entries; a bare `KEY` takes the local value (docker's
/// behaviour), and is an error if unset rather than silently dropped.
pub(crate) fn parse_env(
    entries: &[String],
    lookup: EnvLookup<'_>,
) -> Result<Vec<String>, CliError> {
    entries
        .iter()
        .map(|e| match e.split_once('=') {
            Some(("", _)) => Err(flag_err("--env", e, "empty variable name")),
            Some(_) => Ok(e.clone()),
            None if e.is_empty() => Err(flag_err("--env", e, "expected KEY=VALUE")),
            None => lookup(e).map(|v| format!("{e}={v}")).ok_or_else(|| {
                flag_err(
                    "--env",
                    e,
                    "not set in the local environment (use KEY=VALUE)",
                )
            }),
        })
        .collect()
}

/// `SRC:DST[:ro|:rw]`, both absolute.
/// `--join ID[:KINDS]`: the parent's id and the namespaces shared with it
/// (`network`, `ipc`, `uts`, `pid`, comma-separated; without a list:
/// network, ipc and uts, the namespaces every pod container shares).
pub(crate) fn parse_join(s: &str) -> Result<SandboxJoin, String> {
    let (id, kinds) = s.split_once(':').unwrap_or((s, "network,ipc,uts"));
    if !sandboxd_core::validate::is_id(id) {
        return Err(format!(
            "{id:?} is not a sandbox id (16 lowercase hex characters)"
        ));
    }
    let mut join = SandboxJoin {
        sandbox_id: id.to_owned(),
        ..Default::default()
    };
    for kind in kinds.split(',') {
        match kind {
            "network" => join.network = true,
            "ipc" => join.ipc = true,
            "uts" => join.uts = true,
            "pid" => join.pid = true,
            other => {
                return Err(format!(
                    "unknown namespace {other:?} (network, ipc, uts or pid)"
                ));
            }
        }
    }
    Ok(join)
}

pub(crate) fn parse_mount(s: &str) -> Result<Mount, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let (source, target, read_only) = match parts.as_slice() {
        [src, dst] => (*src, *dst, false),
        [src, dst, "ro"] => (*src, *dst, true),
        [src, dst, "rw"] => (*src, *dst, false),
        [_, _, opt] => return Err(format!("unknown option {opt:?} (use ro or rw)")),
        _ => return Err("expected SRC:DST or SRC:DST:ro".into()),
    };
    check_absolute_path(source).map_err(|reason| format!("the source {reason}"))?;
    check_absolute_path(target).map_err(|reason| format!("the target {reason}"))?;
    Ok(Mount {
        source: source.into(),
        target: target.into(),
        read_only,
    })
}

/// `KEY=VALUE` labels; a key given twice is an error (which one was meant?).
pub(crate) fn parse_labels(entries: &[String]) -> Result<HashMap<String, String>, CliError> {
    let mut labels = HashMap::new();
    for e in entries {
        let Some((k, v)) = e.split_once('=') else {
            return Err(flag_err("--label", e, "expected KEY=VALUE"));
        };
        check_label_key(k)
            .and_then(|()| check_label_value(v))
            .map_err(|reason| flag_err("--label", e, reason))?;
        if labels.insert(k.to_owned(), v.to_owned()).is_some() {
            return Err(flag_err("--label", e, format!("key {k:?} given twice")));
        }
    }
    Ok(labels)
}

/// `HOST_PORT:SANDBOX_PORT[/tcp|/udp]` (docker's `-p` without a host
/// address: the daemon forwards on all of the host's addresses).
pub(crate) fn parse_publish(s: &str) -> Result<PortForward, String> {
    const SYNTAX: &str = "expected HOST_PORT:SANDBOX_PORT[/tcp|/udp], e.g. 8080:80";
    let (ports, protocol) = match s.split_once('/') {
        None => (s, Protocol::Tcp),
        Some((ports, proto)) => match proto.to_ascii_lowercase().as_str() {
            "tcp" => (ports, Protocol::Tcp),
            "udp" => (ports, Protocol::Udp),
            _ => return Err(format!("unknown protocol {proto:?} (use tcp or udp)")),
        },
    };
    let parts: Vec<&str> = ports.split(':').collect();
    let (host, sandbox) = match parts.as_slice() {
        [host, sandbox] => (*host, *sandbox),
        [_, _, _] => {
            return Err(format!(
                "{SYNTAX} (no host address: forwards listen on all of the host's addresses)"
            ));
        }
        _ => return Err(SYNTAX.into()),
    };
    let port = |p: &str, which: &str| {
        // Digits only: `parse` would also take a leading `+`.
        let n = Some(p)
            .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse::<u32>().ok())
            .ok_or_else(|| format!("the {which} port must be a number from 1 to 65535"))?;
        check_port(n).map_err(|reason| format!("the {which} port: {reason}"))?;
        Ok::<_, String>(n)
    };
    Ok(PortForward {
        protocol: protocol as i32,
        host_port: port(host, "host")?,
        sandbox_port: port(sandbox, "sandbox")?,
    })
}

/// An IPv4/IPv6 address, in its canonical form.
fn parse_ip(s: &str) -> Result<String, String> {
    s.parse::<IpAddr>()
        .map(|ip| ip.to_string())
        .map_err(|_| "not an IPv4 or IPv6 address".to_owned())
}

/// A search domain (the daemon's rule, here so the error names the flag).
fn parse_domain(s: &str) -> Result<String, String> {
    check_domain_name(s)?;
    Ok(s.to_owned())
}

/// The reason for a RESTRICTED-only flag given with another mode.
const RESTRICTED_ONLY: &str = "only applies to --network restricted";

/// `--network MODE`, or `ns:PATH` (podman's spelling) for mode NAMESPACE:
/// an existing network namespace, which the daemon accepts only below its
/// `--allow-netns-source` directories.
fn parse_network_mode(s: &str) -> Result<(NetworkMode, String), String> {
    if let Some(path) = s.strip_prefix("ns:") {
        if !path.starts_with('/') {
            return Err("ns:PATH needs an absolute path".into());
        }
        return Ok((NetworkMode::Namespace, path.to_owned()));
    }
    let mode = match s.to_ascii_lowercase().as_str() {
        "none" => NetworkMode::None,
        "loopback" => NetworkMode::Loopback,
        "host" => NetworkMode::Host,
        "restricted" => NetworkMode::Restricted,
        _ => return Err("expected none, loopback, host, restricted or ns:PATH".into()),
    };
    Ok((mode, String::new()))
}

/// The network flags to a policy; `None` if none was given. `--address`,
/// `--nat` and `--publish` select RESTRICTED (and refuse another mode);
/// `--dns`/`--dns-search` alone leave the mode to the backend.
pub(crate) fn parse_network(f: &NetworkFlags) -> Result<Option<NetworkPolicy>, CliError> {
    let restricted_only = !f.addresses.is_empty() || f.nat || !f.publish.is_empty();
    let (mode, namespace_path) = match f.network.as_deref() {
        Some(m) => with_flag("--network", m, parse_network_mode)?,
        None if restricted_only => (NetworkMode::Restricted, String::new()),
        None if f.dns.is_empty() && f.dns_search.is_empty() => return Ok(None),
        None => (NetworkMode::Unspecified, String::new()),
    };
    if mode != NetworkMode::Restricted {
        if let Some(a) = f.addresses.first() {
            return Err(flag_err("--address", a, RESTRICTED_ONLY));
        }
        if f.nat {
            return Err(CliError::Usage(format!("--nat: {RESTRICTED_ONLY}")));
        }
        if let Some(p) = f.publish.first() {
            return Err(flag_err("--publish", p, RESTRICTED_ONLY));
        }
    }
    let addresses = f
        .addresses
        .iter()
        .map(|a| with_flag("--address", a, parse_ip))
        .collect::<Result<_, _>>()?;
    let mut port_forwards: Vec<PortForward> = Vec::with_capacity(f.publish.len());
    for p in &f.publish {
        let fwd = with_flag("--publish", p, parse_publish)?;
        // One host port and protocol can go to one place only.
        if port_forwards
            .iter()
            .any(|o| (o.host_port, o.protocol) == (fwd.host_port, fwd.protocol))
        {
            let proto = if fwd.protocol == Protocol::Udp as i32 {
                "udp"
            } else {
                "tcp"
            };
            return Err(flag_err(
                "--publish",
                p,
                format!("host port {}/{proto} is published twice", fwd.host_port),
            ));
        }
        port_forwards.push(fwd);
    }
    let mut dns_servers = Vec::with_capacity(f.dns.len());
    for (i, d) in f.dns.iter().enumerate() {
        if i == MAX_DNS_SERVERS {
            return Err(flag_err(
                "--dns",
                d,
                format!("at most {MAX_DNS_SERVERS} nameservers (resolv.conf's limit)"),
            ));
        }
        dns_servers.push(with_flag("--dns", d, parse_ip)?);
    }
    let mut dns_search = Vec::with_capacity(f.dns_search.len());
    for (i, d) in f.dns_search.iter().enumerate() {
        if f.dns.is_empty() {
            return Err(flag_err("--dns-search", d, "needs --dns IP too"));
        }
        if i == MAX_DNS_SEARCH {
            return Err(flag_err(
                "--dns-search",
                d,
                format!("at most {MAX_DNS_SEARCH} search domains (resolv.conf's limit)"),
            ));
        }
        dns_search.push(with_flag("--dns-search", d, parse_domain)?);
    }
    Ok(Some(NetworkPolicy {
        mode: mode as i32,
        requirement: Requirement::Unspecified as i32,
        addresses,
        outbound_nat: f.nat,
        port_forwards,
        dns_servers,
        dns_search,
        namespace_path,
    }))
}

/// Signal names accepted for `--stop-signal`/`--signal`: only those whose
/// number is the same on Linux and FreeBSD, because the number is resolved
/// here and the daemon may run on the other OS. Others go by number.
const PORTABLE_SIGNALS: &[(&str, u32)] = &[
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("FPE", 8),
    ("KILL", 9),
    ("SEGV", 11),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
];

/// A signal as a number (the daemon's range) or a portable name with or
/// without `SIG`.
pub(crate) fn parse_signal(s: &str) -> Result<u32, String> {
    if let Ok(n) = s.parse::<u32>() {
        return check_signal(n).map(|()| n);
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    PORTABLE_SIGNALS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            "unknown signal; names accepted are those numbered alike on Linux and FreeBSD \
         (HUP INT QUIT ILL TRAP ABRT FPE KILL SEGV PIPE ALRM TERM), others by number"
                .into()
        })
}

/// `process|init|idle`.
pub(crate) fn parse_mode(s: &str) -> Result<SandboxMode, String> {
    match s.to_ascii_lowercase().as_str() {
        "process" => Ok(SandboxMode::Process),
        "init" => Ok(SandboxMode::Init),
        "idle" => Ok(SandboxMode::Idle),
        _ => Err("expected process, init or idle".into()),
    }
}

/// Something `--require/--prefer/--disable` can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prop {
    Filesystem,
    Pid,
    Hostname,
    Ipc,
    User,
    Cgroup,
    Network,
    Memory,
    Pids,
    Cpu,
    CpuWeight,
    Nofile,
    AddressSpace,
    Disk,
}

/// A property name: the short flag-style names, or the proto names
/// (`MEMORY_LIMIT`, `memory-limit`) so what `caps` prints can be pasted back.
fn parse_prop(s: &str) -> Result<Prop, String> {
    let norm = s.to_ascii_lowercase().replace('_', "-");
    Ok(match norm.as_str() {
        "filesystem" | "fs" => Prop::Filesystem,
        "pid" => Prop::Pid,
        "hostname" => Prop::Hostname,
        "ipc" => Prop::Ipc,
        "user" => Prop::User,
        "cgroup" => Prop::Cgroup,
        "network" => Prop::Network,
        "memory" | "memory-limit" => Prop::Memory,
        "pids" | "pids-limit" => Prop::Pids,
        "cpu" | "cpus" | "cpu-limit" => Prop::Cpu,
        "cpu-weight" => Prop::CpuWeight,
        "nofile" | "open-files" | "open-files-limit" => Prop::Nofile,
        "address-space" | "address-space-limit" => Prop::AddressSpace,
        "disk" | "disk-limit" => Prop::Disk,
        _ => {
            return Err(
                "unknown property (one of filesystem pid hostname ipc user cgroup network \
                        memory pids cpu cpu-weight nofile address-space disk)"
                    .into(),
            );
        }
    })
}

impl Prop {
    /// The flag that sets this limit or policy, for error messages.
    fn value_flag(self) -> Option<&'static str> {
        match self {
            Prop::Network => Some("--network MODE"),
            Prop::Memory => Some("--memory SIZE"),
            Prop::Pids => Some("--pids N"),
            Prop::Cpu => Some("--cpus CPUS"),
            Prop::CpuWeight => Some("--cpu-weight N"),
            Prop::Nofile => Some("--nofile N"),
            Prop::AddressSpace => Some("--address-space SIZE"),
            Prop::Disk => Some("--disk SIZE"),
            _ => None,
        }
    }
}

/// Collects the requirement flags into (property, requirement, flag, value),
/// refusing one property asked for two different ways.
fn parse_requirements(
    f: &SpecFlags,
) -> Result<Vec<(Prop, Requirement, &'static str, String)>, CliError> {
    let mut out: Vec<(Prop, Requirement, &'static str, String)> = Vec::new();
    let groups = [
        ("--require", Requirement::Required, &f.require),
        ("--prefer", Requirement::Preferred, &f.prefer),
        ("--disable", Requirement::Disabled, &f.disable),
    ];
    for (flag, req, values) in groups {
        for v in values {
            let prop = with_flag(flag, v, parse_prop)?;
            if let Some((_, _, other_flag, other_value)) =
                out.iter().find(|(p, r, ..)| *p == prop && *r != req)
            {
                return Err(CliError::Usage(format!(
                    "{flag} {v}: conflicts with {other_flag} {other_value}"
                )));
            }
            out.push((prop, req, flag, v.clone()));
        }
    }
    Ok(out)
}

impl ProcessFlags {
    /// True if any process flag was given.
    pub(crate) fn is_set(&self) -> bool {
        !self.env.is_empty() || self.cwd.is_some() || self.user.is_some() || !self.groups.is_empty()
    }

    /// The process to run: `argv` plus these flags.
    pub(crate) fn to_process(
        &self,
        argv: Vec<String>,
        tty: bool,
        lookup: EnvLookup<'_>,
    ) -> Result<ProcessSpec, CliError> {
        let cwd = match &self.cwd {
            Some(c) => {
                check_absolute_path(c).map_err(|reason| flag_err("--cwd", c, reason))?;
                c.clone()
            }
            None => String::new(),
        };
        Ok(ProcessSpec {
            argv,
            env: parse_env(&self.env, lookup)?,
            cwd,
            user: parse_user(self.user.as_deref(), &self.groups)?,
            tty,
        })
    }
}

/// An optional limit flag.
fn limit(
    flag: &str,
    value: Option<&str>,
    parse: fn(&str) -> Result<u64, String>,
) -> Result<Option<Limit>, CliError> {
    value
        .map(|v| {
            with_flag(flag, v, parse).map(|value| Limit {
                value,
                requirement: Requirement::Unspecified as i32,
            })
        })
        .transpose()
}

impl SpecFlags {
    /// Everything but the mode and the main process.
    fn base_spec(&self) -> Result<SandboxSpec, CliError> {
        let checked =
            |flag: &str, value: &Option<String>, check: fn(&str) -> Result<(), String>| {
                value
                    .as_deref()
                    .map(|v| with_flag(flag, v, |v| check(v).map(|()| v.to_owned())))
                    .transpose()
                    .map(Option::unwrap_or_default)
            };
        let name = checked("--name", &self.name, check_sandbox_name)?;
        let image = checked("--image", &self.image, check_image_name)?;
        let hostname = checked("--hostname", &self.hostname, check_hostname_value)?;
        let mut limits = Limits {
            memory_bytes: limit("--memory", self.memory.as_deref(), parse_size)?,
            pids: limit("--pids", self.pids.as_deref(), parse_count)?,
            cpu_millis: limit("--cpus", self.cpus.as_deref(), parse_cpus)?,
            open_files: limit("--nofile", self.nofile.as_deref(), parse_count)?,
            address_space_bytes: limit(
                "--address-space",
                self.address_space.as_deref(),
                parse_size,
            )?,
            disk_bytes: limit("--disk", self.disk.as_deref(), parse_size)?,
            cpu_weight: limit("--cpu-weight", self.cpu_weight.as_deref(), parse_count)?,
            tmp_bytes: self
                .tmp_size
                .as_deref()
                .map(|v| with_flag("--tmp-size", v, parse_size))
                .transpose()?
                .unwrap_or_default(),
            shm_bytes: self
                .shm_size
                .as_deref()
                .map(|v| with_flag("--shm-size", v, parse_size))
                .transpose()?
                .unwrap_or_default(),
        };
        let mut network = parse_network(&self.net)?;
        let mut isolation = Isolation::default();
        let mut any_isolation = false;
        for (prop, req, flag, value) in parse_requirements(self)? {
            let slot = match prop {
                Prop::Filesystem => Some(&mut isolation.filesystem),
                Prop::Pid => Some(&mut isolation.pid),
                Prop::Hostname => Some(&mut isolation.hostname),
                Prop::Ipc => Some(&mut isolation.ipc),
                Prop::User => Some(&mut isolation.user),
                Prop::Cgroup => Some(&mut isolation.cgroup),
                _ => None,
            };
            if let Some(slot) = slot {
                *slot = req as i32;
                any_isolation = true;
                continue;
            }
            if req == Requirement::Disabled {
                let reason = if prop == Prop::Network {
                    "to share the host's network use --network host".to_owned()
                } else {
                    format!(
                        "a limit cannot be disabled; leave out {}",
                        prop.value_flag().unwrap_or("its flag")
                    )
                };
                return Err(flag_err(flag, &value, reason));
            }
            let target = match prop {
                // A policy with only --dns has no mode to require.
                Prop::Network => network
                    .as_mut()
                    .filter(|n| n.mode != NetworkMode::Unspecified as i32)
                    .map(|n| &mut n.requirement),
                Prop::Memory => limits.memory_bytes.as_mut().map(|l| &mut l.requirement),
                Prop::Pids => limits.pids.as_mut().map(|l| &mut l.requirement),
                Prop::Cpu => limits.cpu_millis.as_mut().map(|l| &mut l.requirement),
                Prop::CpuWeight => limits.cpu_weight.as_mut().map(|l| &mut l.requirement),
                Prop::Nofile => limits.open_files.as_mut().map(|l| &mut l.requirement),
                Prop::AddressSpace => limits
                    .address_space_bytes
                    .as_mut()
                    .map(|l| &mut l.requirement),
                Prop::Disk => limits.disk_bytes.as_mut().map(|l| &mut l.requirement),
                // Namespace-like properties were handled above.
                _ => None,
            };
            match target {
                Some(t) => *t = req as i32,
                None => {
                    return Err(flag_err(
                        flag,
                        &value,
                        format!(
                            "needs {} too",
                            prop.value_flag().unwrap_or("its value flag")
                        ),
                    ));
                }
            }
        }
        if self.hostname.is_some() && isolation.hostname == Requirement::Disabled as i32 {
            return Err(CliError::Usage(
                "--disable hostname: conflicts with --hostname".into(),
            ));
        }
        let stop_signal = match &self.stop_signal {
            Some(s) => with_flag("--stop-signal", s, parse_signal)?,
            None => 0,
        };
        let mounts = self
            .mounts
            .iter()
            .map(|m| with_flag("--mount", m, parse_mount))
            .collect::<Result<_, _>>()?;
        let any_limit = limits.memory_bytes.is_some()
            || limits.pids.is_some()
            || limits.cpu_millis.is_some()
            || limits.cpu_weight.is_some()
            || limits.open_files.is_some()
            || limits.address_space_bytes.is_some()
            || limits.disk_bytes.is_some()
            || limits.tmp_bytes != 0
            || limits.shm_bytes != 0;
        Ok(SandboxSpec {
            name,
            image,
            mode: SandboxMode::Unspecified as i32,
            process: None,
            hostname,
            isolation: any_isolation.then_some(isolation),
            network,
            limits: any_limit.then_some(limits),
            mounts,
            labels: parse_labels(&self.labels)?,
            readonly_rootfs: self.readonly,
            stop_signal,
            logs: (self.log_max_size.is_some() || self.log_max_files.is_some())
                .then(|| {
                    Ok::<_, CliError>(sandboxd_proto::v1::LogLimits {
                        max_file_bytes: self
                            .log_max_size
                            .as_deref()
                            .map(|v| with_flag("--log-max-size", v, parse_size))
                            .transpose()?
                            .unwrap_or(0),
                        max_files: self.log_max_files.unwrap_or(0),
                    })
                })
                .transpose()?,
            join: self
                .join
                .as_deref()
                .map(|j| with_flag("--join", j, parse_join))
                .transpose()?,
            ..Default::default()
        })
    }

    /// The explicit `--mode`, parsed.
    fn mode(&self) -> Result<Option<SandboxMode>, CliError> {
        self.mode
            .as_deref()
            .map(|m| with_flag("--mode", m, parse_mode))
            .transpose()
    }

    /// The spec for `create` and `plan`: the mode defaults to PROCESS with a
    /// command and IDLE without; the command and process flags become the
    /// main process.
    pub(crate) fn create_spec(
        &self,
        argv: &[String],
        lookup: EnvLookup<'_>,
    ) -> Result<SandboxSpec, CliError> {
        let mut spec = self.base_spec()?;
        let mode = match self.mode()? {
            Some(m) => m,
            None if argv.is_empty() => SandboxMode::Idle,
            None => SandboxMode::Process,
        };
        match mode {
            SandboxMode::Idle if !argv.is_empty() => {
                return Err(CliError::Usage(
                    "--mode idle: an idle sandbox has no main process; drop the command after -- \
                     and start it with `sandboxctl exec`"
                        .into(),
                ));
            }
            SandboxMode::Idle if self.process.is_set() => {
                return Err(CliError::Usage(
                    "--env/--cwd/--user/--group describe a main process, which an idle sandbox \
                     does not have; pass them to `sandboxctl exec` instead"
                        .into(),
                ));
            }
            SandboxMode::Process | SandboxMode::Unspecified if argv.is_empty() => {
                return Err(CliError::Usage(
                    "--mode process: needs a command after --".into(),
                ));
            }
            _ => {}
        }
        // INIT with neither command nor process flags leaves the process
        // unset so the daemon's default (/sbin/init) applies.
        if mode != SandboxMode::Idle && (!argv.is_empty() || self.process.is_set()) {
            spec.process = Some(self.process.to_process(argv.to_vec(), false, lookup)?);
        }
        spec.mode = mode as i32;
        Ok(spec)
    }

    /// The spec for `run`: IDLE (or INIT with --mode init) without a main
    /// process; the command is exec'd into it so its stdio can be attached.
    pub(crate) fn run_spec(&self) -> Result<SandboxSpec, CliError> {
        let mut spec = self.base_spec()?;
        let mode = match self.mode()? {
            Some(SandboxMode::Init) => SandboxMode::Init,
            // PROCESS is accepted and run like IDLE: the daemon discards a
            // main process's stdio, so `run` must exec to attach it.
            _ => SandboxMode::Idle,
        };
        spec.mode = mode as i32;
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn usage(r: Result<impl std::fmt::Debug, CliError>) -> String {
        match r {
            Err(CliError::Usage(m)) => m,
            other => format!("not a usage error: {other:?}"),
        }
    }

    #[test]
    fn joins() {
        const ID: &str = "0123456789abcdef";
        let j = |network, ipc, uts, pid| {
            Ok(SandboxJoin {
                sandbox_id: ID.into(),
                network,
                ipc,
                uts,
                pid,
            })
        };
        let cases: Vec<(String, Result<SandboxJoin, &str>)> = vec![
            (ID.into(), j(true, true, true, false)),
            (format!("{ID}:network"), j(true, false, false, false)),
            (format!("{ID}:ipc,uts"), j(false, true, true, false)),
            (format!("{ID}:network,pid"), j(true, false, false, true)),
            (
                format!("{ID}:user"),
                Err("unknown namespace \"user\" (network, ipc, uts or pid)"),
            ),
            (
                "my-pod".into(),
                Err("\"my-pod\" is not a sandbox id (16 lowercase hex characters)"),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse_join(&input), want.map_err(String::from), "{input}");
        }
    }

    #[test]
    fn sizes() {
        let cases: &[(&str, Result<u64, &str>)] = &[
            ("64M", Ok(64 << 20)),
            ("64m", Ok(64 << 20)),
            ("64MiB", Ok(64 << 20)),
            ("64MB", Ok(64 << 20)),
            ("1G", Ok(1 << 30)),
            ("2t", Ok(2 << 40)),
            ("4096", Ok(4096)),
            ("10k", Ok(10 << 10)),
            ("0", Err("must be greater than 0")),
            (
                "",
                Err("expected a number with an optional K, M, G or T suffix, e.g. 512M"),
            ),
            (
                "M",
                Err("expected a number with an optional K, M, G or T suffix, e.g. 512M"),
            ),
            (
                "1.5G",
                Err("unknown size suffix \".5G\" (use K, M, G or T)"),
            ),
            ("64X", Err("unknown size suffix \"X\" (use K, M, G or T)")),
            (
                "-1",
                Err("expected a number with an optional K, M, G or T suffix, e.g. 512M"),
            ),
            ("99999999999T", Err("size too large")),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse_size(input).as_ref().map_err(String::as_str),
                want.as_ref().map_err(|e| *e),
                "{input:?}"
            );
        }
    }

    #[test]
    fn cpus_and_counts() {
        let cpus: &[(&str, Option<u64>)] = &[
            ("0.5", Some(500)),
            (".5", Some(500)),
            ("2", Some(2000)),
            ("1.25", Some(1250)),
            ("0.001", Some(1)),
            ("0.3", Some(300)),
            ("500m", Some(500)),
            ("0.0005", None),
            ("0", None),
            ("0m", None),
            ("1.", Some(1000)),
            (".", None),
            ("a", None),
            ("-1", None),
            ("m", None),
        ];
        for (input, want) in cpus {
            assert_eq!(parse_cpus(input).ok(), *want, "{input:?}");
        }
        assert_eq!(parse_count("42"), Ok(42));
        assert!(parse_count("0").is_err());
        assert!(parse_count("1k").is_err());
    }

    #[test]
    fn users() {
        let u = |s: Option<&str>, g: &[&str]| {
            parse_user(s, &g.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>())
        };
        assert_eq!(u(None, &[]).ok(), Some(None));
        assert_eq!(
            u(Some("1000"), &[]).ok(),
            Some(Some(User {
                uid: Some(1000),
                gid: None,
                additional_gids: vec![]
            }))
        );
        assert_eq!(
            u(Some("1000:100"), &["10", "20"]).ok(),
            Some(Some(User {
                uid: Some(1000),
                gid: Some(100),
                additional_gids: vec![10, 20]
            }))
        );
        assert_eq!(
            u(None, &["5"]).ok(),
            Some(Some(User {
                uid: None,
                gid: None,
                additional_gids: vec![5]
            }))
        );
        assert!(usage(u(Some("alice"), &[])).starts_with("--user alice: UID must be numeric"));
        assert!(usage(u(Some("1:x"), &[])).starts_with("--user 1:x: GID must be numeric"));
        assert!(usage(u(Some(":1"), &[])).starts_with("--user :1: UID must be numeric"));
        assert!(usage(u(None, &["wheel"])).starts_with("--group wheel: GID must be numeric"));
    }

    #[test]
    fn env_entries() {
        let lookup = |k: &str| (k == "HOME").then(|| "/home/me".to_owned());
        let e = |v: &[&str]| {
            parse_env(
                &v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>(),
                &lookup,
            )
        };
        assert_eq!(
            e(&["A=1", "B=", "C=x=y"]).ok(),
            Some(vec!["A=1".into(), "B=".into(), "C=x=y".into()])
        );
        assert_eq!(e(&["HOME"]).ok(), Some(vec!["HOME=/home/me".into()]));
        assert_eq!(
            usage(e(&["NOPE"])),
            "--env NOPE: not set in the local environment (use KEY=VALUE)"
        );
        assert_eq!(usage(e(&["=1"])), "--env =1: empty variable name");
        assert_eq!(usage(e(&[""])), "--env \"\": expected KEY=VALUE");
    }

    #[test]
    fn mounts() {
        let m = |s, d, ro| {
            Ok(Mount {
                source: String::from(s),
                target: String::from(d),
                read_only: ro,
            })
        };
        let cases: Vec<(&str, Result<Mount, String>)> = vec![
            ("/srv/data:/data", m("/srv/data", "/data", false)),
            ("/srv/data:/data:ro", m("/srv/data", "/data", true)),
            ("/srv/data:/data:rw", m("/srv/data", "/data", false)),
            (
                "/srv/data:/data:rx",
                Err("unknown option \"rx\" (use ro or rw)".into()),
            ),
            ("/srv/data", Err("expected SRC:DST or SRC:DST:ro".into())),
            ("a:b:c:d", Err("expected SRC:DST or SRC:DST:ro".into())),
            // Absolute and normal is core's rule, in core's words.
            (
                "data:/data",
                Err("the source \"data\" is not an absolute path".into()),
            ),
            (
                "/data:data",
                Err("the target \"data\" is not an absolute path".into()),
            ),
            (
                "/srv/../etc:/data",
                Err("the source \"/srv/../etc\" must not contain '.' or '..' components".into()),
            ),
            (
                "/srv/data:/data/",
                Err("the target \"/data/\" has empty components".into()),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse_mount(input), want, "{input:?}");
        }
    }

    #[test]
    fn labels() {
        let l = |v: &[&str]| parse_labels(&v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>());
        let got = l(&["app=web", "tier="]).ok();
        assert_eq!(
            got.as_ref().and_then(|m| m.get("app")).map(String::as_str),
            Some("web")
        );
        assert_eq!(
            got.as_ref().and_then(|m| m.get("tier")).map(String::as_str),
            Some("")
        );
        assert_eq!(usage(l(&["app"])), "--label app: expected KEY=VALUE");
        assert_eq!(
            usage(l(&["=x"])),
            "--label =x: key \"\" must be 1-63 characters of [A-Za-z0-9._/-]"
        );
        assert_eq!(
            usage(l(&["a b=x"])),
            "--label \"a b=x\": key \"a b\" must be 1-63 characters of [A-Za-z0-9._/-]"
        );
        assert_eq!(
            usage(l(&["a=\u{7}"])),
            "--label a=\u{7}: value must be at most 255 characters with no control characters"
        );
        assert_eq!(
            usage(l(&["a=1", "a=2"])),
            "--label a=2: key \"a\" given twice"
        );
    }

    #[test]
    fn publish_values() {
        let fwd = |proto: Protocol, host, sandbox| {
            Ok(PortForward {
                protocol: proto as i32,
                host_port: host,
                sandbox_port: sandbox,
            })
        };
        const SYNTAX: &str = "expected HOST_PORT:SANDBOX_PORT[/tcp|/udp], e.g. 8080:80";
        let cases: Vec<(&str, Result<PortForward, String>)> = vec![
            ("8080:80", fwd(Protocol::Tcp, 8080, 80)),
            ("8080:80/tcp", fwd(Protocol::Tcp, 8080, 80)),
            ("5353:53/udp", fwd(Protocol::Udp, 5353, 53)),
            ("5353:53/UDP", fwd(Protocol::Udp, 5353, 53)),
            ("1:65535", fwd(Protocol::Tcp, 1, 65535)),
            ("8080", Err(SYNTAX.into())),
            ("8080/udp", Err(SYNTAX.into())),
            ("", Err(SYNTAX.into())),
            (
                "127.0.0.1:8080:80",
                Err(format!(
                    "{SYNTAX} (no host address: forwards listen on all of the host's addresses)"
                )),
            ),
            (
                "8080:80/sctp",
                Err("unknown protocol \"sctp\" (use tcp or udp)".into()),
            ),
            (
                "8080:80/",
                Err("unknown protocol \"\" (use tcp or udp)".into()),
            ),
            // In range is core's rule, in core's words.
            (
                "0:80",
                Err("the host port: 0 is not a port (1..65535)".into()),
            ),
            (
                "65536:80",
                Err("the host port: 65536 is not a port (1..65535)".into()),
            ),
            (
                "+80:80",
                Err("the host port must be a number from 1 to 65535".into()),
            ),
            (
                ":80",
                Err("the host port must be a number from 1 to 65535".into()),
            ),
            (
                "8080:0",
                Err("the sandbox port: 0 is not a port (1..65535)".into()),
            ),
            (
                "8080:http",
                Err("the sandbox port must be a number from 1 to 65535".into()),
            ),
            (
                "8080:",
                Err("the sandbox port must be a number from 1 to 65535".into()),
            ),
            (
                "8000-8010:80",
                Err("the host port must be a number from 1 to 65535".into()),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse_publish(input), want, "{input:?}");
        }
    }

    /// Flags as (flag, value) pairs; the value is ignored for `--nat`.
    type FlagArgs<'a> = &'a [(&'a str, &'a str)];

    /// Network flags from (flag, value) pairs, as clap would collect them.
    fn net(args: FlagArgs<'_>) -> NetworkFlags {
        let mut f = NetworkFlags::default();
        for (flag, value) in args {
            let v = (*value).to_owned();
            match *flag {
                "--network" => f.network = Some(v),
                "--address" => f.addresses.push(v),
                "--nat" => f.nat = true,
                "--publish" => f.publish.push(v),
                "--dns" => f.dns.push(v),
                "--dns-search" => f.dns_search.push(v),
                other => panic!("unknown flag {other}"),
            }
        }
        f
    }

    #[test]
    fn networks() {
        let restricted = NetworkPolicy {
            mode: NetworkMode::Restricted as i32,
            ..NetworkPolicy::default()
        };
        let tcp = |host, sandbox| PortForward {
            protocol: Protocol::Tcp as i32,
            host_port: host,
            sandbox_port: sandbox,
        };
        let good: Vec<(FlagArgs<'_>, Option<NetworkPolicy>)> = vec![
            (&[], None),
            (
                &[("--network", "none")],
                Some(NetworkPolicy {
                    mode: NetworkMode::None as i32,
                    ..NetworkPolicy::default()
                }),
            ),
            (
                &[("--network", "Loopback")],
                Some(NetworkPolicy {
                    mode: NetworkMode::Loopback as i32,
                    ..NetworkPolicy::default()
                }),
            ),
            (
                &[("--network", "host")],
                Some(NetworkPolicy {
                    mode: NetworkMode::Host as i32,
                    ..NetworkPolicy::default()
                }),
            ),
            // No --address: the daemon leases one from its pool.
            (&[("--network", "restricted")], Some(restricted.clone())),
            (
                &[("--network", "ns:/var/run/netns/cni-1")],
                Some(NetworkPolicy {
                    mode: NetworkMode::Namespace as i32,
                    namespace_path: "/var/run/netns/cni-1".into(),
                    ..NetworkPolicy::default()
                }),
            ),
            (
                &[
                    ("--network", "restricted"),
                    ("--address", "192.0.2.1"),
                    ("--address", "2001:db8:0::1"),
                ],
                Some(NetworkPolicy {
                    addresses: strings(&["192.0.2.1", "2001:db8::1"]),
                    ..restricted.clone()
                }),
            ),
            (
                &[("--address", "198.51.100.7")],
                Some(NetworkPolicy {
                    addresses: strings(&["198.51.100.7"]),
                    ..restricted.clone()
                }),
            ),
            // --nat and --publish select RESTRICTED on their own.
            (
                &[("--nat", "")],
                Some(NetworkPolicy {
                    outbound_nat: true,
                    ..restricted.clone()
                }),
            ),
            (
                &[
                    ("--publish", "8080:80"),
                    ("--publish", "8080:80/udp"),
                    ("--publish", "8443:443/tcp"),
                ],
                Some(NetworkPolicy {
                    port_forwards: vec![
                        tcp(8080, 80),
                        PortForward {
                            protocol: Protocol::Udp as i32,
                            ..tcp(8080, 80)
                        },
                        tcp(8443, 443),
                    ],
                    ..restricted.clone()
                }),
            ),
            (
                &[
                    ("--network", "RESTRICTED"),
                    ("--nat", ""),
                    ("--publish", "2222:22"),
                    ("--address", "203.0.113.2"),
                ],
                Some(NetworkPolicy {
                    addresses: strings(&["203.0.113.2"]),
                    outbound_nat: true,
                    port_forwards: vec![tcp(2222, 22)],
                    ..restricted.clone()
                }),
            ),
            // DNS alone leaves the mode to the backend; with a mode, any mode.
            (
                &[("--dns", "192.0.2.53")],
                Some(NetworkPolicy {
                    dns_servers: strings(&["192.0.2.53"]),
                    ..NetworkPolicy::default()
                }),
            ),
            (
                &[
                    ("--network", "host"),
                    ("--dns", "192.0.2.53"),
                    ("--dns", "2001:DB8::53"),
                    ("--dns", "198.51.100.53"),
                    ("--dns-search", "example.com"),
                    ("--dns-search", "corp.example.org."),
                ],
                Some(NetworkPolicy {
                    mode: NetworkMode::Host as i32,
                    dns_servers: strings(&["192.0.2.53", "2001:db8::53", "198.51.100.53"]),
                    dns_search: strings(&["example.com", "corp.example.org."]),
                    ..NetworkPolicy::default()
                }),
            ),
        ];
        for (args, want) in good {
            assert_eq!(parse_network(&net(args)).ok(), Some(want), "{args:?}");
        }

        let seven_domains: Vec<(&str, &str)> = std::iter::once(("--dns", "192.0.2.53"))
            .chain(["a", "b", "c", "d", "e", "f", "g"].map(|d| ("--dns-search", d)))
            .collect();
        let bad: Vec<(FlagArgs<'_>, &str)> = vec![
            (
                &[("--network", "bridge")],
                "--network bridge: expected none, loopback, host, restricted or ns:PATH",
            ),
            (
                &[("--network", "ns:cni-1")],
                "--network ns:cni-1: ns:PATH needs an absolute path",
            ),
            (
                &[("--network", "ns:/var/run/netns/cni-1"), ("--nat", "")],
                "--nat: only applies to --network restricted",
            ),
            (
                &[("--network", "host"), ("--address", "192.0.2.1")],
                "--address 192.0.2.1: only applies to --network restricted",
            ),
            (
                &[("--network", "loopback"), ("--nat", "")],
                "--nat: only applies to --network restricted",
            ),
            (
                &[("--network", "none"), ("--publish", "8080:80")],
                "--publish 8080:80: only applies to --network restricted",
            ),
            (
                &[("--address", "192.0.2.300")],
                "--address 192.0.2.300: not an IPv4 or IPv6 address",
            ),
            (
                &[("--publish", "8080:0")],
                "--publish 8080:0: the sandbox port: 0 is not a port (1..65535)",
            ),
            (
                &[("--publish", "70000:80/udp")],
                "--publish 70000:80/udp: the host port: 70000 is not a port (1..65535)",
            ),
            (
                &[("--publish", "http")],
                "--publish http: expected HOST_PORT:SANDBOX_PORT[/tcp|/udp], e.g. 8080:80",
            ),
            (
                &[("--publish", "8080:80"), ("--publish", "8080:8080/tcp")],
                "--publish 8080:8080/tcp: host port 8080/tcp is published twice",
            ),
            (
                &[("--dns", "dns.example.com")],
                "--dns dns.example.com: not an IPv4 or IPv6 address",
            ),
            (
                &[
                    ("--dns", "192.0.2.1"),
                    ("--dns", "192.0.2.2"),
                    ("--dns", "192.0.2.3"),
                    ("--dns", "192.0.2.4"),
                ],
                "--dns 192.0.2.4: at most 3 nameservers (resolv.conf's limit)",
            ),
            (
                &[("--dns-search", "example.com")],
                "--dns-search example.com: needs --dns IP too",
            ),
            (
                &seven_domains,
                "--dns-search g: at most 6 search domains (resolv.conf's limit)",
            ),
            (
                &[("--dns", "192.0.2.53"), ("--dns-search", "bad_domain.com")],
                "--dns-search bad_domain.com: \"bad_domain.com\" is not a domain name",
            ),
            (
                &[("--dns", "192.0.2.53"), ("--dns-search", "a..b")],
                "--dns-search a..b: \"a..b\" is not a domain name",
            ),
            (
                &[("--dns", "192.0.2.53"), ("--dns-search", "")],
                "--dns-search \"\": \"\" is not a domain name",
            ),
            (
                &[("--dns", "192.0.2.53"), ("--dns-search", "a b")],
                "--dns-search \"a b\": \"a b\" is not a domain name",
            ),
        ];
        for (args, want) in bad {
            assert_eq!(usage(parse_network(&net(args))), want, "{args:?}");
        }
    }

    #[test]
    fn signals_and_modes() {
        let cases: &[(&str, Option<u32>)] = &[
            ("15", Some(15)),
            ("TERM", Some(15)),
            ("sigint", Some(2)),
            ("SIGKILL", Some(9)),
            ("hup", Some(1)),
            ("USR1", None), // 10 on Linux, 30 on FreeBSD: by number only
            ("0", None),
            ("64", Some(64)),
            ("65", None), // the daemon's range, not FreeBSD's 128
            ("129", None),
            ("", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_signal(input).ok(), *want, "{input:?}");
        }
        assert_eq!(parse_mode("IDLE"), Ok(SandboxMode::Idle));
        assert!(parse_mode("daemon").is_err());
    }

    fn flags(f: impl FnOnce(&mut SpecFlags)) -> SpecFlags {
        let mut s = SpecFlags::default();
        f(&mut s);
        s
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn requirement_flags() {
        // (flags, expected isolation, expected memory requirement, expected network requirement)
        let ok = flags(|f| {
            f.require = strings(&["pid", "IPC", "memory"]);
            f.prefer = strings(&["user", "network", "ADDRESS_SPACE_LIMIT"]);
            f.disable = strings(&["cgroup"]);
            f.memory = Some("64M".into());
            f.address_space = Some("1G".into());
            f.net.network = Some("loopback".into());
        });
        let spec = ok.create_spec(&[], &no_env).ok();
        let iso = spec.as_ref().and_then(|s| s.isolation);
        assert_eq!(
            iso,
            Some(Isolation {
                filesystem: 0,
                pid: 1,
                hostname: 0,
                ipc: 1,
                user: 2,
                cgroup: 3
            })
        );
        let limits = spec.as_ref().and_then(|s| s.limits);
        assert_eq!(
            limits.and_then(|l| l.memory_bytes),
            Some(Limit {
                value: 64 << 20,
                requirement: 1
            })
        );
        assert_eq!(
            limits.and_then(|l| l.address_space_bytes),
            Some(Limit {
                value: 1 << 30,
                requirement: 2
            })
        );
        assert_eq!(limits.and_then(|l| l.pids), None);
        // Storage: --disk with a requirement, --tmp-size and --shm-size.
        let storage = flags(|f| {
            f.prefer = strings(&["disk"]);
            f.disk = Some("256M".into());
            f.tmp_size = Some("32M".into());
            f.shm_size = Some("8M".into());
        })
        .create_spec(&[], &no_env)
        .ok()
        .and_then(|s| s.limits);
        assert_eq!(
            storage.map(|l| (l.disk_bytes, l.tmp_bytes, l.shm_bytes)),
            Some((
                Some(Limit {
                    value: 256 << 20,
                    requirement: 2
                }),
                32 << 20,
                8 << 20
            ))
        );
        assert_eq!(
            spec.as_ref()
                .and_then(|s| s.network.as_ref())
                .map(|n| n.requirement),
            Some(2)
        );
        // --cpu-weight, PREFERRED by its property name.
        let weight = flags(|f| {
            f.prefer = strings(&["cpu-weight"]);
            f.cpu_weight = Some("400".into());
        })
        .create_spec(&[], &no_env)
        .ok()
        .and_then(|s| s.limits)
        .and_then(|l| l.cpu_weight);
        assert_eq!(
            weight,
            Some(Limit {
                value: 400,
                requirement: 2
            })
        );

        let errors: Vec<(SpecFlags, &str)> = vec![
            (
                flags(|f| f.prefer = strings(&["cpu-weight"])),
                "--prefer cpu-weight: needs --cpu-weight N too",
            ),
            (
                flags(|f| f.require = strings(&["memory"])),
                "--require memory: needs --memory SIZE too",
            ),
            (
                flags(|f| f.prefer = strings(&["network"])),
                "--prefer network: needs --network MODE too",
            ),
            (
                flags(|f| {
                    f.disable = strings(&["pids"]);
                    f.pids = Some("10".into());
                }),
                "--disable pids: a limit cannot be disabled; leave out --pids N",
            ),
            (
                // --dns alone sets no mode for the requirement to apply to.
                flags(|f| {
                    f.prefer = strings(&["network"]);
                    f.net.dns = strings(&["192.0.2.53"]);
                }),
                "--prefer network: needs --network MODE too",
            ),
            (
                flags(|f| f.disable = strings(&["network"])),
                "--disable network: to share the host's network use --network host",
            ),
            (
                flags(|f| {
                    f.require = strings(&["pid"]);
                    f.prefer = strings(&["pid"]);
                }),
                "--prefer pid: conflicts with --require pid",
            ),
            (
                flags(|f| f.require = strings(&["mounts"])),
                "--require mounts: unknown property (one of filesystem pid hostname ipc user cgroup network memory pids cpu cpu-weight nofile address-space disk)",
            ),
            (
                flags(|f| {
                    f.hostname = Some("web".into());
                    f.disable = strings(&["hostname"]);
                }),
                "--disable hostname: conflicts with --hostname",
            ),
            (
                flags(|f| f.memory = Some("lots".into())),
                "--memory lots: expected a number with an optional K, M, G or T suffix, e.g. 512M",
            ),
            (
                flags(|f| f.require = strings(&["disk"])),
                "--require disk: needs --disk SIZE too",
            ),
            (
                flags(|f| f.tmp_size = Some("big".into())),
                "--tmp-size big: expected a number with an optional K, M, G or T suffix, e.g. 512M",
            ),
            (
                flags(|f| f.mode = Some("daemon".into())),
                "--mode daemon: expected process, init or idle",
            ),
            (
                flags(|f| f.stop_signal = Some("USR1".into())),
                "--stop-signal USR1: unknown signal; names accepted are those numbered alike on Linux and FreeBSD (HUP INT QUIT ILL TRAP ABRT FPE KILL SEGV PIPE ALRM TERM), others by number",
            ),
            (
                flags(|f| f.mounts = strings(&["x:/y"])),
                "--mount x:/y: the source \"x\" is not an absolute path",
            ),
            // Values the daemon would refuse, refused here in its words.
            (
                flags(|f| f.name = Some("Web".into())),
                "--name Web: \"Web\" is not a valid name: 1-63 characters of [a-z0-9-], not starting or ending with '-'",
            ),
            (
                flags(|f| f.name = Some("0123456789abcdef".into())),
                "--name 0123456789abcdef: \"0123456789abcdef\" looks like a sandbox id; names must not",
            ),
            (
                flags(|f| f.image = Some("../etc".into())),
                "--image ../etc: \"../etc\" is neither a directory image name (1-128 characters of [A-Za-z0-9._-], no leading '.', no '/') nor a valid OCI reference (\"../etc\" is not an image reference: repository components are lowercase [a-z0-9._-] starting and ending with a letter or digit)",
            ),
            (
                flags(|f| f.hostname = Some("web_1".into())),
                "--hostname web_1: \"web_1\" is not a valid hostname (RFC 1123 labels, at most 64 characters)",
            ),
            (
                flags(|f| f.stop_signal = Some("100".into())),
                "--stop-signal 100: 100 is not a signal number (1-64)",
            ),
            (
                flags(|f| f.process.cwd = Some("tmp".into())),
                "--cwd tmp: \"tmp\" is not an absolute path",
            ),
        ];
        for (f, want) in errors {
            let argv = strings(&["/bin/true"]);
            assert_eq!(usage(f.create_spec(&argv, &no_env)), want);
        }
    }

    #[test]
    fn create_modes() {
        let argv = strings(&["/bin/sh", "-c", "echo hi"]);
        // A command without --mode is a PROCESS sandbox running it.
        let spec = flags(|f| {
            f.process.env = strings(&["A=1"]);
            f.process.user = Some("1000:1000".into());
            f.name = Some("web".into());
            f.readonly = true;
            f.stop_signal = Some("INT".into());
        })
        .create_spec(&argv, &no_env)
        .ok();
        assert_eq!(
            spec.as_ref().map(|s| s.mode),
            Some(SandboxMode::Process as i32)
        );
        assert_eq!(
            spec.as_ref()
                .map(|s| (s.name.as_str(), s.readonly_rootfs, s.stop_signal)),
            Some(("web", true, 2))
        );
        let p = spec.as_ref().and_then(|s| s.process.as_ref());
        assert_eq!(p.map(|p| p.argv.clone()), Some(argv.clone()));
        assert_eq!(p.map(|p| p.env.clone()), Some(strings(&["A=1"])));
        assert_eq!(
            p.and_then(|p| p.user.as_ref()).and_then(|u| u.gid),
            Some(1000)
        );
        assert_eq!(
            spec.as_ref().map(|s| (
                s.isolation.is_none(),
                s.limits.is_none(),
                s.network.is_none()
            )),
            Some((true, true, true))
        );

        // No command: IDLE, no process.
        let idle = SpecFlags::default().create_spec(&[], &no_env).ok();
        assert_eq!(
            idle.as_ref().map(|s| (s.mode, s.process.is_none())),
            Some((SandboxMode::Idle as i32, true))
        );

        // INIT without a command: the daemon's /sbin/init.
        let init = flags(|f| f.mode = Some("init".into()))
            .create_spec(&[], &no_env)
            .ok();
        assert_eq!(
            init.as_ref().map(|s| (s.mode, s.process.is_none())),
            Some((SandboxMode::Init as i32, true))
        );

        let idle_cmd = flags(|f| f.mode = Some("idle".into())).create_spec(&argv, &no_env);
        assert!(usage(idle_cmd).starts_with("--mode idle: an idle sandbox has no main process"));
        let idle_env = flags(|f| f.process.env = strings(&["A=1"])).create_spec(&[], &no_env);
        assert!(usage(idle_env).starts_with("--env/--cwd/--user/--group describe a main process"));
        let process_nothing = flags(|f| f.mode = Some("process".into())).create_spec(&[], &no_env);
        assert_eq!(
            usage(process_nothing),
            "--mode process: needs a command after --"
        );
    }

    #[test]
    fn run_modes() {
        let mode = |m: Option<&str>| {
            flags(|f| f.mode = m.map(str::to_owned))
                .run_spec()
                .ok()
                .map(|s| (s.mode, s.process.is_none()))
        };
        assert_eq!(mode(None), Some((SandboxMode::Idle as i32, true)));
        assert_eq!(
            mode(Some("process")),
            Some((SandboxMode::Idle as i32, true))
        );
        assert_eq!(mode(Some("init")), Some((SandboxMode::Init as i32, true)));
        assert_eq!(mode(Some("idle")), Some((SandboxMode::Idle as i32, true)));
    }
}
