//! The mempool: transactions admitted but not yet committed.
//!
//! Admission takes a whole incoming batch at once: each transaction is
//! decoded under the size limits, the signatures of the whole batch are
//! verified in parallel (rayon), then each is checked against committed
//! state: chain id, nonce (not already used, not too far ahead), fee (at
//! least the required fee, affordable). Every transaction gets its own
//! verdict. The pool is bounded by count, bytes and per-sender entries; a
//! full pool refuses with [`AdmitError::Full`] and never grows.
//!
//! Pending spend: what a transaction can take from its payer's balance is
//! its fee plus what its action moves out of the payer's account (a
//! transfer's amount, a bond, a settlement's price and marketplace fee for
//! its buyer, a lease's escrow, a proposal's or a deposit's amount). A
//! payer's pending spends, together, never exceed its committed balance:
//! admission refuses the transaction that would pass it, and reaping cuts a
//! payer's nonce run at the first transaction the balance left could not
//! cover (the rest waits). So every transaction this node proposes can pay
//! its fee, and one account holding a single fee cannot fill a block with
//! transactions that fail without paying.
//!
//! Envelopes whose signatures were verified here are remembered (bounded,
//! oldest forgotten first, by [`PreparedTx::envelope`]: body, keys and
//! signatures, not the id, which leaves the signatures out), so block
//! validation and execution can skip them.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use commons_types::batch::{self, VerifyItem};
use commons_types::{ChainId, Hash, PublicKey};

use crate::ledger::action::{Action, TxBody, decode_body};
use crate::ledger::execute::{PreparedTx, VerifiedTxs};
use crate::ledger::limits;
use crate::ledger::params::LedgerParams;
use crate::ledger::working::{StateRead, Working};
use crate::{LedgerError, TxError};

/// Why a transaction was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    #[error(transparent)]
    Invalid(#[from] TxError),
    #[error("transaction {0} is already in the mempool")]
    Duplicate(Hash),
    #[error("mempool is full ({reason}); retry later")]
    Full { reason: &'static str },
    #[error("nonce {got} is too far ahead of the account's next nonce {expected}")]
    NonceTooFarAhead { expected: u64, got: u64 },
}

#[derive(Debug, Clone)]
struct Entry {
    prepared: PreparedTx,
    bytes: Vec<u8>,
    sender: PublicKey,
    nonce: u64,
    seq: u64,
    /// What it can take from its payer's balance (see the module docs).
    spend: u128,
}

/// What a transaction can take from `payer`'s balance: its fee and what its
/// action moves out of the payer's account when it succeeds.
fn spend_of(body: &TxBody, payer: &PublicKey) -> u128 {
    let debit = match &body.action {
        Action::Transfer { amount, .. }
        | Action::Bond { amount }
        | Action::Deposit { amount, .. } => u128::from(*amount),
        Action::Settle {
            buyer,
            quantity,
            unit_price,
            marketplace_fee,
            ..
        } if buyer == payer => {
            u128::from(*quantity) * u128::from(*unit_price) + u128::from(*marketplace_fee)
        }
        Action::OpenLease { escrow, .. } => u128::from(*escrow),
        Action::Propose { deposit, .. } => u128::from(*deposit),
        Action::Settle { .. }
        | Action::Unbond { .. }
        | Action::Claim { .. }
        | Action::CloseLease { .. }
        | Action::Vote { .. }
        | Action::Evidence { .. } => 0,
    };
    u128::from(body.fee) + debit
}

/// Bounded memory of verified envelope hashes. Looked up for every
/// transaction at admission, in proposals and in execution, never iterated:
/// a hash set (std's randomly keyed hasher, so ids ground by an attacker
/// cannot be aimed at one bucket), where a B-tree walked several nodes and
/// some twenty 32-byte comparisons in cold memory per lookup.
#[derive(Debug, Default)]
struct VerifiedCache {
    set: HashSet<Hash>,
    order: VecDeque<Hash>,
}

impl VerifiedCache {
    fn insert(&mut self, envelope: Hash) {
        if self.set.insert(envelope) {
            self.order.push_back(envelope);
            while self.order.len() > limits::VERIFIED_CACHE_MAX {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
}

/// A transaction as it arrived: its decoding (with its id) and its bytes.
pub type Received = (Result<PreparedTx, TxError>, Vec<u8>);

/// Decodes each transaction once, keeping its bytes: what
/// [`Mempool::admit_decoded`] takes, for callers that need the ids first.
pub fn decode_received(raw: Vec<Vec<u8>>) -> Vec<Received> {
    raw.into_iter()
        .map(|bytes| (PreparedTx::decode(&bytes), bytes))
        .collect()
}

/// Transactions waiting for a block.
#[derive(Debug)]
pub struct Mempool {
    chain: ChainId,
    /// By id; never iterated (proposals go in `by_seq` order), so a hash
    /// map, as for the verified cache.
    entries: HashMap<Hash, Entry>,
    by_sender: BTreeMap<PublicKey, BTreeMap<u64, Hash>>,
    /// The sum of each sender's pending spends.
    spend_by_sender: BTreeMap<PublicKey, u128>,
    by_seq: BTreeMap<u64, Hash>,
    bytes: usize,
    next_seq: u64,
    verified: VerifiedCache,
}

impl VerifiedTxs for Mempool {
    fn is_verified(&self, tx: &PreparedTx) -> bool {
        self.verified.set.contains(&tx.envelope)
    }
}

impl Mempool {
    pub fn new(chain: ChainId) -> Mempool {
        Mempool {
            chain,
            entries: HashMap::new(),
            by_sender: BTreeMap::new(),
            spend_by_sender: BTreeMap::new(),
            by_seq: BTreeMap::new(),
            bytes: 0,
            next_seq: 0,
            verified: VerifiedCache::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn contains(&self, id: &Hash) -> bool {
        self.entries.contains_key(id)
    }

    /// Admits a batch of encoded transactions against committed `state`,
    /// returning one verdict per input, in order.
    pub fn admit_batch(
        &mut self,
        state: &dyn StateRead,
        raw: Vec<Vec<u8>>,
    ) -> Result<Vec<Result<Hash, AdmitError>>, LedgerError> {
        self.admit_decoded(state, decode_received(raw))
    }

    /// [`Mempool::admit_batch`] for transactions the caller has decoded
    /// already (each with its bytes, as `PreparedTx::decode` left them), so
    /// that a node that needed their ids first does not decode them twice.
    pub fn admit_decoded(
        &mut self,
        state: &dyn StateRead,
        received: Vec<Received>,
    ) -> Result<Vec<Result<Hash, AdmitError>>, LedgerError> {
        let (decoded, raw): (Vec<Result<PreparedTx, TxError>>, Vec<Vec<u8>>) =
            received.into_iter().unzip();

        // One parallel batch for every signature of every decodable input.
        let signed: Vec<Option<Vec<u8>>> = decoded
            .iter()
            .map(|d| d.as_ref().ok().map(|p| p.tx.signed_bytes(&self.chain)))
            .collect();
        let mut owners = Vec::new();
        let mut items: Vec<VerifyItem<'_>> = Vec::new();
        for (i, (d, s)) in decoded.iter().zip(&signed).enumerate() {
            if let (Ok(p), Some(s)) = (d, s) {
                for (sig_index, item) in p.tx.verify_items(s).enumerate() {
                    owners.push((i, sig_index));
                    items.push(item);
                }
            }
        }
        let results = batch::verify_all(&items);
        let mut bad_sig: Vec<Option<usize>> = vec![None; raw.len()];
        for ((i, sig_index), ok) in owners.into_iter().zip(results) {
            if !ok && bad_sig[i].is_none() {
                bad_sig[i] = Some(sig_index);
            }
        }

        let mut w = Working::new(state);
        let params = LedgerParams::load(&mut w)?;
        let mut verdicts = Vec::with_capacity(raw.len());
        for ((d, bytes), bad) in decoded.into_iter().zip(raw).zip(bad_sig) {
            let verdict = match d {
                Err(e) => Err(AdmitError::Invalid(e)),
                Ok(_) if bad.is_some() => Err(AdmitError::Invalid(TxError::BadSignature {
                    index: bad.unwrap_or(0),
                })),
                Ok(prepared) => self.admit_one(&mut w, &params, prepared, bytes)?,
            };
            verdicts.push(verdict);
        }
        Ok(verdicts)
    }

    fn admit_one(
        &mut self,
        w: &mut Working<'_>,
        params: &LedgerParams,
        prepared: PreparedTx,
        bytes: Vec<u8>,
    ) -> Result<Result<Hash, AdmitError>, LedgerError> {
        let id = prepared.id;
        // Signatures are good: remember that even if admission fails below,
        // since the same transaction may come back in a block.
        self.verified.insert(prepared.envelope);
        if self.entries.contains_key(&id) {
            return Ok(Err(AdmitError::Duplicate(id)));
        }
        let body = match decode_body(&prepared.tx) {
            Ok(b) => b,
            Err(e) => return Ok(Err(e.into())),
        };
        if body.chain_id != self.chain.as_str() {
            return Ok(Err(TxError::WrongChain {
                expected: self.chain.to_string(),
                got: body.chain_id,
            }
            .into()));
        }
        let needed = body.action.signers_needed();
        if prepared.tx.signatures.len() != needed {
            return Ok(Err(TxError::SignerCount {
                needed,
                got: prepared.tx.signatures.len(),
            }
            .into()));
        }
        let sender = prepared.tx.signatures[0].0;
        let account = w.account(&sender)?;
        if account.excluded {
            return Ok(Err(TxError::Excluded(sender).into()));
        }
        if body.nonce < account.nonce {
            return Ok(Err(TxError::BadNonce {
                expected: account.nonce,
                got: body.nonce,
            }
            .into()));
        }
        if body.nonce >= account.nonce.saturating_add(limits::MEMPOOL_NONCE_WINDOW) {
            return Ok(Err(AdmitError::NonceTooFarAhead {
                expected: account.nonce,
                got: body.nonce,
            }));
        }
        let required = params.required_fee(prepared.encoded_len);
        if body.fee < required {
            return Ok(Err(TxError::FeeTooLow {
                offered: body.fee,
                required,
            }
            .into()));
        }
        // This one's spend on top of what the payer's pending ones take.
        let spend = spend_of(&body, &sender);
        let needed = self
            .spend_by_sender
            .get(&sender)
            .copied()
            .unwrap_or(0)
            .saturating_add(spend);
        if u128::from(account.balance) < needed {
            return Ok(Err(TxError::InsufficientFunds {
                account: sender,
                needed: u64::try_from(needed).unwrap_or(u64::MAX),
                available: account.balance,
            }
            .into()));
        }
        let pending = self.by_sender.get(&sender);
        if pending.is_some_and(|p| p.contains_key(&body.nonce)) {
            // One transaction per (sender, nonce): a second would be a replay
            // of the nonce, only one of which can ever commit.
            return Ok(Err(TxError::BadNonce {
                expected: account.nonce,
                got: body.nonce,
            }
            .into()));
        }
        if pending.is_some_and(|p| p.len() >= limits::MEMPOOL_MAX_PER_SENDER) {
            return Ok(Err(AdmitError::Full {
                reason: "too many pending transactions from this sender",
            }));
        }
        if self.entries.len() >= limits::MEMPOOL_MAX_TXS {
            return Ok(Err(AdmitError::Full {
                reason: "transaction count limit",
            }));
        }
        if self.bytes + bytes.len() > limits::MEMPOOL_MAX_BYTES {
            return Ok(Err(AdmitError::Full {
                reason: "byte limit",
            }));
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.bytes += bytes.len();
        self.by_sender
            .entry(sender)
            .or_default()
            .insert(body.nonce, id);
        *self.spend_by_sender.entry(sender).or_default() += spend;
        self.by_seq.insert(seq, id);
        self.entries.insert(
            id,
            Entry {
                prepared,
                bytes,
                sender,
                nonce: body.nonce,
                seq,
                spend,
            },
        );
        Ok(Ok(id))
    }

    /// Transactions for the next block, in arrival order, taking each
    /// sender's transactions only in unbroken nonce order from its committed
    /// nonce, within `max_txs` and `max_bytes`. Returns the encoded
    /// transactions.
    /// Transactions in `exclude` (already in uncommitted blocks) are
    /// skipped but count as taken for their sender's nonce order and
    /// balance. A sender's run stops at the first transaction its committed
    /// balance, less what the run took before it, could not cover.
    pub fn reap(
        &self,
        state: &dyn StateRead,
        max_txs: usize,
        max_bytes: usize,
        exclude: &BTreeSet<Hash>,
    ) -> Result<Vec<Vec<u8>>, LedgerError> {
        let mut w = Working::new(state);
        let mut next_nonce: BTreeMap<PublicKey, u64> = BTreeMap::new();
        // Each sender's committed balance less what its run took so far.
        let mut budget: BTreeMap<PublicKey, u128> = BTreeMap::new();
        let mut out = Vec::new();
        let mut bytes = 0usize;
        // Walk in arrival order; a transaction whose predecessor nonce is not
        // yet taken waits, and is retried after later ones fill the gap.
        let mut waiting: BTreeMap<(PublicKey, u64), &Entry> = BTreeMap::new();
        for id in self.by_seq.values() {
            if out.len() >= max_txs {
                break;
            }
            let Some(entry) = self.entries.get(id) else {
                continue;
            };
            let expected = match next_nonce.get(&entry.sender) {
                Some(n) => *n,
                None => {
                    let account = w.account(&entry.sender)?;
                    budget.insert(entry.sender, u128::from(account.balance));
                    account.nonce
                }
            };
            if entry.nonce != expected {
                if entry.nonce > expected {
                    waiting.insert((entry.sender, entry.nonce), entry);
                }
                next_nonce.insert(entry.sender, expected);
                continue;
            }
            let mut current = Some(entry);
            let mut nonce = expected;
            while let Some(e) = current {
                let left = budget.entry(e.sender).or_default();
                if e.spend > *left {
                    // Unaffordable: the run stops here, and the rest of it
                    // waits (its nonces cannot come before this one).
                    break;
                }
                if exclude.contains(&e.prepared.id) {
                    *left -= e.spend;
                    nonce += 1;
                    current = waiting.remove(&(e.sender, nonce));
                    continue;
                }
                if out.len() >= max_txs || bytes + e.bytes.len() > max_bytes {
                    break;
                }
                *left -= e.spend;
                bytes += e.bytes.len();
                out.push(e.bytes.clone());
                nonce += 1;
                current = waiting.remove(&(e.sender, nonce));
            }
            next_nonce.insert(entry.sender, nonce);
        }
        Ok(out)
    }

    /// Drops the committed transactions, and every pending transaction of
    /// their senders whose nonce the committed state has passed (another
    /// transaction with that nonce won, so these can never commit).
    pub fn remove_committed(
        &mut self,
        state: &dyn StateRead,
        committed: &[PreparedTx],
    ) -> Result<(), LedgerError> {
        let mut senders = BTreeSet::new();
        for prepared in committed {
            self.remove(&prepared.id);
            if let Some(sender) = prepared.tx.fee_payer() {
                senders.insert(sender);
            }
        }
        let mut w = Working::new(state);
        for sender in senders {
            let nonce = w.account(&sender)?.nonce;
            let stale: Vec<Hash> = self
                .by_sender
                .get(&sender)
                .map(|p| p.range(..nonce).map(|(_, id)| *id).collect())
                .unwrap_or_default();
            for id in stale {
                self.remove(&id);
            }
        }
        Ok(())
    }

    fn remove(&mut self, id: &Hash) -> Option<Entry> {
        let entry = self.entries.remove(id)?;
        self.bytes -= entry.bytes.len();
        self.by_seq.remove(&entry.seq);
        if let Some(p) = self.by_sender.get_mut(&entry.sender) {
            p.remove(&entry.nonce);
            if p.is_empty() {
                self.by_sender.remove(&entry.sender);
            }
        }
        if let Some(total) = self.spend_by_sender.get_mut(&entry.sender) {
            *total = total.saturating_sub(entry.spend);
            if !self.by_sender.contains_key(&entry.sender) {
                self.spend_by_sender.remove(&entry.sender);
            }
        }
        Some(entry)
    }

    /// Records that `tx`'s signatures verified (in a proposal's check), so
    /// executing its block skips them.
    pub fn mark_verified(&mut self, tx: &PreparedTx) {
        self.verified.insert(tx.envelope);
    }

    /// The decoded transaction, if pending.
    pub fn get(&self, id: &Hash) -> Option<&PreparedTx> {
        self.entries.get(id).map(|e| &e.prepared)
    }
}
