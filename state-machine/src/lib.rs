//! The Commons ledger: transactions, execution, mempool, and the Merkle state
//! store ([`store`]) that every state root comes from.

#![deny(clippy::unwrap_used)]

pub mod app;
mod error;
pub mod ledger;
pub mod limits;
pub mod mempool;
pub mod store;

pub use app::{Application, Applied, Payload, PayloadError, executed_txs};
pub use error::{LedgerError, TxError};
pub use mempool::{AdmitError, Mempool, Received, decode_received};
