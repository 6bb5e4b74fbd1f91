//! Generated code for the `sandboxd.v1` gRPC API (see `proto/sandboxd/v1/`).
//!
//! Nothing here is written by hand except this module layout; the messages,
//! client stubs and server traits come from `build.rs`.

#![allow(missing_docs, unreachable_pub, missing_debug_implementations)]
#![allow(clippy::all, clippy::pedantic)]

/// The `sandboxd.v1` package.
pub mod v1 {
    tonic::include_proto!("sandboxd.v1");
}

/// Encoded `FileDescriptorSet` of the API, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/sandboxd_descriptor.bin"));
