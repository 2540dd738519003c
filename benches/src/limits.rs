//! Bounds and pacing of the `commons-bench` load generator, each with its
//! reason.

/// Most settlements one run pre-signs: about 0.5 GB of signed transactions
/// and per-settlement records, far beyond what a 60-second run on a small
/// machine commits.
pub const MAX_TXS: usize = 2_000_000;

/// Settlements queued between a sender and its gRPC stream. Small, so that a
/// send time is close to the moment the settlement leaves: gRPC flow control
/// blocks the sender rather than this queue hiding the wait.
pub const SEND_CHANNEL_TXS: usize = 256;

/// A sender's pacing tick: fine enough that a fixed rate is smooth at the
/// scale of a block interval.
pub const SEND_TICK_MS: u64 = 5;

/// Settlements a saturating sender offers per tick: one node admission step
/// (the node's `SUBMIT_BATCH_TXS`) every tick is more than any node admits.
pub const SATURATION_TICK_TXS: u64 = 1024;

/// Pause of a sender after "mempool full" or "nonce too far": a few block
/// intervals, for commits to make room, instead of resubmitting (and making
/// the node verify again) in a tight loop.
pub const BACKPRESSURE_PAUSE_MS: u64 = 50;

/// Wait for the network to answer and serve state with proofs.
pub const START_WAIT_S: u64 = 60;

/// Account queries in flight while reading the plan's nonces.
pub const QUERY_CONCURRENCY: usize = 16;

/// The drain ends early when no commit arrives for this long.
pub const DRAIN_STALL_S: u64 = 5;

/// Progress lines when stderr is not a terminal: one every this many seconds.
pub const PROGRESS_LOG_S: u64 = 5;

/// Largest gRPC message accepted: a committed block of the largest allowed
/// size, with each transaction and its receipt, stays below this.
pub const MAX_GRPC_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Refusal and stream error messages kept for the report.
pub const ERRORS_KEPT: usize = 8;
