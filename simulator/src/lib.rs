//! Deterministic cluster simulator of Commons and the `commons-sim` CLI
//! (issue 8): N validators — the real consensus core
//! ([`commons_consensus::Replica`]), the real ledger
//! ([`commons_state_machine::Application`] on the memory store) and its real
//! mempool — in one thread, with virtual time and one seeded RNG
//! (`ChaCha8Rng`). The same seed and options give the same run, event for
//! event: the run ends with a SHA-256 digest of its trace.
//!
//! # Model
//!
//! - **Time.** One virtual clock (ms). Each node reads it through its own
//!   clock (offset and drift with the `skew` fault); its timers are turned
//!   back into virtual time to schedule them.
//! - **Network** ([`net`]): per-link base latency (5–40 ms) plus jitter up to
//!   half of it; before GST also loss, duplication, reordering (up to
//!   +300 ms), random and scheduled partitions, one-way cuts, a bandwidth
//!   limit and a slow receiver. Every message crosses as bytes and goes
//!   through `Message::decode`; a broadcast reaches every node, the spare
//!   (an observer until it joins) included.
//! - **Disk and crashes.** The driver follows the contract: it writes what
//!   `Ready.persist` holds, syncs before sending anything, applies committed
//!   blocks (the ledger writes each block atomically with a sync, as the
//!   RocksDB node does), then answers requests. Writes of a `Ready` that
//!   sends nothing stay unsynced until the next sync. A crash (between
//!   events, or armed to hit inside the next `Ready`: after the write, after
//!   sending, after the first applied block) keeps a random prefix of the
//!   unsynced writes and loses the rest, the mempool and all memory. A
//!   restart rebuilds the ledger by re-applying the applied chain (its
//!   durable state) and the replica from `Restart { record, last_applied,
//!   blocks, qcs }` read from the disk.
//! - **GST.** After `--time-ms`, faults stop: the network is synchronous,
//!   crashed nodes restart. Byzantine validators keep misbehaving.
//! - **Byzantine validators** ([`options::Behaviour`]): the last validators
//!   of the genesis set wrap real replicas and tamper with what they send
//!   ([`byzantine`]).
//! - **Workload** ([`workload`]): users send transfers and settlements, one
//!   transaction in flight per account, resent until committed; a
//!   governance proposal adds the spare validator, stakeholders vote, and
//!   the set changes at the next epoch boundary, where the spare (following
//!   as an observer since genesis) starts voting.
//!
//! # Checks
//!
//! At every step ([`check`]): agreement (one block per height among honest
//! nodes), equal state roots after equal heights, each node's committed
//! blocks extending each other and applied in height order, conservation of
//! supply (accounts + treasury + active deposits = `msupply`, never above
//! genesis), no honest validator signing two different votes or timeouts in
//! one round, persist-before-send (an honest vote or timeout leaves only
//! when the record covering it is synced), no valid evidence against an
//! honest validator, committed transactions all signed by clients (never the
//! forged ones), canonical encodings. At the end, if the Byzantine power is
//! below a third: every honest validator committed new blocks after GST,
//! every transaction submitted early enough committed, and the spare voted
//! once it joined.
#![deny(clippy::unwrap_used)]

pub mod byzantine;
pub mod check;
pub mod limits;
pub mod net;
pub mod options;
mod sim;
pub mod swarm;
pub mod workload;

pub use check::Violation;
pub use options::{Behaviour, Fault, Options};
pub use sim::{Report, Sim, Stats, run};

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("bad options: {0}")]
    Options(String),
    #[error("setting up the cluster: {0}")]
    Setup(String),
}
