//! [`Ledger`]: the ledger state machine on a Merkle store. Version 0 of the
//! store is the genesis state; version `h` is the state after block `h`.
//! Blocks execute in order, each exactly once.

use commons_types::{ChainId, Hash, Height, PublicKey, ValidatorSet};

use crate::LedgerError;
use crate::ledger::execute::{
    BlockOutcome, PreparedTx, VerifiedTxs, check_block_size, execute_verified, unverified,
    verify_txs,
};
use crate::ledger::genesis::Genesis;
use crate::ledger::gov;
use crate::ledger::state::{Account, key};
use crate::ledger::working::{StateRead, Working};
use crate::store::{ExtraWrite, MerkleStore, PreparedVersion, StoreError};

/// Transactions to verify above which a block is run while its signatures
/// are verified (see `Ledger::execute_speculatively`); at or below it they
/// are verified first, a few milliseconds at most.
const SPECULATE_MIN_TXS: usize = 256;

impl From<StoreError> for LedgerError {
    fn from(e: StoreError) -> LedgerError {
        LedgerError::Store(e.to_string())
    }
}

/// One version of the store, read as ledger state.
#[derive(Debug, Clone, Copy)]
pub struct StoreView<'s> {
    store: &'s MerkleStore,
    version: u64,
}

impl StateRead for StoreView<'_> {
    fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>, LedgerError> {
        Ok(self.store.get(self.version, key)?)
    }
}

/// A block executed and committed to the store.
#[derive(Debug)]
pub struct Executed {
    pub outcome: BlockOutcome,
    /// The store's root after the block: what the next block's header
    /// carries.
    pub state_root: Hash,
}

/// The ledger on its store.
#[derive(Debug)]
pub struct Ledger {
    store: MerkleStore,
    chain: ChainId,
    height: Height,
}

impl Ledger {
    /// Opens the ledger on `store`. An empty store gets `genesis` as version
    /// 0; a store that has versions must belong to the same chain.
    pub fn open(mut store: MerkleStore, genesis: &Genesis) -> Result<Ledger, LedgerError> {
        let height = match store.latest_version() {
            None => {
                let writes = genesis.writes()?;
                store.apply(0, &writes)?;
                Height(0)
            }
            Some(latest) => {
                let stored = store.get(latest, key::CHAIN_ID)?.unwrap_or_default();
                if stored != genesis.chain_id.as_str().as_bytes() {
                    return Err(LedgerError::Genesis(format!(
                        "the store belongs to chain {:?}, the genesis file to {:?}",
                        String::from_utf8_lossy(&stored),
                        genesis.chain_id.as_str()
                    )));
                }
                Height(latest)
            }
        };
        Ok(Ledger {
            store,
            chain: genesis.chain_id.clone(),
            height,
        })
    }

    /// A fresh in-memory ledger at genesis: tests and the simulator.
    pub fn in_memory(genesis: &Genesis) -> Result<Ledger, LedgerError> {
        Ledger::open(MerkleStore::open_memory(), genesis)
    }

    pub fn chain_id(&self) -> &ChainId {
        &self.chain
    }

    /// Height of the last executed block (0: genesis only).
    pub fn height(&self) -> Height {
        self.height
    }

    /// Root of the state after the last executed block.
    pub fn state_root(&self) -> Hash {
        self.store.latest_root()
    }

    pub fn store(&self) -> &MerkleStore {
        &self.store
    }

    /// The latest state, for reads, the mempool and proposal building.
    pub fn view(&self) -> StoreView<'_> {
        StoreView {
            store: &self.store,
            version: self.height.0,
        }
    }

    /// The state after block `height`, while retained.
    pub fn view_at(&self, height: Height) -> StoreView<'_> {
        StoreView {
            store: &self.store,
            version: height.0,
        }
    }

    /// Executes block `height` (which must follow the last one) and commits
    /// its writes, with `extra` writes of the node in the same atomic batch.
    pub fn execute(
        &mut self,
        height: Height,
        txs: &[PreparedTx],
        verified: &dyn VerifiedTxs,
        extra: &[ExtraWrite],
    ) -> Result<Executed, LedgerError> {
        self.execute_with(height, txs, verified, |_, _| Ok(extra.to_vec()))
    }

    /// [`Ledger::execute`], with the extra writes built from the block's
    /// outcome (receipts, say) and the store before the block, so they land
    /// in the block's own batch without executing it twice.
    pub fn execute_with<F>(
        &mut self,
        height: Height,
        txs: &[PreparedTx],
        verified: &dyn VerifiedTxs,
        extra: F,
    ) -> Result<Executed, LedgerError>
    where
        F: FnOnce(&MerkleStore, &BlockOutcome) -> Result<Vec<ExtraWrite>, LedgerError>,
    {
        if height != self.height.next() {
            return Err(LedgerError::OutOfOrder {
                last: self.height,
                got: height,
            });
        }
        check_block_size(txs)?;
        let to_check = unverified(txs, verified);
        let (outcome, prepared) = if to_check.len() <= SPECULATE_MIN_TXS {
            let bad = verify_txs(&self.chain, txs, &to_check);
            let outcome = execute_verified(&self.view(), &self.chain, height, txs, &bad)?;
            (outcome, None)
        } else {
            self.execute_speculatively(height, txs, &to_check)?
        };
        let extra = extra(&self.store, &outcome)?;
        let state_root = match prepared {
            Some(prepared) => self
                .store
                .commit_version(prepared, &outcome.writes, &extra)?,
            None => self
                .store
                .apply_with_extra(height.0, &outcome.writes, &extra)?,
        };
        self.height = height;
        Ok(Executed {
            outcome,
            state_root,
        })
    }

    /// Runs a block whose transactions `to_check` still need their
    /// signatures verified, overlapping the two as the two halves of one
    /// `rayon::join`: one pool thread runs the block as if every signature
    /// were good and prepares the resulting store version while the others
    /// batch-verify, and it joins the verification when done (two tasks on
    /// the pool's threads, not a third thread contending for the cores). If
    /// none is bad (a block a quorum validated never has one), that outcome
    /// and version are the block's: the same as running it after
    /// verification, since no transaction's verdict differs. Otherwise both
    /// are dropped and the block runs again with the verdicts (the version
    /// then is prepared anew by `apply_with_extra`). Only the writing of the
    /// version is left after verification, instead of all of execution.
    fn execute_speculatively(
        &self,
        height: Height,
        txs: &[PreparedTx],
        to_check: &[usize],
    ) -> Result<(BlockOutcome, Option<PreparedVersion>), LedgerError> {
        let chain = &self.chain;
        let (speculated, bad) = rayon::join(
            || {
                execute_verified(&self.view(), chain, height, txs, &[]).and_then(|outcome| {
                    let prepared = self.store.prepare(height.0, &outcome.writes)?;
                    Ok((outcome, prepared))
                })
            },
            || verify_txs(chain, txs, to_check),
        );
        if bad.is_empty() {
            let (outcome, prepared) = speculated?;
            return Ok((outcome, Some(prepared)));
        }
        drop(speculated);
        let outcome = execute_verified(&self.view(), chain, height, txs, &bad)?;
        Ok((outcome, None))
    }

    pub fn account(&self, id: &PublicKey) -> Result<Account, LedgerError> {
        Working::new(&self.view()).account(id)
    }

    /// The validator set consensus runs with now.
    pub fn validator_set_in_force(&self) -> Result<ValidatorSet, LedgerError> {
        let view = self.view();
        let mut w = Working::new(&view);
        gov::validator_set_in_force(&mut w)
    }

    /// The validator set that the next epoch will have if nothing else
    /// changes: a decided change waiting for the boundary, else the set in
    /// force.
    pub fn validator_set_latest(&self) -> Result<ValidatorSet, LedgerError> {
        let view = self.view();
        let mut w = Working::new(&view);
        gov::latest_validator_set(&mut w)
    }
}
