//! Harness for end-to-end tests: real `commons-node` processes on 127.0.0.1
//! with RocksDB in a temporary directory, killed when the test ends (pass or
//! fail) by a drop guard.

#![allow(dead_code)]

pub mod proxy;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use commons_consensus::{Block, QuorumCert};
use commons_node::config::{NodeConfig, PeerConfig};
use commons_node::devnet::{DevnetNode, demo_account_key, devnet_ports, read_devnet};
use commons_proto::v1 as api;
use commons_state_machine::ledger::Genesis;
use commons_state_machine::store::{Proof, verify_proof};
use commons_types::tx::{SignedTx, pb};
use commons_types::{ChainId, PublicKey, SecretKey, ValidatorSet};
use prost::Message as _;
use tonic::transport::Channel;

pub const BIN: &str = env!("CARGO_BIN_EXE_commons-node");

/// End-to-end tests share two cores: run them one at a time.
pub static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A base port whose `3 * 10 * n` following ports are free now.
pub fn free_base_port(n: usize) -> u16 {
    let seed = (std::process::id() as u64 * 7919) % 300;
    for attempt in 0..300u64 {
        let base = 20_000 + ((seed + attempt * 37) % 300) * 120;
        let ok = (0..n).all(|i| {
            (0..3).all(|k| {
                TcpListener::bind(("127.0.0.1", (base as usize + 10 * i + k) as u16)).is_ok()
            })
        });
        if ok {
            return base as u16;
        }
    }
    panic!("no free port range found");
}

/// A temporary directory, kept for inspection when `COMMONS_E2E_KEEP` is set.
pub struct KeptDir(pub tempfile::TempDir);

impl KeptDir {
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for KeptDir {
    fn drop(&mut self) {
        if std::env::var_os("COMMONS_E2E_KEEP").is_some() {
            let dir = std::mem::replace(&mut self.0, tempfile::tempdir().unwrap());
            eprintln!("kept {}", dir.keep().display());
        }
    }
}

/// A running node process; killed on drop.
pub struct NodeProcess {
    pub child: Option<Child>,
    pub log: PathBuf,
}

impl NodeProcess {
    pub fn start(home: &Path) -> NodeProcess {
        let log = home.join("node.log");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let err = out.try_clone().unwrap();
        let child = Command::new(BIN)
            .arg("start")
            .arg("--home")
            .arg(home)
            .env(
                "RUST_LOG",
                std::env::var("COMMONS_E2E_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap();
        NodeProcess {
            child: Some(child),
            log,
        }
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => c.try_wait().map(|s| s.is_none()).unwrap_or(false),
            None => false,
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub struct Cluster {
    pub dir: KeptDir,
    pub nodes: Vec<DevnetNode>,
    pub procs: Vec<NodeProcess>,
    pub genesis: Genesis,
    pub chain: ChainId,
    /// Devnet base port; one more node's ports after the validators' are
    /// free too (see [`Cluster::add_node`]).
    pub base_port: u16,
}

impl Cluster {
    /// Writes a devnet of `n` validators with the binary itself.
    pub fn init(n: usize, extra: &[&str]) -> Cluster {
        let dir = KeptDir(tempfile::tempdir().unwrap());
        let base = free_base_port(n + 1);
        let status = Command::new(BIN)
            .args(["devnet", "--init-only", "--validators", &n.to_string()])
            .arg("--dir")
            .arg(dir.path().join("net"))
            .args([
                "--base-port",
                &base.to_string(),
                "--round-timeout-ms",
                "400",
            ])
            // Cap the pacemaker's backoff so that rounds led by a stopped
            // validator cost little in a test.
            .args(["--param", "round_timeout_ms_max=1600"])
            .args(extra)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "devnet --init-only failed");
        let nodes = read_devnet(&dir.path().join("net")).unwrap();
        assert_eq!(nodes.len(), n);
        let genesis = Genesis::from_json(
            &std::fs::read_to_string(nodes[0].home.join("genesis.json")).unwrap(),
        )
        .unwrap();
        let chain = genesis.chain_id.clone();
        let cluster = Cluster {
            dir,
            nodes,
            procs: Vec::new(),
            genesis,
            chain,
            base_port: base,
        };
        // The devnet shares this machine's cores among its validators.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        for i in 0..n {
            assert_eq!(cluster.config(i).compute_threads, Some((cores / n).max(1)));
        }
        cluster
    }

    /// Writes the home of one more node with `commons-node init`, joining
    /// the devnet's genesis with its own fresh key: not a validator (yet).
    /// It dials the genesis validators like any node.
    pub fn add_node(&mut self) -> usize {
        let i = self.nodes.len();
        let home = self.dir.path().join("net").join(format!("node{i}"));
        let (p2p, grpc, metrics) = devnet_ports(self.base_port, i).unwrap();
        let addr = |port: u16| format!("127.0.0.1:{port}");
        let status = Command::new(BIN)
            .arg("init")
            .arg("--home")
            .arg(&home)
            .arg("--genesis")
            .arg(self.nodes[0].home.join("genesis.json"))
            .args(["--p2p-listen", &addr(p2p)])
            .args(["--grpc-listen", &addr(grpc)])
            .args(["--metrics-listen", &addr(metrics)])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "commons-node init failed");
        // The same liveness settings as the devnet's validators.
        let template = self.config(0);
        self.edit_config_at(&home, |c| {
            c.consensus = template.consensus.clone();
            c.compute_threads = template.compute_threads;
        });
        let key = commons_node::config::read_key(&home.join("validator.key")).unwrap();
        self.nodes.push(DevnetNode {
            home,
            public_key: key.public_key(),
            p2p: addr(p2p).parse().unwrap(),
            grpc: addr(grpc).parse().unwrap(),
            metrics: addr(metrics).parse().unwrap(),
        });
        i
    }

    pub fn config(&self, i: usize) -> NodeConfig {
        let text = std::fs::read_to_string(self.nodes[i].home.join("config.toml")).unwrap();
        toml::from_str(&text).unwrap()
    }

    fn edit_config_at(&self, home: &Path, edit: impl FnOnce(&mut NodeConfig)) {
        let path = home.join("config.toml");
        let mut config: NodeConfig =
            toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        edit(&mut config);
        std::fs::write(&path, config.to_toml()).unwrap();
    }

    /// Rewrites node `i`'s config.toml.
    pub fn edit_config(&self, i: usize, edit: impl FnOnce(&mut NodeConfig)) {
        self.edit_config_at(&self.nodes[i].home, edit);
    }

    /// Makes node `i` reach each peer `(j, address)` at `address` instead of
    /// its genesis address (configured peers override genesis addresses).
    pub fn route_peers(&self, i: usize, routes: &[(usize, SocketAddr)]) {
        let peers: Vec<PeerConfig> = routes
            .iter()
            .map(|(j, address)| PeerConfig {
                public_key: self.nodes[*j].public_key,
                address: address.to_string(),
            })
            .collect();
        self.edit_config(i, |c| c.p2p.peers = peers);
    }

    /// The validator key of node `i`, read from its home.
    pub fn key(&self, i: usize) -> SecretKey {
        commons_node::config::read_key(&self.nodes[i].home.join("validator.key")).unwrap()
    }

    pub fn start_all(&mut self) {
        for n in &self.nodes {
            self.procs.push(NodeProcess::start(&n.home));
        }
    }

    pub fn endpoint(&self, i: usize) -> String {
        format!("http://{}", self.nodes[i].grpc)
    }

    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let text = std::fs::read_to_string(n.home.join("node.log")).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            out.push_str(&format!("--- node{i} (last lines) ---\n"));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

/// Polls `check` every 100 ms until it returns `Some`, for at most `within`.
pub async fn eventually<T, F, Fut>(within: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn connect(endpoint: &str, within: Duration) -> Channel {
    let deadline = Instant::now() + within;
    loop {
        match Channel::from_shared(endpoint.to_string())
            .unwrap()
            .connect()
            .await
        {
            Ok(c) => return c,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "cannot connect to {endpoint}: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One sample of a node's `/metrics` (`name` with no labels), fetched with
/// a plain HTTP/1.1 GET; `None` if the page lacks it.
pub async fn metric(address: SocketAddr, name: &str) -> Option<f64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut page = String::new();
    stream.read_to_string(&mut page).await.unwrap();
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    page.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        if key == name {
            value.trim().parse().ok()
        } else {
            None
        }
    })
}

pub async fn latest_height(channel: &Channel) -> Option<u64> {
    let mut q = api::query_client::QueryClient::new(channel.clone());
    q.get_latest_commit(api::LatestCommitRequest {})
        .await
        .ok()
        .map(|r| r.into_inner().height)
}

/// Waits until `channel`'s node has applied `height`.
pub async fn wait_height(channel: &Channel, height: u64, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if latest_height(channel).await.unwrap_or(0) >= height {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

pub const MARKETPLACE_SEED: [u8; 32] = [0xaa; 32];

pub fn marketplace() -> PublicKey {
    SecretKey::from_seed(MARKETPLACE_SEED).public_key()
}

/// A settlement signed by buyer `demo_account_key(buyer)` and seller
/// `demo_account_key(seller)`.
pub fn settlement(
    chain: &ChainId,
    buyer: u32,
    seller: u32,
    nonce: u64,
    trade_id: u64,
) -> pb::SignedTx {
    let b = demo_account_key(buyer);
    let s = demo_account_key(seller);
    let body = pb::TxBody {
        chain_id: chain.to_string(),
        nonce,
        fee: 100_000,
        action: Some(pb::Action {
            kind: Some(pb::action::Kind::Settle(pb::Settle {
                marketplace: marketplace().0.to_vec().into(),
                trade_id,
                buyer: b.public_key().0.to_vec().into(),
                seller: s.public_key().0.to_vec().into(),
                resource: pb::Resource::Compute as i32,
                quantity: 10,
                unit_price: 3,
                marketplace_fee: 1,
            })),
        }),
    };
    SignedTx::sign(body.encode_to_vec(), chain, &[&b, &s]).to_proto()
}

/// A transaction of `action` signed by `signer` alone, with a fee that
/// covers any small transaction.
pub fn signed(
    chain: &ChainId,
    signer: &SecretKey,
    nonce: u64,
    action: pb::action::Kind,
) -> pb::SignedTx {
    signed_with_fee(chain, signer, nonce, 100_000, action)
}

/// A transaction of `action` signed by `signer` alone, with `fee`.
pub fn signed_with_fee(
    chain: &ChainId,
    signer: &SecretKey,
    nonce: u64,
    fee: u64,
    action: pb::action::Kind,
) -> pb::SignedTx {
    let body = pb::TxBody {
        chain_id: chain.to_string(),
        nonce,
        fee,
        action: Some(pb::Action { kind: Some(action) }),
    };
    SignedTx::sign(body.encode_to_vec(), chain, &[signer]).to_proto()
}

/// Submits `tx` to `channel`'s node and waits until it is committed;
/// returns its receipt.
pub async fn submit_and_wait(channel: &Channel, tx: &pb::SignedTx) -> api::Receipt {
    let mut client = api::tx_client::TxClient::new(channel.clone());
    client.submit(tx.clone()).await.expect("Submit");
    let status = wait_committed(channel, tx).await;
    assert_eq!(
        status.state,
        api::TxState::Committed as i32,
        "not committed: {}",
        status.reason
    );
    status.receipt.expect("receipt")
}

/// `channel`'s node's answer to `WaitCommitted` for `tx` (30 s at most).
pub async fn wait_committed(channel: &Channel, tx: &pb::SignedTx) -> api::TxStatus {
    api::tx_client::TxClient::new(channel.clone())
        .wait_committed(api::WaitCommittedRequest {
            tx_id: tx_id(tx).into(),
            timeout_ms: 30_000,
        })
        .await
        .expect("WaitCommitted")
        .into_inner()
}

/// Committed block `h` as `channel`'s node serves it.
async fn get_block(channel: &Channel, h: u64) -> api::BlockResponse {
    api::query_client::QueryClient::new(channel.clone())
        .get_block(api::BlockRequest { height: h })
        .await
        .expect("GetBlock")
        .into_inner()
}

/// `(block id, state root after it)` of committed height `h` on `channel`'s
/// node.
pub async fn block_at(channel: &Channel, h: u64) -> (Vec<u8>, Vec<u8>) {
    let b = get_block(channel, h).await;
    (b.block_id.to_vec(), b.state_root_after.to_vec())
}

/// The QC certifying committed block `h`, if the node stores one (an
/// epoch's last block has none: the next epoch's first block carries the
/// signature-less root QC).
pub async fn certificate_of(channel: &Channel, h: u64) -> Option<QuorumCert> {
    let b = get_block(channel, h).await;
    if b.qc.is_empty() {
        return None;
    }
    Some(QuorumCert::decode(&b.qc).expect("QC decodes"))
}

pub fn tx_id(tx: &pb::SignedTx) -> Vec<u8> {
    SignedTx::from_proto(tx.clone()).unwrap().id().0.to_vec()
}

/// Checks a state answer the way a client must: the QC has a quorum of valid
/// signatures of `set`, it certifies the block, the block carries the root,
/// and the Merkle proof shows the value (or its absence) under that root.
pub fn verify_state_proof(chain: &ChainId, set: &ValidatorSet, p: &api::StateProof) {
    let c = p.certified.as_ref().expect("certified");
    let block = Block::decode(&c.block).expect("block decodes");
    let qc = QuorumCert::decode(&c.qc).expect("qc decodes");
    assert_eq!(qc.data.block_id, block.id(), "QC certifies the block");
    assert_eq!(
        block.state_root().0.as_slice(),
        &c.state_root[..],
        "block carries the root"
    );
    verify_qc(chain, set, &qc);
    let root: [u8; 32] = c.state_root[..].try_into().unwrap();
    let proof = Proof::from_bytes(&p.proof).expect("proof decodes");
    let value = if p.present { Some(&p.value[..]) } else { None };
    verify_proof(&root, &p.key, value, &proof).expect("Merkle proof verifies");
}

/// Checks that `qc` carries valid signatures of a quorum of `set`.
pub fn verify_qc(chain: &ChainId, set: &ValidatorSet, qc: &QuorumCert) {
    let signed = qc.data.signing_bytes(chain);
    let mut power = 0u64;
    let mut seen = std::collections::BTreeSet::new();
    for (index, sig) in &qc.signatures {
        assert!(seen.insert(*index), "a signer counted twice");
        let v = set.get(*index).expect("signer in the set");
        v.public_key
            .verify_raw(&signed, sig)
            .expect("QC signature verifies");
        power += v.power;
    }
    assert!(set.is_quorum(power), "QC has a quorum");
}
