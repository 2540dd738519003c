//! Bounds of the ledger and mempool, with the reason for each value. (The
//! store's bounds are in `crate::limits`.)

/// Transactions in one block. 10,000 settlements verify (20,000 signatures)
/// in well under a second on two cores, which keeps a block's execution far
/// below the consensus round timeout.
pub const MAX_BLOCK_TXS: usize = 10_000;

/// Encoded bytes of all transactions in one block: 10,000 settlements of
/// ~330 bytes fit. With the payload's framing (12 bytes, plus 4 per
/// transaction) it must stay within the consensus core's payload limit, or a
/// full block would be refused by every voter (checked below).
pub const MAX_BLOCK_BYTES: usize = 4 * 1024 * 1024 - 64 * 1024;

/// Unbonding entries one account may have in flight. Each `Unbond` adds one;
/// bounding them bounds the account record's size and the work of releasing
/// them.
pub const MAX_UNBONDING_ENTRIES: usize = 16;

/// Leases expiring at one height, and accounts with unbondings maturing at
/// one height: the per-height index a block's start walks. A full slot
/// refuses the operation (the sender retries with another duration) rather
/// than growing the work of one block without bound.
pub const MAX_DUE_PER_HEIGHT: usize = 4_096;

/// Length of a receipt's error message: enough to name the values that
/// explain the failure; receipts are stored and served, so they stay short.
pub const MAX_RECEIPT_MESSAGE_BYTES: usize = 256;

/// Transactions waiting in the mempool. At ~330 bytes each, 100,000 is about
/// 33 MB: ten full blocks of backlog, bounded so that a flood is refused
/// with `RESOURCE_EXHAUSTED` instead of exhausting memory.
pub const MEMPOOL_MAX_TXS: usize = 100_000;

/// Bytes held by the mempool, bounding memory even for large transactions.
pub const MEMPOOL_MAX_BYTES: usize = 64 * 1024 * 1024;

/// Transactions one sender may have waiting: one account cannot fill the
/// pool for everyone else.
pub const MEMPOOL_MAX_PER_SENDER: usize = 1_024;

/// How far ahead of the account's nonce a waiting transaction may be.
pub const MEMPOOL_NONCE_WINDOW: u64 = 1_024;

/// Transaction ids remembered as verified by the mempool, so block execution
/// can skip their signatures. Twice the pool, so entries outlive the
/// transactions that put them there.
pub const VERIFIED_CACHE_MAX: usize = 2 * MEMPOOL_MAX_TXS;

const _: () = assert!(MAX_BLOCK_TXS <= MEMPOOL_MAX_TXS);
const _: () = assert!(
    12 + 4 * MAX_BLOCK_TXS + MAX_BLOCK_BYTES <= commons_consensus::limits::MAX_PAYLOAD_BYTES,
    "a full block's payload must fit the consensus payload limit"
);
const _: () = assert!(MAX_BLOCK_BYTES <= MEMPOOL_MAX_BYTES);
const _: () = assert!(MEMPOOL_MAX_PER_SENDER as u64 <= MEMPOOL_NONCE_WINDOW);
