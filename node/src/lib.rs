//! The validator node: networking, persistence, gRPC API and devnet (issue 9).
//! Not built yet: only the `commons-node demo` binary exists.
