//! Every bound this crate enforces, with the reason for its value.

/// Largest key the state store accepts. Ledger keys are a short type tag
/// followed by one or two 32-byte ids (account, marketplace, trade id), so
/// 256 bytes leaves ample room while keeping a block's keys small in memory
/// (keys are hashed, never stored in the tree).
pub const MAX_STORE_KEY_BYTES: usize = 256;

/// Largest value the state store accepts. The largest records are governance
/// proposals, which come from one transaction of at most
/// `commons_types::limits::MAX_TX_BYTES`; twice that leaves room for the
/// bookkeeping the ledger adds (tally, deposits) while keeping any single
/// read or proof answer small.
pub const MAX_STORE_VALUE_BYTES: usize = 2 * commons_types::limits::MAX_TX_BYTES;

/// Writes (inserts, updates, deletes) in one store version, i.e. one block.
/// A block's writes are held in memory and land in one RocksDB `WriteBatch`;
/// at the maximum key and value sizes this bounds a batch by about
/// 2^20 * (256 + 128 KiB) worst case, in practice (a few keys of ~100 bytes
/// per transaction) tens of megabytes.
pub const MAX_STORE_WRITES_PER_VERSION: usize = 1 << 20;

/// Extra (non-tree) writes that ride in one atomic batch with a version
/// (blocks, receipts, tx index entries of that block). Same order as the tree
/// writes, for the same reason.
pub const MAX_STORE_EXTRA_WRITES: usize = 1 << 20;

/// Largest key or value of an extra write. A block with its certificate is
/// the largest thing the node stores beside the tree; 64 MiB bounds it well
/// above any block allowed by the consensus limits.
pub const MAX_STORE_EXTRA_BYTES: usize = 64 << 20;

/// Memory the store's cache of latest values may hold (keys, values and
/// overhead): enough for the accounts of many full blocks (a settlement
/// touches four or five entries of a few hundred bytes), small beside the
/// tree's nodes, which cost about 80 bytes per key held.
pub const LATEST_VALUES_CACHE_BYTES: usize = 64 << 20;

/// Entries one `scan_extra` call returns at most, so a reader cannot make the
/// store materialise a whole column family.
pub const MAX_STORE_SCAN_ENTRIES: usize = 10_000;

/// Versions a read may undo to reach a retained version older than the
/// trees held in memory. Each undone version costs reading its writes back
/// (one block's worth) and rehashing their paths, so a query for an old
/// height is bounded to about this many blocks of work; older versions
/// answer with an error instead of making one query cost an hour.
pub const MAX_RECONSTRUCT_VERSIONS: u64 = 1024;

/// Old versions' trees waiting for the store's background thread to free
/// them, counted by the applied version that dropped them (normally one
/// tree each). A tree holds the nodes its block replaced (about ten per
/// written key: a few MB for a block of thousands of settlements); when this
/// many wait, the next is freed on the rayon pool at normal priority
/// instead, so a machine too busy to give the thread time holds a bounded
/// backlog.
pub const MAX_TREES_AWAITING_FREE: usize = 32;

/// Name length of an extra column family; names are short identifiers.
pub const MAX_COLUMN_FAMILY_NAME_BYTES: usize = 64;

const _: () = assert!(MAX_STORE_KEY_BYTES <= u16::MAX as usize);
const _: () = assert!(MAX_STORE_VALUE_BYTES <= u32::MAX as usize);
const _: () = assert!(MAX_STORE_EXTRA_BYTES <= u32::MAX as usize);
