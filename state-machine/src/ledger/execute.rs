//! Block execution: a deterministic function from (committed state, block)
//! to (writes, receipts).
//!
//! Order of work for a block at height `h`:
//! 1. Unbondings maturing at `h` return to their balances; leases ending at
//!    `h` close and refund their escrow.
//! 2. Signatures of every transaction not already verified by this node's
//!    mempool are batch-verified in parallel.
//! 3. Transactions run in block order. A transaction that is *invalid*
//!    (bad signature, wrong chain, wrong nonce, fee too low or unaffordable,
//!    excluded sender, wrong signer count) changes nothing. A *valid* one pays
//!    its fee to the treasury and advances its nonce; then its action runs in
//!    its own layer, which is dropped if the action fails, leaving only the fee
//!    and nonce. Every transaction gets a receipt.
//! 4. Governance closes the proposals whose periods end at `h`.
//! 5. At an epoch boundary, a newly decided validator set takes effect
//!    ([`BlockOutcome::validator_set_change`]).
//!
//! No wall clock, no randomness, no `HashMap` iteration, no floats: the same
//! blocks give the same writes on every machine.

use commons_types::batch::{self, VerifyItem};
use commons_types::tx::SignedTx;
use commons_types::{ChainId, Hash, Height, PublicKey, ValidatorSet};

use crate::ledger::action::{Action, TxBody, decode_body};
use crate::ledger::gov;
use crate::ledger::limits;
use crate::ledger::params::LedgerParams;
use crate::ledger::receipt::{Receipt, merkle_root, truncate_message};
use crate::ledger::state::{
    Lease, Settlement, Unbonding, decode_ids, decode_keys, encode_ids, encode_keys, key,
};
use crate::ledger::working::{StateRead, Working, Writes};
use crate::{LedgerError, TxError};

/// A transaction ready for execution: decoded envelope, id and encoded size.
#[derive(Clone, Debug)]
pub struct PreparedTx {
    pub tx: SignedTx,
    /// [`SignedTx::id`]: names the body and the signers' keys, not the
    /// signatures.
    pub id: Hash,
    /// Names the body with its signatures: what [`VerifiedTxs`] vouches for
    /// (see [`SignedTx::id_and_envelope_hash`]).
    pub envelope: Hash,
    pub encoded_len: usize,
}

impl PreparedTx {
    pub fn new(tx: SignedTx) -> PreparedTx {
        let encoded_len = tx.encode().len();
        PreparedTx::with_len(tx, encoded_len)
    }

    /// Decodes an encoded `SignedTx` (bounded by the types crate's limits).
    pub fn decode(bytes: &[u8]) -> Result<PreparedTx, TxError> {
        Ok(PreparedTx::with_len(SignedTx::decode(bytes)?, bytes.len()))
    }

    fn with_len(tx: SignedTx, encoded_len: usize) -> PreparedTx {
        let (id, envelope) = tx.id_and_envelope_hash();
        PreparedTx {
            tx,
            id,
            envelope,
            encoded_len,
        }
    }
}

/// What executing a block produced.
#[derive(Debug)]
pub struct BlockOutcome {
    pub height: Height,
    pub writes: Writes,
    pub receipts: Vec<Receipt>,
    pub tx_root: Hash,
    pub receipt_root: Hash,
    /// Set only at an epoch boundary where the validator set changes: the
    /// set of the next epoch, which consensus adopts right after committing
    /// this block. This is the one interface through which governance and
    /// slashing reach consensus.
    pub validator_set_change: Option<ValidatorSet>,
}

/// Where signatures were already checked: the mempool's record of verified
/// envelopes. Keyed by [`PreparedTx::envelope`], not the id: a block may
/// carry a body this node verified under other signatures (a Byzantine
/// leader re-signing, or forging, a known body), and those must be checked.
pub trait VerifiedTxs {
    fn is_verified(&self, tx: &PreparedTx) -> bool;
}

/// Nothing verified in advance: every signature is checked.
#[derive(Debug, Clone, Copy)]
pub struct NoneVerified;

impl VerifiedTxs for NoneVerified {
    fn is_verified(&self, _: &PreparedTx) -> bool {
        false
    }
}

pub(crate) fn check_block_size(txs: &[PreparedTx]) -> Result<(), LedgerError> {
    if txs.len() > limits::MAX_BLOCK_TXS {
        return Err(LedgerError::BlockTooLarge {
            got: txs.len(),
            limit: limits::MAX_BLOCK_TXS,
        });
    }
    Ok(())
}

/// Indices of the transactions of `txs` whose signatures `verified` does
/// not vouch for.
pub(crate) fn unverified(txs: &[PreparedTx], verified: &dyn VerifiedTxs) -> Vec<usize> {
    (0..txs.len())
        .filter(|&i| !verified.is_verified(&txs[i]))
        .collect()
}

/// Batch-verifies (in parallel, as one batch) the signatures of the
/// transactions `indices` of `txs`; returns `(transaction, signature)` of
/// each bad transaction's first bad signature, in transaction order.
pub(crate) fn verify_txs(
    chain: &ChainId,
    txs: &[PreparedTx],
    indices: &[usize],
) -> Vec<(usize, usize)> {
    let signed: Vec<Vec<u8>> = indices
        .iter()
        .map(|&i| txs[i].tx.signed_bytes(chain))
        .collect();
    let count: usize = indices.iter().map(|&i| txs[i].tx.signatures.len()).sum();
    let mut owners = Vec::with_capacity(count);
    let mut items: Vec<VerifyItem<'_>> = Vec::with_capacity(count);
    for (&i, signed) in indices.iter().zip(&signed) {
        for (sig_index, item) in txs[i].tx.verify_items(signed).enumerate() {
            owners.push((i, sig_index));
            items.push(item);
        }
    }
    let results = batch::verify_all(&items);
    let mut bad: Vec<(usize, usize)> = Vec::new();
    for ((tx_index, sig_index), ok) in owners.into_iter().zip(results) {
        // Signatures of a transaction are in order: keep the first bad one.
        if !ok && bad.last().is_none_or(|&(last, _)| last != tx_index) {
            bad.push((tx_index, sig_index));
        }
    }
    bad
}

/// Runs the block with its signature verdicts known: `bad` holds
/// `(transaction, signature)` for each transaction whose signature at that
/// index failed (see [`verify_txs`]); every other transaction's signatures
/// are taken as good. The callers have checked the block's size.
pub(crate) fn execute_verified(
    base: &dyn StateRead,
    chain: &ChainId,
    height: Height,
    txs: &[PreparedTx],
    bad: &[(usize, usize)],
) -> Result<BlockOutcome, LedgerError> {
    let mut w = Working::new(base);
    let params = LedgerParams::load(&mut w)?;

    release_unbondings(&mut w, height)?;
    w.commit_tx();
    expire_leases(&mut w, height)?;
    w.commit_tx();

    let mut bad_signature: Vec<Option<usize>> = vec![None; txs.len()];
    for &(tx_index, sig_index) in bad {
        if let Some(slot) = bad_signature.get_mut(tx_index) {
            *slot = Some(sig_index);
        }
    }
    let mut run = Run {
        w: &mut w,
        chain,
        params: &params,
        height,
        txs,
    };
    let receipts = run.all(&bad_signature)?;

    gov::end_block(&mut w, &params, height)?;
    w.commit_tx();
    let validator_set_change = epoch_boundary(&mut w, &params, height)?;
    w.commit_tx();

    let tx_ids: Vec<Hash> = txs.iter().map(|t| t.id).collect();
    let receipt_hashes: Vec<Hash> = receipts.iter().map(Receipt::hash).collect();
    Ok(BlockOutcome {
        height,
        writes: w.into_writes(),
        tx_root: merkle_root(&tx_ids),
        receipt_root: merkle_root(&receipt_hashes),
        receipts,
        validator_set_change,
    })
}

/// The transactions of one block, run in order on the block's working state.
struct Run<'r, 'a> {
    w: &'r mut Working<'a>,
    chain: &'r ChainId,
    params: &'r LedgerParams,
    height: Height,
    txs: &'r [PreparedTx],
}

impl Run<'_, '_> {
    /// Runs every transaction (`bad_signature[i]`: the first bad signature
    /// of transaction `i`, if any); returns the receipts.
    fn all(&mut self, bad_signature: &[Option<usize>]) -> Result<Vec<Receipt>, LedgerError> {
        let mut receipts = Vec::with_capacity(self.txs.len());
        for (index, prepared) in self.txs.iter().enumerate() {
            let mut exec = Exec {
                w: self.w,
                chain: self.chain,
                params: self.params,
                height: self.height,
            };
            let bad = bad_signature.get(index).copied().flatten();
            let (code, message, fee) = match exec.run(prepared, bad)? {
                Ok(fee) => (0, String::new(), fee),
                Err((e, fee)) => (
                    e.code(),
                    truncate_message(e.to_string(), limits::MAX_RECEIPT_MESSAGE_BYTES),
                    fee,
                ),
            };
            receipts.push(Receipt {
                tx_id: prepared.id,
                height: self.height,
                code,
                message,
                fee,
            });
        }
        Ok(receipts)
    }
}

/// At an epoch boundary (a height that is a multiple of
/// `epoch_length_blocks`), a validator set decided since the last boundary
/// (by governance or slashing, waiting in `NEXT_VALIDATORS`) becomes the set
/// in force, and the outcome hands it to consensus, which starts the new
/// epoch right after committing this block. Between boundaries decisions
/// accumulate, so the set changes at most once per epoch and every validator
/// knows in advance at which heights it can.
fn epoch_boundary(
    w: &mut Working<'_>,
    params: &LedgerParams,
    height: Height,
) -> Result<Option<ValidatorSet>, LedgerError> {
    let length = params
        .set
        .get(commons_governance::Param::EpochLengthBlocks)
        .max(1);
    if !height.0.is_multiple_of(length) {
        return Ok(None);
    }
    let Some(set) = w.get_decoded(key::NEXT_VALIDATORS, gov::decode_validator_set)? else {
        return Ok(None);
    };
    w.put(key::VALIDATORS.to_vec(), gov::encode_validator_set(&set));
    w.delete(key::NEXT_VALIDATORS.to_vec());
    Ok(Some(set))
}

fn release_unbondings(w: &mut Working<'_>, height: Height) -> Result<(), LedgerError> {
    let due_key = key::unbonding_due(height);
    let Some(accounts) = w.get_decoded(&due_key, decode_keys)? else {
        return Ok(());
    };
    for id in accounts {
        let mut account = w.account(&id)?;
        let (due, pending): (Vec<Unbonding>, Vec<Unbonding>) =
            account.unbonding.iter().partition(|u| u.release <= height);
        let released: u64 = due.iter().map(|u| u.amount).sum();
        account.balance = account
            .balance
            .checked_add(released)
            .ok_or_else(|| corrupt_amount(&id))?;
        account.unbonding = pending;
        w.put_account(id, account);
    }
    w.delete(due_key);
    Ok(())
}

fn expire_leases(w: &mut Working<'_>, height: Height) -> Result<(), LedgerError> {
    let due_key = key::leases_due(height);
    let Some(ids) = w.get_decoded(&due_key, decode_ids)? else {
        return Ok(());
    };
    for id in ids {
        // Closed early: nothing left to expire.
        let Some(lease) = load_lease(w, id)? else {
            continue;
        };
        let mut buyer = w.account(&lease.buyer)?;
        buyer.balance = buyer
            .balance
            .checked_add(lease.escrow)
            .ok_or_else(|| corrupt_amount(&lease.buyer))?;
        w.put_account(lease.buyer, buyer);
        w.delete(key::lease(id));
    }
    w.delete(due_key);
    Ok(())
}

/// Supply is bounded by `u64`, so a holding that overflows means the state
/// is corrupt, not that a transaction was bad.
fn corrupt_amount(id: &PublicKey) -> LedgerError {
    LedgerError::Store(format!(
        "amount overflow in account {id}: supply invariant broken"
    ))
}

pub(crate) fn load_lease(w: &mut Working<'_>, id: u64) -> Result<Option<Lease>, LedgerError> {
    w.get_decoded(&key::lease(id), Lease::decode)
}

/// A transaction's failure, with the fee it still paid.
type Failure = (TxError, u64);

struct Exec<'w, 'a> {
    w: &'w mut Working<'a>,
    chain: &'w ChainId,
    params: &'w LedgerParams,
    height: Height,
}

impl Exec<'_, '_> {
    /// Runs one transaction. The outer `Result` is for ledger failures; the
    /// inner one is the transaction's outcome: the fee charged, or the error
    /// and the fee charged anyway.
    fn run(
        &mut self,
        prepared: &PreparedTx,
        bad_signature: Option<usize>,
    ) -> Result<Result<u64, Failure>, LedgerError> {
        let body = match self.check(prepared, bad_signature)? {
            Ok(body) => body,
            Err(e) => return Ok(Err((e, 0))),
        };
        let fee = body.fee;
        let signers: Vec<PublicKey> = prepared.tx.signatures.iter().map(|(k, _)| *k).collect();
        match self.apply(&signers, &body.action)? {
            Ok(()) => {
                self.w.commit_tx();
                Ok(Ok(fee))
            }
            Err(e) => {
                self.w.discard_tx();
                Ok(Err((e, fee)))
            }
        }
    }

    /// Validity checks; on success the fee is paid and the nonce advanced
    /// (committed), and the decoded body is returned.
    fn check(
        &mut self,
        prepared: &PreparedTx,
        bad_signature: Option<usize>,
    ) -> Result<Result<TxBody, TxError>, LedgerError> {
        if let Some(index) = bad_signature {
            return Ok(Err(TxError::BadSignature { index }));
        }
        let body = match decode_body(&prepared.tx) {
            Ok(body) => body,
            Err(e) => return Ok(Err(e)),
        };
        if body.chain_id != self.chain.as_str() {
            return Ok(Err(TxError::WrongChain {
                expected: self.chain.to_string(),
                got: body.chain_id,
            }));
        }
        let needed = body.action.signers_needed();
        if prepared.tx.signatures.len() != needed {
            return Ok(Err(TxError::SignerCount {
                needed,
                got: prepared.tx.signatures.len(),
            }));
        }
        let payer_id = prepared.tx.signatures[0].0;
        let mut payer = self.w.account(&payer_id)?;
        if payer.excluded {
            return Ok(Err(TxError::Excluded(payer_id)));
        }
        if body.nonce != payer.nonce {
            return Ok(Err(TxError::BadNonce {
                expected: payer.nonce,
                got: body.nonce,
            }));
        }
        let required = self.params.required_fee(prepared.encoded_len);
        if body.fee < required {
            return Ok(Err(TxError::FeeTooLow {
                offered: body.fee,
                required,
            }));
        }
        if payer.balance < body.fee {
            return Ok(Err(TxError::InsufficientFunds {
                account: payer_id,
                needed: body.fee,
                available: payer.balance,
            }));
        }
        payer.balance -= body.fee;
        // Nonces start at 0 and advance by one per transaction: u64 cannot
        // be exhausted, and saturating keeps a corrupt record panic-free.
        payer.nonce = payer.nonce.saturating_add(1);
        let treasury = self.w.treasury()?;
        let treasury = treasury.checked_add(body.fee).ok_or_else(|| {
            LedgerError::Store("treasury overflow: supply invariant broken".into())
        })?;
        self.w.put_account(payer_id, payer);
        self.w.put_u64(key::TREASURY, treasury);
        self.w.commit_tx();
        Ok(Ok(body))
    }

    fn apply(
        &mut self,
        signers: &[PublicKey],
        action: &Action,
    ) -> Result<Result<(), TxError>, LedgerError> {
        let sender = signers[0];
        match action {
            Action::Transfer { to, amount } => self.transfer(sender, *to, *amount),
            Action::Bond { amount } => self.bond(sender, *amount),
            Action::Unbond { amount } => self.unbond(sender, *amount),
            Action::Settle {
                marketplace,
                trade_id,
                buyer,
                seller,
                resource,
                quantity,
                unit_price,
                marketplace_fee,
            } => {
                for (index, (expected, got)) in [(*buyer, signers[0]), (*seller, signers[1])]
                    .into_iter()
                    .enumerate()
                {
                    if expected != got {
                        return Ok(Err(TxError::WrongSigner {
                            index,
                            expected,
                            got,
                        }));
                    }
                }
                let settlement = Settlement {
                    buyer: *buyer,
                    seller: *seller,
                    resource: *resource,
                    quantity: *quantity,
                    unit_price: *unit_price,
                    marketplace_fee: *marketplace_fee,
                    height: self.height,
                };
                self.settle(*marketplace, *trade_id, settlement)
            }
            Action::OpenLease {
                provider,
                resource,
                escrow,
                rate_per_block,
                duration_blocks,
            } => self.open_lease(
                sender,
                *provider,
                *resource,
                *escrow,
                *rate_per_block,
                *duration_blocks,
            ),
            Action::Claim { lease_id, amount } => self.claim(sender, *lease_id, *amount),
            Action::CloseLease { lease_id } => self.close_lease(sender, *lease_id),
            Action::Propose { content, deposit } => {
                gov::propose(self.w, self.params, self.height, sender, content, *deposit)
            }
            Action::Deposit {
                proposal_id,
                amount,
            } => gov::deposit(
                self.w,
                self.params,
                self.height,
                sender,
                *proposal_id,
                *amount,
            ),
            Action::Vote {
                proposal_id,
                options,
            } => gov::vote(self.w, self.height, sender, *proposal_id, options),
            Action::Evidence { evidence } => {
                crate::ledger::evidence::apply(self.w, self.params, self.chain, evidence)
            }
        }
    }

    /// Moves `amount` from `from`'s balance to `to`'s.
    fn pay(
        &mut self,
        from: PublicKey,
        to: PublicKey,
        amount: u64,
    ) -> Result<Result<(), TxError>, LedgerError> {
        let mut src = self.w.account(&from)?;
        if src.balance < amount {
            return Ok(Err(TxError::InsufficientFunds {
                account: from,
                needed: amount,
                available: src.balance,
            }));
        }
        src.balance -= amount;
        self.w.put_account(from, src);
        let mut dst = self.w.account(&to)?;
        let Some(balance) = dst.balance.checked_add(amount) else {
            return Ok(Err(TxError::Overflow("recipient balance")));
        };
        dst.balance = balance;
        self.w.put_account(to, dst);
        Ok(Ok(()))
    }

    fn transfer(
        &mut self,
        from: PublicKey,
        to: PublicKey,
        amount: u64,
    ) -> Result<Result<(), TxError>, LedgerError> {
        self.pay(from, to, amount)
    }

    fn bond(&mut self, who: PublicKey, amount: u64) -> Result<Result<(), TxError>, LedgerError> {
        let mut account = self.w.account(&who)?;
        if account.balance < amount {
            return Ok(Err(TxError::InsufficientFunds {
                account: who,
                needed: amount,
                available: account.balance,
            }));
        }
        gov::before_stake_change(self.w, &who, account.bonded)?;
        gov::adjust_bonded_total(self.w, amount, 0)?;
        account.balance -= amount;
        account.bonded = match account.bonded.checked_add(amount) {
            Some(b) => b,
            None => return Ok(Err(TxError::Overflow("bonded stake"))),
        };
        self.w.put_account(who, account);
        Ok(Ok(()))
    }

    fn unbond(&mut self, who: PublicKey, amount: u64) -> Result<Result<(), TxError>, LedgerError> {
        let mut account = self.w.account(&who)?;
        if account.bonded < amount {
            return Ok(Err(TxError::InsufficientFunds {
                account: who,
                needed: amount,
                available: account.bonded,
            }));
        }
        if account.unbonding.len() >= limits::MAX_UNBONDING_ENTRIES {
            return Ok(Err(TxError::TooManyUnbondings(who)));
        }
        let release = Height(
            self.height
                .0
                .saturating_add(self.params.unbonding_period_blocks.max(1)),
        );
        let due_key = key::unbonding_due(release);
        let mut due = self
            .w
            .get_decoded(&due_key, decode_keys)?
            .unwrap_or_default();
        if !due.contains(&who) {
            if due.len() >= limits::MAX_DUE_PER_HEIGHT {
                return Ok(Err(TxError::SlotFull(release)));
            }
            due.push(who);
            self.w.put(due_key, encode_keys(&due));
        }
        gov::before_stake_change(self.w, &who, account.bonded)?;
        gov::adjust_bonded_total(self.w, 0, amount)?;
        account.bonded -= amount;
        account.unbonding.push(Unbonding { release, amount });
        self.w.put_account(who, account);
        Ok(Ok(()))
    }

    fn settle(
        &mut self,
        marketplace: PublicKey,
        trade_id: u64,
        s: Settlement,
    ) -> Result<Result<(), TxError>, LedgerError> {
        let record_key = key::settlement(&marketplace, trade_id);
        if self.w.get(&record_key)?.is_some() {
            return Ok(Err(TxError::DuplicateTrade {
                marketplace,
                trade_id,
            }));
        }
        if self.w.account(&s.seller)?.excluded {
            return Ok(Err(TxError::Excluded(s.seller)));
        }
        let Some(price) = s.quantity.checked_mul(s.unit_price) else {
            return Ok(Err(TxError::Overflow("quantity × unit price")));
        };
        if let Err(e) = self.pay(s.buyer, s.seller, price)? {
            return Ok(Err(e));
        }
        if s.marketplace_fee > 0
            && let Err(e) = self.pay(s.buyer, marketplace, s.marketplace_fee)?
        {
            return Ok(Err(e));
        }
        self.w.put(record_key, s.encode());
        Ok(Ok(()))
    }

    fn open_lease(
        &mut self,
        buyer: PublicKey,
        provider: PublicKey,
        resource: crate::ledger::state::Resource,
        escrow: u64,
        rate_per_block: u64,
        duration_blocks: u64,
    ) -> Result<Result<(), TxError>, LedgerError> {
        if duration_blocks > self.params.lease_max_duration_blocks {
            return Ok(Err(TxError::InvalidAction(format!(
                "lease duration {duration_blocks} exceeds the maximum {}",
                self.params.lease_max_duration_blocks
            ))));
        }
        if provider == buyer {
            return Ok(Err(TxError::InvalidAction(
                "a lease needs two parties".into(),
            )));
        }
        let mut account = self.w.account(&buyer)?;
        if account.balance < escrow {
            return Ok(Err(TxError::InsufficientFunds {
                account: buyer,
                needed: escrow,
                available: account.balance,
            }));
        }
        let end = Height(self.height.0.saturating_add(duration_blocks));
        let due_key = key::leases_due(end);
        let mut due = self
            .w
            .get_decoded(&due_key, decode_ids)?
            .unwrap_or_default();
        if due.len() >= limits::MAX_DUE_PER_HEIGHT {
            return Ok(Err(TxError::SlotFull(end)));
        }
        let id = self.w.get_u64(key::NEXT_LEASE_ID, "next lease id")?;
        due.push(id);
        self.w.put(due_key, encode_ids(&due));
        self.w.put_u64(key::NEXT_LEASE_ID, id.saturating_add(1));
        account.balance -= escrow;
        self.w.put_account(buyer, account);
        let lease = Lease {
            buyer,
            provider,
            resource,
            escrow,
            claimed: 0,
            rate_per_block,
            start: self.height,
            end,
        };
        self.w.put(key::lease(id), lease.encode());
        Ok(Ok(()))
    }

    fn claim(
        &mut self,
        who: PublicKey,
        lease_id: u64,
        amount: u64,
    ) -> Result<Result<(), TxError>, LedgerError> {
        let Some(mut lease) = load_lease(self.w, lease_id)? else {
            return Ok(Err(TxError::UnknownLease(lease_id)));
        };
        if lease.provider != who {
            return Ok(Err(TxError::NotLeaseParty {
                lease: lease_id,
                who,
                role: "provider",
            }));
        }
        // Usage accrues per block elapsed since the lease opened, up to its end.
        let elapsed = self.height.0.min(lease.end.0).saturating_sub(lease.start.0);
        let accrued = u128::from(elapsed) * u128::from(lease.rate_per_block);
        let allowed_total = accrued.min(u128::from(lease.escrow) + u128::from(lease.claimed));
        let allowed = allowed_total.saturating_sub(u128::from(lease.claimed));
        if u128::from(amount) > allowed {
            return Ok(Err(TxError::ClaimExceedsRate {
                lease: lease_id,
                amount,
                allowed: u64::try_from(allowed).unwrap_or(u64::MAX),
            }));
        }
        // allowed <= escrow, so these cannot underflow or overflow.
        lease.escrow -= amount;
        lease.claimed += amount;
        let mut provider = self.w.account(&who)?;
        let Some(balance) = provider.balance.checked_add(amount) else {
            return Ok(Err(TxError::Overflow("provider balance")));
        };
        provider.balance = balance;
        self.w.put_account(who, provider);
        self.w.put(key::lease(lease_id), lease.encode());
        Ok(Ok(()))
    }

    fn close_lease(
        &mut self,
        who: PublicKey,
        lease_id: u64,
    ) -> Result<Result<(), TxError>, LedgerError> {
        let Some(lease) = load_lease(self.w, lease_id)? else {
            return Ok(Err(TxError::UnknownLease(lease_id)));
        };
        if lease.buyer != who && lease.provider != who {
            return Ok(Err(TxError::NotLeaseParty {
                lease: lease_id,
                who,
                role: "buyer or provider",
            }));
        }
        let mut buyer = self.w.account(&lease.buyer)?;
        let Some(balance) = buyer.balance.checked_add(lease.escrow) else {
            return Ok(Err(TxError::Overflow("buyer balance")));
        };
        buyer.balance = balance;
        self.w.put_account(lease.buyer, buyer);
        self.w.delete(key::lease(lease_id));
        Ok(Ok(()))
    }
}
