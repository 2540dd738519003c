//! Harness for the CLI's end-to-end tests: real `commons-node` processes on
//! 127.0.0.1 with RocksDB in a temporary directory (the approach of
//! `node/tests/common`), killed when the test ends by a drop guard; and a
//! lying node: a gRPC proxy in front of a real node that alters answers.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use commons_consensus::{Block, QuorumCert};
use commons_node::devnet::{DevnetNode, read_devnet};
use commons_proto::v1 as api;
use commons_proto::v1::query_client::QueryClient;
use commons_proto::v1::query_server::{Query, QueryServer};
use commons_state_machine::ledger::Account;
use commons_state_machine::store::proof::{key_hash, leaf_hash, value_hash};
use commons_state_machine::store::{Proof, ProofLeaf};
use commons_types::SecretKey;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

pub const CLI: &str = env!("CARGO_BIN_EXE_commons");

/// `commons-node`, built by the same workspace build next to this test's
/// own executable (`target/<profile>/deps/..`).
pub fn node_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join("commons-node");
    assert!(
        bin.exists(),
        "{} missing: build the workspace with --all-targets",
        bin.display()
    );
    bin
}

pub fn demo_key(i: u32) -> SecretKey {
    commons_node::devnet::demo_account_key(i)
}

/// End-to-end tests share two cores: run them one at a time.
pub static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A base port whose `3 * 10 * n` following ports are free now.
pub fn free_base_port(n: usize) -> u16 {
    let seed = (std::process::id() as u64 * 6007) % 300;
    for attempt in 0..300u64 {
        let base = 21_000 + ((seed + attempt * 41) % 300) * 120;
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
        let child = Command::new(node_bin())
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
        NodeProcess { child: Some(child) }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub struct Cluster {
    pub procs: Vec<NodeProcess>,
    pub nodes: Vec<DevnetNode>,
    pub dir: KeptDir,
}

impl Cluster {
    /// Writes a devnet of `n` validators with `commons-node devnet --init-only`.
    pub fn init(n: usize, extra: &[&str]) -> Cluster {
        let dir = KeptDir(tempfile::tempdir().unwrap());
        let base = free_base_port(n);
        let status = Command::new(node_bin())
            .args(["devnet", "--init-only", "--validators", &n.to_string()])
            .arg("--dir")
            .arg(dir.path().join("net"))
            .args([
                "--base-port",
                &base.to_string(),
                "--round-timeout-ms",
                "400",
            ])
            .args(["--param", "round_timeout_ms_max=1600"])
            .args(extra)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "devnet --init-only failed");
        let nodes = read_devnet(&dir.path().join("net")).unwrap();
        assert_eq!(nodes.len(), n);
        Cluster {
            procs: Vec::new(),
            nodes,
            dir,
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

    /// Waits until node `i` has a certified block above `height`.
    pub fn wait_ready(&self, i: usize, height: u64) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let endpoint = self.endpoint(i);
        let deadline = Instant::now() + Duration::from_secs(40);
        rt.block_on(async {
            loop {
                if let Ok(mut q) = QueryClient::connect(endpoint.clone()).await
                    && let Ok(r) = q.get_latest_commit(api::LatestCommitRequest {}).await
                    && r.get_ref()
                        .certified
                        .as_ref()
                        .is_some_and(|c| c.block_height > height)
                {
                    return;
                }
                assert!(Instant::now() < deadline, "node {i} never got ready");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }
}

/// How the lying proxy falsifies `GetAccount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lie {
    /// Adds to the balance field; the proof is left alone.
    Balance,
    /// Adds to the balance in both the field and the proven value.
    ProvenValue,
    /// Also makes the proof consistent with a forged state root (a tree of
    /// one leaf), and claims that root.
    StateRoot,
    /// Also rewrites the certified block to carry the forged root and points
    /// the certificate at the rewritten block.
    Certificate,
}

pub const LIE_AMOUNT: u64 = 1_000_000;

struct Liar {
    upstream: QueryClient<Channel>,
    lie: Lie,
}

impl Liar {
    fn falsify(&self, r: &mut api::AccountResponse) {
        let lie = self.lie;
        if let Some(a) = r.account.as_mut() {
            a.balance += LIE_AMOUNT;
        }
        if lie == Lie::Balance {
            return;
        }
        let p = r.proof.as_mut().unwrap();
        let mut account = Account::decode(&p.value).unwrap();
        account.balance += LIE_AMOUNT;
        p.value = account.encode().into();
        if lie == Lie::ProvenValue {
            return;
        }
        let leaf = ProofLeaf {
            key_hash: key_hash(&p.key),
            value_hash: value_hash(&p.value),
        };
        let root = leaf_hash(&leaf.key_hash, &leaf.value_hash);
        p.proof = Proof {
            leaf: Some(leaf),
            siblings: Vec::new(),
        }
        .to_bytes()
        .into();
        let c = p.certified.as_mut().unwrap();
        c.state_root = root.to_vec().into();
        if lie == Lie::StateRoot {
            return;
        }
        let block = Block::decode(&c.block).unwrap();
        let mut fields = block.into_fields();
        fields.state_root = commons_types::Hash(root);
        let forged = Block::new(fields);
        let mut qc = QuorumCert::decode(&c.qc).unwrap();
        qc.data.block_id = forged.id();
        c.block = forged.encode().into();
        c.qc = qc.encode().into();
    }
}

#[tonic::async_trait]
impl Query for Liar {
    async fn get_account(
        &self,
        request: Request<api::AccountRequest>,
    ) -> Result<Response<api::AccountResponse>, Status> {
        let mut r = self
            .upstream
            .clone()
            .get_account(request.into_inner())
            .await?
            .into_inner();
        self.falsify(&mut r);
        Ok(Response::new(r))
    }

    async fn get_lease(
        &self,
        request: Request<api::LeaseRequest>,
    ) -> Result<Response<api::LeaseResponse>, Status> {
        self.upstream.clone().get_lease(request.into_inner()).await
    }

    async fn get_settlement(
        &self,
        request: Request<api::SettlementRequest>,
    ) -> Result<Response<api::SettlementResponse>, Status> {
        self.upstream
            .clone()
            .get_settlement(request.into_inner())
            .await
    }

    async fn get_proposal(
        &self,
        request: Request<api::ProposalRequest>,
    ) -> Result<Response<api::ProposalResponse>, Status> {
        self.upstream
            .clone()
            .get_proposal(request.into_inner())
            .await
    }

    async fn get_votes(
        &self,
        request: Request<api::VotesRequest>,
    ) -> Result<Response<api::VotesResponse>, Status> {
        self.upstream.clone().get_votes(request.into_inner()).await
    }

    async fn get_params(
        &self,
        request: Request<api::ParamsRequest>,
    ) -> Result<Response<api::ParamsResponse>, Status> {
        self.upstream.clone().get_params(request.into_inner()).await
    }

    async fn get_validator_set(
        &self,
        request: Request<api::ValidatorSetRequest>,
    ) -> Result<Response<api::ValidatorSetResponse>, Status> {
        self.upstream
            .clone()
            .get_validator_set(request.into_inner())
            .await
    }

    async fn get_block(
        &self,
        request: Request<api::BlockRequest>,
    ) -> Result<Response<api::BlockResponse>, Status> {
        self.upstream.clone().get_block(request.into_inner()).await
    }

    async fn get_latest_commit(
        &self,
        request: Request<api::LatestCommitRequest>,
    ) -> Result<Response<api::LatestCommitResponse>, Status> {
        self.upstream
            .clone()
            .get_latest_commit(request.into_inner())
            .await
    }
}

/// Starts the lying proxy on a free port in the current runtime; returns
/// its URL. It runs until the runtime stops.
pub async fn start_lying_proxy(upstream: String, lie: Lie) -> String {
    let channel = Channel::from_shared(upstream)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let liar = Liar {
        upstream: QueryClient::new(channel),
        lie,
    };
    let incoming =
        tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = incoming.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(QueryServer::new(liar))
            .serve_with_incoming(incoming),
    );
    format!("http://{addr}")
}
