//! The sandboxd daemon: a tokio + tonic gRPC server over unix sockets and,
//! for remote clients, TCP with mutual TLS ([`transport`]).
//!
//! This is the only crate that knows tonic. It converts wire messages to the
//! core model ([`convert`]), maps every error to a gRPC status in one place
//! ([`error`]), resolves callers and their rights ([`auth`]), keeps the
//! daemon's view of each sandbox ([`manager`]) and talks to each sandbox's
//! single-threaded supervisor helper over a socketpair ([`link`]). The
//! backend is chosen at compile time in [`backend`]. The sandbox's own
//! namespaces, chroot, pivot_root and jail_attach happen only in the helper,
//! which is this same binary re-executed with [`SUPERVISE_ARG`]; the one
//! exception is the Linux backend's RESTRICTED network, which the daemon
//! prepares on throwaway threads that leave no daemon thread in another
//! namespace.

pub mod auth;
pub mod backend;
pub mod config;
pub mod convert;
pub mod deadline;
pub mod error;
pub mod events;
pub mod health;
pub mod hostdirs;
pub mod link;
pub mod logs;
pub mod manager;
pub mod metrics;
pub mod netns;
pub mod notify;
pub mod pending;
pub mod reflection;
pub mod registry;
pub mod rlimit;
pub mod server;
pub mod service;
pub mod steptime;
pub mod transport;
pub mod unix_authority;
pub mod verify;
pub mod zygote;

pub use link::SUPERVISE_ARG;
