//! The Rust client library of Commons and the `commons` CLI built on it.
//!
//! Every read is verified: the client checks the certificate of the block
//! an answer rests on against the validator set it trusts, and the Merkle
//! proof of the value under that block's state root, in the normative
//! format of DESIGN.md "State" ([`commons_state_machine::store::verify_proof`]).
//! A node that lies is refused, not believed.
//!
//! - [`light`]: trust (from genesis or a trusted set), certificate checks
//!   (batch-verified signatures), following validator sets across epochs,
//!   state proofs.
//! - [`client`]: one method per query, each returning only what it
//!   verified; submitting transactions and waiting for finality, with the
//!   including block's certificate checked.
//! - [`keys`]: the key store (owner-only files, secrets shown only on
//!   request).
//! - [`txbuild`]: transaction bodies, fees, and partially signed files for
//!   two-party settlements signed on different machines.
//! - [`home`]: the CLI's home directory: config file and trust file.

#![deny(clippy::unwrap_used)]

pub mod client;
pub mod error;
pub mod home;
pub mod keys;
pub mod light;
pub mod limits;
pub mod txbuild;

pub use client::{Checked, Client};
pub use error::ClientError;
pub use light::{TrustStore, VerifiedRoot, VerifyError};
