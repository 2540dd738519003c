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
//! # Versions
//!
//! Each committed block is a version: version `h` is the state after block
//! `h`. [`MerkleStore::apply`] takes the next version (`0` first, then
//! `latest + 1`) and the block's writes, updates only the paths of the
//! written keys (O(writes × log n) hashes) and writes everything of the
//! version in one atomic batch. Reads and proofs work at any retained
//! version. Nothing is ever overwritten: a version writes new pages and
//! values under keys that start with its own number, so older versions stay
//! readable until they are pruned.
//!
//! # Pruning
//!
//! With [`StoreConfig::prune_window`] set to `w`, applying version `v` makes
//! versions below `v + 1 - w` unreadable at once (in the version's own
//! batch); [`MerkleStore::prune_before`] does the same by hand. The space is
//! reclaimed afterwards: each version records the pages and values it
//! replaced (its stale list), and the pruner deletes, version by version, the
//! entries that stopped being needed before the oldest retained version. The
//! pruner runs on a thread of its own ([`StoreConfig::prune_in_background`],
//! the default for RocksDB) or in bounded steps after each apply (the
//! default in memory, which keeps the simulator single-threaded). Either
//! way a commit never waits for a whole prune; each prune step is one atomic
//! batch and replaying one is harmless, so a crash mid-prune only leaves work
//! for the next start.
//!
//! # Storage
//!
//! One [`Backend`] trait, two backends storing exactly the same bytes:
//! [`MemoryBackend`] and [`RocksBackend`]. Column families: `nodes` (pages
//! of four tree levels, keyed by `version || depth || path`), `values`
//! (keyed by `version || key_hash`), `meta` (roots, stale lists, counters).
//! A version's writes, and any extra writes given with it, land in one
//! `WriteBatch`: a crash between batches leaves the store at the last
//! complete version. On open the store recomputes the root page of the
//! latest version from what it reads back and compares it with the stored
//! root. Every page read back is checked for structure and against the hash
//! its parent holds; every value read back against its leaf's value hash.
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
//! in key-hash order, there is no clock and no randomness, and the page
//! cache is only probed, never iterated.
//!
//! # Concurrency
//!
//! Reads take `&self` and may run on several threads; [`MerkleStore::apply`]
//! takes `&mut self`. A reader that needs a version while another thread
//! applies should share the store behind a lock.

mod backend;
mod cache;
mod error;
mod page;
pub mod proof;
mod rocks;
mod update;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
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

use crate::limits::{
    MAX_COLUMN_FAMILY_NAME_BYTES, MAX_STORE_EXTRA_BYTES, MAX_STORE_EXTRA_WRITES,
    MAX_STORE_KEY_BYTES, MAX_STORE_SCAN_ENTRIES, MAX_STORE_VALUE_BYTES,
    MAX_STORE_WRITES_PER_VERSION,
};
use cache::PageCache;
use page::{NodeKey, Page, Slot, decode_root, encode_root, read_array, value_key};
use update::{Op, Update, root_hash};

/// Format marker kept in `meta`; a store written in another layout is refused.
const FORMAT: &[u8] = b"commons-smt/v1/page-levels-4";

const META_FORMAT: &[u8] = b"format";
const META_LATEST: &[u8] = b"latest";
const META_OLDEST: &[u8] = b"oldest";
const META_PRUNE_NEXT: &[u8] = b"prune_next";
const META_ROOT: &[u8] = b"root/";
const META_STALE: &[u8] = b"stale/";

const STALE_NODE: u8 = 0;
const STALE_VALUE: u8 = 1;

/// How a store is opened.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Versions kept readable: after applying `v`, versions below
    /// `v + 1 - prune_window` are pruned. `None` keeps every version.
    /// `Some(0)` is treated as `Some(1)`: the latest version is always kept.
    pub prune_window: Option<u64>,
    /// Decoded pages kept in memory (about 2.5 KiB each). The upper levels of
    /// the tree are read by every block; 16384 pages hold the top four
    /// page levels of a tree of several million keys.
    pub page_cache_pages: usize,
    /// Column families the node stores beside the tree (e.g. `blocks`,
    /// `consensus`, `receipts`, `txindex`). Names: 1 to 64 bytes of ASCII
    /// letters, digits, `_` or `-`, none of [`RESERVED_COLUMN_FAMILIES`].
    pub extra_column_families: Vec<String>,
    /// Fsync every version's batch before `apply` returns. Without it a
    /// process crash loses nothing (RocksDB's write-ahead log is written
    /// before `apply` returns), a machine crash may lose the last versions.
    pub sync: bool,
    /// Prune on a thread of the store's own instead of in steps after each
    /// apply.
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
            page_cache_pages: 16_384,
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

/// What [`MerkleStore::check_integrity`] walked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IntegrityReport {
    pub leaves: u64,
    pub pages: u64,
}

/// The versioned Merkle state store. See the module doc.
#[derive(Debug)]
pub struct MerkleStore {
    backend: Arc<dyn Backend>,
    cache: Mutex<PageCache>,
    config: StoreConfig,
    latest: Option<u64>,
    latest_root: Slot,
    oldest: u64,
    /// Held for each prune step, so the background pruner and
    /// `finish_pruning` never interleave their steps.
    prune_lock: Arc<Mutex<()>>,
    pruner: Option<Pruner>,
}

/// A version's batch, built but not yet written.
#[derive(Debug)]
pub(crate) struct PreparedVersion {
    version: u64,
    root: Slot,
    oldest: u64,
    batch: Batch,
    new_pages: Vec<(NodeKey, Arc<Page>)>,
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
    /// pruning, cache size; the RocksDB fields are ignored).
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
    /// (and the extra ones `config` names).
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
        let mut store = MerkleStore {
            cache: Mutex::new(PageCache::new(config.page_cache_pages)),
            backend,
            config,
            latest,
            latest_root: Slot::Empty,
            oldest,
            prune_lock: Arc::new(Mutex::new(())),
            pruner: None,
        };
        if let Some(version) = latest {
            if oldest > version {
                return Err(StoreError::corrupt(
                    "meta",
                    format!("oldest version {oldest} above latest {version}"),
                ));
            }
            let root = store.read_root(version)?;
            store.check_root_page(version, &root)?;
            store.latest_root = root;
        }
        if store.config.prune_in_background {
            store.pruner = Some(Pruner::start(
                Arc::clone(&store.backend),
                Arc::clone(&store.prune_lock),
            ));
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
        Hash(root_hash(&self.latest_root))
    }

    /// Root of `version`.
    pub fn root(&self, version: u64) -> Result<Hash, StoreError> {
        Ok(Hash(root_hash(&self.root_slot(version)?)))
    }

    /// The value of `key` at `version`, `None` if absent.
    pub fn get(&self, version: u64, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        check_key(key)?;
        let root = self.root_slot(version)?;
        let key_hash = proof::key_hash(key);
        let (leaf, _) = self.walk(root, &key_hash, false)?;
        match leaf {
            Some(leaf) if leaf.key_hash == key_hash => Ok(Some(self.read_value(&leaf)?)),
            _ => Ok(None),
        }
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
        let root = self.root_slot(version)?;
        let key_hash = proof::key_hash(key);
        let (leaf, siblings) = self.walk(root, &key_hash, true)?;
        let value = match leaf {
            Some(leaf) if leaf.key_hash == key_hash => Some(self.read_value(&leaf)?),
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
        let prepared = self.prepare(version, writes, extra)?;
        self.commit(prepared)
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
        self.run_pruning()
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

    /// The error that stopped the background pruner, if any. Pruning is
    /// retried at the next apply.
    pub fn pruner_failure(&self) -> Option<String> {
        let pruner = self.pruner.as_ref()?;
        pruner
            .failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Walks the whole tree of `version`, recomputing every hash and reading
    /// every value back. O(keys): for tests, audits and tools, not for blocks.
    pub fn check_integrity(&self, version: u64) -> Result<IntegrityReport, StoreError> {
        let mut report = IntegrityReport::default();
        let root = self.root_slot(version)?;
        self.visit(&root, 0, &[0; 32], &mut report, &mut |_| {})?;
        Ok(report)
    }

    // ---- internals ----

    pub(crate) fn prepare(
        &self,
        version: u64,
        writes: &BTreeMap<Vec<u8>, Option<Vec<u8>>>,
        extra: &[ExtraWrite],
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
        let mut ops: Vec<Op<'_>> = {
            use rayon::prelude::*;
            writes
                .par_iter()
                .map(|(key, value)| Op {
                    key_hash: proof::key_hash(key),
                    value: value
                        .as_ref()
                        .map(|value| (value.as_slice(), proof::value_hash(value))),
                })
                .collect()
        };
        ops.sort_unstable_by_key(|op| op.key_hash);
        if let Some(pair) = ops
            .windows(2)
            .find(|pair| pair[0].key_hash == pair[1].key_hash)
        {
            return Err(StoreError::KeyHashCollision {
                key_hash: Hash(pair[0].key_hash),
            });
        }

        let mut update = Update::new(self, version);
        let root = update.run(self.latest_root, &ops)?;

        let oldest = match (self.latest, self.config.prune_window) {
            (None, _) => 0,
            (Some(_), None) => self.oldest,
            (Some(_), Some(window)) => self.oldest.max((version + 1).saturating_sub(window.max(1))),
        };

        let mut batch = Batch {
            sync: self.config.sync,
            ..Batch::default()
        };
        for (key, page) in &update.new_pages {
            batch.put(Column::Nodes, key.encode(), page.encode());
        }
        for (key_hash, value) in &update.new_values {
            batch.put(Column::Values, value_key(version, key_hash), value.to_vec());
        }
        if !update.stale_nodes.is_empty() || !update.stale_values.is_empty() {
            let mut stale =
                Vec::with_capacity(update.stale_nodes.len() * 44 + update.stale_values.len() * 42);
            for node in &update.stale_nodes {
                push_stale(&mut stale, STALE_NODE, &node.encode());
            }
            for (value_version, key_hash) in &update.stale_values {
                push_stale(
                    &mut stale,
                    STALE_VALUE,
                    &value_key(*value_version, key_hash),
                );
            }
            batch.put(Column::Meta, meta_key(META_STALE, version), stale);
        }
        batch.put(
            Column::Meta,
            meta_key(META_ROOT, version),
            encode_root(&root),
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
        self.add_extra(&mut batch, extra)?;
        let new_pages = update.new_pages;
        Ok(PreparedVersion {
            version,
            root,
            oldest,
            batch,
            new_pages,
        })
    }

    pub(crate) fn commit(&mut self, prepared: PreparedVersion) -> Result<Hash, StoreError> {
        let PreparedVersion {
            version,
            root,
            oldest,
            batch,
            new_pages,
        } = prepared;
        assert_eq!(
            Some(version),
            self.latest.map_or(Some(0), |v| v.checked_add(1))
        );
        self.backend.write(batch)?;
        {
            let mut cache = self.lock_cache();
            for (key, page) in new_pages {
                cache.insert(key, page);
            }
        }
        self.latest = Some(version);
        self.latest_root = root;
        self.oldest = oldest;
        tracing::debug!(height = version, root = %Hash(root_hash(&root)), "state version applied");
        self.run_pruning()?;
        Ok(Hash(root_hash(&root)))
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

    fn run_pruning(&self) -> Result<(), StoreError> {
        match &self.pruner {
            Some(pruner) => {
                pruner.wake();
                Ok(())
            }
            None => {
                // Inline: at most two steps per call. Each apply makes at
                // most one more version prunable, so two steps catch up on
                // any backlog while bounding the work a commit does.
                for _ in 0..2 {
                    if !prune_step(&*self.backend, &self.prune_lock)? {
                        break;
                    }
                }
                Ok(())
            }
        }
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, PageCache> {
        // The cache holds only immutable decoded pages; a panic elsewhere
        // cannot leave it inconsistent, so a poisoned lock is still usable.
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn root_slot(&self, version: u64) -> Result<Slot, StoreError> {
        let Some(latest) = self.latest.filter(|latest| version <= *latest) else {
            return Err(StoreError::VersionMissing {
                version,
                latest: self.latest,
            });
        };
        if version < self.oldest {
            return Err(StoreError::VersionPruned {
                version,
                oldest: self.oldest,
            });
        }
        if version == latest {
            return Ok(self.latest_root);
        }
        self.read_root(version)
    }

    fn read_root(&self, version: u64) -> Result<Slot, StoreError> {
        let bytes = self
            .backend
            .get(&Column::Meta, &meta_key(META_ROOT, version))?
            .ok_or_else(|| {
                StoreError::corrupt("root record", format!("version {version} missing"))
            })?;
        decode_root(&bytes)
    }

    /// Recomputes the root page of `version` from its slots and compares it
    /// with the stored root hash.
    fn check_root_page(&self, version: u64, root: &Slot) -> Result<(), StoreError> {
        let Slot::Child {
            hash,
            version: page_version,
        } = *root
        else {
            return Ok(());
        };
        let key = NodeKey::on_path(page_version, 0, &[0; 32]);
        let bytes = self
            .backend
            .get(&Column::Nodes, &key.encode())?
            .ok_or_else(|| StoreError::corrupt("page", format!("root page {key:?} missing")))?;
        let page = Page::decode(&key, &bytes)?;
        let computed = page.verify_hashes(&key)?;
        if computed != hash {
            return Err(StoreError::RootMismatch {
                version,
                stored: Hash(hash),
                computed: Hash(computed),
            });
        }
        Ok(())
    }

    /// The page under `key`, which its parent says hashes to `expected`.
    pub(crate) fn load_page(
        &self,
        key: &NodeKey,
        expected: &[u8; 32],
    ) -> Result<Arc<Page>, StoreError> {
        let cached = self.lock_cache().get(key);
        let page = match cached {
            Some(page) => page,
            None => {
                let bytes = self
                    .backend
                    .get(&Column::Nodes, &key.encode())?
                    .ok_or_else(|| StoreError::corrupt("page", format!("{key:?} missing")))?;
                let page = Arc::new(Page::decode(key, &bytes)?);
                self.lock_cache().insert(*key, Arc::clone(&page));
                page
            }
        };
        if page.root_hash() != *expected {
            return Err(StoreError::corrupt(
                "page",
                format!("{key:?} does not hash to what its parent holds"),
            ));
        }
        Ok(page)
    }

    /// Follows the path of `key_hash` from `root` to where it ends (a leaf
    /// or an empty subtree), collecting sibling hashes if asked.
    fn walk(
        &self,
        root: Slot,
        key_hash: &[u8; 32],
        with_siblings: bool,
    ) -> Result<(Option<page::LeafEntry>, Vec<[u8; 32]>), StoreError> {
        let mut siblings = Vec::new();
        let mut current = root;
        let mut depth = 0;
        // Each page moves the walk at least one level down (a page's root is
        // internal), so it ends within 256 levels.
        loop {
            match current {
                Slot::Empty => return Ok((None, siblings)),
                Slot::Leaf(leaf) => return Ok((Some(leaf), siblings)),
                Slot::Child { hash, version } => {
                    let key = NodeKey::on_path(version, depth, key_hash);
                    let page = self.load_page(&key, &hash)?;
                    let mut index = 0;
                    while let Slot::Internal(_) = page.slots[index] {
                        let (next, sibling) = if proof::bit(key_hash, depth) {
                            (2 * index + 2, 2 * index + 1)
                        } else {
                            (2 * index + 1, 2 * index + 2)
                        };
                        if with_siblings {
                            siblings.push(page.slots[sibling].hash());
                        }
                        index = next;
                        depth += 1;
                    }
                    current = page.slots[index];
                }
                Slot::Absent | Slot::Internal(_) => {
                    return Err(StoreError::corrupt(
                        "tree",
                        format!("walk reached {current:?}"),
                    ));
                }
            }
        }
    }

    fn read_value(&self, leaf: &page::LeafEntry) -> Result<Vec<u8>, StoreError> {
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

    /// Visits the subtree `slot` at page depth `depth` on path `prefix`,
    /// recomputing hashes and reading values; `on_page` sees every page key.
    fn visit(
        &self,
        slot: &Slot,
        depth: usize,
        prefix: &[u8; 32],
        report: &mut IntegrityReport,
        on_page: &mut dyn FnMut(NodeKey),
    ) -> Result<(), StoreError> {
        match *slot {
            Slot::Empty => Ok(()),
            Slot::Leaf(leaf) => {
                if !proof::shares_prefix(&leaf.key_hash, prefix, depth) {
                    return Err(StoreError::corrupt("tree", "leaf off its path"));
                }
                self.read_value(&leaf)?;
                report.leaves += 1;
                Ok(())
            }
            Slot::Child { hash, version } => {
                let key = NodeKey::on_path(version, depth, prefix);
                let page = self.load_page(&key, &hash)?;
                if page.verify_hashes(&key)? != hash {
                    return Err(StoreError::corrupt("page", format!("{key:?} hash")));
                }
                report.pages += 1;
                on_page(key);
                for (index, slot) in page.slots.iter().enumerate() {
                    let is_bottom = page::slot_depth(index) == page::PAGE_LEVELS;
                    let descend = match slot {
                        Slot::Leaf(_) => true,
                        Slot::Child { .. } => is_bottom,
                        _ => false,
                    };
                    if descend {
                        let slot_prefix = slot_path(prefix, depth, index);
                        self.visit(
                            slot,
                            depth + page::slot_depth(index),
                            &slot_prefix,
                            report,
                            on_page,
                        )?;
                    }
                }
                Ok(())
            }
            Slot::Absent | Slot::Internal(_) => Err(StoreError::corrupt(
                "tree",
                format!("visit reached {slot:?}"),
            )),
        }
    }

    /// Every page and value key reachable from `version` (for tests of the
    /// pruner: nothing reachable is deleted, nothing unreachable is kept).
    #[cfg(test)]
    pub(crate) fn reachable(
        &self,
        version: u64,
        pages: &mut BTreeSet<Vec<u8>>,
        values: &mut BTreeSet<Vec<u8>>,
    ) -> Result<(), StoreError> {
        let root = self.root_slot(version)?;
        let mut report = IntegrityReport::default();
        self.visit(&root, 0, &[0; 32], &mut report, &mut |key| {
            pages.insert(key.encode());
        })?;
        // Values: walk leaves again through the pages collected.
        let mut leaves = Vec::new();
        self.collect_leaves(&root, 0, &[0; 32], &mut leaves)?;
        for leaf in leaves {
            values.insert(value_key(leaf.value_version, &leaf.key_hash));
        }
        Ok(())
    }

    #[cfg(test)]
    fn collect_leaves(
        &self,
        slot: &Slot,
        depth: usize,
        prefix: &[u8; 32],
        out: &mut Vec<page::LeafEntry>,
    ) -> Result<(), StoreError> {
        match *slot {
            Slot::Leaf(leaf) => out.push(leaf),
            Slot::Child { hash, version } => {
                let key = NodeKey::on_path(version, depth, prefix);
                let page = self.load_page(&key, &hash)?;
                for (index, slot) in page.slots.iter().enumerate() {
                    let is_bottom = page::slot_depth(index) == page::PAGE_LEVELS;
                    if matches!(slot, Slot::Leaf(_))
                        || (is_bottom && matches!(slot, Slot::Child { .. }))
                    {
                        let slot_prefix = slot_path(prefix, depth, index);
                        self.collect_leaves(
                            slot,
                            depth + page::slot_depth(index),
                            &slot_prefix,
                            out,
                        )?;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    #[cfg(test)]
    pub(crate) fn cached_pages(&self) -> usize {
        self.lock_cache().len()
    }
}

impl Drop for MerkleStore {
    fn drop(&mut self) {
        if let Some(pruner) = self.pruner.take() {
            pruner.stop();
        }
    }
}

/// `prefix` (its first `depth` bits) extended by the path from a page's root
/// to slot `index`.
fn slot_path(prefix: &[u8; 32], depth: usize, index: usize) -> [u8; 32] {
    let levels = page::slot_depth(index);
    let path = index + 1;
    let mut out = page::truncate(prefix, depth);
    for level in 0..levels {
        if (path >> (levels - 1 - level)) & 1 == 1 {
            let bit = depth + level;
            out[bit / 8] |= 0x80 >> (bit % 8);
        }
    }
    out
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

fn push_stale(out: &mut Vec<u8>, tag: u8, key: &[u8]) {
    assert!(key.len() <= usize::from(u8::MAX));
    out.push(tag);
    out.push(key.len() as u8);
    out.extend_from_slice(key);
}

/// One step of pruning: deletes what version `prune_next` made stale (it is
/// needed by no version at or after it, and every version before it is
/// pruned) and the root record of the version before it. Returns whether
/// there was a step to do.
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
        let mut rest = stale.as_slice();
        while !rest.is_empty() {
            let [tag, len, tail @ ..] = rest else {
                return Err(StoreError::corrupt("stale list", format!("version {next}")));
            };
            let len = usize::from(*len);
            if tail.len() < len {
                return Err(StoreError::corrupt("stale list", format!("version {next}")));
            }
            let column = match *tag {
                STALE_NODE => Column::Nodes,
                STALE_VALUE => Column::Values,
                _ => return Err(StoreError::corrupt("stale list", format!("tag {tag}"))),
            };
            batch.delete(column, tail[..len].to_vec());
            rest = &tail[len..];
        }
        batch.delete(Column::Meta, stale_key);
    }
    batch.delete(Column::Meta, meta_key(META_ROOT, next - 1));
    batch.put(
        Column::Meta,
        META_PRUNE_NEXT.to_vec(),
        (next + 1).to_be_bytes().to_vec(),
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
