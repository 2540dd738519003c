//! The DAO rules of Commons: proposals, deposits, stake-weighted votes,
//! tallies, and the parameter registry — as pure functions. No I/O, no
//! storage, no clock, no randomness, no `HashMap`. The ledger
//! (`state-machine`) stores proposals, deposits and votes in its Merkle
//! store, calls these functions, and executes what they return.
//!
//! # Lifecycle
//!
//! ```text
//!  Propose tx ──submit──▶ DepositPeriod ──deposits reach min_deposit──▶ VotingPeriod
//!                              │                                          │
//!                 end of block deposit_end                     end of block voting.end
//!                              ▼                                          ▼
//!                 Finished(DepositLapsed)               Finished(Passed | Rejected | Vetoed)
//! ```
//!
//! 1. **Submit** ([`Proposal::submit`]), in the block at height `h`: the
//!    content ([`ProposalContent`], decoded from the `Propose` transaction
//!    by [`ProposalContent::decode`]) must pass [`ProposalContent::validate`]
//!    — size limits, and the action itself: a parameter change is checked
//!    against the registry here ([`validate_param_change`]), never after the
//!    vote; fewer than `max_active_proposals` proposals may be active; the
//!    initial deposit must be positive and at least
//!    `min_initial_deposit_permille` of `min_deposit`. `deposit_end = h +
//!    deposit_period_blocks`; the proposal records the `min_deposit` of the
//!    moment.
//! 2. **Deposit period**: deposits ([`Proposal::add_deposit`]) from one or
//!    several depositors are accepted at heights `<= deposit_end`. The
//!    deposit that brings the total to `min_deposit` (or the initial deposit
//!    itself) starts voting in that block: `voting.start` is its height,
//!    `voting.end = start + voting_period_blocks`, and `voting.power_total`
//!    is the total bonded stake the ledger passes at that moment.
//! 3. **Voting period**: votes ([`Proposal::check_vote`]) are accepted at
//!    heights `start..=end` from accounts whose snapshot power is positive.
//!    A vote is a [`WeightedVote`]: options yes, no, abstain, no-with-veto,
//!    weights in permille summing to exactly 1000, each option at most once.
//!    A later vote replaces the earlier one (the ledger keeps one per voter).
//!    Voting power is the bonded stake at the start of voting, read through
//!    [`StakeSnapshot`], so stake moved during the vote neither counts twice
//!    nor escapes.
//! 4. **End of block**: after a block's transactions, the ledger asks every
//!    active proposal [`Proposal::due`]. A deposit period that ended short
//!    [`Proposal::lapse`]s; a voting period that ended is counted
//!    ([`Proposal::count_votes`]) and concluded ([`Proposal::conclude`]).
//!    Both return a [`Resolution`]: the outcome, the tally, where the
//!    deposits go, and the action to execute if passed — in that same block.
//!
//! # Tally
//!
//! Each voter's snapshot power `P` is split by [`WeightedVote::split`]:
//! `floor(P * w / 1000)` per option, the remainder (at most 3) to the
//! option with the largest weight, earliest option on ties; so each voter
//! counts exactly `P`, and the total counted never exceeds the snapshot
//! total (checked: [`GovError::PowerExceedsSnapshot`]). Then, in `u128`:
//!
//! - quorum: `turnout > 0 && turnout * 1000 >= quorum_permille * total` (inclusive);
//! - veto: `veto * 1000 >= veto_permille * turnout` (inclusive);
//! - threshold: `yes * 1000 > threshold_permille * (yes + no + veto)` (strict: a tie fails);
//!
//! where `turnout = yes + no + abstain + veto`. No quorum → rejected; else
//! veto → vetoed; else threshold → passed; else rejected
//! ([`tally::decide`]). Tally parameters are those current at the tally.
//!
//! # Deposits
//!
//! Returned to each depositor after a vote that passed or was rejected
//! (quorum or threshold); burned when vetoed or when the deposit period
//! lapses. Always `returned + burned == deposited` ([`DepositDisposition`]).
//!
//! # Parameters
//!
//! [`PARAM_SPECS`] registers every tunable number of the ledger, consensus
//! and governance: name, inclusive range, default, reason. A
//! [`ParamSet`] holds one in-range value for each, with relations between
//! parameters ([`params::PARAM_ORDER`]) holding. A parameter-change proposal
//! names parameters by their registered name; unknown names, out-of-range
//! values, duplicates and broken relations are refused at submission, and
//! the ledger re-applies the change with [`ParamSet::with_changes`] at
//! execution (another proposal may have passed in between).
//!
//! # Proposal kinds
//!
//! [`ProposalAction`]: text (signal only); parameter change; treasury spend
//! to an account; validator-set change (add, remove, reweight, checked with
//! [`apply_validator_changes`]: the result is a valid
//! [`ValidatorSet`](commons_types::ValidatorSet);
//! the ledger hands the result to consensus as the epoch change, effective
//! at the next epoch boundary); exclude or reinstate an account; software
//! upgrade signal at a height later than the vote can possibly end.
//!
//! # Spam
//!
//! A minimum deposit, of which a share must come with the submission and
//! burns if the proposal lapses; a cap on active proposals; bounded
//! content, depositors per proposal and vote entries ([`limits`]).
//!
//! # Departures from Cosmos SDK `x/gov`
//!
//! - The veto boundary is inclusive (Cosmos: strict), so "a third vetoes"
//!   means exactly a third does.
//! - Voting power is a snapshot at voting start, not stake at tally time:
//!   without delegation there is no validator-inherits-vote rule, and a
//!   snapshot is the simplest rule under which moving stake mid-vote
//!   cannot count twice.
//! - A failed quorum returns deposits (the issue's rule); only veto and
//!   lapse burn.
//! - Deposits are not accepted once voting has started.

#![deny(clippy::unwrap_used)]

mod content;
mod error;
pub mod limits;
pub mod params;
mod proposal;
pub mod tally;
mod vote;

pub use content::{
    CONTENT_VERSION, ProposalAction, ProposalContent, ValidatorChange, apply_validator_changes,
};
pub use error::GovError;
pub use params::{
    GovParams, Module, PARAM_COUNT, PARAM_SPECS, Param, ParamChange, ParamSet, ParamSpec,
    validate_param_change,
};
pub use proposal::{
    DepositDisposition, DepositEffect, Due, Phase, Proposal, ProposalId, ProposalStatus,
    Resolution, SubmitContext, VotingWindow,
};
pub use tally::{Outcome, RejectReason, StakeSnapshot, TallyCounts, TallyResult};
pub use vote::{VoteOption, WeightedVote};
