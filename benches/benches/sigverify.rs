//! Signature verification of 4,096 signed transactions, in one run: one by
//! one, batched on one thread, batched in parallel on all cores, and batched
//! in parallel with one forged signature among the 4,096.

use std::hint::black_box;
use std::time::Duration;

use commons_types::batch::{self, VerifyItem};
use commons_types::{ChainId, Domain, PublicKey, SecretKey, Signature, signing_bytes};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// The node's allocator (see `node/src/main.rs`), so figures are the node's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const N: usize = 4096;

struct Corpus {
    keys: Vec<PublicKey>,
    messages: Vec<Vec<u8>>,
    signatures: Vec<Signature>,
}

impl Corpus {
    fn new() -> Corpus {
        let chain = ChainId::new("bench").expect("valid chain id");
        let mut corpus = Corpus {
            keys: Vec::new(),
            messages: Vec::new(),
            signatures: Vec::new(),
        };
        for i in 0..N {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
            let key = SecretKey::from_seed(seed);
            // About the size of an encoded settlement body.
            let body = format!("{i:0>180}");
            let signed = signing_bytes(Domain::Tx, &chain, body.as_bytes());
            corpus.signatures.push(key.sign_raw(&signed));
            corpus.keys.push(key.public_key());
            corpus.messages.push(signed);
        }
        corpus
    }

    fn items(&self) -> Vec<VerifyItem<'_>> {
        (0..N)
            .map(|i| VerifyItem {
                public_key: self.keys[i],
                signed: &self.messages[i],
                signature: self.signatures[i],
            })
            .collect()
    }
}

fn sigverify(c: &mut Criterion) {
    let corpus = Corpus::new();
    let clean = corpus.items();
    let mut forged = corpus.items();
    // In the middle of a chunk, not at an edge, so bisection does real work.
    forged[N / 2 + 77].signature.0[5] ^= 0x40;

    assert!(batch::verify_all(&clean).iter().all(|ok| *ok));
    let forged_results = batch::verify_all(&forged);
    assert_eq!(forged_results.iter().filter(|ok| !**ok).count(), 1);
    assert!(!forged_results[N / 2 + 77]);

    let mut group = c.benchmark_group("sigverify");
    group.throughput(Throughput::Elements(N as u64));
    group.sample_size(20);
    // This VM's speed drifts by tens of percent from second to second; a
    // longer window per function averages the drift out of the ratios.
    group.measurement_time(Duration::from_secs(15));
    group.bench_function("one_by_one", |b| {
        b.iter(|| batch::verify_each(black_box(&clean)))
    });
    group.bench_function("batch_one_thread", |b| {
        b.iter(|| batch::verify_all_one_thread(black_box(&clean)))
    });
    group.bench_function("batch_parallel", |b| {
        b.iter(|| batch::verify_all(black_box(&clean)))
    });
    group.bench_function("batch_parallel_one_forged", |b| {
        b.iter(|| batch::verify_all(black_box(&forged)))
    });
    group.finish();
}

criterion_group!(benches, sigverify);
criterion_main!(benches);
