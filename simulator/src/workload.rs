//! The chain the simulator runs and the clients that use it: the genesis
//! (users, stakeholders, validators and one spare validator key), and
//! transfers, settlements and the governance transactions that add the
//! spare validator at an epoch change.

use std::collections::BTreeMap;

use commons_governance::{ProposalAction, ProposalContent, ValidatorChange, VoteOption};
use commons_state_machine::ledger::{Genesis, GenesisAccount, GenesisValidator};
use commons_types::tx::{SignedTx, pb};
use commons_types::{ChainId, Hash, PublicKey, SecretKey};
use prost::Message as _;

use crate::SimError;

pub const CHAIN: &str = "commons-sim";
/// Accounts that send transfers and settle trades.
pub const USERS: usize = 8;
/// Accounts with bonded stake: the DAO's voters.
pub const STAKEHOLDERS: usize = 5;
pub const USER_BALANCE: u64 = 1_000_000_000;
pub const STAKEHOLDER_BALANCE: u64 = 1_000_000;
pub const STAKEHOLDER_BOND: u64 = 1_000;
pub const TREASURY: u64 = 5_000_000;
pub const MIN_DEPOSIT: u64 = 1_000;
pub const VALIDATOR_POWER: u64 = 10;

fn derived(domain: u8, i: usize) -> SecretKey {
    let mut seed = [0u8; 32];
    seed[0] = domain;
    seed[1..9].copy_from_slice(&(i as u64).to_be_bytes());
    seed[31] = 0x5e;
    SecretKey::from_seed(seed)
}

/// Validator `i`'s key; `i == validators` is the spare.
pub fn validator_key(i: usize) -> SecretKey {
    derived(1, i)
}

pub fn user_key(i: usize) -> SecretKey {
    derived(2, i)
}

pub fn stakeholder_key(i: usize) -> SecretKey {
    derived(3, i)
}

/// A key that holds nothing: the signer of invalid transactions.
pub fn stranger_key(i: usize) -> SecretKey {
    derived(4, i)
}

pub fn chain_id() -> Result<ChainId, SimError> {
    ChainId::new(CHAIN).map_err(|e| SimError::Setup(e.to_string()))
}

/// The genesis of a run with `validators` validators.
pub fn genesis(validators: usize, epoch_length_blocks: u64) -> Result<Genesis, SimError> {
    let mut params = BTreeMap::new();
    for (name, value) in [
        ("fee_base", 0),
        ("fee_per_byte", 0),
        ("min_deposit", MIN_DEPOSIT),
        ("deposit_period_blocks", 5),
        ("voting_period_blocks", 10),
        ("epoch_length_blocks", epoch_length_blocks),
    ] {
        params.insert(name.to_string(), value);
    }
    let mut accounts: Vec<GenesisAccount> = (0..USERS)
        .map(|i| GenesisAccount {
            public_key: user_key(i).public_key(),
            balance: USER_BALANCE,
            bonded: 0,
        })
        .collect();
    accounts.extend((0..STAKEHOLDERS).map(|i| GenesisAccount {
        public_key: stakeholder_key(i).public_key(),
        balance: STAKEHOLDER_BALANCE,
        bonded: STAKEHOLDER_BOND,
    }));
    Ok(Genesis {
        chain_id: chain_id()?,
        accounts,
        validators: (0..validators)
            .map(|i| GenesisValidator {
                public_key: validator_key(i).public_key(),
                power: VALIDATOR_POWER,
                address: format!("sim-{i}"),
            })
            .collect(),
        params,
        treasury: TREASURY,
    })
}

/// Every account the workload can touch: the supply check sums them.
pub fn known_accounts(validators: usize) -> Vec<PublicKey> {
    let mut keys: Vec<PublicKey> = (0..USERS).map(|i| user_key(i).public_key()).collect();
    keys.extend((0..STAKEHOLDERS).map(|i| stakeholder_key(i).public_key()));
    keys.extend((0..=validators).map(|i| validator_key(i).public_key()));
    keys
}

fn sign(kind: pb::action::Kind, nonce: u64, signers: &[&SecretKey]) -> Result<SignedTx, SimError> {
    let body = pb::TxBody {
        chain_id: CHAIN.into(),
        nonce,
        fee: 0,
        action: Some(pb::Action { kind: Some(kind) }),
    };
    Ok(SignedTx::sign(body.encode_to_vec(), &chain_id()?, signers))
}

pub fn transfer(
    from: &SecretKey,
    to: PublicKey,
    amount: u64,
    nonce: u64,
) -> Result<SignedTx, SimError> {
    sign(
        pb::action::Kind::Transfer(pb::Transfer {
            to: to.0.to_vec().into(),
            amount,
        }),
        nonce,
        &[from],
    )
}

pub fn settle(
    buyer: &SecretKey,
    seller: &SecretKey,
    marketplace: PublicKey,
    trade_id: u64,
    quantity: u64,
    nonce: u64,
) -> Result<SignedTx, SimError> {
    sign(
        pb::action::Kind::Settle(pb::Settle {
            marketplace: marketplace.0.to_vec().into(),
            trade_id,
            buyer: buyer.public_key().0.to_vec().into(),
            seller: seller.public_key().0.to_vec().into(),
            resource: pb::Resource::Energy as i32,
            quantity,
            unit_price: 3,
            marketplace_fee: 1,
        }),
        nonce,
        &[buyer, seller],
    )
}

/// The proposal that adds the spare validator.
pub fn propose_add_validator(
    proposer: &SecretKey,
    spare: PublicKey,
    nonce: u64,
) -> Result<SignedTx, SimError> {
    let content = ProposalContent {
        title: "Add the spare validator".into(),
        description: "Simulated validator-set change through an epoch change.".into(),
        action: ProposalAction::ValidatorChange(vec![ValidatorChange::Add {
            key: spare,
            power: VALIDATOR_POWER,
        }]),
    };
    sign(
        pb::action::Kind::Propose(pb::Propose {
            content: content.encode().into(),
            deposit: MIN_DEPOSIT,
        }),
        nonce,
        &[proposer],
    )
}

pub fn vote_yes(voter: &SecretKey, proposal_id: u64, nonce: u64) -> Result<SignedTx, SimError> {
    sign(
        pb::action::Kind::Vote(pb::Vote {
            proposal_id,
            options: vec![pb::WeightedOption {
                option: VoteOption::Yes.to_wire(),
                weight_permille: 1000,
            }],
        }),
        nonce,
        &[voter],
    )
}

/// A transfer from a stranger with a signature that does not verify: what
/// the invalid-transaction leader slips into its blocks.
pub fn forged_transfer(salt: u64) -> Result<(Hash, Vec<u8>), SimError> {
    let stranger = stranger_key(0);
    let mut tx = transfer(&stranger, user_key(0).public_key(), 1 + salt, salt)?;
    if let Some((_, sig)) = tx.signatures.first_mut() {
        sig.0[7] ^= 0x40;
    }
    Ok((tx.id(), tx.encode()))
}

/// A client transaction waiting to be committed.
#[derive(Clone, Debug)]
pub struct InFlight {
    pub id: Hash,
    pub bytes: Vec<u8>,
    pub submitted_ms: u64,
    pub last_sent_ms: u64,
}

/// The clients: one transaction in flight per account at a time, so nonces
/// never leave a gap that a lost mempool could strand.
#[derive(Debug, Default)]
pub struct Clients {
    /// Per signing account, its transaction in flight.
    pub in_flight: BTreeMap<PublicKey, InFlight>,
    /// Every transaction a client signed (the committed-validity oracle).
    pub signed: BTreeMap<Hash, u64>,
    /// Ids committed by an honest node.
    pub committed: BTreeMap<Hash, u64>,
    pub next_trade_id: u64,
    /// Governance progress: 0 nothing, 1 proposed, 2 voted.
    pub governance_step: u8,
}

impl Clients {
    pub fn add(&mut self, signer: PublicKey, tx: &SignedTx, now_ms: u64) -> InFlight {
        let f = InFlight {
            id: tx.id(),
            bytes: tx.encode(),
            submitted_ms: now_ms,
            last_sent_ms: now_ms,
        };
        self.signed.insert(f.id, now_ms);
        self.in_flight.insert(signer, f.clone());
        f
    }

    /// A committed block's transaction ids: clears what they settle.
    pub fn on_committed(&mut self, ids: &[Hash], now_ms: u64) {
        for id in ids {
            if self.signed.contains_key(id) && !self.committed.contains_key(id) {
                self.committed.insert(*id, now_ms);
            }
        }
        self.in_flight.retain(|_, f| !ids.contains(&f.id));
    }
}
