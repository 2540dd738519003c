//! Tables of steps for commits: what each QC commits, what waits, and what
//! the tree becomes.

use commons_types::{ChainId, Epoch, Round, ValidatorIndex};

use super::*;
use crate::fixtures::set;
use crate::message::{BlockFields, RootBlock};

fn genesis() -> RootBlock {
    RootBlock::genesis(
        &ChainId::new("test").expect("chain id"),
        set().hash(),
        Hash::ZERO,
        1_000,
    )
}

fn qc_of(block: &Block) -> QuorumCert {
    QuorumCert {
        data: block.vote_data(),
        signatures: Vec::new(),
    }
}

/// A child of the block `justify` certifies, of round `round`, proposed by
/// validator `round % 4`.
fn child(justify: &QuorumCert, round: u64) -> Block {
    Block::new(BlockFields {
        epoch: Epoch::ZERO,
        round: Round(round),
        height: justify.data.height.next(),
        proposer: ValidatorIndex((round % 4) as u16),
        timestamp_ms: 1_000 + round,
        state_root: Hash::ZERO,
        justify: justify.clone(),
        timeout_cert: None,
        payload: Vec::new(),
    })
}

/// Blocks of rounds and heights `1..=n` on genesis, each the child of the
/// one before: `chain[h - 1]` is at height `h`.
fn chain_of(n: u64) -> Vec<Block> {
    let mut qc = QuorumCert::root(Epoch::ZERO, &genesis());
    let mut out = Vec::new();
    for round in 1..=n {
        let b = child(&qc, round);
        qc = qc_of(&b);
        out.push(b);
    }
    out
}

fn ids(blocks: &[Block]) -> Vec<Hash> {
    blocks.iter().map(Block::id).collect()
}

/// The committed range the tree serves from `height`: its blocks and the
/// round of its commit QC.
fn served(tree: &BlockTree, height: u64) -> Option<(Vec<Hash>, Round)> {
    tree.committed_range(Epoch::ZERO, Height(height))
        .map(|(blocks, qc)| (ids(&blocks), qc.round()))
}

#[test]
fn a_qc_commits_a_complete_chain_or_waits_for_the_missing_blocks() {
    enum Op {
        Plan {
            target: Hash,
            qc: QuorumCert,
            expect: CommitStep,
        },
        Retry {
            /// The block committed and the round of the QC.
            expect: Option<(Hash, Round)>,
        },
        Insert(Block),
        TreeCommit(Block),
        CommittedUpTo(u64),
    }
    struct Step {
        what: &'static str,
        op: Op,
        /// Round of the pending QC.
        pending: Option<u64>,
        /// The committed range served from height 1.
        served: Option<(Vec<Hash>, Round)>,
    }

    let blocks = chain_of(8);
    let b = |h: usize| blocks[h - 1].clone();
    let qc = |h: usize| qc_of(&b(h));
    let mut tree = BlockTree::new(genesis(), Round::ZERO);
    tree.insert(b(1));
    tree.insert(b(2));
    let mut commit = Commit::default();

    use Op::*;
    let steps = vec![
        Step {
            what: "QC(b3) commits b2: the chain from the root, oldest first",
            op: Plan {
                target: b(2).id(),
                qc: qc(3),
                expect: CommitStep::Chain(vec![b(1), b(2)]),
            },
            pending: None,
            served: None,
        },
        Step {
            what: "a target not received: it is to be fetched, and the QC waits",
            op: Plan {
                target: b(4).id(),
                qc: qc(5),
                expect: CommitStep::Missing {
                    id: b(4).id(),
                    height: Height(4),
                },
            },
            pending: Some(5),
            served: None,
        },
        Step {
            what: "a lower QC waiting too does not replace the higher one",
            op: Plan {
                target: b(3).id(),
                qc: qc(4),
                expect: CommitStep::Missing {
                    id: b(3).id(),
                    height: Height(3),
                },
            },
            pending: Some(5),
            served: None,
        },
        Step {
            what: "no retry while blocks are missing",
            op: Retry { expect: None },
            pending: Some(5),
            served: None,
        },
        Step {
            what: "b3 arrives",
            op: Insert(b(3)),
            pending: Some(5),
            served: None,
        },
        Step {
            what: "still no retry: b4 is missing",
            op: Retry { expect: None },
            pending: Some(5),
            served: None,
        },
        Step {
            what: "b4 arrives",
            op: Insert(b(4)),
            pending: Some(5),
            served: None,
        },
        Step {
            what: "the chain is complete: the pending commit is handed back once",
            op: Retry {
                expect: Some((b(4).id(), Round(5))),
            },
            pending: None,
            served: None,
        },
        Step {
            what: "nothing left to retry",
            op: Retry { expect: None },
            pending: None,
            served: None,
        },
        Step {
            what: "a higher QC waits",
            op: Plan {
                target: b(6).id(),
                qc: qc(7),
                expect: CommitStep::Missing {
                    id: b(6).id(),
                    height: Height(6),
                },
            },
            pending: Some(7),
            served: None,
        },
        Step {
            what: "a root below its target keeps it waiting",
            op: CommittedUpTo(5),
            pending: Some(7),
            served: None,
        },
        Step {
            what: "a root at its target drops it",
            op: CommittedUpTo(6),
            pending: None,
            served: None,
        },
        Step {
            what: "b1 committed",
            op: TreeCommit(b(1)),
            pending: None,
            served: None,
        },
        Step {
            what: "b2 committed (no proof yet: nothing served)",
            op: TreeCommit(b(2)),
            pending: None,
            served: None,
        },
        Step {
            what: "a QC whose target is the root is done, and becomes its proof",
            op: Plan {
                target: b(2).id(),
                qc: qc(3),
                expect: CommitStep::Done,
            },
            pending: None,
            served: Some((ids(&[b(1), b(2)]), Round(3))),
        },
        Step {
            what: "a QC whose target is below the root is done, and changes no proof",
            op: Plan {
                target: b(1).id(),
                qc: qc(2),
                expect: CommitStep::Done,
            },
            pending: None,
            served: Some((ids(&[b(1), b(2)]), Round(3))),
        },
        Step {
            what: "a later chain starts above the root",
            op: Plan {
                target: b(4).id(),
                qc: qc(5),
                expect: CommitStep::Chain(vec![b(3), b(4)]),
            },
            pending: None,
            served: Some((ids(&[b(1), b(2)]), Round(3))),
        },
    ];

    for (k, s) in steps.into_iter().enumerate() {
        let what = s.what;
        match s.op {
            Plan { target, qc, expect } => assert_eq!(
                commit.plan(&mut tree, target, &qc),
                expect,
                "step {k}: {what}: plan"
            ),
            Retry { expect } => assert_eq!(
                commit.retry(&tree).map(|(t, qc)| (t, qc.round())),
                expect,
                "step {k}: {what}: retry"
            ),
            Insert(block) => {
                tree.insert(block);
            }
            TreeCommit(block) => tree.commit(block, None),
            CommittedUpTo(h) => commit.committed_up_to(Height(h)),
        }
        assert_eq!(
            commit.pending.as_ref().map(|p| p.round().0),
            s.pending,
            "step {k}: {what}: pending QC"
        );
        assert_eq!(served(&tree, 1), s.served, "step {k}: {what}: served");
    }
    commit.clear();
    assert!(commit.pending.is_none());
}

#[test]
fn a_qc_off_the_committed_chain_never_commits() {
    // b1 is committed; f1 (another child of genesis) and its child f2 were
    // pruned with it. QC(f3) commits f2 by the 2-chain rule.
    let blocks = chain_of(2);
    let root_qc = QuorumCert::root(Epoch::ZERO, &genesis());
    let f1 = child(&root_qc, 5);
    let f2 = child(&qc_of(&f1), 6);
    let f3 = child(&qc_of(&f2), 7);
    let mut tree = BlockTree::new(genesis(), Round::ZERO);
    tree.insert(blocks[0].clone());
    tree.insert(f1.clone());
    tree.insert(f2.clone());
    tree.commit(blocks[0].clone(), None);
    assert!(
        !tree.contains(&f1.id()) && !tree.contains(&f2.id()),
        "pruned"
    );

    let mut commit = Commit::default();
    let qc = qc_of(&f3);
    assert_eq!(commit_target(&qc), Ok(f2.id()));
    let step = commit.plan(&mut tree, f2.id(), &qc);
    assert!(
        !matches!(step, CommitStep::Chain(_) | CommitStep::Done),
        "a chain through f1 conflicts with b1: {step:?}"
    );
    assert_eq!(commit.retry(&tree), None, "and it never becomes complete");
    tree.insert(blocks[1].clone());
    assert_eq!(commit.retry(&tree), None, "not even as the tree grows");
    assert_eq!(tree.root().id, blocks[0].id(), "the root did not move");
}

#[test]
fn commit_chain_delivers_oldest_first_up_to_the_epoch_end() {
    struct Step {
        what: &'static str,
        chain: Vec<Block>,
        qc: QuorumCert,
        end: u64,
        committed: Vec<Hash>,
        root: Hash,
        pending: Vec<Hash>,
        /// The committed range served from this height, and its QC's round.
        served_from: u64,
        served: Option<(Vec<Hash>, Round)>,
    }

    let set = set();
    let blocks = chain_of(7);
    let b = |h: usize| blocks[h - 1].clone();
    let fork2 = child(&qc_of(&b(1)), 9);
    let mut tree = BlockTree::new(genesis(), Round::ZERO);
    for h in 1..=6 {
        tree.insert(b(h));
    }
    tree.insert(fork2.clone());
    let mut election = LeaderElection::new(Epoch::ZERO);
    // What the election must have seen: the committed blocks, in order.
    let mut expected_election = LeaderElection::new(Epoch::ZERO);

    let steps = vec![
        Step {
            what: "the chain is committed oldest first; the root moves to its last \
                   block; blocks off it are pruned; the QC is its proof",
            chain: vec![b(1), b(2)],
            qc: qc_of(&b(3)),
            end: 4,
            committed: ids(&[b(1), b(2)]),
            root: b(2).id(),
            pending: ids(&[b(3), b(4), b(5), b(6)]),
            served_from: 1,
            served: Some((ids(&[b(1), b(2)]), Round(3))),
        },
        Step {
            what: "a chain past the epoch's end commits up to the end; the rest is \
                   served with the proof",
            chain: vec![b(3), b(4), b(5)],
            qc: qc_of(&b(6)),
            end: 4,
            committed: ids(&[b(3), b(4)]),
            root: b(4).id(),
            pending: ids(&[b(5), b(6)]),
            served_from: 3,
            served: Some((ids(&[b(3), b(4), b(5)]), Round(6))),
        },
        Step {
            what: "a chain wholly past the end commits nothing; the proof of the end \
                   grows",
            chain: vec![b(5), b(6)],
            qc: qc_of(&b(7)),
            end: 4,
            committed: vec![],
            root: b(4).id(),
            pending: ids(&[b(5), b(6)]),
            served_from: 3,
            served: Some((ids(&[b(3), b(4), b(5), b(6)]), Round(7))),
        },
    ];

    for (k, s) in steps.into_iter().enumerate() {
        let what = s.what;
        let mut committed = Vec::new();
        for block in &s.chain {
            if block.height() <= Height(s.end) {
                expected_election.on_commit(&set, block);
            }
        }
        commit_chain(
            &mut tree,
            &mut election,
            &set,
            s.chain,
            &s.qc,
            Height(s.end),
            &mut committed,
        );
        assert_eq!(ids(&committed), s.committed, "step {k}: {what}: committed");
        assert_eq!(tree.root().id, s.root, "step {k}: {what}: root");
        for id in &s.pending {
            assert!(tree.contains(id), "step {k}: {what}: {id:?} pending");
        }
        let root_height = tree.root().height;
        for below in blocks.iter().filter(|b| b.height() < root_height) {
            assert!(
                !tree.contains(&below.id()),
                "step {k}: {what}: {:?} below the root pruned",
                below.id()
            );
        }
        assert!(!tree.contains(&fork2.id()), "step {k}: {what}: fork pruned");
        assert_eq!(
            served(&tree, s.served_from),
            s.served,
            "step {k}: {what}: served"
        );
        assert_eq!(
            format!("{election:?}"),
            format!("{expected_election:?}"),
            "step {k}: {what}: every committed block, and only those, counts for reputation"
        );
    }

    // Committed once: the QC that committed b2 is done when read again.
    let mut commit = Commit::default();
    assert_eq!(
        commit.plan(&mut tree, b(2).id(), &qc_of(&b(3))),
        CommitStep::Done
    );
}

#[test]
fn commit_target_is_the_parent_of_a_qc_of_consecutive_rounds() {
    let blocks = chain_of(3);
    // A block of round 3 on QC(b1): round 2 timed out.
    let after_tc = child(&qc_of(&blocks[0]), 3);
    let not_consecutive = |round: u64| {
        Err(Reject::MalformedCertificate {
            what: "commit",
            round: Round(round),
            reason: "the QC commits nothing (rounds not consecutive)",
        })
    };
    let cases = [
        ("QC(b3) commits b2", qc_of(&blocks[2]), Ok(blocks[1].id())),
        ("QC(b2) commits b1", qc_of(&blocks[1]), Ok(blocks[0].id())),
        (
            "QC(b1) names the root, its parent of round 0",
            qc_of(&blocks[0]),
            Ok(genesis().id),
        ),
        (
            "a QC of round 3 on a block of round 1",
            qc_of(&after_tc),
            not_consecutive(3),
        ),
        (
            "the root QC commits nothing",
            QuorumCert::root(Epoch::ZERO, &genesis()),
            not_consecutive(0),
        ),
    ];
    for (k, (what, qc, expect)) in cases.into_iter().enumerate() {
        assert_eq!(commit_target(&qc), expect, "case {k}: {what}");
    }
}
