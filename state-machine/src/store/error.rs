use thiserror::Error;

use commons_types::Hash;

/// Why a store operation failed.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("key of {len} bytes exceeds the limit of {max}")]
    KeyTooLarge { len: usize, max: usize },

    #[error("value of {len} bytes exceeds the limit of {max}")]
    ValueTooLarge { len: usize, max: usize },

    #[error("{count} writes in one version exceed the limit of {max}")]
    TooManyWrites { count: usize, max: usize },

    #[error("version {got} cannot be applied: the next version is {expected}")]
    WrongVersion { expected: u64, got: u64 },

    #[error("version {version} was pruned; the oldest retained version is {oldest}")]
    VersionPruned { version: u64, oldest: u64 },

    #[error(
        "version {version} is retained but more than {max} versions older than the trees in memory (from {in_memory_from}); reading it would mean undoing too many blocks"
    )]
    VersionTooOld {
        version: u64,
        in_memory_from: u64,
        max: u64,
    },

    #[error("version {version} does not exist yet; the latest is {latest:?}")]
    VersionMissing { version: u64, latest: Option<u64> },

    #[error("two keys in one version have the same SHA-256 {key_hash}")]
    KeyHashCollision { key_hash: Hash },

    #[error("column family {name:?} is not one the store was opened with")]
    UnknownColumnFamily { name: String },

    #[error("column family name {name:?} is reserved or invalid: {reason}")]
    BadColumnFamily { name: String, reason: &'static str },

    #[error("extra entry of {len} bytes exceeds the limit of {max}")]
    ExtraTooLarge { len: usize, max: usize },

    #[error(
        "stored root of version {version} is {stored}, but the data read back hashes to {computed}"
    )]
    RootMismatch {
        version: u64,
        stored: Hash,
        computed: Hash,
    },

    #[error("corrupt store data ({what}): {detail}")]
    Corrupt { what: &'static str, detail: String },

    #[error("store format {found:?} is not the supported {expected:?}")]
    FormatMismatch { expected: String, found: String },

    #[error("rocksdb: {0}")]
    RocksDb(#[from] rocksdb::Error),
}

impl StoreError {
    pub(crate) fn corrupt(what: &'static str, detail: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            what,
            detail: detail.into(),
        }
    }
}
