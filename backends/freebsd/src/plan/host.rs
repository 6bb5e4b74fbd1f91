//! What the runtime learns about a FreeBSD host at start-up, and the typical
//! host assumed when planning for FreeBSD from elsewhere.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// ifconfig(8): adds and removes the host aliases of RESTRICTED addresses
/// and of LOOPBACK without VIMAGE.
pub const IFCONFIG: &str = "/sbin/ifconfig";
/// route(8): the probe of the default route's interface (pf's egress).
pub const ROUTE: &str = "/sbin/route";
/// pfctl(8): the probe of pf and its anchors; loads and flushes the
/// sandbox's nat/rdr rules.
pub const PFCTL: &str = "/sbin/pfctl";
/// protocols(5): pfctl resolves `proto tcp`/`proto udp` of the port
/// forwards' rdr rules through it.
pub const PROTOCOLS: &str = "/etc/protocols";

/// The base-system files the backend needs, each for part of the network
/// (the rest of the backend makes system calls). The probe lists the
/// missing ones in [`HostFacts::missing_base_files`].
pub const BASE_FILES: [&str; 4] = [IFCONFIG, ROUTE, PFCTL, PROTOCOLS];

/// What needs each of [`BASE_FILES`], for the capability note.
pub fn needed_for(path: &str) -> &'static str {
    match path {
        IFCONFIG => {
            "adding RESTRICTED addresses as host aliases, and the lo0 alias of LOOPBACK without VIMAGE"
        }
        ROUTE => "finding the default route's interface, where NAT and port forwards apply",
        PFCTL => "probing pf and loading the NAT and port-forward rules",
        PROTOCOLS => "pfctl's parsing of the port forwards' proto tcp/udp",
        _ => "the backend",
    }
}

/// The interface RESTRICTED sandboxes' addresses are added to as aliases
/// when the host has it: a cloned loopback (`cloned_interfaces="lo1"` in
/// rc.conf), the usual home of jail addresses that pf NATs.
pub const DEFAULT_ALIAS_INTERFACE: &str = "lo1";

/// What the runtime probes once at start-up. Plans read nothing else from
/// the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    /// `kern.racct.enable` is 1, so rctl rules are enforced. It is a boot
    /// tunable (`/boot/loader.conf`), off by default.
    pub racct_enabled: bool,
    /// `kern.osrelease`, e.g. "14.1-RELEASE".
    pub os_release: String,
    /// The kernel has VIMAGE (`kern.features.vimage`), so a jail can get its
    /// own network stack (`vnet=new`). In GENERIC since 12.0.
    pub vimage: bool,
    /// The interface a RESTRICTED sandbox's addresses are added to as /32
    /// or /128 aliases before it starts, and removed from on destroy.
    /// `None`: the daemon adds none, and every address must already be
    /// configured on some host interface (checked before the jail starts).
    /// The probe uses [`DEFAULT_ALIAS_INTERFACE`] when it exists.
    pub alias_interface: Option<String>,
    /// pf is enabled and its loaded ruleset holds `nat-anchor "sandboxd/*"`
    /// and `rdr-anchor "sandboxd/*"`, so a per-sandbox anchor's nat and rdr
    /// rules take effect (`pfctl -s info`, `pfctl -s nat`).
    pub pf_anchors: bool,
    /// The interface of the IPv4 default route (`route -n get -inet
    /// default`): where outbound NAT and port forwards apply. `None` when
    /// the host has no default route.
    pub egress_interface: Option<String>,
    /// The running `sandboxd` binary, resolved (`current_exe`, which
    /// FreeBSD answers from `KERN_PROC_PATHNAME`). The supervisor is this
    /// same binary, re-executed. When the `host` image mounts the
    /// directory it lies in, the plan covers it inside the jail. `None`:
    /// unknown, nothing is masked.
    #[serde(default)]
    pub own_binary: Option<PathBuf>,
    /// The [`BASE_FILES`] this host lacks (a minimal install, a container
    /// image). What needs one is refused or degraded naming it, and the
    /// NETWORK row lists them.
    #[serde(default)]
    pub missing_base_files: Vec<String>,
    /// Which of [`SECRET_DIRS`](super::SECRET_DIRS) exist on this host as
    /// directories: the `host` image covers each with an empty read-only
    /// tmpfs (the daemon's TLS key and config live there).
    #[serde(default)]
    pub secret_dirs: Vec<String>,
}

impl HostFacts {
    /// A typical modern host: FreeBSD 14 with racct on, VIMAGE, `lo1`
    /// cloned for jail addresses, pf enabled with the sandboxd anchors in
    /// pf.conf, the default route on `em0`, and sandboxd installed as
    /// `/usr/local/bin/sandboxd` (the port's path). Used when planning for
    /// FreeBSD from a host that is not running the FreeBSD backend
    /// (PlanSandbox on Linux), so the plan shows what a standard host would
    /// do, not this one.
    pub fn assumed() -> Self {
        Self {
            racct_enabled: true,
            os_release: "14.1-RELEASE".to_owned(),
            vimage: true,
            alias_interface: Some(DEFAULT_ALIAS_INTERFACE.to_owned()),
            pf_anchors: true,
            egress_interface: Some("em0".to_owned()),
            own_binary: Some(PathBuf::from("/usr/local/bin/sandboxd")),
            missing_base_files: Vec::new(),
            secret_dirs: vec!["/usr/local/etc/sandboxd".to_owned()],
        }
    }

    /// The probe did not find `path` (one of [`BASE_FILES`]).
    pub fn lacks(&self, path: &str) -> bool {
        self.missing_base_files.iter().any(|m| m == path)
    }

    /// The major version from `os_release` (0 when it cannot be parsed).
    pub fn major_version(&self) -> u32 {
        self.version().0
    }

    /// (major, minor) from `os_release` ((0, 0) when it cannot be parsed).
    fn version(&self) -> (u32, u32) {
        let mut parts = self.os_release.split(['.', '-']);
        let mut next = || parts.next().and_then(|m| m.parse().ok());
        match next() {
            Some(major) => (major, next().unwrap_or(0)),
            None => (0, 0),
        }
    }

    /// `procctl(PROC_NO_NEW_PRIVS_CTL)` exists (FreeBSD 14.0 and later).
    pub fn has_no_new_privs(&self) -> bool {
        self.major_version() >= 14
    }

    /// nullfs can mount a single regular file over another (13.2 and
    /// later), which the generated `/etc/resolv.conf` needs.
    pub fn has_nullfs_file_mounts(&self) -> bool {
        self.version() >= (13, 2)
    }

    /// Outbound NAT and port forwards can be applied: pf has the anchors
    /// and there is an egress interface. `Err` says what is missing.
    pub fn pf_ready(&self) -> Result<&str, &'static str> {
        if self.lacks(PFCTL) {
            return Err("/sbin/pfctl is missing, so pf can be neither probed nor loaded");
        }
        if !self.pf_anchors {
            return Err(
                "pf is not enabled with nat-anchor \"sandboxd/*\" and rdr-anchor \"sandboxd/*\" in pf.conf",
            );
        }
        if self.lacks(ROUTE) {
            return Err("/sbin/route is missing, so the default route's interface is unknown");
        }
        self.egress_interface
            .as_deref()
            .ok_or("the host has no IPv4 default route, so there is no egress interface")
    }

    /// [`Self::pf_ready`] for a spec, which asks for port forwards or not:
    /// their rdr rules name the protocol, which pfctl looks up in
    /// `/etc/protocols`.
    pub fn pf_ready_for(&self, forwards: bool) -> Result<&str, &'static str> {
        let egress = self.pf_ready()?;
        if forwards && self.lacks(PROTOCOLS) {
            return Err(
                "/etc/protocols is missing, so pfctl cannot parse the port forwards' proto tcp/udp",
            );
        }
        Ok(egress)
    }
}
