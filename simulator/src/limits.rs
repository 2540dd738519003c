//! Every bound and fixed setting of the simulator, with the reason for its
//! value.

/// Round timeout while rounds succeed. Link latencies are 5–60 ms one way,
/// so a round (proposal, then votes) fits several times over.
pub const ROUND_TIMEOUT_MS: u64 = 400;

/// Cap of the backed-off round timeout: small enough that the liveness
/// window holds many capped rounds (a Byzantine leader may be drawn several
/// rounds in a row).
pub const ROUND_TIMEOUT_MS_MAX: u64 = 800;

/// How long a replica waits for a sync answer before asking another peer.
pub const SYNC_RETRY_MS: u64 = 400;

/// QCs a node keeps on disk for restarts: the highest QC and the QCs that
/// commit recent blocks are among the last few written.
pub const STORED_QCS_MAX: usize = 64;

/// Applied blocks handed to a restarting replica: its reputation window and
/// the committed history it serves to peers that sync.
pub const RESTART_APPLIED_BLOCKS: usize = 256;

/// Events in one run before it is declared stuck (a busy loop in a driver or
/// a replica). A 60 s run at 20 tx/s has a few hundred thousand.
pub const STEPS_MAX: u64 = 20_000_000;

/// Messages larger than this enter the trace by length only, so an
/// oversized forgery does not cost a 64 MiB hash.
pub const TRACE_HASH_BYTES_MAX: usize = 1 << 20;

/// A client resends a transaction that has not committed after this long
/// (its mempool copies may have died with a crashed node).
pub const RESUBMIT_MS: u64 = 1_000;

/// Blocks every honest validator must commit in the liveness window after
/// GST.
pub const LIVENESS_BLOCKS_MIN: u64 = 3;

/// Nodes a client first hands each transaction to (a resend goes to all):
/// enough that a crashed node does not strand it, few enough that
/// signature checks at admission do not dominate the run.
pub const SUBMIT_NODES: usize = 2;
