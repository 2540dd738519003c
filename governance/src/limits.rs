//! Every hard bound this crate enforces, with the reason for its value.
//!
//! These are ceilings fixed in code. Several have a governance parameter
//! below them (`max_proposal_bytes`, `max_title_bytes`, ...) that the DAO may
//! tune within `1..=ceiling`; decoding checks the ceiling before parsing,
//! submission checks the parameter after.

use commons_types::limits as types_limits;

/// One permille: the unit of every governance ratio (quorum, threshold, veto,
/// vote weights). Integers in permille keep tallies exact and the boundary
/// of every comparison documented, with no floating point.
pub const PERMILLE: u64 = 1000;

/// Largest encoded proposal content. The content travels inside a
/// `Propose` transaction, which must fit in `MAX_TX_BYTES` together with its
/// envelope (chain id, nonce, fee, deposit, signatures); 16 KiB holds the
/// longest description plus the largest structured action (checked below)
/// and leaves the rest of the transaction budget to the envelope.
pub const MAX_PROPOSAL_BYTES: usize = 16 * 1024;

/// Title length in bytes: a title is a one-line summary shown in lists.
pub const MAX_TITLE_BYTES: usize = 140;

/// Description length in bytes: room for a rationale of a few pages (the
/// Cosmos SDK uses the same figure); longer texts belong off chain, referred
/// to by a hash or link in the description.
pub const MAX_DESCRIPTION_BYTES: usize = 10_000;

/// Changes in one parameter-change proposal. Above the number of
/// registered parameters, so one proposal can set every one of them, and
/// small enough that validation is trivially cheap.
pub const MAX_PARAM_CHANGES: usize = 32;

/// Length of a parameter name. Registered names are short snake_case words;
/// the bound only stops a decoder from allocating for garbage.
pub const MAX_PARAM_NAME_BYTES: usize = 64;

/// Changes in one validator-set proposal. A quarter of the largest validator
/// set: enough to onboard or retire a cohort at once, while keeping one
/// proposal's effect on the set reviewable by voters.
pub const MAX_VALIDATOR_CHANGES: usize = 64;

/// Length of a software-upgrade name (e.g. `v1.2.0-rc1`).
pub const MAX_UPGRADE_NAME_BYTES: usize = 64;

/// Length of a software-upgrade's free-form info (binary hashes, a link).
pub const MAX_UPGRADE_INFO_BYTES: usize = 1024;

/// Entries of one weighted vote: one per option, and there are four options.
pub const MAX_VOTE_OPTIONS: usize = 4;

/// Distinct depositors of one proposal. The ledger reads and writes a
/// proposal record whole and refunds every depositor in the block of the
/// tally, so this bounds both the record and that block's work; later
/// deposits from an existing depositor merge into its entry.
pub const MAX_DEPOSITORS: usize = 128;

/// Highest value the `max_active_proposals` parameter may take. The ledger
/// checks every active proposal's deadlines at the end of each block, and at
/// most this many tallies can fall due in one block.
pub const MAX_ACTIVE_PROPOSALS_CEILING: u64 = 256;

/// Space the `Propose` envelope needs around the content: chain id, nonce,
/// fee, deposit, field tags and lengths, and the largest number of
/// signatures with their keys. A generous over-estimate.
pub const PROPOSE_ENVELOPE_BYTES: usize = 1024;

// Encoded sizes (see `content.rs`): a version byte, u32 length prefixes,
// a kind byte, u32 counts, u64 numbers, 32-byte keys.
const HEADER_BYTES: usize = 1 + 4 + MAX_TITLE_BYTES + 4 + MAX_DESCRIPTION_BYTES + 1;
const PARAM_CHANGES_BYTES: usize = 4 + MAX_PARAM_CHANGES * (4 + MAX_PARAM_NAME_BYTES + 8);
const VALIDATOR_CHANGES_BYTES: usize = 4 + MAX_VALIDATOR_CHANGES * (1 + 32 + 8);
const UPGRADE_BYTES: usize = 4 + MAX_UPGRADE_NAME_BYTES + 8 + 4 + MAX_UPGRADE_INFO_BYTES;

// The largest legitimate proposal of every kind must be encodable.
const _: () = assert!(HEADER_BYTES + PARAM_CHANGES_BYTES <= MAX_PROPOSAL_BYTES);
const _: () = assert!(HEADER_BYTES + VALIDATOR_CHANGES_BYTES <= MAX_PROPOSAL_BYTES);
const _: () = assert!(HEADER_BYTES + UPGRADE_BYTES <= MAX_PROPOSAL_BYTES);
const _: () = assert!(HEADER_BYTES + 32 + 8 <= MAX_PROPOSAL_BYTES);
// ... and must fit in a transaction.
const _: () = assert!(MAX_PROPOSAL_BYTES + PROPOSE_ENVELOPE_BYTES <= types_limits::MAX_TX_BYTES);
// Lengths and counts travel as u32.
const _: () = assert!(MAX_PROPOSAL_BYTES <= u32::MAX as usize);
// A validator change cannot ask for more validators than a set may hold.
const _: () = assert!(MAX_VALIDATOR_CHANGES <= types_limits::MAX_VALIDATORS);
const _: () = assert!(MAX_VOTE_OPTIONS == 4);
// Vote weights are carried as u16 permille.
const _: () = assert!(PERMILLE <= u16::MAX as u64);
