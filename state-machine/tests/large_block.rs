//! A large block whose signatures the ledger verifies while it runs the
//! block (as if every signature were good, preparing the store version too,
//! both kept only if no signature is bad): with forgeries, they are found
//! exactly and the outcome is the one of verifying first; without, the kept
//! outcome and version are those of verifying first, and the next block
//! builds on them alike.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use commons_state_machine::TxError;
use commons_state_machine::ledger::{
    Genesis, GenesisAccount, GenesisValidator, Ledger, NoneVerified, PreparedTx, VerifiedTxs,
};
use commons_state_machine::store::{ExtraWrite, MerkleStore, StoreConfig};
use commons_types::tx::{SignedTx, pb};
use commons_types::{ChainId, Hash, Height, SecretKey};
use prost::Message;

const CHAIN: &str = "large-block";
/// Far more transactions to verify than the ledger verifies before running
/// a block.
const TXS: usize = 5_000;
/// The first and last of the block, and some between.
const FORGED: [usize; 7] = [0, 1, 1_000, 2_047, 2_048, 3_333, 4_999];

fn secret(i: usize) -> SecretKey {
    let mut seed = [9u8; 32];
    seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
    SecretKey::from_seed(seed)
}

/// The node keeps its own column families in the store, written with each
/// version: one of them here.
const EXTRA_CF: &str = "blocks";

fn ledger(keys: &[SecretKey]) -> Ledger {
    let genesis = Genesis {
        chain_id: ChainId::new(CHAIN).unwrap(),
        accounts: keys
            .iter()
            .map(|k| GenesisAccount {
                public_key: k.public_key(),
                balance: 1_000_000_000,
                bonded: 0,
            })
            .collect(),
        validators: vec![GenesisValidator {
            public_key: keys[0].public_key(),
            power: 1,
            address: "127.0.0.1:1".into(),
        }],
        params: Default::default(),
        treasury: 0,
    };
    let config = StoreConfig {
        extra_column_families: vec![EXTRA_CF.into()],
        prune_in_background: false,
        ..StoreConfig::default()
    };
    Ledger::open(MerkleStore::open_memory_with(&config).unwrap(), &genesis).unwrap()
}

/// Transfers from every account to the next (nonce `nonce`), with the
/// signatures of `forged` altered after signing.
fn block(keys: &[SecretKey], nonce: u64, forged: &[usize]) -> Vec<PreparedTx> {
    let chain = ChainId::new(CHAIN).unwrap();
    (0..TXS)
        .map(|i| {
            let body = pb::TxBody {
                chain_id: CHAIN.into(),
                nonce,
                fee: 10_000,
                action: Some(pb::Action {
                    kind: Some(pb::action::Kind::Transfer(pb::Transfer {
                        to: keys[(i + 1) % TXS].public_key().0.to_vec().into(),
                        amount: 5,
                    })),
                }),
            };
            let mut tx = SignedTx::sign(body.encode_to_vec(), &chain, &[&keys[i]]);
            if forged.contains(&i) {
                tx.signatures[0].1.0[7] ^= 0x10;
            }
            PreparedTx::new(tx)
        })
        .collect()
}

/// Every transaction but the forged ones, as if a mempool had verified them:
/// only the forged are checked at execution, in one small batch.
struct AllButForged(BTreeSet<Hash>);

impl VerifiedTxs for AllButForged {
    fn is_verified(&self, tx: &PreparedTx) -> bool {
        !self.0.contains(&tx.id)
    }
}

/// Every transaction vouched for, as if a mempool had verified them all.
struct AllVerified;

impl VerifiedTxs for AllVerified {
    fn is_verified(&self, _: &PreparedTx) -> bool {
        true
    }
}

#[test]
fn forged_signatures_anywhere_in_a_speculated_block_are_found_exactly() {
    let keys: Vec<SecretKey> = (0..TXS).map(secret).collect();
    let txs = block(&keys, 0, &FORGED);

    let mut speculated = ledger(&keys);
    let executed = speculated
        .execute(Height(1), &txs, &NoneVerified, &[])
        .unwrap();
    let bad_signature = TxError::BadSignature { index: 0 }.code();
    for (i, receipt) in executed.outcome.receipts.iter().enumerate() {
        let expected = if FORGED.contains(&i) {
            bad_signature
        } else {
            0
        };
        assert_eq!(
            receipt.code, expected,
            "transaction {i}: {}",
            receipt.message
        );
        let nonce = speculated.account(&keys[i].public_key()).unwrap().nonce;
        assert_eq!(
            nonce,
            u64::from(!FORGED.contains(&i)),
            "nonce of sender {i}"
        );
    }

    // Seven to check: verified before the block runs.
    let forged: BTreeSet<Hash> = FORGED.iter().map(|&i| txs[i].id).collect();
    let mut verified_first = ledger(&keys);
    let reference = verified_first
        .execute(Height(1), &txs, &AllButForged(forged), &[])
        .unwrap();
    assert_eq!(executed.state_root, reference.state_root);
    assert_eq!(
        executed.outcome.receipt_root,
        reference.outcome.receipt_root
    );
    assert_eq!(executed.outcome.receipts, reference.outcome.receipts);
}

#[test]
fn a_clean_speculated_block_keeps_the_outcome_and_version_of_verifying_first() {
    let keys: Vec<SecretKey> = (0..TXS).map(secret).collect();
    let mut speculated = ledger(&keys);
    let mut verified_first = ledger(&keys);
    for height in 1..=2u64 {
        let txs = block(&keys, height - 1, &[]);
        let extra = [ExtraWrite {
            column_family: EXTRA_CF.into(),
            key: height.to_be_bytes().to_vec(),
            value: Some(format!("block {height}").into_bytes()),
        }];
        let executed = speculated
            .execute(Height(height), &txs, &NoneVerified, &extra)
            .unwrap();
        let reference = verified_first
            .execute(Height(height), &txs, &AllVerified, &extra)
            .unwrap();
        for ledger in [&speculated, &verified_first] {
            assert_eq!(
                ledger
                    .store()
                    .get_extra(EXTRA_CF, &height.to_be_bytes())
                    .unwrap(),
                Some(format!("block {height}").into_bytes())
            );
        }
        assert!(executed.outcome.receipts.iter().all(|r| r.code == 0));
        assert_eq!(executed.state_root, reference.state_root, "height {height}");
        assert_eq!(executed.outcome.receipts, reference.outcome.receipts);
        assert_eq!(executed.outcome.writes, reference.outcome.writes);
        assert_eq!(speculated.state_root(), verified_first.state_root());
        assert_eq!(
            speculated.account(&keys[7].public_key()).unwrap().nonce,
            height
        );
    }
}
