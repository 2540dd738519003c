//! The ledger's view of the parameter set: the governance registry's
//! [`ParamSet`], stored at one key of the state, with typed accessors for the
//! values execution reads.

use std::collections::BTreeMap;

use commons_governance::{GovError, PARAM_COUNT, Param, ParamSet};
use commons_types::TypesError;
use commons_types::codec::{Reader, Writer};

use crate::LedgerError;
use crate::ledger::state::key;
use crate::ledger::working::Working;

/// Longest parameter name stored; registry names are far shorter.
const MAX_PARAM_NAME_BYTES: usize = 64;

/// The parameters in force for one block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerParams {
    pub set: ParamSet,
    pub fee_base: u64,
    pub fee_per_byte: u64,
    pub unbonding_period_blocks: u64,
    pub slash_permille: u64,
    pub max_block_txs: u64,
    pub lease_max_duration_blocks: u64,
}

impl LedgerParams {
    pub fn from_set(set: ParamSet) -> LedgerParams {
        LedgerParams {
            fee_base: set.get(Param::FeeBase),
            fee_per_byte: set.get(Param::FeePerByte),
            unbonding_period_blocks: set.get(Param::UnbondingPeriodBlocks),
            slash_permille: set.get(Param::SlashPermille),
            max_block_txs: set.get(Param::MaxBlockTxs),
            lease_max_duration_blocks: set.get(Param::LeaseMaxDurationBlocks),
            set,
        }
    }

    /// Defaults with `overrides` applied by name (a genesis file's params).
    pub fn from_overrides(overrides: &BTreeMap<String, u64>) -> Result<LedgerParams, GovError> {
        let set = ParamSet::try_from(overrides.clone())?;
        Ok(LedgerParams::from_set(set))
    }

    /// The parameters stored in `w`'s state.
    pub fn load(w: &mut Working<'_>) -> Result<LedgerParams, LedgerError> {
        let set = w.get_decoded(key::PARAMS, decode_set)?.ok_or_else(|| {
            LedgerError::Store("no parameters in state: genesis not applied".into())
        })?;
        Ok(LedgerParams::from_set(set))
    }

    /// `fee_base + fee_per_byte × size`, saturating: a fee that cannot be
    /// represented cannot be paid either.
    pub fn required_fee(&self, encoded_len: usize) -> u64 {
        let per_byte = self
            .fee_per_byte
            .saturating_mul(u64::try_from(encoded_len).unwrap_or(u64::MAX));
        self.fee_base.saturating_add(per_byte)
    }

    pub fn encode(&self) -> Vec<u8> {
        encode_set(&self.set)
    }
}

/// `(name, value)` pairs in name order: adding a parameter to the registry
/// later does not change how existing ones are stored.
pub fn encode_set(set: &ParamSet) -> Vec<u8> {
    let map: BTreeMap<String, u64> = set.clone().into();
    let mut w = Writer::with_capacity(map.len() * 40);
    w.len(map.len());
    for (name, value) in &map {
        w.str(name).u64(*value);
    }
    w.finish()
}

pub fn decode_set(bytes: &[u8]) -> Result<ParamSet, TypesError> {
    let mut r = Reader::new(bytes, "parameter set");
    let n = r.len(PARAM_COUNT, 12)?;
    let mut map = BTreeMap::new();
    for _ in 0..n {
        let name = r.string(MAX_PARAM_NAME_BYTES)?;
        let value = r.u64()?;
        map.insert(name, value);
    }
    r.finish()?;
    ParamSet::try_from(map).map_err(|e| TypesError::Decode {
        what: "parameter set",
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_set_round_trips_and_fee_is_linear() {
        let params = LedgerParams::from_set(ParamSet::default());
        assert_eq!(decode_set(&params.encode()).unwrap(), params.set);
        let fee_100 = params.required_fee(100);
        let fee_200 = params.required_fee(200);
        assert_eq!(fee_200 - fee_100, 100 * params.fee_per_byte);
        assert_eq!(params.required_fee(0), params.fee_base);
        let mut overrides = BTreeMap::new();
        overrides.insert("no_such_param".to_string(), 1);
        assert!(LedgerParams::from_overrides(&overrides).is_err());
    }
}
