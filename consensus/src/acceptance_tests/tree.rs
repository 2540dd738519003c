//! Old blocks, the orphan and tree bounds, committed ranges, restores.

use super::*;

#[test]
fn blocks_at_or_below_the_committed_root_are_old() {
    // b1 and b2 enter and are committed: the root is b2, at height 2.
    let blocks = chain_of(3);
    let mut acc = acceptance();
    let mut persist = Vec::new();
    for b in &blocks[..2] {
        let placed = acc.place(b.clone(), pk(0), None, CURRENT, Height(10), &mut persist);
        assert_eq!(placed, Ok(Placed::Inserted));
        acc.tree.commit(b.clone(), None);
    }
    persist.clear();
    let fork1 = Shape {
        round: 5,
        timestamp_ms: 1_005,
        ..Shape::child_of(&root_qc())
    }
    .build();
    let fork2 = Shape {
        round: 6,
        timestamp_ms: 1_006,
        ..Shape::child_of(&qc_of(&blocks[0]))
    }
    .build();
    // At the root's height, on a parent never seen: old, not an orphan.
    let low_orphan = Shape {
        height: 2,
        ..Shape::child_of(&qc_of(&chain_of(4)[3]))
    }
    .build();
    let cases = [
        (
            "a committed block below the root offered again",
            blocks[0].clone(),
        ),
        ("a fork below the root's height", fork1),
        ("a fork at the root's height", fork2),
        (
            "a block at the root's height with a missing parent",
            low_orphan,
        ),
    ];
    for (what, block) in cases {
        let round = block.round();
        assert_eq!(
            acc.place(block, pk(0), None, CURRENT, Height(10), &mut persist),
            Err(Reject::OldRound {
                what: "block",
                round,
                current: CURRENT,
            }),
            "{what}"
        );
        assert!(persist.is_empty(), "{what}: nothing persisted");
        assert!(acc.orphans.is_empty(), "{what}: no orphan kept");
    }
    assert_eq!(
        acc.place(
            blocks[2].clone(),
            pk(0),
            None,
            CURRENT,
            Height(10),
            &mut persist
        ),
        Ok(Placed::Inserted),
        "a child of the new root enters"
    );
}

/// Orphans whose (missing) parents are distinct blocks of height 1: the
/// orphan of index `i` has round `first_round + i`.
fn orphans(n: usize, first_round: u64) -> Vec<Block> {
    (0..n as u64)
        .map(|i| {
            let parent = Shape {
                payload: i.to_be_bytes().to_vec(),
                ..Shape::child_of(&root_qc())
            }
            .build();
            Shape {
                round: first_round + i,
                timestamp_ms: 2_000 + i,
                ..Shape::child_of(&qc_of(&parent))
            }
            .build()
        })
        .collect()
}

#[test]
fn the_orphan_bound_evicts_the_oldest_round() {
    let mut acc = acceptance();
    let mut persist = Vec::new();
    // Offered newest round first, so eviction cannot just be arrival order.
    let mut waiting = orphans(limits::MAX_ORPHAN_BLOCKS + 1, 10);
    let newest = waiting.pop().expect("one more than the bound");
    for o in waiting.iter().rev() {
        let placed = acc.place(o.clone(), pk(0), None, CURRENT, Height(10), &mut persist);
        assert!(matches!(placed, Ok(Placed::Orphaned { .. })), "{placed:?}");
    }
    assert_eq!(acc.orphans.len(), limits::MAX_ORPHAN_BLOCKS);
    let placed = acc.place(
        newest.clone(),
        pk(0),
        None,
        CURRENT,
        Height(10),
        &mut persist,
    );
    assert_eq!(
        placed,
        Ok(Placed::Orphaned {
            parent: newest.parent_id(),
            parent_height: Height(1),
        })
    );
    assert_eq!(acc.orphans.len(), limits::MAX_ORPHAN_BLOCKS, "bounded");
    assert!(
        acc.take_orphan(&waiting[0].id()).is_none(),
        "the oldest round was evicted"
    );
    assert!(
        acc.take_orphan(&waiting[1].id()).is_some(),
        "the next stays"
    );
    assert!(acc.take_orphan(&newest.id()).is_some(), "the newest waits");
    assert!(persist.is_empty(), "orphans are not persisted");
}

#[test]
fn committed_up_to_drops_orphans_at_or_below_the_root() {
    let blocks = chain_of(5);
    let mut acc = acceptance();
    let mut persist = Vec::new();
    // Orphans at heights 2, 3 and 5 (their parents at 1, 2 and 4 missing).
    for h in [2, 3, 5] {
        let placed = acc.place(
            blocks[h - 1].clone(),
            pk(0),
            None,
            CURRENT,
            Height(10),
            &mut persist,
        );
        assert!(
            matches!(placed, Ok(Placed::Orphaned { .. })),
            "height {h}: {placed:?}"
        );
    }
    acc.committed_up_to(Height(3));
    assert_eq!(
        orphan_ids(&acc),
        BTreeSet::from([blocks[4].id()]),
        "only the orphan above the root is left"
    );
    acc.clear_orphans();
    assert!(acc.orphans.is_empty(), "a new epoch drops every orphan");
}

#[test]
fn the_pending_tree_is_bounded() {
    let blocks = chain_of(limits::MAX_PENDING_BLOCKS as u64 + 2);
    let mut acc = acceptance();
    for b in &blocks[..limits::MAX_PENDING_BLOCKS - 1] {
        acc.tree.insert(b.clone());
    }
    let full = Reject::Full {
        what: "pending block tree",
        limit: limits::MAX_PENDING_BLOCKS,
    };
    let mut persist = Vec::new();
    let last = limits::MAX_PENDING_BLOCKS - 1;
    assert_eq!(
        acc.insert_committed(blocks[last..last + 2].to_vec(), &mut persist),
        Err(full.clone()),
        "a committed range that would overflow the tree"
    );
    assert!(persist.is_empty());
    assert_eq!(
        acc.place(
            blocks[last].clone(),
            pk(0),
            None,
            CURRENT,
            Height(u64::MAX),
            &mut persist
        ),
        Ok(Placed::Inserted),
        "the last free place"
    );
    persist.clear();
    assert_eq!(
        acc.place(
            blocks[last + 1].clone(),
            pk(0),
            None,
            CURRENT,
            Height(u64::MAX),
            &mut persist
        ),
        Err(full),
        "a block beyond MAX_PENDING_BLOCKS"
    );
    assert!(persist.is_empty(), "a refused block is not persisted");
    assert_eq!(acc.tree.len(), limits::MAX_PENDING_BLOCKS);
    // A block with a missing parent still waits: orphans have their own bound.
    let orphan = Shape::child_of(&qc_of(&blocks[last + 1])).build();
    assert!(matches!(
        acc.place(orphan, pk(0), None, CURRENT, Height(u64::MAX), &mut persist),
        Ok(Placed::Orphaned { .. })
    ));
}

#[test]
fn committed_ranges_insert_only_new_blocks() {
    let blocks = chain_of(3);
    let mut acc = acceptance();
    let mut persist = Vec::new();
    acc.tree.insert(blocks[0].clone());
    assert_eq!(
        acc.insert_committed(blocks.clone(), &mut persist),
        Ok(ids(&blocks[1..])),
        "the blocks not in the tree yet"
    );
    assert_eq!(ids(&persist), ids(&blocks[1..]), "persisted");
    assert_eq!(acc.tree.len(), 3);
    persist.clear();
    assert_eq!(
        acc.insert_committed(blocks.clone(), &mut persist),
        Ok(vec![]),
        "again: nothing new"
    );
    assert!(persist.is_empty());
    assert_eq!(acc.tree.len(), 3);
}

#[test]
fn restore_replays_the_committed_chain_and_keeps_pending_blocks() {
    let blocks = chain_of(5);
    let b = |h: usize| blocks[h - 1].clone();
    // Another child of b1 (not on the committed chain), a block of another
    // epoch on b3, and a block whose parent was never stored.
    let fork2 = Shape {
        round: 6,
        timestamp_ms: 1_006,
        ..Shape::child_of(&qc_of(&b(1)))
    }
    .build();
    let other_epoch = Shape {
        epoch: 1,
        ..Shape::child_of(&qc_of(&b(3)))
    }
    .build();
    let unlinked = Shape::child_of(&qc_of(&chain_of(6)[5])).build();
    let genesis = genesis();
    struct Case {
        what: &'static str,
        epoch: u64,
        last_applied: Hash,
        stored: Vec<Block>,
        expect: Result<(), Reject>,
        replayed: Vec<Hash>,
        root: Hash,
        pending: Vec<Hash>,
    }
    let cases = vec![
        Case {
            what: "the committed chain up to last_applied, oldest first; pending blocks \
                   descending from it; nothing else",
            epoch: 0,
            last_applied: b(3).id(),
            stored: vec![
                b(5),
                fork2.clone(),
                b(2),
                unlinked.clone(),
                b(4),
                b(1),
                other_epoch.clone(),
                b(3),
            ],
            expect: Ok(()),
            replayed: ids(&[b(1), b(2), b(3)]),
            root: b(3).id(),
            pending: ids(&[b(4), b(5)]),
        },
        Case {
            what: "history given in part starts at its oldest block",
            epoch: 0,
            last_applied: b(3).id(),
            stored: vec![b(3), b(2), b(4)],
            expect: Ok(()),
            replayed: ids(&[b(2), b(3)]),
            root: b(3).id(),
            pending: ids(&[b(4)]),
        },
        Case {
            what: "nothing applied yet: every stored block whose parent is known",
            epoch: 0,
            last_applied: genesis.id,
            stored: vec![fork2.clone(), b(2), b(1), unlinked.clone()],
            expect: Ok(()),
            replayed: vec![],
            root: genesis.id,
            pending: ids(&[b(1), b(2), fork2.clone()]),
        },
        Case {
            what: "last_applied not stored",
            epoch: 0,
            last_applied: b(3).id(),
            stored: vec![b(1), b(2)],
            expect: Err(Reject::UnknownBlock { id: b(3).id() }),
            replayed: vec![],
            root: genesis.id,
            pending: vec![],
        },
        Case {
            what: "blocks of another epoch do not count",
            epoch: 1,
            last_applied: b(3).id(),
            stored: vec![b(1), b(2), b(3)],
            expect: Err(Reject::UnknownBlock { id: b(3).id() }),
            replayed: vec![],
            root: genesis.id,
            pending: vec![],
        },
    ];
    for (k, c) in cases.into_iter().enumerate() {
        let what = c.what;
        let mut acc = acceptance();
        let mut replayed = Vec::new();
        let result = acc.restore(Epoch(c.epoch), c.last_applied, c.stored, |b| {
            replayed.push(b.id())
        });
        assert_eq!(result, c.expect, "case {k}: {what}: result");
        assert_eq!(replayed, c.replayed, "case {k}: {what}: on_commit order");
        assert_eq!(acc.tree.root().id, c.root, "case {k}: {what}: root");
        assert_eq!(acc.tree.len(), c.pending.len(), "case {k}: {what}: pending");
        for id in &c.pending {
            assert!(acc.tree.contains(id), "case {k}: {what}: {id:?} pending");
        }
        for id in &c.replayed {
            assert!(
                acc.tree.find(id).is_some(),
                "case {k}: {what}: {id:?} in the committed window"
            );
        }
    }
}
