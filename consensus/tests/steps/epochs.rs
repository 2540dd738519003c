//! Steps across an epoch boundary.

use super::*;

#[test]
fn an_epoch_change_switches_the_validator_set_at_the_boundary() {
    let mut cfg = config();
    cfg.epoch_length_blocks = 2;
    let mut fx = Fixture::new(cfg, |leader, me| (1..=5).all(|r| leader(r) != me));
    let q = fx.quorum();
    let b1 = fx.block(1, &fx.genesis_qc.clone(), None, b"one");
    let qc1 = fx.qc(&b1.block, &q);
    let b2 = fx.block(2, &qc1, None, b"two");
    let qc2 = fx.qc(&b2.block, &q);
    // Height 3 and 4 are after the epoch's last height (2): empty payloads.
    let b3 = fx.block(3, &qc2, None, b"");
    let qc3 = fx.qc(&b3.block, &q);
    let b3_full = fx.block_with(0, 3, &qc2, None, b"not allowed", fx.leader(3));
    {
        // A twin replica sees the non-empty variant first.
        let mut twin = Fixture::new(fx.config.clone(), |leader, me| {
            (1..=5).all(|r| leader(r) != me)
        });
        for p in [&b1, &b2] {
            twin.accept_and_vote(p);
        }
        let (res, _) = twin.feed(twin.proposal_input(&b3_full));
        assert_eq!(
            res,
            Err(Reject::PayloadAfterEpochEnd {
                end: commons_types::Height(2)
            })
        );
    }
    for p in [&b1, &b2] {
        fx.accept_and_vote(p);
    }
    let b4 = fx.block(4, &qc3, None, b"");
    // New set: the same validators with one more.
    let mut new_keys = fx.keys.clone();
    new_keys.push(key(99));
    let new_set = ValidatorSet::new(
        new_keys
            .iter()
            .map(|k| Validator {
                public_key: k.public_key(),
                power: 10,
            })
            .collect(),
    )
    .unwrap();
    let id2 = b2.block.id();
    let old_vote = fx.vote(&b1.block, fx.others()[0]);
    let new_set_check = new_set.clone();
    let steps = vec![
        step(
            "B3 (empty) is voted without asking the application",
            fx.proposal_input(&b3),
            |res, ready, _| {
                assert_eq!(res, &Ok(()));
                assert!(
                    ready
                        .requests
                        .iter()
                        .all(|r| !matches!(r, Request::ValidatePayload { .. }))
                );
            },
        ),
        step(
            "B4 commits B2, the epoch's last block",
            fx.proposal_input(&b4),
            move |res, ready, rep| {
                // Its QC commits B2 and ends the epoch; B4 itself gets no vote.
                assert_eq!(res, &Err(Reject::AwaitingEpochChange { next: Epoch(1) }));
                assert_eq!(ready.committed.last().map(|b| b.id()), Some(id2));
                assert!(ready.requests.contains(&Request::NeedValidatorSet {
                    epoch: Epoch(1),
                    block_id: id2,
                    height: commons_types::Height(2)
                }));
                assert!(rep.awaiting_epoch_change());
                assert_eq!(
                    rep.poll_deadline(),
                    None,
                    "no rounds while the set is unknown"
                );
            },
        ),
        step(
            "epoch-0 messages are refused meanwhile",
            fx.msg(fx.others()[0], Message::Vote(old_vote.clone())),
            |res, _, _| {
                assert_eq!(res, &Err(Reject::AwaitingEpochChange { next: Epoch(1) }));
            },
        ),
        step(
            "the application names the new set",
            Input::EpochChange {
                epoch: Epoch(1),
                block_id: id2,
                new_set: new_set.clone(),
            },
            move |res, ready, rep| {
                assert_eq!(res, &Ok(()));
                assert_eq!(rep.epoch(), Epoch(1));
                assert_eq!(rep.round(), Round(1));
                assert_eq!(rep.validator_set(), &new_set_check);
                let record = ready.persist.record.as_ref().unwrap();
                assert_eq!(record.epoch, Epoch(1));
                assert_eq!(record.epoch_root.id, id2);
                assert_eq!(record.last_voted_round, Round(0));
                assert_eq!(rep.highest_qc().block_id(), id2);
            },
        ),
        step(
            "epoch-0 messages are now of another epoch",
            fx.msg(fx.others()[0], Message::Vote(old_vote)),
            |res, _, _| {
                assert_eq!(
                    res,
                    &Err(Reject::WrongEpoch {
                        got: Epoch(0),
                        current: Epoch(1)
                    })
                );
            },
        ),
    ];
    fx.run(steps);
    // A first block of epoch 1, extending the root QC, led per the new set.
    let root_qc = fx.replica.highest_qc().clone();
    let leader = fx.replica.leader(Round(1)).0 as usize;
    if leader != fx.me && leader < new_keys.len() {
        fx.keys = new_keys;
        let p = fx.block_with(1, 1, &root_qc, None, b"epoch one", leader);
        let (res, ready) = fx.feed(fx.proposal_input(&p));
        assert_eq!(res, Ok(()));
        assert!(validates(&ready, &p.block));
        assert_eq!(p.block.height().0, 3);
    }
}
