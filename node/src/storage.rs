//! The node's column families in the store's RocksDB, and how the driver
//! writes and reads them back.
//!
//! | column family | key | value | written |
//! | --- | --- | --- | --- |
//! | `consensus` | `record` | the safety record | `Ready::persist`, fsync, before any message leaves |
//! | `consensus` | `last_applied` | height (u64 BE) ‖ block id | in the block's state batch |
//! | `blocks` | block id | block (canonical encoding) | `Ready::persist`, or the state batch if it came by sync |
//! | `pending` | height ‖ block id | empty | `Ready::persist`; deleted when that height is applied |
//! | `qcs` | epoch ‖ height ‖ round | QC | `Ready::persist` |
//! | `heights` | height | block id of the committed block | state batch |
//! | `certs` | height | QC certifying the committed block at height (its child's `justify`) | state batch of the child |
//! | `receipts` | height ‖ index (u32 BE) | receipt | state batch |
//! | `txindex` | tx id | height ‖ index of its first inclusion | state batch |
//! | `epochs` | epoch | validator set of the epoch | fsync, before the epoch change reaches consensus |
//! | `consensus` | `format` | [`FORMAT_VERSION`] (u64 BE) | fsync, when the directory is first used |
//!
//! All integers big-endian so that key order is numeric order. The state
//! version `h` and everything the block at `h` adds land in one atomic
//! batch (`Application::apply` with extra writes), so after a crash the store
//! holds either all of block `h` or none of it.

use commons_consensus::{Block, Persist, QuorumCert, Restart, SafetyRecord};
use commons_state_machine::ledger::gov::{decode_validator_set, encode_validator_set};
use commons_state_machine::ledger::{PreparedTx, Receipt};
use commons_state_machine::store::{ExtraWrite, MerkleStore, StoreError};
use commons_types::{Epoch, Hash, Height, ValidatorSet};

use crate::limits;

pub const CF_CONSENSUS: &str = "consensus";
pub const CF_BLOCKS: &str = "blocks";
pub const CF_PENDING: &str = "pending";
pub const CF_QCS: &str = "qcs";
pub const CF_HEIGHTS: &str = "heights";
pub const CF_CERTS: &str = "certs";
pub const CF_RECEIPTS: &str = "receipts";
pub const CF_TXINDEX: &str = "txindex";
pub const CF_EPOCHS: &str = "epochs";

const KEY_RECORD: &[u8] = b"record";
const KEY_LAST_APPLIED: &[u8] = b"last_applied";
const KEY_FORMAT: &[u8] = b"format";

/// The format of the data directory this release writes and reads.
/// 2: transaction ids name the signers (`docs/protocol.md`, "Transaction
/// id"). Format 1 (ids of the body alone) wrote no marker.
pub const FORMAT_VERSION: u64 = 2;

pub fn column_families() -> Vec<String> {
    [
        CF_CONSENSUS,
        CF_BLOCKS,
        CF_PENDING,
        CF_QCS,
        CF_HEIGHTS,
        CF_CERTS,
        CF_RECEIPTS,
        CF_TXINDEX,
        CF_EPOCHS,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("stored {what} is corrupt: {reason}")]
    Corrupt { what: &'static str, reason: String },
    #[error(
        "the data directory is in format {found}, and this release reads only format \
         {expected}{why}: stop the node, move its data directory aside, and start it \
         again to resync from its peers (a chain whose every node is in the old \
         format must start again from a new genesis)"
    )]
    Format {
        found: u64,
        expected: u64,
        why: &'static str,
    },
}

fn corrupt(what: &'static str, reason: impl ToString) -> StorageError {
    StorageError::Corrupt {
        what,
        reason: reason.to_string(),
    }
}

fn put(cf: &str, key: Vec<u8>, value: Vec<u8>) -> ExtraWrite {
    ExtraWrite {
        column_family: cf.to_string(),
        key,
        value: Some(value),
    }
}

fn delete(cf: &str, key: Vec<u8>) -> ExtraWrite {
    ExtraWrite {
        column_family: cf.to_string(),
        key,
        value: None,
    }
}

fn be(v: u64) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

fn qc_key(qc: &QuorumCert) -> Vec<u8> {
    let mut k = Vec::with_capacity(24);
    k.extend_from_slice(&qc.data.epoch.0.to_be_bytes());
    k.extend_from_slice(&qc.data.height.0.to_be_bytes());
    k.extend_from_slice(&qc.data.round.0.to_be_bytes());
    k
}

fn receipt_key(height: Height, index: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(12);
    k.extend_from_slice(&height.0.to_be_bytes());
    k.extend_from_slice(&index.to_be_bytes());
    k
}

fn u64_of(bytes: &[u8], what: &'static str) -> Result<u64, StorageError> {
    let arr: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| corrupt(what, "shorter than 8 bytes"))?;
    Ok(u64::from_be_bytes(arr))
}

/// Checks the data directory's format before anything reads it: a directory
/// in use without a marker was written by a release of format 1, whose
/// transaction ids (the body's hash alone) fill its tx index and receipts;
/// it is refused, as is any other format than [`FORMAT_VERSION`]. A new
/// directory (nothing applied, no safety record) is marked.
pub fn check_format(store: &MerkleStore) -> Result<(), StorageError> {
    let found = match store.get_extra(CF_CONSENSUS, KEY_FORMAT)? {
        Some(bytes) => {
            if bytes.len() != 8 {
                return Err(corrupt("format marker", "not 8 bytes"));
            }
            u64_of(&bytes, "format marker")?
        }
        None => {
            let used = store.get_extra(CF_CONSENSUS, KEY_RECORD)?.is_some()
                || last_applied(store)?.is_some();
            if !used {
                let marker = put(CF_CONSENSUS, KEY_FORMAT.to_vec(), be(FORMAT_VERSION));
                store.write_extra(&[marker], true)?;
                return Ok(());
            }
            1
        }
    };
    if found == FORMAT_VERSION {
        return Ok(());
    }
    Err(StorageError::Format {
        found,
        expected: FORMAT_VERSION,
        why: if found == 1 {
            " (format 1 named transactions by their body alone)"
        } else {
            ""
        },
    })
}

/// Step 1 of a `Ready`: the record, QCs and blocks in one batch, fsynced.
pub fn persist(store: &MerkleStore, p: &Persist) -> Result<(), StorageError> {
    let mut writes = Vec::with_capacity(1 + p.qcs.len() + 2 * p.blocks.len());
    // QCs and blocks before the record in the batch is irrelevant (the batch
    // is atomic); the record is checked by decoding it back once at startup.
    for qc in &p.qcs {
        writes.push(put(CF_QCS, qc_key(qc), qc.encode()));
    }
    for block in &p.blocks {
        let id = block.id();
        writes.push(put(CF_BLOCKS, id.0.to_vec(), block.encode()));
        let mut k = be(block.height().0);
        k.extend_from_slice(&id.0);
        writes.push(put(CF_PENDING, k, Vec::new()));
    }
    if let Some(record) = &p.record {
        writes.push(put(CF_CONSENSUS, KEY_RECORD.to_vec(), record.encode()));
    }
    if writes.is_empty() {
        return Ok(());
    }
    store.write_extra(&writes, true)?;
    Ok(())
}

/// The node's writes that go into the state batch of committed `block`:
/// the pending entries of its height dropped, the block unless `persist`
/// stored it, its height index, the last-applied marker, the parent's
/// certificate, the receipts and tx index.
pub fn applied_writes(
    store: &MerkleStore,
    block: &Block,
    txs: &[PreparedTx],
    receipts: &[Receipt],
) -> Result<Vec<ExtraWrite>, StorageError> {
    let id = block.id();
    let height = block.height();
    // The pending entries of this height go; one of them names this block
    // if `persist` stored it (same batch as the block, never deleted
    // before this one), and then its bytes are on disk already. A block
    // that came by sync, or whose entry the bounded scan did not reach, is
    // written here.
    let mut writes = Vec::new();
    let mut stored = false;
    let pending = store.scan_extra(CF_PENDING, &be(height.0), limits::RESTART_PENDING_BLOCKS)?;
    for (key, _) in pending {
        if u64_of(&key, "pending key")? != height.0 {
            break;
        }
        stored |= key.get(8..) == Some(&id.0[..]);
        writes.push(delete(CF_PENDING, key));
    }
    if !stored {
        writes.push(put(CF_BLOCKS, id.0.to_vec(), block.encode()));
    }
    writes.push(put(CF_HEIGHTS, be(height.0), id.0.to_vec()));
    let mut marker = be(height.0);
    marker.extend_from_slice(&id.0);
    writes.push(put(CF_CONSENSUS, KEY_LAST_APPLIED.to_vec(), marker));
    // The justify of a block certifies its parent: the certificate of the
    // committed block one height below (same epoch; an epoch's first block
    // carries the signature-less root QC, which certifies nothing new).
    let justify = block.justify();
    if justify.data.height.0 + 1 == height.0 && !justify.signatures.is_empty() {
        writes.push(put(CF_CERTS, be(justify.data.height.0), justify.encode()));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (index, (tx, receipt)) in txs.iter().zip(receipts).enumerate() {
        let index = u32::try_from(index).map_err(|_| corrupt("block", "too many transactions"))?;
        writes.push(put(
            CF_RECEIPTS,
            receipt_key(height, index),
            receipt.encode(),
        ));
        // The first inclusion of a transaction is the one that counts; a
        // replay in a later block only fails with a bad nonce.
        if seen.insert(tx.id) && store.get_extra(CF_TXINDEX, &tx.id.0)?.is_none() {
            writes.push(put(
                CF_TXINDEX,
                tx.id.0.to_vec(),
                receipt_key(height, index),
            ));
        }
    }
    Ok(writes)
}

/// Records the validator set of `epoch` (fsynced) before consensus starts it.
pub fn store_epoch_set(
    store: &MerkleStore,
    epoch: Epoch,
    set: &ValidatorSet,
) -> Result<(), StorageError> {
    store.write_extra(
        &[put(CF_EPOCHS, be(epoch.0), encode_validator_set(set))],
        true,
    )?;
    Ok(())
}

pub fn epoch_set(store: &MerkleStore, epoch: Epoch) -> Result<Option<ValidatorSet>, StorageError> {
    match store.get_extra(CF_EPOCHS, &be(epoch.0))? {
        None => Ok(None),
        Some(bytes) => decode_validator_set(&bytes)
            .map(Some)
            .map_err(|e| corrupt("validator set", e)),
    }
}

pub fn last_applied(store: &MerkleStore) -> Result<Option<(Height, Hash)>, StorageError> {
    let Some(bytes) = store.get_extra(CF_CONSENSUS, KEY_LAST_APPLIED)? else {
        return Ok(None);
    };
    if bytes.len() != 40 {
        return Err(corrupt("last applied marker", "not 40 bytes"));
    }
    let height = Height(u64_of(&bytes, "last applied height")?);
    let id = Hash::from_slice(&bytes[8..]).map_err(|e| corrupt("last applied id", e))?;
    Ok(Some((height, id)))
}

pub fn block_by_id(store: &MerkleStore, id: &Hash) -> Result<Option<Block>, StorageError> {
    match store.get_extra(CF_BLOCKS, &id.0)? {
        None => Ok(None),
        Some(bytes) => {
            let block = Block::decode(&bytes).map_err(|e| corrupt("block", e))?;
            // Check what was read back against the key it was stored under.
            if block.id() != *id {
                return Err(corrupt("block", "id does not match its key"));
            }
            Ok(Some(block))
        }
    }
}

pub fn block_at(store: &MerkleStore, height: Height) -> Result<Option<Block>, StorageError> {
    let Some(id) = store.get_extra(CF_HEIGHTS, &be(height.0))? else {
        return Ok(None);
    };
    let id = Hash::from_slice(&id).map_err(|e| corrupt("height index", e))?;
    let block = block_by_id(store, &id)?
        .ok_or_else(|| corrupt("height index", "names a block that is not stored"))?;
    if block.height() != height {
        return Err(corrupt("height index", "block has another height"));
    }
    Ok(Some(block))
}

/// The QC certifying the committed block at `height`, once its child is
/// applied.
pub fn cert_at(store: &MerkleStore, height: Height) -> Result<Option<QuorumCert>, StorageError> {
    match store.get_extra(CF_CERTS, &be(height.0))? {
        None => Ok(None),
        Some(bytes) => QuorumCert::decode(&bytes)
            .map(Some)
            .map_err(|e| corrupt("certificate", e)),
    }
}

pub fn receipts_at(store: &MerkleStore, height: Height) -> Result<Vec<Receipt>, StorageError> {
    let rows = store.scan_extra(
        CF_RECEIPTS,
        &receipt_key(height, 0),
        commons_state_machine::ledger::limits::MAX_BLOCK_TXS,
    )?;
    let mut out = Vec::new();
    for (key, value) in rows {
        if u64_of(&key, "receipt key")? != height.0 {
            break;
        }
        out.push(Receipt::decode(&value).map_err(|e| corrupt("receipt", e))?);
    }
    Ok(out)
}

/// The receipt of a transaction's first inclusion.
pub fn receipt_of(store: &MerkleStore, tx_id: &Hash) -> Result<Option<Receipt>, StorageError> {
    let Some(key) = store.get_extra(CF_TXINDEX, &tx_id.0)? else {
        return Ok(None);
    };
    let Some(bytes) = store.get_extra(CF_RECEIPTS, &key)? else {
        return Err(corrupt("tx index", "names a receipt that is not stored"));
    };
    let receipt = Receipt::decode(&bytes).map_err(|e| corrupt("receipt", e))?;
    if receipt.tx_id != *tx_id {
        return Err(corrupt("tx index", "receipt is of another transaction"));
    }
    Ok(Some(receipt))
}

/// What a restarted replica needs, or `None` for a fresh node.
pub fn load_restart(store: &MerkleStore) -> Result<Option<Restart>, StorageError> {
    let record = match store.get_extra(CF_CONSENSUS, KEY_RECORD)? {
        Some(bytes) => Some(SafetyRecord::decode(&bytes).map_err(|e| corrupt("safety record", e))?),
        None => None,
    };
    let applied = last_applied(store)?;
    let record = match (record, applied) {
        (Some(r), _) => r,
        (None, None) => return Ok(None),
        (None, Some(_)) => {
            return Err(corrupt(
                "safety record",
                "blocks were applied but no record was stored",
            ));
        }
    };
    let root = record.epoch_root;
    let (applied_height, applied_id) = match applied {
        Some((h, id)) if h >= root.height => (h, id),
        _ => (root.height, root.id),
    };
    let mut blocks = Vec::new();
    let first = applied_height
        .0
        .saturating_sub(limits::RESTART_HISTORY_BLOCKS)
        .max(root.height.0 + 1);
    for h in first..=applied_height.0 {
        if let Some(b) = block_at(store, Height(h))? {
            blocks.push(b);
        }
    }
    let pending = store.scan_extra(
        CF_PENDING,
        &be(applied_height.0 + 1),
        limits::RESTART_PENDING_BLOCKS,
    )?;
    for (key, _) in pending {
        let id = Hash::from_slice(key.get(8..).unwrap_or_default())
            .map_err(|e| corrupt("pending key", e))?;
        if let Some(b) = block_by_id(store, &id)? {
            blocks.push(b);
        }
    }
    let mut from = be(record.epoch.0);
    from.extend_from_slice(&applied_height.0.saturating_sub(2).to_be_bytes());
    let mut qcs = Vec::new();
    for (key, value) in store.scan_extra(CF_QCS, &from, limits::RESTART_PENDING_BLOCKS)? {
        if u64_of(&key, "qc key")? != record.epoch.0 {
            break;
        }
        qcs.push(QuorumCert::decode(&value).map_err(|e| corrupt("QC", e))?);
    }
    Ok(Some(Restart {
        record,
        last_applied: applied_id,
        blocks,
        qcs,
    }))
}

/// A committed range for a peer that fell behind the consensus core's
/// in-memory window: committed blocks of `epoch` from `from`, ending with a
/// block the returned QC commits (the 2-chain rule: a QC for the next
/// block, one round later).
pub fn committed_range(
    store: &MerkleStore,
    epoch: Epoch,
    from: Height,
) -> Result<Option<(Vec<Block>, QuorumCert)>, StorageError> {
    let mut blocks = Vec::new();
    // `from` is a peer's: any value, up to u64::MAX.
    let end = from
        .0
        .saturating_add(commons_consensus::limits::MAX_SYNC_BLOCKS as u64);
    for h in from.0..end {
        match block_at(store, Height(h))? {
            Some(b) if b.epoch() == epoch => blocks.push(b),
            _ => break,
        }
    }
    while let Some(last) = blocks.last() {
        // The certificate of the child, if the child is in the same epoch
        // and one round later, commits `last`.
        let commits = |qc: &QuorumCert| {
            qc.data.epoch == epoch
                && qc.data.parent_id == last.id()
                && qc.data.round == last.round().next()
        };
        if let Some(qc) = cert_at(store, last.height().next())?
            && commits(&qc)
        {
            return Ok(Some((blocks, qc)));
        }
        // An epoch's last two blocks have no certificate in `certs`: the
        // next epoch's first block carries the signature-less root QC, and
        // the block that commits the last one is never committed itself.
        // The QCs this node persisted for consensus still hold them.
        if let Some(qc) = persisted_qc(store, epoch, last.height().next(), commits)? {
            return Ok(Some((blocks, qc)));
        }
        blocks.pop();
    }
    Ok(None)
}

/// A QC of `epoch` certifying a block at `height` that satisfies `wanted`,
/// from the QCs persisted by `Ready::persist`.
fn persisted_qc(
    store: &MerkleStore,
    epoch: Epoch,
    height: Height,
    wanted: impl Fn(&QuorumCert) -> bool,
) -> Result<Option<QuorumCert>, StorageError> {
    let mut from = be(epoch.0);
    from.extend_from_slice(&height.0.to_be_bytes());
    // Several rounds can certify blocks at one height (forks that never
    // committed); a few are plenty, the scan stops at the next height.
    for (key, value) in store.scan_extra(CF_QCS, &from, limits::QCS_PER_HEIGHT_SCANNED)? {
        if key.len() != 24
            || u64_of(&key, "qc key")? != epoch.0
            || u64_of(&key[8..], "qc key")? != height.0
        {
            break;
        }
        let qc = QuorumCert::decode(&value).map_err(|e| corrupt("QC", e))?;
        if wanted(&qc) {
            return Ok(Some(qc));
        }
    }
    Ok(None)
}

/// `id` and up to `count - 1` ancestors, newest first, from the store.
pub fn ancestors(store: &MerkleStore, id: &Hash, count: u16) -> Result<Vec<Block>, StorageError> {
    let mut out = Vec::new();
    let mut cursor = *id;
    let count = usize::from(count).min(commons_consensus::limits::MAX_SYNC_BLOCKS);
    while out.len() < count {
        let Some(b) = block_by_id(store, &cursor)? else {
            break;
        };
        cursor = b.parent_id();
        out.push(b);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use commons_state_machine::store::StoreConfig;

    use super::*;

    fn store() -> MerkleStore {
        MerkleStore::open_memory_with(&StoreConfig {
            extra_column_families: column_families(),
            ..StoreConfig::default()
        })
        .expect("store")
    }

    #[test]
    fn a_data_directory_of_the_old_format_is_refused() {
        // New: marked, then accepted again.
        let fresh = store();
        check_format(&fresh).expect("a new directory is accepted");
        assert_eq!(
            fresh.get_extra(CF_CONSENSUS, KEY_FORMAT).expect("read"),
            Some(be(FORMAT_VERSION))
        );
        check_format(&fresh).expect("a marked directory is accepted");

        // Used without a marker: written by a format-1 release.
        let old = store();
        let record = SafetyRecord::fresh(
            Epoch(0),
            commons_consensus::RootBlock::genesis(
                &commons_types::ChainId::new("storage-test").expect("chain id"),
                Hash::ZERO,
                Hash::ZERO,
                0,
            ),
        );
        persist(
            &old,
            &Persist {
                record: Some(record),
                ..Persist::default()
            },
        )
        .expect("persist");
        let err = check_format(&old).expect_err("an old directory is refused");
        let message = err.to_string();
        assert!(
            matches!(
                err,
                StorageError::Format {
                    found: 1,
                    expected: FORMAT_VERSION,
                    ..
                }
            ),
            "{message}"
        );
        assert!(message.contains("format 1"), "{message}");
        assert!(message.contains("resync"), "{message}");
        assert_eq!(
            old.get_extra(CF_CONSENSUS, KEY_FORMAT).expect("read"),
            None,
            "a refused directory is left as it was"
        );

        // A later format than this release knows.
        let newer = store();
        newer
            .write_extra(&[put(CF_CONSENSUS, KEY_FORMAT.to_vec(), be(3))], true)
            .expect("write");
        assert!(matches!(
            check_format(&newer),
            Err(StorageError::Format { found: 3, .. })
        ));
    }

    fn block_at_height_one(payload: &[u8]) -> Block {
        use commons_consensus::{BlockFields, RootBlock};
        use commons_types::{ChainId, Round, ValidatorIndex};
        let chain = ChainId::new("storage-test").expect("chain id");
        let root = RootBlock::genesis(&chain, Hash::ZERO, Hash::ZERO, 0);
        Block::new(BlockFields {
            epoch: Epoch(0),
            round: Round(1),
            height: Height(1),
            proposer: ValidatorIndex(0),
            timestamp_ms: 1,
            state_root: Hash::ZERO,
            justify: QuorumCert::root(Epoch(0), &root),
            timeout_cert: None,
            payload: payload.to_vec(),
        })
    }

    fn block_writes(writes: &[ExtraWrite]) -> usize {
        writes
            .iter()
            .filter(|w| w.column_family == CF_BLOCKS)
            .count()
    }

    /// A block `persist` stored (its pending entry names it) is not written
    /// again when it is applied; a block that came another way (sync) is,
    /// and either way it reads back by height afterwards.
    #[test]
    fn an_applied_block_is_written_once() {
        let persisted = block_at_height_one(b"persisted");
        let fork = block_at_height_one(b"a fork at the same height");
        let store = store();
        persist(
            &store,
            &Persist {
                record: None,
                blocks: vec![persisted.clone(), fork.clone()],
                qcs: Vec::new(),
            },
        )
        .expect("persist");

        let writes = applied_writes(&store, &persisted, &[], &[]).expect("writes");
        assert_eq!(block_writes(&writes), 0, "stored by persist already");
        let pending_deletes = writes
            .iter()
            .filter(|w| w.column_family == CF_PENDING && w.value.is_none())
            .count();
        assert_eq!(pending_deletes, 2, "both pending entries of the height go");
        store.write_extra(&writes, false).expect("write");
        assert_eq!(block_at(&store, Height(1)).expect("read"), Some(persisted));

        let synced = block_at_height_one(b"came by sync");
        let store = self::store();
        let writes = applied_writes(&store, &synced, &[], &[]).expect("writes");
        assert_eq!(block_writes(&writes), 1, "nothing stored it before");
        store.write_extra(&writes, false).expect("write");
        assert_eq!(block_at(&store, Height(1)).expect("read"), Some(synced));
    }

    #[test]
    fn a_committed_range_from_any_height_is_answered_without_panicking() {
        let store = store();
        for from in [0, 1, u64::MAX - 1, u64::MAX] {
            assert!(
                committed_range(&store, Epoch(0), Height(from))
                    .expect("read")
                    .is_none(),
                "nothing stored, nothing served (from {from})"
            );
        }
    }
}
