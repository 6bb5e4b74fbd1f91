//! containerd runtime v2 shim for sandboxd (`io.containerd.sandboxd.v1`).
//!
//! - [`bundle`]: the pure mapping of an OCI bundle onto a sandbox spec
//!   (any OS, unit-tested table-driven).
//! - [`config`]: which daemon the shim talks to (local socket or mTLS).
//! - [`client`]: the sandboxd gRPC connection.
//! - `task`: the ttrpc task service containerd calls (Linux only: containerd's
//!   ttrpc crate does not build for FreeBSD).
//!
//! Design and mapping: docs/containerd.md.

pub mod bundle;
pub mod client;
pub mod config;
#[cfg(target_os = "linux")]
pub mod task;
