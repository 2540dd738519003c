//! The CLI's home directory (`--home`, `$COMMONS_HOME`, or `~/.commons`):
//!
//! - `config.toml`: defaults (`node`, `output`, `wait_secs`);
//! - `trust.json`: the chain and the validator sets the client trusts,
//!   written by `commons init` and updated as the client follows epochs;
//! - `keys/`: the key store.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::ClientError;
use crate::keys::{KeyStore, read_limited};
use crate::light::{TrustFile, TrustStore};

pub const CONFIG_FILE: &str = "config.toml";
pub const TRUST_FILE: &str = "trust.json";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// gRPC URL of the node to ask, e.g. `http://127.0.0.1:26601`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// `human` or `json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// How long to wait for a transaction's finality.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_secs: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Home {
    dir: PathBuf,
}

impl Home {
    pub fn new(dir: impl Into<PathBuf>) -> Home {
        Home { dir: dir.into() }
    }

    /// `$HOME/.commons`, or `.commons` if there is no home directory.
    pub fn default_dir() -> PathBuf {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default()
            .join(".commons")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn keys(&self) -> KeyStore {
        KeyStore::new(self.dir.join("keys"))
    }

    pub fn config(&self) -> Result<Config, ClientError> {
        let path = self.dir.join(CONFIG_FILE);
        if !path.exists() {
            return Ok(Config::default());
        }
        let text = read_limited(&path)?;
        toml::from_str(&text).map_err(|e| ClientError::Usage(format!("{}: {e}", path.display())))
    }

    pub fn write_config(&self, config: &Config) -> Result<(), ClientError> {
        let text = toml::to_string(config)
            .map_err(|e| ClientError::Usage(format!("encoding the config: {e}")))?;
        self.replace(CONFIG_FILE, text.as_bytes())
    }

    pub fn has_trust(&self) -> bool {
        self.dir.join(TRUST_FILE).exists()
    }

    pub fn trust(&self) -> Result<TrustStore, ClientError> {
        let path = self.dir.join(TRUST_FILE);
        if !path.exists() {
            return Err(ClientError::Usage(format!(
                "no trusted validator set in {}: run `commons init --genesis GENESIS.json` first \
                 (or pass --no-verify to read unverified answers, for debugging only)",
                self.dir.display()
            )));
        }
        let text = read_limited(&path)?;
        let file: TrustFile = serde_json::from_str(&text)
            .map_err(|e| ClientError::Usage(format!("{}: {e}", path.display())))?;
        Ok(TrustStore::from_file(file)?)
    }

    pub fn write_trust(&self, trust: &TrustStore) -> Result<(), ClientError> {
        let text = serde_json::to_string_pretty(&trust.to_file())
            .map_err(|e| ClientError::Usage(format!("encoding the trust file: {e}")))?;
        self.replace(TRUST_FILE, text.as_bytes())
    }

    /// Writes `name` atomically: a temporary file, then a rename.
    fn replace(&self, name: &str, contents: &[u8]) -> Result<(), ClientError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| ClientError::io(&self.dir, e))?;
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, contents).map_err(|e| ClientError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| ClientError::io(&path, e))
    }
}
