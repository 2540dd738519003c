//! The vote keeper: signed votes, timeouts and proposal headers in;
//! certificates and equivocation evidence out.
//!
//! Rules (Jolteon, Gelashvili et al., FC 2022, Fig. 3; DiemBFT v4):
//!
//! - **Votes go to the next leader**, who forms QC(r) from the votes of
//!   round r (Fig. 3 "Voting rule": "send vote to L(r+1)"). A vote is kept
//!   unchecked and its signature checked only when the votes for one block
//!   would form a quorum, all unchecked ones in one parallel batch
//!   ([`VoteKeeper::add_vote`]). Signatures that fail are dropped and their
//!   signers returned ([`VoteOutcome::forged`]), so the caller can attribute
//!   them.
//! - **Quorum** is strictly more than two thirds of the epoch's power
//!   ([`crate::certs::qc_has_quorum`]), counted over distinct signers of one
//!   [`crate::VoteData`].
//! - **A forgery cannot shadow a real vote.** Two copies of one vote data
//!   under different signatures, the stored one unchecked: the new one is
//!   checked at once and replaces the stored one if good (the voter never
//!   sends its vote twice, so keeping the first would let a forgery sent
//!   ahead stop the QC).
//! - **Equivocation** (two signed votes for different blocks, two timeouts
//!   reporting different highest-QC rounds, two proposals of different
//!   blocks, all in one round) becomes [`Evidence`], reported once per
//!   (round, validator, kind) and at most [`limits::MAX_PENDING_EVIDENCE`]
//!   per `Ready`.
//! - **Timeouts** (Fig. 3 "Pacemaker"): the signed headers of round r form
//!   TC(r) at a quorum ([`VoteKeeper::add_timeout`]); a replica joins a
//!   round's timeout once the timeouts it holds reach more than a third of
//!   the power ([`VoteKeeper::timeout_power`]), at least one honest.
//! - **Memory** is bounded by rounds: votes and timeouts of the two rounds
//!   before the current one, proposal headers and evidence marks of the last
//!   [`limits::MAX_TRACKED_ROUNDS`] ([`VoteKeeper::prune`]).

use std::collections::{BTreeMap, BTreeSet};

use commons_types::batch::{VerifyItem, verify_all};
use commons_types::{ChainId, Epoch, PublicKey, Round, Signature, ValidatorIndex, ValidatorSet};
use tracing::debug;

use crate::certs::qc_has_quorum;
use crate::message::{
    Evidence, QuorumCert, SignedProposal, SignedTimeout, TimeoutCert, TimeoutSignature, Vote,
};
use crate::pacemaker::check_window;
use crate::{Reject, limits};

/// The kinds of equivocation, each reported once per round and validator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Proposals = 1,
    Votes = 2,
    Timeouts = 3,
}

#[derive(Debug, Default)]
struct RoundVotes {
    /// Each voter's vote, and whether its signature was checked.
    by_voter: BTreeMap<ValidatorIndex, (Vote, bool)>,
    formed: bool,
}

#[derive(Debug, Default)]
struct RoundTimeouts {
    by_voter: BTreeMap<ValidatorIndex, SignedTimeout>,
    formed: bool,
}

/// What adding a vote produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct VoteOutcome {
    /// The QC the vote completed, if it did.
    pub qc: Option<QuorumCert>,
    /// Voters whose stored signatures failed the batch check and were
    /// dropped: forged by whoever sent them.
    pub forged: Vec<ValidatorIndex>,
}

/// Whether a timeout is new to the keeper.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TimeoutSeen {
    /// Not seen: signature checked, to be counted once its certificates are.
    Fresh,
    /// This voter's timeout for the round, seen before.
    Duplicate,
}

/// Whether a proposal header is new to the keeper.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ProposalSeen {
    First,
    Again,
}

/// Votes, timeouts and proposal headers by round; evidence marks.
#[derive(Debug, Default)]
pub(crate) struct VoteKeeper {
    votes: BTreeMap<Round, RoundVotes>,
    timeouts: BTreeMap<Round, RoundTimeouts>,
    proposals: BTreeMap<(Round, ValidatorIndex), SignedProposal>,
    evidence_seen: BTreeSet<(Round, ValidatorIndex, Kind)>,
}

impl VoteKeeper {
    /// Forgets what the current round `round` no longer needs.
    pub(crate) fn prune(&mut self, round: Round) {
        let keep_from = Round(round.0.saturating_sub(2));
        self.votes = self.votes.split_off(&keep_from);
        self.timeouts = self.timeouts.split_off(&keep_from);
        let keep_seen = Round(round.0.saturating_sub(limits::MAX_TRACKED_ROUNDS as u64));
        self.proposals = self.proposals.split_off(&(keep_seen, ValidatorIndex(0)));
        self.evidence_seen =
            self.evidence_seen
                .split_off(&(keep_seen, ValidatorIndex(0), Kind::Proposals));
    }

    /// A new epoch: nothing of the old one counts.
    pub(crate) fn clear(&mut self) {
        *self = VoteKeeper::default();
    }

    fn report(
        &mut self,
        round: Round,
        validator: ValidatorIndex,
        kind: Kind,
        evidence: Evidence,
        out: &mut Vec<Evidence>,
    ) {
        if self.evidence_seen.insert((round, validator, kind))
            && out.len() < limits::MAX_PENDING_EVIDENCE
        {
            debug!(
                round = round.0,
                validator = validator.0,
                "equivocation evidence"
            );
            out.push(evidence);
        }
    }

    // ----- proposals -----------------------------------------------------

    /// Notes a proposal header whose signature was checked. Two headers of
    /// one proposer in one round naming different blocks are evidence.
    pub(crate) fn note_proposal(
        &mut self,
        header: SignedProposal,
        out: &mut Vec<Evidence>,
    ) -> Result<ProposalSeen, Reject> {
        let key = (header.round, header.proposer);
        match self.proposals.get(&key).copied() {
            Some(first) if first.block_id != header.block_id => {
                self.report(
                    header.round,
                    header.proposer,
                    Kind::Proposals,
                    Evidence::ConflictingProposals {
                        first,
                        second: header,
                    },
                    out,
                );
                Err(Reject::Equivocation {
                    validator: header.proposer,
                    round: header.round,
                })
            }
            Some(_) => Ok(ProposalSeen::Again),
            None => {
                self.proposals.insert(key, header);
                Ok(ProposalSeen::First)
            }
        }
    }

    /// Notes this replica's own proposal.
    pub(crate) fn note_own_proposal(&mut self, header: SignedProposal) {
        self.proposals
            .insert((header.round, header.proposer), header);
    }

    // ----- votes ---------------------------------------------------------

    /// A vote sent to this replica by a voter of `set` (`key` its key) in
    /// round `current`: refused unless it is of the current or previous
    /// round (or a few ahead) and this replica leads the round after the
    /// vote's (`leads_next`, asked only of a vote in the window); a
    /// duplicate or an equivocation is refused too;
    /// otherwise it is added (unchecked, or checked when it had to be told
    /// from another copy).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_vote(
        &mut self,
        vote: Vote,
        key: &PublicKey,
        current: Round,
        leads_next: impl FnOnce() -> bool,
        set: &ValidatorSet,
        chain: &ChainId,
        evidence: &mut Vec<Evidence>,
    ) -> Result<VoteOutcome, Reject> {
        let round = vote.data.round;
        if round.next() < current {
            return Err(Reject::OldRound {
                what: "vote",
                round,
                current,
            });
        }
        check_window("vote", round, current)?;
        if !leads_next() {
            return Err(Reject::NotNextLeader { round });
        }
        if let Some((first, verified)) = self
            .votes
            .get(&round)
            .and_then(|rv| rv.by_voter.get(&vote.voter))
            .cloned()
        {
            if first.data == vote.data {
                if verified || first.signature == vote.signature {
                    return Ok(VoteOutcome::default());
                }
                // The same data under another signature, while the stored
                // copy is unchecked: one of them is forged. The new one is
                // checked now and, if good, replaces the stored one.
                key.verify_raw(&vote.data.signing_bytes(chain), &vote.signature)
                    .map_err(|_| Reject::BadSignature {
                        what: "vote",
                        signer: vote.voter,
                    })?;
                return Ok(self.add_vote(vote, true, set, chain));
            }
            if key
                .verify_raw(&vote.data.signing_bytes(chain), &vote.signature)
                .is_err()
            {
                return Err(Reject::BadSignature {
                    what: "vote",
                    signer: vote.voter,
                });
            }
            let first_ok = verified
                || key
                    .verify_raw(&first.data.signing_bytes(chain), &first.signature)
                    .is_ok();
            if first_ok {
                let voter = vote.voter;
                self.report(
                    round,
                    voter,
                    Kind::Votes,
                    Evidence::ConflictingVotes {
                        first,
                        second: vote,
                    },
                    evidence,
                );
                return Err(Reject::Equivocation {
                    validator: voter,
                    round,
                });
            }
            // The stored one was a forgery: the new one replaces it.
        }
        Ok(self.add_vote(vote, false, set, chain))
    }

    /// Adds a vote (its signature checked or not) and forms a QC once the
    /// votes for one block reach a quorum, checking the unchecked ones in
    /// one batch first (Jolteon Fig. 3: the next leader forms the QC).
    pub(crate) fn add_vote(
        &mut self,
        vote: Vote,
        verified: bool,
        set: &ValidatorSet,
        chain: &ChainId,
    ) -> VoteOutcome {
        let mut outcome = VoteOutcome::default();
        let round = vote.data.round;
        let data = vote.data;
        let rv = self.votes.entry(round).or_default();
        if rv.formed {
            return outcome;
        }
        rv.by_voter.insert(vote.voter, (vote, verified));
        let matching = |rv: &RoundVotes| -> Vec<ValidatorIndex> {
            rv.by_voter
                .iter()
                .filter(|(_, (v, _))| v.data == data)
                .map(|(i, _)| *i)
                .collect()
        };
        let power = set.power_of_set(matching(rv)).unwrap_or(0);
        if !qc_has_quorum(set, power) {
            return outcome;
        }
        // Check every unchecked signature for this block in one batch.
        let signed = data.signing_bytes(chain);
        let unchecked: Vec<(ValidatorIndex, Signature)> = rv
            .by_voter
            .iter()
            .filter(|(_, (v, ok))| v.data == data && !ok)
            .map(|(i, (v, _))| (*i, v.signature))
            .collect();
        let items: Vec<VerifyItem<'_>> = unchecked
            .iter()
            .filter_map(|(i, s)| {
                set.get(*i).map(|v| VerifyItem {
                    public_key: v.public_key,
                    signed: &signed,
                    signature: *s,
                })
            })
            .collect();
        let results = verify_all(&items);
        for ((i, _), ok) in unchecked.iter().zip(results) {
            if ok {
                if let Some(entry) = rv.by_voter.get_mut(i) {
                    entry.1 = true;
                }
            } else {
                debug!(
                    round = round.0,
                    validator = i.0,
                    "bad vote signature dropped"
                );
                rv.by_voter.remove(i);
                outcome.forged.push(*i);
            }
        }
        let voters = matching(rv);
        let power = set.power_of_set(voters.iter().copied()).unwrap_or(0);
        if !qc_has_quorum(set, power) {
            return outcome;
        }
        rv.formed = true;
        let signatures: Vec<(ValidatorIndex, Signature)> = voters
            .iter()
            .filter_map(|i| rv.by_voter.get(i).map(|(v, _)| (*i, v.signature)))
            .collect();
        debug!(height = data.height.0, round = round.0, "QC formed");
        outcome.qc = Some(QuorumCert { data, signatures });
        outcome
    }

    // ----- timeouts ------------------------------------------------------

    /// A timeout whose round and highest-QC round were checked: a copy of
    /// one already held is a duplicate; otherwise its signature is checked,
    /// and a second, different timeout of the voter for the round is
    /// evidence.
    pub(crate) fn check_timeout(
        &mut self,
        header: SignedTimeout,
        key: &PublicKey,
        chain: &ChainId,
        evidence: &mut Vec<Evidence>,
    ) -> Result<TimeoutSeen, Reject> {
        let round = header.round;
        let existing = self
            .timeouts
            .get(&round)
            .and_then(|rt| rt.by_voter.get(&header.voter))
            .copied();
        if existing.is_some_and(|e| e.high_qc_round == header.high_qc_round) {
            return Ok(TimeoutSeen::Duplicate);
        }
        key.verify_raw(&header.signing_bytes(chain), &header.signature)
            .map_err(|_| Reject::BadSignature {
                what: "timeout",
                signer: header.voter,
            })?;
        if let Some(first) = existing {
            self.report(
                round,
                header.voter,
                Kind::Timeouts,
                Evidence::ConflictingTimeouts {
                    first,
                    second: header,
                },
                evidence,
            );
            return Err(Reject::Equivocation {
                validator: header.voter,
                round,
            });
        }
        Ok(TimeoutSeen::Fresh)
    }

    /// Adds a checked timeout and forms TC(round) at a quorum. Timeouts of
    /// rounds more than two below `current` are not kept.
    pub(crate) fn add_timeout(
        &mut self,
        header: SignedTimeout,
        current: Round,
        set: &ValidatorSet,
        epoch: Epoch,
    ) -> Option<TimeoutCert> {
        let round = header.round;
        if round.0 + 2 < current.0 {
            return None;
        }
        let rt = self.timeouts.entry(round).or_default();
        if rt.formed {
            return None;
        }
        rt.by_voter.insert(header.voter, header);
        let power = set.power_of_set(rt.by_voter.keys().copied()).unwrap_or(0);
        if !qc_has_quorum(set, power) {
            return None;
        }
        rt.formed = true;
        let entries = rt
            .by_voter
            .values()
            .map(|t| TimeoutSignature {
                voter: t.voter,
                high_qc_round: t.high_qc_round,
                signature: t.signature,
            })
            .collect();
        debug!(round = round.0, "TC formed");
        Some(TimeoutCert {
            epoch,
            round,
            entries,
        })
    }

    /// The power of the validators whose timeouts of `round` are held.
    pub(crate) fn timeout_power(&self, round: Round, set: &ValidatorSet) -> Option<u64> {
        self.timeouts
            .get(&round)
            .map(|rt| set.power_of_set(rt.by_voter.keys().copied()).unwrap_or(0))
    }
}

#[cfg(test)]
#[path = "vote_keeper_tests/mod.rs"]
mod tests;
