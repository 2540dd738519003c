//! A block larger than one chunk of the signature pipeline (block execution
//! verifies chunks on a thread of their own while it runs the transactions
//! of chunks already verified): forged signatures at the edges of chunks and
//! in their middles are found exactly, and the outcome is the one the
//! unpipelined path gives for the same block.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use commons_state_machine::TxError;
use commons_state_machine::ledger::{
    Genesis, GenesisAccount, GenesisValidator, Ledger, NoneVerified, PreparedTx, VerifiedTxs,
};
use commons_types::tx::{SignedTx, pb};
use commons_types::{ChainId, Hash, Height, SecretKey};
use prost::Message;

const CHAIN: &str = "large-block";
/// More than two full chunks of the pipeline (2,048 transactions each):
/// one full chunk, then the tapered end of 1,476, 738, 369 and 369
/// (chunks start at 0, 2,048, 3,524, 4,262 and 4,631).
const TXS: usize = 5_000;
/// The first and last of the block, both sides of each chunk edge, and
/// some in the middles.
const FORGED: [usize; 13] = [
    0, 1, 1_000, 2_047, 2_048, 3_333, 3_523, 3_524, 4_261, 4_262, 4_630, 4_631, 4_999,
];

fn secret(i: usize) -> SecretKey {
    let mut seed = [9u8; 32];
    seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
    SecretKey::from_seed(seed)
}

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
    Ledger::in_memory(&genesis).unwrap()
}

/// Transfers from every account to the next, with the signatures of
/// `FORGED` altered after signing.
fn block(keys: &[SecretKey]) -> Vec<PreparedTx> {
    let chain = ChainId::new(CHAIN).unwrap();
    (0..TXS)
        .map(|i| {
            let body = pb::TxBody {
                chain_id: CHAIN.into(),
                nonce: 0,
                fee: 10_000,
                action: Some(pb::Action {
                    kind: Some(pb::action::Kind::Transfer(pb::Transfer {
                        to: keys[(i + 1) % TXS].public_key().0.to_vec().into(),
                        amount: 5,
                    })),
                }),
            };
            let mut tx = SignedTx::sign(body.encode_to_vec(), &chain, &[&keys[i]]);
            if FORGED.contains(&i) {
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
    fn is_verified(&self, id: &Hash) -> bool {
        !self.0.contains(id)
    }
}

#[test]
fn forged_signatures_anywhere_in_a_pipelined_block_are_found_exactly() {
    let keys: Vec<SecretKey> = (0..TXS).map(secret).collect();
    let txs = block(&keys);

    let mut pipelined = ledger(&keys);
    let executed = pipelined
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
        let nonce = pipelined.account(&keys[i].public_key()).unwrap().nonce;
        assert_eq!(
            nonce,
            u64::from(!FORGED.contains(&i)),
            "nonce of sender {i}"
        );
    }

    let forged: BTreeSet<Hash> = FORGED.iter().map(|&i| txs[i].id).collect();
    let mut unpipelined = ledger(&keys);
    let reference = unpipelined
        .execute(Height(1), &txs, &AllButForged(forged), &[])
        .unwrap();
    assert_eq!(executed.state_root, reference.state_root);
    assert_eq!(
        executed.outcome.receipt_root,
        reference.outcome.receipt_root
    );
    assert_eq!(executed.outcome.receipts, reference.outcome.receipts);
}
