//! Evidence of equivocation: two conflicting signed consensus messages of
//! one validator in one round (checked by `commons_consensus::Evidence`).
//! Valid evidence slashes `slash_permille` of the offender's bonded stake
//! (burned: the supply shrinks by exactly that), jails the account, and
//! removes the validator from the next validator set. Each offence (one
//! validator, epoch and round) is punished once.
//!
//! Evidence is checked against the validator set in force. Evidence from an
//! earlier epoch whose set differs does not verify (validator indices and
//! signatures are relative to their epoch's set) and is refused; reporting
//! promptly is the reporter's job.

use commons_consensus::Evidence;
use commons_types::ChainId;

use crate::ledger::gov;
use crate::ledger::params::LedgerParams;
use crate::ledger::state::key;
use crate::ledger::working::Working;
use crate::{LedgerError, TxError};

fn offence_key(offender: &commons_types::PublicKey, evidence: &Evidence) -> Vec<u8> {
    let (epoch, round) = match evidence {
        Evidence::ConflictingVotes { first, .. } => (first.data.epoch, first.data.round),
        Evidence::ConflictingProposals { first, .. } => (first.epoch, first.round),
        Evidence::ConflictingTimeouts { first, .. } => (first.epoch, first.round),
    };
    let mut k = Vec::with_capacity(1 + 32 + 16);
    k.push(b'e');
    k.extend_from_slice(&offender.0);
    k.extend_from_slice(&epoch.0.to_be_bytes());
    k.extend_from_slice(&round.0.to_be_bytes());
    k
}

pub fn apply(
    w: &mut Working<'_>,
    params: &LedgerParams,
    chain: &ChainId,
    bytes: &[u8],
) -> Result<Result<(), TxError>, LedgerError> {
    let evidence = match Evidence::decode(bytes) {
        Ok(e) => e,
        Err(e) => return Ok(Err(TxError::InvalidEvidence(e.to_string()))),
    };
    let in_force = gov::validator_set_in_force(w)?;
    let index = match evidence.check(chain, &in_force) {
        Ok(i) => i,
        Err(e) => return Ok(Err(TxError::InvalidEvidence(e.to_string()))),
    };
    let Some(offender) = in_force.get(index).map(|v| v.public_key) else {
        return Ok(Err(TxError::InvalidEvidence(format!(
            "no validator {index}"
        ))));
    };
    let offence = offence_key(&offender, &evidence);
    if w.get(&offence)?.is_some() {
        return Ok(Err(TxError::InvalidEvidence(format!(
            "validator {offender} was already punished for this round"
        ))));
    }
    w.put(offence, vec![1]);

    let mut account = w.account(&offender)?;
    let slashed =
        u64::try_from(u128::from(account.bonded) * u128::from(params.slash_permille) / 1000)
            .unwrap_or(account.bonded);
    gov::before_stake_change(w, &offender, account.bonded)?;
    gov::adjust_bonded_total(w, 0, slashed)?;
    account.bonded -= slashed;
    account.jailed = true;
    w.put_account(offender, account);
    let supply = w.get_u64(key::SUPPLY, "supply")?;
    w.put_u64(key::SUPPLY, supply.saturating_sub(slashed));

    let latest = gov::latest_validator_set(w)?;
    if latest.index_of(&offender).is_some() && latest.len() > 1 {
        let remaining: Vec<commons_types::Validator> = latest
            .validators()
            .iter()
            .filter(|v| v.public_key != offender)
            .copied()
            .collect();
        // Removing one member of a valid set with more than one member
        // leaves a valid set.
        if let Ok(next) = commons_types::ValidatorSet::new(remaining) {
            w.put(
                key::NEXT_VALIDATORS.to_vec(),
                gov::encode_validator_set(&next),
            );
        }
    }
    Ok(Ok(()))
}
