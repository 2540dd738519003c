//! Voting: the safety record and every signature it guards (votes,
//! timeouts, proposals), and the rule that the record reaches stable
//! storage before any of them leaves.
//!
//! Rules (Jolteon, Gelashvili et al., FC 2022, Fig. 3 "Voting rule" and
//! "Pacemaker"; DiemBFT v4 "Safety rules", `make_vote`, `make_timeout`):
//!
//! - **Vote** ([`Voter::decide`], [`Voter::sign_vote`]): once per round, for
//!   a block of the current round from the round's leader that passes
//!   [`crate::safety::is_safe_to_vote`] (it extends QC(r-1), or TC(r-1) and
//!   a QC at least as high as every QC reported in it: the 2-chain lock),
//!   whose timestamp is not too far ahead of this replica's clock, and whose
//!   payload the application accepted (its own payload and the empty blocks
//!   past the epoch's end need no check). The vote goes to the next leader.
//! - **Timeout** ([`Voter::timeout`]): once per round, only after entering
//!   it by QC(r-1) or TC(r-1), carrying the highest QC
//!   ([`crate::safety::is_safe_to_timeout`]). A timeout raises the last
//!   voted round (DiemBFT v4 `make_timeout`): no vote in a round after timing
//!   out of it. A restarted replica resends its stored timeout for the round
//!   rather than signing a new one.
//! - **Proposal** ([`Voter::note_proposed`]): once per round, recorded
//!   before it leaves.
//! - **Persist before send** ([`Voter::record_for_ready`],
//!   [`Voter::check_covered`]): each changed record goes out in the `Ready`
//!   that carries the messages it covers, and the replica asserts that every
//!   vote, timeout or proposal it releases is covered by a record released
//!   with it or before it.

use commons_types::{ChainId, Epoch, Hash, Height, Round, SecretKey, ValidatorIndex};
use tracing::debug;

use crate::Reject;
use crate::contract::Outbound;
use crate::message::{
    Block, Message, QuorumCert, RootBlock, SafetyRecord, Timeout, TimeoutCert, Vote,
};
use crate::safety::{is_safe_to_timeout, is_safe_to_vote};
use crate::time::Millis;

/// What to do with a proposal that may be voted for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Nothing more (an observer, or already validating this round).
    Nothing,
    /// Vote now.
    Vote,
    /// Ask the application to validate the payload first.
    Validate,
}

/// The timeout to broadcast for a round.
#[derive(Debug)]
pub(crate) enum TimeoutAction {
    /// Already timed out of this round (perhaps before a restart): the same
    /// timeout again.
    Resend(Timeout),
    /// Newly signed: also counts towards this replica's own TC.
    New(Timeout),
    /// Not safe to time out.
    None,
}

/// The safety record, what was handed to the driver, and the payload being
/// validated before a vote.
#[derive(Debug)]
pub(crate) struct Voter {
    record: SafetyRecord,
    dirty: bool,
    /// The last record handed out in a `Ready`.
    handed: SafetyRecord,
    /// The block of this round whose payload the application is checking.
    validating: Option<(Round, Hash)>,
}

impl Voter {
    pub(crate) fn new(record: SafetyRecord) -> Voter {
        Voter {
            handed: record.clone(),
            record,
            dirty: false,
            validating: None,
        }
    }

    pub(crate) fn record(&self) -> &SafetyRecord {
        &self.record
    }

    /// A new epoch from `root`: a fresh record, to be persisted.
    pub(crate) fn new_epoch(&mut self, epoch: Epoch, root: RootBlock) {
        self.record = SafetyRecord::fresh(epoch, root);
        self.dirty = true;
    }

    /// A new round, or the end of the epoch: no validation is pending.
    pub(crate) fn abandon_round(&mut self) {
        self.validating = None;
    }

    /// A QC of `round` is the highest seen.
    pub(crate) fn raise_qc_round(&mut self, round: Round) {
        if self.record.highest_qc_round < round {
            self.record.highest_qc_round = round;
            self.dirty = true;
        }
    }

    /// Whether and how to vote for `block`, a block in the tree, in `round`
    /// at `now`.
    pub(crate) fn decide(
        &mut self,
        block: &Block,
        round: Round,
        now: Millis,
        clock_drift_ms_max: u64,
        me: Option<ValidatorIndex>,
        epoch_end: Height,
    ) -> Result<Decision, Reject> {
        let block_round = block.round();
        is_safe_to_vote(
            &self.record,
            block_round,
            block.justify().round(),
            block.timeout_cert(),
        )?;
        if block_round != round {
            return Err(Reject::OldRound {
                what: "proposal",
                round: block_round,
                current: round,
            });
        }
        let now_ms = now.as_u64();
        if block.timestamp_ms() > now_ms.saturating_add(clock_drift_ms_max) {
            return Err(Reject::TimestampTooFarAhead {
                timestamp_ms: block.timestamp_ms(),
                now_ms,
                drift_ms: clock_drift_ms_max,
            });
        }
        let Some(me) = me else {
            return Ok(Decision::Nothing);
        };
        if self.validating.is_some_and(|(r, _)| r == block_round) {
            return Ok(Decision::Nothing);
        }
        let after_end = Height(block.height().0 - 1) >= epoch_end;
        if block.proposer() == me || after_end {
            // Our own payload came from the application; blocks after the
            // epoch's end carry none.
            Ok(Decision::Vote)
        } else {
            self.validating = Some((block_round, block.id()));
            Ok(Decision::Validate)
        }
    }

    /// The application's verdict on a payload: the round and block to vote
    /// for if it is the one being validated and valid.
    pub(crate) fn on_validated(
        &mut self,
        block_id: Hash,
        valid: bool,
    ) -> Result<Option<(Round, Hash)>, Reject> {
        let Some((round, id)) = self.validating.filter(|(_, id)| *id == block_id) else {
            return Err(Reject::Unexpected {
                what: "payload verdict",
                reason: "no validation is pending for this block in this round",
            });
        };
        self.validating = None;
        if !valid {
            debug!(round = round.0, "payload invalid; no vote");
            return Ok(None);
        }
        Ok(Some((round, id)))
    }

    /// The voting rule again, for a block whose payload was validated.
    pub(crate) fn check_vote(&self, block: &Block, round: Round) -> Result<(), Reject> {
        is_safe_to_vote(
            &self.record,
            round,
            block.justify().round(),
            block.timeout_cert(),
        )
    }

    /// Signs the vote for `block` and records it.
    pub(crate) fn sign_vote(
        &mut self,
        block: &Block,
        me: ValidatorIndex,
        key: &SecretKey,
        chain: &ChainId,
    ) -> Vote {
        let data = block.vote_data();
        assert!(
            data.round > self.record.last_voted_round,
            "one vote per round"
        );
        assert_eq!(data.epoch, self.record.epoch);
        let vote = Vote::sign(data, me, key, chain);
        self.record.last_voted_round = data.round;
        self.record.last_vote = Some(vote.clone());
        self.dirty = true;
        vote
    }

    /// The timeout for `round` of `epoch`, which this replica entered with
    /// `highest_qc` and, if by a TC, `last_round_tc`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn timeout(
        &mut self,
        epoch: Epoch,
        round: Round,
        highest_qc: &QuorumCert,
        last_round_tc: Option<&TimeoutCert>,
        me: ValidatorIndex,
        key: &SecretKey,
        chain: &ChainId,
    ) -> TimeoutAction {
        // Timed out already in this round (possibly before a restart):
        // resend the same timeout, never a different one.
        if self.record.highest_timeout_round == round
            && let Some(t) = self.record.last_timeout.clone()
            && t.round == round
            && t.epoch == epoch
        {
            return TimeoutAction::Resend(t);
        }
        let last_tc_round = last_round_tc.map(|tc| tc.round);
        if let Err(e) = is_safe_to_timeout(&self.record, round, highest_qc.round(), last_tc_round) {
            debug!(round = round.0, error = %e, "not timing out");
            return TimeoutAction::None;
        }
        let timeout = Timeout::sign(
            epoch,
            round,
            highest_qc.clone(),
            last_round_tc.filter(|tc| tc.round.next() == round).cloned(),
            me,
            key,
            chain,
        );
        // DiemBFT v4 make_timeout: no vote in a round after timing it out.
        self.record.last_voted_round = self.record.last_voted_round.max(round);
        self.record.highest_timeout_round = round;
        self.record.last_timeout = Some(timeout.clone());
        self.dirty = true;
        debug!(round = round.0, validator = me.0, "timeout");
        TimeoutAction::New(timeout)
    }

    /// Records a proposal for `round`; false if this replica proposed in
    /// it already (before a restart), when another block would be a
    /// second proposal for the round.
    pub(crate) fn note_proposed(&mut self, round: Round) -> bool {
        if round <= self.record.last_proposed_round {
            debug!(round = round.0, "already proposed in this round");
            return false;
        }
        self.record.last_proposed_round = round;
        self.dirty = true;
        true
    }

    /// The record to hand out in this `Ready`: whenever it changed.
    /// `signs`: the `Ready` carries a vote or timeout of this replica's (a
    /// mutation may hold the record back then).
    pub(crate) fn record_for_ready(
        &mut self,
        signs: impl FnOnce() -> bool,
    ) -> Option<SafetyRecord> {
        #[cfg(feature = "mutations")]
        if crate::mutations::is(crate::mutations::Mutation::RecordAfterVote) && signs() {
            return None;
        }
        #[cfg(not(feature = "mutations"))]
        let _ = signs;
        if self.dirty {
            self.dirty = false;
            Some(self.record.clone())
        } else {
            None
        }
    }

    /// The driver took `record`.
    pub(crate) fn handed_out(&mut self, record: &SafetyRecord) {
        self.handed = record.clone();
    }

    /// Persist before send: every vote, timeout or proposal of `me` that
    /// leaves now is covered by a record handed out with or before it.
    pub(crate) fn check_covered(&self, messages: &[Outbound], me: Option<ValidatorIndex>) {
        #[cfg(feature = "mutations")]
        if crate::mutations::is(crate::mutations::Mutation::RecordAfterVote) {
            return;
        }
        for m in messages {
            match &m.message {
                Message::Vote(v) if Some(v.voter) == me => {
                    assert_eq!(self.handed.epoch, v.data.epoch);
                    assert!(self.handed.last_voted_round >= v.data.round);
                }
                Message::Timeout(t) if Some(t.voter) == me => {
                    assert_eq!(self.handed.epoch, t.epoch);
                    assert!(self.handed.highest_timeout_round >= t.round);
                }
                Message::Proposal(p) if Some(p.block.proposer()) == me => {
                    assert_eq!(self.handed.epoch, p.block.epoch());
                    assert!(self.handed.last_proposed_round >= p.block.round());
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
#[path = "voting_tests/mod.rs"]
mod tests;
