//! Tables of steps for epoch ends: the wait for the next set, what is done
//! with messages meanwhile, and the change.

use commons_types::{Round, ValidatorIndex};

use super::*;
use crate::fixtures::{chain, key, pk};
use crate::message::{Block, BlockFields, Proposal, QuorumCert, Timeout, Vote, VoteData};

/// The block that ends epoch 0, at height 10.
fn end_block() -> RootBlock {
    RootBlock {
        id: Hash::digest(b"end of epoch 0"),
        height: Height(10),
        timestamp_ms: 5_000,
        state_root: Hash::digest(b"state"),
    }
}

fn root_qc(epoch: u64) -> QuorumCert {
    QuorumCert::root(Epoch(epoch), &end_block())
}

fn block(epoch: u64, round: u64) -> Block {
    Block::new(BlockFields {
        epoch: Epoch(epoch),
        round: Round(round),
        height: Height(11),
        proposer: ValidatorIndex(0),
        timestamp_ms: 5_000 + round,
        state_root: Hash::ZERO,
        justify: root_qc(epoch),
        timeout_cert: None,
        payload: Vec::new(),
    })
}

fn proposal(epoch: u64) -> Message {
    Message::Proposal(Proposal::sign(block(epoch, 1), &key(0), &chain()))
}

fn vote(epoch: u64, round: u64) -> Message {
    let data = VoteData {
        epoch: Epoch(epoch),
        round: Round(round),
        height: Height(11),
        block_id: block(epoch, round).id(),
        parent_id: end_block().id,
        parent_round: Round::ZERO,
    };
    Message::Vote(Vote::sign(data, ValidatorIndex(1), &key(1), &chain()))
}

fn timeout(epoch: u64) -> Message {
    Message::Timeout(Timeout::sign(
        Epoch(epoch),
        Round(1),
        root_qc(epoch),
        None,
        ValidatorIndex(2),
        &key(2),
        &chain(),
    ))
}

fn committed_range(epoch: u64) -> Message {
    Message::SyncResponse(SyncResponse::Committed {
        blocks: vec![block(epoch, 1)],
        commit_qc: QuorumCert {
            data: block(epoch, 2).vote_data(),
            signatures: Vec::new(),
        },
    })
}

fn ancestors_response() -> Message {
    Message::SyncResponse(SyncResponse::Ancestors {
        blocks: vec![block(1, 1)],
    })
}

fn sync_request() -> SyncRequest {
    SyncRequest::Committed {
        epoch: Epoch(0),
        from_height: Height(3),
    }
}

#[test]
fn the_epoch_end_waits_for_the_next_set_buffering_next_epoch_messages() {
    /// What routing a message while waiting gives.
    #[derive(Clone, Debug, PartialEq)]
    enum Routed {
        Serve(SyncRequest),
        Buffered,
    }
    enum Op {
        BeginWait {
            epoch: u64,
            expect: Request,
        },
        Route {
            from: u8,
            message: Message,
            expect: Result<Routed, Reject>,
        },
        AcceptChange {
            new_epoch: u64,
            block_id: Hash,
            expect: Result<RootBlock, Reject>,
        },
        TakeBuffered {
            expect: Vec<(u8, Message)>,
        },
    }
    struct Step {
        what: &'static str,
        op: Op,
        awaiting: bool,
        buffered: usize,
    }

    let end = end_block();
    let not_ended = Err(Reject::Unexpected {
        what: "epoch change",
        reason: "the epoch has not ended",
    });
    let mismatch = Err(Reject::Unexpected {
        what: "epoch change",
        reason: "epoch or block does not match the epoch's last block",
    });
    let refused = Err(Reject::AwaitingEpochChange { next: Epoch(1) });
    let route = |from: u8, message: Message, expect| Op::Route {
        from,
        message,
        expect,
    };

    use Op::*;
    let steps = vec![
        Step {
            what: "no change is accepted before the epoch ends",
            op: AcceptChange {
                new_epoch: 1,
                block_id: end.id,
                expect: not_ended.clone(),
            },
            awaiting: false,
            buffered: 0,
        },
        Step {
            what: "the end asks for the next epoch's set, naming the block that ended it",
            op: BeginWait {
                epoch: 0,
                expect: Request::NeedValidatorSet {
                    epoch: Epoch(1),
                    block_id: end.id,
                    height: Height(10),
                },
            },
            awaiting: true,
            buffered: 0,
        },
        Step {
            what: "sync requests are still served",
            op: route(
                3,
                Message::SyncRequest(sync_request()),
                Ok(Routed::Serve(sync_request())),
            ),
            awaiting: true,
            buffered: 0,
        },
        Step {
            what: "a next-epoch proposal is kept",
            op: route(0, proposal(1), Ok(Routed::Buffered)),
            awaiting: true,
            buffered: 1,
        },
        Step {
            what: "a next-epoch vote is kept",
            op: route(1, vote(1, 1), Ok(Routed::Buffered)),
            awaiting: true,
            buffered: 2,
        },
        Step {
            what: "a next-epoch timeout is kept",
            op: route(2, timeout(1), Ok(Routed::Buffered)),
            awaiting: true,
            buffered: 3,
        },
        Step {
            what: "a next-epoch committed range is kept",
            op: route(3, committed_range(1), Ok(Routed::Buffered)),
            awaiting: true,
            buffered: 4,
        },
        Step {
            what: "a message of the ended epoch is refused",
            op: route(0, proposal(0), refused.clone()),
            awaiting: true,
            buffered: 4,
        },
        Step {
            what: "a message two epochs ahead is refused",
            op: route(1, vote(2, 1), refused.clone()),
            awaiting: true,
            buffered: 4,
        },
        Step {
            what: "a committed range of the ended epoch is refused",
            op: route(3, committed_range(0), refused.clone()),
            awaiting: true,
            buffered: 4,
        },
        Step {
            what: "ancestors (no epoch) are refused",
            op: route(3, ancestors_response(), refused.clone()),
            awaiting: true,
            buffered: 4,
        },
        Step {
            what: "a change naming another epoch is refused",
            op: AcceptChange {
                new_epoch: 2,
                block_id: end.id,
                expect: mismatch.clone(),
            },
            awaiting: true,
            buffered: 4,
        },
        Step {
            what: "a change naming the same epoch is refused",
            op: AcceptChange {
                new_epoch: 0,
                block_id: end.id,
                expect: mismatch.clone(),
            },
            awaiting: true,
            buffered: 4,
        },
        Step {
            what: "a change naming another block is refused",
            op: AcceptChange {
                new_epoch: 1,
                block_id: Hash::digest(b"another block"),
                expect: mismatch.clone(),
            },
            awaiting: true,
            buffered: 4,
        },
        Step {
            what: "the right change ends the wait and hands back the new root",
            op: AcceptChange {
                new_epoch: 1,
                block_id: end.id,
                expect: Ok(end),
            },
            awaiting: false,
            buffered: 4,
        },
        Step {
            what: "the buffer comes out in arrival order, with each sender",
            op: TakeBuffered {
                expect: vec![
                    (0, proposal(1)),
                    (1, vote(1, 1)),
                    (2, timeout(1)),
                    (3, committed_range(1)),
                ],
            },
            awaiting: false,
            buffered: 0,
        },
        Step {
            what: "and only once",
            op: TakeBuffered { expect: vec![] },
            awaiting: false,
            buffered: 0,
        },
        Step {
            what: "a second change is refused: the epoch has not ended again",
            op: AcceptChange {
                new_epoch: 1,
                block_id: end.id,
                expect: not_ended.clone(),
            },
            awaiting: false,
            buffered: 0,
        },
    ];

    let mut epochs = Epochs::default();
    for (k, s) in steps.into_iter().enumerate() {
        let what = s.what;
        match s.op {
            BeginWait { epoch, expect } => assert_eq!(
                epochs.begin_wait(Epoch(epoch), end),
                expect,
                "step {k}: {what}: request"
            ),
            Route {
                from,
                message,
                expect,
            } => {
                let got = epochs
                    .on_message_while_waiting(Epoch::ZERO, pk(from), message)
                    .map(|w| match w {
                        WhileWaiting::Serve(r) => Routed::Serve(r),
                        WhileWaiting::Buffered => Routed::Buffered,
                    });
                assert_eq!(got, expect, "step {k}: {what}: routed");
            }
            AcceptChange {
                new_epoch,
                block_id,
                expect,
            } => assert_eq!(
                epochs.accept_change(Epoch::ZERO, Epoch(new_epoch), block_id),
                expect,
                "step {k}: {what}: change"
            ),
            TakeBuffered { expect } => {
                let expect: Vec<(PublicKey, Message)> =
                    expect.into_iter().map(|(p, m)| (pk(p), m)).collect();
                assert_eq!(epochs.take_buffered(), expect, "step {k}: {what}: buffer");
            }
        }
        assert_eq!(
            epochs.is_awaiting(),
            s.awaiting,
            "step {k}: {what}: awaiting"
        );
        assert_eq!(
            epochs.buffered.len(),
            s.buffered,
            "step {k}: {what}: buffered"
        );
    }
}

#[test]
fn the_next_epoch_buffer_is_bounded() {
    let mut epochs = Epochs::default();
    let _ = epochs.begin_wait(Epoch::ZERO, end_block());
    let votes: Vec<Message> = (1..=limits::MAX_BUFFERED_NEXT_EPOCH as u64)
        .map(|round| vote(1, round))
        .collect();
    for (k, v) in votes.iter().enumerate() {
        assert!(
            matches!(
                epochs.on_message_while_waiting(Epoch::ZERO, pk(1), v.clone()),
                Ok(WhileWaiting::Buffered)
            ),
            "vote {k} is kept"
        );
    }
    assert!(
        matches!(
            epochs.on_message_while_waiting(Epoch::ZERO, pk(1), proposal(1)),
            Err(Reject::Full {
                what: "next-epoch buffer",
                limit: limits::MAX_BUFFERED_NEXT_EPOCH,
            })
        ),
        "one more is refused"
    );
    assert!(
        matches!(
            epochs.on_message_while_waiting(
                Epoch::ZERO,
                pk(3),
                Message::SyncRequest(sync_request())
            ),
            Ok(WhileWaiting::Serve(r)) if r == sync_request()
        ),
        "a full buffer does not stop serving"
    );
    let taken: Vec<Message> = epochs.take_buffered().into_iter().map(|(_, m)| m).collect();
    assert_eq!(taken, votes, "the kept ones, in arrival order");
}

#[test]
fn the_epoch_ends_its_length_above_its_root_saturating() {
    let cases: &[(&str, u64, u64, u64)] = &[
        ("genesis root", 0, 10, 10),
        ("a later root", 25, 10, 35),
        ("a length of zero ends at the root", 7, 0, 7),
        ("epochs that never end", 7, u64::MAX, u64::MAX),
        ("near the top, saturating", u64::MAX - 1, 10, u64::MAX),
    ];
    for (k, (what, root, length, end)) in cases.iter().enumerate() {
        assert_eq!(
            end_height(Height(*root), *length),
            Height(*end),
            "case {k}: {what}"
        );
    }
}

#[test]
fn message_epoch_names_the_epoch_of_each_kind() {
    let cases = [
        ("a proposal: its block's", proposal(7), Some(Epoch(7))),
        ("a vote: its data's", vote(7, 3), Some(Epoch(7))),
        ("a timeout: its own", timeout(7), Some(Epoch(7))),
        (
            "a committed range: its commit QC's",
            committed_range(7),
            Some(Epoch(7)),
        ),
        ("ancestors: none", ancestors_response(), None),
        (
            "a committed range request: none",
            Message::SyncRequest(SyncRequest::Committed {
                epoch: Epoch(7),
                from_height: Height(1),
            }),
            None,
        ),
        (
            "an ancestors request: none",
            Message::SyncRequest(SyncRequest::Ancestors {
                id: Hash::ZERO,
                count: 1,
            }),
            None,
        ),
    ];
    for (k, (what, message, expect)) in cases.into_iter().enumerate() {
        assert_eq!(message_epoch(&message), expect, "case {k}: {what}");
    }
}
