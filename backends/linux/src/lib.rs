//! sandboxd's Linux backend: namespaces (mnt, pid, uts, ipc, net, cgroup and,
//! opt-in, user), `pivot_root(2)`, cgroups v1 and v2, rlimits.
//!
//! What this crate provides today is the **pure plan** ([`plan`]): it maps a
//! [`sandboxd_core::ValidatedSpec`] to plain data (clone flags, an ordered
//! mount list, cgroup writes, steps) and to an isolation report. It has no
//! `unsafe` and makes no system calls, so it compiles on every OS and serves
//! `PlanSandbox` from any host: a FreeBSD daemon can show how Linux would
//! realise a spec.
//!
//! The runtime backend — the `impl Backend`, the supervisor that executes a
//! [`plan::LinuxPlan`] step by step, and the `sys` module that holds every
//! raw system call — comes in a later issue. Until then the daemon selects
//! the chroot backend on Linux.

#![forbid(unsafe_code)]

pub mod plan;

pub use plan::{HostFacts, LinuxPlan, PlanError, build, capabilities};
