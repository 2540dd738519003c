//! The Merkle state store: an authenticated key-value map, versioned by
//! block height, whose root goes into every block header.
//!
//! # The tree (normative, `DESIGN.md` "State")
//!
//! A binary sparse Merkle tree over 256-bit key hashes with single-leaf
//! subtrees collapsed, as in the Jellyfish Merkle Tree:
//!
//! - `key_hash = SHA-256(key)`, bits read from the most significant bit of
//!   byte 0; `value_hash = SHA-256(value)`.
//! - An empty subtree hashes to 32 zero bytes; a subtree with exactly one
//!   leaf to `SHA-256(0x00 || key_hash || value_hash)`; any other to
//!   `SHA-256(0x01 || left || right)`.
//!
//! Proofs and their standalone verifier live in [`proof`], which depends on
//! nothing but SHA-256 so clients and third parties can use or copy it.
//! Keys are hashed and never stored: the store is a map from key hashes to
//! values, so two keys with one SHA-256 would be one entry (within a version
//! this is detected and refused).
//!
//! # Where the tree lives
//!
//! The leaves are the data; every internal node is a function of them. So
//! the store persists leaves and values, and keeps the internal nodes in
//! memory ([`tree`]): an immutable tree per recent version, the versions
//! sharing every subtree they have in common. Applying a block copies only
//! the paths of its writes (O(writes × log n) hashes, no reads from disk),
//! and its batch holds two small entries per written key instead of the
//! rewritten interior of the tree. On open, the store rebuilds the latest
//! tree from its leaves (O(n) hashes, in parallel) and refuses to start if
//! the root differs from the stored one. ARCHITECTURE.md records why.
//!
//! # Versions
//!
//! Each committed block is a version: version `h` is the state after block
//! `h`. [`MerkleStore::apply`] takes the next version (`0` first, then
//! `latest + 1`) and the block's writes. The trees of the last
//! [`StoreConfig::versions_in_memory`] versions are held in memory; an older
//! retained version is rebuilt on demand by undoing later versions (from
//! their stale lists and values, below), at most
//! [`MAX_RECONSTRUCT_VERSIONS`] of them per read. Reads and proofs work at
//! any retained version.
//!
//! # Pruning
//!
//! With [`StoreConfig::prune_window`] set to `w`, applying version `v` makes
//! versions below `v + 1 - w` unreadable at once (in the version's own
//! batch); [`MerkleStore::prune_before`] does the same by hand. Their trees
//! leave memory at once; the nodes no newer version shares are freed on
//! another thread (the store's reaper, at nice 19, with background work on;
//! else the rayon pool). Their values are reclaimed afterwards: each
//! version records the values it replaced or deleted (its stale list), and
//! the pruner deletes, version by version, those no retained version needs.
//! The pruner runs on a thread of its own at nice 19
//! ([`StoreConfig::prune_in_background`], the default for RocksDB) or in
//! bounded steps after each apply (the default in memory, which keeps the
//! simulator single-threaded). Either way a commit
//! never waits for a whole prune; each prune step is one atomic batch and
//! replaying one is harmless, so a crash mid-prune only leaves work for the
//! next start.
//!
//! # Storage
//!
//! One [`Backend`] trait, two backends storing exactly the same bytes:
//! [`MemoryBackend`] and [`RocksBackend`]. Column families: `leaves` (the
//! leaf nodes of the latest version, `key_hash → value_version ||
//! value_hash`), `values` (`version || key_hash → value`, for every value a
//! retained version can read), `meta` (roots, stale lists, counters). A
//! version's writes, and any extra writes given with it, land in one
//! `WriteBatch`: a crash between batches leaves the store at the last
//! complete version. Every value read back is checked against its leaf's
//! value hash; every tree rebuilt (on open, or to reach an older version)
//! against the stored root of its version.
//!
//! # Sharing the database with the node
//!
//! The node keeps its blocks, consensus record, receipts and tx index in the
//! same RocksDB: it names its column families in
//! [`StoreConfig::extra_column_families`], writes them with a version through
//! [`MerkleStore::apply_with_extra`] (one atomic batch with the tree) or
//! alone through [`MerkleStore::write_extra`], and reads them with
//! [`MerkleStore::get_extra`] and [`MerkleStore::scan_extra`]. Extra column
//! families are not versioned: the store never prunes them.
//!
//! # Determinism
//!
//! Roots depend only on the sequence of applied writes: writes are processed
//! in key-hash order, there is no clock and no randomness, and the parallel
//! parts of an update compute independent subtrees that are joined in a
//! fixed order.
//!
//! # Reads at the latest version
//!
//! Values read at the latest version are kept in a bounded cache by key
//! (`LatestValues`), refreshed with the writes of each applied version, so
//! the accounts a block touches are read without walking the tree. Nothing
//! else reads it: proofs, older versions and the integrity check always go
//! to the tree and the backend.
//!
//! # Concurrency
//!
//! Reads take `&self` and may run on several threads; [`MerkleStore::apply`]
//! takes `&mut self`. A reader that needs a version while another thread
//! applies should share the store behind a lock.

mod backend;
mod error;
pub mod proof;
mod rocks;
mod tree;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use commons_types::Hash;

pub use backend::{
    Backend, Batch, BatchOp, Column, Entries, MemoryBackend, RESERVED_COLUMN_FAMILIES,
};
pub use error::StoreError;
pub use proof::{Proof, ProofDecodeError, ProofError, ProofLeaf, verify_proof};
pub use rocks::RocksBackend;
pub use tree::TreeCount as IntegrityReport;

pub use crate::limits::MAX_RECONSTRUCT_VERSIONS;
use crate::limits::{
    LATEST_VALUES_CACHE_BYTES, MAX_COLUMN_FAMILY_NAME_BYTES, MAX_STORE_EXTRA_BYTES,
    MAX_STORE_EXTRA_WRITES, MAX_STORE_KEY_BYTES, MAX_STORE_SCAN_ENTRIES, MAX_STORE_VALUE_BYTES,
    MAX_STORE_WRITES_PER_VERSION, MAX_TREES_AWAITING_FREE,
};
use proof::HASH_BYTES;
use tree::{Hash32, Leaf, Op, Tree};

/// Format marker kept in `meta`; a store written in another layout is refused.
const FORMAT: &[u8] = b"commons-smt/v2/leaves-values";

const META_FORMAT: &[u8] = b"format";
const META_LATEST: &[u8] = b"latest";
const META_OLDEST: &[u8] = b"oldest";
const META_PRUNE_NEXT: &[u8] = b"prune_next";
const META_ROOT: &[u8] = b"root/";
const META_STALE: &[u8] = b"stale/";

/// A `leaves` entry: `value_version (8, big-endian) || value_hash`.
const LEAF_RECORD_BYTES: usize = 8 + HASH_BYTES;
/// A stale list entry: `value_version (8, big-endian) || key_hash`, the key
/// of the `values` entry the version made stale.
const STALE_ENTRY_BYTES: usize = 8 + HASH_BYTES;

/// How a store is opened.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Versions kept readable: after applying `v`, versions below
    /// `v + 1 - prune_window` are pruned. `None` keeps every version.
    /// `Some(0)` is treated as `Some(1)`: the latest version is always kept.
    pub prune_window: Option<u64>,
    /// Trees of the most recent versions held in memory (at least 1: the
    /// latest). Each costs the nodes its block wrote (about ten per written
    /// key); older retained versions are rebuilt on demand.
    pub versions_in_memory: u64,
    /// Column families the node stores beside the tree (e.g. `blocks`,
    /// `consensus`, `receipts`, `txindex`). Names: 1 to 64 bytes of ASCII
    /// letters, digits, `_` or `-`, none of [`RESERVED_COLUMN_FAMILIES`].
    pub extra_column_families: Vec<String>,
    /// Fsync every version's batch before `apply` returns. Without it a
    /// process crash loses nothing (RocksDB's write-ahead log is written
    /// before `apply` returns), a machine crash may lose the last versions.
    pub sync: bool,
    /// Prune, and free old versions' trees, on threads of the store's own
    /// at the lowest CPU priority, instead of pruning in steps after each
    /// apply and freeing on the rayon pool.
    pub prune_in_background: bool,
    /// RocksDB block cache shared by all column families.
    pub rocksdb_block_cache_bytes: usize,
    /// RocksDB memtable size per column family.
    pub rocksdb_write_buffer_bytes: usize,
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig {
            prune_window: None,
            versions_in_memory: 16,
            extra_column_families: Vec::new(),
            sync: false,
            prune_in_background: true,
            rocksdb_block_cache_bytes: 256 << 20,
            rocksdb_write_buffer_bytes: 64 << 20,
        }
    }
}

/// One write to an extra column family: `None` deletes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtraWrite {
    pub column_family: String,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// The versioned Merkle state store. See the module doc.
#[derive(Debug)]
pub struct MerkleStore {
    backend: Arc<dyn Backend>,
    config: StoreConfig,
    latest: Option<u64>,
    oldest: u64,
    /// The trees of versions `first..=latest`, a contiguous range ending at
    /// the latest version (empty before the first version).
    trees: BTreeMap<u64, Tree>,
    /// Held for each prune step, so the background pruner and
    /// `finish_pruning` never interleave their steps.
    prune_lock: Arc<Mutex<()>>,
    pruner: Option<Pruner>,
    /// Frees dropped trees when [`StoreConfig::prune_in_background`].
    reaper: Option<Reaper>,
    /// The error of the last inline prune after a write, if it failed.
    inline_prune_failure: Mutex<Option<String>>,
    /// Values of the latest version by key, see [`LatestValues`].
    latest_values: Mutex<LatestValues>,
}

/// Values of the latest version that were read recently, by key (`None`:
/// deleted since it was read), so the ledger's reads of the accounts a block
/// touches skip the key hash, the walk down the tree, the backend lookup and
/// the value hash check. Entries are only ever valid for the latest version:
/// after each applied version, the keys it wrote are refreshed with their
/// new values (keys not yet cached are not added, so applying writes costs
/// nothing when nobody reads). A key read absent is not remembered: such
/// reads are mostly of keys about to be created once (a new trade's
/// record), which would fill the cache and make every refresh slower.
/// Reads at older versions bypass it. Bounded by
/// [`LATEST_VALUES_CACHE_BYTES`]: when full, it starts over empty.
#[derive(Default)]
struct LatestValues {
    entries: HashMap<Vec<u8>, Option<Arc<[u8]>>>,
    bytes: usize,
}

impl fmt::Debug for LatestValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LatestValues")
            .field("entries", &self.entries.len())
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl LatestValues {
    /// Bytes an entry is counted for: key, value and the map's overhead.
    fn cost(key: &[u8], value: Option<&[u8]>) -> usize {
        key.len() + value.map_or(0, <[u8]>::len) + 64
    }

    /// `Some(value)` if `key` is cached (`value` is `None` if a version
    /// deleted it since it was read).
    fn get(&self, key: &[u8]) -> Option<Option<Arc<[u8]>>> {
        self.entries.get(key).cloned()
    }

    /// Caches the value `key` was read with (reads of absent keys are not
    /// remembered).
    fn remember(&mut self, key: &[u8], value: &[u8]) {
        let cost = Self::cost(key, Some(value));
        if self.bytes.saturating_add(cost) > LATEST_VALUES_CACHE_BYTES {
            self.clear();
        }
        if let Some(old) = self.entries.insert(key.to_vec(), Some(Arc::from(value))) {
            self.bytes = self.bytes.saturating_sub(Self::cost(key, old.as_deref()));
        }
        self.bytes += cost;
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// After a version is written: its writes become the cached values of
    /// the keys already cached.
    fn refresh(&mut self, writes: &BTreeMap<Vec<u8>, Option<Vec<u8>>>) {
        if self.entries.is_empty() {
            return;
        }
        for (key, value) in writes {
            if let Some(entry) = self.entries.get_mut(key.as_slice()) {
                let old = Self::cost(key, entry.as_deref());
                *entry = value.as_deref().map(Arc::from);
                let new = Self::cost(key, value.as_deref());
                self.bytes = self.bytes.saturating_sub(old).saturating_add(new);
            }
        }
        if self.bytes > LATEST_VALUES_CACHE_BYTES {
            self.clear();
        }
    }
}

/// A version's batch, built but not yet written.
#[derive(Debug)]
pub(crate) struct PreparedVersion {
    version: u64,
    tree: Tree,
    oldest: u64,
    batch: Batch,
}

impl MerkleStore {
    /// An empty in-memory store, pruning inline, keeping every version.
    pub fn open_memory() -> MerkleStore {
        let config = StoreConfig {
            prune_in_background: false,
            ..StoreConfig::default()
        };
        let backend = Arc::new(MemoryBackend::new(&[]));
        // A fresh memory backend holds nothing to check and its writes cannot
        // fail, so an error here is a bug of ours, not bad input.
        match MerkleStore::open(backend, config) {
            Ok(store) => store,
            Err(error) => panic!("opening an empty memory store failed: {error}"),
        }
    }

    /// An empty in-memory store with `config` (extra column families,
    /// pruning; the RocksDB fields are ignored).
    pub fn open_memory_with(config: &StoreConfig) -> Result<MerkleStore, StoreError> {
        validate_column_families(&config.extra_column_families)?;
        let backend = Arc::new(MemoryBackend::new(&config.extra_column_families));
        MerkleStore::open(backend, config.clone())
    }

    /// Opens (or creates) the RocksDB store at `path`.
    pub fn open_rocksdb(path: &Path, config: &StoreConfig) -> Result<MerkleStore, StoreError> {
        validate_column_families(&config.extra_column_families)?;
        let tuning = rocks::RocksTuning {
            block_cache_bytes: config.rocksdb_block_cache_bytes,
            write_buffer_bytes: config.rocksdb_write_buffer_bytes,
        };
        let backend = Arc::new(RocksBackend::open(
            path,
            &config.extra_column_families,
            &tuning,
        )?);
        MerkleStore::open(backend, config.clone())
    }

    /// Opens a store over any backend holding the tree's column families
    /// (and the extra ones `config` names): rebuilds the latest tree from
    /// its leaves and checks it against the stored root, then the trees of
    /// the recent versions before it.
    pub fn open(backend: Arc<dyn Backend>, config: StoreConfig) -> Result<MerkleStore, StoreError> {
        validate_column_families(&config.extra_column_families)?;
        for name in &config.extra_column_families {
            if !backend.has_column(&Column::Extra(name.clone())) {
                return Err(StoreError::UnknownColumnFamily { name: name.clone() });
            }
        }
        match backend.get(&Column::Meta, META_FORMAT)? {
            Some(found) if found != FORMAT => {
                return Err(StoreError::FormatMismatch {
                    expected: String::from_utf8_lossy(FORMAT).into_owned(),
                    found: String::from_utf8_lossy(&found).into_owned(),
                });
            }
            Some(_) => {}
            None => {
                if backend.get(&Column::Meta, META_LATEST)?.is_some() {
                    return Err(StoreError::corrupt(
                        "meta",
                        "versions without a format marker",
                    ));
                }
                let mut batch = Batch::default();
                batch.put(Column::Meta, META_FORMAT.to_vec(), FORMAT.to_vec());
                batch.put(
                    Column::Meta,
                    META_PRUNE_NEXT.to_vec(),
                    1u64.to_be_bytes().to_vec(),
                );
                backend.write(batch)?;
            }
        }
        let latest = read_u64(&*backend, META_LATEST)?;
        let oldest = read_u64(&*backend, META_OLDEST)?.unwrap_or(0);
        let prune_next = read_u64(&*backend, META_PRUNE_NEXT)?.unwrap_or(1);
        // The counters hold `prune_next <= oldest + 1 <= latest + 1`; data
        // that breaks it would send the pruner far past the end.
        let bound = latest.map_or(Some(1), |latest| latest.checked_add(1));
        if latest.is_some_and(|latest| oldest > latest)
            || (latest.is_none() && oldest != 0)
            || bound.is_none_or(|bound| prune_next > bound)
        {
            return Err(StoreError::corrupt(
                "meta",
                format!(
                    "counters out of order: latest {latest:?}, oldest {oldest}, prune_next {prune_next}"
                ),
            ));
        }
        let mut store = MerkleStore {
            backend,
            config,
            latest,
            oldest,
            trees: BTreeMap::new(),
            prune_lock: Arc::new(Mutex::new(())),
            pruner: None,
            reaper: None,
            inline_prune_failure: Mutex::new(None),
            latest_values: Mutex::new(LatestValues::default()),
        };
        if let Some(version) = latest {
            let tree = store.load_latest_tree(version)?;
            store.trees.insert(version, tree);
            let first = store.first_in_memory(version);
            let mut current = version;
            while current > first {
                let tree = store.undo(&store.trees[&current], current)?;
                current -= 1;
                store.trees.insert(current, tree);
            }
        }
        if store.config.prune_in_background {
            store.pruner = Some(Pruner::start(
                Arc::clone(&store.backend),
                Arc::clone(&store.prune_lock),
            ));
            store.reaper = Reaper::start();
        }
        store.run_pruning()?;
        Ok(store)
    }

    /// The latest applied version, `None` before the first.
    pub fn latest_version(&self) -> Option<u64> {
        self.latest
    }

    /// The oldest version still readable, `None` before the first.
    pub fn oldest_version(&self) -> Option<u64> {
        self.latest.map(|_| self.oldest)
    }

    /// Root of the latest version; the empty tree's root (32 zero bytes)
    /// before the first.
    pub fn latest_root(&self) -> Hash {
        Hash(self.latest_tree().hash())
    }

    /// Root of `version`.
    pub fn root(&self, version: u64) -> Result<Hash, StoreError> {
        self.check_retained(version)?;
        match self.trees.get(&version) {
            Some(tree) => Ok(Hash(tree.hash())),
            None => Ok(Hash(self.read_root(version)?)),
        }
    }

    /// The value of `key` at `version`, `None` if absent.
    pub fn get(&self, version: u64, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        check_key(key)?;
        let latest = self.latest == Some(version);
        if latest && let Some(value) = self.latest_values().get(key) {
            return Ok(value.map(|value| value.to_vec()));
        }
        let tree = self.tree_at(version)?;
        let key_hash = proof::key_hash(key);
        let value = match tree.get(&key_hash) {
            Some(leaf) => Some(self.read_value(leaf)?),
            None => None,
        };
        if latest && let Some(value) = &value {
            self.latest_values().remember(key, value);
        }
        Ok(value)
    }

    /// The value of `key` at `version` with a proof against
    /// [`MerkleStore::root`] of that version: of membership if the value is
    /// `Some`, of non-membership if `None`.
    pub fn get_with_proof(
        &self,
        version: u64,
        key: &[u8],
    ) -> Result<(Option<Vec<u8>>, Proof), StoreError> {
        check_key(key)?;
        let tree = self.tree_at(version)?;
        let key_hash = proof::key_hash(key);
        let (leaf, siblings) = tree.path(&key_hash);
        let value = match leaf {
            Some(leaf) if leaf.key_hash == key_hash => Some(self.read_value(leaf)?),
            _ => None,
        };
        let proof = Proof {
            leaf: leaf.map(|leaf| ProofLeaf {
                key_hash: leaf.key_hash,
                value_hash: leaf.value_hash,
            }),
            siblings,
        };
        Ok((value, proof))
    }

    /// Applies the writes of `version` (`None` deletes) and returns its root.
    /// `version` must be `0` for the first, then `latest + 1`. On error
    /// nothing is written and the store stays at its latest version.
    pub fn apply(
        &mut self,
        version: u64,
        writes: &BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    ) -> Result<Hash, StoreError> {
        self.apply_with_extra(version, writes, &[])
    }

    /// [`MerkleStore::apply`], with `extra` writes to the node's column
    /// families in the same atomic batch (e.g. the block, its receipts and
    /// tx index entries): after a crash, either all of them or none exist.
    pub fn apply_with_extra(
        &mut self,
        version: u64,
        writes: &BTreeMap<Vec<u8>, Option<Vec<u8>>>,
        extra: &[ExtraWrite],
    ) -> Result<Hash, StoreError> {
        let prepared = self.prepare(version, writes)?;
        self.commit_version(prepared, writes, extra)
    }

    /// Writes a version built by [`MerkleStore::prepare`] from the same
    /// `writes`, with `extra` in the same batch. The two steps are apart for
    /// a caller that builds a version it may still discard: the ledger
    /// prepares a block's version while the block's signatures are being
    /// verified, and commits it only if none is bad. Nothing may have been
    /// applied in between.
    pub(crate) fn commit_version(
        &mut self,
        mut prepared: PreparedVersion,
        writes: &BTreeMap<Vec<u8>, Option<Vec<u8>>>,
        extra: &[ExtraWrite],
    ) -> Result<Hash, StoreError> {
        prepared.batch.ops.reserve(extra.len());
        self.add_extra(&mut prepared.batch, extra)?;
        self.commit(prepared, writes)
    }

    /// Writes `extra` alone, atomically, without a new version (e.g. the
    /// consensus safety record, which must reach disk before a vote leaves:
    /// pass `sync = true` for it).
    pub fn write_extra(&self, extra: &[ExtraWrite], sync: bool) -> Result<(), StoreError> {
        let mut batch = Batch {
            sync,
            ..Batch::default()
        };
        self.add_extra(&mut batch, extra)?;
        self.backend.write(batch)
    }

    /// The value under `key` in the extra column family `column_family`.
    pub fn get_extra(
        &self,
        column_family: &str,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let column = self.extra_column(column_family)?;
        self.backend.get(&column, key)
    }

    /// Up to `limit` (at most [`MAX_STORE_SCAN_ENTRIES`]) entries of an extra
    /// column family with keys `>= from`, in key order.
    pub fn scan_extra(
        &self,
        column_family: &str,
        from: &[u8],
        limit: usize,
    ) -> Result<Entries, StoreError> {
        let column = self.extra_column(column_family)?;
        self.backend
            .scan(&column, from, limit.min(MAX_STORE_SCAN_ENTRIES))
    }

    /// Makes versions below `version` unreadable and schedules their space
    /// for reclaiming. The latest version is always kept: `version` is capped
    /// at it. Never lowers the oldest version.
    pub fn prune_before(&mut self, version: u64) -> Result<(), StoreError> {
        let Some(latest) = self.latest else {
            return Ok(());
        };
        let oldest = version.min(latest);
        if oldest <= self.oldest {
            return Ok(());
        }
        let mut batch = Batch::default();
        batch.put(
            Column::Meta,
            META_OLDEST.to_vec(),
            oldest.to_be_bytes().to_vec(),
        );
        self.backend.write(batch)?;
        self.oldest = oldest;
        self.drop_old_trees();
        self.prune_after_write();
        Ok(())
    }

    /// Runs pruning to completion on the caller's thread (the background
    /// pruner may run alongside; prune steps are idempotent).
    pub fn finish_pruning(&self) -> Result<(), StoreError> {
        // Each step advances `prune_next` by one towards `oldest`, so this
        // loop ends after at most `oldest` steps.
        while prune_step(&*self.backend, &self.prune_lock)? {}
        Ok(())
    }

    /// Runs pruning to completion, then waits until the backend's background
    /// work (RocksDB flushes and compactions) has caught up: for benchmarks
    /// and tools that want to start from a quiet database, and before a
    /// planned shutdown.
    pub fn wait_for_background_work(&self) -> Result<(), StoreError> {
        self.finish_pruning()?;
        self.backend.wait_for_background_work()
    }

    /// The error that last stopped pruning (in the background or inline),
    /// if any. Pruning is retried at the next apply.
    pub fn pruner_failure(&self) -> Option<String> {
        let inline = self
            .inline_prune_failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let background = self.pruner.as_ref().and_then(|pruner| {
            pruner
                .failure
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone()
        });
        background.or(inline)
    }

    /// Checks the whole tree of `version`: every hash recomputed, the shape
    /// canonical, the root the stored one, every value read back and checked
    /// against its leaf; at the latest version also that the stored leaves
    /// are exactly the tree's. O(keys): for tests, audits and tools, not for
    /// blocks.
    pub fn check_integrity(&self, version: u64) -> Result<IntegrityReport, StoreError> {
        let tree = self.tree_at(version)?;
        let report = tree
            .check()
            .map_err(|detail| StoreError::corrupt("tree", detail))?;
        let stored = self.read_root(version)?;
        if stored != tree.hash() {
            return Err(StoreError::RootMismatch {
                version,
                stored: Hash(stored),
                computed: Hash(tree.hash()),
            });
        }
        let mut leaves = Vec::new();
        tree.leaves(&mut leaves);
        for leaf in &leaves {
            self.read_value(leaf)?;
        }
        if Some(version) == self.latest {
            let stored = self.read_leaves()?;
            if stored.len() != leaves.len() || stored.iter().zip(&leaves).any(|(a, b)| **a != **b) {
                return Err(StoreError::corrupt(
                    "leaves",
                    "the stored leaves differ from the latest tree",
                ));
            }
        }
        Ok(report)
    }

    // ---- internals ----

    /// Builds the tree and the batch of `version` from `writes`, writing
    /// nothing; [`MerkleStore::commit_version`] adds the extra writes and
    /// writes it.
    pub(crate) fn prepare(
        &self,
        version: u64,
        writes: &BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    ) -> Result<PreparedVersion, StoreError> {
        let expected = match self.latest {
            None => 0,
            Some(latest) => latest.checked_add(1).ok_or(StoreError::WrongVersion {
                expected: latest,
                got: version,
            })?,
        };
        if version != expected {
            return Err(StoreError::WrongVersion {
                expected,
                got: version,
            });
        }
        if writes.len() > MAX_STORE_WRITES_PER_VERSION {
            return Err(StoreError::TooManyWrites {
                count: writes.len(),
                max: MAX_STORE_WRITES_PER_VERSION,
            });
        }
        // Limits first, in key order, so the error reported is always the
        // same one; then the hashing, in parallel.
        for (key, value) in writes {
            check_key(key)?;
            if let Some(value) = value
                && value.len() > MAX_STORE_VALUE_BYTES
            {
                return Err(StoreError::ValueTooLarge {
                    len: value.len(),
                    max: MAX_STORE_VALUE_BYTES,
                });
            }
        }
        // Each write with its key hash and value hash, in key-hash order;
        // hashed on rayon's pool when there are enough writes to pay for
        // waking it (the tree update's own threshold).
        let mut hashed: Vec<HashedWrite<'_>> = if writes.len() >= tree::PARALLEL_OPS_MIN {
            use rayon::prelude::*;
            writes.par_iter().map(HashedWrite::new).collect()
        } else {
            writes.iter().map(HashedWrite::new).collect()
        };
        hashed.sort_unstable_by_key(|write| write.key_hash);
        if let Some(pair) = hashed
            .windows(2)
            .find(|pair| pair[0].key_hash == pair[1].key_hash)
        {
            return Err(StoreError::KeyHashCollision {
                key_hash: Hash(pair[0].key_hash),
            });
        }
        let ops: Vec<Op> = hashed
            .iter()
            .map(|write| Op {
                key_hash: write.key_hash,
                leaf: write.value.map(|(_, value_hash)| (value_hash, version)),
            })
            .collect();
        let (tree, olds) = self.latest_tree().update(&ops);

        // Sized up front: a version of tens of thousands of writes would
        // otherwise regrow (and copy) these many times over.
        let mut batch = Batch {
            ops: Vec::with_capacity(2 * hashed.len() + 4),
            sync: self.config.sync,
        };
        // `leaves` ops after all `values` ops: one run per column family.
        let mut leaves = Batch {
            ops: Vec::with_capacity(hashed.len()),
            sync: false,
        };
        let mut stale = Vec::with_capacity(olds.len() * (8 + 32));
        for (write, old) in hashed.iter().zip(&olds) {
            match (write.value, old) {
                // A rewrite of the same value, or a delete of an absent key:
                // the tree kept what it had.
                (Some((_, value_hash)), Some(old)) if old.value_hash == value_hash => continue,
                (None, None) => continue,
                (Some((value, value_hash)), _) => {
                    batch.put(
                        Column::Values,
                        value_key(version, &write.key_hash),
                        value.to_vec(),
                    );
                    leaves.put(
                        Column::Leaves,
                        write.key_hash.to_vec(),
                        leaf_record(version, &value_hash),
                    );
                }
                (None, Some(_)) => leaves.delete(Column::Leaves, write.key_hash.to_vec()),
            }
            if let Some(old) = old {
                stale.extend_from_slice(&old.value_version.to_be_bytes());
                stale.extend_from_slice(&old.key_hash);
            }
        }
        batch.ops.append(&mut leaves.ops);

        let oldest = match (self.latest, self.config.prune_window) {
            (None, _) => 0,
            (Some(_), None) => self.oldest,
            (Some(_), Some(window)) => self.oldest.max((version + 1).saturating_sub(window.max(1))),
        };
        if !stale.is_empty() {
            batch.put(Column::Meta, meta_key(META_STALE, version), stale);
        }
        batch.put(
            Column::Meta,
            meta_key(META_ROOT, version),
            tree.hash().to_vec(),
        );
        batch.put(
            Column::Meta,
            META_LATEST.to_vec(),
            version.to_be_bytes().to_vec(),
        );
        if oldest != self.oldest || self.latest.is_none() {
            batch.put(
                Column::Meta,
                META_OLDEST.to_vec(),
                oldest.to_be_bytes().to_vec(),
            );
        }
        Ok(PreparedVersion {
            version,
            tree,
            oldest,
            batch,
        })
    }

    /// Writes a prepared version (of `writes`) and makes it the latest: the
    /// one place the latest version changes, so the cache of latest values
    /// is refreshed here.
    fn commit(
        &mut self,
        prepared: PreparedVersion,
        writes: &BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    ) -> Result<Hash, StoreError> {
        let PreparedVersion {
            version,
            tree,
            oldest,
            batch,
        } = prepared;
        assert_eq!(
            Some(version),
            self.latest.map_or(Some(0), |v| v.checked_add(1))
        );
        // The cache of latest values is refreshed while the batch is written
        // (no reader can look at it meanwhile: this holds `&mut self`). If
        // the write fails, the cache is emptied, which is always correct.
        // The refresh gets a thread of its own rather than rayon's pool,
        // where in a node it could queue behind a batch of signature checks;
        // it runs inline if the version is small or no thread can start.
        let backend = &self.backend;
        let cache = &self.latest_values;
        let refresh = || {
            cache
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .refresh(writes)
        };
        let written = std::thread::scope(|scope| {
            let refreshing = if writes.len() >= tree::PARALLEL_OPS_MIN {
                std::thread::Builder::new()
                    .name("store-cache".into())
                    .spawn_scoped(scope, refresh)
                    .ok()
            } else {
                None
            };
            let written = backend.write(batch);
            match refreshing {
                Some(thread) => {
                    if let Err(panic) = thread.join() {
                        std::panic::resume_unwind(panic);
                    }
                }
                None => refresh(),
            }
            written
        });
        if let Err(error) = written {
            self.latest_values().clear();
            return Err(error);
        }
        let root = Hash(tree.hash());
        self.trees.insert(version, tree);
        self.latest = Some(version);
        self.oldest = oldest;
        self.drop_old_trees();
        tracing::debug!(height = version, %root, "state version applied");
        // The version is written: whatever pruning does now, `apply` has
        // succeeded, so a pruning failure is recorded, not returned.
        self.prune_after_write();
        Ok(root)
    }

    fn add_extra(&self, batch: &mut Batch, extra: &[ExtraWrite]) -> Result<(), StoreError> {
        if extra.len() > MAX_STORE_EXTRA_WRITES {
            return Err(StoreError::TooManyWrites {
                count: extra.len(),
                max: MAX_STORE_EXTRA_WRITES,
            });
        }
        for write in extra {
            let column = self.extra_column(&write.column_family)?;
            let len = write
                .key
                .len()
                .max(write.value.as_ref().map_or(0, Vec::len));
            if len > MAX_STORE_EXTRA_BYTES {
                return Err(StoreError::ExtraTooLarge {
                    len,
                    max: MAX_STORE_EXTRA_BYTES,
                });
            }
            match &write.value {
                Some(value) => batch.put(column, write.key.clone(), value.clone()),
                None => batch.delete(column, write.key.clone()),
            }
        }
        Ok(())
    }

    fn extra_column(&self, name: &str) -> Result<Column, StoreError> {
        if RESERVED_COLUMN_FAMILIES.contains(&name) {
            return Err(StoreError::BadColumnFamily {
                name: name.to_owned(),
                reason: "reserved for the tree",
            });
        }
        let column = Column::Extra(name.to_owned());
        if !self.backend.has_column(&column) {
            return Err(StoreError::UnknownColumnFamily {
                name: name.to_owned(),
            });
        }
        Ok(column)
    }

    /// Runs (or wakes) pruning after a write that has already landed; a
    /// failure is logged and kept for [`MerkleStore::pruner_failure`], and
    /// pruning is retried after the next write.
    fn prune_after_write(&self) {
        let result = self.run_pruning();
        let mut failure = self
            .inline_prune_failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match result {
            Ok(()) => *failure = None,
            Err(error) => {
                tracing::warn!(%error, "state pruning failed; retried after the next version");
                *failure = Some(error.to_string());
            }
        }
    }

    fn run_pruning(&self) -> Result<(), StoreError> {
        match &self.pruner {
            Some(pruner) => {
                pruner.wake();
                Ok(())
            }
            None => {
                // Inline: at most two steps per call, bounding the work a
                // commit does. An apply usually makes one more version
                // prunable, so two steps drain a backlog (after
                // `prune_before`, or a wider window before a restart) over
                // the following applies.
                for _ in 0..2 {
                    if !prune_step(&*self.backend, &self.prune_lock)? {
                        break;
                    }
                }
                Ok(())
            }
        }
    }

    fn latest_values(&self) -> std::sync::MutexGuard<'_, LatestValues> {
        // The cache holds no invariant a panicking holder could break
        // halfway: every entry is a whole value of the latest version.
        self.latest_values
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn latest_tree(&self) -> Tree {
        self.trees
            .last_key_value()
            .map(|(_, tree)| tree.clone())
            .unwrap_or_default()
    }

    /// The first version whose tree stays in memory, given the latest.
    fn first_in_memory(&self, latest: u64) -> u64 {
        let kept = self.config.versions_in_memory.max(1);
        self.oldest.max((latest + 1).saturating_sub(kept))
    }

    fn drop_old_trees(&mut self) {
        if let Some(latest) = self.latest {
            let first = self.first_in_memory(latest);
            let kept = self.trees.split_off(&first);
            let dropped = std::mem::replace(&mut self.trees, kept);
            if !dropped.is_empty() {
                // Freeing a version's own nodes (about ten per key its block
                // wrote) walks cold memory; another thread does it while this
                // one goes on: the reaper when there is one and it keeps up,
                // else a pool thread. Nothing else holds them, so the order
                // in which they are freed cannot matter.
                let dropped = match &self.reaper {
                    Some(reaper) => reaper.free(dropped),
                    None => Some(dropped),
                };
                if let Some(dropped) = dropped {
                    rayon::spawn(move || drop(dropped));
                }
            }
        }
    }

    fn check_retained(&self, version: u64) -> Result<(), StoreError> {
        if self.latest.is_none_or(|latest| version > latest) {
            return Err(StoreError::VersionMissing {
                version,
                latest: self.latest,
            });
        }
        if version < self.oldest {
            return Err(StoreError::VersionPruned {
                version,
                oldest: self.oldest,
            });
        }
        Ok(())
    }

    /// The tree of a retained `version`: from memory, or rebuilt by undoing
    /// the versions after it from the oldest tree in memory.
    fn tree_at(&self, version: u64) -> Result<Tree, StoreError> {
        self.check_retained(version)?;
        if let Some(tree) = self.trees.get(&version) {
            return Ok(tree.clone());
        }
        let Some((&first, tree)) = self.trees.first_key_value() else {
            return Err(StoreError::corrupt("trees", "no tree in memory"));
        };
        if first - version > MAX_RECONSTRUCT_VERSIONS {
            return Err(StoreError::VersionTooOld {
                version,
                in_memory_from: first,
                max: MAX_RECONSTRUCT_VERSIONS,
            });
        }
        let mut tree = tree.clone();
        let mut current = first;
        while current > version {
            tree = self.undo(&tree, current)?;
            current -= 1;
        }
        Ok(tree)
    }

    /// The tree of `version - 1`, from the tree of `version`: the keys
    /// `version` replaced or deleted (its stale list) get their earlier
    /// leaves back, the keys it inserted are deleted. Checked against the
    /// stored root of `version - 1`.
    fn undo(&self, tree: &Tree, version: u64) -> Result<Tree, StoreError> {
        let previous = version
            .checked_sub(1)
            .ok_or_else(|| StoreError::corrupt("trees", "undo of version 0"))?;
        let mut ops: BTreeMap<Hash32, Option<(Hash32, u64)>> = BTreeMap::new();
        // Keys written by `version`: deleted unless the stale list restores them.
        let prefix = version.to_be_bytes();
        let mut from = prefix.to_vec();
        loop {
            let keys =
                self.backend
                    .scan_keys(&Column::Values, &prefix, &from, MAX_STORE_SCAN_ENTRIES)?;
            for key in &keys {
                let key_hash = key
                    .get(8..)
                    .and_then(read_hash)
                    .ok_or_else(|| StoreError::corrupt("values", "key of the wrong length"))?;
                ops.insert(key_hash, None);
            }
            match keys.last() {
                Some(key) if keys.len() == MAX_STORE_SCAN_ENTRIES => {
                    from = key.clone();
                    from.push(0);
                }
                _ => break,
            }
        }
        if let Some(stale) = self
            .backend
            .get(&Column::Meta, &meta_key(META_STALE, version))?
        {
            for (old_version, key_hash) in parse_stale(&stale, version)? {
                let value = self
                    .backend
                    .get(&Column::Values, &value_key(old_version, &key_hash))?
                    .ok_or_else(|| {
                        StoreError::corrupt(
                            "values",
                            format!("value of version {old_version} missing"),
                        )
                    })?;
                ops.insert(key_hash, Some((proof::value_hash(&value), old_version)));
            }
        }
        let ops: Vec<Op> = ops
            .into_iter()
            .map(|(key_hash, leaf)| Op { key_hash, leaf })
            .collect();
        let (undone, _) = tree.update(&ops);
        let stored = self.read_root(previous)?;
        if undone.hash() != stored {
            return Err(StoreError::RootMismatch {
                version: previous,
                stored: Hash(stored),
                computed: Hash(undone.hash()),
            });
        }
        Ok(undone)
    }

    fn read_root(&self, version: u64) -> Result<Hash32, StoreError> {
        let bytes = self
            .backend
            .get(&Column::Meta, &meta_key(META_ROOT, version))?
            .ok_or_else(|| {
                StoreError::corrupt("root record", format!("version {version} missing"))
            })?;
        read_hash(&bytes)
            .ok_or_else(|| StoreError::corrupt("root record", format!("{} bytes", bytes.len())))
    }

    /// Every stored leaf, in key-hash order.
    fn read_leaves(&self) -> Result<Vec<Arc<Leaf>>, StoreError> {
        let mut leaves = Vec::new();
        let mut from = Vec::new();
        loop {
            let entries = self
                .backend
                .scan(&Column::Leaves, &from, MAX_STORE_SCAN_ENTRIES)?;
            for (key, record) in &entries {
                let key_hash = read_hash(key)
                    .ok_or_else(|| StoreError::corrupt("leaves", "key of the wrong length"))?;
                if record.len() != LEAF_RECORD_BYTES {
                    return Err(StoreError::corrupt(
                        "leaves",
                        format!("record of {} bytes", record.len()),
                    ));
                }
                let value_version = u64::from_be_bytes(read_array(&record[..8]));
                let value_hash = read_array(&record[8..]);
                leaves.push(Arc::new(Leaf::new(key_hash, value_hash, value_version)));
            }
            match entries.last() {
                Some((key, _)) if entries.len() == MAX_STORE_SCAN_ENTRIES => {
                    from = key.clone();
                    from.push(0);
                }
                _ => return Ok(leaves),
            }
        }
    }

    /// Rebuilds the tree of the latest version from the stored leaves and
    /// compares its root with the stored one.
    fn load_latest_tree(&self, version: u64) -> Result<Tree, StoreError> {
        let leaves = self.read_leaves()?;
        let tree = Tree::build(&leaves)
            .ok_or_else(|| StoreError::corrupt("leaves", "not in key-hash order"))?;
        let stored = self.read_root(version)?;
        if tree.hash() != stored {
            return Err(StoreError::RootMismatch {
                version,
                stored: Hash(stored),
                computed: Hash(tree.hash()),
            });
        }
        Ok(tree)
    }

    fn read_value(&self, leaf: &Leaf) -> Result<Vec<u8>, StoreError> {
        let value = self
            .backend
            .get(
                &Column::Values,
                &value_key(leaf.value_version, &leaf.key_hash),
            )?
            .ok_or_else(|| {
                StoreError::corrupt(
                    "value",
                    format!("value of version {} missing", leaf.value_version),
                )
            })?;
        if proof::value_hash(&value) != leaf.value_hash {
            return Err(StoreError::corrupt(
                "value",
                "does not match its leaf's value hash",
            ));
        }
        Ok(value)
    }

    /// Every value key some retained version can read (for tests of the
    /// pruner: nothing reachable is deleted, nothing unreachable is kept).
    #[cfg(test)]
    pub(crate) fn reachable_values(
        &self,
        values: &mut BTreeSet<Vec<u8>>,
    ) -> Result<(), StoreError> {
        let Some(latest) = self.latest else {
            return Ok(());
        };
        for version in self.oldest..=latest {
            let mut leaves = Vec::new();
            self.tree_at(version)?.leaves(&mut leaves);
            for leaf in leaves {
                values.insert(value_key(leaf.value_version, &leaf.key_hash));
            }
        }
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    #[cfg(test)]
    pub(crate) fn trees_in_memory(&self) -> usize {
        self.trees.len()
    }
}

/// One write of a version being prepared.
struct HashedWrite<'w> {
    key_hash: Hash32,
    value: Option<(&'w [u8], Hash32)>,
}

impl<'w> HashedWrite<'w> {
    fn new((key, value): (&'w Vec<u8>, &'w Option<Vec<u8>>)) -> Self {
        HashedWrite {
            key_hash: proof::key_hash(key),
            value: value
                .as_ref()
                .map(|value| (value.as_slice(), proof::value_hash(value))),
        }
    }
}

impl Drop for MerkleStore {
    fn drop(&mut self) {
        if let Some(pruner) = self.pruner.take() {
            pruner.stop();
        }
        if let Some(reaper) = self.reaper.take() {
            reaper.stop();
        }
    }
}

/// Key of a value in the `values` column: `version (8, big-endian) || key_hash`.
fn value_key(version: u64, key_hash: &Hash32) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + HASH_BYTES);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(key_hash);
    out
}

fn leaf_record(value_version: u64, value_hash: &Hash32) -> Vec<u8> {
    let mut out = Vec::with_capacity(LEAF_RECORD_BYTES);
    out.extend_from_slice(&value_version.to_be_bytes());
    out.extend_from_slice(value_hash);
    out
}

fn read_array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(bytes);
    out
}

fn read_hash(bytes: &[u8]) -> Option<Hash32> {
    (bytes.len() == HASH_BYTES).then(|| read_array(bytes))
}

/// The entries of the stale list of `version`.
fn parse_stale(stale: &[u8], version: u64) -> Result<Vec<(u64, Hash32)>, StoreError> {
    if !stale.len().is_multiple_of(STALE_ENTRY_BYTES) {
        return Err(StoreError::corrupt(
            "stale list",
            format!("version {version}: {} bytes", stale.len()),
        ));
    }
    Ok(stale
        .chunks_exact(STALE_ENTRY_BYTES)
        .map(|entry| {
            (
                u64::from_be_bytes(read_array(&entry[..8])),
                read_array(&entry[8..]),
            )
        })
        .collect())
}

fn check_key(key: &[u8]) -> Result<(), StoreError> {
    if key.len() > MAX_STORE_KEY_BYTES {
        return Err(StoreError::KeyTooLarge {
            len: key.len(),
            max: MAX_STORE_KEY_BYTES,
        });
    }
    Ok(())
}

fn validate_column_families(names: &[String]) -> Result<(), StoreError> {
    let mut seen = BTreeSet::new();
    for name in names {
        let bad = |reason| StoreError::BadColumnFamily {
            name: name.clone(),
            reason,
        };
        if name.is_empty() || name.len() > MAX_COLUMN_FAMILY_NAME_BYTES {
            return Err(bad("length must be 1 to 64 bytes"));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(bad("only ASCII letters, digits, '_' and '-' are allowed"));
        }
        if RESERVED_COLUMN_FAMILIES.contains(&name.as_str()) {
            return Err(bad("reserved for the tree"));
        }
        if !seen.insert(name) {
            return Err(bad("named twice"));
        }
    }
    Ok(())
}

fn meta_key(prefix: &[u8], version: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + 8);
    key.extend_from_slice(prefix);
    key.extend_from_slice(&version.to_be_bytes());
    key
}

fn read_u64(backend: &dyn Backend, key: &[u8]) -> Result<Option<u64>, StoreError> {
    match backend.get(&Column::Meta, key)? {
        None => Ok(None),
        Some(bytes) if bytes.len() == 8 => Ok(Some(u64::from_be_bytes(read_array(&bytes)))),
        Some(bytes) => Err(StoreError::corrupt(
            "meta",
            format!(
                "{:?} holds {} bytes",
                String::from_utf8_lossy(key),
                bytes.len()
            ),
        )),
    }
}

/// One step of pruning: deletes the values version `prune_next` made stale
/// (they are needed by no version at or after it, and every version before
/// it is pruned), its stale list and the root record of the version before
/// it. Returns whether there was a step to do.
fn prune_step(backend: &dyn Backend, lock: &Mutex<()>) -> Result<bool, StoreError> {
    // The lock guards no data, only the order of steps; a poisoned one is fine.
    let _serial = lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let Some(oldest) = read_u64(backend, META_OLDEST)? else {
        return Ok(false);
    };
    let next = read_u64(backend, META_PRUNE_NEXT)?.unwrap_or(1).max(1);
    if next > oldest {
        return Ok(false);
    }
    let mut batch = Batch::default();
    let stale_key = meta_key(META_STALE, next);
    if let Some(stale) = backend.get(&Column::Meta, &stale_key)? {
        for (value_version, key_hash) in parse_stale(&stale, next)? {
            // A `values` key names one version's value of one key: it is
            // put once, by that version's batch, and never rewritten.
            batch.delete_put_once(Column::Values, value_key(value_version, &key_hash));
        }
        batch.delete(Column::Meta, stale_key);
    }
    batch.delete(Column::Meta, meta_key(META_ROOT, next - 1));
    let after = next
        .checked_add(1)
        .ok_or_else(|| StoreError::corrupt("meta", "prune_next at the largest version"))?;
    batch.put(
        Column::Meta,
        META_PRUNE_NEXT.to_vec(),
        after.to_be_bytes().to_vec(),
    );
    backend.write(batch)?;
    tracing::trace!(height = next, "pruned state made stale by this version");
    Ok(true)
}

/// The background pruner: a thread that runs prune steps until caught up
/// each time an apply wakes it.
#[derive(Debug)]
struct Pruner {
    wake: Option<SyncSender<()>>,
    stop: Arc<AtomicBool>,
    failure: Arc<Mutex<Option<String>>>,
    handle: Option<JoinHandle<()>>,
}

impl Pruner {
    fn start(backend: Arc<dyn Backend>, lock: Arc<Mutex<()>>) -> Pruner {
        // One pending wake is enough: the thread prunes until caught up
        // after every wake, so further wakes while one is pending add nothing.
        let (wake, wakes) = sync_channel(1);
        let stop = Arc::new(AtomicBool::new(false));
        let failure = Arc::new(Mutex::new(None));
        let handle = {
            let stop = Arc::clone(&stop);
            let failure = Arc::clone(&failure);
            std::thread::Builder::new()
                .name("state-pruner".to_owned())
                .spawn(move || prune_loop(&*backend, &lock, &wakes, &stop, &failure))
        };
        let handle = match handle {
            Ok(handle) => Some(handle),
            Err(error) => {
                // Without a thread the store still works; it just does not
                // reclaim space until restarted.
                tracing::warn!(%error, "state pruner thread did not start");
                None
            }
        };
        Pruner {
            wake: Some(wake),
            stop,
            failure,
            handle,
        }
    }

    fn wake(&self) {
        if let Some(wake) = &self.wake {
            match wake.try_send(()) {
                Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
            }
        }
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.wake = None;
        if let Some(handle) = self.handle.take()
            && handle.join().is_err()
        {
            tracing::warn!("state pruner thread panicked");
        }
    }
}

fn prune_loop(
    backend: &dyn Backend,
    lock: &Mutex<()>,
    wakes: &Receiver<()>,
    stop: &AtomicBool,
    failure: &Mutex<Option<String>>,
) {
    lower_thread_priority("state-pruner");
    while wakes.recv().is_ok() {
        while !stop.load(Ordering::Relaxed) {
            match prune_step(backend, lock) {
                Ok(true) => {}
                Ok(false) => break,
                Err(error) => {
                    tracing::warn!(%error, "state pruning failed");
                    *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.to_string());
                    break;
                }
            }
        }
        if stop.load(Ordering::Relaxed) {
            return;
        }
    }
}

/// The thread that frees old versions' trees, at the lowest CPU priority:
/// the work is a walk of cold memory (session 13 measured it at ~5% of a
/// devnet's CPU at half load) that nothing waits for, so commits, votes and
/// verification go first. Bounded by [`MAX_TREES_AWAITING_FREE`].
#[derive(Debug)]
struct Reaper {
    trees: SyncSender<BTreeMap<u64, Tree>>,
    handle: JoinHandle<()>,
}

impl Reaper {
    /// `None` if the thread could not start (trees are then freed on the
    /// rayon pool, as without a reaper).
    fn start() -> Option<Reaper> {
        let (trees, queue) = sync_channel::<BTreeMap<u64, Tree>>(MAX_TREES_AWAITING_FREE);
        let spawned = std::thread::Builder::new()
            .name("state-reaper".to_owned())
            .spawn(move || {
                lower_thread_priority("state-reaper");
                // Each received map is dropped at the end of its iteration;
                // the loop ends when the store drops the sender.
                for dropped in queue {
                    drop(dropped);
                }
            });
        match spawned {
            Ok(handle) => Some(Reaper { trees, handle }),
            Err(error) => {
                tracing::warn!(%error, "state reaper thread did not start");
                None
            }
        }
    }

    /// Queues `dropped` for freeing; gives it back if the queue is full (or
    /// the thread gone), for the caller to free some other way.
    fn free(&self, dropped: BTreeMap<u64, Tree>) -> Option<BTreeMap<u64, Tree>> {
        match self.trees.try_send(dropped) {
            Ok(()) => None,
            Err(TrySendError::Full(dropped) | TrySendError::Disconnected(dropped)) => Some(dropped),
        }
    }

    /// Frees what is queued and ends the thread.
    fn stop(self) {
        let Reaper { trees, handle } = self;
        // The thread's loop ends once the queue is drained and closed.
        drop(trees);
        if handle.join().is_err() {
            tracing::warn!("state reaper thread panicked");
        }
    }
}

/// Moves the calling thread to the lowest CPU priority (nice 19), as
/// RocksDB's background threads are (`rocks.rs`). Linux sets the nice value
/// of a single thread by its thread id; elsewhere this does nothing. A
/// failure is logged: the thread then works at normal priority.
fn lower_thread_priority(thread: &str) {
    #[cfg(target_os = "linux")]
    if let Err(error) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19) {
        tracing::warn!(%error, thread, "could not lower the thread's CPU priority");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = thread;
}
