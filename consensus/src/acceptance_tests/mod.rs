//! Tables of steps for block acceptance: where each offered block goes, and
//! what the tree and the orphans hold afterwards.

use std::collections::BTreeSet;

use commons_types::ValidatorIndex;

use super::*;
use crate::fixtures::{chain, key, pk, set};
use crate::message::{BlockFields, QuorumCert, TimeoutCert};

mod checks;
mod tree;

/// The current round passed to `place` (it only names the error).
const CURRENT: Round = Round(9);

fn genesis() -> RootBlock {
    RootBlock::genesis(&chain(), set().hash(), Hash::ZERO, 1_000)
}

fn root_qc() -> QuorumCert {
    QuorumCert::root(Epoch::ZERO, &genesis())
}

fn qc_of(block: &Block) -> QuorumCert {
    QuorumCert {
        data: block.vote_data(),
        signatures: Vec::new(),
    }
}

fn tc(epoch: u64, round: u64) -> TimeoutCert {
    TimeoutCert {
        epoch: Epoch(epoch),
        round: Round(round),
        entries: Vec::new(),
    }
}

/// Every field a test varies; the rest is fixed.
struct Shape {
    epoch: u64,
    round: u64,
    height: u64,
    timestamp_ms: u64,
    justify: QuorumCert,
    tc: Option<TimeoutCert>,
    payload: Vec<u8>,
}

impl Shape {
    /// A well-formed child of the block `justify` certifies, in the next
    /// round, timestamped the genesis time plus its round.
    fn child_of(justify: &QuorumCert) -> Shape {
        let round = justify.round().0 + 1;
        Shape {
            epoch: justify.data.epoch.0,
            round,
            height: justify.data.height.0 + 1,
            timestamp_ms: 1_000 + round,
            justify: justify.clone(),
            tc: None,
            payload: Vec::new(),
        }
    }

    fn build(self) -> Block {
        Block::new(BlockFields {
            epoch: Epoch(self.epoch),
            round: Round(self.round),
            height: Height(self.height),
            proposer: ValidatorIndex(0),
            timestamp_ms: self.timestamp_ms,
            state_root: Hash::ZERO,
            justify: self.justify,
            timeout_cert: self.tc,
            payload: self.payload,
        })
    }
}

/// Blocks of rounds and heights `1..=n` on genesis, each the child of the
/// one before: `chain[h - 1]` is at height `h`.
fn chain_of(n: u64) -> Vec<Block> {
    let mut qc = root_qc();
    let mut out = Vec::new();
    for _ in 0..n {
        let b = Shape::child_of(&qc).build();
        qc = qc_of(&b);
        out.push(b);
    }
    out
}

fn acceptance() -> Acceptance {
    Acceptance::new(BlockTree::new(genesis(), Round::ZERO))
}

fn orphan_ids(acc: &Acceptance) -> BTreeSet<Hash> {
    acc.orphans.keys().copied().collect()
}

fn ids(blocks: &[Block]) -> Vec<Hash> {
    blocks.iter().map(Block::id).collect()
}

#[test]
fn blocks_enter_the_tree_wait_as_orphans_or_are_refused() {
    enum Op {
        Place {
            block: Box<Block>,
            from: u8,
            signature: Option<Signature>,
            end: u64,
            expect: Result<Placed, Reject>,
        },
        ChildrenOf {
            id: Hash,
            expect: Vec<Hash>,
        },
        TakeOrphan {
            id: Hash,
            /// The block, its sender and its signature.
            expect: Option<(Hash, u8, Option<Signature>)>,
        },
    }
    struct Step {
        what: &'static str,
        op: Op,
        persisted: Vec<Hash>,
        tree: Vec<Hash>,
        orphans: Vec<Hash>,
    }

    // b1 carries a payload; b2 and b3 are empty.
    let b1 = Shape {
        payload: b"one".to_vec(),
        ..Shape::child_of(&root_qc())
    }
    .build();
    let b2 = Shape::child_of(&qc_of(&b1)).build();
    let b3 = Shape::child_of(&qc_of(&b2)).build();
    let tall = Shape {
        height: 3,
        ..Shape::child_of(&qc_of(&b1))
    }
    .build();
    let same_time = Shape {
        timestamp_ms: b1.timestamp_ms(),
        ..Shape::child_of(&qc_of(&b1))
    }
    .build();
    let late = Shape {
        payload: b"late".to_vec(),
        ..Shape::child_of(&qc_of(&b1))
    }
    .build();
    let signature = Some(Signature([7; 64]));

    use Op::*;
    let place = |block: &Block, from: u8, signature, end, expect| Place {
        block: Box::new(block.clone()),
        from,
        signature,
        end,
        expect,
    };
    let steps = vec![
        Step {
            what: "a child of the root enters the tree and is persisted; a payload is \
                   fine while the parent is below the epoch's end",
            op: place(&b1, 0, None, 1, Ok(Placed::Inserted)),
            persisted: vec![b1.id()],
            tree: vec![b1.id()],
            orphans: vec![],
        },
        Step {
            what: "a block in the tree is known, and not persisted again",
            op: place(&b1, 1, None, 1, Ok(Placed::Known)),
            persisted: vec![],
            tree: vec![b1.id()],
            orphans: vec![],
        },
        Step {
            what: "a block whose parent is missing waits; its parent is to be fetched",
            op: place(
                &b3,
                2,
                signature,
                1,
                Ok(Placed::Orphaned {
                    parent: b2.id(),
                    parent_height: Height(2),
                }),
            ),
            persisted: vec![],
            tree: vec![b1.id()],
            orphans: vec![b3.id()],
        },
        Step {
            what: "an orphan offered again still waits, once",
            op: place(
                &b3,
                2,
                signature,
                1,
                Ok(Placed::Orphaned {
                    parent: b2.id(),
                    parent_height: Height(2),
                }),
            ),
            persisted: vec![],
            tree: vec![b1.id()],
            orphans: vec![b3.id()],
        },
        Step {
            what: "the orphans waiting for a block are its children",
            op: ChildrenOf {
                id: b2.id(),
                expect: vec![b3.id()],
            },
            persisted: vec![],
            tree: vec![b1.id()],
            orphans: vec![b3.id()],
        },
        Step {
            what: "no orphan waits for a block in the tree",
            op: ChildrenOf {
                id: b1.id(),
                expect: vec![],
            },
            persisted: vec![],
            tree: vec![b1.id()],
            orphans: vec![b3.id()],
        },
        Step {
            what: "a block two heights above its parent is refused",
            op: place(
                &tall,
                0,
                None,
                10,
                Err(Reject::WrongHeight {
                    got: Height(3),
                    expected: Height(2),
                }),
            ),
            persisted: vec![],
            tree: vec![b1.id()],
            orphans: vec![b3.id()],
        },
        Step {
            what: "a block not later than its parent is refused",
            op: place(
                &same_time,
                0,
                None,
                10,
                Err(Reject::TimestampNotAfterParent {
                    timestamp_ms: b1.timestamp_ms(),
                    parent_ms: b1.timestamp_ms(),
                }),
            ),
            persisted: vec![],
            tree: vec![b1.id()],
            orphans: vec![b3.id()],
        },
        Step {
            what: "a payload on a parent at the epoch's end is refused",
            op: place(
                &late,
                0,
                None,
                1,
                Err(Reject::PayloadAfterEpochEnd { end: Height(1) }),
            ),
            persisted: vec![],
            tree: vec![b1.id()],
            orphans: vec![b3.id()],
        },
        Step {
            what: "the same block is fine with a later end",
            op: place(&late, 0, None, 2, Ok(Placed::Inserted)),
            persisted: vec![late.id()],
            tree: vec![b1.id(), late.id()],
            orphans: vec![b3.id()],
        },
        Step {
            what: "an empty block on a parent at the epoch's end enters",
            op: place(&b2, 0, None, 1, Ok(Placed::Inserted)),
            persisted: vec![b2.id()],
            tree: vec![b1.id(), late.id(), b2.id()],
            orphans: vec![b3.id()],
        },
        Step {
            what: "an orphan is taken out with its sender and its signature",
            op: TakeOrphan {
                id: b3.id(),
                expect: Some((b3.id(), 2, signature)),
            },
            persisted: vec![],
            tree: vec![b1.id(), late.id(), b2.id()],
            orphans: vec![],
        },
        Step {
            what: "an orphan is taken once",
            op: TakeOrphan {
                id: b3.id(),
                expect: None,
            },
            persisted: vec![],
            tree: vec![b1.id(), late.id(), b2.id()],
            orphans: vec![],
        },
        Step {
            what: "the replayed orphan enters, its parent being there",
            op: place(&b3, 2, signature, 1, Ok(Placed::Inserted)),
            persisted: vec![b3.id()],
            tree: vec![b1.id(), late.id(), b2.id(), b3.id()],
            orphans: vec![],
        },
    ];

    let mut acc = acceptance();
    for (k, s) in steps.into_iter().enumerate() {
        let what = s.what;
        let mut persist = Vec::new();
        match s.op {
            Place {
                block,
                from,
                signature,
                end,
                expect,
            } => {
                let got = acc.place(
                    *block,
                    pk(from),
                    signature,
                    CURRENT,
                    Height(end),
                    &mut persist,
                );
                assert_eq!(got, expect, "step {k}: {what}: placed");
            }
            ChildrenOf { id, expect } => {
                assert_eq!(acc.children_of(&id), expect, "step {k}: {what}: children")
            }
            TakeOrphan { id, expect } => {
                let got = acc
                    .take_orphan(&id)
                    .map(|o| (o.block.id(), o.from, o.signature));
                let expect = expect.map(|(id, from, sig)| (id, pk(from), sig));
                assert_eq!(got, expect, "step {k}: {what}: orphan taken");
            }
        }
        assert_eq!(ids(&persist), s.persisted, "step {k}: {what}: persisted");
        assert_eq!(acc.tree.len(), s.tree.len(), "step {k}: {what}: tree size");
        for id in &s.tree {
            assert!(
                acc.tree.contains(id),
                "step {k}: {what}: {id:?} in the tree"
            );
        }
        let orphans: BTreeSet<Hash> = s.orphans.into_iter().collect();
        assert_eq!(orphan_ids(&acc), orphans, "step {k}: {what}: orphans");
    }
}
