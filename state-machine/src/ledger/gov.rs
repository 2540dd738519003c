//! The ledger side of the DAO: where proposals, deposits, votes and stake
//! snapshots live in the state, and how passed proposals are carried out.
//! The rules themselves are `commons_governance`'s.
//!
//! Keys (tag `g`):
//!
//! | key | value |
//! | --- | --- |
//! | `gnext` | next proposal id |
//! | `gactive` | ids of proposals in their deposit or voting period |
//! | `gvoting` | ids of proposals in their voting period |
//! | `gp` ‖ id | the proposal (JSON of `commons_governance::Proposal`) |
//! | `gt` ‖ id | running tally: yes, no, abstain, no-with-veto |
//! | `gv` ‖ id ‖ voter | the voter's latest vote |
//! | `gs` ‖ id ‖ account | the account's bonded stake when voting started, written the first time it changes during the vote (copy-on-write snapshot) |
//! | `gx` ‖ id | why a passed proposal could not be executed, if it could not |
//! | `gupgrade` | the last software upgrade signalled |
//!
//! The running tally is kept exact: a vote adds its voter's snapshot power;
//! a changed vote first takes the old one back with the same power. The
//! snapshot power of an account is its `gs` record if one exists, else its
//! current bonded stake, which then has not changed since voting started.

use std::collections::BTreeMap;

use commons_governance::{
    DepositEffect, Due, Outcome, Phase, Proposal, ProposalAction, ProposalContent, ProposalId,
    StakeSnapshot, SubmitContext, TallyCounts, WeightedVote, apply_validator_changes,
};
use commons_types::codec::{Reader, Writer};
use commons_types::{Amount, Height, PublicKey, TypesError, Validator, ValidatorSet};

use crate::ledger::params::{LedgerParams, encode_set};
use crate::ledger::state::{decode_ids, encode_ids, key};
use crate::ledger::working::{Working, hex_key};
use crate::{LedgerError, TxError};

pub mod gkey {
    use commons_types::PublicKey;

    pub const NEXT: &[u8] = b"gnext";
    pub const ACTIVE: &[u8] = b"gactive";
    pub const VOTING: &[u8] = b"gvoting";
    pub const UPGRADE: &[u8] = b"gupgrade";
    /// Total bonded stake of all accounts.
    pub const BONDED_TOTAL: &[u8] = b"mbonded-total";

    fn with_id(tag: &[u8], id: u64, account: Option<&PublicKey>) -> Vec<u8> {
        let mut k = Vec::with_capacity(tag.len() + 8 + 32);
        k.extend_from_slice(tag);
        k.extend_from_slice(&id.to_be_bytes());
        if let Some(a) = account {
            k.extend_from_slice(&a.0);
        }
        k
    }

    pub fn proposal(id: u64) -> Vec<u8> {
        with_id(b"gp", id, None)
    }

    pub fn tally(id: u64) -> Vec<u8> {
        with_id(b"gt", id, None)
    }

    pub fn vote(id: u64, voter: &PublicKey) -> Vec<u8> {
        with_id(b"gv", id, Some(voter))
    }

    pub fn snapshot(id: u64, account: &PublicKey) -> Vec<u8> {
        with_id(b"gs", id, Some(account))
    }

    pub fn execution_failure(id: u64) -> Vec<u8> {
        with_id(b"gx", id, None)
    }
}

/// The one registered parameter a vote cannot change: consensus fixes its
/// epoch boundaries from it when it starts.
const FIXED_AT_GENESIS: &str = "epoch_length_blocks";

type TxResult = Result<Result<(), TxError>, LedgerError>;

fn gov_err(e: commons_governance::GovError) -> TxError {
    TxError::Governance(e.to_string())
}

fn corrupt(k: &[u8], reason: impl Into<String>) -> LedgerError {
    LedgerError::Corrupt {
        key: hex_key(k),
        source: TypesError::Decode {
            what: "governance record",
            reason: reason.into(),
        },
    }
}

pub fn load_proposal(w: &mut Working<'_>, id: u64) -> Result<Option<Proposal>, LedgerError> {
    let k = gkey::proposal(id);
    let Some(bytes) = w.get(&k)? else {
        return Ok(None);
    };
    let proposal: Proposal =
        serde_json::from_slice(&bytes).map_err(|e| corrupt(&k, e.to_string()))?;
    proposal.check().map_err(|e| corrupt(&k, e.to_string()))?;
    Ok(Some(proposal))
}

fn store_proposal(w: &mut Working<'_>, proposal: &Proposal) {
    // Proposal holds only strings, integers and BTreeMaps: serializing cannot
    // fail, and the JSON is deterministic.
    let bytes = serde_json::to_vec(proposal).unwrap_or_default();
    w.put(gkey::proposal(proposal.id().0), bytes);
}

fn load_ids(w: &mut Working<'_>, k: &[u8]) -> Result<Vec<u64>, LedgerError> {
    Ok(w.get_decoded(k, decode_ids)?.unwrap_or_default())
}

pub fn load_tally(w: &mut Working<'_>, id: u64) -> Result<TallyCounts, LedgerError> {
    let decode = |bytes: &[u8]| -> Result<TallyCounts, TypesError> {
        let mut r = Reader::new(bytes, "tally");
        let counts = TallyCounts {
            yes: r.u64()?,
            no: r.u64()?,
            abstain: r.u64()?,
            no_with_veto: r.u64()?,
        };
        r.finish()?;
        Ok(counts)
    };
    Ok(w.get_decoded(&gkey::tally(id), decode)?.unwrap_or_default())
}

fn store_tally(w: &mut Working<'_>, id: u64, c: &TallyCounts) {
    let mut wr = Writer::with_capacity(32);
    wr.u64(c.yes).u64(c.no).u64(c.abstain).u64(c.no_with_veto);
    w.put(gkey::tally(id), wr.finish());
}

pub fn load_vote(
    w: &mut Working<'_>,
    id: u64,
    voter: &PublicKey,
) -> Result<Option<WeightedVote>, LedgerError> {
    w.get_decoded(&gkey::vote(id, voter), decode_vote)
}

pub fn encode_vote(vote: &WeightedVote) -> Vec<u8> {
    let mut wr = Writer::with_capacity(4 + 6 * vote.entries().len());
    wr.len(vote.entries().len());
    for (option, weight) in vote.entries() {
        wr.u32(option.to_wire()).u16(*weight);
    }
    wr.finish()
}

pub fn decode_vote(bytes: &[u8]) -> Result<WeightedVote, TypesError> {
    let mut r = Reader::new(bytes, "vote");
    let n = r.len(4, 6)?;
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        entries.push((r.u32()?, u32::from(r.u16()?)));
    }
    r.finish()?;
    WeightedVote::from_wire(entries).map_err(|e| TypesError::Decode {
        what: "vote",
        reason: e.to_string(),
    })
}

pub fn encode_validator_set(set: &ValidatorSet) -> Vec<u8> {
    let mut wr = Writer::with_capacity(4 + 40 * set.len());
    wr.len(set.len());
    for v in set.validators() {
        wr.key(&v.public_key).u64(v.power);
    }
    wr.finish()
}

pub fn decode_validator_set(bytes: &[u8]) -> Result<ValidatorSet, TypesError> {
    let mut r = Reader::new(bytes, "validator set");
    let n = r.len(commons_types::limits::MAX_VALIDATORS, 40)?;
    let mut validators = Vec::with_capacity(n);
    for _ in 0..n {
        validators.push(Validator {
            public_key: r.key()?,
            power: r.u64()?,
        });
    }
    r.finish()?;
    ValidatorSet::new(validators)
}

fn load_validator_set(w: &mut Working<'_>, k: &[u8]) -> Result<Option<ValidatorSet>, LedgerError> {
    w.get_decoded(k, decode_validator_set)
}

/// The validator set that changes apply to: the one waiting for the next
/// epoch if there is one, else the one in force.
pub fn latest_validator_set(w: &mut Working<'_>) -> Result<ValidatorSet, LedgerError> {
    if let Some(set) = load_validator_set(w, key::NEXT_VALIDATORS)? {
        return Ok(set);
    }
    load_validator_set(w, key::VALIDATORS)?
        .ok_or_else(|| LedgerError::Store("no validator set in state: genesis not applied".into()))
}

/// The validator set consensus runs with now.
pub fn validator_set_in_force(w: &mut Working<'_>) -> Result<ValidatorSet, LedgerError> {
    load_validator_set(w, key::VALIDATORS)?
        .ok_or_else(|| LedgerError::Store("no validator set in state: genesis not applied".into()))
}

/// Snapshot power: the `gs` record if the stake moved during the vote, else
/// the current bonded stake.
pub fn snapshot_power(
    w: &mut Working<'_>,
    id: u64,
    account: &PublicKey,
) -> Result<u64, LedgerError> {
    let k = gkey::snapshot(id, account);
    if w.get(&k)?.is_some() {
        return w.get_u64(&k, "stake snapshot");
    }
    Ok(w.account(account)?.bonded)
}

/// Must run before any change of `account`'s bonded stake (bond, unbond,
/// slash): records the pre-change stake for every proposal in voting that
/// has no record for it yet.
pub fn before_stake_change(
    w: &mut Working<'_>,
    account: &PublicKey,
    bonded_now: u64,
) -> Result<(), LedgerError> {
    for id in load_ids(w, gkey::VOTING)? {
        let k = gkey::snapshot(id, account);
        if w.get(&k)?.is_none() {
            w.put_u64(&k, bonded_now);
        }
    }
    Ok(())
}

/// Adds `delta` to (or, negative, takes it from) the total bonded stake.
pub fn adjust_bonded_total(w: &mut Working<'_>, add: u64, sub: u64) -> Result<(), LedgerError> {
    let total = w.get_u64(gkey::BONDED_TOTAL, "bonded total")?;
    let total = total
        .checked_add(add)
        .and_then(|t| t.checked_sub(sub))
        .ok_or_else(|| {
            LedgerError::Store("bonded total out of range: stake invariant broken".into())
        })?;
    w.put_u64(gkey::BONDED_TOTAL, total);
    Ok(())
}

fn take_funds(
    w: &mut Working<'_>,
    who: &PublicKey,
    amount: u64,
) -> Result<Result<(), TxError>, LedgerError> {
    let mut account = w.account(who)?;
    if account.balance < amount {
        return Ok(Err(TxError::InsufficientFunds {
            account: *who,
            needed: amount,
            available: account.balance,
        }));
    }
    account.balance -= amount;
    w.put_account(*who, account);
    Ok(Ok(()))
}

fn after_deposit_effect(
    w: &mut Working<'_>,
    id: u64,
    effect: DepositEffect,
) -> Result<(), LedgerError> {
    if let DepositEffect::VotingStarted(_) = effect {
        let mut voting = load_ids(w, gkey::VOTING)?;
        if !voting.contains(&id) {
            voting.push(id);
            w.put(gkey::VOTING.to_vec(), encode_ids(&voting));
        }
    }
    Ok(())
}

pub fn propose(
    w: &mut Working<'_>,
    params: &LedgerParams,
    height: Height,
    proposer: PublicKey,
    content: &[u8],
    deposit: u64,
) -> TxResult {
    let content = match ProposalContent::decode(content) {
        Ok(c) => c,
        Err(e) => return Ok(Err(gov_err(e))),
    };
    if let ProposalAction::ParamChange(changes) = &content.action
        && changes.iter().any(|c| c.name == FIXED_AT_GENESIS)
    {
        return Ok(Err(TxError::Governance(format!(
            "{FIXED_AT_GENESIS} is fixed at genesis: consensus and the ledger must agree on every epoch boundary"
        ))));
    }
    let mut active = load_ids(w, gkey::ACTIVE)?;
    let validators = latest_validator_set(w)?;
    let bonded_total = w.get_u64(gkey::BONDED_TOTAL, "bonded total")?;
    let id = w.get_u64(gkey::NEXT, "next proposal id")?;
    let ctx = SubmitContext {
        height,
        params: &params.set,
        validators: &validators,
        active_proposals: active.len() as u64,
        bonded_total,
    };
    let (proposal, effect) =
        match Proposal::submit(ProposalId(id), proposer, content, Amount(deposit), &ctx) {
            Ok(p) => p,
            Err(e) => return Ok(Err(gov_err(e))),
        };
    if let Err(e) = take_funds(w, &proposer, deposit)? {
        return Ok(Err(e));
    }
    w.put_u64(gkey::NEXT, id.saturating_add(1));
    active.push(id);
    w.put(gkey::ACTIVE.to_vec(), encode_ids(&active));
    store_proposal(w, &proposal);
    after_deposit_effect(w, id, effect)?;
    Ok(Ok(()))
}

pub fn deposit(
    w: &mut Working<'_>,
    params: &LedgerParams,
    height: Height,
    depositor: PublicKey,
    id: u64,
    amount: u64,
) -> TxResult {
    let Some(mut proposal) = load_proposal(w, id)? else {
        return Ok(Err(TxError::Governance(format!("no proposal {id}"))));
    };
    let bonded_total = w.get_u64(gkey::BONDED_TOTAL, "bonded total")?;
    let effect = match proposal.add_deposit(
        height,
        depositor,
        Amount(amount),
        &params.set.gov(),
        bonded_total,
    ) {
        Ok(e) => e,
        Err(e) => return Ok(Err(gov_err(e))),
    };
    if let Err(e) = take_funds(w, &depositor, amount)? {
        return Ok(Err(e));
    }
    store_proposal(w, &proposal);
    after_deposit_effect(w, id, effect)?;
    Ok(Ok(()))
}

pub fn vote(
    w: &mut Working<'_>,
    height: Height,
    voter: PublicKey,
    id: u64,
    options: &[(u32, u32)],
) -> TxResult {
    let Some(proposal) = load_proposal(w, id)? else {
        return Ok(Err(TxError::Governance(format!("no proposal {id}"))));
    };
    let new_vote = match WeightedVote::from_wire(options.iter().copied()) {
        Ok(v) => v,
        Err(e) => return Ok(Err(gov_err(e))),
    };
    let power = snapshot_power(w, id, &voter)?;
    if let Err(e) = proposal.check_vote(height, &voter, power) {
        return Ok(Err(gov_err(e)));
    }
    let mut counts = load_tally(w, id)?;
    if let Some(old) = load_vote(w, id, &voter)? {
        counts
            .remove_vote(power, &old)
            .map_err(|e| LedgerError::Store(format!("running tally of proposal {id}: {e}")))?;
    }
    if let Err(e) = counts.add_vote(power, &new_vote) {
        return Ok(Err(gov_err(e)));
    }
    store_tally(w, id, &counts);
    w.put(gkey::vote(id, &voter), encode_vote(&new_vote));
    Ok(Ok(()))
}

/// Snapshot view for queries outside a block.
struct SnapshotView<'w, 'a> {
    w: std::cell::RefCell<&'w mut Working<'a>>,
    failed: std::cell::Cell<bool>,
}

impl StakeSnapshot for SnapshotView<'_, '_> {
    fn power_at_voting_start(&self, id: ProposalId, voter: &PublicKey) -> u64 {
        match snapshot_power(&mut self.w.borrow_mut(), id.0, voter) {
            Ok(p) => p,
            Err(_) => {
                self.failed.set(true);
                0
            }
        }
    }
}

/// The proposals whose periods end at `height`: lapse or tally them, and
/// carry out what passed. A validator-set change is written to
/// `NEXT_VALIDATORS`, which the block's outcome reports.
pub fn end_block(
    w: &mut Working<'_>,
    params: &LedgerParams,
    height: Height,
) -> Result<(), LedgerError> {
    let active = load_ids(w, gkey::ACTIVE)?;
    let mut still_active = Vec::with_capacity(active.len());
    let mut supply_burned: u64 = 0;
    let mut finished_voting = Vec::new();
    for id in active {
        let Some(mut proposal) = load_proposal(w, id)? else {
            return Err(corrupt(
                gkey::ACTIVE,
                format!("active proposal {id} missing"),
            ));
        };
        let resolution = match proposal.due(height) {
            None => {
                still_active.push(id);
                continue;
            }
            Some(Due::DepositLapse) => proposal.lapse(height),
            Some(Due::Tally) => {
                finished_voting.push(id);
                let counts = load_tally(w, id)?;
                proposal.conclude(height, counts, &params.set.gov())
            }
        }
        .map_err(|e| LedgerError::Store(format!("proposal {id} at end of block: {e}")))?;
        for (depositor, amount) in &resolution.deposits.refunds {
            let mut account = w.account(depositor)?;
            account.balance = account.balance.checked_add(amount.0).ok_or_else(|| {
                LedgerError::Store("refund overflow: supply invariant broken".into())
            })?;
            w.put_account(*depositor, account);
        }
        supply_burned = supply_burned.saturating_add(resolution.deposits.burned.0);
        if resolution.outcome == Outcome::Passed
            && let Some(action) = &resolution.execute
            && let Err(reason) = execute_action(w, params, height, action)?
        {
            w.put(gkey::execution_failure(id), reason.into_bytes());
        }
        store_proposal(w, &proposal);
    }
    if supply_burned > 0 {
        let supply = w.get_u64(key::SUPPLY, "supply")?;
        w.put_u64(key::SUPPLY, supply.saturating_sub(supply_burned));
    }
    w.put(gkey::ACTIVE.to_vec(), encode_ids(&still_active));
    if !finished_voting.is_empty() {
        let voting: Vec<u64> = load_ids(w, gkey::VOTING)?
            .into_iter()
            .filter(|id| !finished_voting.contains(id))
            .collect();
        w.put(gkey::VOTING.to_vec(), encode_ids(&voting));
    }
    Ok(())
}

/// Carries out a passed proposal. `Err` is why it could not be (recorded,
/// not fatal): the state changed since the vote.
fn execute_action(
    w: &mut Working<'_>,
    params: &LedgerParams,
    height: Height,
    action: &ProposalAction,
) -> Result<Result<(), String>, LedgerError> {
    match action {
        ProposalAction::Text => Ok(Ok(())),
        ProposalAction::ParamChange(changes) => match params.set.with_changes(changes) {
            Ok(next) => {
                w.put(key::PARAMS.to_vec(), encode_set(&next));
                Ok(Ok(()))
            }
            Err(e) => Ok(Err(e.to_string())),
        },
        ProposalAction::TreasurySpend { recipient, amount } => {
            let treasury = w.treasury()?;
            if treasury < amount.0 {
                return Ok(Err(format!(
                    "treasury holds {treasury}, the spend is {amount}"
                )));
            }
            let mut account = w.account(recipient)?;
            let Some(balance) = account.balance.checked_add(amount.0) else {
                return Ok(Err("recipient balance would overflow".into()));
            };
            account.balance = balance;
            w.put_account(*recipient, account);
            w.put_u64(key::TREASURY, treasury - amount.0);
            Ok(Ok(()))
        }
        ProposalAction::ValidatorChange(changes) => {
            let current = latest_validator_set(w)?;
            match apply_validator_changes(&current, changes) {
                Ok(next) => {
                    w.put(key::NEXT_VALIDATORS.to_vec(), encode_validator_set(&next));
                    Ok(Ok(()))
                }
                Err(e) => Ok(Err(e.to_string())),
            }
        }
        ProposalAction::ExcludeAccount { account }
        | ProposalAction::ReinstateAccount { account } => {
            let excluded = matches!(action, ProposalAction::ExcludeAccount { .. });
            let mut a = w.account(account)?;
            a.excluded = excluded;
            w.put_account(*account, a);
            Ok(Ok(()))
        }
        ProposalAction::SoftwareUpgrade {
            name,
            height: at,
            info,
        } => {
            if *at <= height {
                return Ok(Err(format!("upgrade height {at} has passed")));
            }
            let mut wr = Writer::new();
            wr.str(name).u64(at.0).str(info);
            w.put(gkey::UPGRADE.to_vec(), wr.finish());
            Ok(Ok(()))
        }
    }
}

/// The running tally and the proposal, for queries.
pub fn proposal_with_tally(
    w: &mut Working<'_>,
    id: u64,
) -> Result<Option<(Proposal, TallyCounts)>, LedgerError> {
    let Some(p) = load_proposal(w, id)? else {
        return Ok(None);
    };
    let counts = if p.phase() == Phase::DepositPeriod {
        TallyCounts::default()
    } else {
        load_tally(w, id)?
    };
    Ok(Some((p, counts)))
}

/// Recounts a proposal's votes from scratch with `votes` (all of them), for
/// checking the running tally in tests and audits.
pub fn recount(
    w: &mut Working<'_>,
    proposal: &Proposal,
    votes: &BTreeMap<PublicKey, WeightedVote>,
) -> Result<TallyCounts, LedgerError> {
    let view = SnapshotView {
        w: std::cell::RefCell::new(w),
        failed: std::cell::Cell::new(false),
    };
    let counts = proposal
        .count_votes(votes, &view)
        .map_err(|e| LedgerError::Store(e.to_string()))?;
    if view.failed.get() {
        return Err(LedgerError::Store("reading stake snapshots failed".into()));
    }
    Ok(counts)
}
