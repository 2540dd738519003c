//! Probing in turn, bounds, deadlines, peer order and range checks.

use super::*;

#[test]
fn timeouts_probe_the_other_validators_in_turn() {
    struct Step {
        what: &'static str,
        now: u64,
        /// Open a committed-range request with this peer first.
        committed_with: Option<u8>,
        probed: Option<u8>,
    }
    let set = set();
    let tree = BlockTree::new(genesis(&set), Round::ZERO);
    let mut sync = Sync::default();
    let steps = [
        Step {
            what: "the first timeout probes the first other validator",
            now: 0,
            committed_with: None,
            probed: Some(0),
        },
        Step {
            what: "the next one probes the next validator, skipping this replica",
            now: 100,
            committed_with: None,
            probed: Some(2),
        },
        Step {
            what: "and the next",
            now: 200,
            committed_with: None,
            probed: Some(3),
        },
        Step {
            what: "the turn wraps around",
            now: 300,
            committed_with: None,
            probed: Some(0),
        },
        Step {
            what: "no probe while a committed range is in flight",
            now: 400,
            committed_with: Some(3),
            probed: None,
        },
    ];
    for (k, s) in steps.into_iter().enumerate() {
        let what = s.what;
        let p = peers(&set, s.now);
        let mut out = Vec::new();
        if let Some(peer) = s.committed_with {
            sync.start_committed(&p, &tree, pk(peer), &mut out);
            assert_eq!(
                out,
                requests(&[(peer, committed_from(1))]),
                "step {k}: {what}: committed range asked"
            );
            out.clear();
        }
        sync.probe_on_timeout(&p, &tree, &mut out);
        let expected = s
            .probed
            .map(|peer| requests(&[(peer, committed_from(1))]))
            .unwrap_or_default();
        assert_eq!(out, expected, "step {k}: {what}: sent");
    }
}

#[test]
fn wanted_blocks_are_bounded() {
    let set = set();
    let root = genesis(&set);
    let tree = BlockTree::new(root, Round::ZERO);
    let p = peers(&set, 0);
    let mut sync = Sync::default();
    let id = |i: usize| Hash::digest(&(i as u64).to_be_bytes());
    for i in 0..limits::MAX_WANTED_BLOCKS {
        let mut out = Vec::new();
        sync.want(&p, &tree, id(i), Height(3), Some(pk(2)), &mut out);
        assert_eq!(out, requests(&[(2, ancestors(id(i), 3))]), "want {i}");
    }
    let mut out = Vec::new();
    sync.want(&p, &tree, id(1_000), Height(3), Some(pk(2)), &mut out);
    assert!(
        out.is_empty(),
        "a block beyond MAX_WANTED_BLOCKS is not asked"
    );
    assert_eq!(sync.wanted.len(), limits::MAX_WANTED_BLOCKS);
    assert!(!sync.wanted.contains_key(&id(1_000)));

    // A far block still starts a committed range: that is one request.
    let far = Height(limits::SYNC_ANCESTORS_GAP_MAX + 1);
    sync.want(&p, &tree, id(2_000), far, Some(pk(3)), &mut out);
    assert_eq!(out, requests(&[(3, committed_from(1))]), "far block");
    out.clear();

    // Room again once one arrived.
    assert!(sync.claim(&id(0)));
    sync.want(&p, &tree, id(1_000), Height(3), Some(pk(2)), &mut out);
    assert_eq!(out, requests(&[(2, ancestors(id(1_000), 3))]), "room again");
}

#[test]
fn the_deadline_is_the_oldest_request_plus_the_retry_period() {
    let set = set();
    let root = genesis(&set);
    let blocks = chain_from(&root, 40);
    let tree = BlockTree::new(root, Round::ZERO);
    let mut sync = Sync::default();
    let mut out = Vec::new();
    assert_eq!(sync.deadline(RETRY), None, "nothing in flight");

    sync.want(
        &peers(&set, 10),
        &tree,
        blocks[39].id(),
        Height(40),
        None,
        &mut out,
    );
    assert_eq!(sync.deadline(RETRY), Some(Millis(110)), "committed range");
    sync.want(
        &peers(&set, 30),
        &tree,
        blocks[4].id(),
        Height(5),
        None,
        &mut out,
    );
    assert_eq!(sync.deadline(RETRY), Some(Millis(110)), "the older of two");
    assert_eq!(sync.claim_committed(pk(0)), Ok(true));
    assert_eq!(sync.deadline(RETRY), Some(Millis(130)), "the block left");
    // A probe is never retried, so it sets no deadline.
    sync.probe_commits(&peers(&set, 40), &tree, pk(3), &mut out);
    assert_eq!(sync.deadline(RETRY), Some(Millis(130)), "probe");
    assert_eq!(out.len(), 3, "committed range, block, probe: {out:?}");
}

#[test]
fn far_behind_follows_the_highest_height_a_qc_showed() {
    let mut sync = Sync::default();
    let gap = limits::SYNC_ANCESTORS_GAP_MAX;
    assert!(!sync.far_behind(Height(0)), "nothing seen");
    sync.saw_height(Height(gap + 10));
    assert!(
        sync.far_behind(Height(9)),
        "more than the gap above the root"
    );
    assert!(
        !sync.far_behind(Height(10)),
        "exactly the gap above the root"
    );
    sync.saw_height(Height(5));
    assert!(
        sync.far_behind(Height(9)),
        "a lower height does not lower it"
    );
}

#[test]
fn next_peer_follows_the_set_order_skipping_this_replica() {
    let four = set();
    let lone = ValidatorSet::new(vec![Validator {
        public_key: pk(ME),
        power: 10,
    }])
    .expect("validator set");
    let cases: &[(&str, &ValidatorSet, u8, Option<u8>)] = &[
        (
            "after the first comes the next, skipping this replica",
            &four,
            0,
            Some(2),
        ),
        ("in order", &four, 2, Some(3)),
        ("after the last, wraps to the first", &four, 3, Some(0)),
        (
            "after a key outside the set, the first",
            &four,
            OUTSIDER,
            Some(0),
        ),
        ("after this replica, the first other", &four, ME, Some(0)),
        ("no other validator, nobody", &lone, ME, None),
        (
            "no other validator, nobody, whoever came before",
            &lone,
            0,
            None,
        ),
    ];
    for (k, (what, set, after, expected)) in cases.iter().enumerate() {
        let p = Peers {
            me: pk(ME),
            set,
            epoch: Epoch::ZERO,
            now: Millis::ZERO,
            retry_ms: RETRY,
        };
        assert_eq!(p.next(&pk(*after)), expected.map(pk), "case {k}: {what}");
    }
}

#[test]
fn check_range_accepts_only_a_range_linking_the_root_to_the_target() {
    let set = set();
    let genesis = genesis(&set);
    let blocks = chain_from(&genesis, 4);
    let b = |h: usize| blocks[h - 1].clone();
    let fork2 = child(&qc_of(&b(1)), 7);
    let tall2 = block_with(&qc_of(&b(1)), 2, 3);
    let root1 = RootBlock::of(&b(1));
    struct Case {
        what: &'static str,
        blocks: Vec<Block>,
        root: RootBlock,
        target: Hash,
        accepted: Option<Vec<Block>>,
    }
    let cases = vec![
        Case {
            what: "a linked range ending at the target",
            blocks: vec![b(1), b(2), b(3)],
            root: genesis,
            target: b(3).id(),
            accepted: Some(vec![b(1), b(2), b(3)]),
        },
        Case {
            what: "blocks at or below the root are dropped",
            blocks: vec![b(1), b(2), b(3)],
            root: root1,
            target: b(3).id(),
            accepted: Some(vec![b(2), b(3)]),
        },
        Case {
            what: "one block, the child of the root",
            blocks: vec![b(1)],
            root: genesis,
            target: b(1).id(),
            accepted: Some(vec![b(1)]),
        },
        Case {
            what: "a gap",
            blocks: vec![b(1), b(3)],
            root: genesis,
            target: b(3).id(),
            accepted: None,
        },
        Case {
            what: "a range not ending at the target",
            blocks: vec![b(1), b(2)],
            root: genesis,
            target: b(3).id(),
            accepted: None,
        },
        Case {
            what: "a range past the target",
            blocks: vec![b(1), b(2), b(3)],
            root: genesis,
            target: b(2).id(),
            accepted: None,
        },
        Case {
            what: "a range not starting at the root",
            blocks: vec![b(2), b(3)],
            root: genesis,
            target: b(3).id(),
            accepted: None,
        },
        Case {
            what: "a range on another branch than the root's",
            blocks: vec![b(3), b(4)],
            root: RootBlock::of(&fork2),
            target: b(4).id(),
            accepted: None,
        },
        Case {
            what: "a block of another branch in the middle",
            blocks: vec![b(1), fork2.clone(), b(3)],
            root: genesis,
            target: b(3).id(),
            accepted: None,
        },
        Case {
            what: "linked by id but heights not consecutive",
            blocks: vec![b(1), tall2.clone()],
            root: genesis,
            target: tall2.id(),
            accepted: None,
        },
        Case {
            what: "out of order",
            blocks: vec![b(2), b(1)],
            root: genesis,
            target: b(1).id(),
            accepted: None,
        },
        Case {
            what: "empty",
            blocks: vec![],
            root: genesis,
            target: b(1).id(),
            accepted: None,
        },
    ];
    let refused = Reject::Unexpected {
        what: "committed range",
        reason: "blocks do not link the committed root to the commit QC",
    };
    for (k, c) in cases.into_iter().enumerate() {
        let expected = c.accepted.ok_or_else(|| refused.clone());
        assert_eq!(
            check_range(c.blocks, &c.root, c.target),
            expected,
            "case {k}: {}",
            c.what
        );
    }
}
