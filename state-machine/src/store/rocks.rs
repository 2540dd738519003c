//! The RocksDB backend.
//!
//! Column families: `leaves` (the latest version's leaves, by key hash),
//! `values` (leaf values), `meta` (roots, stale lists, counters) and any
//! extra ones the node names. Keys of `values` start with the big-endian
//! version that wrote them, so each block's values append at the end of the
//! key space: memtable flushes produce files that do not overlap older ones,
//! and compaction mostly moves files instead of merging them.

use std::collections::BTreeSet;
use std::path::Path;

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, DBCompressionType, Env, MemtableFactory,
    Options, WriteBatch, WriteOptions,
};

use super::StoreError;
use super::backend::{Backend, Batch, Column, Entries};

/// RocksDB tuning the store exposes; see [`super::StoreConfig`].
#[derive(Clone, Debug)]
pub(crate) struct RocksTuning {
    pub block_cache_bytes: usize,
    pub write_buffer_bytes: usize,
}

/// A RocksDB database holding the tree's column families and extra ones.
#[derive(Debug)]
pub struct RocksBackend {
    db: DB,
    columns: BTreeSet<String>,
}

impl RocksBackend {
    pub(crate) fn open(
        path: &Path,
        extra: &[String],
        tuning: &RocksTuning,
    ) -> Result<RocksBackend, StoreError> {
        let mut db_options = Options::default();
        db_options.create_if_missing(true);
        db_options.create_missing_column_families(true);
        db_options.set_max_background_jobs(2);
        // Flushes and compactions run at the lowest CPU priority (nice 19):
        // they are bursty (a 64 MiB memtable of `leaves` takes ~0.9 s of CPU
        // to sort and write) and nothing waits on them unless memtables pile
        // up, when RocksDB's own write stall slows the writer until they
        // catch up. Where the machine is busy, consensus and execution come
        // first (BENCHMARKS.md, session 13).
        let mut env = Env::new()?;
        env.lower_thread_pool_cpu_priority();
        env.lower_high_priority_thread_pool_cpu_priority();
        db_options.set_env(&env);
        // One writer (the committing thread) at a time; the vector memtable
        // of `leaves` (below) needs this off.
        db_options.set_allow_concurrent_memtable_write(false);

        let cache = Cache::new_lru_cache(tuning.block_cache_bytes);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_bloom_filter(10.0, false);
        table.set_cache_index_and_filter_blocks(true);

        let column_options = |compress: bool| {
            let mut options = Options::default();
            options.set_block_based_table_factory(&table);
            options.set_write_buffer_size(tuning.write_buffer_bytes);
            // Hashes do not compress; values and extra data (blocks) may.
            options.set_compression_type(if compress {
                DBCompressionType::Lz4
            } else {
                DBCompressionType::None
            });
            options
        };

        let mut names: BTreeSet<String> = ["leaves", "values", "meta"]
            .iter()
            .map(|name| (*name).to_owned())
            .collect();
        names.extend(extra.iter().cloned());
        // RocksDB refuses to open a database without naming every column
        // family it has, so column families from earlier runs are opened too.
        if path.join("CURRENT").exists() {
            names.extend(DB::list_cf(&db_options, path)?);
        }
        names.remove("default");

        let descriptors: Vec<ColumnFamilyDescriptor> = names
            .iter()
            .map(|name| {
                let mut options = column_options(name != "leaves");
                if name == "leaves" {
                    // `leaves` is written by every version and read only by
                    // scans: at open (after recovery has flushed the
                    // memtables, RocksDB's default) and by integrity checks.
                    // An unsorted vector memtable takes each insert in O(1),
                    // where a skip list pays a search of cold memory per key;
                    // a scan sorts a copy of it once per page instead.
                    options.set_memtable_factory(MemtableFactory::Vector);
                } else {
                    // A bloom filter over the memtable's whole keys: a point
                    // read of an absent key (the node looks up each committed
                    // transaction's id in its tx index) skips the skip-list
                    // search.
                    options.set_memtable_whole_key_filtering(true);
                    options.set_memtable_prefix_bloom_ratio(0.02);
                }
                ColumnFamilyDescriptor::new(name, options)
            })
            .collect();
        let db = DB::open_cf_descriptors(&db_options, path, descriptors)?;
        Ok(RocksBackend { db, columns: names })
    }

    fn handle(&self, column: &Column) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.db
            .cf_handle(column.name())
            .ok_or_else(|| StoreError::UnknownColumnFamily {
                name: column.name().to_owned(),
            })
    }
}

impl Backend for RocksBackend {
    fn get(&self, column: &Column, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let handle = self.handle(column)?;
        Ok(self.db.get_pinned_cf(handle, key)?.map(|v| v.to_vec()))
    }

    fn write(&self, batch: Batch) -> Result<(), StoreError> {
        // RocksDB's record of an op: a tag, the column family id, two
        // varint lengths, the key and the value; 16 bytes covers the rest.
        let bytes: usize = batch
            .ops
            .iter()
            .map(|op| 16 + op.key.len() + op.value.as_ref().map_or(0, Vec::len))
            .sum();
        let mut rocks_batch = WriteBatch::with_capacity_bytes(bytes);
        // A version's ops come in runs of one column family: look each
        // handle up once per run, not once per op.
        let mut current: Option<(&Column, &rocksdb::ColumnFamily)> = None;
        for op in &batch.ops {
            let handle = match current {
                Some((column, handle)) if *column == op.column => handle,
                _ => {
                    let handle = self.handle(&op.column)?;
                    current = Some((&op.column, handle));
                    handle
                }
            };
            match &op.value {
                Some(value) => rocks_batch.put_cf(handle, &op.key, value),
                None if op.put_once => rocks_batch.single_delete_cf(handle, &op.key),
                None => rocks_batch.delete_cf(handle, &op.key),
            }
        }
        let mut options = WriteOptions::default();
        options.set_sync(batch.sync);
        self.db.write_opt(rocks_batch, &options)?;
        Ok(())
    }

    fn scan(&self, column: &Column, from: &[u8], limit: usize) -> Result<Entries, StoreError> {
        let handle = self.handle(column)?;
        let mode = rocksdb::IteratorMode::From(from, rocksdb::Direction::Forward);
        let mut out = Vec::new();
        for entry in self.db.iterator_cf(handle, mode).take(limit) {
            let (key, value) = entry?;
            out.push((key.to_vec(), value.to_vec()));
        }
        Ok(out)
    }

    fn scan_keys(
        &self,
        column: &Column,
        prefix: &[u8],
        from: &[u8],
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let handle = self.handle(column)?;
        let mut options = rocksdb::ReadOptions::default();
        // Stop at the end of the prefix instead of reading past it.
        if let Some(end) = prefix_end(prefix) {
            options.set_iterate_upper_bound(end);
        }
        let start = from.max(prefix);
        let mode = rocksdb::IteratorMode::From(start, rocksdb::Direction::Forward);
        let mut out = Vec::new();
        for entry in self.db.iterator_cf_opt(handle, options, mode) {
            let (key, _) = entry?;
            if !key.starts_with(prefix) || out.len() == limit {
                break;
            }
            out.push(key.to_vec());
        }
        Ok(out)
    }

    fn has_column(&self, column: &Column) -> bool {
        self.columns.contains(column.name())
    }

    fn wait_for_background_work(&self) -> Result<(), StoreError> {
        // Flushes and compactions already scheduled; the memtables are left
        // as they are (flushing them would start more work).
        let mut options = rocksdb::WaitForCompactOptions::default();
        options.set_flush(false);
        self.db.wait_for_compact(&options)?;
        Ok(())
    }
}

/// The first key after every key that starts with `prefix`, if any (none
/// when the prefix is all `0xff` bytes or empty).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}
