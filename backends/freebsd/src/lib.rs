//! sandboxd's FreeBSD backend: jails (`jail_set`/`jail_attach`/`jail_remove`),
//! `ip4.addr`/`ip6.addr` or vnet networking, rctl limits, nullfs/devfs/tmpfs
//! mounts.
//!
//! What this crate provides today is the **pure plan** ([`plan`]): it maps a
//! [`sandboxd_core::ValidatedSpec`] to plain data (jail parameters, mounts,
//! rctl rules, steps) and to an isolation report. It has no `unsafe` and makes
//! no system calls, so it compiles on every OS and serves `PlanSandbox` from
//! any host: a Linux daemon can show how FreeBSD would realise a spec.
//!
//! The runtime backend — the `impl Backend`, the supervisor that executes a
//! [`plan::JailPlan`] step by step, and the `sys` module that holds every raw
//! system call (through the `jail` crate, a FreeBSD-only dependency) — comes
//! in a later issue. Until then the daemon selects the chroot backend on
//! FreeBSD.

#![forbid(unsafe_code)]

pub mod plan;

pub use plan::{HostFacts, JailPlan, PlanError, build, capabilities};
