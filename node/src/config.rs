//! The node's home directory: `config.toml`, the validator key file and the
//! genesis file, and how they are read (bounded, with errors that name the
//! file and the problem).
//!
//! ```toml
//! key_file = "validator.key"      # relative paths are relative to the home
//! genesis_file = "genesis.json"
//! data_dir = "data"               # the node's one RocksDB lives in here
//! compute_threads = 2             # signature checks, hashing; default: one per core
//!
//! [p2p]
//! listen = "127.0.0.1:26656"
//! dial_genesis_validators = true  # dial every validator's genesis address
//! peers = [ { public_key = "<64 hex>", address = "10.0.0.2:26656" } ]
//!
//! [grpc]
//! listen = "127.0.0.1:9090"
//!
//! [metrics]
//! listen = "127.0.0.1:9100"       # omit the table to turn metrics off
//!
//! [consensus]                     # liveness only; safety never depends on them
//! round_timeout_ms = 1000         # default: the genesis parameter
//! round_timeout_ms_max = 60000    # default: the genesis parameter
//! sync_retry_ms = 1000
//! empty_block_interval_ms = 250  # idle chains propose empty blocks this often
//! min_block_interval_ms = 20      # a leader proposes at most this often
//! ```

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use commons_state_machine::ledger::Genesis;
use commons_types::{PublicKey, SecretKey};
use serde::{Deserialize, Serialize};

use crate::limits;

pub const CONFIG_FILE: &str = "config.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: file of more than {limit} bytes; is this the right file?")]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("{path} already exists; refusing to overwrite it")]
    Exists { path: PathBuf },
}

impl ConfigError {
    fn io(path: &Path, source: std::io::Error) -> ConfigError {
        ConfigError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
    fn invalid(path: &Path, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    pub public_key: PublicKey,
    pub address: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct P2pConfig {
    pub listen: SocketAddr,
    #[serde(default = "default_true")]
    pub dial_genesis_validators: bool,
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    pub listen: SocketAddr,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsensusTimeouts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round_timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round_timeout_ms_max: Option<u64>,
    #[serde(default = "default_sync_retry_ms")]
    pub sync_retry_ms: u64,
    /// While the mempool is empty, a leader waits until this long after its
    /// parent block before proposing (an empty block), so an idle chain
    /// does not write blocks as fast as the network allows. A transaction
    /// arriving ends the wait. Must stay below the round timeout.
    #[serde(default = "default_empty_block_interval_ms")]
    pub empty_block_interval_ms: u64,
    /// A leader proposes no sooner than this long after its parent block,
    /// even with transactions waiting: a trickle of transactions then fills
    /// a few blocks instead of one block per network round trip, each with
    /// its fixed cost (votes, fsyncs, a state version) on every validator.
    /// Adds at most this much to each of the blocks a commit needs. At most
    /// `empty_block_interval_ms`.
    #[serde(default = "default_min_block_interval_ms")]
    pub min_block_interval_ms: u64,
}

fn default_empty_block_interval_ms() -> u64 {
    250
}

fn default_min_block_interval_ms() -> u64 {
    20
}

fn default_true() -> bool {
    true
}

fn default_sync_retry_ms() -> u64 {
    1_000
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub key_file: PathBuf,
    pub genesis_file: PathBuf,
    pub data_dir: PathBuf,
    /// Threads for the node's parallel work: batch signature verification
    /// and state hashing. Default: one per core. Validators that share a
    /// machine (a devnet) each get their share of its cores, so their pools
    /// do not contend for the same cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_threads: Option<usize>,
    pub p2p: P2pConfig,
    pub grpc: ListenConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<ListenConfig>,
    #[serde(default)]
    pub consensus: ConsensusTimeouts,
}

impl NodeConfig {
    /// A config with the standard file names under a home directory.
    pub fn new(p2p: SocketAddr, grpc: SocketAddr, metrics: Option<SocketAddr>) -> NodeConfig {
        NodeConfig {
            key_file: PathBuf::from("validator.key"),
            genesis_file: PathBuf::from("genesis.json"),
            data_dir: PathBuf::from("data"),
            compute_threads: None,
            p2p: P2pConfig {
                listen: p2p,
                dial_genesis_validators: true,
                peers: Vec::new(),
            },
            grpc: ListenConfig { listen: grpc },
            metrics: metrics.map(|listen| ListenConfig { listen }),
            consensus: ConsensusTimeouts {
                round_timeout_ms: None,
                round_timeout_ms_max: None,
                sync_retry_ms: default_sync_retry_ms(),
                empty_block_interval_ms: default_empty_block_interval_ms(),
                min_block_interval_ms: default_min_block_interval_ms(),
            },
        }
    }

    pub fn to_toml(&self) -> String {
        // Plain structs of strings, numbers and addresses always serialize.
        toml::to_string_pretty(self).unwrap_or_default()
    }

    fn check(&self, path: &Path) -> Result<(), ConfigError> {
        if let Some(threads) = self.compute_threads
            && !(1..=limits::MAX_COMPUTE_THREADS).contains(&threads)
        {
            return Err(ConfigError::invalid(
                path,
                format!(
                    "compute_threads = {threads}: must be between 1 and {}",
                    limits::MAX_COMPUTE_THREADS
                ),
            ));
        }
        if let Some(ms) = self.consensus.round_timeout_ms
            && !(50..=60_000).contains(&ms)
        {
            return Err(ConfigError::invalid(
                path,
                format!("consensus.round_timeout_ms = {ms}: must be between 50 and 60000"),
            ));
        }
        if let Some(ms) = self.consensus.round_timeout_ms_max
            && !(50..=3_600_000).contains(&ms)
        {
            return Err(ConfigError::invalid(
                path,
                format!("consensus.round_timeout_ms_max = {ms}: must be between 50 and 3600000"),
            ));
        }
        if !(50..=600_000).contains(&self.consensus.sync_retry_ms) {
            return Err(ConfigError::invalid(
                path,
                format!(
                    "consensus.sync_retry_ms = {}: must be between 50 and 600000",
                    self.consensus.sync_retry_ms
                ),
            ));
        }
        let round_timeout_ms = self.consensus.round_timeout_ms.unwrap_or(50);
        if self.consensus.empty_block_interval_ms > 10_000
            || (self.consensus.round_timeout_ms.is_some()
                && self.consensus.empty_block_interval_ms >= round_timeout_ms)
        {
            return Err(ConfigError::invalid(
                path,
                format!(
                    "consensus.empty_block_interval_ms = {}: must be at most 10000 and below the round timeout",
                    self.consensus.empty_block_interval_ms
                ),
            ));
        }
        let min_ms = self.consensus.min_block_interval_ms;
        let empty_ms = self.consensus.empty_block_interval_ms;
        if min_ms > 10_000
            || (empty_ms > 0 && min_ms > empty_ms)
            || (self.consensus.round_timeout_ms.is_some() && min_ms >= round_timeout_ms)
        {
            return Err(ConfigError::invalid(
                path,
                format!(
                    "consensus.min_block_interval_ms = {min_ms}: must be at most 10000, at most empty_block_interval_ms ({empty_ms}) and below the round timeout"
                ),
            ));
        }
        if self.p2p.peers.len() > commons_types::limits::MAX_VALIDATORS {
            return Err(ConfigError::invalid(
                path,
                format!(
                    "{} peers configured, at most {}",
                    self.p2p.peers.len(),
                    commons_types::limits::MAX_VALIDATORS
                ),
            ));
        }
        for listen in [Some(self.p2p.listen), Some(self.grpc.listen)]
            .into_iter()
            .chain([self.metrics.as_ref().map(|m| m.listen)])
            .flatten()
        {
            if listen.port() == 0 {
                return Err(ConfigError::invalid(
                    path,
                    format!("listen address {listen} has port 0; give a fixed port"),
                ));
            }
        }
        Ok(())
    }
}

/// Everything `start` needs, read and checked.
#[derive(Debug)]
pub struct Home {
    pub dir: PathBuf,
    pub config: NodeConfig,
    pub key: SecretKey,
    pub genesis: Genesis,
}

impl Home {
    pub fn load(dir: &Path) -> Result<Home, ConfigError> {
        let config_path = dir.join(CONFIG_FILE);
        let text = read_bounded(&config_path, limits::MAX_CONFIG_FILE_BYTES)?;
        let config: NodeConfig =
            toml::from_str(&text).map_err(|e| ConfigError::invalid(&config_path, e.to_string()))?;
        config.check(&config_path)?;
        let key = read_key(&dir.join(&config.key_file))?;
        let genesis_path = dir.join(&config.genesis_file);
        let text = read_bounded(
            &genesis_path,
            commons_state_machine::ledger::genesis::MAX_GENESIS_BYTES as u64,
        )?;
        let genesis = Genesis::from_json(&text)
            .map_err(|e| ConfigError::invalid(&genesis_path, e.to_string()))?;
        Ok(Home {
            dir: dir.to_path_buf(),
            config,
            key,
            genesis,
        })
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join(&self.config.data_dir)
    }
}

fn read_bounded(path: &Path, limit: u64) -> Result<String, ConfigError> {
    let file = std::fs::File::open(path).map_err(|e| ConfigError::io(path, e))?;
    let mut text = String::new();
    file.take(limit + 1)
        .read_to_string(&mut text)
        .map_err(|e| ConfigError::io(path, e))?;
    if text.len() as u64 > limit {
        return Err(ConfigError::TooLarge {
            path: path.to_path_buf(),
            limit,
        });
    }
    Ok(text)
}

/// Reads a key file: the 32-byte ed25519 seed in hex. Refuses files that
/// other users can read.
pub fn read_key(path: &Path) -> Result<SecretKey, ConfigError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|e| ConfigError::io(path, e))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(ConfigError::invalid(
                path,
                format!("key file has permissions {mode:o}; run `chmod 600` on it"),
            ));
        }
    }
    let text = read_bounded(path, limits::MAX_KEY_FILE_BYTES)?;
    let bytes = hex::decode(text.trim())
        .map_err(|e| ConfigError::invalid(path, format!("key is not hex: {e}")))?;
    let seed: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
        ConfigError::invalid(path, format!("key has {} bytes, expected 32", b.len()))
    })?;
    Ok(SecretKey::from_seed(seed))
}

/// Creates `path`, which must not exist yet, with permission bits `mode`.
fn create_new(path: &Path, mode: u32) -> Result<std::fs::File, ConfigError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            ConfigError::Exists {
                path: path.to_path_buf(),
            }
        } else {
            ConfigError::io(path, e)
        }
    })
}

/// Writes a key file with mode 0600, refusing to overwrite one.
pub fn write_key(path: &Path, key: &SecretKey) -> Result<(), ConfigError> {
    use std::io::Write;
    let mut file = create_new(path, 0o600)?;
    writeln!(file, "{}", hex::encode(key.to_seed())).map_err(|e| ConfigError::io(path, e))?;
    file.sync_all().map_err(|e| ConfigError::io(path, e))
}

/// Writes a file that must not exist yet.
pub fn write_new(path: &Path, text: &str) -> Result<(), ConfigError> {
    use std::io::Write;
    let mut file = create_new(path, 0o644)?;
    file.write_all(text.as_bytes())
        .map_err(|e| ConfigError::io(path, e))
}

/// The public key of a home's key file (for `init` output and devnets).
pub fn public_key_of(key: &SecretKey) -> PublicKey {
    key.public_key()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn key_files_are_private_never_overwritten_and_checked_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("validator.key");
        let key = SecretKey::from_seed([5; 32]);
        write_key(&path, &key).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read_key(&path).unwrap().public_key(), key.public_key());
        assert!(matches!(
            write_key(&path, &SecretKey::from_seed([6; 32])),
            Err(ConfigError::Exists { .. })
        ));
        assert_eq!(read_key(&path).unwrap().public_key(), key.public_key());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read_key(&path).is_err(), "a key others can read is refused");

        let other = dir.path().join("genesis.json");
        write_new(&other, "{}").unwrap();
        assert!(matches!(
            write_new(&other, "[]"),
            Err(ConfigError::Exists { .. })
        ));
        assert_eq!(std::fs::read_to_string(&other).unwrap(), "{}");
    }

    #[test]
    fn min_block_interval_is_bounded_by_the_empty_block_interval() {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let path = Path::new("config.toml");
        let mut c = NodeConfig::new(addr, addr, None);
        assert_eq!(c.consensus.min_block_interval_ms, 20);
        assert!(c.check(path).is_ok());
        c.consensus.min_block_interval_ms = c.consensus.empty_block_interval_ms + 1;
        assert!(c.check(path).is_err());
        // No empty-block wait: the minimum still applies, and is still valid.
        c.consensus.empty_block_interval_ms = 0;
        c.consensus.min_block_interval_ms = 20;
        assert!(c.check(path).is_ok());
        c.consensus.round_timeout_ms = Some(50);
        c.consensus.min_block_interval_ms = 50;
        assert!(c.check(path).is_err());
        // Older configs without the key get the default.
        let text = c.to_toml().replace("min_block_interval_ms = 50\n", "");
        let back: NodeConfig = toml::from_str(&text).unwrap();
        assert_eq!(back.consensus.min_block_interval_ms, 20);
    }

    #[test]
    fn compute_threads_is_optional_and_bounded() {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let path = Path::new("config.toml");
        let mut c = NodeConfig::new(addr, addr, None);
        assert_eq!(c.compute_threads, None);
        assert!(!c.to_toml().contains("compute_threads"));
        c.compute_threads = Some(1);
        assert!(c.check(path).is_ok());
        let back: NodeConfig = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(back.compute_threads, Some(1));
        for bad in [0, limits::MAX_COMPUTE_THREADS + 1] {
            c.compute_threads = Some(bad);
            let error = c.check(path).unwrap_err().to_string();
            assert!(error.contains("compute_threads"), "{error}");
        }
    }
}
