//! Bounds of the client, each with its reason.

/// Validator sets kept in the trust file: enough to check answers certified
/// a few epochs back (a lagging node) without growing the file forever.
pub const TRUSTED_EPOCHS_KEPT: usize = 16;

/// Attempts to learn a newer epoch's set before refusing an answer: an
/// answer and the validator-set query can straddle an epoch boundary, and
/// on a fast devnet a few boundaries may pass meanwhile.
pub const EPOCH_SYNC_ATTEMPTS: usize = 5;

/// Largest file the client reads (keys, configs, trust, genesis, partially
/// signed transactions): a wrong path fails fast instead of filling memory.
/// Genesis files of very large chains may need more; 64 MiB matches the
/// ledger's own genesis limit.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Longest key name: a file name on every platform.
pub const MAX_KEY_NAME_BYTES: usize = 64;

/// Largest gRPC answer accepted. Blocks are bounded by the consensus
/// payload limit (a few MiB); 16 MiB leaves room for proofs around them.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// Proposal ids probed by `gov list`: each probe is one verified query.
pub const MAX_LISTED_PROPOSALS: u64 = 1_000;

/// Longest wait for finality the CLI accepts; the node caps one
/// `WaitCommitted` call at 60 s, so longer waits are several calls.
pub const MAX_WAIT_SECS: u64 = 600;
