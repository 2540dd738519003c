//! `commons-node init` and `commons-node devnet`: writing home directories
//! (key, config, genesis) and running a local network of validators as child
//! processes on 127.0.0.1.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};

use commons_state_machine::ledger::{Genesis, GenesisAccount, GenesisValidator};
use commons_types::{ChainId, Hash, PublicKey, SecretKey};
use rand_core::OsRng;

use crate::config::{self, CONFIG_FILE, ConfigError, NodeConfig, PeerConfig};
use crate::limits;

pub const DEVNET_CHAIN_ID: &str = "commons-devnet";

/// Funded accounts of a devnet, derived from public seeds so that tools and
/// tests can sign with them. Test funds only: anyone can derive these keys.
/// `devnet --accounts N` funds more (the load generator signs from many
/// accounts, since each account's pending transactions are bounded).
pub const DEVNET_DEMO_ACCOUNTS: u32 = 16;
pub const DEVNET_DEMO_BALANCE: u64 = 1_000_000_000_000;
/// Each devnet validator's own account: a balance for fees and a bond that
/// gives it voting power in the DAO.
pub const DEVNET_VALIDATOR_BALANCE: u64 = 1_000_000_000;
pub const DEVNET_VALIDATOR_BONDED: u64 = 1_000_000;
pub const DEVNET_VALIDATOR_POWER: u64 = 100;

/// The key of devnet demo account `i`: `SHA-256("commons/devnet/account" ‖ i)`.
pub fn demo_account_key(i: u32) -> SecretKey {
    let seed = Hash::digest_parts(&[b"commons/devnet/account", &i.to_be_bytes()]);
    SecretKey::from_seed(seed.0)
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SetupError + '_ {
    move |source| SetupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Options of `init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub home: PathBuf,
    /// An existing genesis file to join; `None` creates a one-validator chain.
    pub genesis: Option<PathBuf>,
    pub chain_id: String,
    pub p2p_listen: SocketAddr,
    pub grpc_listen: SocketAddr,
    pub metrics_listen: Option<SocketAddr>,
    pub peers: Vec<PeerConfig>,
}

/// Writes a home: a fresh key (0600), `config.toml` and `genesis.json`.
/// Returns the validator's public key. Refuses to overwrite anything.
pub fn init(opts: &InitOptions) -> Result<PublicKey, SetupError> {
    std::fs::create_dir_all(&opts.home).map_err(io(&opts.home))?;
    let config_path = opts.home.join(CONFIG_FILE);
    if config_path.exists() {
        return Err(ConfigError::Exists { path: config_path }.into());
    }
    let key = SecretKey::generate(OsRng);
    let mut config = NodeConfig::new(opts.p2p_listen, opts.grpc_listen, opts.metrics_listen);
    config.p2p.peers = opts.peers.clone();
    let genesis_text = match &opts.genesis {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(io(path))?;
            Genesis::from_json(&text)
                .map_err(|e| SetupError::Invalid(format!("{}: {e}", path.display())))?;
            text
        }
        None => {
            let chain = ChainId::new(opts.chain_id.clone())
                .map_err(|e| SetupError::Invalid(format!("--chain-id: {e}")))?;
            let genesis = Genesis {
                chain_id: chain,
                accounts: vec![GenesisAccount {
                    public_key: key.public_key(),
                    balance: DEVNET_VALIDATOR_BALANCE,
                    bonded: DEVNET_VALIDATOR_BONDED,
                }],
                validators: vec![GenesisValidator {
                    public_key: key.public_key(),
                    power: DEVNET_VALIDATOR_POWER,
                    address: opts.p2p_listen.to_string(),
                }],
                params: BTreeMap::new(),
                treasury: 0,
            };
            genesis
                .validate()
                .map_err(|e| SetupError::Invalid(e.to_string()))?;
            genesis.to_json()
        }
    };
    config::write_key(&opts.home.join(&config.key_file), &key)?;
    config::write_new(&opts.home.join(&config.genesis_file), &genesis_text)?;
    config::write_new(&config_path, &config.to_toml())?;
    Ok(key.public_key())
}

/// Options of `devnet`.
#[derive(Debug, Clone)]
pub struct DevnetOptions {
    pub validators: usize,
    pub dir: PathBuf,
    pub base_port: u16,
    pub epoch_length_blocks: u64,
    /// Genesis parameter overrides (`name=value`).
    pub params: BTreeMap<String, u64>,
    pub round_timeout_ms: Option<u64>,
    /// Funded demo accounts: `demo_account_key(0..demo_accounts)`.
    pub demo_accounts: u32,
}

/// One devnet validator.
#[derive(Debug, Clone)]
pub struct DevnetNode {
    pub home: PathBuf,
    pub public_key: PublicKey,
    pub p2p: SocketAddr,
    pub grpc: SocketAddr,
    pub metrics: SocketAddr,
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

/// Ports of validator `i`: p2p, gRPC and metrics at `base + 10 i + {0, 1, 2}`.
pub fn devnet_ports(base: u16, i: usize) -> Result<(u16, u16, u16), SetupError> {
    let p2p = u32::from(base) + 10 * i as u32;
    if p2p + 2 > u32::from(u16::MAX) {
        return Err(SetupError::Invalid(format!(
            "--base-port {base} is too high for {} validators",
            i + 1
        )));
    }
    Ok((p2p as u16, p2p as u16 + 1, p2p as u16 + 2))
}

/// Writes the homes of a new devnet under `dir` (`node0`, `node1`, ...), with
/// one shared genesis. Refuses a directory that already holds a devnet.
pub fn write_devnet(opts: &DevnetOptions) -> Result<Vec<DevnetNode>, SetupError> {
    if opts.validators == 0 || opts.validators > limits::MAX_DEVNET_VALIDATORS {
        return Err(SetupError::Invalid(format!(
            "--validators must be between 1 and {}, got {}",
            limits::MAX_DEVNET_VALIDATORS,
            opts.validators
        )));
    }
    if opts.demo_accounts > limits::MAX_DEVNET_DEMO_ACCOUNTS {
        return Err(SetupError::Invalid(format!(
            "--accounts must be at most {}, got {}",
            limits::MAX_DEVNET_DEMO_ACCOUNTS,
            opts.demo_accounts
        )));
    }
    if opts.base_port < 1024 {
        return Err(SetupError::Invalid(format!(
            "--base-port {} is a privileged port; use 1024 or above",
            opts.base_port
        )));
    }
    let mut nodes = Vec::with_capacity(opts.validators);
    let mut keys = Vec::with_capacity(opts.validators);
    for i in 0..opts.validators {
        let (p2p, grpc, metrics) = devnet_ports(opts.base_port, i)?;
        let key = SecretKey::generate(OsRng);
        nodes.push(DevnetNode {
            home: opts.dir.join(format!("node{i}")),
            public_key: key.public_key(),
            p2p: loopback(p2p),
            grpc: loopback(grpc),
            metrics: loopback(metrics),
        });
        keys.push(key);
    }
    let mut accounts: Vec<GenesisAccount> = (0..opts.demo_accounts)
        .map(|i| GenesisAccount {
            public_key: demo_account_key(i).public_key(),
            balance: DEVNET_DEMO_BALANCE,
            bonded: 0,
        })
        .collect();
    for node in &nodes {
        accounts.push(GenesisAccount {
            public_key: node.public_key,
            balance: DEVNET_VALIDATOR_BALANCE,
            bonded: DEVNET_VALIDATOR_BONDED,
        });
    }
    let mut params = opts.params.clone();
    params.insert("epoch_length_blocks".to_string(), opts.epoch_length_blocks);
    let genesis = Genesis {
        chain_id: ChainId::new(DEVNET_CHAIN_ID).map_err(|e| SetupError::Invalid(e.to_string()))?,
        accounts,
        validators: nodes
            .iter()
            .map(|n| GenesisValidator {
                public_key: n.public_key,
                power: DEVNET_VALIDATOR_POWER,
                address: n.p2p.to_string(),
            })
            .collect(),
        params,
        treasury: 0,
    };
    genesis
        .validate()
        .map_err(|e| SetupError::Invalid(format!("genesis: {e}")))?;
    let genesis_json = genesis.to_json();
    let compute_threads = devnet_compute_threads(nodes.len());
    for (node, key) in nodes.iter().zip(&keys) {
        if node.home.join(CONFIG_FILE).exists() {
            return Err(ConfigError::Exists {
                path: node.home.join(CONFIG_FILE),
            }
            .into());
        }
        std::fs::create_dir_all(&node.home).map_err(io(&node.home))?;
        let mut config = NodeConfig::new(node.p2p, node.grpc, Some(node.metrics));
        config.consensus.round_timeout_ms = opts.round_timeout_ms;
        config.compute_threads = Some(compute_threads);
        config::write_key(&node.home.join(&config.key_file), key)?;
        config::write_new(&node.home.join(&config.genesis_file), &genesis_json)?;
        config::write_new(&node.home.join(CONFIG_FILE), &config.to_toml())?;
    }
    Ok(nodes)
}

/// Each of a devnet's validators gets an equal share of this machine's cores
/// (at least one) for its compute pool: with one pool per validator, all of
/// them one thread per core, signature batches would run on several times
/// more threads than cores, each switch costing the verifier its caches.
fn devnet_compute_threads(validators: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    (cores / validators.max(1)).max(1)
}

/// Reads back the validators of a devnet written by [`write_devnet`].
pub fn read_devnet(dir: &Path) -> Result<Vec<DevnetNode>, SetupError> {
    let mut nodes = Vec::new();
    for i in 0..limits::MAX_DEVNET_VALIDATORS {
        let home = dir.join(format!("node{i}"));
        if !home.join(CONFIG_FILE).exists() {
            break;
        }
        let loaded = config::Home::load(&home)?;
        let metrics = loaded
            .config
            .metrics
            .as_ref()
            .map(|m| m.listen)
            .unwrap_or(loaded.config.grpc.listen);
        nodes.push(DevnetNode {
            public_key: loaded.key.public_key(),
            p2p: loaded.config.p2p.listen,
            grpc: loaded.config.grpc.listen,
            metrics,
            home,
        });
    }
    Ok(nodes)
}
