//! The consensus core alone: n replicas wired in memory (no network, no
//! disk, no application work), every message through its wire encoding and
//! every signature checked. `commit_n` measures blocks committed per second
//! (by every replica); `messages_n` the same runs counted in messages handled.

use std::collections::BTreeMap;
use std::hint::black_box;

use commons_consensus::{Config, Destination, Input, Message, Millis, Replica, Request};
use commons_types::{ChainId, Hash, PublicKey, SecretKey, Validator, ValidatorSet};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

/// The node's allocator (see `node/src/main.rs`), so figures are the node's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BLOCKS: usize = 20;
const LATENCY_MS: u64 = 5;

struct Cluster {
    replicas: Vec<Replica>,
    keys: Vec<PublicKey>,
    committed: Vec<usize>,
    queue: BTreeMap<(Millis, u64), (usize, PublicKey, Vec<u8>)>,
    seq: u64,
    now: Millis,
    handled: u64,
}

impl Cluster {
    fn new(n: usize) -> Cluster {
        let secrets: Vec<SecretKey> = (0..n)
            .map(|i| {
                let mut seed = [7u8; 32];
                seed[..8].copy_from_slice(&(i as u64).to_be_bytes());
                SecretKey::from_seed(seed)
            })
            .collect();
        let set = ValidatorSet::new(
            secrets
                .iter()
                .map(|k| Validator {
                    public_key: k.public_key(),
                    power: 1,
                })
                .collect(),
        )
        .expect("valid set");
        let mut config = Config::new(ChainId::new("bench").expect("chain id"));
        config.round_timeout_ms = 1_000;
        let replicas = secrets
            .iter()
            .map(|k| Replica::new(config.clone(), k.clone(), set.clone(), None).expect("replica"))
            .collect();
        let mut c = Cluster {
            replicas,
            keys: secrets.iter().map(|k| k.public_key()).collect(),
            committed: vec![0; n],
            queue: BTreeMap::new(),
            seq: 0,
            now: Millis(1_000),
            handled: 0,
        };
        for i in 0..n {
            c.input(i, Input::Tick);
        }
        c
    }

    fn input(&mut self, i: usize, input: Input) {
        let _ = self.replicas[i].handle(self.now, input);
        let mut follow_ups = Vec::new();
        while let Some(ready) = self.replicas[i].poll_ready() {
            let from = self.keys[i];
            for m in ready.messages {
                let bytes = m.message.encode();
                let targets: Vec<usize> = match m.to {
                    Destination::Broadcast => (0..self.keys.len()).filter(|j| *j != i).collect(),
                    Destination::To(k) => {
                        self.keys.iter().position(|x| *x == k).into_iter().collect()
                    }
                };
                for j in targets {
                    self.seq += 1;
                    self.queue.insert(
                        (self.now.plus(LATENCY_MS), self.seq),
                        (j, from, bytes.clone()),
                    );
                }
            }
            self.committed[i] += ready.committed.len();
            for r in ready.requests {
                follow_ups.push(match r {
                    Request::NeedPayload { round, parent, .. } => Input::Payload {
                        round,
                        parent,
                        payload: vec![0xab; 256],
                        state_root: Hash::ZERO,
                    },
                    Request::ValidatePayload { block } => Input::PayloadValidated {
                        block_id: block.id(),
                        valid: true,
                    },
                    Request::NeedValidatorSet { .. } => continue,
                });
            }
        }
        for f in follow_ups {
            self.input(i, f);
        }
    }

    /// Runs until every replica committed `blocks`; returns messages handled.
    fn run(&mut self, blocks: usize) -> u64 {
        while self.committed.iter().copied().min().unwrap_or(0) < blocks {
            let Some((&key, _)) = self.queue.iter().next() else {
                let next = self.replicas.iter().filter_map(|r| r.poll_deadline()).min();
                self.now = next.expect("a deadline when no message is in flight");
                for i in 0..self.replicas.len() {
                    self.input(i, Input::Tick);
                }
                continue;
            };
            let (j, from, bytes) = self.queue.remove(&key).expect("present");
            self.now = self.now.max(key.0);
            let message = Message::decode(&bytes).expect("own encoding decodes");
            self.handled += 1;
            self.input(j, Input::Message { from, message });
        }
        self.handled
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("consensus");
    group.sample_size(10);
    for n in [4usize, 16] {
        let messages = Cluster::new(n).run(BLOCKS);
        eprintln!(
            "consensus n={n}: {messages} messages handled for {BLOCKS} blocks ({:.1} per block)",
            messages as f64 / BLOCKS as f64
        );
        group.throughput(Throughput::Elements(BLOCKS as u64));
        group.bench_function(format!("commit_{n}"), |b| {
            b.iter_batched(
                || Cluster::new(n),
                |mut c| black_box(c.run(BLOCKS)),
                BatchSize::SmallInput,
            )
        });
        group.throughput(Throughput::Elements(messages));
        group.bench_function(format!("messages_{n}"), |b| {
            b.iter_batched(
                || Cluster::new(n),
                |mut c| black_box(c.run(BLOCKS)),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
