//! Shared vocabulary of Commons: hashes, keys and signatures, domain-separated
//! signing, protocol numbers, the validator set with its quorum math, the
//! transaction envelope with bounded decoding, and parallel batch verification
//! of ed25519 signatures.
//!
//! Rules this crate guarantees to the rest of the workspace:
//!
//! - Every signature is over `domain || chain_id || message`, with a distinct
//!   domain per kind of signed object ([`Domain`]), so a vote signature never
//!   verifies as a transaction or a timeout, and a signature for one chain
//!   never verifies on another.
//! - A quorum is strictly more than two thirds of the total voting power,
//!   computed in integers with no rounding ([`ValidatorSet::is_quorum`]).
//! - Decoding input from outside is bounded before any allocation that depends
//!   on it ([`limits`]).
//! - Verification follows ed25519-consensus (ZIP-215 rules), whose single and
//!   batch verification accept exactly the same signatures: the batch path
//!   ([`batch::verify_all`]) computes its batch equation on the same curve
//!   library and settles any failing batch with its single verification, so
//!   it can never disagree with the one-by-one path.

#![deny(clippy::unwrap_used)]

pub mod batch;
pub mod codec;
mod crypto;
mod error;
mod hash;
pub mod limits;
mod numbers;
pub mod tx;
mod validator;

pub use crypto::{ChainId, Domain, PublicKey, SecretKey, Signature, signing_bytes};
pub use error::TypesError;
pub use hash::Hash;
pub use numbers::{Amount, Epoch, Height, Round, ValidatorIndex};
pub use validator::{Validator, ValidatorSet};
