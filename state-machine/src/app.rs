//! The ledger as the consensus core's application: what goes into a block,
//! whether a proposed block may be voted for, and what a committed block
//! does. The node and the simulator both drive a `commons_consensus::Replica`
//! with an [`Application`]; this is the only place that knows both.
//!
//! # Payload
//!
//! A block's payload is `state_height:u64 || count:u32 || count × tx`, each
//! tx a length-prefixed encoded `SignedTx` ([`Payload`]). Blocks execute when
//! they commit, so when a leader proposes, its parent is usually not yet
//! executed. The block's `state_root` therefore attests the state after
//! block `state_height`, an executed block at or below the parent:
//!
//! - the leader sets `state_height` to the last block it executed, or, if it
//!   lags behind the parent's `state_height`, copies the parent's height and
//!   root;
//! - a voter accepts `state_height` only if it is at least the parent's, it
//!   has executed that height itself, and its own root there equals the
//!   block's `state_root`.
//!
//! So a certified block carries a state root that more than two thirds of
//! the stake (at least one honest validator) computed, which is what a
//! client checks a proof against.
//!
//! # Validation
//!
//! A payload is valid if it decodes within the limits and every signature of
//! every transaction verifies (one parallel batch, skipping transactions the
//! mempool verified). Whether each transaction will succeed is for execution
//! to decide, with a receipt; a block is never refused for an insufficient
//! balance.

use std::collections::BTreeSet;

use commons_consensus::Block;
use commons_types::codec::{Reader, Writer};
use commons_types::{ChainId, Hash, Height, TypesError, ValidatorSet, limits as type_limits};

use crate::ledger::execute::{unverified, verify_txs};
use crate::ledger::limits;
use crate::ledger::receipt::Receipt;
use crate::ledger::{BlockOutcome, Ledger, PreparedTx};
use crate::store::{ExtraWrite, MerkleStore};
use crate::{AdmitError, LedgerError, Mempool, Received};

/// A decoded block payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payload {
    /// The executed block whose state root the block's header carries.
    pub state_height: Height,
    /// Encoded `SignedTx`s, in execution order.
    pub txs: Vec<Vec<u8>>,
}

impl Payload {
    pub fn encode(&self) -> Vec<u8> {
        let size: usize = self.txs.iter().map(|t| 4 + t.len()).sum();
        let mut w = Writer::with_capacity(12 + size);
        w.u64(self.state_height.0).len(self.txs.len());
        for tx in &self.txs {
            w.bytes(tx);
        }
        w.finish()
    }

    /// Decodes within [`limits::MAX_BLOCK_TXS`] and
    /// [`limits::MAX_BLOCK_BYTES`]; every transaction at most
    /// `MAX_TX_BYTES`.
    pub fn decode(bytes: &[u8]) -> Result<Payload, TypesError> {
        if bytes.len() > limits::MAX_BLOCK_BYTES + 12 + 4 * limits::MAX_BLOCK_TXS {
            return Err(TypesError::TooLarge {
                what: "block payload",
                got: bytes.len(),
                limit: limits::MAX_BLOCK_BYTES,
            });
        }
        let mut r = Reader::new(bytes, "block payload");
        let state_height = Height(r.u64()?);
        let n = r.len(limits::MAX_BLOCK_TXS, 4)?;
        let mut txs = Vec::with_capacity(n);
        for _ in 0..n {
            txs.push(r.bytes(type_limits::MAX_TX_BYTES)?.to_vec());
        }
        r.finish()?;
        Ok(Payload { state_height, txs })
    }

    /// How many transactions an encoded payload carries, read from its
    /// header alone; 0 when the header does not decode.
    pub fn tx_count(bytes: &[u8]) -> usize {
        let mut r = Reader::new(bytes, "block payload");
        r.u64()
            .and_then(|_| r.len(limits::MAX_BLOCK_TXS, 4))
            .unwrap_or(0)
    }

    /// The payload of the genesis root (no payload): state after genesis.
    fn of_block(block: Option<&Block>) -> Result<Payload, TypesError> {
        match block {
            Some(b) if !b.payload().is_empty() => Payload::decode(b.payload()),
            _ => Ok(Payload {
                state_height: Height(0),
                txs: Vec::new(),
            }),
        }
    }
}

/// Why a proposed block's payload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("payload: {0}")]
    Decode(#[from] TypesError),
    #[error("transaction {index} does not decode: {reason}")]
    BadTx { index: usize, reason: String },
    #[error("transaction {index} has a bad signature")]
    BadSignature { index: usize },
    #[error("state height {got} is below the parent's {parent}")]
    StateHeightRegressed { got: Height, parent: Height },
    #[error("state height {got} is not executed here yet (executed: {executed})")]
    StateNotExecuted { got: Height, executed: Height },
    #[error("state root at height {height} is {ours} here, the block says {theirs}")]
    StateRootMismatch {
        height: Height,
        ours: Hash,
        theirs: Hash,
    },
    #[error("{got} transactions exceed the parameter max_block_txs = {limit}")]
    TooManyTxs { got: usize, limit: u64 },
    #[error("state store: {0}")]
    Store(String),
}

/// A committed block after execution.
#[derive(Debug)]
pub struct Applied {
    pub height: Height,
    pub block_id: Hash,
    pub state_root: Hash,
    pub tx_ids: Vec<Hash>,
    pub receipts: Vec<Receipt>,
    pub receipt_root: Hash,
    /// The validator set of the next epoch, at an epoch boundary where it
    /// changes (see `ledger::execute`).
    pub validator_set_change: Option<ValidatorSet>,
}

/// The ledger and its mempool, as consensus sees them.
#[derive(Debug)]
pub struct Application {
    ledger: Ledger,
    mempool: Mempool,
}

impl Application {
    pub fn new(ledger: Ledger) -> Application {
        let mempool = Mempool::new(ledger.chain_id().clone());
        Application { ledger, mempool }
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn mempool(&self) -> &Mempool {
        &self.mempool
    }

    pub fn chain_id(&self) -> &ChainId {
        self.ledger.chain_id()
    }

    /// Admits a batch of encoded transactions to the mempool.
    pub fn submit(
        &mut self,
        raw: Vec<Vec<u8>>,
    ) -> Result<Vec<Result<Hash, AdmitError>>, LedgerError> {
        let view = self.ledger.view();
        self.mempool.admit_batch(&view, raw)
    }

    /// [`Application::submit`] for transactions already decoded, each with
    /// its bytes (see [`Mempool::admit_decoded`]).
    pub fn submit_decoded(
        &mut self,
        received: Vec<Received>,
    ) -> Result<Vec<Result<Hash, AdmitError>>, LedgerError> {
        let view = self.ledger.view();
        self.mempool.admit_decoded(&view, received)
    }

    /// Answers `Request::NeedPayload`: the payload and state root of a block
    /// extending `parent`. `pending` are the blocks not executed yet (the
    /// uncommitted ancestors, the parent included, and committed blocks
    /// still waiting to be applied); their transactions are not proposed
    /// again.
    pub fn propose(
        &self,
        parent: Option<&Block>,
        pending: &[&Block],
    ) -> Result<(Vec<u8>, Hash), LedgerError> {
        let parent_payload = Payload::of_block(parent)
            .map_err(|e| LedgerError::Store(format!("parent payload does not decode: {e}")))?;
        let executed = self.ledger.height();
        // At most the parent's height − 2: the block's certificate (for the
        // parent) commits the grandparent, which voters execute only after
        // they have voted, so the newest state they all hold is the one
        // below it. Execution then stays off the voting path.
        let attested = match parent {
            Some(p) => executed.min(Height(p.height().0.saturating_sub(2))),
            None => executed,
        };
        let (state_height, state_root) = if attested >= parent_payload.state_height {
            let root = if attested == executed {
                self.ledger.state_root()
            } else {
                self.ledger
                    .store()
                    .root(attested.0)
                    .map_err(|e| LedgerError::Store(e.to_string()))?
            };
            (attested, root)
        } else {
            // Behind the parent: attest what the parent attested.
            let root = parent.map(Block::state_root).unwrap_or(Hash::ZERO);
            (parent_payload.state_height, root)
        };
        let mut exclude = BTreeSet::new();
        for block in pending {
            if let Ok(p) = Payload::decode(block.payload()) {
                exclude.extend(p.txs.iter().map(|t| tx_id_of(t)));
            }
        }
        let params_max = self.max_block_txs()?;
        let max_txs = limits::MAX_BLOCK_TXS.min(usize::try_from(params_max).unwrap_or(usize::MAX));
        let txs = self.mempool.reap(
            &self.ledger.view(),
            max_txs,
            limits::MAX_BLOCK_BYTES,
            &exclude,
        )?;
        let payload = Payload { state_height, txs };
        Ok((payload.encode(), state_root))
    }

    fn max_block_txs(&self) -> Result<u64, LedgerError> {
        let view = self.ledger.view();
        let mut w = crate::ledger::Working::new(&view);
        Ok(crate::ledger::LedgerParams::load(&mut w)?.max_block_txs)
    }

    /// Answers `Request::ValidatePayload` for `block`, whose parent is
    /// `parent` (`None`: the epoch's root, which has no payload).
    pub fn validate(&mut self, block: &Block, parent: Option<&Block>) -> Result<(), PayloadError> {
        let payload = Payload::decode(block.payload())?;
        let parent_payload = Payload::of_block(parent)?;
        if payload.state_height < parent_payload.state_height {
            return Err(PayloadError::StateHeightRegressed {
                got: payload.state_height,
                parent: parent_payload.state_height,
            });
        }
        let executed = self.ledger.height();
        if payload.state_height > executed {
            return Err(PayloadError::StateNotExecuted {
                got: payload.state_height,
                executed,
            });
        }
        let ours = self
            .ledger
            .store()
            .root(payload.state_height.0)
            .map_err(|e| PayloadError::Store(e.to_string()))?;
        if ours != block.state_root() {
            return Err(PayloadError::StateRootMismatch {
                height: payload.state_height,
                ours,
                theirs: block.state_root(),
            });
        }
        let limit = self
            .max_block_txs()
            .map_err(|e| PayloadError::Store(e.to_string()))?;
        if payload.txs.len() as u64 > limit {
            return Err(PayloadError::TooManyTxs {
                got: payload.txs.len(),
                limit,
            });
        }
        let mut prepared = Vec::with_capacity(payload.txs.len());
        for (index, bytes) in payload.txs.iter().enumerate() {
            let tx = PreparedTx::decode(bytes).map_err(|e| PayloadError::BadTx {
                index,
                reason: e.to_string(),
            })?;
            prepared.push(tx);
        }
        let to_check = unverified(&prepared, &self.mempool);
        // Bad transactions come in block order: the first is reported.
        if let Some(&(index, _)) = verify_txs(self.ledger.chain_id(), &prepared, &to_check).first()
        {
            return Err(PayloadError::BadSignature { index });
        }
        for &i in &to_check {
            self.mempool.mark_verified(&prepared[i]);
        }
        Ok(())
    }

    /// Executes a committed block (the next height), with the node's `extra`
    /// writes in the same atomic batch, and drops its transactions from the
    /// mempool. Which transactions a block executes: [`executed_txs`].
    pub fn apply(&mut self, block: &Block, extra: &[ExtraWrite]) -> Result<Applied, LedgerError> {
        self.apply_with(block, |_, _, _| Ok(extra.to_vec()))
    }

    /// [`Application::apply`], with the extra writes built from the block's
    /// transactions and outcome (receipts, tx index) and the store before the
    /// block, in the block's own batch.
    pub fn apply_with<F>(&mut self, block: &Block, extra: F) -> Result<Applied, LedgerError>
    where
        F: FnOnce(
            &MerkleStore,
            &[PreparedTx],
            &BlockOutcome,
        ) -> Result<Vec<ExtraWrite>, LedgerError>,
    {
        let txs = executed_txs(block);
        let executed =
            self.ledger
                .execute_with(block.height(), &txs, &self.mempool, |store, outcome| {
                    extra(store, &txs, outcome)
                })?;
        let view = self.ledger.view();
        self.mempool.remove_committed(&view, &txs)?;
        Ok(Applied {
            height: block.height(),
            block_id: block.id(),
            state_root: executed.state_root,
            tx_ids: txs.iter().map(|t| t.id).collect(),
            receipt_root: executed.outcome.receipt_root,
            receipts: executed.outcome.receipts,
            validator_set_change: executed.outcome.validator_set_change,
        })
    }

    /// The validator set in force now: the answer to
    /// `Request::NeedValidatorSet` once the boundary block is applied.
    pub fn validator_set(&self) -> Result<ValidatorSet, LedgerError> {
        self.ledger.validator_set_in_force()
    }
}

/// The transactions a committed block executes, in order: its payload's
/// transactions that decode. A payload that does not decode (which a quorum
/// would never have certified) executes as an empty block. Every node, and
/// everything that reports on a block, must use this one rule.
pub fn executed_txs(block: &Block) -> Vec<PreparedTx> {
    match Payload::decode(block.payload()) {
        Ok(p) => p
            .txs
            .iter()
            .filter_map(|t| PreparedTx::decode(t).ok())
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn tx_id_of(encoded: &[u8]) -> Hash {
    // A tx that does not decode cannot be in the mempool, so any value that
    // matches nothing will do.
    commons_types::tx::SignedTx::decode(encoded)
        .map(|t| t.id())
        .unwrap_or(Hash::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trip_and_limits() {
        let p = Payload {
            state_height: Height(7),
            txs: vec![vec![1, 2, 3], vec![]],
        };
        assert_eq!(Payload::decode(&p.encode()).unwrap(), p);
        assert_eq!(Payload::tx_count(&p.encode()), 2);
        assert_eq!(Payload::tx_count(&[]), 0);
        assert_eq!(Payload::tx_count(&p.encode()[..10]), 0);
        let mut w = Writer::new();
        w.u64(0).u32((limits::MAX_BLOCK_TXS + 1) as u32);
        assert!(Payload::decode(&w.finish()).is_err());
        let mut trailing = p.encode();
        trailing.push(0);
        assert!(Payload::decode(&trailing).is_err());
    }
}
