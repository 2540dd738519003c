//! Block execution on the memory store: 10,000-transaction blocks of
//! transfers and of settlements (signatures verified, then skipped as if the
//! mempool had verified them), and mempool admission of 10,000 settlements;
//! beside them, `ceiling_verify_only_10k`: the block's 20,000 signatures
//! batch-verified on all cores and nothing else, the ceiling that settlement
//! execution with verification is measured against.
//! Each measured block is a real next block of one ledger: state root,
//! receipts and receipt root included.

use std::hint::black_box;
use std::time::{Duration, Instant};

use commons_state_machine::Mempool;
use commons_state_machine::ledger::{
    Genesis, GenesisAccount, GenesisValidator, Ledger, NoneVerified, PreparedTx, VerifiedTxs,
};
use commons_types::batch::{self, VerifyItem};
use commons_types::tx::{SignedTx, pb};
use commons_types::{ChainId, SecretKey};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;

/// The node's allocator (see `node/src/main.rs`), so figures are the node's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const N: usize = 10_000;
const CHAIN: &str = "bench-chain";

struct AllVerified;

impl VerifiedTxs for AllVerified {
    fn is_verified(&self, _: &PreparedTx) -> bool {
        true
    }
}

fn key(role: u8, i: usize) -> SecretKey {
    let mut seed = [role; 32];
    seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
    SecretKey::from_seed(seed)
}

struct Parties {
    buyers: Vec<SecretKey>,
    sellers: Vec<SecretKey>,
    market: SecretKey,
}

fn parties() -> Parties {
    Parties {
        buyers: (0..N).map(|i| key(1, i)).collect(),
        sellers: (0..N).map(|i| key(2, i)).collect(),
        market: key(3, 0),
    }
}

fn ledger(p: &Parties) -> Ledger {
    let mut accounts: Vec<GenesisAccount> = p
        .buyers
        .iter()
        .chain(&p.sellers)
        .map(|k| GenesisAccount {
            public_key: k.public_key(),
            balance: 1_000_000_000,
            bonded: 0,
        })
        .collect();
    accounts.push(GenesisAccount {
        public_key: p.market.public_key(),
        balance: 0,
        bonded: 0,
    });
    let genesis = Genesis {
        chain_id: ChainId::new(CHAIN).expect("chain id"),
        accounts,
        validators: vec![GenesisValidator {
            public_key: p.market.public_key(),
            power: 1,
            address: "127.0.0.1:1".into(),
        }],
        params: Default::default(),
        treasury: 0,
    };
    Ledger::in_memory(&genesis).expect("genesis")
}

fn sign(body: pb::TxBody, signers: &[&SecretKey]) -> SignedTx {
    SignedTx::sign(
        body.encode_to_vec(),
        &ChainId::new(CHAIN).expect("chain id"),
        signers,
    )
}

fn transfers(p: &Parties, nonce: u64) -> Vec<PreparedTx> {
    p.buyers
        .iter()
        .zip(&p.sellers)
        .map(|(from, to)| {
            let body = pb::TxBody {
                chain_id: CHAIN.into(),
                nonce,
                fee: 10_000,
                action: Some(pb::Action {
                    kind: Some(pb::action::Kind::Transfer(pb::Transfer {
                        to: to.public_key().0.to_vec().into(),
                        amount: 5,
                    })),
                }),
            };
            PreparedTx::new(sign(body, &[from]))
        })
        .collect()
}

fn settlements(p: &Parties, nonce: u64) -> Vec<PreparedTx> {
    p.buyers
        .iter()
        .zip(&p.sellers)
        .enumerate()
        .map(|(i, (buyer, seller))| {
            let body = pb::TxBody {
                chain_id: CHAIN.into(),
                nonce,
                fee: 10_000,
                action: Some(pb::Action {
                    kind: Some(pb::action::Kind::Settle(pb::Settle {
                        marketplace: p.market.public_key().0.to_vec().into(),
                        trade_id: nonce * N as u64 + i as u64,
                        buyer: buyer.public_key().0.to_vec().into(),
                        seller: seller.public_key().0.to_vec().into(),
                        resource: pb::Resource::Compute as i32,
                        quantity: 3_600,
                        unit_price: 3,
                        marketplace_fee: 7,
                    })),
                }),
            };
            PreparedTx::new(sign(body, &[buyer, seller]))
        })
        .collect()
}

/// Times executing `iters` consecutive blocks built by `make` (building and
/// signing is not timed), asserting every transaction succeeded.
fn run_blocks(
    ledger: &mut Ledger,
    iters: u64,
    verified: &dyn VerifiedTxs,
    make: &dyn Fn(u64) -> Vec<PreparedTx>,
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let height = ledger.height().next();
        let txs = make(height.0 - 1);
        let started = Instant::now();
        let executed = ledger
            .execute(height, black_box(&txs), verified, &[])
            .expect("execute");
        total += started.elapsed();
        assert!(
            executed.outcome.receipts.iter().all(|r| r.code == 0),
            "{:?}",
            executed.outcome.receipts[0]
        );
    }
    total
}

fn execute(c: &mut Criterion) {
    let p = parties();
    let mut group = c.benchmark_group("execute");
    group.throughput(Throughput::Elements(N as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.warm_up_time(Duration::from_secs(1));

    // Each function's ledger is dropped before the next function starts, so
    // no function runs beside the state an earlier one built up.
    {
        let mut l = ledger(&p);
        group.bench_function("transfers_10k", |b| {
            b.iter_custom(|iters| run_blocks(&mut l, iters, &NoneVerified, &|n| transfers(&p, n)))
        });
    }
    // The ceiling the issue measures execution against, in the same run:
    // the 20,000 signatures of a settlement block, batch-verified in
    // parallel on all cores and nothing else, as settlements per second.
    let block = settlements(&p, 0);
    let chain = ChainId::new(CHAIN).expect("chain id");
    let signed: Vec<Vec<u8>> = block.iter().map(|t| t.tx.signed_bytes(&chain)).collect();
    let items: Vec<VerifyItem<'_>> = block
        .iter()
        .zip(&signed)
        .flat_map(|(t, signed)| t.tx.verify_items(signed))
        .collect();
    assert_eq!(items.len(), 2 * N);
    group.bench_function("ceiling_verify_only_10k", |b| {
        b.iter(|| assert!(batch::verify_all(black_box(&items)).iter().all(|ok| *ok)))
    });
    {
        let mut l = ledger(&p);
        group.bench_function("settlements_10k_verify", |b| {
            b.iter_custom(|iters| run_blocks(&mut l, iters, &NoneVerified, &|n| settlements(&p, n)))
        });
    }
    {
        let mut l = ledger(&p);
        group.bench_function("settlements_10k_noverify", |b| {
            b.iter_custom(|iters| run_blocks(&mut l, iters, &AllVerified, &|n| settlements(&p, n)))
        });
    }

    let l = ledger(&p);
    let encoded: Vec<Vec<u8>> = settlements(&p, 0).iter().map(|t| t.tx.encode()).collect();
    group.bench_function("mempool_admit_10k", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut pool = Mempool::new(ChainId::new(CHAIN).expect("chain id"));
                let batch = encoded.clone();
                let started = Instant::now();
                let verdicts = pool.admit_batch(&l.view(), batch).expect("admit");
                total += started.elapsed();
                assert!(verdicts.iter().all(|v| v.is_ok()));
                assert_eq!(pool.len(), N);
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, execute);
criterion_main!(benches);
