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
    for tx in &txs {
        let status = wait_committed(&other, tx).await;
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
    // A transaction over the size limit is refused, the limit named, before
    // it reaches admission, and the connection stays usable.
    let huge = commons_types::tx::SignedTx {
        body: vec![0; commons_types::limits::MAX_TX_BYTES + 1],
        signatures: Vec::new(),
    }
    .to_proto();
    let err = tx_client.submit(huge).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{}", err.message());
    assert!(
        err.message().contains("over the limit"),
        "{}",
        err.message()
    );
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

    // The metrics page counts them: committed, and admitted in batches.
    let metrics = cluster.nodes[0].metrics;
    let committed = metric(metrics, "commons_committed_txs_total").await;
    assert!(committed.is_some_and(|n| n >= 40.0), "{committed:?}");
    let batches = metric(metrics, "commons_admission_batch_txs_count").await;
    let admitted = metric(metrics, "commons_admission_batch_txs_sum").await;
    assert!(batches.is_some_and(|n| n >= 1.0), "{batches:?}");
    assert!(admitted.is_some_and(|n| n >= 40.0), "{admitted:?}");
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

/// One validator cut off from the others by fault-injecting proxies (every
/// byte to and from it dropped) does not stop the other three; after the
/// heal it reconnects by itself, catches up, agrees on the blocks and state
/// roots, and votes again.
#[test]
fn validator_cut_off_by_a_partition_catches_up_after_the_heal() {
    let _serial = serial();
    runtime().block_on(validator_cut_off_by_a_partition_catches_up_after_the_heal_body());
}

async fn validator_cut_off_by_a_partition_catches_up_after_the_heal_body() {
    const VICTIM: usize = 3;
    // Blocks as fast as the validators can make them, so that the victim
    // falls behind by more than the consensus core keeps in memory, across
    // an epoch end: it catches up from the peers' stores, through the end
    // of an epoch. (One epoch end only: each new epoch starts without leader
    // reputation, and rounds led by the cut-off victim, or whose votes go
    // to it, time out until the reputation excludes it.)
    const EPOCH: u64 = 300;
    let mut cluster = Cluster::init(N, &["--epoch-length", &EPOCH.to_string()]);
    for i in 0..N {
        cluster.edit_config(i, |c| c.consensus.empty_block_interval_ms = 0);
    }
    // All peer traffic of the victim goes through proxies on one switch:
    // the victim reaches validator j through `to[j]`, and the others reach
    // the victim through `to_victim`.
    let link = proxy::Link::new();
    let mut to = Vec::new();
    for j in 0..N {
        to.push(proxy::start(cluster.nodes[j].p2p, &link).await);
    }
    let others: Vec<usize> = (0..N).filter(|j| *j != VICTIM).collect();
    let routes: Vec<(usize, std::net::SocketAddr)> = others.iter().map(|j| (*j, to[*j])).collect();
    cluster.route_peers(VICTIM, &routes);
    for j in &others {
        cluster.route_peers(*j, &[(VICTIM, to[VICTIM])]);
    }
    cluster.start_all();
    let mut channels = Vec::new();
    for i in 0..N {
        channels.push(connect(&cluster.endpoint(i), Duration::from_secs(20)).await);
    }
    for ch in &channels {
        assert!(
            wait_height(ch, 3, Duration::from_secs(30)).await,
            "no blocks committed\n{}",
            cluster.logs()
        );
    }
    let (ch0, victim) = (channels[0].clone(), channels[VICTIM].clone());

    // Cut. Messages already delivered may still commit a block or two on
    // the victim; once they are processed its height must freeze.
    link.cut();
    let frozen = eventually(Duration::from_secs(10), || {
        let victim = victim.clone();
        async move {
            let a = latest_height(&victim).await?;
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            let b = latest_height(&victim).await?;
            (a == b).then_some(b)
        }
    })
    .await
    .expect("the victim kept committing: the proxies do not isolate it");
    let h_cut = latest_height(&ch0).await.unwrap();

    // The other three keep committing, with transactions, while it is cut.
    let mut txs = Vec::new();
    for k in 0..24u64 {
        let buyer = (k % 4) as u32;
        txs.push(settlement(
            &cluster.chain,
            buyer,
            buyer + 8,
            k / 4,
            5_000 + k,
        ));
    }
    let mut tx0 = api::tx_client::TxClient::new(ch0.clone());
    for tx in &txs {
        tx0.submit(tx.clone()).await.expect("Submit");
    }
    let mut receipts = Vec::new();
    for tx in &txs {
        let status = tx0
            .wait_committed(api::WaitCommittedRequest {
                tx_id: tx_id(tx).into(),
                timeout_ms: 30_000,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            status.state,
            api::TxState::Committed as i32,
            "three validators did not commit while one is cut off\n{}",
            cluster.logs()
        );
        receipts.push(status.receipt.unwrap());
    }
    let boundary = (frozen / EPOCH + 1) * EPOCH;
    let far = boundary + commons_consensus::limits::MAX_COMMITTED_WINDOW as u64 + 1;
    let t = std::time::Instant::now();
    assert!(
        wait_height(&ch0, far, Duration::from_secs(60)).await,
        "three validators stopped committing\n{}",
        cluster.logs()
    );
    eprintln!(
        "{} blocks committed in {:?} while cut off",
        far - h_cut,
        t.elapsed()
    );
    for j in &others {
        assert!(latest_height(&channels[*j]).await.unwrap() > h_cut + 10);
    }
    // Still cut off: it has seen none of it.
    assert_eq!(
        latest_height(&victim).await.unwrap(),
        frozen,
        "the victim committed blocks while cut off"
    );

    // Heal: it reconnects (the proxies reset the stale connections), catches
    // up and agrees.
    link.heal();
    let target = latest_height(&ch0).await.unwrap();
    assert!(
        wait_height(&victim, target, Duration::from_secs(40)).await,
        "the victim did not catch up to {target} after the heal\n{}",
        cluster.logs()
    );
    let mut tx_victim = api::tx_client::TxClient::new(victim.clone());
    for (tx, r0) in txs.iter().zip(&receipts) {
        let s = tx_victim
            .get_tx_status(api::TxStatusRequest {
                tx_id: tx_id(tx).into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(s.state, api::TxState::Committed as i32);
        assert_eq!(s.receipt.as_ref(), Some(r0), "same block, same receipt");
    }
    let h = latest_height(&ch0).await.unwrap();
    let mut seen = Vec::new();
    for ch in &channels {
        assert!(wait_height(ch, h, Duration::from_secs(20)).await);
        seen.push(block_at(ch, h).await);
    }
    assert!(
        seen.windows(2).all(|w| w[0] == w[1]),
        "validators disagree at height {h}: {seen:?}"
    );
    // The blocks it missed are the same as everyone's, too, across the
    // epoch boundaries it missed.
    let q0 = api::query_client::QueryClient::new(ch0.clone());
    let epoch_of = |h: u64| {
        let mut q0 = q0.clone();
        async move {
            q0.get_block(api::BlockRequest { height: h })
                .await
                .unwrap()
                .into_inner()
                .epoch
        }
    };
    assert!(
        epoch_of(target).await > epoch_of(frozen).await,
        "the cut did not span an epoch change"
    );
    // (Blocks are hash-linked: equal ids at a height mean equal chains
    // below it. The ones around the epoch end are checked on their own.)
    for h in [frozen + 1, boundary, boundary + 1, target] {
        assert_eq!(block_at(&victim, h).await, block_at(&ch0, h).await);
    }

    // It votes again: its signature is in certificates after the heal.
    let set = cluster.genesis.validator_set().unwrap();
    let me = set.index_of(&cluster.nodes[VICTIM].public_key).unwrap();
    let from = latest_height(&victim).await.unwrap();
    assert!(wait_height(&ch0, from + 40, Duration::from_secs(30)).await);
    let mut signed = 0;
    for h in from + 1..from + 40 {
        if let Some(qc) = certificate_of(&ch0, h).await
            && qc.signers().any(|i| i == me)
        {
            signed += 1;
        }
    }
    assert!(
        signed > 0,
        "the healed validator never signed a certificate\n{}",
        cluster.logs()
    );
    // And the chain needs it: with validator 0 stopped, validators 1 to 3
    // (the healed one among them) still commit.
    cluster.procs[0].kill9();
    let h = latest_height(&victim).await.unwrap();
    assert!(
        wait_height(&victim, h + 3, Duration::from_secs(40)).await,
        "no progress with the healed validator in the quorum\n{}",
        cluster.logs()
    );
}

/// The validator set in force as `channel`'s node reports it, its
/// consensus epoch and the proof.
async fn validator_set(
    channel: &tonic::transport::Channel,
) -> (commons_types::ValidatorSet, u64, api::StateProof) {
    let mut q = api::query_client::QueryClient::new(channel.clone());
    let r = q
        .get_validator_set(api::ValidatorSetRequest {})
        .await
        .expect("GetValidatorSet")
        .into_inner();
    let set = commons_types::ValidatorSet::new(
        r.validators
            .iter()
            .map(|v| commons_types::Validator {
                public_key: commons_types::PublicKey(v.public_key[..].try_into().unwrap()),
                power: v.power,
            })
            .collect(),
    )
    .unwrap();
    (set, r.consensus_epoch, r.proof.expect("proof"))
}

/// A validator-set change voted through the DAO takes effect at the next
/// epoch boundary, and the new validator, which followed the chain as a
/// non-validator until then, starts voting: its signature is in the
/// certificates, and the chain needs it once a genesis validator stops.
#[test]
fn validator_voted_in_by_the_dao_starts_voting() {
    let _serial = serial();
    runtime().block_on(validator_voted_in_by_the_dao_starts_voting_body());
}

async fn validator_voted_in_by_the_dao_starts_voting_body() {
    use commons_governance::{
        Outcome, Proposal, ProposalAction, ProposalContent, ProposalStatus, ValidatorChange,
    };
    use commons_node::devnet::{DEVNET_VALIDATOR_BONDED, DEVNET_VALIDATOR_POWER, demo_account_key};
    use commons_types::tx::pb;

    const EPOCH: u64 = 20;
    let mut cluster = Cluster::init(
        N,
        &[
            "--epoch-length",
            &EPOCH.to_string(),
            "--param",
            "voting_period_blocks=30",
        ],
    );
    // A fifth node with its own key, joining the same genesis: not a
    // validator.
    let new = cluster.add_node();
    let new_key = cluster.nodes[new].public_key;
    cluster.start_all();
    let ch0 = connect(&cluster.endpoint(0), Duration::from_secs(20)).await;
    let chn = connect(&cluster.endpoint(new), Duration::from_secs(20)).await;
    assert!(
        wait_height(&ch0, 2, Duration::from_secs(30)).await,
        "no blocks committed\n{}",
        cluster.logs()
    );
    let genesis_set = cluster.genesis.validator_set().unwrap();
    assert!(genesis_set.index_of(&new_key).is_none());
    // It follows the chain as a non-validator.
    let h = latest_height(&ch0).await.unwrap();
    assert!(
        wait_height(&chn, h, Duration::from_secs(20)).await,
        "the non-validator does not follow the chain\n{}",
        cluster.logs()
    );

    // Parameters, with their proof: the short periods of this genesis.
    let mut q0 = api::query_client::QueryClient::new(ch0.clone());
    let params = q0
        .get_params(api::ParamsRequest {})
        .await
        .expect("GetParams")
        .into_inner();
    verify_state_proof(&cluster.chain, &genesis_set, params.proof.as_ref().unwrap());
    assert_eq!(params.params["epoch_length_blocks"], EPOCH);
    assert_eq!(params.params["voting_period_blocks"], 30);
    let min_deposit = params.params["min_deposit"];

    // The proposal: add the new node's key with the power of the others,
    // its whole deposit up front so that voting starts at once.
    let content = ProposalContent {
        title: "Add validator 4".into(),
        description: "End-to-end test of a validator-set change".into(),
        action: ProposalAction::ValidatorChange(vec![ValidatorChange::Add {
            key: new_key,
            power: DEVNET_VALIDATOR_POWER,
        }]),
    };
    let propose = signed(
        &cluster.chain,
        &demo_account_key(0),
        0,
        pb::action::Kind::Propose(pb::Propose {
            content: content.encode().into(),
            deposit: min_deposit,
        }),
    );
    let receipt = submit_and_wait(&ch0, &propose).await;
    assert_eq!(receipt.code, 0, "Propose failed: {}", receipt.message);
    let proposal = eventually(Duration::from_secs(10), || {
        let mut q0 = q0.clone();
        async move {
            let r = q0
                .get_proposal(api::ProposalRequest { proposal_id: 0 })
                .await
                .unwrap()
                .into_inner();
            (!r.proposal_json.is_empty()).then_some(r)
        }
    })
    .await
    .expect("proposal 0 never became queryable");
    verify_state_proof(
        &cluster.chain,
        &genesis_set,
        proposal.proof.as_ref().unwrap(),
    );
    let stored: Proposal = serde_json::from_str(&proposal.proposal_json).unwrap();
    assert_eq!(stored.content(), &content);
    assert!(
        matches!(stored.status(), ProposalStatus::VotingPeriod(_)),
        "{:?}",
        stored.status()
    );

    // Every genesis validator votes yes with its bonded stake, each through
    // its own node.
    let mut votes = Vec::new();
    for i in 0..N {
        // Same action and nonce for all four: only the fee tells the bodies
        // (and so the transaction ids) apart.
        let vote = signed_with_fee(
            &cluster.chain,
            &cluster.key(i),
            0,
            100_000 + i as u64,
            pb::action::Kind::Vote(pb::Vote {
                proposal_id: 0,
                options: vec![pb::WeightedOption {
                    option: commons_governance::VoteOption::Yes.to_wire(),
                    weight_permille: 1000,
                }],
            }),
        );
        let ch = connect(&cluster.endpoint(i), Duration::from_secs(10)).await;
        api::tx_client::TxClient::new(ch)
            .submit(vote.clone())
            .await
            .expect("Submit vote");
        votes.push(vote);
    }
    let mut tx0 = api::tx_client::TxClient::new(ch0.clone());
    for vote in &votes {
        let s = tx0
            .wait_committed(api::WaitCommittedRequest {
                tx_id: tx_id(vote).into(),
                timeout_ms: 30_000,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(s.state, api::TxState::Committed as i32, "{}", s.reason);
        let r = s.receipt.unwrap();
        assert_eq!(r.code, 0, "vote failed: {}", r.message);
    }
    // The votes and the running tally are queryable with proofs, once the
    // certified state (a few blocks behind the latest commit) has them all.
    let voter = cluster.nodes[1].public_key;
    let v = eventually(Duration::from_secs(10), || {
        let mut q0 = q0.clone();
        async move {
            let v = q0
                .get_votes(api::VotesRequest {
                    proposal_id: 0,
                    voter: voter.0.to_vec().into(),
                })
                .await
                .expect("GetVotes")
                .into_inner();
            (v.tally.as_ref()?.yes == N as u64 * DEVNET_VALIDATOR_BONDED).then_some(v)
        }
    })
    .await
    .expect("the tally never counted the four votes");
    verify_state_proof(&cluster.chain, &genesis_set, v.proof.as_ref().unwrap());
    verify_state_proof(
        &cluster.chain,
        &genesis_set,
        v.tally_proof.as_ref().unwrap(),
    );
    assert_eq!(v.options.len(), 1);
    assert_eq!(v.options[0].option, 1);
    assert_eq!(v.options[0].weight_permille, 1000);
    let tally = v.tally.unwrap();
    assert_eq!((tally.no, tally.abstain, tally.no_with_veto), (0, 0, 0));

    // The proposal passes at the end of its voting period; the change waits
    // for the next epoch boundary, then every node runs with five.
    let (set, epoch, proof) = eventually(Duration::from_secs(60), || {
        let ch0 = ch0.clone();
        async move {
            let (set, epoch, proof) = validator_set(&ch0).await;
            (set.index_of(&new_key).is_some()).then_some((set, epoch, proof))
        }
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "the new validator never entered the set\n{}",
            cluster.logs()
        )
    });
    assert_eq!(set.len(), N + 1);
    // A state showing the new set is certified by the new set.
    verify_state_proof(&cluster.chain, &set, &proof);
    assert_eq!(
        set.power_of(set.index_of(&new_key).unwrap()),
        DEVNET_VALIDATOR_POWER
    );
    assert!(epoch >= 1, "the set changed without an epoch change");
    let r = q0
        .get_proposal(api::ProposalRequest { proposal_id: 0 })
        .await
        .unwrap()
        .into_inner();
    let stored: Proposal = serde_json::from_str(&r.proposal_json).unwrap();
    match stored.status() {
        ProposalStatus::Finished { outcome, at, .. } => {
            assert_eq!(*outcome, Outcome::Passed);
            // Decided at `at`, in force from the first epoch boundary at or
            // after it: certificates up to the boundary are the genesis
            // set's, after it the new set's.
            let boundary = at.0.div_ceil(EPOCH) * EPOCH;
            let mut q = api::query_client::QueryClient::new(ch0.clone());
            let last = q
                .get_block(api::BlockRequest { height: boundary })
                .await
                .unwrap()
                .into_inner();
            let first = q
                .get_block(api::BlockRequest {
                    height: boundary + 1,
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(
                first.epoch,
                last.epoch + 1,
                "an epoch starts after {boundary}"
            );
            let before = certificate_of(&ch0, boundary - 1).await.unwrap();
            verify_qc(&cluster.chain, &genesis_set, &before);
            assert!(wait_height(&ch0, boundary + 2, Duration::from_secs(20)).await);
            let after = certificate_of(&ch0, boundary + 1).await.unwrap();
            assert_eq!(after.data.epoch.0, first.epoch);
            verify_qc(&cluster.chain, &set, &after);
        }
        other => panic!("proposal not finished: {other:?}"),
    }
    // The new node sees the same set and is in the same epoch.
    let (set_n, _, _) = eventually(Duration::from_secs(20), || {
        let chn = chn.clone();
        async move {
            let r = validator_set(&chn).await;
            (r.0.index_of(&new_key).is_some()).then_some(r)
        }
    })
    .await
    .expect("the new validator does not know it joined");
    assert_eq!(set_n.hash(), set.hash());

    // It votes: its signature, valid, is in certificates of the new set.
    let me = set.index_of(&new_key).unwrap();
    let from = latest_height(&ch0).await.unwrap();
    let signed_qc = eventually(Duration::from_secs(30), || {
        let ch0 = ch0.clone();
        async move {
            let top = latest_height(&ch0).await?;
            for h in from..top {
                if let Some(qc) = certificate_of(&ch0, h).await
                    && qc.signers().any(|i| i == me)
                {
                    return Some(qc);
                }
            }
            None
        }
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "the new validator never signed a certificate\n{}",
            cluster.logs()
        )
    });
    assert!(signed_qc.data.epoch.0 >= epoch);
    verify_qc(&cluster.chain, &set, &signed_qc);

    // And the chain needs its vote: 4 of 5 equal powers are a quorum, 3
    // are not. With genesis validator 0 stopped, the other three and the
    // new one still commit.
    cluster.procs[0].kill9();
    let h = latest_height(&chn).await.unwrap();
    assert!(
        wait_height(&chn, h + 3, Duration::from_secs(40)).await,
        "no progress with the new validator in the quorum\n{}",
        cluster.logs()
    );
    let chain_top = latest_height(&chn).await.unwrap();
    let ch1 = connect(&cluster.endpoint(1), Duration::from_secs(10)).await;
    assert!(wait_height(&ch1, chain_top, Duration::from_secs(20)).await);
    assert_eq!(
        block_at(&ch1, chain_top).await,
        block_at(&chn, chain_top).await
    );
}

/// A lease opened, claimed against and closed over gRPC; `GetLease`,
/// `GetAccount`, `GetBlock` and `GetLatestCommit` answer with values that
/// match, proofs and certificates that verify, and precise errors.
#[test]
fn leases_and_blocks_are_queryable_with_proofs() {
    let _serial = serial();
    runtime().block_on(leases_and_blocks_are_queryable_with_proofs_body());
}

async fn leases_and_blocks_are_queryable_with_proofs_body() {
    use commons_node::devnet::{DEVNET_DEMO_BALANCE, demo_account_key};
    use commons_types::tx::pb;

    let (cluster, ch0) = running_cluster().await;
    let set = cluster.genesis.validator_set().unwrap();
    let chain = &cluster.chain;
    let (buyer, provider) = (demo_account_key(1), demo_account_key(2));
    let mut q = api::query_client::QueryClient::new(ch0.clone());
    // Reads `GetLease(id)` once the certified state satisfies `ready`.
    let lease_when = |ready: fn(&api::LeaseResponse) -> bool| {
        let q = q.clone();
        async move {
            eventually(Duration::from_secs(10), || {
                let mut q = q.clone();
                async move {
                    let r = q
                        .get_lease(api::LeaseRequest { lease_id: 0 })
                        .await
                        .expect("GetLease")
                        .into_inner();
                    ready(&r).then_some(r)
                }
            })
            .await
            .expect("lease state never certified")
        }
    };

    // Open: the buyer escrows 1,000,000 at 1,000 per block for 200 blocks.
    let open = signed(
        chain,
        &buyer,
        0,
        pb::action::Kind::OpenLease(pb::OpenLease {
            provider: provider.public_key().0.to_vec().into(),
            resource: pb::Resource::Storage as i32,
            escrow: 1_000_000,
            rate_per_block: 1_000,
            duration_blocks: 200,
        }),
    );
    let opened = submit_and_wait(&ch0, &open).await;
    assert_eq!(opened.code, 0, "OpenLease failed: {}", opened.message);
    let r = lease_when(|r| r.lease.is_some()).await;
    verify_state_proof(chain, &set, r.proof.as_ref().unwrap());
    let lease = r.lease.unwrap();
    assert_eq!(lease.buyer.to_vec(), buyer.public_key().0.to_vec());
    assert_eq!(lease.provider.to_vec(), provider.public_key().0.to_vec());
    assert_eq!(lease.resource, pb::Resource::Storage as i32);
    assert_eq!((lease.escrow, lease.claimed), (1_000_000, 0));
    assert_eq!(lease.rate_per_block, 1_000);
    assert_eq!(lease.start_height, opened.height);
    assert_eq!(lease.end_height, opened.height + 200);

    // The provider claims what accrued; a claim beyond the rate fails in
    // its receipt (fee paid, nothing moved).
    assert!(wait_height(&ch0, opened.height + 5, Duration::from_secs(20)).await);
    let claim = |nonce: u64, amount: u64| {
        signed(
            chain,
            &provider,
            nonce,
            pb::action::Kind::Claim(pb::Claim {
                lease_id: 0,
                amount,
            }),
        )
    };
    let claimed = submit_and_wait(&ch0, &claim(0, 3_000)).await;
    assert_eq!(claimed.code, 0, "Claim failed: {}", claimed.message);
    let refused = submit_and_wait(&ch0, &claim(1, 900_000)).await;
    assert_ne!(refused.code, 0, "a claim beyond the accrued amount passed");
    assert!(refused.fee > 0);
    let r = lease_when(|r| r.lease.as_ref().is_some_and(|l| l.claimed > 0)).await;
    verify_state_proof(chain, &set, r.proof.as_ref().unwrap());
    let lease = r.lease.unwrap();
    assert_eq!((lease.escrow, lease.claimed), (997_000, 3_000));
    // The provider's balance, with proof: the claim minus both fees.
    let expected = DEVNET_DEMO_BALANCE + 3_000 - claimed.fee - refused.fee;
    let account = account_at_nonce(&q, &provider.public_key(), 2)
        .await
        .expect("provider account never certified");
    verify_state_proof(chain, &set, account.proof.as_ref().unwrap());
    assert_eq!(account.account.unwrap().balance, expected);

    // The buyer closes it: the lease is gone (a proof of absence), the
    // remaining escrow is back.
    let close = signed(
        chain,
        &buyer,
        1,
        pb::action::Kind::CloseLease(pb::CloseLease { lease_id: 0 }),
    );
    let closed = submit_and_wait(&ch0, &close).await;
    assert_eq!(closed.code, 0, "CloseLease failed: {}", closed.message);
    let r = lease_when(|r| r.lease.is_none()).await;
    verify_state_proof(chain, &set, r.proof.as_ref().unwrap());
    let buyer_account = account_at_nonce(&q, &buyer.public_key(), 2)
        .await
        .expect("buyer account never certified");
    verify_state_proof(chain, &set, buyer_account.proof.as_ref().unwrap());
    assert_eq!(
        buyer_account.account.unwrap().balance,
        DEVNET_DEMO_BALANCE - 3_000 - opened.fee - closed.fee
    );

    // GetBlock: the block holding the OpenLease, its transactions with
    // receipts, its id the hash of its bytes, its certificate valid.
    assert!(wait_height(&ch0, opened.height + 1, Duration::from_secs(10)).await);
    let b = q
        .get_block(api::BlockRequest {
            height: opened.height,
        })
        .await
        .expect("GetBlock")
        .into_inner();
    let block = commons_consensus::Block::decode(&b.block).expect("block decodes");
    assert_eq!(block.id().0.to_vec(), b.block_id.to_vec());
    assert_eq!(block.height().0, opened.height);
    assert_eq!((b.epoch, b.round), (block.epoch().0, block.round().0));
    let in_block = b
        .txs
        .iter()
        .find(|t| t.tx_id.to_vec() == tx_id(&open))
        .expect("the OpenLease is in its block");
    assert_eq!(in_block.receipt.as_ref(), Some(&opened));
    assert_eq!(in_block.tx.as_ref(), Some(&open));
    let qc = commons_consensus::QuorumCert::decode(&b.qc).expect("QC decodes");
    assert_eq!(qc.data.block_id, block.id());
    verify_qc(chain, &set, &qc);
    // The next block extends it, and the state root it carries is the root
    // after the executed block its payload names (every node agrees, so
    // `state_root_after` there is the same).
    let next = q
        .get_block(api::BlockRequest {
            height: opened.height + 1,
        })
        .await
        .unwrap()
        .into_inner();
    let next_block = commons_consensus::Block::decode(&next.block).unwrap();
    assert_eq!(next_block.parent_id(), block.id());
    let attested = commons_state_machine::Payload::decode(next_block.payload())
        .unwrap()
        .state_height;
    // At most the parent's height − 2: what every voter has applied before
    // it votes (the proposal's certificate commits the parent's parent).
    assert!(
        attested.0 <= opened.height.saturating_sub(2),
        "block {} attests height {}",
        opened.height + 1,
        attested.0
    );
    if attested.0 > 0 {
        let (_, root) = block_at(&ch0, attested.0).await;
        assert_eq!(next_block.state_root().0.to_vec(), root);
    }
    // Heights that are not blocks.
    let err = q
        .get_block(api::BlockRequest { height: 0 })
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::InvalidArgument,
        "{}",
        err.message()
    );
    let err = q
        .get_block(api::BlockRequest { height: 1 << 40 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{}", err.message());

    // GetLatestCommit: its certified block verifies against the set.
    let latest = q
        .get_latest_commit(api::LatestCommitRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(latest.height > opened.height);
    let c = latest.certified.expect("certified");
    let qc = commons_consensus::QuorumCert::decode(&c.qc).unwrap();
    let certified = commons_consensus::Block::decode(&c.block).unwrap();
    assert_eq!(qc.data.block_id, certified.id());
    assert_eq!(certified.state_root().0.to_vec(), c.state_root.to_vec());
    verify_qc(chain, &set, &qc);
    assert!(c.block_height <= latest.height);
}

/// The account `key` with its proof, once `q`'s node serves it with nonce
/// `nonce` (10 s at most).
async fn account_at_nonce(
    q: &api::query_client::QueryClient<tonic::transport::Channel>,
    key: &commons_types::PublicKey,
    nonce: u64,
) -> Option<api::AccountResponse> {
    eventually(Duration::from_secs(10), || {
        let mut q = q.clone();
        async move {
            let r = q
                .get_account(api::AccountRequest {
                    account: key.0.to_vec().into(),
                })
                .await
                .unwrap()
                .into_inner();
            (r.account.as_ref()?.nonce == nonce).then_some(r)
        }
    })
    .await
}

/// Two accounts sending the same action at the same nonce and fee sign the
/// same body. Each is its own transaction: both are accepted and executed,
/// each with its own status and receipt, whether they reach one validator
/// or two at once. (With ids of the body alone, the second was refused as a
/// duplicate, or both were reported committed with one receipt while only
/// one executed.)
#[test]
fn identical_bodies_of_two_accounts_both_commit_with_their_own_receipts() {
    let _serial = serial();
    runtime().block_on(identical_bodies_of_two_accounts_both_commit_with_their_own_receipts_body());
}

async fn identical_bodies_of_two_accounts_both_commit_with_their_own_receipts_body() {
    use commons_node::devnet::{DEVNET_DEMO_BALANCE, demo_account_key};
    use commons_types::tx::pb;

    let (cluster, ch0) = running_cluster().await;
    let ch1 = connect(&cluster.endpoint(1), Duration::from_secs(20)).await;
    let chain = &cluster.chain;
    let (alice, bob, sink) = (
        demo_account_key(3),
        demo_account_key(4),
        demo_account_key(5),
    );
    let pay_sink = || {
        pb::action::Kind::Transfer(pb::Transfer {
            to: sink.public_key().0.to_vec().into(),
            amount: 1,
        })
    };
    let mut q = api::query_client::QueryClient::new(ch0.clone());
    for (nonce, to_second) in [(0u64, &ch0), (1, &ch1)] {
        let a = signed(chain, &alice, nonce, pay_sink());
        let b = signed(chain, &bob, nonce, pay_sink());
        assert_eq!(a.body, b.body, "the same body, signed by two accounts");
        assert_ne!(tx_id(&a), tx_id(&b), "two transactions");
        // Both at once: to validator 0, and to validator 0 or 1.
        let mut first = api::tx_client::TxClient::new(ch0.clone());
        let mut second = api::tx_client::TxClient::new(to_second.clone());
        let (ra, rb) = tokio::join!(first.submit(a.clone()), second.submit(b.clone()));
        for (who, r, tx) in [("alice", ra, &a), ("bob", rb, &b)] {
            let r = r.expect("Submit").into_inner();
            assert_eq!(
                r.code,
                api::SubmitCode::Accepted as i32,
                "nonce {nonce}: {who}'s transfer refused: {}",
                r.error
            );
            assert_eq!(r.tx_id.to_vec(), tx_id(tx));
        }
        for (who, tx) in [("alice", &a), ("bob", &b)] {
            for channel in [&ch0, &ch1] {
                let status = wait_committed(channel, tx).await;
                assert_eq!(
                    status.state,
                    api::TxState::Committed as i32,
                    "nonce {nonce}: {who}'s transfer not committed: {}",
                    status.reason
                );
                assert_eq!(status.tx_id.to_vec(), tx_id(tx));
                let receipt = status.receipt.expect("receipt");
                assert_eq!(receipt.tx_id.to_vec(), tx_id(tx), "{who}'s own receipt");
                assert_eq!(receipt.code, 0, "{who}: {}", receipt.message);
            }
        }
        // Each account's own nonce moved: both transfers executed.
        for key in [&alice, &bob] {
            assert!(
                account_at_nonce(&q, &key.public_key(), nonce + 1)
                    .await
                    .is_some(),
                "nonce {nonce}: an account's transfer did not execute"
            );
        }
    }
    let sink_account = q
        .get_account(api::AccountRequest {
            account: sink.public_key().0.to_vec().into(),
        })
        .await
        .expect("GetAccount")
        .into_inner()
        .account
        .expect("sink account");
    assert_eq!(
        sink_account.balance,
        DEVNET_DEMO_BALANCE + 4,
        "four transfers of 1"
    );
}

/// `SubmitBatch` answers every transaction of its stream, in order: one
/// over the size limit or malformed is refused with its reason and the
/// transactions after it are still admitted. A message too large to decode
/// at all ends the stream with `OUT_OF_RANGE`, after the results of the
/// transactions before it.
#[test]
fn submit_batch_answers_every_transaction_and_goes_on_past_bad_ones() {
    let _serial = serial();
    runtime().block_on(submit_batch_answers_every_transaction_and_goes_on_past_bad_ones_body());
}

async fn submit_batch_answers_every_transaction_and_goes_on_past_bad_ones_body() {
    use commons_node::devnet::demo_account_key;
    use commons_types::tx::pb;

    let (cluster, ch0) = running_cluster().await;
    let chain = &cluster.chain;
    let sink = demo_account_key(9).public_key();
    let pay = |amount: u64| {
        pb::action::Kind::Transfer(pb::Transfer {
            to: sink.0.to_vec().into(),
            amount,
        })
    };
    let max = commons_types::limits::MAX_TX_BYTES;
    let first = signed(chain, &demo_account_key(6), 0, pay(1));
    // A body padded past the limit (the envelope is still a `SignedTx`).
    let mut oversized = signed(chain, &demo_account_key(7), 0, pay(1));
    oversized.body = vec![0u8; max + 1000].into();
    let after = signed(chain, &demo_account_key(8), 0, pay(1));
    // A signature of the wrong length: the envelope does not decode.
    let mut malformed = signed(chain, &demo_account_key(10), 0, pay(1));
    malformed.signatures[0].signature = vec![1u8; 10].into();
    let last = signed(chain, &demo_account_key(6), 1, pay(2));
    let stream = [
        first.clone(),
        oversized,
        after.clone(),
        malformed,
        last.clone(),
    ];
    let mut tx_client = api::tx_client::TxClient::new(ch0.clone());
    let results: Vec<api::SubmitResult> = tx_client
        .submit_batch(futures::stream::iter(stream))
        .await
        .expect("SubmitBatch")
        .into_inner()
        .map(|r| r.expect("a result per transaction"))
        .collect()
        .await;
    let codes: Vec<(u64, i32)> = results.iter().map(|r| (r.index, r.code)).collect();
    let (ok, invalid) = (
        api::SubmitCode::Accepted as i32,
        api::SubmitCode::Invalid as i32,
    );
    assert_eq!(
        codes,
        vec![(0, ok), (1, invalid), (2, ok), (3, invalid), (4, ok)],
        "{results:?}"
    );
    assert!(
        results[1].error.contains("over the limit"),
        "{}",
        results[1].error
    );
    for tx in [&first, &after, &last] {
        let status = wait_committed(&ch0, tx).await;
        assert_eq!(
            status.state,
            api::TxState::Committed as i32,
            "{}",
            status.reason
        );
    }

    // A message beyond what the service decodes: the results before it,
    // then the stream ends with a status that names the limit.
    let before = signed(chain, &demo_account_key(8), 1, pay(3));
    let mut huge = signed(chain, &demo_account_key(7), 0, pay(1));
    huge.body = vec![0u8; 8 * max].into();
    let mut answers = tx_client
        .submit_batch(futures::stream::iter([before.clone(), huge]))
        .await
        .expect("SubmitBatch")
        .into_inner();
    let answer = answers.next().await.expect("a first answer");
    let answer = answer.expect("the transaction before the huge one is answered");
    assert_eq!((answer.index, answer.code), (0, ok), "{}", answer.error);
    let end = answers
        .next()
        .await
        .expect("the stream ends with a status")
        .expect_err("a status, not a result");
    assert_eq!(end.code(), tonic::Code::OutOfRange, "{end:?}");
    assert!(answers.next().await.is_none());
    let status = wait_committed(&ch0, &before).await;
    assert_eq!(status.state, api::TxState::Committed as i32);
}

/// The gRPC port lets at most `GRPC_MAX_CONNECTIONS_PER_IP` connections in
/// from one address: a flood of idle connections beyond it is closed at
/// once, clients already in are still served, and the slots come back when
/// the flood's connections close.
#[test]
fn grpc_connections_over_the_per_address_cap_are_closed() {
    let _serial = serial();
    runtime().block_on(grpc_connections_over_the_per_address_cap_are_closed_body());
}

async fn grpc_connections_over_the_per_address_cap_are_closed_body() {
    use tokio::io::AsyncReadExt;

    let (cluster, ch0) = running_cluster().await;
    let address = cluster
        .endpoint(0)
        .trim_start_matches("http://")
        .to_string();
    let cap = commons_node::limits::GRPC_MAX_CONNECTIONS_PER_IP;
    let mut flood = Vec::new();
    for _ in 0..cap + 8 {
        flood.push(tokio::net::TcpStream::connect(&address).await.unwrap());
    }
    // An admitted connection gets the server's HTTP/2 settings; a refused
    // one is closed before a byte is sent.
    let outcomes = futures::future::join_all(flood.iter_mut().map(|s| async move {
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => "admitted",
            Ok(Ok(_)) | Ok(Err(_)) => "closed",
            Err(_) => "silent",
        }
    }))
    .await;
    let count = |what| outcomes.iter().filter(|o| **o == what).count();
    // The test's own channel holds one slot already.
    assert_eq!(count("silent"), 0, "{outcomes:?}");
    assert_eq!(count("admitted"), cap - 1, "{outcomes:?}");
    assert_eq!(count("closed"), 9, "{outcomes:?}");

    // The client already in is still served.
    let mut q = api::query_client::QueryClient::new(ch0.clone());
    q.get_latest_commit(api::LatestCommitRequest {})
        .await
        .expect("an admitted client is served during the flood");

    // Once the flood closes, a new client gets in.
    drop(flood);
    let fresh = eventually(Duration::from_secs(10), || {
        let endpoint = cluster.endpoint(0);
        async move {
            let channel = tonic::transport::Channel::from_shared(endpoint)
                .ok()?
                .connect()
                .await
                .ok()?;
            let mut q = api::query_client::QueryClient::new(channel);
            q.get_latest_commit(api::LatestCommitRequest {}).await.ok()
        }
    })
    .await;
    assert!(fresh.is_some(), "a slot came back");
}
