//! Table-driven tests of one replica: each step is an input, and what it
//! must answer, output and become. The other validators are played by the
//! test, which signs their messages with their keys.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod commits;
#[path = "../common/mod.rs"]
mod common;
mod epochs;
mod safety;
mod sync;

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
