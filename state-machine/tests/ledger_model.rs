//! The ledger against a naive reference model written independently here:
//! random sequences of valid and invalid transactions over many blocks must
//! give the same balances, stakes, leases and receipt codes as the model,
//! conserve supply, and never take a balance below zero. Also: the same
//! blocks give the same state roots, on the memory and RocksDB stores.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::{BTreeMap, BTreeSet};

use commons_state_machine::ledger::state::key;
use commons_state_machine::ledger::{
    Genesis, GenesisAccount, GenesisValidator, Lease, Ledger, NoneVerified, PreparedTx,
};
use commons_state_machine::store::{MerkleStore, StoreConfig};
use commons_types::tx::{SignedTx, pb};
use commons_types::{ChainId, Height, PublicKey, SecretKey};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use prost::Message;

const CHAIN: &str = "model-chain";
const ACCOUNTS: usize = 5;
const FEE_BASE: u64 = 7;
const FEE_PER_BYTE: u64 = 1;
const UNBONDING_PERIOD: u64 = 3;
const LEASE_MAX: u64 = 6;

fn secret(i: usize) -> SecretKey {
    SecretKey::from_seed([i as u8 + 1; 32])
}

fn genesis() -> Genesis {
    let mut params = BTreeMap::new();
    params.insert("fee_base".to_string(), FEE_BASE);
    params.insert("fee_per_byte".to_string(), FEE_PER_BYTE);
    params.insert("unbonding_period_blocks".to_string(), UNBONDING_PERIOD);
    params.insert("lease_max_duration_blocks".to_string(), LEASE_MAX);
    Genesis {
        chain_id: ChainId::new(CHAIN).unwrap(),
        accounts: (0..ACCOUNTS)
            .map(|i| GenesisAccount {
                public_key: secret(i).public_key(),
                balance: 2_000 + 500 * i as u64,
                bonded: 100,
            })
            .collect(),
        validators: vec![GenesisValidator {
            public_key: secret(0).public_key(),
            power: 10,
            address: "127.0.0.1:1".into(),
        }],
        params,
        treasury: 1_000,
    }
}

/// What the generator asks for; the test turns it into a signed transaction
/// and the model predicts its outcome.
#[derive(Clone, Debug)]
enum Op {
    Transfer {
        from: usize,
        to: usize,
        amount: u64,
    },
    Bond {
        who: usize,
        amount: u64,
    },
    Unbond {
        who: usize,
        amount: u64,
    },
    Settle {
        buyer: usize,
        seller: usize,
        trade: u64,
        qty: u64,
        price: u64,
        mfee: u64,
        wrong_signer: bool,
    },
    OpenLease {
        buyer: usize,
        provider: usize,
        escrow: u64,
        rate: u64,
        duration: u64,
    },
    Claim {
        who: usize,
        lease: u64,
        amount: u64,
    },
    Close {
        who: usize,
        lease: u64,
    },
}

#[derive(Clone, Debug)]
struct Tx {
    op: Op,
    /// Nonce offset: 0 = correct, 1 = replay of the previous nonce, 2 = future.
    nonce_fault: u8,
    wrong_chain: bool,
    bad_signature: bool,
    fee_short: bool,
}

fn op() -> impl Strategy<Value = Op> {
    let a = 0..ACCOUNTS;
    prop_oneof![
        (a.clone(), a.clone(), 1..1_500u64).prop_map(|(from, to, amount)| Op::Transfer {
            from,
            to,
            amount
        }),
        (a.clone(), 1..800u64).prop_map(|(who, amount)| Op::Bond { who, amount }),
        (a.clone(), 1..300u64).prop_map(|(who, amount)| Op::Unbond { who, amount }),
        (
            a.clone(),
            a.clone(),
            0..6u64,
            1..20u64,
            0..60u64,
            0..30u64,
            proptest::bool::weighted(0.1)
        )
            .prop_map(|(buyer, seller, trade, qty, price, mfee, wrong_signer)| {
                Op::Settle {
                    buyer,
                    seller,
                    trade,
                    qty,
                    price,
                    mfee,
                    wrong_signer,
                }
            }),
        (a.clone(), a.clone(), 1..900u64, 1..80u64, 1..9u64).prop_map(
            |(buyer, provider, escrow, rate, duration)| Op::OpenLease {
                buyer,
                provider,
                escrow,
                rate,
                duration
            }
        ),
        (a.clone(), 0..8u64, 1..200u64).prop_map(|(who, lease, amount)| Op::Claim {
            who,
            lease,
            amount
        }),
        (a, 0..8u64).prop_map(|(who, lease)| Op::Close { who, lease }),
    ]
}

fn tx() -> impl Strategy<Value = Tx> {
    (
        op(),
        prop_oneof![8 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)],
        proptest::bool::weighted(0.05),
        proptest::bool::weighted(0.05),
        proptest::bool::weighted(0.05),
    )
        .prop_map(
            |(op, nonce_fault, wrong_chain, bad_signature, fee_short)| Tx {
                op,
                nonce_fault,
                wrong_chain,
                bad_signature,
                fee_short,
            },
        )
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct MAccount {
    balance: u64,
    nonce: u64,
    bonded: u64,
    /// (release height, amount)
    unbonding: Vec<(u64, u64)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct MLease {
    buyer: usize,
    provider: usize,
    escrow: u64,
    claimed: u64,
    rate: u64,
    start: u64,
    end: u64,
}

/// The naive reference ledger.
#[derive(Clone, Debug)]
struct Model {
    accounts: Vec<MAccount>,
    treasury: u64,
    trades: BTreeSet<(usize, u64)>,
    leases: BTreeMap<u64, MLease>,
    next_lease: u64,
}

impl Model {
    fn new(g: &Genesis) -> Model {
        Model {
            accounts: g
                .accounts
                .iter()
                .map(|a| MAccount {
                    balance: a.balance,
                    bonded: a.bonded,
                    ..MAccount::default()
                })
                .collect(),
            treasury: g.treasury,
            trades: BTreeSet::new(),
            leases: BTreeMap::new(),
            next_lease: 0,
        }
    }

    fn supply(&self) -> u128 {
        let accounts: u128 = self
            .accounts
            .iter()
            .map(|a| {
                u128::from(a.balance)
                    + u128::from(a.bonded)
                    + a.unbonding.iter().map(|u| u128::from(u.1)).sum::<u128>()
            })
            .sum();
        accounts
            + u128::from(self.treasury)
            + self
                .leases
                .values()
                .map(|l| u128::from(l.escrow))
                .sum::<u128>()
    }

    fn begin_block(&mut self, h: u64) {
        for a in &mut self.accounts {
            let released: u64 = a.unbonding.iter().filter(|u| u.0 == h).map(|u| u.1).sum();
            a.unbonding.retain(|u| u.0 != h);
            a.balance += released;
        }
        let expired: Vec<u64> = self
            .leases
            .iter()
            .filter(|(_, l)| l.end == h)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let l = self.leases.remove(&id).unwrap();
            self.accounts[l.buyer].balance += l.escrow;
        }
    }

    /// Predicts the receipt code of `tx` (0 = success) and applies it.
    fn apply(&mut self, h: u64, tx: &Tx, encoded_len: usize, fee: u64) -> u32 {
        let payer = payer_of(&tx.op);
        if tx.bad_signature {
            return 3;
        }
        if tx.wrong_chain {
            return 2;
        }
        let expected_nonce = self.accounts[payer].nonce;
        let nonce = nonce_for(expected_nonce, tx.nonce_fault);
        if nonce != expected_nonce {
            return 4;
        }
        let required = FEE_BASE + FEE_PER_BYTE * encoded_len as u64;
        if fee < required {
            return 5;
        }
        if self.accounts[payer].balance < fee {
            return 6;
        }
        self.accounts[payer].balance -= fee;
        self.accounts[payer].nonce += 1;
        self.treasury += fee;
        let before = self.clone();
        let code = self.action(h, &tx.op);
        if code != 0 {
            *self = before;
        }
        code
    }

    fn action(&mut self, h: u64, op: &Op) -> u32 {
        match *op {
            Op::Transfer { from, to, amount } => self.pay(from, to, amount),
            Op::Bond { who, amount } => {
                let a = &mut self.accounts[who];
                if a.balance < amount {
                    return 6;
                }
                a.balance -= amount;
                a.bonded += amount;
                0
            }
            Op::Unbond { who, amount } => {
                let a = &mut self.accounts[who];
                if a.bonded < amount {
                    return 6;
                }
                if a.unbonding.len() >= 16 {
                    return 15;
                }
                a.bonded -= amount;
                a.unbonding.push((h + UNBONDING_PERIOD, amount));
                0
            }
            Op::Settle {
                buyer,
                seller,
                trade,
                qty,
                price,
                mfee,
                wrong_signer,
            } => {
                if wrong_signer && seller_signer(seller) != seller {
                    return 7;
                }
                let market = ACCOUNTS - 1;
                if self.trades.contains(&(market, trade)) {
                    return 9;
                }
                let code = self.pay(buyer, seller, qty * price);
                if code != 0 {
                    return code;
                }
                if mfee > 0 {
                    let code = self.pay(buyer, market, mfee);
                    if code != 0 {
                        return code;
                    }
                }
                self.trades.insert((market, trade));
                0
            }
            Op::OpenLease {
                buyer,
                provider,
                escrow,
                rate,
                duration,
            } => {
                if duration > LEASE_MAX || provider == buyer {
                    return 14;
                }
                if self.accounts[buyer].balance < escrow {
                    return 6;
                }
                self.accounts[buyer].balance -= escrow;
                let id = self.next_lease;
                self.next_lease += 1;
                self.leases.insert(
                    id,
                    MLease {
                        buyer,
                        provider,
                        escrow,
                        claimed: 0,
                        rate,
                        start: h,
                        end: h + duration,
                    },
                );
                0
            }
            Op::Claim { who, lease, amount } => {
                let Some(l) = self.leases.get_mut(&lease) else {
                    return 11;
                };
                if l.provider != who {
                    return 12;
                }
                let elapsed = h.min(l.end) - l.start;
                let allowed = (elapsed * l.rate).min(l.escrow + l.claimed) - l.claimed;
                if amount > allowed {
                    return 13;
                }
                l.escrow -= amount;
                l.claimed += amount;
                self.accounts[who].balance += amount;
                0
            }
            Op::Close { who, lease } => {
                let Some(l) = self.leases.get(&lease).cloned() else {
                    return 11;
                };
                if l.buyer != who && l.provider != who {
                    return 12;
                }
                self.leases.remove(&lease);
                self.accounts[l.buyer].balance += l.escrow;
                0
            }
        }
    }

    fn pay(&mut self, from: usize, to: usize, amount: u64) -> u32 {
        if self.accounts[from].balance < amount {
            return 6;
        }
        self.accounts[from].balance -= amount;
        self.accounts[to].balance += amount;
        0
    }
}

fn payer_of(op: &Op) -> usize {
    match *op {
        Op::Transfer { from, .. } => from,
        Op::Bond { who, .. }
        | Op::Unbond { who, .. }
        | Op::Claim { who, .. }
        | Op::Close { who, .. } => who,
        Op::Settle { buyer, .. } => buyer,
        Op::OpenLease { buyer, .. } => buyer,
    }
}

/// The account that signs as seller when `wrong_signer` is set.
fn seller_signer(seller: usize) -> usize {
    (seller + 1) % ACCOUNTS
}

fn nonce_for(expected: u64, fault: u8) -> u64 {
    match fault {
        1 if expected > 0 => expected - 1,
        2 => expected + 1,
        _ => expected,
    }
}

fn key_bytes(i: usize) -> prost::bytes::Bytes {
    secret(i).public_key().0.to_vec().into()
}

/// Builds and signs the transaction; returns it with the fee offered.
fn build(tx: &Tx, nonce: u64) -> (SignedTx, u64) {
    use pb::action::Kind;
    let kind = match tx.op {
        Op::Transfer { to, amount, .. } => Kind::Transfer(pb::Transfer {
            to: key_bytes(to),
            amount,
        }),
        Op::Bond { amount, .. } => Kind::Bond(pb::Bond { amount }),
        Op::Unbond { amount, .. } => Kind::Unbond(pb::Unbond { amount }),
        Op::Settle {
            buyer,
            seller,
            trade,
            qty,
            price,
            mfee,
            ..
        } => Kind::Settle(pb::Settle {
            marketplace: key_bytes(ACCOUNTS - 1),
            trade_id: trade,
            buyer: key_bytes(buyer),
            seller: key_bytes(seller),
            resource: pb::Resource::Energy as i32,
            quantity: qty,
            unit_price: price,
            marketplace_fee: mfee,
        }),
        Op::OpenLease {
            provider,
            escrow,
            rate,
            duration,
            ..
        } => Kind::OpenLease(pb::OpenLease {
            provider: key_bytes(provider),
            resource: pb::Resource::Compute as i32,
            escrow,
            rate_per_block: rate,
            duration_blocks: duration,
        }),
        Op::Claim { lease, amount, .. } => Kind::Claim(pb::Claim {
            lease_id: lease,
            amount,
        }),
        Op::Close { lease, .. } => Kind::CloseLease(pb::CloseLease { lease_id: lease }),
    };
    // The fee is fixed before signing, so size the body with a placeholder
    // fee of the same encoded width and then settle the real fee.
    let chain = ChainId::new(if tx.wrong_chain { "other-chain" } else { CHAIN }).unwrap();
    let payer = secret(payer_of(&tx.op));
    let mut signers = vec![payer];
    if let Op::Settle {
        seller,
        wrong_signer,
        ..
    } = tx.op
    {
        signers.push(secret(if wrong_signer {
            seller_signer(seller)
        } else {
            seller
        }));
    }
    let mut fee = 1_000u64;
    for _ in 0..3 {
        let body = pb::TxBody {
            chain_id: chain.to_string(),
            nonce,
            fee,
            action: Some(pb::Action {
                kind: Some(kind.clone()),
            }),
        };
        let refs: Vec<&SecretKey> = signers.iter().collect();
        let signed = SignedTx::sign(body.encode_to_vec(), &ChainId::new(CHAIN).unwrap(), &refs);
        let required = FEE_BASE + FEE_PER_BYTE * signed.encode().len() as u64;
        let target = if tx.fee_short { required - 1 } else { required };
        if target == fee {
            break;
        }
        fee = target;
    }
    let body = pb::TxBody {
        chain_id: chain.to_string(),
        nonce,
        fee,
        action: Some(pb::Action { kind: Some(kind) }),
    };
    let refs: Vec<&SecretKey> = signers.iter().collect();
    let mut signed = SignedTx::sign(body.encode_to_vec(), &ChainId::new(CHAIN).unwrap(), &refs);
    if tx.bad_signature {
        signed.signatures[0].1.0[10] ^= 1;
    }
    (signed, fee)
}

fn check_against_model(ledger: &Ledger, model: &Model) {
    for (i, m) in model.accounts.iter().enumerate() {
        let a = ledger.account(&secret(i).public_key()).unwrap();
        assert_eq!(a.balance, m.balance, "balance of account {i}");
        assert_eq!(a.nonce, m.nonce, "nonce of account {i}");
        assert_eq!(a.bonded, m.bonded, "bonded stake of account {i}");
        let unbonding: Vec<(u64, u64)> = a
            .unbonding
            .iter()
            .map(|u| (u.release.0, u.amount))
            .collect();
        assert_eq!(unbonding, m.unbonding, "unbonding of account {i}");
    }
    let store = ledger.store();
    let h = ledger.height().0;
    for id in 0..model.next_lease + 2 {
        let stored = store
            .get(h, &key::lease(id))
            .unwrap()
            .map(|b| Lease::decode(&b).unwrap());
        match (stored, model.leases.get(&id)) {
            (None, None) => {}
            (Some(l), Some(m)) => {
                assert_eq!(l.buyer, secret(m.buyer).public_key());
                assert_eq!(l.provider, secret(m.provider).public_key());
                assert_eq!(
                    (l.escrow, l.claimed, l.rate_per_block),
                    (m.escrow, m.claimed, m.rate)
                );
                assert_eq!((l.start.0, l.end.0), (m.start, m.end));
            }
            (l, m) => panic!("lease {id}: ledger {l:?}, model {m:?}"),
        }
    }
    let treasury = store.get(h, key::TREASURY).unwrap().unwrap();
    assert_eq!(
        u64::from_be_bytes(treasury.try_into().unwrap()),
        model.treasury
    );
}

fn run(
    blocks: &[Vec<Tx>],
    rocks_dir: Option<&std::path::Path>,
) -> (Vec<commons_types::Hash>, Model) {
    let g = genesis();
    let mut ledger = match rocks_dir {
        None => Ledger::in_memory(&g).unwrap(),
        Some(dir) => Ledger::open(
            MerkleStore::open_rocksdb(dir, &StoreConfig::default()).unwrap(),
            &g,
        )
        .unwrap(),
    };
    let mut model = Model::new(&g);
    let supply0 = model.supply();
    let mut roots = vec![ledger.state_root()];
    for (b, txs) in blocks.iter().enumerate() {
        let h = b as u64 + 1;
        model.begin_block(h);
        // Nonces are chosen from the model's view as the block is built.
        let mut planned = model.clone();
        let mut prepared = Vec::new();
        let mut expected = Vec::new();
        for tx in txs {
            let payer = payer_of(&tx.op);
            let nonce = nonce_for(planned.accounts[payer].nonce, tx.nonce_fault);
            let (signed, fee) = build(tx, nonce);
            let p = PreparedTx::new(signed);
            expected.push(planned.apply(h, tx, p.encoded_len, fee));
            prepared.push(p);
        }
        model = planned;
        let executed = ledger
            .execute(Height(h), &prepared, &NoneVerified, &[])
            .unwrap();
        let codes: Vec<u32> = executed.outcome.receipts.iter().map(|r| r.code).collect();
        assert_eq!(codes, expected, "receipt codes of block {h}");
        check_against_model(&ledger, &model);
        assert_eq!(model.supply(), supply0, "supply is conserved");
        let supply = ledger.store().get(h, key::SUPPLY).unwrap().unwrap();
        assert_eq!(
            u128::from(u64::from_be_bytes(supply.try_into().unwrap())),
            supply0
        );
        roots.push(executed.state_root);
    }
    (roots, model)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn ledger_matches_the_naive_model(blocks in proptest::collection::vec(proptest::collection::vec(tx(), 0..12), 1..10)) {
        let (first, _) = run(&blocks, None);
        let (second, _) = run(&blocks, None);
        prop_assert_eq!(first, second, "two executions give the same roots");
    }
}

#[test]
fn memory_and_rocksdb_stores_give_the_same_roots() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let blocks = proptest::collection::vec(proptest::collection::vec(tx(), 1..15), 12)
        .new_tree(&mut runner)
        .unwrap()
        .current();
    let dir = tempfile::tempdir().unwrap();
    let (memory, _) = run(&blocks, None);
    let (rocks, _) = run(&blocks, Some(dir.path()));
    assert_eq!(memory, rocks);
    assert_eq!(memory.len(), 13);
}

#[test]
fn each_rejection_has_its_own_code() {
    // A replay, a wrong chain id, a wrong signer and a second settlement of
    // the same trade, each in isolation.
    let g = genesis();
    let mut ledger = Ledger::in_memory(&g).unwrap();
    let settle = |trade, wrong_signer| Tx {
        op: Op::Settle {
            buyer: 0,
            seller: 1,
            trade,
            qty: 2,
            price: 3,
            mfee: 1,
            wrong_signer,
        },
        nonce_fault: 0,
        wrong_chain: false,
        bad_signature: false,
        fee_short: false,
    };
    let (first, _) = build(&settle(1, false), 0);
    let (replay, _) = build(&settle(2, false), 0);
    let (second_same_trade, _) = build(&settle(1, false), 1);
    let (wrong_signer, _) = build(&settle(3, true), 2);
    let (wrong_chain, _) = build(
        &Tx {
            wrong_chain: true,
            ..settle(4, false)
        },
        3,
    );
    let txs: Vec<PreparedTx> = [first, replay, second_same_trade, wrong_signer, wrong_chain]
        .into_iter()
        .map(PreparedTx::new)
        .collect();
    let executed = ledger.execute(Height(1), &txs, &NoneVerified, &[]).unwrap();
    let codes: Vec<u32> = executed.outcome.receipts.iter().map(|r| r.code).collect();
    assert_eq!(codes, vec![0, 4, 9, 7, 2]);
    assert!(
        executed.outcome.receipts[2]
            .message
            .contains("already settled")
    );
    let _ = PublicKey([0; 32]);
}
