//! The safety rules. Each decision a deliberately broken variant may later
//! change is one small function here (or in [`crate::certs`]), so that a
//! mutation is one edit and its effect is easy to review.

use commons_types::{Hash, Round};

use crate::Reject;
use crate::message::{SafetyRecord, TimeoutCert, VoteData};

/// Jolteon's voting rule (Gelashvili et al., Fig. 3 "Voting rule"; DiemBFT
/// v4 `safe_to_vote`): vote in round `block_round` only once (above every
/// round already voted or timed out in), and only for a block that extends
/// the QC of the previous round, or the TC of the previous round together
/// with a QC at least as high as every QC its signers reported.
pub(crate) fn is_safe_to_vote(
    record: &SafetyRecord,
    block_round: Round,
    qc_round: Round,
    tc: Option<&TimeoutCert>,
) -> Result<(), Reject> {
    // Jolteon Fig. 3, voting rule: "r > r_vote".
    if block_round <= record.last_voted_round {
        return Err(Reject::StaleRound {
            round: block_round,
            last_voted: record.last_voted_round,
        });
    }
    // Jolteon Fig. 3, voting rule (1): "B.QC.r + 1 = r".
    if qc_round.next() == block_round {
        return Ok(());
    }
    // Jolteon Fig. 3, voting rule (2): "B.TC.r + 1 = r and
    // B.QC.r >= max{qc_high.r | qc_high in B.TC}".
    match tc {
        Some(tc) if tc.round.next() == block_round => {
            if locking_rule_holds(qc_round, tc) {
                Ok(())
            } else {
                Err(Reject::BreaksLock {
                    qc_round,
                    lock: tc_lock_round(tc),
                })
            }
        }
        _ => Err(Reject::NotExtendingPreviousRound {
            round: block_round,
            qc_round,
        }),
    }
}

/// The 2-chain lock as a TC carries it: a block justified by a TC must
/// extend a QC at least as high as the highest one among the TC's signers,
/// since one of those honest signers may hold the QC that commits (Jolteon
/// §4, safety proof of the view change).
pub(crate) fn locking_rule_holds(qc_round: Round, tc: &TimeoutCert) -> bool {
    #[cfg(feature = "mutations")]
    if crate::mutations::is(crate::mutations::Mutation::LockingRuleDropped) {
        return true;
    }
    qc_round >= tc_lock_round(tc)
}

/// The round a block after `tc` must extend at least: the highest QC round
/// reported in the TC.
pub(crate) fn tc_lock_round(tc: &TimeoutCert) -> Round {
    #[cfg(feature = "mutations")]
    if crate::mutations::is(crate::mutations::Mutation::TcIgnoresHighestQc) {
        return tc
            .entries
            .iter()
            .map(|e| e.high_qc_round)
            .min()
            .unwrap_or(Round::ZERO);
    }
    tc.highest_qc_round()
}

/// DiemBFT v4 `safe_to_timeout`: time out a round only after entering it
/// legitimately (QC or TC of the previous round), never reporting a QC below
/// the highest seen, and never in a round below the last one voted in.
pub(crate) fn is_safe_to_timeout(
    record: &SafetyRecord,
    round: Round,
    qc_round: Round,
    last_tc_round: Option<Round>,
) -> Result<(), Reject> {
    if qc_round < record.highest_qc_round {
        return Err(Reject::Unexpected {
            what: "timeout",
            reason: "highest QC is below the recorded one",
        });
    }
    if round < record.last_voted_round || round <= qc_round {
        return Err(Reject::StaleRound {
            round,
            last_voted: record.last_voted_round,
        });
    }
    let entered = qc_round.next() == round || last_tc_round.is_some_and(|r| r.next() == round);
    if entered {
        Ok(())
    } else {
        Err(Reject::Unexpected {
            what: "timeout",
            reason: "round was not entered by a QC or TC of the previous round",
        })
    }
}

/// Jolteon's commit rule (Fig. 3, "Commit rule"): a QC for a block whose
/// parent is in the immediately preceding round commits that parent (and its
/// ancestors). Returns the block it commits, if any.
pub(crate) fn commit_rule(qc: &VoteData) -> Option<Hash> {
    #[cfg(feature = "mutations")]
    if crate::mutations::is(crate::mutations::Mutation::CommitOneChain) {
        // The QC's block itself commits: its parent is committed with it.
        return (qc.round > Round::ZERO).then_some(qc.block_id);
    }
    if qc.parent_round.next() == qc.round && qc.round > Round::ZERO {
        Some(qc.parent_id)
    } else {
        None
    }
}
