//! Every bound this crate enforces, with the reason for its value.

/// Largest encoded `SignedTx` accepted from anyone. A settlement with two
/// signatures encodes to well under 400 bytes; governance proposals carry a
/// bounded text (see the governance crate), so 64 KiB leaves room for the
/// largest legitimate transaction while keeping a block of
/// `MAX_BLOCK_TXS` transactions within a network frame.
pub const MAX_TX_BYTES: usize = 64 * 1024;

/// Signatures on one transaction. Settlements need two (buyer and seller);
/// four leaves room for co-signed actions without letting one transaction
/// make a verifier do unbounded work.
pub const MAX_TX_SIGNATURES: usize = 4;

/// Length of a chain id in bytes. Short enough to prefix every signed
/// message cheaply, long enough for names like `commons-mainnet-1`.
pub const MAX_CHAIN_ID_BYTES: usize = 32;

/// Validators in one set. Quorum certificates carry one signature per
/// validator and every replica checks each of them, so the set size bounds
/// the cost of a certificate; 256 is above any BFT deployment of this kind.
pub const MAX_VALIDATORS: usize = 256;

/// Total voting power of a validator set. Kept below 2^62 so that
/// `3 * power` and `2 * total` never overflow a `u64`, and quorum math can
/// stay exact even before widening to `u128`.
pub const MAX_TOTAL_POWER: u64 = 1 << 62;

/// Smallest batch worth handing to its own rayon task in
/// [`crate::batch::verify_all`]: below this, the per-batch fixed cost (one
/// multiscalar multiplication setup) outweighs the gain of splitting.
pub const BATCH_CHUNK_MIN: usize = 64;

/// Largest chunk one task verifies as a single batch. Bounding it keeps the
/// cost of finding one forged signature (bisection inside its chunk) small
/// against the whole batch, so a forger cannot make a block much slower to
/// verify than an honest one.
pub const BATCH_CHUNK_MAX: usize = 512;

/// A failing batch is cut into this many parts, batch-verified in parallel;
/// only the failing parts are searched further. Four parts cost little more
/// work than halving (which can skip the second half when the first passes)
/// and let the other cores share the search.
pub const BISECT_FANOUT: usize = 4;

/// Below this many items, a failing sub-batch is checked item by item rather
/// than bisected further: a batch of fewer than four signatures costs about as
/// much as checking them one at a time.
pub const BISECT_LEAF: usize = 4;

/// Public keys whose decompressed curve points [`crate::batch`] keeps, so
/// that an account signing again costs its batch no decompression (about
/// 160 bytes each; a shard that fills is emptied and starts again).
pub const VERIFY_KEY_CACHE_KEYS: usize = 1 << 16;

const _: () = assert!(BATCH_CHUNK_MIN <= BATCH_CHUNK_MAX);
const _: () = assert!(BISECT_LEAF >= 1);
const _: () = assert!(BISECT_FANOUT >= 2);
const _: () = assert!(MAX_VALIDATORS as u64 <= u16::MAX as u64);
const _: () = assert!(MAX_TOTAL_POWER.checked_mul(3).is_some());
