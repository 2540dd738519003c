//! The Commons validator node: the I/O shell around the sans-I/O consensus
//! core and the ledger.
//!
//! - [`config`]: the home directory (key file, `config.toml`, genesis).
//! - [`transport`]: authenticated TCP connections between validators,
//!   length-delimited frames, reconnects, bounded queues, gossip, scoring.
//! - [`storage`]: the node's column families in the store's RocksDB, and
//!   what a restart reads back.
//! - [`driver`]: the one task that owns the replica and writes the ledger,
//!   following the consensus driver contract.
//! - [`grpc`]: the `commons.v1` API (`Tx`, `Query`, `Subscribe`), with
//!   reflection and health.
//! - [`door`]: the gRPC port's connection caps (in all, and per address).
//! - [`metrics`]: Prometheus metrics over HTTP.
//! - [`devnet`]: `init` and `devnet` home directories.
//! - [`node`]: `start`, wiring it all together.
//! - [`limits`]: every bound, with its reason.
#![deny(clippy::unwrap_used)]

pub mod config;
pub mod devnet;
pub mod door;
pub mod driver;
pub mod grpc;
pub mod limits;
pub mod metrics;
pub mod node;
pub mod storage;
pub mod transport;
