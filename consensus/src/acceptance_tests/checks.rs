//! The proposal, shape and parent checks.

use super::*;

#[test]
fn check_proposal_verifies_the_proposer_signature_then_the_shape() {
    let chain = chain();
    let block = chain_of(1).remove(0);
    let round_zero = Shape {
        round: 0,
        ..Shape::child_of(&root_qc())
    }
    .build();
    let other_chain = ChainId::new("other").expect("chain id");
    let bad_signature = Err(Reject::BadSignature {
        what: "proposal",
        signer: ValidatorIndex(0),
    });
    let cases = [
        (
            "signed by the proposer",
            Proposal::sign(block.clone(), &key(0), &chain),
            0,
            Epoch::ZERO,
            Ok(()),
        ),
        (
            "signed by another validator",
            Proposal::sign(block.clone(), &key(1), &chain),
            0,
            Epoch::ZERO,
            bad_signature.clone(),
        ),
        (
            "signed for another chain",
            Proposal::sign(block.clone(), &key(0), &other_chain),
            0,
            Epoch::ZERO,
            bad_signature.clone(),
        ),
        (
            "checked as a proposal of another epoch",
            Proposal::sign(block.clone(), &key(0), &chain),
            0,
            Epoch(1),
            bad_signature.clone(),
        ),
        (
            "well signed, badly shaped",
            Proposal::sign(round_zero, &key(0), &chain),
            0,
            Epoch::ZERO,
            Err(Reject::MalformedBlock {
                reason: "round 0 belongs to the epoch root",
            }),
        ),
    ];
    for (k, (what, proposal, signer, epoch, expect)) in cases.into_iter().enumerate() {
        assert_eq!(
            check_proposal(
                &proposal,
                &pk(signer),
                &chain,
                epoch,
                limits::MAX_PAYLOAD_BYTES
            ),
            expect,
            "case {k}: {what}"
        );
    }
}

#[test]
fn check_block_shape_refuses_each_malformed_block() {
    const MAX: usize = 4;
    let blocks = chain_of(3);
    let qc1 = qc_of(&blocks[0]);
    let qc3 = qc_of(&blocks[2]);
    let on_qc1 = || Shape::child_of(&qc1);
    let malformed = |reason| Err(Reject::MalformedBlock { reason });
    let cases: Vec<(&str, Shape, Result<(), Reject>)> = vec![
        ("extends the QC of the previous round", on_qc1(), Ok(())),
        (
            "a payload of exactly the limit",
            Shape {
                payload: vec![0; MAX],
                ..on_qc1()
            },
            Ok(()),
        ),
        (
            "carries TC(r-1) and an older QC",
            Shape {
                round: 3,
                tc: Some(tc(0, 2)),
                ..on_qc1()
            },
            Ok(()),
        ),
        (
            "round 0",
            Shape {
                round: 0,
                ..on_qc1()
            },
            malformed("round 0 belongs to the epoch root"),
        ),
        (
            "a payload over the limit",
            Shape {
                payload: vec![0; MAX + 1],
                ..on_qc1()
            },
            Err(Reject::PayloadTooLarge {
                got: MAX + 1,
                limit: MAX,
            }),
        ),
        (
            "a QC of another epoch",
            Shape {
                epoch: 1,
                ..on_qc1()
            },
            malformed("QC of another epoch"),
        ),
        (
            "a QC of the same round",
            Shape {
                round: 1,
                ..on_qc1()
            },
            malformed("QC is not from an earlier round"),
        ),
        (
            "a QC of a later round",
            Shape {
                round: 2,
                ..Shape::child_of(&qc3)
            },
            malformed("QC is not from an earlier round"),
        ),
        (
            "a height not one above the QC's block",
            Shape {
                height: 3,
                ..on_qc1()
            },
            Err(Reject::WrongHeight {
                got: Height(3),
                expected: Height(2),
            }),
        ),
        (
            "a skipped round without a TC",
            Shape {
                round: 3,
                ..on_qc1()
            },
            Err(Reject::NotExtendingPreviousRound {
                round: Round(3),
                qc_round: Round(1),
            }),
        ),
        (
            "a TC although the QC is of the previous round",
            Shape {
                tc: Some(tc(0, 1)),
                ..on_qc1()
            },
            malformed("TC carried although the QC is of the previous round"),
        ),
        (
            "a TC of an older round",
            Shape {
                round: 4,
                tc: Some(tc(0, 2)),
                ..on_qc1()
            },
            malformed("TC is not of the previous round of this epoch"),
        ),
        (
            "a TC of another epoch",
            Shape {
                round: 3,
                tc: Some(tc(1, 2)),
                ..on_qc1()
            },
            malformed("TC is not of the previous round of this epoch"),
        ),
    ];
    for (k, (what, shape, expect)) in cases.into_iter().enumerate() {
        assert_eq!(
            check_block_shape(&shape.build(), MAX),
            expect,
            "case {k}: {what}"
        );
    }
}

#[test]
fn check_against_parent_wants_the_next_height_a_later_time_and_no_late_payload() {
    let parent = ParentInfo {
        id: Hash::digest(b"parent"),
        height: Height(5),
        round: Round(5),
        timestamp_ms: 1_000,
        state_root: Hash::ZERO,
    };
    let parent_qc = QuorumCert::root(
        Epoch::ZERO,
        &RootBlock {
            id: parent.id,
            height: parent.height,
            timestamp_ms: parent.timestamp_ms,
            state_root: Hash::ZERO,
        },
    );
    let block = |height: u64, timestamp_ms: u64, payload: &[u8]| {
        Shape {
            round: 6,
            height,
            timestamp_ms,
            payload: payload.to_vec(),
            ..Shape::child_of(&parent_qc)
        }
        .build()
    };
    let cases = [
        (
            "the next height, later, below the end",
            block(6, 1_001, b"x"),
            10,
            Ok(()),
        ),
        (
            "a payload on the block just below the end",
            block(6, 1_001, b"x"),
            6,
            Ok(()),
        ),
        (
            "an empty block on a parent at the end",
            block(6, 1_001, b""),
            5,
            Ok(()),
        ),
        (
            "an empty block on a parent past the end",
            block(6, 1_001, b""),
            4,
            Ok(()),
        ),
        (
            "the parent's height",
            block(5, 1_001, b""),
            10,
            Err(Reject::WrongHeight {
                got: Height(5),
                expected: Height(6),
            }),
        ),
        (
            "two above the parent",
            block(7, 1_001, b""),
            10,
            Err(Reject::WrongHeight {
                got: Height(7),
                expected: Height(6),
            }),
        ),
        (
            "the parent's timestamp",
            block(6, 1_000, b""),
            10,
            Err(Reject::TimestampNotAfterParent {
                timestamp_ms: 1_000,
                parent_ms: 1_000,
            }),
        ),
        (
            "before the parent",
            block(6, 999, b""),
            10,
            Err(Reject::TimestampNotAfterParent {
                timestamp_ms: 999,
                parent_ms: 1_000,
            }),
        ),
        (
            "a payload on a parent at the end",
            block(6, 1_001, b"x"),
            5,
            Err(Reject::PayloadAfterEpochEnd { end: Height(5) }),
        ),
        (
            "a payload on a parent past the end",
            block(6, 1_001, b"x"),
            4,
            Err(Reject::PayloadAfterEpochEnd { end: Height(4) }),
        ),
    ];
    for (k, (what, block, end, expect)) in cases.into_iter().enumerate() {
        assert_eq!(
            check_against_parent(&block, &parent, Height(end)),
            expect,
            "case {k}: {what}"
        );
    }
}
