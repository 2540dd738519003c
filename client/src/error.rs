//! The client's errors, each with the exit code the CLI uses for it.

use std::path::{Path, PathBuf};

use crate::light::VerifyError;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The node's answer failed verification: it must not be believed.
    #[error("REFUSED: the node's answer failed verification: {0}")]
    Verify(#[from] VerifyError),
    #[error("cannot reach the node at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("the node answered with an error: {0}")]
    Rpc(String),
    #[error("the node refused the transaction: {0}")]
    Rejected(String),
    #[error("the transaction {tx_id} committed in block {height} but failed: {message}")]
    TxFailed {
        tx_id: String,
        height: u64,
        message: String,
    },
    #[error("the transaction {tx_id} was not committed within {secs} s (state: {state})")]
    Timeout {
        tx_id: String,
        secs: u64,
        state: String,
    },
    #[error("no key named {name:?} in {dir}; see `commons keys list`")]
    UnknownKey { name: String, dir: PathBuf },
    #[error("{0}")]
    Usage(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ClientError {
    pub fn io(path: &Path, source: std::io::Error) -> ClientError {
        ClientError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// The process exit code: 2 usage (as clap), 3 a refused answer, 4 a
    /// refused or failed transaction, 5 the network or node, 1 the rest.
    pub fn exit_code(&self) -> i32 {
        match self {
            ClientError::Usage(_) | ClientError::UnknownKey { .. } => 2,
            ClientError::Verify(_) => 3,
            ClientError::Rejected(_) | ClientError::TxFailed { .. } => 4,
            ClientError::Connect { .. } | ClientError::Rpc(_) | ClientError::Timeout { .. } => 5,
            ClientError::Io { .. } => 1,
        }
    }
}

impl From<tonic::Status> for ClientError {
    fn from(s: tonic::Status) -> ClientError {
        ClientError::Rpc(format!("{:?}: {}", s.code(), s.message()))
    }
}
