//! A small chain for the state machine's integration tests: four validators
//! and the accounts a test names, and blocks built as a leader would.

#![allow(dead_code)]
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;

use commons_consensus::{Block, BlockFields, QuorumCert, VoteData};
use commons_state_machine::ledger::{Genesis, GenesisAccount, GenesisValidator, Ledger};
use commons_state_machine::{Application, Payload};
use commons_types::{ChainId, Epoch, Hash, Height, PublicKey, Round, SecretKey, ValidatorIndex};

/// Validator `i`'s key (of 0..4).
pub fn validator(i: u8) -> SecretKey {
    SecretKey::from_seed([i + 1; 32])
}

/// A chain `chain` whose fee is `fee_base` plus nothing per byte: validators
/// 0..4 (power 10, 1,000,000 each) and `accounts` with their balances.
pub fn app(chain: &ChainId, fee_base: u64, accounts: &[(PublicKey, u64)]) -> Application {
    let params = BTreeMap::from([
        ("fee_base".to_string(), fee_base),
        ("fee_per_byte".to_string(), 0),
    ]);
    let genesis = Genesis {
        chain_id: chain.clone(),
        accounts: (0..4)
            .map(|i| GenesisAccount {
                public_key: validator(i).public_key(),
                balance: 1_000_000,
                bonded: 100,
            })
            .chain(accounts.iter().map(|(public_key, balance)| GenesisAccount {
                public_key: *public_key,
                balance: *balance,
                bonded: 0,
            }))
            .collect(),
        validators: (0..4)
            .map(|i| GenesisValidator {
                public_key: validator(i).public_key(),
                power: 10,
                address: format!("127.0.0.1:{}", 7100 + u16::from(i)),
            })
            .collect(),
        params,
        treasury: 0,
    };
    Application::new(Ledger::in_memory(&genesis).unwrap())
}

/// The block at `height` carrying `txs` (encoded), as a leader would
/// propose it on the state after `height - 1`.
pub fn block(app: &Application, height: u64, txs: Vec<Vec<u8>>) -> Block {
    let payload = Payload {
        state_height: Height(height - 1),
        txs,
    };
    Block::new(BlockFields {
        epoch: Epoch(0),
        round: Round(height),
        height: Height(height),
        proposer: ValidatorIndex(0),
        timestamp_ms: 1_000 * height,
        state_root: app.ledger().state_root(),
        justify: QuorumCert {
            data: VoteData {
                epoch: Epoch(0),
                round: Round(height - 1),
                height: Height(height - 1),
                block_id: Hash::digest(b"parent"),
                parent_id: Hash::ZERO,
                parent_round: Round(0),
            },
            signatures: Vec::new(),
        },
        timeout_cert: None,
        payload: payload.encode(),
    })
}
