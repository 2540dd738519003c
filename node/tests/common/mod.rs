//! Harness for end-to-end tests: real `commons-node` processes on 127.0.0.1
//! with RocksDB in a temporary directory, killed when the test ends (pass or
//! fail) by a drop guard.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use commons_consensus::{Block, QuorumCert};
use commons_node::devnet::{DevnetNode, demo_account_key, read_devnet};
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
}

impl Cluster {
    /// Writes a devnet of `n` validators with the binary itself.
    pub fn init(n: usize, extra: &[&str]) -> Cluster {
        let dir = KeptDir(tempfile::tempdir().unwrap());
        let base = free_base_port(n);
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
        Cluster {
            dir,
            nodes,
            procs: Vec::new(),
            genesis,
            chain,
        }
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
    let root: [u8; 32] = c.state_root[..].try_into().unwrap();
    let proof = Proof::from_bytes(&p.proof).expect("proof decodes");
    let value = if p.present { Some(&p.value[..]) } else { None };
    verify_proof(&root, &p.key, value, &proof).expect("Merkle proof verifies");
}
