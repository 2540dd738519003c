//! Tests of the voter, as tables of steps: each step one call, the answer
//! it must give, and the safety record it must leave.

use commons_types::Signature;

use super::*;
use crate::contract::Destination;
use crate::fixtures::{chain, key};
use crate::message::{BlockFields, Proposal, TimeoutSignature, VoteData};

mod timeouts;

const ME: ValidatorIndex = ValidatorIndex(0);
const NOW: Millis = Millis(10_000);
const DRIFT_MS: u64 = 500;
const FAR_END: u64 = 1_000;

fn root() -> RootBlock {
    RootBlock::genesis(&chain(), Hash::digest(b"set"), Hash::ZERO, 1_000)
}

fn root_qc() -> QuorumCert {
    QuorumCert::root(Epoch(0), &root())
}

fn fresh() -> Voter {
    Voter::new(SafetyRecord::fresh(Epoch(0), root()))
}

/// A block of `round` by `proposer` extending `justify`, at `timestamp_ms`.
fn block_at(
    round: u64,
    justify: &QuorumCert,
    tc: Option<TimeoutCert>,
    proposer: u16,
    timestamp_ms: u64,
) -> Block {
    Block::new(BlockFields {
        epoch: Epoch(0),
        round: Round(round),
        height: justify.data.height.next(),
        proposer: ValidatorIndex(proposer),
        timestamp_ms,
        state_root: Hash::ZERO,
        justify: justify.clone(),
        timeout_cert: tc,
        payload: b"payload".to_vec(),
    })
}

fn block(round: u64, justify: &QuorumCert, tc: Option<TimeoutCert>, proposer: u16) -> Block {
    block_at(round, justify, tc, proposer, 5_000 + round)
}

/// The QC of `block` (the voter does not check QC signatures).
fn qc(block: &Block) -> QuorumCert {
    QuorumCert {
        data: block.vote_data(),
        signatures: Vec::new(),
    }
}

/// TC(`round`) whose signers reported the QC rounds `reported`.
fn tc(round: u64, reported: &[u64]) -> TimeoutCert {
    TimeoutCert {
        epoch: Epoch(0),
        round: Round(round),
        entries: reported
            .iter()
            .enumerate()
            .map(|(i, r)| TimeoutSignature {
                voter: ValidatorIndex(i as u16),
                high_qc_round: Round(*r),
                signature: Signature([0; 64]),
            })
            .collect(),
    }
}

fn no_pending_verdict() -> Reject {
    Reject::Unexpected {
        what: "payload verdict",
        reason: "no validation is pending for this block in this round",
    }
}

fn outbound(message: Message) -> Outbound {
    Outbound {
        to: Destination::Broadcast,
        message,
    }
}

// ----- the voting rule -----------------------------------------------------

enum Op {
    Decide {
        block: Block,
        round: u64,
        me: Option<ValidatorIndex>,
        epoch_end: u64,
    },
    Validated {
        block: Hash,
        valid: bool,
    },
    Sign {
        block: Block,
    },
    Abandon,
}

#[derive(Debug, PartialEq, Eq)]
enum Out {
    Decision(Result<Decision, Reject>),
    Verdict(Result<Option<(Round, Hash)>, Reject>),
    Voted(VoteData),
    Done,
}

struct Step {
    what: &'static str,
    op: Op,
    out: Out,
    /// Expected state: the record's last voted round.
    last_voted: u64,
}

fn decide(block: &Block, round: u64, me: Option<ValidatorIndex>, epoch_end: u64) -> Op {
    Op::Decide {
        block: block.clone(),
        round,
        me,
        epoch_end,
    }
}

#[test]
fn votes_follow_the_voting_rule_and_wait_for_the_payload_verdict() {
    use Out::{Decision as D, Done, Verdict, Voted};
    let me = Some(ME);
    let b1 = block(1, &root_qc(), None, 1);
    let b1_other = block(1, &root_qc(), None, 2);
    let q1 = qc(&b1);
    let b2 = block(2, &q1, None, 2);
    let b2_ahead = block_at(2, &q1, None, 2, NOW.0 + DRIFT_MS + 1);
    let b2_at_drift = block_at(2, &q1, None, 2, NOW.0 + DRIFT_MS);
    let b3_no_tc = block(3, &q1, None, 3);
    let b3_old_tc = block(3, &q1, Some(tc(1, &[0, 0, 0])), 3);
    let b3_breaks = block(3, &q1, Some(tc(2, &[1, 2, 0])), 3);
    let b3_tc = block(3, &q1, Some(tc(2, &[1, 1, 0])), 3);
    let b3_own = block(3, &q1, Some(tc(2, &[1, 1, 0])), 0);
    let b4 = block(4, &qc(&b3_own), None, 2);
    assert_eq!(
        b4.height(),
        Height(3),
        "b4 is one above a block of height 2"
    );
    let step = |what, op, out, last_voted| Step {
        what,
        op,
        out,
        last_voted,
    };
    let steps = vec![
        step(
            "an observer checks the rule but does not vote",
            decide(&b1, 1, None, FAR_END),
            D(Ok(Decision::Nothing)),
            0,
        ),
        step(
            "a block of another round than the current one is refused",
            decide(&b1, 2, me, FAR_END),
            D(Err(Reject::OldRound {
                what: "proposal",
                round: Round(1),
                current: Round(2),
            })),
            0,
        ),
        step(
            "another validator's block: the payload is validated first",
            decide(&b1, 1, me, FAR_END),
            D(Ok(Decision::Validate)),
            0,
        ),
        step(
            "a copy while validating: nothing more",
            decide(&b1, 1, me, FAR_END),
            D(Ok(Decision::Nothing)),
            0,
        ),
        step(
            "a verdict on a block not being validated is unexpected",
            Op::Validated {
                block: b1_other.id(),
                valid: true,
            },
            Verdict(Err(no_pending_verdict())),
            0,
        ),
        step(
            "a valid verdict names the round and block to vote for",
            Op::Validated {
                block: b1.id(),
                valid: true,
            },
            Verdict(Ok(Some((Round(1), b1.id())))),
            0,
        ),
        step(
            "the same verdict again is unexpected",
            Op::Validated {
                block: b1.id(),
                valid: true,
            },
            Verdict(Err(no_pending_verdict())),
            0,
        ),
        step(
            "the vote is signed and recorded",
            Op::Sign { block: b1.clone() },
            Voted(b1.vote_data()),
            1,
        ),
        step(
            "the voted round again: stale",
            decide(&b1, 1, me, FAR_END),
            D(Err(Reject::StaleRound {
                round: Round(1),
                last_voted: Round(1),
            })),
            1,
        ),
        step(
            "another block of the voted round: stale",
            decide(&b1_other, 1, me, FAR_END),
            D(Err(Reject::StaleRound {
                round: Round(1),
                last_voted: Round(1),
            })),
            1,
        ),
        step(
            "a timestamp beyond the allowed drift is refused",
            decide(&b2_ahead, 2, me, FAR_END),
            D(Err(Reject::TimestampTooFarAhead {
                timestamp_ms: NOW.0 + DRIFT_MS + 1,
                now_ms: NOW.0,
                drift_ms: DRIFT_MS,
            })),
            1,
        ),
        step(
            "a timestamp at the allowed drift is validated",
            decide(&b2_at_drift, 2, me, FAR_END),
            D(Ok(Decision::Validate)),
            1,
        ),
        step("a new round drops the validation", Op::Abandon, Done, 1),
        step(
            "a verdict after the round was abandoned is unexpected",
            Op::Validated {
                block: b2_at_drift.id(),
                valid: true,
            },
            Verdict(Err(no_pending_verdict())),
            1,
        ),
        step(
            "QC(1) extended in round 2: validate",
            decide(&b2, 2, me, FAR_END),
            D(Ok(Decision::Validate)),
            1,
        ),
        step(
            "an invalid payload: no vote",
            Op::Validated {
                block: b2.id(),
                valid: false,
            },
            Verdict(Ok(None)),
            1,
        ),
        step(
            "round 3 extending QC(1) without a TC is refused",
            decide(&b3_no_tc, 3, me, FAR_END),
            D(Err(Reject::NotExtendingPreviousRound {
                round: Round(3),
                qc_round: Round(1),
            })),
            1,
        ),
        step(
            "a TC of an older round does not justify round 3",
            decide(&b3_old_tc, 3, me, FAR_END),
            D(Err(Reject::NotExtendingPreviousRound {
                round: Round(3),
                qc_round: Round(1),
            })),
            1,
        ),
        step(
            "TC(2) reporting QC(2), the block extends QC(1): breaks the lock",
            decide(&b3_breaks, 3, me, FAR_END),
            D(Err(Reject::BreaksLock {
                qc_round: Round(1),
                lock: Round(2),
            })),
            1,
        ),
        step(
            "TC(2) reporting at most QC(1), the block extends QC(1): validate",
            decide(&b3_tc, 3, me, FAR_END),
            D(Ok(Decision::Validate)),
            1,
        ),
        step("a new round", Op::Abandon, Done, 1),
        step(
            "this replica's own block: vote at once",
            decide(&b3_own, 3, me, FAR_END),
            D(Ok(Decision::Vote)),
            1,
        ),
        step(
            "the vote for the own block",
            Op::Sign {
                block: b3_own.clone(),
            },
            Voted(b3_own.vote_data()),
            3,
        ),
        step(
            "the epoch's last block (parent below the end) is validated",
            decide(&b4, 4, me, 3),
            D(Ok(Decision::Validate)),
            3,
        ),
        step("a new round", Op::Abandon, Done, 3),
        step(
            "a block past the epoch's end (parent at the end): vote at once",
            decide(&b4, 4, me, 2),
            D(Ok(Decision::Vote)),
            3,
        ),
        step(
            "an observer does not vote past the end either",
            decide(&b4, 4, None, 2),
            D(Ok(Decision::Nothing)),
            3,
        ),
        step(
            "the vote past the end",
            Op::Sign { block: b4.clone() },
            Voted(b4.vote_data()),
            4,
        ),
    ];
    let chain = chain();
    let mut voter = fresh();
    for (k, s) in steps.into_iter().enumerate() {
        let what = s.what;
        let out = match s.op {
            Op::Decide {
                block,
                round,
                me,
                epoch_end,
            } => Out::Decision(voter.decide(
                &block,
                Round(round),
                NOW,
                DRIFT_MS,
                me,
                Height(epoch_end),
            )),
            Op::Validated { block, valid } => Out::Verdict(voter.on_validated(block, valid)),
            Op::Sign { block } => {
                assert_eq!(
                    voter.check_vote(&block, block.round()),
                    Ok(()),
                    "step {k}: {what}: the rule holds before signing"
                );
                let vote = voter.sign_vote(&block, ME, &key(0), &chain);
                assert_eq!(vote.voter, ME, "step {k}: {what}");
                assert!(
                    key(0)
                        .public_key()
                        .verify_raw(&vote.data.signing_bytes(&chain), &vote.signature)
                        .is_ok(),
                    "step {k}: {what}: the vote is signed by this replica"
                );
                assert_eq!(
                    voter.record().last_vote.as_ref(),
                    Some(&vote),
                    "step {k}: {what}: the vote is recorded"
                );
                Out::Voted(vote.data)
            }
            Op::Abandon => {
                voter.abandon_round();
                Out::Done
            }
        };
        assert_eq!(out, s.out, "step {k}: {what}");
        assert_eq!(
            voter.record().last_voted_round,
            Round(s.last_voted),
            "step {k}: {what}: last voted round"
        );
    }
}

#[test]
#[should_panic(expected = "one vote per round")]
fn a_second_vote_in_a_round_is_a_bug() {
    let chain = chain();
    let b1 = block(1, &root_qc(), None, 1);
    let b1_other = block(1, &root_qc(), None, 2);
    let mut voter = fresh();
    voter.sign_vote(&b1, ME, &key(0), &chain);
    voter.sign_vote(&b1_other, ME, &key(0), &chain);
}

// ----- timeouts ------------------------------------------------------------
