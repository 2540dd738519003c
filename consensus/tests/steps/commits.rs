//! Steps of the common case: proposals, votes, QCs and commits; timeouts
//! and the TC that follows; the voting rule's refusals.

use super::*;

#[test]
fn happy_path_commits_a_two_chain() {
    let mut fx = Fixture::new(config(), |leader, me| (1..=4).all(|r| leader(r) != me));
    let b1 = fx.block(1, &fx.genesis_qc.clone(), None, b"one");
    let qc1 = fx.qc(&b1.block, &fx.quorum());
    let b2 = fx.block(2, &qc1, None, b"two");
    let qc2 = fx.qc(&b2.block, &fx.quorum());
    let b3 = fx.block(3, &qc2, None, b"three");
    let (id1, id2) = (b1.block.id(), b2.block.id());
    let leader2 = fx.from(fx.leader(2));
    let leader3 = fx.from(fx.leader(3));
    let blk1 = b1.block.clone();
    let blk2 = b2.block.clone();
    let steps = vec![
        step(
            "B1 arrives",
            fx.proposal_input(&b1),
            move |res, ready, rep| {
                assert_eq!(res, &Ok(()));
                assert!(validates(ready, &blk1));
                assert_eq!(ready.persist.blocks.len(), 1);
                assert!(
                    sent_vote(ready).is_none(),
                    "no vote before the payload is validated"
                );
                assert_eq!(rep.round(), Round(1));
            },
        ),
        step(
            "B1 valid",
            Input::PayloadValidated {
                block_id: id1,
                valid: true,
            },
            move |res, ready, rep| {
                assert_eq!(res, &Ok(()));
                let record = ready
                    .persist
                    .record
                    .as_ref()
                    .expect("record persisted with the vote");
                assert_eq!(record.last_voted_round, Round(1));
                let out = ready
                    .messages
                    .iter()
                    .find(|m| matches!(m.message, Message::Vote(_)))
                    .unwrap();
                assert_eq!(
                    out.to,
                    Destination::To(leader2),
                    "votes go to the next leader"
                );
                assert_eq!(sent_vote(ready).unwrap().data.block_id, id1);
                assert_eq!(rep.record().last_voted_round, Round(1));
            },
        ),
        step(
            "B2 with QC(B1) arrives",
            fx.proposal_input(&b2),
            move |res, ready, rep| {
                assert_eq!(res, &Ok(()));
                assert!(ready.committed.is_empty(), "QC(B1) commits only genesis");
                assert!(validates(ready, &blk2));
                assert_eq!(rep.round(), Round(2));
                assert_eq!(rep.highest_qc().round(), Round(1));
            },
        ),
        step(
            "B2 valid",
            Input::PayloadValidated {
                block_id: id2,
                valid: true,
            },
            move |res, ready, _| {
                assert_eq!(res, &Ok(()));
                let out = ready
                    .messages
                    .iter()
                    .find(|m| matches!(m.message, Message::Vote(_)))
                    .unwrap();
                assert_eq!(out.to, Destination::To(leader3));
            },
        ),
        step(
            "B3 with QC(B2): B1, B2 consecutive, B1 commits",
            fx.proposal_input(&b3),
            move |res, ready, rep| {
                assert_eq!(res, &Ok(()));
                assert_eq!(
                    ready.committed.iter().map(|b| b.id()).collect::<Vec<_>>(),
                    vec![id1]
                );
                assert_eq!(rep.committed_height().0, 1);
                assert_eq!(rep.committed_id(), id1);
                assert_eq!(rep.round(), Round(3));
            },
        ),
        step(
            "B3 again: duplicate, nothing new",
            fx.proposal_input(&b3),
            |res, ready, _| {
                assert_eq!(res, &Ok(()));
                assert!(ready.committed.is_empty());
                assert!(ready.requests.is_empty());
            },
        ),
    ];
    fx.run(steps);
}

#[test]
fn timeout_forms_a_tc_and_the_next_leader_extends_the_highest_qc() {
    let mut fx = Fixture::new(config(), |leader, me| {
        leader(1) != me && leader(2) != me && leader(3) == me
    });
    let b1 = fx.block(1, &fx.genesis_qc.clone(), None, b"one");
    let qc1 = fx.qc(&b1.block, &fx.quorum());
    fx.accept_and_vote(&b1);
    let others = fx.others();
    // Round 2's leader is down. One replica saw QC(B1) and times out round
    // 2 with it; another times out round 2 with only genesis.
    let t_high = fx.timeout(others[0], 2, &qc1);
    let needed = fx.quorum().len() - 2; // besides t_high and its own
    let lows: Vec<(usize, Timeout)> = others[1..=needed]
        .iter()
        .map(|o| (*o, fx.timeout(*o, 2, &fx.genesis_qc.clone())))
        .collect();
    let id1 = b1.block.id();
    let steps = vec![step(
        "a timeout of round 2 carries QC(B1): jump to round 2",
        fx.msg(others[0], Message::Timeout(t_high)),
        |res, _, rep| {
            assert_eq!(res, &Ok(()));
            assert_eq!(rep.highest_qc().round(), Round(1));
            assert_eq!(rep.round(), Round(2));
        },
    )];
    fx.run(steps);
    fx.now = fx.replica.poll_deadline().unwrap();
    let (last, first_lows) = lows.split_last().unwrap();
    let mut steps: Vec<Step> = first_lows
        .iter()
        .map(|(o, t)| {
            step(
                "another timeout of round 2",
                fx.msg(*o, Message::Timeout(t.clone())),
                |res, _, rep| {
                    assert_eq!(res, &Ok(()));
                    assert_eq!(rep.round(), Round(2), "no quorum yet");
                },
            )
        })
        .collect();
    steps.insert(
        0,
        step(
            "round 2 times out locally",
            Input::Tick,
            |res, ready, rep| {
                assert_eq!(res, &Ok(()));
                let t = ready
                    .messages
                    .iter()
                    .find_map(|m| match &m.message {
                        Message::Timeout(t) => Some(t),
                        _ => None,
                    })
                    .unwrap();
                assert_eq!(t.round, Round(2));
                assert_eq!(t.high_qc.round(), Round(1));
                assert_eq!(
                    ready.persist.record.as_ref().unwrap().highest_timeout_round,
                    Round(2)
                );
                assert_eq!(rep.round(), Round(2));
            },
        ),
    );
    steps.extend([
        step("the timeout that makes a quorum: TC(2), this replica leads round 3", fx.msg(last.0, Message::Timeout(last.1.clone())), move |res, ready, rep| {
            assert_eq!(res, &Ok(()));
            assert_eq!(rep.round(), Round(3));
            assert!(ready.requests.iter().any(|r| matches!(r, Request::NeedPayload { round, parent, .. } if *round == Round(3) && *parent == id1)));
        }),
        step("payload in: the proposal carries TC(2) and QC(B1)", Input::Payload { round: Round(3), parent: id1, payload: b"three".to_vec(), state_root: Hash::ZERO }, move |res, ready, rep| {
            assert_eq!(res, &Ok(()));
            let p = ready.messages.iter().find_map(|m| match &m.message { Message::Proposal(p) => Some(p), _ => None }).unwrap();
            assert_eq!(p.block.justify().round(), Round(1));
            assert_eq!(p.block.parent_id(), id1);
            let tc = p.block.timeout_cert().expect("TC of round 2");
            assert_eq!(tc.round, Round(2));
            assert_eq!(tc.highest_qc_round(), Round(1));
            assert_eq!(rep.record().last_voted_round, Round(3));
        }),
        step("a payload for a round it does not lead", Input::Payload { round: Round(4), parent: id1, payload: vec![], state_root: Hash::ZERO }, |res, _, _| {
            assert!(matches!(res, Err(Reject::Unexpected { what: "payload", .. })));
        }),
    ]);
    fx.run(steps);
}

#[test]
fn votes_refused_for_a_stale_round_and_for_breaking_the_lock() {
    let mut fx = Fixture::new(config(), |leader, me| (1..=3).all(|r| leader(r) != me));
    let genesis = fx.genesis_qc.clone();
    let b1 = fx.block(1, &genesis, None, b"one");
    let qc1 = fx.qc(&b1.block, &fx.quorum());
    // TC of round 2 in which one signer reports QC(B1): the lock is round 1.
    let others = fx.others();
    let mut tc_entries: Vec<(usize, &QuorumCert)> = vec![(others[0], &qc1)];
    for o in &others[1..] {
        tc_entries.push((*o, &genesis));
    }
    let tc2 = fx.tc(2, &tc_entries);
    // Round 3 block extending genesis (round 0) with TC(2): breaks the lock.
    let bad = fx.block(3, &genesis, Some(tc2.clone()), b"fork");
    // Round 3 block extending QC(B1) with TC(2): fine.
    let good = fx.block(3, &qc1, Some(tc2), b"ok");
    fx.now = fx.replica.poll_deadline().unwrap();
    let good_block = good.block.clone();
    let steps = vec![
        step("round 1 times out", Input::Tick, |res, _, rep| {
            assert_eq!(res, &Ok(()));
            assert_eq!(rep.record().last_voted_round, Round(1));
        }),
        step(
            "B1 arrives after the timeout: stale",
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
                assert!(ready.requests.is_empty());
            },
        ),
        step(
            "round 3 block extending round 0 after TC(2) locked round 1",
            fx.proposal_input(&bad),
            |res, ready, rep| {
                assert_eq!(
                    res,
                    &Err(Reject::BreaksLock {
                        qc_round: Round(0),
                        lock: Round(1)
                    })
                );
                assert!(sent_vote(ready).is_none());
                assert_eq!(rep.round(), Round(3));
            },
        ),
        step(
            "round 3 block extending QC(B1) is safe",
            fx.proposal_input(&good),
            move |res, ready, _| {
                // The first proposal of the leader was the bad one: the second
                // is an equivocation, reported, and refused.
                assert!(matches!(res, Err(Reject::Equivocation { .. })), "{res:?}");
                assert_eq!(ready.evidence.len(), 1);
                assert!(!validates(ready, &good_block));
            },
        ),
    ];
    fx.run(steps);
}
