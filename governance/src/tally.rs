//! Counting votes against a stake snapshot and deciding the outcome.
//!
//! With `total` the snapshot's total power, the counts `yes`, `no`,
//! `abstain`, `veto` (no-with-veto), and `turnout = yes + no + abstain +
//! veto`, all products taken in `u128`:
//!
//! | rule | holds when | boundary |
//! | --- | --- | --- |
//! | quorum | `turnout > 0 && turnout * 1000 >= quorum_permille * total` | inclusive: exactly the parameter reaches quorum |
//! | veto | `veto * 1000 >= veto_permille * turnout` | inclusive: exactly the parameter vetoes |
//! | threshold | `yes * 1000 > threshold_permille * (yes + no + veto)` | strict: a tie fails |
//!
//! The outcome, in this order: no quorum → `Rejected(NoQuorum)`; veto →
//! `Vetoed`; threshold → `Passed`; otherwise `Rejected(BelowThreshold)`.
//! Abstain counts towards quorum and towards the veto's denominator but not
//! towards the threshold's, as in Cosmos SDK. `turnout > 0` keeps a vote
//! nobody took part in from reaching quorum against a total of zero.
//! Departure from Cosmos SDK: there the veto is strict (`>`); here exactly
//! the parameter vetoes, so a veto share of "one third" means what it says.

use std::collections::BTreeMap;

use commons_types::PublicKey;
use serde::{Deserialize, Serialize};

use crate::{GovError, GovParams, ProposalId, WeightedVote, limits};

/// The ledger's view of voting power: the bonded stake of an account at the
/// moment a proposal entered voting.
///
/// The ledger implements it with copy-on-write: while proposals are in
/// voting, the first change of an account's bonded stake records the
/// pre-change stake for each of those proposals; an account without such a
/// record still has its snapshot stake as current stake. The ledger must
/// start recording from the very transaction that moved the proposal into
/// voting ([`crate::DepositEffect::VotingStarted`]), including later
/// transactions of the same block, and the sum of `power_at_voting_start`
/// over all accounts must equal the `power_total` it passed then.
pub trait StakeSnapshot {
    fn power_at_voting_start(&self, id: ProposalId, voter: &PublicKey) -> u64;
}

/// Power counted per option. Each voter's power is divided by
/// [`WeightedVote::split`], so a voter adds exactly its power to `turnout`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TallyCounts {
    pub yes: u64,
    pub no: u64,
    pub abstain: u64,
    pub no_with_veto: u64,
}

impl TallyCounts {
    /// All power cast, abstain included.
    pub fn turnout(&self) -> u128 {
        u128::from(self.yes)
            + u128::from(self.no)
            + u128::from(self.abstain)
            + u128::from(self.no_with_veto)
    }

    fn parts_mut(&mut self) -> [&mut u64; 4] {
        [
            &mut self.yes,
            &mut self.no,
            &mut self.abstain,
            &mut self.no_with_veto,
        ]
    }

    /// Adds one voter's vote with its snapshot power. For a running tally:
    /// when a voter changes its vote, [`TallyCounts::remove_vote`] the old
    /// one with the same power first.
    pub fn add_vote(&mut self, power: u64, vote: &WeightedVote) -> Result<(), GovError> {
        let parts = vote.split(power);
        let mut next = *self;
        for (count, part) in next.parts_mut().into_iter().zip(parts) {
            *count = count
                .checked_add(part)
                .ok_or(GovError::Overflow { what: "tally" })?;
        }
        *self = next;
        Ok(())
    }

    /// Takes back a vote added by [`TallyCounts::add_vote`] with the same
    /// power. Fails, changing nothing, if the vote was never added.
    pub fn remove_vote(&mut self, power: u64, vote: &WeightedVote) -> Result<(), GovError> {
        let parts = vote.split(power);
        let mut next = *self;
        for (count, part) in next.parts_mut().into_iter().zip(parts) {
            *count = count
                .checked_sub(part)
                .ok_or(GovError::TallyUnderflow { power })?;
        }
        *self = next;
        Ok(())
    }
}

/// How a vote ended, or that it never started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Deposits return; the action executes.
    Passed,
    /// Deposits return; nothing executes.
    Rejected(RejectReason),
    /// Deposits burn; nothing executes.
    Vetoed,
    /// The deposit period ended below the minimum deposit: deposits burn.
    DepositLapsed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejectReason {
    NoQuorum,
    BelowThreshold,
}

/// A tally and each rule's verdict on it (module doc has the rules).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TallyResult {
    pub counts: TallyCounts,
    pub power_total: u64,
    pub quorum_reached: bool,
    pub vetoed: bool,
    pub threshold_reached: bool,
    /// Never [`Outcome::DepositLapsed`].
    pub outcome: Outcome,
}

/// Applies the rules of the module doc. Pure; usable for a provisional
/// "tally so far" as well as the final one. Products are in `u128` and
/// cannot saturate for counts within a `u64` total and parameters within
/// their registered ranges.
pub fn decide(counts: &TallyCounts, power_total: u64, params: &GovParams) -> TallyResult {
    let per = u128::from(limits::PERMILLE);
    let turnout = counts.turnout();
    let yes = u128::from(counts.yes);
    let no = u128::from(counts.no);
    let veto = u128::from(counts.no_with_veto);
    let total = u128::from(power_total);

    let quorum_reached = turnout > 0
        && turnout.saturating_mul(per) >= u128::from(params.quorum_permille).saturating_mul(total);
    let vetoed =
        turnout > 0 && veto * per >= u128::from(params.veto_permille).saturating_mul(turnout);
    let threshold_reached =
        yes * per > u128::from(params.threshold_permille).saturating_mul(yes + no + veto);

    let outcome = if !quorum_reached {
        Outcome::Rejected(RejectReason::NoQuorum)
    } else if vetoed {
        Outcome::Vetoed
    } else if threshold_reached {
        Outcome::Passed
    } else {
        Outcome::Rejected(RejectReason::BelowThreshold)
    };
    TallyResult {
        counts: *counts,
        power_total,
        quorum_reached,
        vetoed,
        threshold_reached,
        outcome,
    }
}

/// Counts `votes` (one per voter: the latest replaces earlier ones in the
/// ledger's store, so a map is the right shape) with each voter's snapshot
/// power. Fails if the power counted exceeds `power_total`, which only a
/// snapshot inconsistent with its total can cause.
pub fn count_votes<S: StakeSnapshot + ?Sized>(
    id: ProposalId,
    votes: &BTreeMap<PublicKey, WeightedVote>,
    snapshot: &S,
    power_total: u64,
) -> Result<TallyCounts, GovError> {
    let mut counts = TallyCounts::default();
    for (voter, vote) in votes {
        counts.add_vote(snapshot.power_at_voting_start(id, voter), vote)?;
        check_within_total(id, &counts, power_total)?;
    }
    Ok(counts)
}

pub(crate) fn check_within_total(
    id: ProposalId,
    counts: &TallyCounts,
    power_total: u64,
) -> Result<(), GovError> {
    let counted = counts.turnout();
    if counted > u128::from(power_total) {
        return Err(GovError::PowerExceedsSnapshot {
            id,
            counted,
            total: power_total,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VoteOption;

    fn counts(yes: u64, no: u64, abstain: u64, no_with_veto: u64) -> TallyCounts {
        TallyCounts {
            yes,
            no,
            abstain,
            no_with_veto,
        }
    }

    fn params(quorum: u64, threshold: u64, veto: u64) -> GovParams {
        GovParams {
            quorum_permille: quorum,
            threshold_permille: threshold,
            veto_permille: veto,
            ..GovParams::default()
        }
    }

    #[test]
    fn boundaries_by_table() {
        use Outcome::*;
        use RejectReason::*;
        let p = params(334, 500, 334);
        // (counts, total, expected outcome, why)
        let cases = [
            // Quorum: 334 of 1000 is exactly the parameter: reached.
            (counts(334, 0, 0, 0), 1000, Passed, "quorum exactly"),
            (
                counts(333, 0, 0, 0),
                1000,
                Rejected(NoQuorum),
                "quorum one short",
            ),
            // Quorum counts abstain.
            (counts(1, 0, 333, 0), 1000, Passed, "abstain makes quorum"),
            // Threshold: a tie fails, one more yes passes.
            (
                counts(500, 500, 0, 0),
                1000,
                Rejected(BelowThreshold),
                "tie",
            ),
            (counts(501, 499, 0, 0), 1000, Passed, "one over tie"),
            // Abstain is outside the threshold's denominator.
            (
                counts(300, 299, 401, 0),
                1000,
                Passed,
                "abstain ignored by threshold",
            ),
            // All abstain: quorum reached, threshold not (0 > 0 is false).
            (
                counts(0, 0, 1000, 0),
                1000,
                Rejected(BelowThreshold),
                "all abstain",
            ),
            // Veto: exactly 334 of 1000 cast vetoes, 333 does not.
            (counts(666, 0, 0, 334), 1000, Vetoed, "veto exactly"),
            (counts(667, 0, 0, 333), 1000, Passed, "veto one short"),
            // Veto's denominator includes abstain.
            (counts(0, 0, 666, 334), 1000, Vetoed, "veto over all cast"),
            // Veto wins over a passing yes share.
            (counts(600, 0, 0, 400), 1000, Vetoed, "veto beats yes"),
            // Veto needs quorum first.
            (
                counts(0, 0, 0, 300),
                1000,
                Rejected(NoQuorum),
                "veto without quorum",
            ),
            // Nobody voted against a total of zero.
            (
                counts(0, 0, 0, 0),
                0,
                Rejected(NoQuorum),
                "empty vote, empty total",
            ),
            (counts(0, 0, 0, 0), 1000, Rejected(NoQuorum), "empty vote"),
            // Exactness at the largest powers.
            (
                counts(u64::MAX / 2 + 1, u64::MAX / 2, 0, 0),
                u64::MAX,
                Passed,
                "huge, one over",
            ),
            (
                counts(u64::MAX / 2, u64::MAX / 2, 0, 0),
                u64::MAX - 1,
                Rejected(BelowThreshold),
                "huge tie",
            ),
        ];
        for (c, total, expected, why) in cases {
            assert_eq!(decide(&c, total, &p).outcome, expected, "{why}");
        }
    }

    #[test]
    fn quorum_boundary_with_a_total_not_divisible_by_1000() {
        // 334‰ of 7 is 2.338: turnout 3 reaches it, 2 does not.
        let p = params(334, 500, 334);
        assert!(decide(&counts(3, 0, 0, 0), 7, &p).quorum_reached);
        assert!(!decide(&counts(2, 0, 0, 0), 7, &p).quorum_reached);
        // 500‰ of 10 is exactly 5: reached.
        let p = params(500, 500, 334);
        assert!(decide(&counts(0, 5, 0, 0), 10, &p).quorum_reached);
        assert!(!decide(&counts(0, 4, 0, 0), 10, &p).quorum_reached);
    }

    #[test]
    fn running_tally_add_then_remove_restores() {
        let vote =
            WeightedVote::new(&[(VoteOption::Yes, 700), (VoteOption::Abstain, 300)]).unwrap();
        let mut c = counts(5, 6, 7, 8);
        c.add_vote(11, &vote).unwrap();
        assert_eq!(c, counts(5 + 8, 6, 7 + 3, 8));
        c.remove_vote(11, &vote).unwrap();
        assert_eq!(c, counts(5, 6, 7, 8));
        let before = c;
        assert_eq!(
            c.remove_vote(100, &vote),
            Err(GovError::TallyUnderflow { power: 100 })
        );
        assert_eq!(c, before, "a failed removal changes nothing");
        let mut full = counts(u64::MAX, 0, 0, 0);
        assert_eq!(
            full.add_vote(1, &WeightedVote::single(VoteOption::Yes)),
            Err(GovError::Overflow { what: "tally" })
        );
    }
}
