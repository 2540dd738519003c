//! Tables of steps for block sync: what each input sends, and which
//! requests stay in flight afterwards.

use std::collections::BTreeSet;

use commons_types::{ChainId, Round, Validator, ValidatorIndex};

use super::*;
use crate::fixtures::{pk, set};
use crate::message::{BlockFields, QuorumCert};

mod committed;
mod peers;

/// The sync retry period of every test.
const RETRY: u64 = 100;
/// This replica: validator 1 of validators 0..4.
const ME: u8 = 1;
/// A key outside the validator set.
const OUTSIDER: u8 = 9;

fn genesis(set: &ValidatorSet) -> RootBlock {
    RootBlock::genesis(
        &ChainId::new("test").expect("chain id"),
        set.hash(),
        Hash::ZERO,
        1_000,
    )
}

fn peers(set: &ValidatorSet, now: u64) -> Peers<'_> {
    Peers {
        me: pk(ME),
        set,
        epoch: Epoch::ZERO,
        now: Millis(now),
        retry_ms: RETRY,
    }
}

fn qc_of(block: &Block) -> QuorumCert {
    QuorumCert {
        data: block.vote_data(),
        signatures: Vec::new(),
    }
}

fn block_with(justify: &QuorumCert, round: u64, height: u64) -> Block {
    Block::new(BlockFields {
        epoch: Epoch::ZERO,
        round: Round(round),
        height: Height(height),
        proposer: ValidatorIndex(0),
        timestamp_ms: 1_000 + round,
        state_root: Hash::ZERO,
        justify: justify.clone(),
        timeout_cert: None,
        payload: Vec::new(),
    })
}

fn child(justify: &QuorumCert, round: u64) -> Block {
    block_with(justify, round, justify.data.height.next().0)
}

/// Blocks of heights and rounds `1..=n` above `root`, each the child of the
/// one before: `chain[h - 1]` is at height `h`.
fn chain_from(root: &RootBlock, n: u64) -> Vec<Block> {
    let mut qc = QuorumCert::root(Epoch::ZERO, root);
    let mut out = Vec::new();
    for round in 1..=n {
        let b = child(&qc, round);
        qc = qc_of(&b);
        out.push(b);
    }
    out
}

fn ancestors(id: Hash, count: u16) -> SyncRequest {
    SyncRequest::Ancestors { id, count }
}

fn committed_from(height: u64) -> SyncRequest {
    SyncRequest::Committed {
        epoch: Epoch::ZERO,
        from_height: Height(height),
    }
}

fn to(peer: u8, message: Message) -> Outbound {
    Outbound {
        to: Destination::To(pk(peer)),
        message,
    }
}

fn requests(sends: &[(u8, SyncRequest)]) -> Vec<Outbound> {
    sends
        .iter()
        .map(|(p, r)| to(*p, Message::SyncRequest(r.clone())))
        .collect()
}

/// The same messages, in any order (requests retried together go out in id
/// order, which the test does not fix).
fn assert_same_sends(got: &[Outbound], expected: &[Outbound], context: &str) {
    assert_eq!(
        got.len(),
        expected.len(),
        "{context}: sent {got:?}, expected {expected:?}"
    );
    for e in expected {
        assert!(got.contains(e), "{context}: {e:?} not sent; sent {got:?}");
    }
}

fn peer_of(sync_slot: Option<(PublicKey, Millis)>) -> Option<PublicKey> {
    sync_slot.map(|(p, _)| p)
}

#[test]
fn ancestors_are_asked_once_retried_with_the_next_peer_and_claimed_once() {
    enum Op {
        Want {
            id: Hash,
            height: u64,
            from: Option<u8>,
        },
        Fire,
        Claim {
            id: Hash,
            claimed: bool,
        },
        Got(Hash),
        CommittedUpTo(u64),
    }
    struct Step {
        what: &'static str,
        now: u64,
        op: Op,
        sends: Vec<(u8, SyncRequest)>,
        wanted: Vec<Hash>,
        deadline: Option<u64>,
    }

    let set = set();
    let root = genesis(&set);
    let blocks = chain_from(&root, 40);
    let b = |h: usize| blocks[h - 1].id();
    let mut tree = BlockTree::new(root, Round::ZERO);
    tree.insert(blocks[0].clone());
    tree.insert(blocks[1].clone());
    let mut sync = Sync::default();

    use Op::*;
    let steps = vec![
        Step {
            what: "a block is asked of the peer that showed it, with the gap below it",
            now: 0,
            op: Want {
                id: b(5),
                height: 5,
                from: Some(3),
            },
            sends: vec![(3, ancestors(b(5), 5))],
            wanted: vec![b(5)],
            deadline: Some(100),
        },
        Step {
            what: "a block asked for already is not asked again",
            now: 10,
            op: Want {
                id: b(5),
                height: 5,
                from: Some(2),
            },
            sends: vec![],
            wanted: vec![b(5)],
            deadline: Some(100),
        },
        Step {
            what: "a block in the tree is not fetched",
            now: 10,
            op: Want {
                id: b(2),
                height: 2,
                from: Some(0),
            },
            sends: vec![],
            wanted: vec![b(5)],
            deadline: Some(100),
        },
        Step {
            what: "the root is not fetched",
            now: 10,
            op: Want {
                id: root.id,
                height: 0,
                from: None,
            },
            sends: vec![],
            wanted: vec![b(5)],
            deadline: Some(100),
        },
        Step {
            what: "with no peer named, the first other validator is asked",
            now: 20,
            op: Want {
                id: b(6),
                height: 6,
                from: None,
            },
            sends: vec![(0, ancestors(b(6), 6))],
            wanted: vec![b(5), b(6)],
            deadline: Some(100),
        },
        Step {
            what: "this replica never asks itself: the first other validator instead",
            now: 20,
            op: Want {
                id: b(7),
                height: 7,
                from: Some(ME),
            },
            sends: vec![(0, ancestors(b(7), 7))],
            wanted: vec![b(5), b(6), b(7)],
            deadline: Some(100),
        },
        Step {
            what: "a gap of exactly SYNC_ANCESTORS_GAP_MAX is still fetched by id, \
                   at most MAX_SYNC_BLOCKS at once",
            now: 50,
            op: Want {
                id: b(32),
                height: limits::SYNC_ANCESTORS_GAP_MAX,
                from: Some(2),
            },
            sends: vec![(2, ancestors(b(32), limits::MAX_SYNC_BLOCKS as u16))],
            wanted: vec![b(5), b(6), b(7), b(32)],
            deadline: Some(100),
        },
        Step {
            what: "nothing is retried before its retry period",
            now: 99,
            op: Fire,
            sends: vec![],
            wanted: vec![b(5), b(6), b(7), b(32)],
            deadline: Some(100),
        },
        Step {
            what: "a due request goes to the peer after the last one asked (wrapping)",
            now: 100,
            op: Fire,
            sends: vec![(0, ancestors(b(5), 5))],
            wanted: vec![b(5), b(6), b(7), b(32)],
            deadline: Some(120),
        },
        Step {
            what: "every due request is retried, each with its next peer",
            now: 120,
            op: Fire,
            sends: vec![(2, ancestors(b(6), 6)), (2, ancestors(b(7), 7))],
            wanted: vec![b(5), b(6), b(7), b(32)],
            deadline: Some(150),
        },
        Step {
            what: "a retry skips this replica",
            now: 150,
            op: Fire,
            sends: vec![(3, ancestors(b(32), limits::MAX_SYNC_BLOCKS as u16))],
            wanted: vec![b(5), b(6), b(7), b(32)],
            deadline: Some(200),
        },
        Step {
            what: "a fetched block that was asked for is claimed",
            now: 150,
            op: Claim {
                id: b(5),
                claimed: true,
            },
            sends: vec![],
            wanted: vec![b(6), b(7), b(32)],
            deadline: Some(220),
        },
        Step {
            what: "a block never asked for is not claimed",
            now: 150,
            op: Claim {
                id: b(9),
                claimed: false,
            },
            sends: vec![],
            wanted: vec![b(6), b(7), b(32)],
            deadline: Some(220),
        },
        Step {
            what: "a block is claimed once",
            now: 150,
            op: Claim {
                id: b(5),
                claimed: false,
            },
            sends: vec![],
            wanted: vec![b(6), b(7), b(32)],
            deadline: Some(220),
        },
        Step {
            what: "a block that arrived otherwise is no longer wanted",
            now: 150,
            op: Got(b(6)),
            sends: vec![],
            wanted: vec![b(7), b(32)],
            deadline: Some(220),
        },
        Step {
            what: "blocks at or below a new committed root are no longer wanted",
            now: 150,
            op: CommittedUpTo(7),
            sends: vec![],
            wanted: vec![b(32)],
            deadline: Some(250),
        },
        Step {
            what: "a block dropped is not retried; the rest is",
            now: 250,
            op: Fire,
            sends: vec![(0, ancestors(b(32), limits::MAX_SYNC_BLOCKS as u16))],
            wanted: vec![b(32)],
            deadline: Some(350),
        },
    ];

    for (k, s) in steps.into_iter().enumerate() {
        let what = s.what;
        let p = peers(&set, s.now);
        let mut out = Vec::new();
        match s.op {
            Want { id, height, from } => {
                sync.want(&p, &tree, id, Height(height), from.map(pk), &mut out)
            }
            Fire => sync.fire(&p, &tree, &mut out),
            Claim { id, claimed } => {
                assert_eq!(sync.claim(&id), claimed, "step {k}: {what}: claim")
            }
            Got(id) => sync.got(&id),
            CommittedUpTo(h) => sync.committed_up_to(Height(h)),
        }
        let context = format!("step {k}: {what}");
        assert_same_sends(&out, &requests(&s.sends), &context);
        let wanted: BTreeSet<Hash> = sync.wanted.keys().copied().collect();
        let expected: BTreeSet<Hash> = s.wanted.into_iter().collect();
        assert_eq!(wanted, expected, "{context}: wanted ids");
        assert_eq!(
            sync.deadline(RETRY),
            s.deadline.map(Millis),
            "{context}: deadline"
        );
        assert!(
            sync.committed.is_none(),
            "{context}: no committed range is asked near the root"
        );
    }
}
