//! The proposal record and its lifecycle as pure state transitions:
//! submit → deposit period → voting period → tally → finished.

use std::collections::BTreeMap;
use std::fmt;

use commons_types::{Amount, Height, PublicKey, ValidatorSet};
use serde::{Deserialize, Serialize};

use crate::tally::{self, Outcome, StakeSnapshot, TallyCounts, TallyResult};
use crate::{GovError, GovParams, ParamSet, ProposalAction, ProposalContent, WeightedVote, limits};

/// Proposal number, assigned by the ledger in submission order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProposalId(pub u64);

impl fmt::Display for ProposalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for ProposalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProposalId({})", self.0)
    }
}

/// Where a proposal is in its life, without the details.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    DepositPeriod,
    VotingPeriod,
    Finished,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::DepositPeriod => "deposit",
            Phase::VotingPeriod => "voting",
            Phase::Finished => "finished",
        })
    }
}

/// The voting period of a proposal: votes are accepted at heights
/// `start..=end`, the tally runs at the end of block `end`, and `power_total`
/// is the total bonded stake when voting started (the snapshot's total).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VotingWindow {
    pub start: Height,
    pub end: Height,
    pub power_total: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProposalStatus {
    /// Deposits are accepted at heights up to and including the proposal's
    /// `deposit_end`.
    DepositPeriod,
    VotingPeriod(VotingWindow),
    Finished {
        /// Height of the block whose end-of-block step finished it.
        at: Height,
        outcome: Outcome,
        /// `None` if the proposal never reached voting.
        voting: Option<VotingWindow>,
        /// `None` if the proposal never reached voting.
        tally: Option<TallyResult>,
    },
}

/// What the ledger knows at submission.
#[derive(Clone, Copy, Debug)]
pub struct SubmitContext<'a> {
    /// Height of the block holding the `Propose` transaction.
    pub height: Height,
    pub params: &'a ParamSet,
    /// The current validator set, against which a validator change is checked.
    pub validators: &'a ValidatorSet,
    /// Proposals now in their deposit or voting period (not counting this one).
    pub active_proposals: u64,
    /// Total bonded stake now: the snapshot total if the initial deposit
    /// already meets the minimum and voting starts at once.
    pub bonded_total: u64,
}

/// What a deposit did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DepositEffect {
    /// Still in the deposit period; `missing` more is needed.
    Pending { missing: Amount },
    /// The minimum was reached: voting started with this window. The ledger
    /// starts its stake snapshot for this proposal now (see
    /// [`StakeSnapshot`]).
    VotingStarted(VotingWindow),
}

/// Which end-of-block step a proposal needs at a height.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// Call [`Proposal::lapse`].
    DepositLapse,
    /// Count the votes and call [`Proposal::conclude`].
    Tally,
}

/// Where the deposits go when a proposal finishes. Always
/// `sum(refunds) + burned == deposit_total`, and either `refunds` is empty
/// or `burned` is zero.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositDisposition {
    /// Back to each depositor, in key order.
    pub refunds: Vec<(PublicKey, Amount)>,
    /// Destroyed: removed from the supply.
    pub burned: Amount,
}

/// The end of a proposal, for the ledger to carry out in the same block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolution {
    pub id: ProposalId,
    pub outcome: Outcome,
    /// `None` for a lapsed deposit.
    pub tally: Option<TallyResult>,
    pub deposits: DepositDisposition,
    /// The action to execute, present exactly when the outcome is
    /// [`Outcome::Passed`]. Execution may still fail on the ledger's side
    /// (the treasury lacks the amount, [`ParamSet::with_changes`] or
    /// [`crate::apply_validator_changes`] refuses the change against the
    /// state of this block, an upgrade height already passed); the ledger
    /// then records the failure. Deposits follow the vote either way.
    pub execute: Option<ProposalAction>,
}

/// A proposal as the ledger stores it. Fields are private so that the
/// deposit ledger inside it (`deposit_total == sum(deposits)`) and the
/// lifecycle can only change through the transitions below; serde exists
/// for the ledger's store, and [`Proposal::check`] re-checks a record read
/// back from it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    id: ProposalId,
    proposer: PublicKey,
    content: ProposalContent,
    submitted_at: Height,
    deposit_end: Height,
    /// `min_deposit` when submitted: depositors know the target from the
    /// start, and a parameter change cannot strand a proposal half-way.
    min_deposit: Amount,
    deposits: BTreeMap<PublicKey, Amount>,
    deposit_total: Amount,
    status: ProposalStatus,
}

impl Proposal {
    /// Submits `content` with the proposer's initial deposit. Checks, in
    /// order: the active-proposal cap (`active_proposals <
    /// max_active_proposals`), a positive deposit of at least
    /// `min_initial_deposit_permille` of `min_deposit` (`deposit * 1000 >=
    /// permille * min_deposit`), then [`ProposalContent::validate`]. If the
    /// deposit already meets `min_deposit`, voting starts in this block.
    ///
    /// The ledger decodes the content with [`ProposalContent::decode`]
    /// first, and escrows the deposit only if this succeeds.
    pub fn submit(
        id: ProposalId,
        proposer: PublicKey,
        content: ProposalContent,
        deposit: Amount,
        ctx: &SubmitContext<'_>,
    ) -> Result<(Proposal, DepositEffect), GovError> {
        let gov = ctx.params.gov();
        if ctx.active_proposals >= gov.max_active_proposals {
            return Err(GovError::TooManyActive {
                active: ctx.active_proposals,
                limit: gov.max_active_proposals,
            });
        }
        if deposit.is_zero() {
            return Err(GovError::ZeroAmount {
                what: "initial deposit",
            });
        }
        let initial_enough = u128::from(deposit.0) * u128::from(limits::PERMILLE)
            >= u128::from(gov.min_initial_deposit_permille) * u128::from(gov.min_deposit.0);
        if !initial_enough {
            // Rounded up, so the number shown is one that would pass.
            let min = (u128::from(gov.min_initial_deposit_permille)
                * u128::from(gov.min_deposit.0))
            .div_ceil(u128::from(limits::PERMILLE));
            return Err(GovError::InitialDepositTooSmall {
                got: deposit,
                min: Amount(u64::try_from(min).unwrap_or(u64::MAX)),
                permille: gov.min_initial_deposit_permille,
            });
        }
        content.validate(ctx.params, ctx.validators, ctx.height)?;
        let deposit_end = add_blocks(ctx.height, gov.deposit_period_blocks)?;
        let mut proposal = Proposal {
            id,
            proposer,
            content,
            submitted_at: ctx.height,
            deposit_end,
            min_deposit: gov.min_deposit,
            deposits: BTreeMap::from([(proposer, deposit)]),
            deposit_total: deposit,
            status: ProposalStatus::DepositPeriod,
        };
        let effect = proposal.after_deposit(ctx.height, &gov, ctx.bonded_total)?;
        Ok((proposal, effect))
    }

    /// Adds a deposit in the block at `height`. Accepted only in the deposit
    /// period (`height <= deposit_end`), for a positive amount, and from at
    /// most [`limits::MAX_DEPOSITORS`] distinct depositors (an existing
    /// depositor may always add more). Deposits after voting started are
    /// refused: the minimum is met, and more would only be more to refund.
    /// `bonded_total` is the total bonded stake now, the snapshot total if
    /// this deposit starts voting.
    pub fn add_deposit(
        &mut self,
        height: Height,
        depositor: PublicKey,
        amount: Amount,
        params: &GovParams,
        bonded_total: u64,
    ) -> Result<DepositEffect, GovError> {
        self.expect_phase(Phase::DepositPeriod)?;
        if height > self.deposit_end {
            return Err(GovError::PeriodOver {
                id: self.id,
                height,
                end: self.deposit_end,
            });
        }
        if amount.is_zero() {
            return Err(GovError::ZeroAmount { what: "deposit" });
        }
        let existing = self.deposits.get(&depositor).copied();
        if existing.is_none() && self.deposits.len() >= limits::MAX_DEPOSITORS {
            return Err(GovError::TooManyDepositors {
                id: self.id,
                limit: limits::MAX_DEPOSITORS,
            });
        }
        let overflow = GovError::Overflow { what: "deposit" };
        let entry = existing
            .unwrap_or(Amount::ZERO)
            .checked_add(amount)
            .ok_or(overflow.clone())?;
        let total = self.deposit_total.checked_add(amount).ok_or(overflow)?;
        self.deposits.insert(depositor, entry);
        self.deposit_total = total;
        self.after_deposit(height, params, bonded_total)
    }

    fn after_deposit(
        &mut self,
        height: Height,
        params: &GovParams,
        bonded_total: u64,
    ) -> Result<DepositEffect, GovError> {
        if self.deposit_total < self.min_deposit {
            return Ok(DepositEffect::Pending {
                missing: self
                    .min_deposit
                    .checked_sub(self.deposit_total)
                    .unwrap_or(Amount::ZERO),
            });
        }
        let window = VotingWindow {
            start: height,
            end: add_blocks(height, params.voting_period_blocks)?,
            power_total: bonded_total,
        };
        self.status = ProposalStatus::VotingPeriod(window);
        Ok(DepositEffect::VotingStarted(window))
    }

    /// Checks that `voter`, with snapshot power `power`, may vote in the
    /// block at `height`: the proposal is in its voting period, `start <=
    /// height <= end`, and `power > 0` (a vote that counts for nothing would
    /// only fill the store). A later valid vote replaces an earlier one; the
    /// ledger keeps one vote per voter.
    pub fn check_vote(
        &self,
        height: Height,
        voter: &PublicKey,
        power: u64,
    ) -> Result<(), GovError> {
        let window = self.voting_window_open()?;
        if height < window.start {
            return Err(GovError::BeforeVoting {
                id: self.id,
                height,
                start: window.start,
            });
        }
        if height > window.end {
            return Err(GovError::PeriodOver {
                id: self.id,
                height,
                end: window.end,
            });
        }
        if power == 0 {
            return Err(GovError::NoVotingPower {
                id: self.id,
                voter: *voter,
            });
        }
        Ok(())
    }

    /// The end-of-block step this proposal needs at `height`, if any. The
    /// ledger calls this for every active proposal after the block's
    /// transactions, so votes and deposits in the last block of a period
    /// count.
    pub fn due(&self, height: Height) -> Option<Due> {
        match &self.status {
            ProposalStatus::DepositPeriod if height >= self.deposit_end => Some(Due::DepositLapse),
            ProposalStatus::VotingPeriod(w) if height >= w.end => Some(Due::Tally),
            _ => None,
        }
    }

    /// Ends a deposit period that did not reach the minimum: every deposit
    /// burns.
    pub fn lapse(&mut self, height: Height) -> Result<Resolution, GovError> {
        self.expect_phase(Phase::DepositPeriod)?;
        if height < self.deposit_end {
            return Err(GovError::NotDue {
                id: self.id,
                height,
                end: self.deposit_end,
            });
        }
        let resolution = Resolution {
            id: self.id,
            outcome: Outcome::DepositLapsed,
            tally: None,
            deposits: self.disposition(true),
            execute: None,
        };
        self.status = ProposalStatus::Finished {
            at: height,
            outcome: Outcome::DepositLapsed,
            voting: None,
            tally: None,
        };
        Ok(resolution)
    }

    /// Ends the voting period with the final `counts` (from
    /// [`Proposal::count_votes`] or a running tally) under the current
    /// parameters ([`tally::decide`]). Deposits return unless vetoed, when
    /// they burn. Runs once: the proposal is finished after it.
    pub fn conclude(
        &mut self,
        height: Height,
        counts: TallyCounts,
        params: &GovParams,
    ) -> Result<Resolution, GovError> {
        let window = self.voting_window_open()?;
        if height < window.end {
            return Err(GovError::NotDue {
                id: self.id,
                height,
                end: window.end,
            });
        }
        tally::check_within_total(self.id, &counts, window.power_total)?;
        let result = tally::decide(&counts, window.power_total, params);
        let burn = match result.outcome {
            Outcome::Passed | Outcome::Rejected(_) => false,
            Outcome::Vetoed | Outcome::DepositLapsed => true,
        };
        let execute = (result.outcome == Outcome::Passed).then(|| self.content.action.clone());
        let resolution = Resolution {
            id: self.id,
            outcome: result.outcome,
            tally: Some(result),
            deposits: self.disposition(burn),
            execute,
        };
        self.status = ProposalStatus::Finished {
            at: height,
            outcome: result.outcome,
            voting: Some(window),
            tally: Some(result),
        };
        Ok(resolution)
    }

    /// Counts `votes` (the latest vote of each voter) with each voter's
    /// snapshot power, for [`Proposal::conclude`] or a query.
    pub fn count_votes<S: StakeSnapshot + ?Sized>(
        &self,
        votes: &BTreeMap<PublicKey, WeightedVote>,
        snapshot: &S,
    ) -> Result<TallyCounts, GovError> {
        let window = self.voting_window_any()?;
        tally::count_votes(self.id, votes, snapshot, window.power_total)
    }

    /// The tally so far and what it would decide if voting ended now
    /// (query). For a finished proposal, prefer the stored final tally.
    pub fn tally_so_far<S: StakeSnapshot + ?Sized>(
        &self,
        votes: &BTreeMap<PublicKey, WeightedVote>,
        snapshot: &S,
        params: &GovParams,
    ) -> Result<TallyResult, GovError> {
        let window = self.voting_window_any()?;
        let counts = tally::count_votes(self.id, votes, snapshot, window.power_total)?;
        Ok(tally::decide(&counts, window.power_total, params))
    }

    /// Blocks after `height` still left in the current period (0 in its
    /// last block), or `None` once finished.
    pub fn blocks_left(&self, height: Height) -> Option<u64> {
        match &self.status {
            ProposalStatus::DepositPeriod => Some(self.deposit_end.0.saturating_sub(height.0)),
            ProposalStatus::VotingPeriod(w) => Some(w.end.0.saturating_sub(height.0)),
            ProposalStatus::Finished { .. } => None,
        }
    }

    /// Re-checks a record read back from the store: the deposit total is the
    /// sum of positive deposits from at most [`limits::MAX_DEPOSITORS`]
    /// depositors, and the periods are in order.
    pub fn check(&self) -> Result<(), GovError> {
        let corrupt = |reason| GovError::Corrupt {
            id: self.id,
            reason,
        };
        if self.deposits.len() > limits::MAX_DEPOSITORS {
            return Err(corrupt("too many depositors"));
        }
        let mut sum = Amount::ZERO;
        for amount in self.deposits.values() {
            if amount.is_zero() {
                return Err(corrupt("zero deposit"));
            }
            sum = sum
                .checked_add(*amount)
                .ok_or(corrupt("deposits overflow"))?;
        }
        if sum != self.deposit_total {
            return Err(corrupt("deposit total is not the sum of deposits"));
        }
        if self.deposit_end < self.submitted_at {
            return Err(corrupt("deposit period ends before submission"));
        }
        if let ProposalStatus::VotingPeriod(w) = &self.status {
            if w.end < w.start || w.start < self.submitted_at {
                return Err(corrupt("voting window out of order"));
            }
            if self.deposit_total < self.min_deposit {
                return Err(corrupt("voting without the minimum deposit"));
            }
        }
        Ok(())
    }

    fn disposition(&self, burn: bool) -> DepositDisposition {
        if burn {
            DepositDisposition {
                refunds: Vec::new(),
                burned: self.deposit_total,
            }
        } else {
            DepositDisposition {
                refunds: self.deposits.iter().map(|(k, a)| (*k, *a)).collect(),
                burned: Amount::ZERO,
            }
        }
    }

    fn expect_phase(&self, expected: Phase) -> Result<(), GovError> {
        let actual = self.phase();
        if actual != expected {
            return Err(GovError::WrongPhase {
                id: self.id,
                expected,
                actual,
            });
        }
        Ok(())
    }

    fn voting_window_open(&self) -> Result<VotingWindow, GovError> {
        match &self.status {
            ProposalStatus::VotingPeriod(w) => Ok(*w),
            _ => Err(GovError::WrongPhase {
                id: self.id,
                expected: Phase::VotingPeriod,
                actual: self.phase(),
            }),
        }
    }

    fn voting_window_any(&self) -> Result<VotingWindow, GovError> {
        match &self.status {
            ProposalStatus::VotingPeriod(w)
            | ProposalStatus::Finished {
                voting: Some(w), ..
            } => Ok(*w),
            _ => Err(GovError::WrongPhase {
                id: self.id,
                expected: Phase::VotingPeriod,
                actual: self.phase(),
            }),
        }
    }

    pub fn id(&self) -> ProposalId {
        self.id
    }

    pub fn proposer(&self) -> &PublicKey {
        &self.proposer
    }

    pub fn content(&self) -> &ProposalContent {
        &self.content
    }

    pub fn submitted_at(&self) -> Height {
        self.submitted_at
    }

    /// Last block in which deposits are accepted.
    pub fn deposit_end(&self) -> Height {
        self.deposit_end
    }

    pub fn min_deposit(&self) -> Amount {
        self.min_deposit
    }

    pub fn deposits(&self) -> &BTreeMap<PublicKey, Amount> {
        &self.deposits
    }

    pub fn deposit_total(&self) -> Amount {
        self.deposit_total
    }

    pub fn status(&self) -> &ProposalStatus {
        &self.status
    }

    pub fn phase(&self) -> Phase {
        match self.status {
            ProposalStatus::DepositPeriod => Phase::DepositPeriod,
            ProposalStatus::VotingPeriod(_) => Phase::VotingPeriod,
            ProposalStatus::Finished { .. } => Phase::Finished,
        }
    }

    /// In its deposit or voting period: what the active-proposal cap counts.
    pub fn is_active(&self) -> bool {
        self.phase() != Phase::Finished
    }
}

fn add_blocks(height: Height, blocks: u64) -> Result<Height, GovError> {
    height
        .0
        .checked_add(blocks)
        .map(Height)
        .ok_or(GovError::HeightOverflow { height, blocks })
}
