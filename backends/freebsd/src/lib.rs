//! sandboxd's FreeBSD backend: jails (`jail_set`/`jail_attach`/`jail_remove`),
//! `ip4.addr`/`ip6.addr` or vnet networking, rctl limits, nullfs/devfs/tmpfs
//! mounts.
//!
//! [`plan`] is pure: it maps a [`sandboxd_core::ValidatedSpec`] to plain
//! data (jail parameters, mounts, rctl rules, steps) and to an isolation
//! report. [`kernel_args`] turns the plan's values into the arguments the
//! kernel takes (the `jail_set(2)` and `nmount(2)` name/value lists,
//! checked path components, the unmount order) and parses what it answers
//! (sysctl values, racct usage). Both have no `unsafe`, make no system calls,
//! compile on every OS and are unit tested on Linux; `plan` also serves
//! `PlanSandbox` from any host.
//!
//! On FreeBSD, `runtime` executes a [`plan::JailPlan`] in the supervisor
//! helper, `sys` holds every raw system call (the crate's only `unsafe`),
//! and `FreeBsdBackend` implements [`sandboxd_core::Backend`] for the
//! daemon, probing `kern.racct.enable`, `kern.osrelease` and
//! `kern.features.vimage` once at start-up.
//!
//! # Status
//!
//! The runtime is compiled and clippy-checked for `x86_64-unknown-freebsd`
//! in CI, but it is **not run there**: CI has no FreeBSD kernel. Only the
//! pure parts are tested. A FreeBSD user should check these first:
//!
//! 1. Create, Exec and destroy a PROCESS sandbox on the `host` image as root,
//!    then `mount -p | grep sandboxes`, `jls` and `rctl` must show nothing
//!    of it.
//! 2. devfs ruleset 4 (`devfsrules_jail`) must be loaded (`devfs rule -s 4
//!    show`); setup refuses a jail whose /dev shows `mem`, `kmem`, `io` or
//!    `bpf`.
//! 3. With `kern.racct.enable=1` in `/boot/loader.conf`: a memory limit
//!    appears in `rctl` as `jail:sandboxd-<id>:vmemoryuse:deny=…` and is gone
//!    after destroy.
//! 4. LOOPBACK networking: in a vnet jail `ifconfig lo0` shows 127.0.0.1
//!    and `::1`; without VIMAGE the per-sandbox 127.128/9 alias
//!    appears on the host's lo0 (added by the daemon, recorded in
//!    `hostnet.json`) and goes away on destroy, even after the supervisor
//!    was SIGKILLed.
//! 5. Client mounts (nullfs) with a symlink anywhere in the source or
//!    target path are refused.
//! 6. INIT mode with the default argv runs `/bin/sh /etc/rc`; the sandbox
//!    ends when rc exits (the generic supervisor ends INIT sandboxes with
//!    their main process), even if rc left daemons running.

pub mod kernel_args;
pub mod plan;

#[cfg(target_os = "freebsd")]
pub mod runtime;
#[cfg(target_os = "freebsd")]
pub mod sys;

#[cfg(target_os = "freebsd")]
mod backend;
#[cfg(target_os = "freebsd")]
mod netcfg;

#[cfg(target_os = "freebsd")]
pub use backend::{FreeBsdBackend, new_backend, probe, supervisor_main};
pub use plan::{HostFacts, JailPlan, PlanError, build, capabilities};
