//! Storage backends: an ordered key-value store with column families and
//! atomic batches. The tree logic (in `tree` and the store) is written once
//! against [`Backend`]; both backends store exactly the same bytes, so they
//! give identical roots by construction, and the tests check it.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use std::sync::RwLock;

use super::StoreError;

/// A column family. `Leaves`, `Values` and `Meta` belong to the tree; `Extra`
/// names one the node asked for at open (blocks, receipts, ...).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Column {
    Leaves,
    Values,
    Meta,
    Extra(String),
}

impl Column {
    /// Name of the column family on disk.
    pub fn name(&self) -> &str {
        match self {
            Column::Leaves => "leaves",
            Column::Values => "values",
            Column::Meta => "meta",
            Column::Extra(name) => name,
        }
    }
}

/// Column families the tree owns or owned in an earlier format (`nodes`);
/// an extra column family may not use these names (nor RocksDB's "default").
pub const RESERVED_COLUMN_FAMILIES: [&str; 5] = ["leaves", "values", "meta", "nodes", "default"];

/// Key-value pairs in key order, as a scan returns them.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// One write of a batch: `None` deletes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchOp {
    pub column: Column,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
    /// Only for a delete: the key was put exactly once and never
    /// overwritten, so a backend may let the put and the delete cancel out
    /// when they meet (RocksDB's `SingleDelete`) instead of carrying a
    /// tombstone down to its last level.
    pub put_once: bool,
}

/// Writes that land together or not at all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    pub ops: Vec<BatchOp>,
    /// Ask the backend to make the batch durable (fsync) before returning.
    pub sync: bool,
}

impl Batch {
    pub fn put(&mut self, column: Column, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push(BatchOp {
            column,
            key,
            value: Some(value),
            put_once: false,
        });
    }

    pub fn delete(&mut self, column: Column, key: Vec<u8>) {
        self.ops.push(BatchOp {
            column,
            key,
            value: None,
            put_once: false,
        });
    }

    /// Deletes a key that was put exactly once and never overwritten (see
    /// [`BatchOp::put_once`]); deleting any other key this way is a bug.
    pub fn delete_put_once(&mut self, column: Column, key: Vec<u8>) {
        self.ops.push(BatchOp {
            column,
            key,
            value: None,
            put_once: true,
        });
    }
}

/// An ordered key-value store with column families and atomic batches.
///
/// Implementations must make [`Backend::write`] atomic (all of a batch or
/// none of it, also across a crash) and must be safe to call from several
/// threads: the RocksDB store prunes on a thread of its own.
pub trait Backend: Send + Sync + fmt::Debug {
    /// The value under `key`, if any.
    fn get(&self, column: &Column, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Applies every op of `batch`, atomically, in order.
    fn write(&self, batch: Batch) -> Result<(), StoreError>;

    /// Up to `limit` entries with keys `>= from`, in key order.
    fn scan(&self, column: &Column, from: &[u8], limit: usize) -> Result<Entries, StoreError>;

    /// Up to `limit` keys (without their values) that start with `prefix`
    /// and are `>= from`, in key order.
    fn scan_keys(
        &self,
        column: &Column,
        prefix: &[u8],
        from: &[u8],
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError>;

    /// Whether `column` exists in this backend.
    fn has_column(&self, column: &Column) -> bool;

    /// Returns once the backend's own background work (RocksDB's flushes and
    /// compactions) has caught up. Nothing to wait for by default.
    fn wait_for_background_work(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The in-memory backend: one `BTreeMap` per column family behind a lock.
/// Used by tests and the simulator; it stores the same bytes RocksDB would.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    columns: RwLock<BTreeMap<Column, ColumnMap>>,
}

type ColumnMap = BTreeMap<Vec<u8>, Vec<u8>>;

/// One column's share of a batch: keys with their new value (`None`
/// deletes), in batch order.
type ColumnOps = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// Fewest ops in a batch for which its column families are written on
/// rayon's pool, one task each; below it, waking the pool costs more.
const PARALLEL_WRITE_MIN: usize = 1024;

impl MemoryBackend {
    /// A backend with the tree's column families and `extra` ones.
    pub fn new(extra: &[String]) -> MemoryBackend {
        let mut columns = BTreeMap::new();
        for column in [Column::Leaves, Column::Values, Column::Meta] {
            columns.insert(column, BTreeMap::new());
        }
        for name in extra {
            columns.insert(Column::Extra(name.clone()), BTreeMap::new());
        }
        MemoryBackend {
            columns: RwLock::new(columns),
        }
    }

    fn poisoned() -> StoreError {
        // Only a panic while holding the lock poisons it; the maps are then
        // possibly half-written, so refuse to serve them.
        StoreError::corrupt("memory backend", "lock poisoned by a panic")
    }
}

impl Backend for MemoryBackend {
    fn get(&self, column: &Column, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let columns = self.columns.read().map_err(|_| Self::poisoned())?;
        let map = columns
            .get(column)
            .ok_or_else(|| StoreError::UnknownColumnFamily {
                name: column.name().to_owned(),
            })?;
        Ok(map.get(key).cloned())
    }

    fn write(&self, batch: Batch) -> Result<(), StoreError> {
        let mut columns = self.columns.write().map_err(|_| Self::poisoned())?;
        // Check every column first, so a bad op leaves nothing half-applied.
        for op in &batch.ops {
            if !columns.contains_key(&op.column) {
                return Err(StoreError::UnknownColumnFamily {
                    name: op.column.name().to_owned(),
                });
            }
        }
        // Each column's ops in batch order, the columns written in
        // parallel: a block's version is tens of thousands of entries in
        // two column families, and nothing orders one column's ops against
        // another's. `columns` iterates in key order, so an op's column is
        // found by its rank among the keys.
        let names: Vec<&Column> = columns.keys().collect();
        let mut per_column: Vec<ColumnOps> = vec![Vec::new(); names.len()];
        for op in batch.ops {
            if let Ok(rank) = names.binary_search(&&op.column) {
                per_column[rank].push((op.key, op.value));
            }
        }
        let work: Vec<_> = columns
            .values_mut()
            .zip(per_column)
            .filter(|(_, ops)| !ops.is_empty())
            .collect();
        let apply = |(map, ops): (&mut ColumnMap, ColumnOps)| {
            for (key, value) in ops {
                match value {
                    Some(value) => {
                        map.insert(key, value);
                    }
                    None => {
                        map.remove(&key);
                    }
                }
            }
        };
        let ops: usize = work.iter().map(|(_, ops)| ops.len()).sum();
        if work.len() > 1 && ops >= PARALLEL_WRITE_MIN {
            use rayon::prelude::*;
            work.into_par_iter().for_each(apply);
        } else {
            work.into_iter().for_each(apply);
        }
        Ok(())
    }

    fn scan(&self, column: &Column, from: &[u8], limit: usize) -> Result<Entries, StoreError> {
        let columns = self.columns.read().map_err(|_| Self::poisoned())?;
        let map = columns
            .get(column)
            .ok_or_else(|| StoreError::UnknownColumnFamily {
                name: column.name().to_owned(),
            })?;
        Ok(map
            .range::<[u8], _>((Bound::Included(from), Bound::Unbounded))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn scan_keys(
        &self,
        column: &Column,
        prefix: &[u8],
        from: &[u8],
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let columns = self.columns.read().map_err(|_| Self::poisoned())?;
        let map = columns
            .get(column)
            .ok_or_else(|| StoreError::UnknownColumnFamily {
                name: column.name().to_owned(),
            })?;
        let start = from.max(prefix);
        Ok(map
            .range::<[u8], _>((Bound::Included(start), Bound::Unbounded))
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(prefix))
            .take(limit)
            .cloned()
            .collect())
    }

    fn has_column(&self, column: &Column) -> bool {
        self.columns
            .read()
            .map(|columns| columns.contains_key(column))
            .unwrap_or(false)
    }
}
