//! Pending spend: a payer's pending transactions, together, never take more
//! than its committed balance. Admission refuses the one that would, and
//! reaping cuts a nonce run at the first transaction the balance left could
//! not cover, so every transaction a node proposes can pay its fee.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::collections::BTreeSet;

use common::block;
use commons_state_machine::{AdmitError, Application, TxError};
use commons_types::tx::{SignedTx, pb};
use commons_types::{ChainId, SecretKey};
use prost::Message;

const CHAIN: &str = "pending-spend";
const FEE: u64 = 1_000;

fn chain() -> ChainId {
    ChainId::new(CHAIN).unwrap()
}

fn payer() -> SecretKey {
    SecretKey::from_seed([0xa1; 32])
}

fn sink() -> SecretKey {
    SecretKey::from_seed([0x5c; 32])
}

/// A chain whose fee is `FEE` whatever the size, and whose payer holds
/// `balance`.
fn app(balance: u64) -> Application {
    common::app(
        &chain(),
        FEE,
        &[(payer().public_key(), balance), (sink().public_key(), 0)],
    )
}

/// The payer's transfer of `amount` to the sink at `nonce`, fee `FEE`.
fn transfer(nonce: u64, amount: u64) -> SignedTx {
    let body = pb::TxBody {
        chain_id: CHAIN.into(),
        nonce,
        fee: FEE,
        action: Some(pb::Action {
            kind: Some(pb::action::Kind::Transfer(pb::Transfer {
                to: sink().public_key().0.to_vec().into(),
                amount,
            })),
        }),
    }
    .encode_to_vec();
    SignedTx::sign(body, &chain(), &[&payer()])
}

fn reap(app: &Application) -> Vec<Vec<u8>> {
    let view = app.ledger().view();
    app.mempool()
        .reap(&view, 1_000, 1 << 20, &BTreeSet::new())
        .unwrap()
}

#[test]
fn a_payer_that_can_afford_one_of_two_transactions_gets_one_committed_and_one_refused() {
    // Enough for one transfer of 5,000 with its fee, and one of 400.
    let mut app = app(7_500);
    let first = transfer(0, 5_000);
    let second = transfer(1, 5_000);
    let small = transfer(1, 400);
    let verdicts = app
        .submit(vec![first.encode(), second.encode(), small.encode()])
        .unwrap();
    assert_eq!(verdicts[0], Ok(first.id()));
    assert_eq!(
        verdicts[1],
        Err(AdmitError::Invalid(TxError::InsufficientFunds {
            account: payer().public_key(),
            needed: 12_000,
            available: 7_500,
        })),
        "the second transfer would take the payer past its balance"
    );
    assert_eq!(verdicts[2], Ok(small.id()), "what is left covers this one");

    // The block carries both admitted transfers, and both execute.
    let txs = reap(&app);
    assert_eq!(txs, vec![first.encode(), small.encode()]);
    let applied = app.apply(&block(&app, 1, txs), &[]).unwrap();
    assert_eq!(applied.receipts.len(), 2);
    for r in &applied.receipts {
        assert!(r.success(), "{}", r.message);
    }
    let account = app.ledger().account(&payer().public_key()).unwrap();
    assert_eq!((account.balance, account.nonce), (100, 2));
    assert!(app.mempool().is_empty());
}

#[test]
fn a_nonce_run_is_cut_at_the_first_transaction_the_balance_no_longer_covers() {
    // Both affordable when admitted: 6,000 and 2,000 of 8,000.
    let mut app = app(8_000);
    let a = transfer(0, 5_000);
    let b = transfer(1, 1_000);
    let verdicts = app.submit(vec![a.encode(), b.encode()]).unwrap();
    assert_eq!(verdicts, vec![Ok(a.id()), Ok(b.id())]);

    // Another node's block commits a different nonce-0 transfer of 6,000:
    // 1,000 is left, and `a` can never commit.
    let other = transfer(0, 6_000);
    let applied = app
        .apply(&block(&app, 1, vec![other.encode()]), &[])
        .unwrap();
    assert!(
        applied.receipts[0].success(),
        "{}",
        applied.receipts[0].message
    );
    let account = app.ledger().account(&payer().public_key()).unwrap();
    assert_eq!((account.balance, account.nonce), (1_000, 1));
    assert!(!app.mempool().contains(&a.id()), "nonce 0 is spent");
    assert!(app.mempool().contains(&b.id()));

    // `b` takes 2,000: it is not proposed (it would fail without its
    // transfer, and its followers behind it), and it waits.
    assert!(reap(&app).is_empty(), "an unaffordable run is cut");
    assert!(app.mempool().contains(&b.id()));
}
