//! The ledger state machine: accounts, transfers, staking, settlements,
//! leases, fees, governance glue and evidence, executed block by block.

pub mod action;
pub mod api;
pub mod chain;
pub mod evidence;
pub mod execute;
pub mod genesis;
pub mod gov;
pub mod limits;
pub mod params;
pub mod receipt;
pub mod state;
pub mod working;

pub use action::{Action, TxBody, decode_body};
pub use chain::{Executed, Ledger, StoreView};
pub use execute::{BlockOutcome, NoneVerified, PreparedTx, VerifiedTxs};
pub use genesis::{Genesis, GenesisAccount, GenesisValidator};
pub use params::LedgerParams;
pub use receipt::{Receipt, merkle_root};
pub use state::{Account, Lease, Resource, Settlement, Unbonding};
pub use working::{StateRead, Working, Writes};
