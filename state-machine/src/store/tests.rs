//! Tests of the store. The oracle for roots is `reference_root` below, which
//! hashes a `BTreeMap` model with `sha2` directly and shares no code with the
//! tree; the known answers were computed with Python's `hashlib`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use proptest::prelude::*;
use sha2::{Digest, Sha256};

use super::proof::{Proof, ProofDecodeError, ProofError, ProofLeaf, verify_proof};
use super::*;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;
type Writes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

fn sha(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

fn ref_bit(hash: &[u8; 32], depth: usize) -> u8 {
    (hash[depth / 8] >> (7 - depth % 8)) & 1
}

fn ref_subtree(leaves: &[([u8; 32], [u8; 32])], depth: usize) -> [u8; 32] {
    match leaves {
        [] => [0; 32],
        [(key_hash, value_hash)] => sha(&[&[0], key_hash, value_hash]),
        _ => {
            let left: Vec<_> = leaves
                .iter()
                .filter(|l| ref_bit(&l.0, depth) == 0)
                .copied()
                .collect();
            let right: Vec<_> = leaves
                .iter()
                .filter(|l| ref_bit(&l.0, depth) == 1)
                .copied()
                .collect();
            sha(&[
                &[1],
                &ref_subtree(&left, depth + 1),
                &ref_subtree(&right, depth + 1),
            ])
        }
    }
}

/// The root of `model`, computed from scratch without the tree code.
fn reference_root(model: &Model) -> [u8; 32] {
    let leaves: Vec<_> = model.iter().map(|(k, v)| (sha(&[k]), sha(&[v]))).collect();
    ref_subtree(&leaves, 0)
}

fn hex32(s: &str) -> [u8; 32] {
    let bytes: Vec<u8> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect();
    bytes.try_into().unwrap()
}

fn writes_of(pairs: &[(&str, Option<&str>)]) -> Writes {
    pairs
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec())))
        .collect()
}

fn model_apply(model: &mut Model, writes: &Writes) {
    for (key, value) in writes {
        match value {
            Some(value) => model.insert(key.clone(), value.clone()),
            None => model.remove(key),
        };
    }
}

fn rocks_config(window: Option<u64>) -> StoreConfig {
    StoreConfig {
        prune_window: window,
        rocksdb_block_cache_bytes: 8 << 20,
        rocksdb_write_buffer_bytes: 4 << 20,
        ..StoreConfig::default()
    }
}

fn memory_config(window: Option<u64>) -> StoreConfig {
    StoreConfig {
        prune_window: window,
        prune_in_background: false,
        ..StoreConfig::default()
    }
}

fn in_memory(config: StoreConfig, scenario: &Scenario) -> StoreConfig {
    StoreConfig {
        versions_in_memory: scenario.in_memory,
        ..config
    }
}

// ---- known answers ----

#[test]
fn known_answer_empty_tree() {
    let mut store = MerkleStore::open_memory();
    assert_eq!(store.latest_root(), Hash([0; 32]));
    store.apply(0, &Writes::new()).unwrap();
    assert_eq!(store.root(0).unwrap(), Hash([0; 32]));
}

#[test]
fn known_answer_one_key() {
    let expected = hex32("e88595db6e2373140c77336108e543dd79e1c6420dff08568b120417c8af88b5");
    let by_hand = sha(&[&[0x00], &sha(&[b"alice"]), &sha(&[b"100"])]);
    assert_eq!(by_hand, expected);
    let mut store = MerkleStore::open_memory();
    let root = store
        .apply(0, &writes_of(&[("alice", Some("100"))]))
        .unwrap();
    assert_eq!(root, Hash(expected));
}

#[test]
fn known_answer_five_keys() {
    // Key hashes start: alice 0010, bob 1000, carol 0100, dave 0110, erin 0111.
    // So bob is alone on the right of the root; under 0: alice alone under
    // 00, carol alone under 010, dave and erin split at the fourth bit.
    let expected = hex32("59a6a250d002ba473713f66e9131e7910dfd34cdf56dbd53a808377dd8074865");
    let leaf = |k: &str, v: &str| sha(&[&[0x00], &sha(&[k.as_bytes()]), &sha(&[v.as_bytes()])]);
    let node = |l: [u8; 32], r: [u8; 32]| sha(&[&[0x01], &l, &r]);
    let by_hand = node(
        node(
            leaf("alice", "100"),
            node(
                leaf("carol", "7"),
                node(leaf("dave", ""), leaf("erin", "1000000")),
            ),
        ),
        leaf("bob", "250"),
    );
    assert_eq!(by_hand, expected);
    let writes = writes_of(&[
        ("alice", Some("100")),
        ("bob", Some("250")),
        ("carol", Some("7")),
        ("dave", Some("")),
        ("erin", Some("1000000")),
    ]);
    let mut memory = MerkleStore::open_memory();
    assert_eq!(memory.apply(0, &writes).unwrap(), Hash(expected));
    let dir = tempfile::tempdir().unwrap();
    let mut rocks = MerkleStore::open_rocksdb(dir.path(), &rocks_config(None)).unwrap();
    assert_eq!(rocks.apply(0, &writes).unwrap(), Hash(expected));
}

#[test]
fn known_answer_hundred_keys_in_steps() {
    // Inserted in four versions, with updates and deletes cancelling out.
    let expected = hex32("71ede163c2b787b578bb9098a7fe1a58c65dd47818111c9cf3b3f25e9d21fc06");
    let mut store = MerkleStore::open_memory();
    let mut writes = Writes::new();
    for i in 0..60 {
        writes.insert(format!("key-{i}").into_bytes(), Some(b"old".to_vec()));
    }
    store.apply(0, &writes).unwrap();
    let mut writes = Writes::new();
    for i in 0..60 {
        writes.insert(format!("key-{i}").into_bytes(), None);
    }
    for i in 60..100 {
        writes.insert(
            format!("key-{i}").into_bytes(),
            Some(format!("value-{i}").into_bytes()),
        );
    }
    store.apply(1, &writes).unwrap();
    let mut writes = Writes::new();
    for i in 0..60 {
        writes.insert(
            format!("key-{i}").into_bytes(),
            Some(format!("value-{i}").into_bytes()),
        );
    }
    let root = store.apply(2, &writes).unwrap();
    assert_eq!(root, Hash(expected));
    assert_eq!(
        store.root(0).unwrap(),
        Hash(reference_root(
            &(0..60)
                .map(|i| (format!("key-{i}").into_bytes(), b"old".to_vec()))
                .collect()
        ))
    );
}

// ---- model-based properties ----

#[derive(Clone, Debug)]
struct Scenario {
    versions: Vec<Vec<(u8, Option<u8>)>>,
    window: Option<u64>,
    /// Trees kept in memory: small, so reads of older versions undo.
    in_memory: u64,
}

fn scenario(max_versions: usize) -> impl Strategy<Value = Scenario> {
    let write = (0u8..40, prop::option::weighted(0.7, any::<u8>()));
    let version = prop::collection::vec(write, 0..24);
    (
        prop::collection::vec(version, 1..max_versions),
        prop::option::of(1u64..6),
        1u64..4,
    )
        .prop_map(|(versions, window, in_memory)| Scenario {
            versions,
            window,
            in_memory,
        })
}

fn key_of(i: u8) -> Vec<u8> {
    format!("account/{i}").into_bytes()
}

fn value_of(v: u8) -> Vec<u8> {
    // Lengths vary from 0 to 8, so empty values are covered.
    vec![v; usize::from(v % 9)]
}

fn writes_for(version: &[(u8, Option<u8>)]) -> Writes {
    version
        .iter()
        .map(|(k, v)| (key_of(*k), v.map(value_of)))
        .collect()
}

/// Checks every read and proof of every retained version against the models.
fn check_versions(store: &MerkleStore, models: &[Model]) {
    let latest = store.latest_version().unwrap();
    let oldest = store.oldest_version().unwrap();
    assert_eq!(latest as usize + 1, models.len());
    for (version, model) in models.iter().enumerate() {
        let version = version as u64;
        if version < oldest {
            assert!(matches!(
                store.get(version, b"x"),
                Err(StoreError::VersionPruned { .. })
            ));
            assert!(matches!(
                store.root(version),
                Err(StoreError::VersionPruned { .. })
            ));
            continue;
        }
        let root = store.root(version).unwrap();
        assert_eq!(root.0, reference_root(model), "version {version}");
        for k in 0..42u8 {
            let key = key_of(k);
            let expected = model.get(&key).cloned();
            assert_eq!(store.get(version, &key).unwrap(), expected);
            let (value, proof) = store.get_with_proof(version, &key).unwrap();
            assert_eq!(value, expected);
            check_proof(&root.0, &key, expected.as_deref(), &proof);
            let decoded = Proof::from_bytes(&proof.to_bytes()).unwrap();
            assert_eq!(decoded, proof);
        }
    }
    assert!(matches!(
        store.get(latest + 1, b"x"),
        Err(StoreError::VersionMissing { .. })
    ));
}

/// The proof verifies for the right answer and fails for any other value,
/// key, root, sibling or leaf.
fn check_proof(root: &[u8; 32], key: &[u8], value: Option<&[u8]>, proof: &Proof) {
    verify_proof(root, key, value, proof).unwrap();
    // Another value, or the opposite claim.
    let mut other = value.map(<[u8]>::to_vec).unwrap_or_default();
    other.push(0xee);
    assert!(verify_proof(root, key, Some(&other), proof).is_err());
    if value.is_some() {
        assert_eq!(
            verify_proof(root, key, None, proof),
            Err(ProofError::KeyPresent)
        );
        // Another key claiming this value.
        assert!(verify_proof(root, b"some other key", value, proof).is_err());
    } else {
        assert!(verify_proof(root, key, Some(b""), proof).is_err());
    }
    // Another root.
    let mut bad_root = *root;
    bad_root[31] ^= 1;
    assert!(verify_proof(&bad_root, key, value, proof).is_err());
    // A tampered sibling, at every depth.
    for depth in 0..proof.siblings.len() {
        let mut tampered = proof.clone();
        tampered.siblings[depth][0] ^= 0x80;
        assert!(verify_proof(root, key, value, &tampered).is_err());
    }
    // A dropped or added sibling.
    if !proof.siblings.is_empty() {
        let mut shorter = proof.clone();
        shorter.siblings.pop();
        assert!(verify_proof(root, key, value, &shorter).is_err());
    }
    let mut longer = proof.clone();
    longer.siblings.push([0; 32]);
    assert!(verify_proof(root, key, value, &longer).is_err());
    // A tampered leaf.
    if let Some(leaf) = proof.leaf {
        let mut tampered = proof.clone();
        tampered.leaf = Some(ProofLeaf {
            value_hash: [7; 32],
            ..leaf
        });
        assert!(verify_proof(root, key, value, &tampered).is_err());
        let mut removed = proof.clone();
        removed.leaf = None;
        assert!(verify_proof(root, key, value, &removed).is_err());
    }
}

/// After pruning has caught up, the backend holds exactly the values the
/// retained versions can read: nothing needed was deleted, nothing unneeded
/// is left; and the stored leaves are exactly the latest tree's.
fn check_no_leak(store: &MerkleStore) {
    store.finish_pruning().unwrap();
    let mut values = BTreeSet::new();
    store.reachable_values(&mut values).unwrap();
    let stored: BTreeSet<Vec<u8>> = store
        .backend()
        .scan(&Column::Values, &[], usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(stored, values);
    if let Some(latest) = store.latest_version() {
        store.check_integrity(latest).unwrap();
    }
}

fn run_scenario(store: &mut MerkleStore, scenario: &Scenario) -> Vec<Model> {
    let mut model = Model::new();
    let mut models = Vec::new();
    for (version, writes) in scenario.versions.iter().enumerate() {
        let writes = writes_for(writes);
        model_apply(&mut model, &writes);
        let root = store.apply(version as u64, &writes).unwrap();
        assert_eq!(root.0, reference_root(&model));
        // Reads at the latest version between applies, as the ledger makes
        // them: they fill the cache of latest values, which the next
        // version's writes must refresh.
        for k in (0..42u8).step_by(usize::from(version as u8 % 3 + 1)) {
            let key = key_of(k);
            assert_eq!(
                store.get(version as u64, &key).unwrap(),
                model.get(&key).cloned()
            );
        }
        models.push(model.clone());
    }
    models
}

#[test]
fn reads_at_the_latest_version_follow_every_write() {
    let mut store = MerkleStore::open_memory();
    let key = b"account/a".to_vec();
    let other = b"account/b".to_vec();
    store
        .apply(0, &writes_of(&[("account/a", Some("one"))]))
        .unwrap();
    // Cached when present; read from the tree when absent.
    assert_eq!(store.get(0, &key).unwrap(), Some(b"one".to_vec()));
    assert_eq!(store.get(0, &other).unwrap(), None);
    store
        .apply(
            1,
            &writes_of(&[("account/a", Some("two")), ("account/b", Some("new"))]),
        )
        .unwrap();
    assert_eq!(store.get(1, &key).unwrap(), Some(b"two".to_vec()));
    assert_eq!(store.get(1, &other).unwrap(), Some(b"new".to_vec()));
    // An older version reads its own values, not the cached latest ones.
    assert_eq!(store.get(0, &key).unwrap(), Some(b"one".to_vec()));
    assert_eq!(store.get(0, &other).unwrap(), None);
    store.apply(2, &writes_of(&[("account/a", None)])).unwrap();
    assert_eq!(store.get(2, &key).unwrap(), None);
    assert_eq!(store.get(2, &other).unwrap(), Some(b"new".to_vec()));
    // A version that fails leaves the latest values as they were.
    assert!(
        store
            .apply(4, &writes_of(&[("account/a", Some("x"))]))
            .is_err()
    );
    assert_eq!(store.get(2, &key).unwrap(), None);
    store
        .apply(3, &writes_of(&[("account/a", Some("back"))]))
        .unwrap();
    assert_eq!(store.get(3, &key).unwrap(), Some(b"back".to_vec()));
    assert_eq!(store.get(2, &key).unwrap(), None);
}

/// A memory backend whose writes fail while `failing` is set.
#[derive(Debug)]
struct FailingWrites {
    inner: MemoryBackend,
    failing: AtomicBool,
}

impl Backend for FailingWrites {
    fn get(&self, column: &Column, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(column, key)
    }

    fn write(&self, batch: Batch) -> Result<(), StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::corrupt("test backend", "write refused"));
        }
        self.inner.write(batch)
    }

    fn scan(&self, column: &Column, from: &[u8], limit: usize) -> Result<Entries, StoreError> {
        self.inner.scan(column, from, limit)
    }

    fn scan_keys(
        &self,
        column: &Column,
        prefix: &[u8],
        from: &[u8],
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        self.inner.scan_keys(column, prefix, from, limit)
    }

    fn has_column(&self, column: &Column) -> bool {
        self.inner.has_column(column)
    }
}

#[test]
fn a_failed_write_leaves_no_new_value_in_the_cache() {
    let backend = Arc::new(FailingWrites {
        inner: MemoryBackend::new(&[]),
        failing: AtomicBool::new(false),
    });
    let config = StoreConfig {
        prune_in_background: false,
        ..StoreConfig::default()
    };
    let mut store = MerkleStore::open(backend.clone(), config).unwrap();
    // Small versions refresh the cache inline; large ones (at least the
    // tree's parallel threshold) on a thread beside the write.
    let filler = |version: usize, n: usize| -> Writes {
        (0..n)
            .map(|i| {
                (
                    format!("filler/{i}").into_bytes(),
                    Some(version.to_string().into_bytes()),
                )
            })
            .collect()
    };
    // What `version` wrote, read at it (the first reads fill the cache).
    let reads_kept = |store: &MerkleStore, version: u64| {
        assert_eq!(
            store.get(version, b"account/a").unwrap(),
            Some(b"kept".to_vec())
        );
        assert_eq!(
            store.get(version, b"filler/0").unwrap(),
            Some(version.to_string().into_bytes())
        );
    };
    for (version, n) in [(0u64, 1usize), (1, 2 * tree::PARALLEL_OPS_MIN)] {
        let mut writes = filler(version as usize, n);
        writes.insert(b"account/a".to_vec(), Some(b"kept".to_vec()));
        store.apply(version, &writes).unwrap();
        reads_kept(&store, version);

        backend.failing.store(true, Ordering::SeqCst);
        let mut refused = filler(9, n);
        refused.insert(b"account/a".to_vec(), Some(b"lost".to_vec()));
        assert!(store.apply(version + 1, &refused).is_err());
        backend.failing.store(false, Ordering::SeqCst);
        assert_eq!(store.latest_version(), Some(version));
        reads_kept(&store, version);
    }
}

#[test]
fn the_cache_of_latest_values_stays_within_its_budget() {
    let mut cache = LatestValues::default();
    let value = vec![7u8; 1 << 20];
    let entries = LATEST_VALUES_CACHE_BYTES / value.len() + 4;
    for i in 0..entries {
        cache.remember(format!("key/{i}").as_bytes(), &value);
        assert!(cache.bytes <= LATEST_VALUES_CACHE_BYTES);
        let counted: usize = cache
            .entries
            .iter()
            .map(|(k, v)| LatestValues::cost(k, v.as_deref()))
            .sum();
        assert_eq!(counted, cache.bytes);
    }
    // The newest entry survives the restart it caused.
    let last = format!("key/{}", entries - 1);
    assert_eq!(
        cache.get(last.as_bytes()).unwrap().as_deref(),
        Some(&value[..])
    );
    // Refreshing with a larger value is counted too.
    let bigger = vec![1u8; 2 << 20];
    let writes: Writes = [(last.clone().into_bytes(), Some(bigger.clone()))].into();
    cache.refresh(&writes);
    assert_eq!(
        cache.get(last.as_bytes()).unwrap().as_deref(),
        Some(&bigger[..])
    );
    assert!(cache.bytes <= LATEST_VALUES_CACHE_BYTES);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn memory_store_matches_model(scenario in scenario(14)) {
        let mut store = MerkleStore::open_memory_with(&in_memory(memory_config(scenario.window), &scenario)).unwrap();
        let models = run_scenario(&mut store, &scenario);
        check_versions(&store, &models);
        let latest = store.latest_version().unwrap();
        let report = store.check_integrity(latest).unwrap();
        prop_assert_eq!(report.leaves as usize, models.last().unwrap().len());
        check_no_leak(&store);
        check_versions(&store, &models);
    }

    #[test]
    fn proof_encoding_round_trips(
        leaf in prop::option::of((any::<[u8; 32]>(), any::<[u8; 32]>())),
        siblings in prop::collection::vec(prop_oneof![Just([0u8; 32]), any::<[u8; 32]>()], 0..=256),
    ) {
        let proof = Proof {
            leaf: leaf.map(|(key_hash, value_hash)| ProofLeaf { key_hash, value_hash }),
            siblings,
        };
        let bytes = proof.to_bytes();
        prop_assert!(bytes.len() <= proof::MAX_PROOF_BYTES);
        prop_assert_eq!(Proof::from_bytes(&bytes).unwrap(), proof);
        // Every strict prefix is rejected, never accepted as another proof.
        for cut in 0..bytes.len() {
            prop_assert!(Proof::from_bytes(&bytes[..cut]).is_err());
        }
    }
}

proptest! {
    // RocksDB cases open a database each: fewer of them.
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn memory_and_rocksdb_store_the_same_bytes(scenario in scenario(10)) {
        let dir = tempfile::tempdir().unwrap();
        let mut rocks = MerkleStore::open_rocksdb(dir.path(), &in_memory(rocks_config(scenario.window), &scenario)).unwrap();
        let mut memory = MerkleStore::open_memory_with(&in_memory(memory_config(scenario.window), &scenario)).unwrap();
        let models = run_scenario(&mut rocks, &scenario);
        let memory_models = run_scenario(&mut memory, &scenario);
        prop_assert_eq!(&models, &memory_models);
        for version in rocks.oldest_version().unwrap()..=rocks.latest_version().unwrap() {
            prop_assert_eq!(rocks.root(version).unwrap(), memory.root(version).unwrap());
        }
        check_versions(&rocks, &models);
        rocks.finish_pruning().unwrap();
        memory.finish_pruning().unwrap();
        for column in [Column::Leaves, Column::Values, Column::Meta] {
            let a = rocks.backend().scan(&column, &[], usize::MAX).unwrap();
            let b = memory.backend().scan(&column, &[], usize::MAX).unwrap();
            prop_assert_eq!(a, b, "column {:?}", column);
        }
        check_no_leak(&rocks);
        // Reopen: the same versions, the same answers.
        drop(rocks);
        let rocks = MerkleStore::open_rocksdb(dir.path(), &in_memory(rocks_config(scenario.window), &scenario)).unwrap();
        check_versions(&rocks, &models);
    }
}

// ---- larger trees, many levels deep ----

#[test]
fn thousands_of_keys_many_levels_deep() {
    let mut store = MerkleStore::open_memory_with(&memory_config(Some(3))).unwrap();
    let mut model = Model::new();
    for version in 0..8u64 {
        let mut writes = Writes::new();
        for i in 0..3000u64 {
            let k = (i * 7 + version * 1319) % 5000;
            let value = if (i + version).is_multiple_of(5) {
                None
            } else {
                Some(format!("{version}:{i}").into_bytes())
            };
            writes.insert(format!("k{k}").into_bytes(), value);
        }
        model_apply(&mut model, &writes);
        let root = store.apply(version, &writes).unwrap();
        assert_eq!(root.0, reference_root(&model));
    }
    let report = store.check_integrity(7).unwrap();
    assert_eq!(report.leaves as usize, model.len());
    assert!(report.internal_nodes > 100);
    for (key, value) in model.iter().take(200) {
        let (got, proof) = store.get_with_proof(7, key).unwrap();
        assert_eq!(got.as_ref(), Some(value));
        verify_proof(&store.root(7).unwrap().0, key, Some(value), &proof).unwrap();
    }
    check_no_leak(&store);
    // One version deletes all keys but one (the parallel root update
    // collapses everything into a leaf), the next deletes the last one.
    let survivor = model.keys().next().unwrap().clone();
    let writes: Writes = model
        .keys()
        .filter(|k| **k != survivor)
        .map(|k| (k.clone(), None))
        .collect();
    model_apply(&mut model, &writes);
    assert_eq!(model.len(), 1);
    let root = store.apply(8, &writes).unwrap();
    assert_eq!(root.0, reference_root(&model));
    assert_eq!(
        store.check_integrity(8).unwrap(),
        IntegrityReport {
            leaves: 1,
            internal_nodes: 0
        }
    );
    let root = store
        .apply(9, &[(survivor, None)].into_iter().collect())
        .unwrap();
    assert_eq!(root, Hash([0; 32]));
    check_no_leak(&store);
}

#[test]
fn trees_in_memory_stay_bounded_and_older_versions_are_rebuilt() {
    let config = StoreConfig {
        versions_in_memory: 3,
        ..memory_config(None)
    };
    let mut store = MerkleStore::open_memory_with(&config).unwrap();
    for version in 0..12 {
        store
            .apply(version, &deterministic_writes(version))
            .unwrap();
        assert!(store.trees_in_memory() <= 3);
    }
    assert_eq!(store.trees_in_memory(), 3);
    // Every version, in memory or not, reads and proves as the model says.
    for version in 0..12 {
        check_against_model(&store, version);
        let model = model_through(version);
        let root = store.root(version).unwrap();
        for (key, value) in model.iter().take(20) {
            let (got, proof) = store.get_with_proof(version, key).unwrap();
            assert_eq!(got.as_ref(), Some(value));
            verify_proof(&root.0, key, Some(value), &proof).unwrap();
        }
    }
}

/// Versions of more writes than one backend scan returns: reopening reads
/// the leaves in several scans, and rebuilding the older version undoes a
/// version whose keys take several scans (and the parallel update path).
#[test]
fn reopen_and_undo_across_many_scans() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        versions_in_memory: 1,
        ..rocks_config(None)
    };
    let n = MAX_STORE_SCAN_ENTRIES as u64 + 2_500;
    let first: Writes = (0..n)
        .map(|i| {
            (
                format!("key{i}").into_bytes(),
                Some(i.to_be_bytes().to_vec()),
            )
        })
        .collect();
    // The second version rewrites every other key, deletes some, inserts more.
    let second: Writes = (0..n + n / 2)
        .filter(|i| i % 2 == 0)
        .map(|i| {
            let value = (i % 10 != 4).then(|| (i + 1).to_be_bytes().to_vec());
            (format!("key{i}").into_bytes(), value)
        })
        .collect();
    let mut models = Vec::new();
    let mut model = Model::new();
    {
        let mut store = MerkleStore::open_rocksdb(dir.path(), &config).unwrap();
        for (version, writes) in [&first, &second].into_iter().enumerate() {
            model_apply(&mut model, writes);
            models.push(model.clone());
            store.apply(version as u64, writes).unwrap();
        }
    }
    let store = MerkleStore::open_rocksdb(dir.path(), &config).unwrap();
    assert_eq!(store.trees_in_memory(), 1);
    for (version, model) in models.iter().enumerate() {
        let version = version as u64;
        assert_eq!(store.root(version).unwrap().0, reference_root(model));
        assert_eq!(
            store.check_integrity(version).unwrap().leaves as usize,
            model.len()
        );
        for i in (0..n + n / 2).step_by(97) {
            let key = format!("key{i}").into_bytes();
            assert_eq!(store.get(version, &key).unwrap().as_ref(), model.get(&key));
        }
    }
}

#[test]
fn a_version_too_far_behind_the_trees_in_memory_is_refused() {
    let config = StoreConfig {
        versions_in_memory: 1,
        ..memory_config(None)
    };
    let mut store = MerkleStore::open_memory_with(&config).unwrap();
    let last = MAX_RECONSTRUCT_VERSIONS + 2;
    for version in 0..=last {
        let writes: Writes = [(b"k".to_vec(), Some(version.to_be_bytes().to_vec()))].into();
        store.apply(version, &writes).unwrap();
    }
    // One version within reach, one beyond it.
    let reachable = last - MAX_RECONSTRUCT_VERSIONS;
    assert_eq!(
        store.get(reachable, b"k").unwrap(),
        Some(reachable.to_be_bytes().to_vec())
    );
    assert!(matches!(
        store.get(reachable - 1, b"k"),
        Err(StoreError::VersionTooOld { version, .. }) if version == reachable - 1
    ));
    // Its root is still known.
    assert!(store.root(reachable - 1).is_ok());
}

// ---- errors and limits ----

type ErrorCheck = fn(&StoreError) -> bool;

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let mut store = MerkleStore::open_memory();
    assert!(matches!(
        store.apply(1, &Writes::new()),
        Err(StoreError::WrongVersion {
            expected: 0,
            got: 1
        })
    ));
    store.apply(0, &writes_of(&[("a", Some("1"))])).unwrap();
    let root = store.latest_root();
    let cases: Vec<(u64, Writes, ErrorCheck)> = vec![
        (0, Writes::new(), |e| {
            matches!(
                e,
                StoreError::WrongVersion {
                    expected: 1,
                    got: 0
                }
            )
        }),
        (5, Writes::new(), |e| {
            matches!(
                e,
                StoreError::WrongVersion {
                    expected: 1,
                    got: 5
                }
            )
        }),
        (
            1,
            [(vec![0; MAX_STORE_KEY_BYTES + 1], Some(vec![]))]
                .into_iter()
                .collect(),
            |e| matches!(e, StoreError::KeyTooLarge { len, max } if *len == MAX_STORE_KEY_BYTES + 1 && *max == MAX_STORE_KEY_BYTES),
        ),
        (
            1,
            [(b"k".to_vec(), Some(vec![0; MAX_STORE_VALUE_BYTES + 1]))]
                .into_iter()
                .collect(),
            |e| matches!(e, StoreError::ValueTooLarge { len, .. } if *len == MAX_STORE_VALUE_BYTES + 1),
        ),
    ];
    for (version, writes, expected) in cases {
        let error = store.apply(version, &writes).unwrap_err();
        assert!(expected(&error), "{error:?}");
        assert_eq!(store.latest_version(), Some(0));
        assert_eq!(store.latest_root(), root);
    }
    // The largest allowed key and value are accepted.
    let writes = [(
        vec![1; MAX_STORE_KEY_BYTES],
        Some(vec![2; MAX_STORE_VALUE_BYTES]),
    )]
    .into_iter()
    .collect();
    store.apply(1, &writes).unwrap();
    assert!(matches!(
        store.get(0, &[0; MAX_STORE_KEY_BYTES + 1]),
        Err(StoreError::KeyTooLarge { .. })
    ));
    assert!(matches!(
        store.root(9),
        Err(StoreError::VersionMissing {
            version: 9,
            latest: Some(1)
        })
    ));
    store.prune_before(1).unwrap();
    assert!(matches!(
        store.get(0, b"a"),
        Err(StoreError::VersionPruned {
            version: 0,
            oldest: 1
        })
    ));
    assert_eq!(store.get(1, b"a").unwrap(), Some(b"1".to_vec()));
}

#[test]
fn proof_decoding_rejects_malformed_bytes() {
    let proof = Proof {
        leaf: None,
        siblings: vec![[0; 32], [5; 32], [0; 32]],
    };
    let good = proof.to_bytes();
    // flags, count (2), bitmap (1: 0b0100_0000), one sibling.
    assert_eq!(good.len(), 1 + 2 + 1 + 32);
    assert_eq!(good[3], 0b0100_0000);
    let mut bad_flags = good.clone();
    bad_flags[0] = 2;
    let mut too_many = good.clone();
    too_many[1..3].copy_from_slice(&257u16.to_be_bytes());
    let mut padding = good.clone();
    padding[3] |= 0b0000_0001;
    let mut empty_present = good.clone();
    empty_present[3] |= 0b1000_0000;
    empty_present.splice(4..4, [0u8; 32]);
    let mut trailing = good.clone();
    trailing.push(0);
    let cases: Vec<(Vec<u8>, ProofDecodeError)> = vec![
        (
            vec![],
            ProofDecodeError::Truncated {
                offset: 0,
                needed: 1,
            },
        ),
        (bad_flags, ProofDecodeError::BadFlags { flags: 2 }),
        (too_many, ProofDecodeError::TooManySiblings { count: 257 }),
        (padding, ProofDecodeError::NonZeroPadding),
        (
            empty_present,
            ProofDecodeError::EmptySiblingMarkedPresent { index: 0 },
        ),
        (trailing, ProofDecodeError::TrailingBytes { count: 1 }),
        (
            good[..20].to_vec(),
            ProofDecodeError::Truncated {
                offset: 4,
                needed: 32,
            },
        ),
    ];
    for (bytes, expected) in cases {
        assert_eq!(Proof::from_bytes(&bytes), Err(expected));
    }
    // Verification bounds the siblings too.
    let long = Proof {
        leaf: None,
        siblings: vec![[0; 32]; 257],
    };
    assert_eq!(
        verify_proof(&[0; 32], b"k", None, &long),
        Err(ProofError::TooManySiblings { count: 257 })
    );
}

#[test]
fn non_membership_proofs_of_both_kinds() {
    let mut store = MerkleStore::open_memory();
    // Key hashes start alice 00, carol 010, dave 011: the paths of keys
    // starting with bit 1 end at an empty subtree, those starting 00 at alice.
    store
        .apply(
            0,
            &writes_of(&[
                ("alice", Some("1")),
                ("carol", Some("2")),
                ("dave", Some("3")),
            ]),
        )
        .unwrap();
    let root = store.root(0).unwrap().0;
    let mut ends_at_leaf = 0;
    let mut ends_empty = 0;
    for i in 0..64 {
        let key = format!("absent-{i}");
        let (value, proof) = store.get_with_proof(0, key.as_bytes()).unwrap();
        assert_eq!(value, None);
        verify_proof(&root, key.as_bytes(), None, &proof).unwrap();
        match proof.leaf {
            Some(leaf) => {
                ends_at_leaf += 1;
                // A leaf of another key that does not share the path is refused.
                let mut off_path = proof.clone();
                off_path.leaf = Some(ProofLeaf {
                    key_hash: [!leaf.key_hash[0]; 32],
                    ..leaf
                });
                if !off_path.siblings.is_empty() {
                    assert!(matches!(
                        verify_proof(&root, key.as_bytes(), None, &off_path),
                        Err(ProofError::LeafOffPath { .. })
                    ));
                }
            }
            None => ends_empty += 1,
        }
    }
    assert!(ends_at_leaf > 0);
    assert!(ends_empty > 0);
}

// ---- extra column families ----

#[test]
fn extra_column_families_share_the_batch_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        extra_column_families: vec!["blocks".into(), "receipts".into()],
        ..rocks_config(None)
    };
    {
        let mut store = MerkleStore::open_rocksdb(dir.path(), &config).unwrap();
        let extra = vec![
            ExtraWrite {
                column_family: "blocks".into(),
                key: 0u64.to_be_bytes().to_vec(),
                value: Some(b"block 0".to_vec()),
            },
            ExtraWrite {
                column_family: "receipts".into(),
                key: b"tx".to_vec(),
                value: Some(b"ok".to_vec()),
            },
        ];
        store
            .apply_with_extra(0, &writes_of(&[("a", Some("1"))]), &extra)
            .unwrap();
        store
            .write_extra(
                &[ExtraWrite {
                    column_family: "blocks".into(),
                    key: 1u64.to_be_bytes().to_vec(),
                    value: Some(b"block 1".to_vec()),
                }],
                true,
            )
            .unwrap();
        // An unknown column family fails the whole version.
        let bad = vec![ExtraWrite {
            column_family: "nope".into(),
            key: vec![],
            value: None,
        }];
        assert!(matches!(
            store.apply_with_extra(1, &writes_of(&[("b", Some("2"))]), &bad),
            Err(StoreError::UnknownColumnFamily { .. })
        ));
        let reserved = vec![ExtraWrite {
            column_family: "nodes".into(),
            key: vec![],
            value: None,
        }];
        assert!(matches!(
            store.apply_with_extra(1, &Writes::new(), &reserved),
            Err(StoreError::BadColumnFamily { .. })
        ));
        assert_eq!(store.latest_version(), Some(0));
    }
    let store = MerkleStore::open_rocksdb(dir.path(), &config).unwrap();
    assert_eq!(
        store.get_extra("receipts", b"tx").unwrap(),
        Some(b"ok".to_vec())
    );
    let blocks = store.scan_extra("blocks", &[], 10).unwrap();
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[1].1, b"block 1".to_vec());
    assert_eq!(store.get(0, b"a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(store.get(0, b"b").unwrap(), None);
    // Reopening without naming the extra families still opens the database.
    drop(store);
    let store = MerkleStore::open_rocksdb(dir.path(), &rocks_config(None)).unwrap();
    assert_eq!(store.latest_version(), Some(0));
    // Names are checked.
    for name in ["", "values", "a b", &"x".repeat(65)] {
        let config = StoreConfig {
            extra_column_families: vec![name.to_owned()],
            ..rocks_config(None)
        };
        assert!(matches!(
            MerkleStore::open_memory_with(&config),
            Err(StoreError::BadColumnFamily { .. })
        ));
    }
}

// ---- crashes and reopening ----

fn deterministic_writes(version: u64) -> Writes {
    let mut writes = Writes::new();
    for i in 0..200u64 {
        let k = (version * 131 + i * 17) % 3000;
        let value = if (version + i).is_multiple_of(6) {
            None
        } else {
            Some(format!("v{version}-{i}").into_bytes())
        };
        writes.insert(format!("key{k}").into_bytes(), value);
    }
    writes
}

fn model_through(version: u64) -> Model {
    let mut model = Model::new();
    for v in 0..=version {
        model_apply(&mut model, &deterministic_writes(v));
    }
    model
}

fn check_against_model(store: &MerkleStore, version: u64) {
    let model = model_through(version);
    assert_eq!(store.root(version).unwrap().0, reference_root(&model));
    let report = store.check_integrity(version).unwrap();
    assert_eq!(report.leaves as usize, model.len());
    for (key, value) in model.iter().take(100) {
        assert_eq!(store.get(version, key).unwrap().as_ref(), Some(value));
    }
}

#[test]
fn reopen_after_writes_and_after_an_unwritten_batch() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = MerkleStore::open_rocksdb(dir.path(), &rocks_config(Some(4))).unwrap();
        for version in 0..10 {
            store
                .apply(version, &deterministic_writes(version))
                .unwrap();
        }
        // A crash in the middle of version 10: its batch is built, never written.
        let prepared = store.prepare(10, &deterministic_writes(10)).unwrap();
        assert!(!prepared.batch.ops.is_empty());
        drop(prepared);
    }
    let mut store = MerkleStore::open_rocksdb(dir.path(), &rocks_config(Some(4))).unwrap();
    assert_eq!(store.latest_version(), Some(9));
    assert_eq!(store.oldest_version(), Some(6));
    check_against_model(&store, 9);
    check_against_model(&store, 6);
    // The store carries on from the last complete version.
    store.apply(10, &deterministic_writes(10)).unwrap();
    check_against_model(&store, 10);
    check_no_leak(&store);
}

#[test]
fn open_detects_a_corrupted_leaf_or_value() {
    let dir = tempfile::tempdir().unwrap();
    let corrupt_leaf = |dir: &Path| {
        let store = MerkleStore::open_rocksdb(dir, &rocks_config(None)).unwrap();
        // Flip one bit of the value hash of the first stored leaf.
        let (key, mut record) = store
            .backend()
            .scan(&Column::Leaves, &[], 1)
            .unwrap()
            .remove(0);
        record[20] ^= 1;
        let mut batch = Batch::default();
        batch.put(Column::Leaves, key, record);
        store.backend().write(batch).unwrap();
    };
    {
        let mut store = MerkleStore::open_rocksdb(dir.path(), &rocks_config(None)).unwrap();
        store.apply(0, &deterministic_writes(0)).unwrap();
        store.apply(1, &deterministic_writes(1)).unwrap();
    }
    corrupt_leaf(dir.path());
    assert!(matches!(
        MerkleStore::open_rocksdb(dir.path(), &rocks_config(None)),
        Err(StoreError::RootMismatch { version: 1, .. })
    ));

    // A value of an older version changed on disk: rebuilding that version
    // finds it.
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = MerkleStore::open_rocksdb(dir.path(), &rocks_config(None)).unwrap();
        store.apply(0, &deterministic_writes(0)).unwrap();
        // Version 1 replaces one value of version 0.
        let key = model_through(0).keys().next().unwrap().clone();
        store
            .apply(1, &[(key, Some(b"changed".to_vec()))].into())
            .unwrap();
        let mut stale = store
            .backend()
            .get(&Column::Meta, &meta_key(META_STALE, 1))
            .unwrap()
            .unwrap();
        stale.truncate(STALE_ENTRY_BYTES);
        let value_key = value_key(
            u64::from_be_bytes(read_array(&stale[..8])),
            &read_array(&stale[8..]),
        );
        let mut batch = Batch::default();
        batch.put(Column::Values, value_key, b"not the value".to_vec());
        store.backend().write(batch).unwrap();
    }
    let config = StoreConfig {
        versions_in_memory: 1,
        ..rocks_config(None)
    };
    let store = MerkleStore::open_rocksdb(dir.path(), &config).unwrap();
    assert!(matches!(
        store.get(0, b"anything"),
        Err(StoreError::RootMismatch { version: 0, .. })
    ));
}

const CRASH_CHILD_DIR: &str = "COMMONS_STORE_CRASH_CHILD_DIR";

/// Runs the store in a child process (this test binary, re-entered through
/// this same test), kills it with SIGKILL in the middle of its writing, and
/// reopens: the store is at a complete version at or after the last one the
/// child reported, and every read matches the model.
#[test]
fn reopen_after_process_killed_mid_block() {
    if let Ok(dir) = std::env::var(CRASH_CHILD_DIR) {
        crash_child(Path::new(&dir));
    }
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "store::tests::reopen_after_process_killed_mid_block",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut reported = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(version) = line.strip_prefix("applied ") {
            let version: u64 = version.parse().unwrap();
            reported = Some(version);
            if version >= 25 {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    let reported = reported.unwrap();
    let store = MerkleStore::open_rocksdb(dir.path(), &rocks_config(Some(8))).unwrap();
    let latest = store.latest_version().unwrap();
    assert!(latest >= reported, "latest {latest} < reported {reported}");
    check_against_model(&store, latest);
    check_against_model(&store, store.oldest_version().unwrap());
}

fn crash_child(dir: &Path) -> ! {
    let mut store = MerkleStore::open_rocksdb(dir, &rocks_config(Some(8))).unwrap();
    let mut version = 0;
    loop {
        store
            .apply(version, &deterministic_writes(version))
            .unwrap();
        println!("applied {version}");
        version += 1;
    }
}

// ---- freeing old trees ----

/// The nice values of this process's threads named `name`.
#[cfg(target_os = "linux")]
fn nice_of_threads(name: &str) -> Vec<i64> {
    let mut nice = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let task = task.unwrap().path();
        // A thread that ended since the listing has no files left.
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(task.join("comm")),
            std::fs::read_to_string(task.join("stat")),
        ) else {
            continue;
        };
        if comm.trim_end() != name {
            continue;
        }
        // Fields after the command's closing parenthesis: state is field 3
        // of stat(5), nice field 19.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        nice.push(after.split(' ').nth(16).unwrap().parse().unwrap());
    }
    nice
}

/// With background work on, the tree of a version leaving memory is freed
/// by the store's reaper thread, which runs at nice 19.
#[test]
fn reaper_frees_old_trees_at_low_priority() {
    let config = StoreConfig {
        prune_in_background: true,
        versions_in_memory: 1,
        ..StoreConfig::default()
    };
    let mut store = MerkleStore::open_memory_with(&config).unwrap();
    store
        .apply(0, &writes_of(&[("alice", Some("1")), ("bob", Some("2"))]))
        .unwrap();
    let Tree::Internal(root) = store.trees[&0].clone() else {
        panic!("two leaves make an internal root");
    };
    let old_root = Arc::downgrade(&root);
    drop(root);
    // Version 1 rewrites alice: version 0's root is held by nothing else.
    store.apply(1, &writes_of(&[("alice", Some("3"))])).unwrap();
    assert!(!store.trees.contains_key(&0));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while old_root.upgrade().is_some() {
        assert!(std::time::Instant::now() < deadline, "old tree not freed");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    #[cfg(target_os = "linux")]
    {
        // Other tests' reapers may be starting this moment (each lowers its
        // priority first thing): wait until every one has.
        loop {
            let nice = nice_of_threads("state-reaper");
            assert!(!nice.is_empty(), "no reaper thread");
            if nice.iter().all(|n| *n == 19) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "reaper nice {nice:?}");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    assert_eq!(store.get(1, b"alice").unwrap(), Some(b"3".to_vec()));
    // Dropping the store joins the thread (a hang here would be a bug).
    drop(store);
}
