//! The state a block executes against: committed state underneath, the
//! block's writes above it, and the current transaction's writes on top, so a
//! failing transaction can be dropped whole while the fee it paid stays.
//!
//! The block's layers are hash maps that remember insertion order
//! (`IndexMap`): a block of 10,000 settlements holds tens of thousands of
//! accounts and records, and a B-tree lookup among them compared long
//! shared key prefixes over and over. Nothing depends on their order but
//! [`Working::into_writes`], which sorts; and their order is the order of
//! the block's operations anyway, never a hasher's.

use std::collections::BTreeMap;

use commons_types::{PublicKey, TypesError};
use indexmap::IndexMap;

use crate::LedgerError;
use crate::ledger::state::{Account, decode_u64, encode_u64, key};

/// Read access to committed state (one version of the Merkle store).
pub trait StateRead {
    fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>, LedgerError>;
}

impl StateRead for BTreeMap<Vec<u8>, Vec<u8>> {
    fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>, LedgerError> {
        Ok(self.get(key).cloned())
    }
}

/// Writes of a block: `None` deletes the key.
pub type Writes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

#[derive(Debug, Default)]
struct Layer {
    accounts: IndexMap<PublicKey, Account>,
    raw: IndexMap<Vec<u8>, Option<Vec<u8>>>,
}

/// Committed state plus a block layer plus a transaction layer.
pub struct Working<'a> {
    base: &'a dyn StateRead,
    /// Accounts decoded from `base`, unmodified: saves decoding twice.
    loaded: IndexMap<PublicKey, Account>,
    block: Layer,
    tx: Layer,
}

impl std::fmt::Debug for Working<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Working")
            .field("block_accounts", &self.block.accounts.len())
            .field("block_raw", &self.block.raw.len())
            .finish_non_exhaustive()
    }
}

impl<'a> Working<'a> {
    pub fn new(base: &'a dyn StateRead) -> Working<'a> {
        Working {
            base,
            loaded: IndexMap::new(),
            block: Layer::default(),
            tx: Layer::default(),
        }
    }

    /// The account's current state; a never-seen account is empty.
    pub fn account(&mut self, id: &PublicKey) -> Result<Account, LedgerError> {
        if let Some(a) = self
            .tx
            .accounts
            .get(id)
            .or_else(|| self.block.accounts.get(id))
        {
            return Ok(a.clone());
        }
        if let Some(a) = self.loaded.get(id) {
            return Ok(a.clone());
        }
        let k = key::account(id);
        let account = match self.base.read(&k)? {
            Some(bytes) => Account::decode(&bytes).map_err(|source| LedgerError::Corrupt {
                key: hex_key(&k),
                source,
            })?,
            None => Account::default(),
        };
        self.loaded.insert(*id, account.clone());
        Ok(account)
    }

    pub fn put_account(&mut self, id: PublicKey, account: Account) {
        self.tx.accounts.insert(id, account);
    }

    pub fn get(&mut self, k: &[u8]) -> Result<Option<Vec<u8>>, LedgerError> {
        if let Some(v) = self.tx.raw.get(k).or_else(|| self.block.raw.get(k)) {
            return Ok(v.clone());
        }
        self.base.read(k)
    }

    pub fn put(&mut self, k: Vec<u8>, v: Vec<u8>) {
        self.tx.raw.insert(k, Some(v));
    }

    pub fn delete(&mut self, k: Vec<u8>) {
        self.tx.raw.insert(k, None);
    }

    /// The value under `k`, decoded by `decode`; a value that does not
    /// decode is corrupt state, not a transaction's fault.
    pub fn get_decoded<T>(
        &mut self,
        k: &[u8],
        decode: impl FnOnce(&[u8]) -> Result<T, TypesError>,
    ) -> Result<Option<T>, LedgerError> {
        match self.get(k)? {
            Some(bytes) => decode(&bytes)
                .map(Some)
                .map_err(|source| LedgerError::Corrupt {
                    key: hex_key(k),
                    source,
                }),
            None => Ok(None),
        }
    }

    pub fn get_u64(&mut self, k: &[u8], what: &'static str) -> Result<u64, LedgerError> {
        Ok(self.get_decoded(k, |b| decode_u64(b, what))?.unwrap_or(0))
    }

    pub fn put_u64(&mut self, k: &[u8], v: u64) {
        self.put(k.to_vec(), encode_u64(v));
    }

    pub fn treasury(&mut self) -> Result<u64, LedgerError> {
        self.get_u64(key::TREASURY, "treasury")
    }

    /// Keeps the current transaction's writes.
    pub fn commit_tx(&mut self) {
        // Drained, not replaced: the next transaction reuses the layer's
        // allocations.
        self.block.accounts.extend(self.tx.accounts.drain(..));
        self.block.raw.extend(self.tx.raw.drain(..));
    }

    /// Drops the current transaction's writes.
    pub fn discard_tx(&mut self) {
        self.tx.accounts.clear();
        self.tx.raw.clear();
    }

    /// The block's writes, in key order. Uncommitted transaction writes are a
    /// bug at this point. A key written both as an account and as a raw key
    /// (nothing does) keeps the account.
    pub fn into_writes(self) -> Writes {
        assert!(self.tx.accounts.is_empty(), "transaction layer left open");
        assert!(self.tx.raw.is_empty(), "transaction layer left open");
        // Each entry with its layer's rank (raw 0, accounts 1), so that of
        // two entries for one key the account's sorts last and is kept.
        let mut writes: Vec<(Vec<u8>, u8, Option<Vec<u8>>)> =
            Vec::with_capacity(self.block.raw.len() + self.block.accounts.len());
        writes.extend(self.block.raw.into_iter().map(|(k, v)| (k, 0, v)));
        writes.extend(
            self.block
                .accounts
                .into_iter()
                .map(|(id, account)| (key::account(&id), 1, Some(account.encode()))),
        );
        writes.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        writes.dedup_by(|later, earlier| {
            if later.0 == earlier.0 {
                std::mem::swap(later, earlier);
                true
            } else {
                false
            }
        });
        // Sorted and distinct: the map is built in one pass.
        writes.into_iter().map(|(k, _, v)| (k, v)).collect()
    }
}

pub(crate) fn hex_key(k: &[u8]) -> String {
    let shown = &k[..k.len().min(48)];
    hex::encode(shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discarded_transaction_leaves_no_trace() {
        let base = BTreeMap::new();
        let mut w = Working::new(&base);
        let id = PublicKey([1; 32]);
        let mut a = w.account(&id).unwrap();
        a.balance = 10;
        w.put_account(id, a.clone());
        w.put(b"k".to_vec(), b"v".to_vec());
        w.commit_tx();
        let mut b = w.account(&id).unwrap();
        b.balance = 99;
        w.put_account(id, b);
        w.delete(b"k".to_vec());
        assert_eq!(w.account(&id).unwrap().balance, 99);
        assert_eq!(w.get(b"k").unwrap(), None);
        w.discard_tx();
        assert_eq!(w.account(&id).unwrap().balance, 10);
        assert_eq!(w.get(b"k").unwrap(), Some(b"v".to_vec()));
        let writes = w.into_writes();
        assert_eq!(writes.get(&key::account(&id)), Some(&Some(a.encode())));
        assert_eq!(writes.len(), 2);
    }
}
