use commons_types::{Amount, Height, PublicKey, TypesError};

use crate::{Phase, ProposalId};

/// Why a governance rule refused an input. Every variant carries the values
/// that explain the refusal, so the ledger can put them in a receipt as is.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum GovError {
    // --- decoding of proposal content ---
    #[error("proposal content of {got} bytes exceeds the limit of {limit} bytes")]
    ContentTooLarge { got: usize, limit: usize },
    #[error(
        "proposal content ends early in {field} at byte {offset}: needs {need} bytes, has {have}"
    )]
    Truncated {
        field: &'static str,
        offset: usize,
        need: usize,
        have: usize,
    },
    #[error("proposal content has {extra} bytes after its end")]
    TrailingBytes { extra: usize },
    #[error("proposal content version {got} is not supported (expected {expected})")]
    UnknownVersion { got: u8, expected: u8 },
    #[error("unknown {what} tag {tag}")]
    UnknownTag { what: &'static str, tag: u8 },
    #[error("{field} is {got} bytes, more than the limit of {limit}")]
    FieldTooLong {
        field: &'static str,
        got: usize,
        limit: usize,
    },
    #[error("{field} is not valid UTF-8")]
    NotUtf8 { field: &'static str },
    #[error("{what} has {got} entries, more than the limit of {limit}")]
    TooManyEntries {
        what: &'static str,
        got: usize,
        limit: usize,
    },

    // --- validity of proposal content ---
    #[error("{field} must not be empty")]
    Empty { field: &'static str },
    #[error("{field} contains the invalid character {found:?}")]
    BadCharacter { field: &'static str, found: char },
    #[error("{what} must be more than zero")]
    ZeroAmount { what: &'static str },
    #[error("unknown parameter {name:?}")]
    UnknownParam { name: String },
    #[error("parameter {name} = {value} is outside {min}..={max}")]
    ParamOutOfRange {
        name: &'static str,
        value: u64,
        min: u64,
        max: u64,
    },
    #[error("parameter {name} is changed twice in one proposal")]
    DuplicateParam { name: &'static str },
    #[error("parameter {lower} = {lower_value} must not exceed {upper} = {upper_value}")]
    ParamOrder {
        lower: &'static str,
        lower_value: u64,
        upper: &'static str,
        upper_value: u64,
    },
    #[error("validator {key} is changed twice in one proposal")]
    DuplicateValidatorChange { key: PublicKey },
    #[error("validator {key} is already in the set")]
    ValidatorPresent { key: PublicKey },
    #[error("validator {key} is not in the set")]
    ValidatorAbsent { key: PublicKey },
    #[error("resulting validator set is invalid: {0}")]
    ValidatorSet(#[from] TypesError),
    #[error("upgrade height {height} must be at least {earliest}, after the longest possible vote")]
    UpgradeTooSoon { height: Height, earliest: Height },

    // --- submission and deposits ---
    #[error("{active} proposals are active, the limit is {limit}")]
    TooManyActive { active: u64, limit: u64 },
    #[error("initial deposit {got} is below {min} ({permille}‰ of the minimum deposit)")]
    InitialDepositTooSmall {
        got: Amount,
        min: Amount,
        permille: u64,
    },
    #[error("proposal {id} already has {limit} depositors")]
    TooManyDepositors { id: ProposalId, limit: usize },

    // --- votes ---
    #[error("unknown vote option {got}")]
    UnknownVoteOption { got: u32 },
    #[error("vote option {option} appears twice")]
    DuplicateVoteOption { option: u32 },
    #[error("vote option {option} has weight {weight}‰; weights must be 1..=1000")]
    BadVoteWeight { option: u32, weight: u32 },
    #[error("vote weights sum to {sum}‰, not 1000‰")]
    VoteWeightSum { sum: u64 },
    #[error("{voter} had no voting power when voting on proposal {id} started")]
    NoVotingPower { id: ProposalId, voter: PublicKey },

    // --- lifecycle ---
    #[error("proposal {id} is in its {actual} phase, not its {expected} phase")]
    WrongPhase {
        id: ProposalId,
        expected: Phase,
        actual: Phase,
    },
    #[error("proposal {id}: height {height} is after the period's last block {end}")]
    PeriodOver {
        id: ProposalId,
        height: Height,
        end: Height,
    },
    #[error("proposal {id}: height {height} is before the voting start {start}")]
    BeforeVoting {
        id: ProposalId,
        height: Height,
        start: Height,
    },
    #[error("proposal {id}: the period ends at {end}, not yet at height {height}")]
    NotDue {
        id: ProposalId,
        height: Height,
        end: Height,
    },
    #[error("height {height} plus {blocks} blocks overflows")]
    HeightOverflow { height: Height, blocks: u64 },
    #[error("{what} overflows")]
    Overflow { what: &'static str },
    #[error("proposal {id}: {counted} voting power counted exceeds the snapshot total {total}")]
    PowerExceedsSnapshot {
        id: ProposalId,
        counted: u128,
        total: u64,
    },
    #[error("removing a vote of power {power} from the running tally underflows")]
    TallyUnderflow { power: u64 },
    #[error("proposal {id} record is inconsistent: {reason}")]
    Corrupt {
        id: ProposalId,
        reason: &'static str,
    },
}
