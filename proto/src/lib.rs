//! The `commons.v1` protobuf schema. Messages are always generated with prost;
//! the tonic services only with the `grpc` feature.

#![allow(missing_debug_implementations)]
#![allow(clippy::all)]

pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/commons.v1.rs"));
}

/// The encoded `FileDescriptorSet` of `commons.v1`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/commons_v1_descriptor.bin"));
