//! Criterion micro-benchmarks (in `benches/`) and `commons-bench`, the
//! end-to-end load generator: pre-signed settlements streamed over gRPC to a
//! running network, committed settlements per second and submission-to-
//! finality latency measured from the `Subscribe` stream, against a ceiling
//! measured on the same machine in the same run (see `load`).

pub mod corpus;
pub mod limits;
pub mod load;
pub mod report;
pub mod stats;
