//! What the runtime learns about a FreeBSD host at start-up, and the typical
//! host assumed when planning for FreeBSD from elsewhere.

use serde::{Deserialize, Serialize};

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
}

impl HostFacts {
    /// A typical modern host: FreeBSD 14 with racct on and VIMAGE. Used when
    /// planning for FreeBSD from a host that is not running the FreeBSD
    /// backend (PlanSandbox on Linux), so the plan shows what a standard host
    /// would do, not this one.
    pub fn assumed() -> Self {
        Self {
            racct_enabled: true,
            os_release: "14.1-RELEASE".to_owned(),
            vimage: true,
        }
    }

    /// The major version from `os_release` (0 when it cannot be parsed).
    pub fn major_version(&self) -> u32 {
        self.os_release
            .split(['.', '-'])
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0)
    }

    /// `procctl(PROC_NO_NEW_PRIVS_CTL)` exists (FreeBSD 14.0 and later).
    pub fn has_no_new_privs(&self) -> bool {
        self.major_version() >= 14
    }
}
