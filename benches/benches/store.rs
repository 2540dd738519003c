//! The Merkle state store against raw RocksDB, in one run.
//!
//! - `memory_apply_{1k,10k}`, `rocksdb_apply_{1k,10k}`: one block of 1,000
//!   or 10,000 writes per iteration, applied to a store that already holds
//!   1,000,000 keys. About 80% of the writes update existing keys, the rest
//!   insert new ones; keys are 32 bytes, values 64 bytes.
//! - `rocksdb_raw_put_{1k,10k}`: blocks drawn the same way (the same 32-byte
//!   keys, 64-byte values, as many entries) put into one RocksDB
//!   `WriteBatch` and written, in a database that already holds 1,000,000
//!   entries and is opened with the options the store gives its `values`
//!   column family (same write buffer, block cache, bloom filter,
//!   compression, background jobs, WAL on, no fsync, as the store with
//!   `sync: false`): the yardstick for the store's RocksDB updates.
//! - `prove`, `verify_proof`: proofs of existing keys generated from the
//!   RocksDB store, and verified.
//!
//! Each store keeps a pruning window of 16 versions, as a node would, so the
//! pruner's work is part of what is measured. Both RocksDB databases are
//! left to finish the flushes and compactions of their prefill before any
//! measurement, so neither pays for the other's (or its own) prefill; the
//! background work of the measured writes is measured.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use commons_state_machine::store::{MerkleStore, Proof, StoreConfig, verify_proof};
use criterion::{BatchSize, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

/// The node's allocator (see `node/src/main.rs`), so figures are the node's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PREFILL_KEYS: u64 = 1_000_000;
const PREFILL_CHUNK: u64 = 100_000;
const VALUE_BYTES: usize = 64;
const PROOFS_PER_ITER: usize = 100;

type Writes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// The key of account `id`: 32 bytes, as an account id is.
fn key(id: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(32);
    for part in 0..4u64 {
        key.extend_from_slice(&(id ^ (part << 56)).to_be_bytes());
    }
    key
}

fn value(rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut value = vec![0; VALUE_BYTES];
    rng.fill_bytes(&mut value);
    value
}

/// A block of `n` writes: mostly updates of prefilled keys, some inserts.
fn block(rng: &mut ChaCha8Rng, n: usize) -> Writes {
    let mut writes = Writes::new();
    while writes.len() < n {
        let id = rng.next_u64() % (PREFILL_KEYS + PREFILL_KEYS / 4);
        writes.insert(key(id), Some(value(rng)));
    }
    writes
}

fn config() -> StoreConfig {
    StoreConfig {
        prune_window: Some(16),
        ..StoreConfig::default()
    }
}

/// The options the store opens RocksDB and its `values` column family with
/// (see `state-machine/src/store/rocks.rs`), for the raw yardstick.
fn raw_options(config: &StoreConfig) -> rocksdb::Options {
    let mut options = rocksdb::Options::default();
    options.create_if_missing(true);
    options.set_max_background_jobs(2);
    options.set_allow_concurrent_memtable_write(false);
    let cache = rocksdb::Cache::new_lru_cache(config.rocksdb_block_cache_bytes);
    let mut table = rocksdb::BlockBasedOptions::default();
    table.set_block_cache(&cache);
    table.set_bloom_filter(10.0, false);
    table.set_cache_index_and_filter_blocks(true);
    options.set_block_based_table_factory(&table);
    options.set_write_buffer_size(config.rocksdb_write_buffer_bytes);
    options.set_compression_type(rocksdb::DBCompressionType::Lz4);
    options
}

/// Fills `store` with the `PREFILL_KEYS` accounts; returns the next version.
fn prefill(store: &mut MerkleStore, rng: &mut ChaCha8Rng) -> u64 {
    let mut version = 0;
    for chunk in 0..PREFILL_KEYS / PREFILL_CHUNK {
        let writes: Writes = (chunk * PREFILL_CHUNK..(chunk + 1) * PREFILL_CHUNK)
            .map(|id| (key(id), Some(value(rng))))
            .collect();
        store.apply(version, &writes).expect("prefill");
        version += 1;
    }
    version
}

fn bench_apply(
    c: &mut Criterion,
    name: &str,
    store: &mut MerkleStore,
    version: &mut u64,
    n: usize,
) {
    let mut group = c.benchmark_group("store");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(2));
    group.measurement_time(Duration::from_secs(if n > 1000 { 15 } else { 8 }));
    group.throughput(Throughput::Elements(n as u64));
    let mut rng = ChaCha8Rng::seed_from_u64(n as u64);
    group.bench_function(name, |b| {
        b.iter_batched(
            || block(&mut rng, n),
            |writes| {
                let root = store.apply(*version, &writes).expect("apply");
                *version += 1;
                root
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn bench_raw(c: &mut Criterion, name: &str, db: &rocksdb::DB, n: usize) {
    let mut group = c.benchmark_group("store");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(2));
    group.measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(n as u64));
    // The same seed as the store's blocks of this size: the same keys and
    // values.
    let mut rng = ChaCha8Rng::seed_from_u64(n as u64);
    group.bench_function(name, |b| {
        b.iter_batched(
            || block(&mut rng, n),
            |entries| {
                let mut batch = rocksdb::WriteBatch::default();
                for (key, value) in &entries {
                    if let Some(value) = value {
                        batch.put(key, value);
                    }
                }
                db.write(batch).expect("raw write");
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn store(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(1);

    let mut memory = MerkleStore::open_memory_with(&StoreConfig {
        prune_in_background: false,
        ..config()
    })
    .expect("memory store");
    let mut memory_version = prefill(&mut memory, &mut rng);
    bench_apply(
        c,
        "memory_apply_1k",
        &mut memory,
        &mut memory_version,
        1_000,
    );
    bench_apply(
        c,
        "memory_apply_10k",
        &mut memory,
        &mut memory_version,
        10_000,
    );
    drop(memory);

    let rocks_dir = tempfile::tempdir().expect("tempdir");
    let mut rocks = MerkleStore::open_rocksdb(rocks_dir.path(), &config()).expect("rocksdb store");
    let mut rocks_version = prefill(&mut rocks, &mut rng);

    let raw_dir = tempfile::tempdir().expect("tempdir");
    let raw = rocksdb::DB::open(&raw_options(&config()), raw_dir.path()).expect("raw rocksdb");
    for chunk in 0..PREFILL_KEYS / PREFILL_CHUNK {
        let mut batch = rocksdb::WriteBatch::default();
        for id in chunk * PREFILL_CHUNK..(chunk + 1) * PREFILL_CHUNK {
            batch.put(key(id), value(&mut rng));
        }
        raw.write(batch).expect("raw prefill");
    }
    // Both databases start measuring quiet: the prefills' flushes and
    // compactions would otherwise run during whichever benchmark comes first.
    rocks.wait_for_background_work().expect("settle store");
    let mut settle = rocksdb::WaitForCompactOptions::default();
    settle.set_flush(false);
    raw.wait_for_compact(&settle).expect("settle raw");

    bench_apply(c, "rocksdb_apply_1k", &mut rocks, &mut rocks_version, 1_000);
    bench_raw(c, "rocksdb_raw_put_1k", &raw, 1_000);
    bench_apply(
        c,
        "rocksdb_apply_10k",
        &mut rocks,
        &mut rocks_version,
        10_000,
    );
    bench_raw(c, "rocksdb_raw_put_10k", &raw, 10_000);

    // Proofs of prefilled keys at the latest version.
    let latest = rocks.latest_version().expect("a version");
    let root = rocks.root(latest).expect("root");
    let ids: Vec<u64> = (0..PROOFS_PER_ITER)
        .map(|_| rng.next_u64() % PREFILL_KEYS)
        .collect();
    let mut group = c.benchmark_group("store");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(PROOFS_PER_ITER as u64));
    group.bench_function("prove", |b| {
        b.iter(|| {
            for id in &ids {
                black_box(rocks.get_with_proof(latest, &key(*id)).expect("proof"));
            }
        })
    });
    let proofs: Vec<(Vec<u8>, Option<Vec<u8>>, Proof)> = ids
        .iter()
        .map(|id| {
            let (value, proof) = rocks.get_with_proof(latest, &key(*id)).expect("proof");
            (key(*id), value, proof)
        })
        .collect();
    group.bench_function("verify_proof", |b| {
        b.iter(|| {
            for (key, value, proof) in &proofs {
                verify_proof(&root.0, key, value.as_deref(), proof).expect("valid proof");
            }
        })
    });
    group.finish();
}

criterion_group!(benches, store);
criterion_main!(benches);
