//! containerd runtime v2 shim for sandboxd (`io.containerd.sandboxd.v1`).
//!
//! - [`bundle`]: the pure mapping of an OCI bundle onto a sandbox spec
//!   (any OS, unit-tested table-driven).
//! - [`config`]: which daemon the shim talks to (local socket or mTLS).
//! - [`client`]: the sandboxd gRPC connection.
//! - [`rootfs`]: containerd's rootfs mounts per OS (FreeBSD: mount(8),
//!   its command line pure and unit-tested).
//! - [`task`]: the ttrpc task service containerd calls.
//!
//! Design and mapping: docs/containerd.md.

pub mod bundle;
pub mod client;
pub mod config;
pub mod rootfs;
pub mod task;
