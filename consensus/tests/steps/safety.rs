//! Steps that must never produce two signatures for one round: restarts,
//! equivocating leaders, forged votes.

use super::*;

#[test]
fn a_restarted_replica_never_votes_or_times_out_twice_in_a_round() {
    let cfg = config();
    let mut fx = Fixture::new(cfg.clone(), |leader, me| (1..=3).all(|r| leader(r) != me));
    let b1 = fx.block(1, &fx.genesis_qc.clone(), None, b"one");
    // An equivocating leader's second block for round 1.
    let b1x = fx.block(1, &fx.genesis_qc.clone(), None, b"other");
    fx.accept_and_vote(&b1);
    let record = fx.replica.record().clone();
    assert_eq!(record.last_voted_round, Round(1));
    let restart = Restart {
        record: record.clone(),
        last_applied: record.epoch_root.id,
        blocks: vec![b1.block.clone()],
        qcs: vec![],
    };
    fx.replica = Replica::new(cfg, fx.keys[fx.me].clone(), fx.set.clone(), Some(restart)).unwrap();
    let steps = vec![
        step(
            "restart: state comes from the record",
            Input::Tick,
            |res, _, rep| {
                assert_eq!(res, &Ok(()));
                assert_eq!(rep.record().last_voted_round, Round(1));
                assert_eq!(rep.pending_blocks(), 1);
            },
        ),
        step(
            "the same block again: no second vote",
            fx.proposal_input(&b1),
            |res, ready, _| {
                assert_eq!(
                    res,
                    &Err(Reject::StaleRound {
                        round: Round(1),
                        last_voted: Round(1)
                    })
                );
                assert!(sent_vote(ready).is_none());
            },
        ),
        step(
            "a different block for round 1: no vote for it either",
            fx.proposal_input(&b1x),
            |res, ready, _| {
                assert!(
                    matches!(
                        res,
                        Err(Reject::StaleRound { .. }) | Err(Reject::Equivocation { .. })
                    ),
                    "{res:?}"
                );
                assert!(sent_vote(ready).is_none());
                assert!(ready.requests.is_empty());
            },
        ),
    ];
    fx.run(steps);

    // Time out, restart, time out again: the very same timeout is resent.
    fx.now = fx.replica.poll_deadline().unwrap();
    let (_, ready) = fx.feed(Input::Tick);
    let first = ready
        .messages
        .iter()
        .find_map(|m| match &m.message {
            Message::Timeout(t) => Some(t.clone()),
            _ => None,
        })
        .unwrap();
    let record = ready.persist.record.unwrap();
    let restart = Restart {
        record: record.clone(),
        last_applied: record.epoch_root.id,
        blocks: vec![b1.block.clone()],
        qcs: vec![],
    };
    fx.replica = Replica::new(
        fx.config.clone(),
        fx.keys[fx.me].clone(),
        fx.set.clone(),
        Some(restart),
    )
    .unwrap();
    fx.feed(Input::Tick).0.unwrap();
    fx.now = fx.replica.poll_deadline().unwrap();
    let (_, ready) = fx.feed(Input::Tick);
    let again = ready
        .messages
        .iter()
        .find_map(|m| match &m.message {
            Message::Timeout(t) => Some(t.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        again, first,
        "a restarted replica resends its timeout unchanged"
    );
}

#[test]
fn a_restarted_leader_never_proposes_twice_in_a_round() {
    let cfg = config();
    let mut fx = Fixture::new(cfg.clone(), |leader, me| {
        (1..=3).all(|r| leader(r) != me) && leader(4) == me
    });
    let b1 = fx.block(1, &fx.genesis_qc.clone(), None, b"one");
    let qc1 = fx.qc(&b1.block, &fx.quorum());
    fx.accept_and_vote(&b1);
    // Round 2's block got a QC this replica never saw; round 3 then timed
    // out, and its TC names that QC's round (2), not the QC itself.
    let b2 = fx.block(2, &qc1, None, b"two");
    let qc2 = fx.qc(&b2.block, &fx.quorum());
    let others = fx.others();
    let needed = fx.quorum().len();
    let mut entries: Vec<(usize, &QuorumCert)> = vec![(others[0], &qc2)];
    entries.extend(others[1..needed].iter().map(|o| (*o, &qc1)));
    let tc3 = fx.tc(3, &entries);
    let carrier = Timeout::sign(
        Epoch(0),
        Round(4),
        qc1.clone(),
        Some(tc3),
        ValidatorIndex(others[1] as u16),
        &fx.keys[others[1]],
        &chain(),
    );
    let id1 = b1.block.id();
    // Enter round 4 (this replica leads it) and propose on QC(B1). Its own
    // vote is refused (the TC shows a higher QC), so no vote records the
    // round: only the proposal does.
    let enter_and_propose = |fx: &mut Fixture, payload: &[u8]| -> Ready {
        let (res, ready) = fx.feed(fx.msg(others[1], Message::Timeout(carrier.clone())));
        res.unwrap();
        assert_eq!(fx.replica.round(), Round(4));
        assert!(
            ready.requests.iter().any(
                |r| matches!(r, Request::NeedPayload { round, parent, .. } if *round == Round(4) && *parent == id1)
            ),
            "the leader of round 4 asks for a payload"
        );
        let (res, ready) = fx.feed(Input::Payload {
            round: Round(4),
            parent: id1,
            payload: payload.to_vec(),
            state_root: Hash::ZERO,
        });
        res.unwrap();
        ready
    };
    let ready = enter_and_propose(&mut fx, b"four");
    assert!(
        ready
            .messages
            .iter()
            .any(|m| matches!(&m.message, Message::Proposal(p) if p.block.round() == Round(4)))
    );
    assert!(sent_vote(&ready).is_none(), "no vote for its own block");
    let record = ready
        .persist
        .record
        .expect("the proposal's round is recorded");
    assert_eq!(record.last_proposed_round, Round(4));
    assert_eq!(record.last_voted_round, Round(1));

    // Crash right after the proposal left; restart from what was persisted.
    let restart = Restart {
        record: record.clone(),
        last_applied: record.epoch_root.id,
        blocks: vec![b1.block.clone()],
        qcs: vec![qc1.clone()],
    };
    fx.replica = Replica::new(cfg, fx.keys[fx.me].clone(), fx.set.clone(), Some(restart)).unwrap();
    fx.feed(Input::Tick).0.unwrap();
    // The same round again, another payload (the mempool moved on).
    let ready = enter_and_propose(&mut fx, b"four, again");
    assert!(
        !ready
            .messages
            .iter()
            .any(|m| matches!(&m.message, Message::Proposal(_))),
        "a second proposal for round 4 would be evidence against this validator"
    );
    assert_eq!(fx.replica.record().last_proposed_round, Round(4));
}

#[test]
fn an_equivocating_leader_produces_evidence_once() {
    let mut fx = Fixture::new(config(), |leader, me| leader(1) != me && leader(2) == me);
    let genesis = fx.genesis_qc.clone();
    let b1 = fx.block(1, &genesis, None, b"one");
    let b1x = fx.block(1, &genesis, None, b"two");
    let b1y = fx.block(1, &genesis, None, b"three");
    let leader1 = fx.leader(1);
    let voter = fx.others().into_iter().find(|v| *v != leader1).unwrap();
    let v1 = fx.vote(&b1.block, voter);
    let v1x = fx.vote(&b1x.block, voter);
    let steps = vec![
        step("first proposal", fx.proposal_input(&b1), |res, _, _| {
            assert_eq!(res, &Ok(()))
        }),
        step(
            "second, conflicting proposal",
            fx.proposal_input(&b1x),
            move |res, ready, _| {
                assert_eq!(
                    res,
                    &Err(Reject::Equivocation {
                        validator: ValidatorIndex(leader1 as u16),
                        round: Round(1)
                    })
                );
                assert_eq!(ready.evidence.len(), 1);
                let ev = &ready.evidence[0];
                assert!(matches!(ev, Evidence::ConflictingProposals { .. }));
                let set = set_of(&(0..7).map(key).collect::<Vec<_>>()[..]);
                let _ = set;
                // Anyone can check it; it round-trips through its encoding.
                assert_eq!(Evidence::decode(&ev.encode()).unwrap(), *ev);
            },
        ),
        step(
            "third: refused, not reported again",
            fx.proposal_input(&b1y),
            |res, ready, _| {
                assert!(matches!(res, Err(Reject::Equivocation { .. })));
                assert!(ready.evidence.is_empty());
            },
        ),
        step(
            "a vote for B1 reaches the next leader",
            fx.msg(voter, Message::Vote(v1)),
            |res, _, _| assert_eq!(res, &Ok(())),
        ),
        step(
            "the same voter votes for B1'",
            fx.msg(voter, Message::Vote(v1x)),
            move |res, ready, _| {
                assert_eq!(
                    res,
                    &Err(Reject::Equivocation {
                        validator: ValidatorIndex(voter as u16),
                        round: Round(1)
                    })
                );
                assert!(matches!(
                    ready.evidence.as_slice(),
                    [Evidence::ConflictingVotes { .. }]
                ));
            },
        ),
    ];
    let set = fx.set.clone();
    let mut all_evidence = Vec::new();
    for (k, s) in steps.into_iter().enumerate() {
        let (result, ready) = fx.feed(s.input);
        eprintln!("step {k}: {} -> {result:?}", s.what);
        (s.expect)(&result, &ready, &fx.replica);
        all_evidence.extend(ready.evidence);
    }
    assert_eq!(all_evidence.len(), 2);
    assert_eq!(
        all_evidence[0].check(&chain(), &set),
        Ok(ValidatorIndex(leader1 as u16))
    );
    assert_eq!(
        all_evidence[1].check(&chain(), &set),
        Ok(ValidatorIndex(voter as u16))
    );
}

#[test]
fn a_forged_vote_sent_ahead_does_not_shadow_the_voters_real_vote() {
    // This replica collects round 1's votes (it leads round 2) and did not
    // propose round 1, so its own vote waits for the payload's validation.
    let mut fx = Fixture::new(config(), |leader, me| leader(2) == me && leader(1) != me);
    let b1 = fx.block(1, &fx.genesis_qc.clone(), None, b"one");
    let (r, _) = fx.feed(fx.proposal_input(&b1));
    r.unwrap();
    let quorum = fx.set.quorum_power().div_ceil(10) as usize;
    let voters: Vec<usize> = fx.others().into_iter().take(quorum - 1).collect();
    // Anyone who saw the proposal can send votes in the voters' names with
    // the right data and a bad signature, before the real ones arrive.
    let outsider = key(99).public_key();
    for &v in &voters {
        let mut forged = fx.vote(&b1.block, v);
        forged.signature = commons_types::Signature([7; 64]);
        let (r, _) = fx.feed(Input::Message {
            from: outsider,
            message: Message::Vote(forged),
        });
        assert_eq!(r, Ok(()), "unchecked until it matters");
    }
    for &v in &voters {
        let (r, _) = fx.feed(fx.msg(v, Message::Vote(fx.vote(&b1.block, v))));
        assert_eq!(r, Ok(()), "the real vote replaces the forged one");
    }
    // A forgery arriving after the real vote (now checked) is a duplicate
    // of it: nothing changes.
    let mut late = fx.vote(&b1.block, voters[0]);
    late.signature = commons_types::Signature([9; 64]);
    let (r, _) = fx.feed(Input::Message {
        from: outsider,
        message: Message::Vote(late),
    });
    assert_eq!(r, Ok(()));
    // This replica's own vote completes the quorum: the QC forms, with the
    // voters' real signatures.
    let (r, _) = fx.feed(Input::PayloadValidated {
        block_id: b1.block.id(),
        valid: true,
    });
    r.unwrap();
    let qc = fx.replica.highest_qc().clone();
    assert_eq!(qc.data, b1.block.vote_data(), "QC(B1) formed");
    for &v in &voters {
        let signature = fx.vote(&b1.block, v).signature;
        assert!(
            qc.signatures
                .contains(&(ValidatorIndex(v as u16), signature)),
            "voter {v}'s real signature is in the QC"
        );
    }
}
