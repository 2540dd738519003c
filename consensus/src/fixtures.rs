//! Keys, validator sets and the chain id the rooms' unit tests share.

use commons_types::{ChainId, PublicKey, SecretKey, Validator, ValidatorSet};

/// Validator `i`'s key.
pub(crate) fn key(i: u8) -> SecretKey {
    SecretKey::from_seed([i + 1; 32])
}

pub(crate) fn pk(i: u8) -> PublicKey {
    key(i).public_key()
}

pub(crate) fn chain() -> ChainId {
    ChainId::new("test").expect("chain id")
}

/// Validators 0, 1, 2, … with these powers, in that order.
pub(crate) fn set_with(powers: &[u64]) -> ValidatorSet {
    ValidatorSet::new(
        (0u8..)
            .zip(powers)
            .map(|(i, power)| Validator {
                public_key: pk(i),
                power: *power,
            })
            .collect(),
    )
    .expect("validator set")
}

/// Validators 0, 1, 2, 3 in that order, power 10 each.
pub(crate) fn set() -> ValidatorSet {
    set_with(&[10; 4])
}
