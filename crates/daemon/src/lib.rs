//! The sandboxd daemon: a tokio + tonic gRPC server over a unix socket.
//!
//! This is the only crate that knows tonic. It converts wire messages to the
//! core model ([`convert`]), maps every error to a gRPC status in one place
//! ([`error`]), keeps the daemon's view of each sandbox ([`manager`]) and
//! talks to each sandbox's single-threaded supervisor helper over a
//! socketpair ([`link`]). The backend is chosen at compile time in
//! [`backend`]. The daemon itself never calls unshare, setns, chroot,
//! pivot_root or jail_attach: that happens only in the helper, which is this
//! same binary re-executed with [`SUPERVISE_ARG`].

pub mod backend;
pub mod config;
pub mod convert;
pub mod error;
pub mod events;
pub mod link;
pub mod manager;
pub mod server;
pub mod service;

pub use link::SUPERVISE_ARG;
