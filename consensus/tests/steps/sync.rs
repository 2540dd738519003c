//! Steps of block sync: missing parents, committed ranges, commit probes.

use super::*;

#[test]
fn block_sync_fills_a_missing_parent() {
    let mut fx = Fixture::new(config(), |leader, me| (1..=3).all(|r| leader(r) != me));
    let b1 = fx.block(1, &fx.genesis_qc.clone(), None, b"one");
    let qc1 = fx.qc(&b1.block, &fx.quorum());
    let b2 = fx.block(2, &qc1, None, b"two");
    let forged = fx.block(1, &fx.genesis_qc.clone(), None, b"forged");
    let proposer2 = fx.leader(2);
    let peer = fx.from(proposer2);
    let (id1, blk2) = (b1.block.id(), b2.block.clone());
    let steps = vec![
        step(
            "B2 arrives, B1 was never seen",
            fx.proposal_input(&b2),
            move |res, ready, rep| {
                assert_eq!(res, &Ok(()));
                let asked = ready.messages.iter().any(|m| m.to == Destination::To(peer) && matches!(m.message, Message::SyncRequest(SyncRequest::Ancestors { id, .. }) if id == id1));
                assert!(asked, "asks the proposer for B1: {:?}", ready.messages);
                assert_eq!(rep.pending_blocks(), 0);
                assert!(ready.requests.is_empty(), "no vote without the parent");
            },
        ),
        step(
            "a block that is not the one certified",
            fx.msg(
                proposer2,
                Message::SyncResponse(SyncResponse::Ancestors {
                    blocks: vec![forged.block.clone()],
                }),
            ),
            |res, _, rep| {
                assert_eq!(
                    res,
                    &Err(Reject::Unsolicited {
                        what: "ancestor blocks"
                    })
                );
                assert_eq!(rep.pending_blocks(), 0);
            },
        ),
        step(
            "B1 arrives by sync",
            fx.msg(
                proposer2,
                Message::SyncResponse(SyncResponse::Ancestors {
                    blocks: vec![b1.block.clone()],
                }),
            ),
            move |res, ready, rep| {
                assert_eq!(res, &Ok(()));
                assert_eq!(rep.pending_blocks(), 2);
                assert_eq!(ready.persist.blocks.len(), 2);
                assert!(validates(ready, &blk2), "B2 is now voted on");
            },
        ),
    ];
    fx.run(steps);
}

#[test]
fn a_block_fetched_by_sync_commits_what_its_qc_commits() {
    // The replica missed rounds 1 to 4 and hears of B4 (round 5) only.
    // B4's QC commits nothing (B3 came after a TC); the QC that commits B1
    // is inside B3, which the replica fetches. Without processing the QCs
    // of fetched blocks it stays behind the others' commits.
    let mut fx = Fixture::new(config(), |leader, me| (1..=5).all(|r| leader(r) != me));
    let q = fx.quorum();
    let b1 = fx.block(1, &fx.genesis_qc.clone(), None, b"one");
    let qc1 = fx.qc(&b1.block, &q);
    let b2 = fx.block(2, &qc1, None, b"two");
    let qc2 = fx.qc(&b2.block, &q);
    let entries: Vec<(usize, &QuorumCert)> = q.iter().map(|v| (*v, &qc2)).collect();
    let tc3 = fx.tc(3, &entries);
    let b3 = fx.block(4, &qc2, Some(tc3), b"three");
    let qc3 = fx.qc(&b3.block, &q);
    let b4 = fx.block(5, &qc3, None, b"four");
    let peer = fx.leader(5);
    let (id1, id3) = (b1.block.id(), b3.block.id());
    let steps = vec![
        step(
            "B4 arrives: its QC commits nothing, B3 is missing",
            fx.proposal_input(&b4),
            move |res, ready, _| {
                assert_eq!(res, &Ok(()));
                assert!(ready.committed.is_empty());
                let asked = ready.messages.iter().any(|m| matches!(m.message, Message::SyncRequest(SyncRequest::Ancestors { id, .. }) if id == id3));
                assert!(asked, "asks for B3: {:?}", ready.messages);
            },
        ),
        step(
            "B3, B2, B1 arrive by sync: B3's QC commits B1",
            fx.msg(
                peer,
                Message::SyncResponse(SyncResponse::Ancestors {
                    blocks: vec![b3.block.clone(), b2.block.clone(), b1.block.clone()],
                }),
            ),
            move |res, ready, rep| {
                assert_eq!(res, &Ok(()));
                let committed: Vec<Hash> = ready.committed.iter().map(Block::id).collect();
                assert_eq!(committed, vec![id1]);
                assert_eq!(rep.committed_id(), id1);
                assert_eq!(rep.round(), Round(5));
            },
        ),
    ];
    fx.run(steps);
}

#[test]
fn a_proposal_from_another_leader_than_expected_probes_its_proposer_for_commits() {
    // Replicas one commit apart may compute different leaders. A replica
    // that gets a signed proposal from a validator it does not take for
    // the leader asks that proposer once for the commits above its root,
    // and takes the answer.
    let mut fx = Fixture::new(config(), |leader, me| leader(1) != me && leader(2) != me);
    let q = fx.quorum();
    let other = (0..fx.n())
        .find(|v| *v != fx.me && *v != fx.leader(1))
        .unwrap();
    let b1 = fx.block(1, &fx.genesis_qc.clone(), None, b"one");
    let qc1 = fx.qc(&b1.block, &q);
    let b2 = fx.block(2, &qc1, None, b"two");
    let qc2 = fx.qc(&b2.block, &q);
    let wrong = fx.block_with(0, 1, &fx.genesis_qc.clone(), None, b"other", other);
    let peer = fx.from(other);
    let id1 = b1.block.id();
    let range = Message::SyncResponse(SyncResponse::Committed {
        blocks: vec![b1.block.clone()],
        commit_qc: qc2,
    });
    let steps = vec![
        step(
            "a proposal of round 1 signed by a validator that is not its leader here",
            fx.proposal_input(&wrong),
            move |res, ready, _| {
                assert!(matches!(res, Err(Reject::WrongLeader { .. })), "{res:?}");
                let asked = ready.messages.iter().any(|m| m.to == Destination::To(peer) && matches!(m.message, Message::SyncRequest(SyncRequest::Committed { from_height, .. }) if from_height.0 == 1));
                assert!(asked, "asks the proposer for commits: {:?}", ready.messages);
            },
        ),
        step(
            "the proposer answers with a committed range",
            fx.msg(other, range.clone()),
            move |res, ready, rep| {
                assert_eq!(res, &Ok(()));
                let committed: Vec<Hash> = ready.committed.iter().map(Block::id).collect();
                assert_eq!(committed, vec![id1]);
                assert_eq!(rep.committed_id(), id1);
            },
        ),
        step(
            "the same answer again was not asked for",
            fx.msg(other, range),
            |res, _, _| {
                assert_eq!(
                    res,
                    &Err(Reject::Unsolicited {
                        what: "committed range"
                    })
                );
            },
        ),
    ];
    fx.run(steps);
}

#[test]
fn a_committed_range_request_from_a_replica_ahead_probes_it_back() {
    // Regression (simulator seed 1351): replicas one commit apart split the
    // power so that neither side forms a QC. The replicas behind propose
    // (their leader is not the one computed ahead), so only the replicas
    // ahead probe, and they probe a proposer that has nothing above their
    // root. The request itself says the requester committed further: the
    // replica behind asks it back once, and takes the answer.
    let mut fx = Fixture::new(config(), |leader, me| (1..=3).all(|r| leader(r) != me));
    let ahead = (0..fx.n()).find(|v| *v != fx.me).unwrap();
    let chain = fx.committed_chain();
    let peer = fx.from(ahead);
    let (id1, id2) = (chain.b1.id(), chain.b2.id());
    let probe_from = |height: u64| {
        Message::SyncRequest(SyncRequest::Committed {
            epoch: Epoch(0),
            from_height: commons_types::Height(height),
        })
    };
    let asks_back = move |ready: &Ready| {
        ready.messages.iter().any(|m| {
            m.to == Destination::To(peer)
                && matches!(m.message, Message::SyncRequest(SyncRequest::Committed { from_height, .. }) if from_height.0 == 1)
        })
    };
    let range = chain.range();
    let steps = vec![
        step(
            "a peer at the same committed height asks from height 1: nothing to learn",
            fx.msg(ahead, probe_from(1)),
            move |res, ready, _| {
                assert!(matches!(res, Err(Reject::Unexpected { .. })), "{res:?}");
                assert!(!asks_back(ready), "{:?}", ready.messages);
            },
        ),
        step(
            "a peer asks from height 3: it committed height 2, this replica has nothing",
            fx.msg(ahead, probe_from(3)),
            move |res, ready, _| {
                assert!(matches!(res, Err(Reject::Unexpected { .. })), "{res:?}");
                assert!(
                    asks_back(ready),
                    "asks the requester back: {:?}",
                    ready.messages
                );
            },
        ),
        step(
            "the peer answers with its committed range",
            fx.msg(ahead, range.clone()),
            move |res, ready, rep| {
                assert_eq!(res, &Ok(()));
                let committed: Vec<Hash> = ready.committed.iter().map(Block::id).collect();
                assert_eq!(committed, vec![id1, id2]);
                assert_eq!(rep.committed_id(), id2);
            },
        ),
        step(
            "the same answer again was not asked for",
            fx.msg(ahead, range),
            |res, _, _| {
                assert_eq!(
                    res,
                    &Err(Reject::Unsolicited {
                        what: "committed range"
                    })
                );
            },
        ),
    ];
    fx.run(steps);
}

#[test]
fn a_restarted_replica_serves_its_last_commit_to_peers_behind() {
    // Regression (simulator seed 3952): the only replicas that committed a
    // block crashed and restarted; their commits came back from storage
    // without the QC that proves them, so they refused every peer's request
    // for the range, the others never learned the commit, and reputation
    // named different leaders on the two sides for good.
    let cfg = config();
    let mut fx = Fixture::new(cfg.clone(), |leader, me| (1..=3).all(|r| leader(r) != me));
    let q = fx.quorum();
    let peer = (0..fx.n()).find(|v| *v != fx.me).unwrap();
    let b1 = fx.block(1, &fx.genesis_qc.clone(), None, b"one");
    let qc1 = fx.qc(&b1.block, &q);
    let b2 = fx.block(2, &qc1, None, b"two");
    let qc2 = fx.qc(&b2.block, &q);
    fx.accept_and_vote(&b1);
    fx.accept_and_vote(&b2);
    // QC(B2) arrives in round 3's proposal: B1 commits.
    let b3 = fx.block(3, &qc2, None, b"three");
    let (res, ready) = fx.feed(fx.proposal_input(&b3));
    res.unwrap();
    assert_eq!(
        ready.committed.iter().map(Block::id).collect::<Vec<_>>(),
        vec![b1.block.id()]
    );
    let probe = Message::SyncRequest(SyncRequest::Committed {
        epoch: Epoch(0),
        from_height: commons_types::Height(1),
    });
    let serves = |ready: &Ready| {
        ready.messages.iter().any(|m| {
            matches!(&m.message, Message::SyncResponse(SyncResponse::Committed { blocks, commit_qc })
                if blocks.first().map(Block::id) == Some(b1.block.id()) && commit_qc.block_id() == b2.block.id())
        })
    };
    let (res, ready) = fx.feed(fx.msg(peer, probe.clone()));
    res.unwrap();
    assert!(serves(&ready), "serves B1 with QC(B2) before the restart");

    let record = fx.replica.record().clone();
    let restart = Restart {
        record: record.clone(),
        last_applied: b1.block.id(),
        blocks: vec![b1.block.clone(), b2.block.clone(), b3.block.clone()],
        qcs: vec![qc1, qc2],
    };
    fx.replica = Replica::new(cfg, fx.keys[fx.me].clone(), fx.set.clone(), Some(restart)).unwrap();
    fx.feed(Input::Tick).0.unwrap();
    assert_eq!(fx.replica.committed_id(), b1.block.id());
    let (res, ready) = fx.feed(fx.msg(peer, probe));
    assert_eq!(res, Ok(()));
    assert!(serves(&ready), "and after it: {:?}", ready.messages);
}

#[test]
fn each_round_timeout_probes_the_next_peer_for_commits() {
    // Regression (simulator seed 1351): with the replicas split on leaders
    // no validator may propose at all, so no wrong-leader proposal shows
    // who is ahead. Every timeout asks the next peer in turn for commits
    // above the root, and an answer from the peer asked last is taken.
    let mut fx = Fixture::new(config(), |leader, me| (1..=3).all(|r| leader(r) != me));
    let chain = fx.committed_chain();
    let (id1, id2) = (chain.b1.id(), chain.b2.id());
    let probed = |ready: &Ready| -> Vec<commons_types::PublicKey> {
        ready
            .messages
            .iter()
            .filter_map(|m| match (&m.to, &m.message) {
                (
                    Destination::To(k),
                    Message::SyncRequest(SyncRequest::Committed { from_height, .. }),
                ) if from_height.0 == 1 => Some(*k),
                _ => None,
            })
            .collect()
    };
    fx.now = fx.replica.poll_deadline().unwrap();
    let (res, first) = fx.feed(Input::Tick);
    res.unwrap();
    let first = probed(&first);
    assert_eq!(first.len(), 1, "one probe per timeout");
    // Past the sync retry period and the next (re-sent) timeout.
    fx.now = fx.now.plus(1_000);
    let (res, second) = fx.feed(Input::Tick);
    res.unwrap();
    let second = probed(&second);
    assert_eq!(second.len(), 1, "one probe per timeout");
    assert_ne!(first, second, "the next timeout asks the next peer");
    let me = fx.from(fx.me);
    assert!(first[0] != me && second[0] != me);
    let answering = (0..fx.n()).find(|i| fx.from(*i) == second[0]).unwrap();
    let range = chain.range();
    let (res, ready) = fx.feed(fx.msg(answering, range));
    assert_eq!(res, Ok(()));
    let committed: Vec<Hash> = ready.committed.iter().map(Block::id).collect();
    assert_eq!(committed, vec![id1, id2]);
    assert_eq!(fx.replica.committed_id(), id2);
}

#[test]
fn only_the_peer_asked_closes_a_committed_range_request() {
    let mut fx = Fixture::new(config(), |leader, me| (1..=3).all(|r| leader(r) != me));
    let asked = (0..fx.n()).find(|v| *v != fx.me).unwrap();
    let other = (0..fx.n()).find(|v| *v != fx.me && *v != asked).unwrap();
    let chain = fx.committed_chain();
    // A message of a later epoch from `asked`: this replica is behind and
    // asks that peer for the committed blocks above its root.
    let mut later = fx.vote(&chain.b1, asked);
    later.data.epoch = Epoch(1);
    let (r, ready) = fx.feed(fx.msg(asked, Message::Vote(later)));
    assert!(matches!(r, Err(Reject::WrongEpoch { .. })), "{r:?}");
    assert!(
        asks_committed(&ready, fx.from(asked)),
        "{:?}",
        ready.messages
    );
    // Another peer (a validator, or anyone) answers first with a worthless
    // range under a real certificate: refused, the request stays open.
    let worthless = Message::SyncResponse(SyncResponse::Committed {
        blocks: Vec::new(),
        commit_qc: chain.qc3.clone(),
    });
    let (r, _) = fx.feed(fx.msg(other, worthless.clone()));
    assert_eq!(
        r,
        Err(Reject::Unsolicited {
            what: "committed range"
        })
    );
    let (r, _) = fx.feed(Input::Message {
        from: key(99).public_key(),
        message: worthless,
    });
    assert_eq!(
        r,
        Err(Reject::Unsolicited {
            what: "committed range"
        })
    );
    // The peer asked answers: taken, and B1, B2 commit.
    let (r, ready) = fx.feed(fx.msg(asked, chain.range()));
    assert_eq!(r, Ok(()));
    let committed: Vec<Hash> = ready.committed.iter().map(Block::id).collect();
    assert_eq!(committed, vec![chain.b1.id(), chain.b2.id()]);
}

#[test]
fn a_committed_range_request_from_outside_the_set_is_not_probed_back() {
    // As in the test above it, a request from height 3 shows its sender
    // committed beyond this replica's root; from a validator it is asked
    // back, from a peer outside the set it is not (the one probe slot per
    // retry period stays free for validators).
    let mut fx = Fixture::new(config(), |leader, me| (1..=3).all(|r| leader(r) != me));
    let outsider = key(99).public_key();
    let request = Message::SyncRequest(SyncRequest::Committed {
        epoch: Epoch(0),
        from_height: commons_types::Height(3),
    });
    let (r, ready) = fx.feed(Input::Message {
        from: outsider,
        message: request.clone(),
    });
    assert!(matches!(r, Err(Reject::Unexpected { .. })), "{r:?}");
    assert!(
        !ready
            .messages
            .iter()
            .any(|m| matches!(m.message, Message::SyncRequest(_))),
        "{:?}",
        ready.messages
    );
    let validator = (0..fx.n()).find(|v| *v != fx.me).unwrap();
    let (_, ready) = fx.feed(fx.msg(validator, request));
    assert!(
        asks_committed(&ready, fx.from(validator)),
        "a validator's request is still probed back: {:?}",
        ready.messages
    );
}
