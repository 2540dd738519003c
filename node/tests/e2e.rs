//! End-to-end: 4 real validator processes on 127.0.0.1, RocksDB on disk.
#![allow(clippy::unwrap_used)] // tests may unwrap (house rules)

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use commons_proto::v1 as api;
use futures::StreamExt;

const N: usize = 4;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A fresh cluster of `N` validators, started, with a channel to
/// validator 0 once it has committed two blocks.
async fn running_cluster() -> (Cluster, tonic::transport::Channel) {
    let mut cluster = Cluster::init(N, &[]);
    cluster.start_all();
    let channel = connect(&cluster.endpoint(0), Duration::from_secs(20)).await;
    assert!(
        wait_height(&channel, 2, Duration::from_secs(30)).await,
        "no blocks committed\n{}",
        cluster.logs()
    );
    (cluster, channel)
}

/// Settlements submitted over gRPC (streaming) commit, are reported
/// committed with a receipt, and are queryable with proofs that verify.
#[test]
fn settlements_commit_and_verify_with_proofs() {
    let _serial = serial();
    runtime().block_on(settlements_commit_and_verify_with_proofs_body());
}

async fn settlements_commit_and_verify_with_proofs_body() {
    let (cluster, channel) = running_cluster().await;

    // 40 settlements from 4 buyers, streamed in one SubmitBatch call.
    let mut txs = Vec::new();
    for k in 0..40u64 {
        let buyer = (k % 4) as u32;
        txs.push(settlement(
            &cluster.chain,
            buyer,
            buyer + 8,
            k / 4,
            1000 + k,
        ));
    }
    let mut tx_client = api::tx_client::TxClient::new(channel.clone());
    let mut results = tx_client
        .submit_batch(futures::stream::iter(txs.clone()))
        .await
        .expect("SubmitBatch")
        .into_inner();
    let mut seen = 0u64;
    while let Some(r) = results.next().await {
        let r = r.expect("result");
        assert_eq!(r.index, seen);
        assert_eq!(
            r.code,
            api::SubmitCode::Accepted as i32,
            "tx {seen}: {}",
            r.error
        );
        assert_eq!(r.tx_id.to_vec(), tx_id(&txs[seen as usize]));
        seen += 1;
    }
    assert_eq!(seen, 40);

    // Each commits (WaitCommitted on another validator: gossip + consensus).
    let other = connect(&cluster.endpoint(2), Duration::from_secs(10)).await;
    let mut tx_other = api::tx_client::TxClient::new(other.clone());
    for tx in &txs {
        let status = tx_other
            .wait_committed(api::WaitCommittedRequest {
                tx_id: tx_id(tx).into(),
                timeout_ms: 30_000,
            })
            .await
            .expect("WaitCommitted")
            .into_inner();
        assert_eq!(
            status.state,
            api::TxState::Committed as i32,
            "{}",
            cluster.logs()
        );
        let receipt = status.receipt.expect("receipt");
        assert_eq!(receipt.code, 0, "settlement failed: {}", receipt.message);
    }

    // Query each settlement with its proof, on every validator.
    let set = cluster.genesis.validator_set().unwrap();
    let last_height = latest_height(&other).await.unwrap();
    for i in 0..N {
        let ch = connect(&cluster.endpoint(i), Duration::from_secs(10)).await;
        assert!(wait_height(&ch, last_height, Duration::from_secs(30)).await);
        let mut q = api::query_client::QueryClient::new(ch);
        // Proofs are against the newest certified state, which trails the
        // latest commit by a few blocks: wait until it includes the trades.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        for k in 0..40u64 {
            let r = loop {
                let r = q
                    .get_settlement(api::SettlementRequest {
                        marketplace: marketplace().0.to_vec().into(),
                        trade_id: 1000 + k,
                    })
                    .await
                    .expect("GetSettlement")
                    .into_inner();
                if r.settlement.is_some() || std::time::Instant::now() > deadline {
                    break r;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            let s = r.settlement.expect("settlement exists");
            assert_eq!(s.quantity, 10);
            assert_eq!(s.unit_price, 3);
            verify_state_proof(&cluster.chain, &set, r.proof.as_ref().expect("proof"));
        }
        // A trade that never happened: a proof of absence.
        let r = q
            .get_settlement(api::SettlementRequest {
                marketplace: marketplace().0.to_vec().into(),
                trade_id: 999_999,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(r.settlement.is_none());
        verify_state_proof(&cluster.chain, &set, r.proof.as_ref().unwrap());
        // The buyer's account, with its nonce advanced by its 10 trades.
        let buyer = commons_node::devnet::demo_account_key(0).public_key();
        let r = q
            .get_account(api::AccountRequest {
                account: buyer.0.to_vec().into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.account.expect("account").nonce, 10);
        verify_state_proof(&cluster.chain, &set, r.proof.as_ref().unwrap());
    }

    // Bad input gets a precise status.
    let mut q = api::query_client::QueryClient::new(channel.clone());
    let err = q
        .get_account(api::AccountRequest {
            account: vec![1, 2, 3].into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("32 bytes"), "{}", err.message());
    // Replaying a committed settlement is refused with the reason.
    let err = tx_client.submit(txs[0].clone()).await.unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::InvalidArgument,
        "{}",
        err.message()
    );

    // The subscription replays committed blocks with receipts, filtered to
    // the marketplace.
    let mut sub = api::subscribe_client::SubscribeClient::new(channel.clone());
    let mut stream = sub
        .blocks(api::SubscribeRequest {
            from_height: 1,
            account: Default::default(),
            marketplace: marketplace().0.to_vec().into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut settled = 0;
    let mut expected_height = 1;
    while settled < 40 {
        let b = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("subscription stalled")
            .expect("stream ended")
            .expect("block");
        assert_eq!(b.height, expected_height, "blocks in order, none skipped");
        expected_height += 1;
        for t in &b.txs {
            assert_eq!(t.receipt.as_ref().expect("receipt").code, 0);
            settled += 1;
        }
    }
    assert_eq!(settled, 40);
}

/// A validator killed with SIGKILL under load restarts, catches up, agrees
/// on the state root, and no committed transaction is lost.
#[test]
fn validator_killed_under_load_recovers() {
    let _serial = serial();
    runtime().block_on(validator_killed_under_load_recovers_body());
}

async fn validator_killed_under_load_recovers_body() {
    let (mut cluster, ch0) = running_cluster().await;

    let mut nonces = BTreeMap::new();
    let mut submitted = Vec::new();
    let mut trade = 0u64;
    // Load on validators 0..3 (3 is the victim).
    let mut submit_round = |cluster: &Cluster, targets: &[usize], rounds: usize| {
        let mut batch = Vec::new();
        for _ in 0..rounds {
            for buyer in 0..6u32 {
                let nonce = nonces.entry(buyer).or_insert(0u64);
                batch.push((
                    targets[(trade as usize) % targets.len()],
                    settlement(&cluster.chain, buyer, buyer + 8, *nonce, trade),
                ));
                *nonce += 1;
                trade += 1;
            }
        }
        batch
    };
    let batch = submit_round(&cluster, &[0, 1, 2, 3], 5);
    send_all(&cluster, &batch, &mut submitted).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let batch = submit_round(&cluster, &[0, 1, 2, 3], 5);
    send_all(&cluster, &batch, &mut submitted).await;
    // Admitted transactions reach the peers within a gossip flush.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Kill validator 3 in the middle of the load.
    cluster.procs[3].kill9();
    let h_kill = latest_height(&ch0).await.unwrap();
    // Keep the load on the three survivors.
    for _ in 0..4 {
        let batch = submit_round(&cluster, &[0, 1, 2], 5);
        send_all(&cluster, &batch, &mut submitted).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        wait_height(&ch0, h_kill + 5, Duration::from_secs(40)).await,
        "three validators stopped committing\n{}",
        cluster.logs()
    );

    // Restart it: it recovers by itself and catches up.
    let home = cluster.nodes[3].home.clone();
    cluster.procs[3] = NodeProcess::start(&home);
    let ch3 = connect(&cluster.endpoint(3), Duration::from_secs(20)).await;
    let target = latest_height(&ch0).await.unwrap();
    assert!(
        wait_height(&ch3, target, Duration::from_secs(40)).await,
        "restarted validator did not catch up to {target}\n{}",
        cluster.logs()
    );

    // Every transaction committed on validator 0 is committed on 3, in the
    // same block with the same receipt.
    let mut tx0 = api::tx_client::TxClient::new(ch0.clone());
    let mut tx3 = api::tx_client::TxClient::new(ch3.clone());
    let mut committed = 0;
    for id in &submitted {
        let s0 = tx0
            .wait_committed(api::WaitCommittedRequest {
                tx_id: id.clone().into(),
                timeout_ms: 20_000,
            })
            .await
            .unwrap()
            .into_inner();
        if s0.state != api::TxState::Committed as i32 {
            continue;
        }
        committed += 1;
        let r0 = s0.receipt.unwrap();
        let s3 = tx3
            .wait_committed(api::WaitCommittedRequest {
                tx_id: id.clone().into(),
                timeout_ms: 20_000,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            s3.state,
            api::TxState::Committed as i32,
            "lost a committed tx"
        );
        assert_eq!(s3.receipt.unwrap(), r0);
    }
    assert!(
        committed * 10 >= submitted.len() * 9,
        "only {committed} of {} committed",
        submitted.len()
    );

    // Same state root at a common height on all four.
    let h = latest_height(&ch0).await.unwrap();
    let mut roots = Vec::new();
    for i in 0..N {
        let ch = connect(&cluster.endpoint(i), Duration::from_secs(10)).await;
        assert!(wait_height(&ch, h, Duration::from_secs(30)).await);
        let mut q = api::query_client::QueryClient::new(ch);
        let b = q
            .get_block(api::BlockRequest { height: h })
            .await
            .unwrap()
            .into_inner();
        roots.push((b.block_id.clone(), b.state_root_after.clone()));
    }
    assert!(
        roots.windows(2).all(|w| w[0] == w[1]),
        "validators disagree: {roots:?}"
    );
    // The restarted validator signs again: its index appears in the
    // certificates of blocks committed after it caught up.
    let set = cluster.genesis.validator_set().unwrap();
    let me = set.index_of(&cluster.nodes[3].public_key).unwrap();
    let mut q3 = api::query_client::QueryClient::new(ch3.clone());
    let from = latest_height(&ch3).await.unwrap();
    assert!(wait_height(&ch3, from + 30, Duration::from_secs(30)).await);
    let mut signed = 0;
    for h in from + 1..from + 29 {
        let b = q3
            .get_block(api::BlockRequest { height: h })
            .await
            .unwrap()
            .into_inner();
        if b.qc.is_empty() {
            continue; // an epoch's first block is certified by the root QC
        }
        let qc = commons_consensus::QuorumCert::decode(&b.qc).unwrap();
        if qc.signers().any(|i| i == me) {
            signed += 1;
        }
    }
    assert!(
        signed > 0,
        "the restarted validator never signed a certificate"
    );
    // And the chain needs it: with validator 0 stopped, validators 1 to 3
    // (the restarted one among them) still commit.
    cluster.procs[0].kill9();
    let h = latest_height(&ch3).await.unwrap();
    assert!(
        wait_height(&ch3, h + 3, Duration::from_secs(40)).await,
        "no progress with the restarted validator in the quorum\n{}",
        cluster.logs()
    );
}

async fn send_all(
    cluster: &Cluster,
    batch: &[(usize, commons_proto::v1::SignedTx)],
    submitted: &mut Vec<Vec<u8>>,
) {
    let mut by_node: BTreeMap<usize, Vec<commons_proto::v1::SignedTx>> = BTreeMap::new();
    for (node, tx) in batch {
        by_node.entry(*node).or_default().push(tx.clone());
    }
    for (node, txs) in by_node {
        let ch = connect(&cluster.endpoint(node), Duration::from_secs(10)).await;
        let mut client = api::tx_client::TxClient::new(ch);
        let mut results = client
            .submit_batch(futures::stream::iter(txs.clone()))
            .await
            .unwrap()
            .into_inner();
        let mut i = 0;
        while let Some(r) = results.next().await {
            let r = r.unwrap();
            assert_eq!(r.code, api::SubmitCode::Accepted as i32, "{}", r.error);
            submitted.push(tx_id(&txs[i]));
            i += 1;
        }
        assert_eq!(i, txs.len());
    }
}
