//! sandboxd's Linux backend: namespaces (mnt, pid, uts, ipc, net, cgroup),
//! `pivot_root(2)`, cgroups v1 and v2, rlimits, a bounded capability set.
//!
//! [`plan`] is pure: it maps a [`sandboxd_core::ValidatedSpec`] to plain data
//! (clone flags, an ordered mount list, cgroup writes, steps) and to an
//! isolation report. It has no `unsafe`, makes no system calls, compiles on
//! every OS and serves `PlanSandbox` from any host.
//!
//! On Linux, [`runtime`] executes that plan in the supervisor helper (see its
//! docs for the process layout), [`net`] builds and removes a RESTRICTED
//! sandbox's network from the daemon (netlink and nftables), a pool keeps
//! network namespaces ready for the daemon's creates, [`sys`] holds
//! every raw system call, and [`LinuxBackend`] implements
//! [`sandboxd_core::Backend`] for the daemon, probing the host once at
//! start-up.

pub mod plan;

#[cfg(target_os = "linux")]
pub mod handshake;
#[cfg(target_os = "linux")]
pub mod net;
#[cfg(target_os = "linux")]
pub mod runtime;
#[cfg(target_os = "linux")]
pub mod sys;

#[cfg(target_os = "linux")]
mod backend;
#[cfg(target_os = "linux")]
mod netns_pool;

#[cfg(target_os = "linux")]
pub use backend::{LinuxBackend, new_backend, probe, supervisor_main};
pub use plan::{HostFacts, LinuxPlan, PlanError, build, capabilities};
