//! The jail's `jail_set(2)` parameters (its network ones come from
//! [`super::network`]).

use std::path::Path;

use sandboxd_core::spec::Requirement;
use sandboxd_core::{SandboxPaths, ValidatedSpec};

use super::network::{self, Net};
use super::{JailParam, Jsys, ParamValue};

/// The devfs ruleset of the jail's /dev: 4 is `devfsrules_jail` from
/// /etc/defaults/devfs.rules, the ruleset jail(8) uses by default. It hides
/// every device, then unhides only null, zero, crypto, random, urandom, ptmx,
/// pts, fd and stdin/stdout/stderr: no disks, no kmem, no bpf.
pub const DEVFS_RULESET: i64 = 4;

pub(super) fn param(name: &str, value: ParamValue) -> JailParam {
    JailParam {
        name: name.to_owned(),
        value,
    }
}

/// The parameters, in order.
pub(super) fn params(
    spec: &ValidatedSpec,
    sandbox: &SandboxPaths,
    rootfs: &Path,
    name: &str,
    net: &Net,
) -> Vec<JailParam> {
    use ParamValue::{Bool, Int, Str};
    let s = spec.spec();
    let jsys = |name: &str, j: Jsys| param(name, ParamValue::Jsys(j));
    let mut p = vec![
        param("path", Str(rootfs.display().to_string())),
        param("name", Str(name.to_owned())),
    ];
    if s.isolation.hostname == Requirement::Disabled {
        p.push(jsys("host", Jsys::Inherit));
    } else {
        let hostname = if s.hostname.is_empty() {
            &sandbox.id
        } else {
            &s.hostname
        };
        p.push(param("host.hostname", Str(hostname.clone())));
    }
    p.extend(network::jail_params(net));
    // Every jail, not only IDLE ones, stays until the supervisor's teardown
    // (or the daemon's cleanup) removes it with jail_remove. The
    // supervisor, not the kernel, decides when a sandbox ends; a jail the
    // kernel removed with its last process would free its jid, another
    // jail could get it, and a later Exec would jail_attach to that one.
    p.push(param("persist", Bool(true)));
    p.extend([
        // Mounts outside the jail's root are invisible to it.
        param("enforce_statfs", Int(2)),
        param("children.max", Int(0)),
        // Cannot be lowered from inside: no raw disk writes, no clock
        // changes, immutable flags stick.
        param("securelevel", Int(2)),
        param("devfs_ruleset", Int(DEVFS_RULESET)),
        param("allow.raw_sockets", Bool(false)),
        param("allow.mount", Bool(false)),
        param("allow.set_hostname", Bool(false)),
        // The legacy switch; the explicit sysv* parameters below decide.
        param("allow.sysvipc", Bool(false)),
    ]);
    let ipc = if s.isolation.ipc == Requirement::Disabled {
        Jsys::Inherit
    } else {
        Jsys::New
    };
    p.extend(["sysvmsg", "sysvsem", "sysvshm"].map(|n| jsys(n, ipc)));
    p
}
