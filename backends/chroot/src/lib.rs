//! The chroot backend: `chroot(2)`, a dropped uid/gid, `no_new_privs`,
//! closed descriptors and rlimits.
//!
//! It runs on Linux and any other Unix. It is **not a security boundary
//! against root**: a process running as uid 0 can leave a chroot, and
//! nothing isolates pids, hostname, IPC or the network. Its capability matrix
//! says exactly that, and a create that REQUIRES more is refused.
//!
//! Layout: [`plan`] is the pure spec → [`plan::ChrootSetup`] translation
//! (compiled everywhere, used by PlanSandbox); [`sys`] holds the kernel
//! calls; `backend` implements [`sandboxd_core::Backend`] for the daemon;
//! [`runtime`] implements [`sandboxd_supervisor::Isolation`] for the
//! supervisor helper, which builds the root (on Linux: a tmpfs or
//! bind/overlay mount under the sandbox's state dir) and chroots each
//! forked child into it.

pub mod plan;
pub mod runtime;
pub mod sys;

mod backend;

pub use backend::{ChrootBackend, new_backend, probe, supervisor_main};
pub use runtime::ChrootIsolation;
