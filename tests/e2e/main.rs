//! End-to-end tests: each starts the real `sandboxd` binary (as root) on a
//! temporary socket and state dir and drives it over gRPC, as a client would.

// Test code: a failed expectation is the test failing.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod api;
mod cli;
mod containerd;
mod cpu_weight;
mod cri;
mod escape;
mod execs;
mod faults;
mod freebsd;
mod harness;
mod hostile;
mod images;
mod lifecycle;
mod linux;
mod logs;
mod netns;
mod network;
mod ops;
mod pods;
mod registry_auth;
mod remote;
mod resources;
mod run_stream;
mod surface;
mod unix_h2;
mod verify;
mod zygote;
