//! The mempool's record of checked signatures vouches for exact envelopes,
//! never for bare ids. The tx id names the body and the signers' keys but
//! not the signatures, so a forged signature under the right key keeps the
//! id. Were the record kept by id, a Byzantine node could take a body that
//! honest mempools verified with its real signatures, put a forged signature
//! in their place, and propose it: every honest validator would skip the
//! check and vote for a block holding a transaction nobody signed that way.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use commons_consensus::Block;
use commons_state_machine::ledger::{PreparedTx, VerifiedTxs};
use commons_state_machine::{Application, PayloadError};
use commons_types::tx::{SignedTx, pb};
use commons_types::{ChainId, SecretKey};
use prost::Message;

const CHAIN: &str = "envelope-chain";
const BALANCE: u64 = 10_000;

fn chain() -> ChainId {
    ChainId::new(CHAIN).unwrap()
}

fn alice() -> SecretKey {
    SecretKey::from_seed([0xa1; 32])
}

fn mallory() -> SecretKey {
    SecretKey::from_seed([0x66; 32])
}

fn app() -> Application {
    common::app(
        &chain(),
        0,
        &[
            (alice().public_key(), BALANCE),
            (mallory().public_key(), BALANCE),
        ],
    )
}

/// Nonce 0 (Alice's and Mallory's next), no fee: pay Mallory 5,000.
fn body() -> Vec<u8> {
    pb::TxBody {
        chain_id: CHAIN.into(),
        nonce: 0,
        fee: 0,
        action: Some(pb::Action {
            kind: Some(pb::action::Kind::Transfer(pb::Transfer {
                to: mallory().public_key().0.to_vec().into(),
                amount: 5_000,
            })),
        }),
    }
    .encode_to_vec()
}

/// Block 1 on genesis carrying `txs`, as a leader would propose it.
fn block_of(app: &Application, txs: &[&SignedTx]) -> Block {
    common::block(app, 1, txs.iter().map(|t| t.encode()).collect())
}

#[test]
fn a_verified_body_under_other_signatures_is_checked_again() {
    let mut app = app();
    // Mallory pays herself: a valid transaction, admitted, so its
    // signatures are on record.
    let honest = SignedTx::sign(body(), &chain(), &[&mallory()]);
    let verdicts = app.submit(vec![honest.encode()]).unwrap();
    assert_eq!(verdicts, vec![Ok(honest.id())]);

    // The same transaction under a forged signature: Mallory's key, bytes
    // she never signed. Its id is the honest one's (signatures are left
    // out of ids).
    let forged = SignedTx {
        body: honest.body.clone(),
        signatures: vec![(mallory().public_key(), alice().sign_raw(b"not this"))],
    };
    assert_eq!(forged.id(), honest.id(), "the id leaves signatures out");
    // The same body relabelled as Alice's: her key, Mallory's signature.
    // Another transaction (ids name the signers), but the same body.
    let relabelled = SignedTx {
        body: honest.body.clone(),
        signatures: vec![(alice().public_key(), honest.signatures[0].1)],
    };
    assert_ne!(relabelled.id(), honest.id(), "the id names the signers");
    assert!(app.mempool().is_verified(&PreparedTx::new(honest.clone())));
    assert!(!app.mempool().is_verified(&PreparedTx::new(forged.clone())));
    assert!(
        !app.mempool()
            .is_verified(&PreparedTx::new(relabelled.clone()))
    );

    // No honest validator votes for a proposal carrying either...
    for tx in [&forged, &relabelled] {
        assert_eq!(
            app.validate(&block_of(&app, &[tx]), None),
            Err(PayloadError::BadSignature { index: 0 })
        );
    }
    // ...while the envelope it did verify passes without a second check.
    assert_eq!(app.validate(&block_of(&app, &[&honest]), None), Ok(()));
    let bad = block_of(&app, &[&relabelled]);

    // And were such a block committed anyway, executing it moves nothing
    // out of Alice's account: the signature is checked, and fails.
    let applied = app.apply(&bad, &[]).unwrap();
    assert_eq!(applied.receipts.len(), 1);
    assert!(!applied.receipts[0].success());
    assert!(
        applied.receipts[0].message.contains("signature"),
        "{}",
        applied.receipts[0].message
    );
    let ledger = app.ledger();
    assert_eq!(
        ledger.account(&alice().public_key()).unwrap().balance,
        BALANCE
    );
    assert_eq!(
        ledger.account(&mallory().public_key()).unwrap().balance,
        BALANCE
    );
}
