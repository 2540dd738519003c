//! A deterministic in-memory cluster: replicas wired through a router with
//! virtual time and fixed latency, an application that answers at once, and
//! every message passed through its wire encoding.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use commons_consensus::{
    Block, Config, Destination, Input, Message, Millis, QuorumCert, Ready, Replica, Request,
    Restart, SafetyRecord,
};
use commons_types::{ChainId, Epoch, Hash, PublicKey, SecretKey, Validator, ValidatorSet};

pub const LATENCY_MS: u64 = 10;

pub fn chain() -> ChainId {
    ChainId::new("consensus-test").unwrap()
}

pub fn key(i: usize) -> SecretKey {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
    seed[31] = 0xc0;
    SecretKey::from_seed(seed)
}

pub fn set_of(keys: &[SecretKey]) -> ValidatorSet {
    ValidatorSet::new(
        keys.iter()
            .map(|k| Validator {
                public_key: k.public_key(),
                power: 10,
            })
            .collect(),
    )
    .unwrap()
}

pub fn config() -> Config {
    let mut c = Config::new(chain());
    c.round_timeout_ms = 200;
    c.round_timeout_ms_max = 3_200;
    c.sync_retry_ms = 300;
    c
}

/// What a node keeps on its "disk".
#[derive(Default, Clone)]
pub struct Disk {
    pub record: Option<SafetyRecord>,
    pub blocks: BTreeMap<Hash, Block>,
    pub qcs: Vec<QuorumCert>,
}

pub struct Node {
    pub replica: Replica,
    pub key: SecretKey,
    pub disk: Disk,
    pub committed: Vec<Block>,
    pub silent: bool,
    pub evidence: usize,
    /// Epoch changes the application will announce: new set per epoch.
    pub next_sets: BTreeMap<Epoch, ValidatorSet>,
}

pub struct Cluster {
    pub nodes: Vec<Node>,
    pub now: Millis,
    queue: BTreeMap<(Millis, u64), (usize, PublicKey, Vec<u8>)>,
    seq: u64,
    pub delivered: u64,
    pub config: Config,
    pub rejects: u64,
}

impl Cluster {
    pub fn new(n: usize, config: Config) -> Cluster {
        let keys: Vec<SecretKey> = (0..n).map(key).collect();
        let set = set_of(&keys);
        let nodes = keys
            .iter()
            .map(|k| Node {
                replica: Replica::new(config.clone(), k.clone(), set.clone(), None).unwrap(),
                key: k.clone(),
                disk: Disk::default(),
                committed: Vec::new(),
                silent: false,
                evidence: 0,
                next_sets: BTreeMap::new(),
            })
            .collect();
        let mut c = Cluster {
            nodes,
            now: Millis(1_000),
            queue: BTreeMap::new(),
            seq: 0,
            delivered: 0,
            config,
            rejects: 0,
        };
        for i in 0..n {
            c.input(i, Input::Tick);
        }
        c
    }

    fn index_of(&self, key: &PublicKey) -> Option<usize> {
        self.nodes.iter().position(|n| n.key.public_key() == *key)
    }

    pub fn input(&mut self, i: usize, input: Input) {
        if self.nodes[i].silent {
            return;
        }
        let now = self.now;
        if self.nodes[i].replica.handle(now, input).is_err() {
            self.rejects += 1;
        }
        self.drain(i);
    }

    /// Follows the driver contract: persist, then send, then apply, then
    /// answer the application's requests.
    pub fn drain(&mut self, i: usize) {
        let mut follow_ups = Vec::new();
        while let Some(ready) = self.nodes[i].replica.poll_ready() {
            let Ready {
                persist,
                messages,
                committed,
                requests,
                evidence,
            } = ready;
            let node = &mut self.nodes[i];
            if let Some(r) = persist.record {
                // Round-trip through the encoding, as a disk would.
                node.disk.record = Some(SafetyRecord::decode(&r.encode()).unwrap());
            }
            for b in persist.blocks {
                node.disk.blocks.insert(b.id(), b);
            }
            node.disk.qcs.extend(persist.qcs);
            node.evidence += evidence.len();
            let from = node.key.public_key();
            for m in messages {
                let bytes = m.message.encode();
                let targets: Vec<usize> = match m.to {
                    Destination::Broadcast => (0..self.nodes.len()).filter(|j| *j != i).collect(),
                    Destination::To(k) => self.index_of(&k).into_iter().collect(),
                };
                for j in targets {
                    self.seq += 1;
                    self.queue.insert(
                        (self.now.plus(LATENCY_MS), self.seq),
                        (j, from, bytes.clone()),
                    );
                }
            }
            let node = &mut self.nodes[i];
            for b in committed {
                if let Some(last) = node.committed.last() {
                    assert_eq!(
                        b.parent_id(),
                        last.id(),
                        "committed blocks extend each other"
                    );
                }
                node.committed.push(b);
            }
            for r in requests {
                match r {
                    Request::NeedPayload { round, parent, .. } => follow_ups.push(Input::Payload {
                        round,
                        parent,
                        payload: format!("payload of round {}", round.0).into_bytes(),
                        state_root: Hash::digest(parent.as_bytes()),
                    }),
                    Request::ValidatePayload { block } => {
                        follow_ups.push(Input::PayloadValidated {
                            block_id: block.id(),
                            valid: true,
                        })
                    }
                    Request::NeedValidatorSet {
                        epoch, block_id, ..
                    } => {
                        let set = node
                            .next_sets
                            .get(&epoch)
                            .cloned()
                            .unwrap_or_else(|| node.replica.validator_set().clone());
                        follow_ups.push(Input::EpochChange {
                            epoch,
                            block_id,
                            new_set: set,
                        })
                    }
                }
            }
        }
        for input in follow_ups {
            self.input(i, input);
        }
    }

    /// Runs one event: the next message or the next deadline.
    pub fn step(&mut self) -> bool {
        let next_msg = self.queue.keys().next().map(|(t, _)| *t);
        let next_deadline = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| !n.silent)
            .filter_map(|(i, n)| n.replica.poll_deadline().map(|d| (d, i)))
            .min();
        match (next_msg, next_deadline) {
            (Some(t), d) if d.is_none_or(|(dt, _)| t <= dt) => {
                let key = *self.queue.keys().next().unwrap();
                let (j, from, bytes) = self.queue.remove(&key).unwrap();
                self.now = self.now.max(t);
                self.delivered += 1;
                let message = Message::decode(&bytes).unwrap();
                assert_eq!(message.encode(), bytes, "encoding is canonical");
                self.input(j, Input::Message { from, message });
                true
            }
            (_, Some((dt, i))) => {
                self.now = self.now.max(dt);
                self.input(i, Input::Tick);
                true
            }
            _ => false,
        }
    }

    pub fn run_until(&mut self, mut done: impl FnMut(&Cluster) -> bool, max_steps: u64) {
        for _ in 0..max_steps {
            if done(self) {
                return;
            }
            if !self.step() {
                break;
            }
        }
        assert!(done(self), "cluster did not get there in {max_steps} steps");
    }

    pub fn min_committed(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| !n.silent)
            .map(|n| n.committed.len())
            .min()
            .unwrap_or(0)
    }

    /// Every pair of honest replicas committed the same sequence (one is a
    /// prefix of the other).
    pub fn assert_agreement(&self) {
        let seqs: Vec<Vec<Hash>> = self
            .nodes
            .iter()
            .filter(|n| !n.silent)
            .map(|n| n.committed.iter().map(|b| b.id()).collect())
            .collect();
        for a in &seqs {
            for b in &seqs {
                let k = a.len().min(b.len());
                assert_eq!(a[..k], b[..k], "committed sequences diverge");
            }
        }
        for n in &self.nodes {
            let ids: BTreeSet<Hash> = n.committed.iter().map(|b| b.id()).collect();
            assert_eq!(ids.len(), n.committed.len(), "a block was committed twice");
        }
    }

    /// Crashes node i and restarts it from its disk.
    pub fn restart(&mut self, i: usize) {
        let node = &self.nodes[i];
        let record = node.disk.record.clone().expect("a record was persisted");
        let last_applied = node
            .committed
            .last()
            .map(|b| b.id())
            .unwrap_or(record.epoch_root.id);
        let restart = Restart {
            record,
            last_applied,
            blocks: node.disk.blocks.values().cloned().collect(),
            qcs: node.disk.qcs.clone(),
        };
        let set = node.replica.validator_set().clone();
        self.nodes[i].replica =
            Replica::new(self.config.clone(), node.key.clone(), set, Some(restart)).unwrap();
        self.drain(i);
        self.input(i, Input::Tick);
    }
}
