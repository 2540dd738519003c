//! Every bound this crate enforces, with the reason for its value. A full
//! queue or map rejects (or evicts its oldest entry where noted); it never
//! grows.

use commons_types::limits::MAX_VALIDATORS;

/// Largest encoded consensus message accepted from a peer. A proposal holds
/// one payload (`MAX_PAYLOAD_BYTES`), a QC and possibly a TC (each at most one
/// signature per validator); a sync response holds `MAX_SYNC_BLOCKS` blocks.
/// 64 MiB is far above any of those and still a size a node can buffer.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Largest payload a block may carry. The application batches transactions
/// into it; 4 MiB fits thousands of settlements while keeping a proposal a
/// few network round trips long.
pub const MAX_PAYLOAD_BYTES: usize = 4 * 1024 * 1024;

/// Signatures in one QC or TC: at most one per validator.
pub const MAX_CERT_SIGNERS: usize = MAX_VALIDATORS;

/// Blocks returned by one sync response. Bounds the response to
/// `MAX_SYNC_BLOCKS * MAX_PAYLOAD_BYTES`, which with the values here is
/// within `MAX_MESSAGE_BYTES` (checked below); a far-behind replica asks
/// again for the next range.
pub const MAX_SYNC_BLOCKS: usize = 8;

/// Blocks a replica keeps above its last committed block (the pending tree).
/// In the happy path two or three blocks are pending; the rest is room for
/// forks a Byzantine leader creates and blocks fetched while catching up.
/// When full, a new block is refused until a commit prunes the tree.
pub const MAX_PENDING_BLOCKS: usize = 1024;

/// Blocks whose parent is unknown, waiting for sync to deliver it. Any
/// validator can send such blocks, so this is kept small; the oldest round is
/// evicted when full (an honest block evicted is fetched again through its
/// QC later).
pub const MAX_ORPHAN_BLOCKS: usize = 64;

/// Block ids being fetched at once. Each is a certified id (its QC was
/// verified), so they cannot be invented by a peer without a quorum.
pub const MAX_WANTED_BLOCKS: usize = 64;

/// How far beyond its last committed height a replica fetches ancestors one by
/// one; past this gap it fetches committed ranges instead.
pub const SYNC_ANCESTORS_GAP_MAX: u64 = 32;

/// Rounds ahead of the current round from which votes and timeouts are kept.
/// A replica that is behind by a few rounds keeps what it will need when it
/// catches up; anything further is refused (the sender will resend or a
/// certificate will carry the replica forward).
pub const MAX_FUTURE_ROUNDS: u64 = 16;

/// Rounds of vote, timeout and proposal bookkeeping kept (for quorum building
/// and equivocation detection). Older rounds are dropped.
pub const MAX_TRACKED_ROUNDS: usize = 64;

/// Messages of the next epoch buffered while the application has not yet
/// named the next validator set. They are replayed when it does; beyond this
/// they are refused and the senders' retransmissions or sync will catch the
/// replica up.
pub const MAX_BUFFERED_NEXT_EPOCH: usize = 256;

/// Committed blocks kept in memory to answer sync requests and to compute
/// leader reputation. Older history is served by the node from its block
/// store, with the same message types.
pub const MAX_COMMITTED_WINDOW: usize = 256;

/// Committed blocks whose proposers and QC signers count as active in the
/// leader reputation (DiemBFT v4 "window").
pub const REPUTATION_WINDOW: usize = 32;

/// A leader for round r is chosen from the reputation as of the latest
/// committed block of round at most `r - REPUTATION_LAG_ROUNDS`, so that every
/// replica in round r has almost surely committed that block and agrees on
/// the leader (disagreement costs liveness, never safety).
pub const REPUTATION_LAG_ROUNDS: u64 = 8;

/// Evidence values waiting in `Ready`; the application drains them on every
/// poll, so this only bounds what one burst of equivocation can queue.
pub const MAX_PENDING_EVIDENCE: usize = 64;

/// Exponent cap of the pacemaker's backoff: the timeout doubles per failed
/// round up to `2^MAX_BACKOFF_EXPONENT` times the base (then the configured
/// maximum caps it further).
pub const MAX_BACKOFF_EXPONENT: u32 = 6;

const _: () = assert!(MAX_SYNC_BLOCKS * MAX_PAYLOAD_BYTES < MAX_MESSAGE_BYTES);
const _: () = assert!(REPUTATION_WINDOW <= MAX_COMMITTED_WINDOW);
const _: () = assert!((SYNC_ANCESTORS_GAP_MAX as usize) < MAX_PENDING_BLOCKS);
const _: () = assert!(MAX_FUTURE_ROUNDS as usize <= MAX_TRACKED_ROUNDS);
const _: () = assert!(MAX_SYNC_BLOCKS >= 2);
