//! Table-driven tests of one replica: each step is an input, and what it
//! must answer, output and become. The other validators are played by the
//! test, which signs their messages with their keys.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use common::{chain, config, key, set_of};
use commons_consensus::{
    Block, BlockFields, Config, Destination, Evidence, Input, Message, Millis, Proposal,
    QuorumCert, Ready, Reject, Replica, Request, Restart, SyncRequest, SyncResponse, Timeout,
    TimeoutCert, TimeoutSignature, Vote,
};
use commons_types::{Epoch, Hash, Round, SecretKey, Validator, ValidatorIndex, ValidatorSet};

struct Fixture {
    keys: Vec<SecretKey>,
    set: ValidatorSet,
    me: usize,
    replica: Replica,
    config: Config,
    now: Millis,
    genesis_qc: QuorumCert,
}

type Check = Box<dyn Fn(&Result<(), Reject>, &Ready, &Replica)>;

struct Step {
    what: &'static str,
    input: Input,
    expect: Check,
}

fn step(
    what: &'static str,
    input: Input,
    expect: impl Fn(&Result<(), Reject>, &Ready, &Replica) + 'static,
) -> Step {
    Step {
        what,
        input,
        expect: Box::new(expect),
    }
}

impl Fixture {
    /// The first (n, me) whose leaders satisfy `wanted(leader_of, me)`.
    fn new(config: Config, wanted: impl Fn(&dyn Fn(u64) -> usize, usize) -> bool) -> Fixture {
        for n in [4usize, 5, 6, 7, 8, 9, 10] {
            let keys: Vec<SecretKey> = (0..n).map(key).collect();
            let set = set_of(&keys);
            let probe = Replica::new(config.clone(), keys[0].clone(), set.clone(), None).unwrap();
            let leader_of = |r: u64| probe.leader(Round(r)).0 as usize;
            if let Some(me) = (0..n).find(|me| wanted(&leader_of, *me)) {
                let replica =
                    Replica::new(config.clone(), keys[me].clone(), set.clone(), None).unwrap();
                let genesis_qc = replica.highest_qc().clone();
                let mut fx = Fixture {
                    keys,
                    set,
                    me,
                    replica,
                    config,
                    now: Millis(10_000),
                    genesis_qc,
                };
                fx.feed(Input::Tick).0.unwrap();
                return fx;
            }
        }
        panic!("no validator set satisfies the fixture's leader constraints");
    }

    fn n(&self) -> usize {
        self.keys.len()
    }

    fn leader(&self, round: u64) -> usize {
        self.replica.leader(Round(round)).0 as usize
    }

    fn others(&self) -> Vec<usize> {
        (0..self.n()).filter(|i| *i != self.me).collect()
    }

    fn block_with(
        &self,
        epoch: u64,
        round: u64,
        justify: &QuorumCert,
        tc: Option<TimeoutCert>,
        payload: &[u8],
        proposer: usize,
    ) -> Proposal {
        let block = Block::new(BlockFields {
            epoch: Epoch(epoch),
            round: Round(round),
            height: justify.data.height.next(),
            proposer: ValidatorIndex(proposer as u16),
            timestamp_ms: 5_000 + round,
            state_root: Hash::digest(b"state"),
            justify: justify.clone(),
            timeout_cert: tc,
            payload: payload.to_vec(),
        });
        Proposal::sign(block, &self.keys[proposer], &chain())
    }

    fn block(
        &self,
        round: u64,
        justify: &QuorumCert,
        tc: Option<TimeoutCert>,
        payload: &[u8],
    ) -> Proposal {
        self.block_with(0, round, justify, tc, payload, self.leader(round))
    }

    fn vote(&self, block: &Block, voter: usize) -> Vote {
        Vote::sign(
            block.vote_data(),
            ValidatorIndex(voter as u16),
            &self.keys[voter],
            &chain(),
        )
    }

    fn qc(&self, block: &Block, voters: &[usize]) -> QuorumCert {
        let mut voters = voters.to_vec();
        voters.sort();
        QuorumCert {
            data: block.vote_data(),
            signatures: voters
                .iter()
                .map(|v| (ValidatorIndex(*v as u16), self.vote(block, *v).signature))
                .collect(),
        }
    }

    fn quorum(&self) -> Vec<usize> {
        let q = self.set.quorum_power().div_ceil(10) as usize;
        (0..q).collect()
    }

    fn timeout(&self, voter: usize, round: u64, high_qc: &QuorumCert) -> Timeout {
        Timeout::sign(
            Epoch(0),
            Round(round),
            high_qc.clone(),
            None,
            ValidatorIndex(voter as u16),
            &self.keys[voter],
            &chain(),
        )
    }

    fn tc(&self, round: u64, entries: &[(usize, &QuorumCert)]) -> TimeoutCert {
        let mut entries: Vec<TimeoutSignature> = entries
            .iter()
            .map(|(v, qc)| {
                let t = self.timeout(*v, round, qc);
                TimeoutSignature {
                    voter: t.voter,
                    high_qc_round: qc.round(),
                    signature: t.signature,
                }
            })
            .collect();
        entries.sort_by_key(|e| e.voter);
        TimeoutCert {
            epoch: Epoch(0),
            round: Round(round),
            entries,
        }
    }

    fn from(&self, i: usize) -> commons_types::PublicKey {
        self.keys[i].public_key()
    }

    fn msg(&self, from: usize, message: Message) -> Input {
        Input::Message {
            from: self.from(from),
            message,
        }
    }

    fn proposal_input(&self, p: &Proposal) -> Input {
        self.msg(p.block.proposer().0 as usize, Message::Proposal(p.clone()))
    }

    /// One input; every Ready it produced, merged.
    fn feed(&mut self, input: Input) -> (Result<(), Reject>, Ready) {
        let result = self.replica.handle(self.now, input);
        let mut all = Ready::default();
        while let Some(r) = self.replica.poll_ready() {
            if r.persist.record.is_some() {
                all.persist.record = r.persist.record;
            }
            all.persist.blocks.extend(r.persist.blocks);
            all.persist.qcs.extend(r.persist.qcs);
            all.messages.extend(r.messages);
            all.committed.extend(r.committed);
            all.requests.extend(r.requests);
            all.evidence.extend(r.evidence);
        }
        (result, all)
    }

    fn run(&mut self, steps: Vec<Step>) {
        for (k, s) in steps.into_iter().enumerate() {
            let (result, ready) = self.feed(s.input);
            eprintln!("step {k}: {} -> {result:?}", s.what);
            (s.expect)(&result, &ready, &self.replica);
        }
    }

    /// B1, B2, B3 proposed in rounds 1–3 on genesis, each certified by a
    /// quorum: QC(B3) commits B1 and B2.
    fn committed_chain(&self) -> CommittedChain {
        let q = self.quorum();
        let b1 = self.block(1, &self.genesis_qc.clone(), None, b"one");
        let qc1 = self.qc(&b1.block, &q);
        let b2 = self.block(2, &qc1, None, b"two");
        let qc2 = self.qc(&b2.block, &q);
        let b3 = self.block(3, &qc2, None, b"three");
        let qc3 = self.qc(&b3.block, &q);
        CommittedChain {
            b1: b1.block,
            b2: b2.block,
            qc3,
        }
    }

    /// Proposal in, payload validated, vote out: the usual path.
    fn accept_and_vote(&mut self, p: &Proposal) {
        let (r, _) = self.feed(self.proposal_input(p));
        r.unwrap();
        let (r, ready) = self.feed(Input::PayloadValidated {
            block_id: p.block.id(),
            valid: true,
        });
        r.unwrap();
        assert!(ready.persist.record.is_some());
    }
}

/// See [`Fixture::committed_chain`].
struct CommittedChain {
    b1: Block,
    b2: Block,
    qc3: QuorumCert,
}

impl CommittedChain {
    /// The committed range a peer ahead answers with: B1 and B2 under
    /// QC(B3).
    fn range(&self) -> Message {
        Message::SyncResponse(SyncResponse::Committed {
            blocks: vec![self.b1.clone(), self.b2.clone()],
            commit_qc: self.qc3.clone(),
        })
    }
}

fn sent_vote(ready: &Ready) -> Option<&Vote> {
    ready.messages.iter().find_map(|m| match &m.message {
        Message::Vote(v) => Some(v),
        _ => None,
    })
}

/// Whether `ready` sends `peer` a committed-range request.
fn asks_committed(ready: &Ready, peer: commons_types::PublicKey) -> bool {
    ready.messages.iter().any(|m| {
        m.to == Destination::To(peer)
            && matches!(
                m.message,
                Message::SyncRequest(SyncRequest::Committed { .. })
            )
    })
}

fn validates(ready: &Ready, block: &Block) -> bool {
    ready
        .requests
        .iter()
        .any(|r| matches!(r, Request::ValidatePayload { block: b } if b.id() == block.id()))
}

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
