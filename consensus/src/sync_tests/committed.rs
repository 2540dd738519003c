//! Committed ranges, probes and serving peers.

use super::*;

#[test]
fn committed_ranges_and_probes_are_closed_only_by_the_peer_asked() {
    enum Op {
        Want {
            id: Hash,
            height: u64,
            from: Option<u8>,
        },
        Fire,
        ClaimCommitted {
            from: u8,
            expect: Result<bool, Reject>,
        },
        Probe(u8),
    }
    struct Step {
        what: &'static str,
        now: u64,
        op: Op,
        sends: Vec<(u8, SyncRequest)>,
        committed: Option<u8>,
        probe: Option<u8>,
        deadline: Option<u64>,
    }

    let set = set();
    let root = genesis(&set);
    let blocks = chain_from(&root, 40);
    let b = |h: usize| blocks[h - 1].id();
    let tree = BlockTree::new(root, Round::ZERO);
    let mut sync = Sync::default();
    let unsolicited = Err(Reject::Unsolicited {
        what: "committed range",
    });
    let far = limits::SYNC_ANCESTORS_GAP_MAX + 8;

    use Op::*;
    let steps = vec![
        Step {
            what: "a block more than SYNC_ANCESTORS_GAP_MAX above the root: a committed \
                   range from the root up is asked of the peer that showed it",
            now: 0,
            op: Want {
                id: b(40),
                height: far,
                from: Some(3),
            },
            sends: vec![(3, committed_from(1))],
            committed: Some(3),
            probe: None,
            deadline: Some(100),
        },
        Step {
            what: "one committed range at a time",
            now: 10,
            op: Want {
                id: b(39),
                height: far - 1,
                from: Some(2),
            },
            sends: vec![],
            committed: Some(3),
            probe: None,
            deadline: Some(100),
        },
        Step {
            what: "no probe while a committed range is in flight",
            now: 10,
            op: Probe(2),
            sends: vec![],
            committed: Some(3),
            probe: None,
            deadline: Some(100),
        },
        Step {
            what: "the committed range is not retried before its retry period",
            now: 99,
            op: Fire,
            sends: vec![],
            committed: Some(3),
            probe: None,
            deadline: Some(100),
        },
        Step {
            what: "a due committed range is asked of the next peer (wrapping)",
            now: 100,
            op: Fire,
            sends: vec![(0, committed_from(1))],
            committed: Some(0),
            probe: None,
            deadline: Some(200),
        },
        Step {
            what: "a range from a peer no longer asked is unsolicited",
            now: 100,
            op: ClaimCommitted {
                from: 3,
                expect: unsolicited.clone(),
            },
            sends: vec![],
            committed: Some(0),
            probe: None,
            deadline: Some(200),
        },
        Step {
            what: "the peer asked closes the request",
            now: 100,
            op: ClaimCommitted {
                from: 0,
                expect: Ok(true),
            },
            sends: vec![],
            committed: None,
            probe: None,
            deadline: None,
        },
        Step {
            what: "a proposer not taken for the leader is probed for commits",
            now: 110,
            op: Probe(2),
            sends: vec![(2, committed_from(1))],
            committed: None,
            probe: Some(2),
            deadline: None,
        },
        Step {
            what: "one probe per retry period",
            now: 209,
            op: Probe(3),
            sends: vec![],
            committed: None,
            probe: Some(2),
            deadline: None,
        },
        Step {
            what: "after the retry period, another probe",
            now: 210,
            op: Probe(3),
            sends: vec![(3, committed_from(1))],
            committed: None,
            probe: Some(3),
            deadline: None,
        },
        Step {
            what: "the peer probed before is no longer the one probed",
            now: 210,
            op: ClaimCommitted {
                from: 2,
                expect: unsolicited.clone(),
            },
            sends: vec![],
            committed: None,
            probe: Some(3),
            deadline: None,
        },
        Step {
            what: "the probed peer's range is accepted, though not as the range asked",
            now: 210,
            op: ClaimCommitted {
                from: 3,
                expect: Ok(false),
            },
            sends: vec![],
            committed: None,
            probe: None,
            deadline: None,
        },
        Step {
            what: "a second range from the probed peer is unsolicited",
            now: 210,
            op: ClaimCommitted {
                from: 3,
                expect: unsolicited.clone(),
            },
            sends: vec![],
            committed: None,
            probe: None,
            deadline: None,
        },
        Step {
            what: "this replica never probes itself",
            now: 400,
            op: Probe(ME),
            sends: vec![],
            committed: None,
            probe: None,
            deadline: None,
        },
        Step {
            what: "far behind with no peer named: the first other validator is asked",
            now: 400,
            op: Want {
                id: b(40),
                height: far,
                from: None,
            },
            sends: vec![(0, committed_from(1))],
            committed: Some(0),
            probe: None,
            deadline: Some(500),
        },
        Step {
            what: "a range from a peer outside the set is unsolicited",
            now: 400,
            op: ClaimCommitted {
                from: OUTSIDER,
                expect: unsolicited.clone(),
            },
            sends: vec![],
            committed: Some(0),
            probe: None,
            deadline: Some(500),
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
            ClaimCommitted { from, expect } => assert_eq!(
                sync.claim_committed(pk(from)),
                expect,
                "step {k}: {what}: claim_committed"
            ),
            Probe(peer) => sync.probe_commits(&p, &tree, pk(peer), &mut out),
        }
        let context = format!("step {k}: {what}");
        assert_eq!(out, requests(&s.sends), "{context}: sent");
        assert_eq!(
            peer_of(sync.committed),
            s.committed.map(pk),
            "{context}: committed range in flight"
        );
        assert_eq!(
            peer_of(sync.probe),
            s.probe.map(pk),
            "{context}: probe in flight"
        );
        assert_eq!(
            sync.deadline(RETRY),
            s.deadline.map(Millis),
            "{context}: deadline"
        );
        assert!(
            sync.wanted.is_empty(),
            "{context}: far blocks are not fetched by id"
        );
    }
}

#[test]
fn serving_answers_from_the_tree_and_probes_back_validators_ahead() {
    struct Step {
        what: &'static str,
        from: u8,
        awaiting_epoch: bool,
        request: SyncRequest,
        expect: Result<(), Reject>,
        sends: Vec<Outbound>,
        probe: Option<u8>,
    }

    let set = set();
    let root = genesis(&set);
    let blocks = chain_from(&root, 9);
    let b = |h: usize| blocks[h - 1].clone();
    // b1 and b2 committed (b2 with QC(b3) as its proof), b3 and b4 pending:
    // the root is at height 2.
    let mut tree = BlockTree::new(root, Round::ZERO);
    for h in 1..=4 {
        tree.insert(b(h));
    }
    tree.commit(b(1), None);
    tree.commit(b(2), Some((Vec::new(), qc_of(&b(3)))));
    assert_eq!(tree.root().height, Height(2));
    let not_in_window = Err(Reject::Unexpected {
        what: "committed range request",
        reason: "the range is not in the committed window",
    });
    let committed_of = |epoch: u64, height: u64| SyncRequest::Committed {
        epoch: Epoch(epoch),
        from_height: Height(height),
    };
    let mut sync = Sync::default();

    let steps = vec![
        Step {
            what: "ancestors newest first, from the pending tree into the committed window",
            from: 0,
            awaiting_epoch: false,
            request: ancestors(b(4).id(), 3),
            expect: Ok(()),
            sends: vec![to(
                0,
                Message::SyncResponse(SyncResponse::Ancestors {
                    blocks: vec![b(4), b(3), b(2)],
                }),
            )],
            probe: None,
        },
        Step {
            what: "ancestors stop at the oldest block known",
            from: 2,
            awaiting_epoch: false,
            request: ancestors(b(1).id(), 5),
            expect: Ok(()),
            sends: vec![to(
                2,
                Message::SyncResponse(SyncResponse::Ancestors { blocks: vec![b(1)] }),
            )],
            probe: None,
        },
        Step {
            what: "ancestors of an unknown block are refused",
            from: 0,
            awaiting_epoch: false,
            request: ancestors(b(9).id(), 2),
            expect: Err(Reject::UnknownBlock { id: b(9).id() }),
            sends: vec![],
            probe: None,
        },
        Step {
            what: "a committed range comes from the window with the QC that commits it",
            from: 3,
            awaiting_epoch: false,
            request: committed_from(1),
            expect: Ok(()),
            sends: vec![to(
                3,
                Message::SyncResponse(SyncResponse::Committed {
                    blocks: vec![b(1), b(2)],
                    commit_qc: qc_of(&b(3)),
                }),
            )],
            probe: None,
        },
        Step {
            what: "a range above the window is refused; a peer outside the set asking \
                   above root + 1 is not probed back",
            from: OUTSIDER,
            awaiting_epoch: false,
            request: committed_from(4),
            expect: not_in_window.clone(),
            sends: vec![],
            probe: None,
        },
        Step {
            what: "a validator ahead is not probed back while the epoch change is awaited",
            from: 2,
            awaiting_epoch: true,
            request: committed_from(4),
            expect: not_in_window.clone(),
            sends: vec![],
            probe: None,
        },
        Step {
            what: "a validator asking for another epoch is not probed back",
            from: 2,
            awaiting_epoch: false,
            request: committed_of(1, 4),
            expect: not_in_window.clone(),
            sends: vec![],
            probe: None,
        },
        Step {
            what: "a validator asking from root + 1 is not ahead",
            from: 2,
            awaiting_epoch: false,
            request: committed_from(3),
            expect: not_in_window.clone(),
            sends: vec![],
            probe: None,
        },
        Step {
            what: "a validator asking above root + 1 is ahead: probed back from root + 1",
            from: 2,
            awaiting_epoch: false,
            request: committed_from(4),
            expect: not_in_window.clone(),
            sends: vec![to(2, Message::SyncRequest(committed_from(3)))],
            probe: Some(2),
        },
        Step {
            what: "another validator ahead within the retry period is not probed",
            from: 3,
            awaiting_epoch: false,
            request: committed_from(5),
            expect: not_in_window.clone(),
            sends: vec![],
            probe: Some(2),
        },
    ];

    for (k, s) in steps.into_iter().enumerate() {
        let what = s.what;
        let mut out = Vec::new();
        let result = sync.serve(
            &peers(&set, 0),
            &tree,
            s.awaiting_epoch,
            pk(s.from),
            s.request,
            &mut out,
        );
        assert_eq!(result, s.expect, "step {k}: {what}: result");
        assert_eq!(out, s.sends, "step {k}: {what}: sent");
        assert_eq!(
            peer_of(sync.probe),
            s.probe.map(pk),
            "step {k}: {what}: probe"
        );
        assert!(
            sync.committed.is_none(),
            "step {k}: {what}: serving starts no committed range request"
        );
    }
}
