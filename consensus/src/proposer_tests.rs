//! Tests of the proposer, as tables of steps: each step one call, the plan
//! or answer it must give, and what the proposer must still wait for.

use commons_types::Signature;

use super::*;
use crate::fixtures::{chain, set_with};
use crate::message::{RootBlock, TimeoutSignature};

const MAX_PAYLOAD: usize = 10;

fn root() -> RootBlock {
    RootBlock::genesis(
        &chain(),
        Hash::digest(b"set"),
        Hash::digest(b"state 0"),
        1_000,
    )
}

fn root_qc() -> QuorumCert {
    QuorumCert::root(Epoch(0), &root())
}

fn root_parent() -> ParentInfo {
    let root = root();
    ParentInfo {
        id: root.id,
        height: root.height,
        round: Round::ZERO,
        timestamp_ms: root.timestamp_ms,
        state_root: root.state_root,
    }
}

fn block1() -> Block {
    Block::new(BlockFields {
        epoch: Epoch(0),
        round: Round(1),
        height: Height(1),
        proposer: ValidatorIndex(1),
        timestamp_ms: 2_000,
        state_root: Hash::digest(b"state 1"),
        justify: root_qc(),
        timeout_cert: None,
        payload: b"one".to_vec(),
    })
}

fn parent_of(block: &Block) -> ParentInfo {
    ParentInfo {
        id: block.id(),
        height: block.height(),
        round: block.round(),
        timestamp_ms: block.timestamp_ms(),
        state_root: block.state_root(),
    }
}

fn qc(block: &Block) -> QuorumCert {
    QuorumCert {
        data: block.vote_data(),
        signatures: Vec::new(),
    }
}

fn tc(round: u64) -> TimeoutCert {
    TimeoutCert {
        epoch: Epoch(0),
        round: Round(round),
        entries: vec![TimeoutSignature {
            voter: ValidatorIndex(0),
            high_qc_round: Round(round.saturating_sub(1)),
            signature: Signature([0; 64]),
        }],
    }
}

fn record(last_voted: u64) -> SafetyRecord {
    let mut record = SafetyRecord::fresh(Epoch(0), root());
    record.last_voted_round = Round(last_voted);
    record
}

// ----- plans ---------------------------------------------------------------

// Test steps: their size does not matter.
#[allow(clippy::large_enum_variant)]
enum Op {
    Plan {
        round: u64,
        last_voted: u64,
        highest_qc: QuorumCert,
        parent: Option<ParentInfo>,
        tc: Option<u64>,
        epoch_end: u64,
    },
    TakeWaiting(bool),
    /// A payload of `len` bytes for `round` and `parent`.
    Payload {
        round: u64,
        parent: Hash,
        len: usize,
    },
    Abandon,
    Stop,
}

/// A pending proposal: round, justify QC round, TC round, parent id.
type Pending = (Round, Round, Option<Round>, Hash);

fn pending(p: &PendingProposal) -> Pending {
    (
        p.round,
        p.justify.round(),
        p.tc.as_ref().map(|t| t.round),
        p.parent.id,
    )
}

#[allow(clippy::large_enum_variant)]
#[derive(Debug, PartialEq, Eq)]
enum Got {
    Skip,
    Fetch(Hash, Height),
    Empty(Pending),
    Ask(Request),
    Waiting(bool),
    Slot(Result<Pending, Reject>),
    Done,
}

struct Step {
    what: &'static str,
    op: Op,
    got: Got,
}

fn plan(
    round: u64,
    last_voted: u64,
    highest_qc: &QuorumCert,
    parent: Option<ParentInfo>,
    tc: Option<u64>,
    epoch_end: u64,
) -> Op {
    Op::Plan {
        round,
        last_voted,
        highest_qc: highest_qc.clone(),
        parent,
        tc,
        epoch_end,
    }
}

fn need_payload(round: u64, parent: &ParentInfo) -> Got {
    Got::Ask(Request::NeedPayload {
        round: Round(round),
        parent: parent.id,
        parent_height: parent.height,
    })
}

fn not_waiting() -> Got {
    Got::Slot(Err(Reject::Unexpected {
        what: "payload",
        reason: "this replica is not waiting for a payload for that round and parent",
    }))
}

#[test]
fn a_leader_plans_one_proposal_per_round_and_takes_one_payload() {
    let (rq, rp) = (root_qc(), root_parent());
    let b1 = block1();
    let (q1, p1) = (qc(&b1), parent_of(&b1));
    let far = 1_000;
    let payload = |round, parent: &ParentInfo, len| Op::Payload {
        round,
        parent: parent.id,
        len,
    };
    let step = |what, op, got| Step { what, op, got };
    let steps = vec![
        step(
            "already voted (or timed out) in the round: proposed before, skip",
            plan(1, 1, &rq, Some(rp), None, far),
            Got::Skip,
        ),
        step(
            "round 1 on the root QC: ask the application for a payload",
            plan(1, 0, &rq, Some(rp), None, far),
            need_payload(1, &rp),
        ),
        step(
            "a payload for another round is unexpected",
            payload(2, &rp, 1),
            not_waiting(),
        ),
        step(
            "a payload for another parent is unexpected",
            payload(1, &p1, 1),
            not_waiting(),
        ),
        step(
            "an oversize payload is refused",
            payload(1, &rp, MAX_PAYLOAD + 1),
            Got::Slot(Err(Reject::PayloadTooLarge {
                got: MAX_PAYLOAD + 1,
                limit: MAX_PAYLOAD,
            })),
        ),
        step(
            "the slot survived the oversize payload: one at the limit is taken",
            payload(1, &rp, MAX_PAYLOAD),
            Got::Slot(Ok((Round(1), Round(0), None, rp.id))),
        ),
        step("the slot is taken once", payload(1, &rp, 0), not_waiting()),
        step(
            "the highest QC's block is unknown: fetch it",
            plan(2, 1, &q1, None, None, far),
            Got::Fetch(b1.id(), Height(1)),
        ),
        step(
            "the parent is still missing: nothing to plan again",
            Op::TakeWaiting(false),
            Got::Waiting(false),
        ),
        step(
            "the parent arrived: plan again",
            Op::TakeWaiting(true),
            Got::Waiting(true),
        ),
        step(
            "the wait is taken once",
            Op::TakeWaiting(true),
            Got::Waiting(false),
        ),
        step(
            "round 2 on QC(1): ask; a TC given is not carried",
            plan(2, 1, &q1, Some(p1), Some(1), far),
            need_payload(2, &p1),
        ),
        step(
            "the proposal extends QC(1) without a TC",
            payload(2, &p1, 3),
            Got::Slot(Ok((Round(2), Round(1), None, p1.id))),
        ),
        step(
            "round 3 with QC(1) and no TC(2): not entered legitimately, skip",
            plan(3, 2, &q1, Some(p1), None, far),
            Got::Skip,
        ),
        step(
            "round 3 with QC(1) and TC(2): ask",
            plan(3, 2, &q1, Some(p1), Some(2), far),
            need_payload(3, &p1),
        ),
        step("a new round", Op::Abandon, Got::Done),
        step(
            "the abandoned round's payload is unexpected",
            payload(3, &p1, 3),
            not_waiting(),
        ),
        step(
            "round 3 again",
            plan(3, 2, &q1, Some(p1), Some(2), far),
            need_payload(3, &p1),
        ),
        step("the epoch ended", Op::Stop, Got::Done),
        step(
            "after the stop no payload is awaited",
            payload(3, &p1, 3),
            not_waiting(),
        ),
        step(
            "the parent at the epoch's end: an empty block at once, with TC(2)",
            plan(3, 2, &q1, Some(p1), Some(2), 1),
            Got::Empty((Round(3), Round(1), Some(Round(2)), p1.id)),
        ),
        step(
            "an empty block waits for no payload",
            payload(3, &p1, 0),
            not_waiting(),
        ),
        step(
            "the parent below the epoch's end: a payload is asked for",
            plan(3, 2, &q1, Some(p1), Some(2), 2),
            need_payload(3, &p1),
        ),
        step(
            "round 4, the parent unknown: fetch",
            plan(4, 3, &q1, None, Some(3), far),
            Got::Fetch(b1.id(), Height(1)),
        ),
        step("a new round", Op::Abandon, Got::Done),
        step(
            "a new round dropped the wait for the parent",
            Op::TakeWaiting(true),
            Got::Waiting(false),
        ),
    ];
    let mut proposer = Proposer::new(Epoch(0));
    for (k, s) in steps.into_iter().enumerate() {
        let what = s.what;
        let got = match s.op {
            Op::Plan {
                round,
                last_voted,
                highest_qc,
                parent,
                tc: tc_round,
                epoch_end,
            } => {
                let record = record(last_voted);
                match proposer.plan(
                    Round(round),
                    &record,
                    &highest_qc,
                    parent,
                    tc_round.map(tc),
                    Height(epoch_end),
                ) {
                    Plan::Skip => Got::Skip,
                    Plan::FetchParent { id, height } => Got::Fetch(id, height),
                    Plan::Empty(p) => {
                        assert_eq!(p.justify, highest_qc, "step {k}: {what}: justify");
                        assert_eq!(p.parent, parent.expect("known"), "step {k}: {what}");
                        Got::Empty(pending(&p))
                    }
                    Plan::AskPayload(request) => Got::Ask(request),
                }
            }
            Op::TakeWaiting(known) => Got::Waiting(proposer.take_waiting(|| known)),
            Op::Payload { round, parent, len } => Got::Slot(
                proposer
                    .take_payload_slot(Round(round), parent, len, MAX_PAYLOAD)
                    .map(|p| pending(&p)),
            ),
            Op::Abandon => {
                proposer.abandon_round();
                Got::Done
            }
            Op::Stop => {
                proposer.stop();
                Got::Done
            }
        };
        assert_eq!(got, s.got, "step {k}: {what}");
    }
}

// ----- the block -------------------------------------------------------------

#[test]
fn a_block_is_one_above_its_parent_and_after_its_parent_in_time() {
    let b1 = block1();
    let p1 = parent_of(&b1);
    assert_eq!(p1.timestamp_ms, 2_000);
    // (now, expected timestamp)
    let cases: &[(u64, u64, &str)] = &[
        (5_000, 5_000, "the leader's clock when after the parent"),
        (2_001, 2_001, "one past the parent is the clock"),
        (2_000, 2_001, "the parent's own time: one past it"),
        (1_000, 2_001, "a clock behind the parent: one past it"),
        (0, 2_001, "a zero clock: one past the parent"),
    ];
    for (k, &(now, expected, what)) in cases.iter().enumerate() {
        for (tc, payload) in [(None, b"data".to_vec()), (Some(tc(1)), Vec::new())] {
            let pending = PendingProposal {
                round: Round(2),
                justify: qc(&b1),
                tc: tc.clone(),
                parent: p1,
            };
            let state_root = Hash::digest(b"after b1");
            let block = build_block(
                pending,
                Epoch(0),
                ValidatorIndex(3),
                Millis(now),
                payload.clone(),
                state_root,
            );
            assert_eq!(block.timestamp_ms(), expected, "case {k}: {what}");
            assert!(block.timestamp_ms() > p1.timestamp_ms, "case {k}: {what}");
            assert_eq!(block.height(), Height(2), "case {k}: parent height + 1");
            assert_eq!(block.round(), Round(2), "case {k}");
            assert_eq!(block.epoch(), Epoch(0), "case {k}");
            assert_eq!(block.proposer(), ValidatorIndex(3), "case {k}");
            assert_eq!(
                block.parent_id(),
                b1.id(),
                "case {k}: extends the QC's block"
            );
            assert_eq!(block.justify(), &qc(&b1), "case {k}");
            assert_eq!(block.timeout_cert(), tc.as_ref(), "case {k}");
            assert_eq!(block.payload(), &payload[..], "case {k}");
            assert_eq!(block.state_root(), state_root, "case {k}");
        }
    }
    // On the root: height 1.
    let pending = PendingProposal {
        round: Round(1),
        justify: root_qc(),
        tc: None,
        parent: root_parent(),
    };
    let block = build_block(
        pending,
        Epoch(0),
        ValidatorIndex(0),
        Millis(0),
        Vec::new(),
        Hash::ZERO,
    );
    assert_eq!(block.height(), Height(1));
    assert_eq!(block.timestamp_ms(), root().timestamp_ms + 1);
    assert_eq!(block.parent_id(), root().id);
}

// ----- leaders ---------------------------------------------------------------

#[test]
fn the_leader_is_a_deterministic_stake_weighted_draw() {
    let rounds = 0..200u64;
    let equal = set_with(&[10; 4]);
    let a = Proposer::new(Epoch(0));
    let b = Proposer::new(Epoch(0));
    let leaders: Vec<u16> = rounds
        .clone()
        .map(|r| a.leader(&equal, Round(r)).0)
        .collect();
    for r in rounds.clone() {
        let leader = a.leader(&equal, Round(r));
        assert_eq!(
            leader,
            b.leader(&equal, Round(r)),
            "round {r}: replicas agree"
        );
        assert_eq!(leader, a.leader(&equal, Round(r)), "round {r}: asked again");
        assert!(usize::from(leader.0) < equal.len(), "round {r}: in the set");
    }
    for v in 0..4u16 {
        assert!(leaders.contains(&v), "validator {v} leads some round");
    }
    assert!(
        leaders.windows(2).any(|w| w[0] != w[1]),
        "the leader changes between rounds"
    );

    // Another epoch draws another sequence; a reset proposer draws it too.
    let next = Proposer::new(Epoch(1));
    let next_leaders: Vec<u16> = rounds
        .clone()
        .map(|r| next.leader(&equal, Round(r)).0)
        .collect();
    assert_ne!(leaders, next_leaders, "the epoch is part of the draw");
    let mut reset = Proposer::new(Epoch(0));
    reset.reset(Epoch(1));
    let reset_leaders: Vec<u16> = rounds
        .clone()
        .map(|r| reset.leader(&equal, Round(r)).0)
        .collect();
    assert_eq!(
        reset_leaders, next_leaders,
        "reset starts the new epoch's draw"
    );

    // Stake-weighted: a validator with 97% of the power leads most rounds.
    let heavy = set_with(&[1, 1, 1, 97]);
    let heavy_rounds = rounds
        .clone()
        .filter(|r| a.leader(&heavy, Round(*r)) == ValidatorIndex(3))
        .count();
    assert!(
        heavy_rounds > 150,
        "the heavy validator led {heavy_rounds} of 200 rounds"
    );
}
