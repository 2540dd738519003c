//! The genesis file: chain id, initial accounts, validators and parameters,
//! as JSON. It defines state version 0, from which height 1 executes.

use std::collections::BTreeMap;

use commons_types::{ChainId, PublicKey, Validator, ValidatorSet};
use serde::{Deserialize, Serialize};

use crate::LedgerError;
use crate::ledger::params::LedgerParams;
use crate::ledger::state::{Account, encode_u64, key};
use crate::ledger::working::Writes;

/// Largest genesis file accepted, so a mistaken path (a disk image, a log)
/// fails fast with a clear error instead of exhausting memory.
pub const MAX_GENESIS_BYTES: usize = 64 * 1024 * 1024;

/// Accounts in a genesis file. Each becomes one write of version 0.
pub const MAX_GENESIS_ACCOUNTS: usize = 1_000_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisAccount {
    pub public_key: PublicKey,
    #[serde(default)]
    pub balance: u64,
    /// Stake bonded from the start (voting power in the DAO).
    #[serde(default)]
    pub bonded: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisValidator {
    pub public_key: PublicKey,
    /// Consensus voting power.
    pub power: u64,
    /// Where peers reach this validator, `host:port`.
    pub address: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    pub chain_id: ChainId,
    pub accounts: Vec<GenesisAccount>,
    pub validators: Vec<GenesisValidator>,
    /// Parameter overrides by name; the rest take their defaults.
    #[serde(default)]
    pub params: BTreeMap<String, u64>,
    /// The DAO treasury's starting funds.
    #[serde(default)]
    pub treasury: u64,
}

impl Genesis {
    pub fn from_json(text: &str) -> Result<Genesis, LedgerError> {
        if text.len() > MAX_GENESIS_BYTES {
            return Err(LedgerError::Genesis(format!(
                "file of {} bytes exceeds the limit of {MAX_GENESIS_BYTES}",
                text.len()
            )));
        }
        let genesis: Genesis =
            serde_json::from_str(text).map_err(|e| LedgerError::Genesis(e.to_string()))?;
        genesis.validate()?;
        Ok(genesis)
    }

    pub fn to_json(&self) -> String {
        // Serializing plain structs and BTreeMaps cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    pub fn validate(&self) -> Result<(), LedgerError> {
        if self.accounts.len() > MAX_GENESIS_ACCOUNTS {
            return Err(LedgerError::Genesis(format!(
                "{} accounts exceed the limit of {MAX_GENESIS_ACCOUNTS}",
                self.accounts.len()
            )));
        }
        let mut seen = std::collections::BTreeSet::new();
        let mut supply: u128 = u128::from(self.treasury);
        for a in &self.accounts {
            if !seen.insert(a.public_key) {
                return Err(LedgerError::Genesis(format!(
                    "account {} appears twice",
                    a.public_key
                )));
            }
            supply += u128::from(a.balance) + u128::from(a.bonded);
        }
        if supply > u128::from(u64::MAX) {
            return Err(LedgerError::Genesis("total supply exceeds u64".into()));
        }
        self.validator_set()?;
        LedgerParams::from_overrides(&self.params)
            .map_err(|e| LedgerError::Genesis(e.to_string()))?;
        Ok(())
    }

    pub fn validator_set(&self) -> Result<ValidatorSet, LedgerError> {
        ValidatorSet::new(
            self.validators
                .iter()
                .map(|v| Validator {
                    public_key: v.public_key,
                    power: v.power,
                })
                .collect(),
        )
        .map_err(|e| LedgerError::Genesis(e.to_string()))
    }

    /// The total supply created at genesis.
    pub fn supply(&self) -> u64 {
        let total: u128 = u128::from(self.treasury)
            + self
                .accounts
                .iter()
                .map(|a| u128::from(a.balance) + u128::from(a.bonded))
                .sum::<u128>();
        // validate() bounds the sum by u64::MAX.
        u64::try_from(total).unwrap_or(u64::MAX)
    }

    /// The writes of state version 0.
    pub fn writes(&self) -> Result<Writes, LedgerError> {
        self.validate()?;
        let mut writes = Writes::new();
        for a in &self.accounts {
            let account = Account {
                balance: a.balance,
                bonded: a.bonded,
                ..Account::default()
            };
            writes.insert(key::account(&a.public_key), Some(account.encode()));
        }
        writes.insert(key::TREASURY.to_vec(), Some(encode_u64(self.treasury)));
        writes.insert(key::SUPPLY.to_vec(), Some(encode_u64(self.supply())));
        let bonded: u64 = self.accounts.iter().map(|a| a.bonded).sum();
        writes.insert(
            crate::ledger::gov::gkey::BONDED_TOTAL.to_vec(),
            Some(encode_u64(bonded)),
        );
        writes.insert(
            key::CHAIN_ID.to_vec(),
            Some(self.chain_id.as_str().as_bytes().to_vec()),
        );
        let params = LedgerParams::from_overrides(&self.params)
            .map_err(|e| LedgerError::Genesis(e.to_string()))?;
        writes.insert(key::PARAMS.to_vec(), Some(params.encode()));
        let set = self.validator_set()?;
        writes.insert(
            key::VALIDATORS.to_vec(),
            Some(crate::ledger::gov::encode_validator_set(&set)),
        );
        Ok(writes)
    }

    /// Looks up a validator's peer address.
    pub fn address_of(&self, key: &PublicKey) -> Option<&str> {
        self.validators
            .iter()
            .find(|v| v.public_key == *key)
            .map(|v| v.address.as_str())
    }
}
