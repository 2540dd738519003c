//! The validator set and its quorum math.
//!
//! With total voting power `T`, a quorum is any set of validators whose power
//! `p` satisfies `3p > 2T`, i.e. strictly more than two thirds. The comparison
//! is done in `u128`, so no rounding can ever let exactly two thirds through.
//! With at most `f` Byzantine power where `T = 3f + 1` (or more generally
//! Byzantine power `< T/3`), two quorums always share an honest validator.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Hash, PublicKey, TypesError, ValidatorIndex, limits};

/// One validator: its key and its voting power (bonded stake).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validator {
    pub public_key: PublicKey,
    pub power: u64,
}

/// An ordered set of validators with positive power. The order is the order
/// given at construction; [`ValidatorIndex`] refers to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<Validator>", into = "Vec<Validator>")]
pub struct ValidatorSet {
    validators: Vec<Validator>,
    total_power: u64,
    by_key: BTreeMap<PublicKey, ValidatorIndex>,
}

impl ValidatorSet {
    pub fn new(validators: Vec<Validator>) -> Result<ValidatorSet, TypesError> {
        if validators.is_empty() {
            return Err(TypesError::EmptyValidatorSet);
        }
        if validators.len() > limits::MAX_VALIDATORS {
            return Err(TypesError::TooMany {
                what: "validator set",
                got: validators.len(),
                limit: limits::MAX_VALIDATORS,
            });
        }
        let mut by_key = BTreeMap::new();
        let mut total_power: u64 = 0;
        for (i, v) in validators.iter().enumerate() {
            if v.power == 0 {
                return Err(TypesError::ZeroPower(v.public_key.to_hex()));
            }
            total_power = total_power
                .checked_add(v.power)
                .filter(|t| *t <= limits::MAX_TOTAL_POWER)
                .ok_or(TypesError::PowerOverflow)?;
            // MAX_VALIDATORS fits in u16 (checked in limits), so this cannot truncate.
            let index = ValidatorIndex(u16::try_from(i).map_err(|_| TypesError::TooMany {
                what: "validator set",
                got: validators.len(),
                limit: limits::MAX_VALIDATORS,
            })?);
            if by_key.insert(v.public_key, index).is_some() {
                return Err(TypesError::DuplicateValidator(v.public_key.to_hex()));
            }
        }
        Ok(ValidatorSet {
            validators,
            total_power,
            by_key,
        })
    }

    pub fn len(&self) -> usize {
        self.validators.len()
    }

    pub fn is_empty(&self) -> bool {
        self.validators.is_empty()
    }

    pub fn total_power(&self) -> u64 {
        self.total_power
    }

    pub fn get(&self, index: ValidatorIndex) -> Option<&Validator> {
        self.validators.get(index.as_usize())
    }

    pub fn index_of(&self, key: &PublicKey) -> Option<ValidatorIndex> {
        self.by_key.get(key).copied()
    }

    pub fn power_of(&self, index: ValidatorIndex) -> u64 {
        self.get(index).map_or(0, |v| v.power)
    }

    pub fn validators(&self) -> &[Validator] {
        &self.validators
    }

    pub fn iter(&self) -> impl Iterator<Item = (ValidatorIndex, &Validator)> {
        self.validators
            .iter()
            .enumerate()
            // Indices fit in u16: the constructor bounds the length.
            .map(|(i, v)| (ValidatorIndex(i as u16), v))
    }

    /// True iff `power` is strictly more than two thirds of the total.
    pub fn is_quorum(&self, power: u64) -> bool {
        3 * u128::from(power) > 2 * u128::from(self.total_power)
    }

    /// The least power that is a quorum: `floor(2T / 3) + 1`.
    pub fn quorum_power(&self) -> u64 {
        let q = (2 * u128::from(self.total_power)) / 3 + 1;
        // q <= T because T >= 1, so it fits in u64.
        u64::try_from(q).unwrap_or(u64::MAX)
    }

    /// True iff `power` is strictly more than one third of the total: such a
    /// set contains at least one honest validator.
    pub fn is_validity(&self, power: u64) -> bool {
        3 * u128::from(power) > u128::from(self.total_power)
    }

    /// Sum of the power of `indices`, each counted once; `None` if an index is
    /// out of range.
    pub fn power_of_set(&self, indices: impl IntoIterator<Item = ValidatorIndex>) -> Option<u64> {
        let mut seen = vec![false; self.validators.len()];
        let mut power: u64 = 0;
        for index in indices {
            let v = self.get(index)?;
            let slot = seen.get_mut(index.as_usize())?;
            if !*slot {
                *slot = true;
                // Sum of distinct validators' power never exceeds the total,
                // which the constructor bounded.
                power = power.saturating_add(v.power);
            }
        }
        Some(power)
    }

    /// A commitment to the set: SHA-256 over each validator's key and power
    /// in order. Block headers and epoch changes refer to sets by this hash.
    pub fn hash(&self) -> Hash {
        let mut bytes = Vec::with_capacity(self.validators.len() * 40);
        for v in &self.validators {
            bytes.extend_from_slice(v.public_key.as_bytes());
            bytes.extend_from_slice(&v.power.to_be_bytes());
        }
        Hash::digest_parts(&[b"commons/validator-set/v1", &bytes])
    }
}

impl TryFrom<Vec<Validator>> for ValidatorSet {
    type Error = TypesError;
    fn try_from(v: Vec<Validator>) -> Result<Self, Self::Error> {
        ValidatorSet::new(v)
    }
}

impl From<ValidatorSet> for Vec<Validator> {
    fn from(s: ValidatorSet) -> Vec<Validator> {
        s.validators
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u8) -> PublicKey {
        PublicKey([i; 32])
    }

    fn set(powers: &[u64]) -> ValidatorSet {
        ValidatorSet::new(
            powers
                .iter()
                .enumerate()
                .map(|(i, &power)| Validator {
                    public_key: key(i as u8),
                    power,
                })
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn exactly_two_thirds_is_not_a_quorum() {
        // Table: total power, power present, quorum?
        let cases: &[(u64, u64, bool)] = &[
            (3, 2, false), // exactly 2/3
            (3, 3, true),  // 2/3 + 1 unit
            (4, 2, false),
            (4, 3, true),  // n = 3f + 1 with f = 1: 2f + 1 = 3
            (6, 4, false), // exactly 2/3
            (6, 5, true),  // 2/3 + 1 unit
            (7, 5, true),  // 5/7 > 2/3
            (7, 4, false),
            (300, 200, false),
            (300, 201, true),
            (1, 1, true),
            (1, 0, false),
        ];
        for &(total, power, quorum) in cases {
            let s = set(&[total]);
            assert_eq!(s.is_quorum(power), quorum, "total {total}, power {power}");
        }
    }

    #[test]
    fn quorum_power_is_the_least_quorum() {
        for total in 1..=300u64 {
            let s = set(&[total]);
            let q = s.quorum_power();
            assert!(s.is_quorum(q), "total {total}: q = {q} must be a quorum");
            assert!(
                !s.is_quorum(q - 1),
                "total {total}: q - 1 = {} must not",
                q - 1
            );
            assert!(q <= total);
        }
    }

    #[test]
    fn quorum_math_is_exact_at_the_largest_total() {
        let total = limits::MAX_TOTAL_POWER;
        let s = set(&[total]);
        // 2T/3 is not an integer here (2^63 is not divisible by 3), so the
        // boundary is floor(2T/3) (no quorum) and floor(2T/3) + 1 (quorum).
        let two_thirds_floor = (2 * u128::from(total) / 3) as u64;
        assert!(!s.is_quorum(two_thirds_floor));
        assert!(s.is_quorum(two_thirds_floor + 1));
    }

    #[test]
    fn validity_threshold_is_more_than_one_third() {
        let s = set(&[1, 1, 1, 1]);
        assert!(!s.is_validity(1));
        assert!(s.is_validity(2));
        let s = set(&[3]);
        assert!(!s.is_validity(1));
        assert!(s.is_validity(2));
    }

    #[test]
    fn rejects_bad_sets() {
        assert_eq!(
            ValidatorSet::new(vec![]),
            Err(TypesError::EmptyValidatorSet)
        );
        let dup = vec![
            Validator {
                public_key: key(1),
                power: 1,
            },
            Validator {
                public_key: key(1),
                power: 2,
            },
        ];
        assert!(matches!(
            ValidatorSet::new(dup),
            Err(TypesError::DuplicateValidator(_))
        ));
        let zero = vec![Validator {
            public_key: key(1),
            power: 0,
        }];
        assert!(matches!(
            ValidatorSet::new(zero),
            Err(TypesError::ZeroPower(_))
        ));
        let huge = vec![
            Validator {
                public_key: key(1),
                power: limits::MAX_TOTAL_POWER,
            },
            Validator {
                public_key: key(2),
                power: 1,
            },
        ];
        assert_eq!(ValidatorSet::new(huge), Err(TypesError::PowerOverflow));
        let too_many = (0..=limits::MAX_VALIDATORS)
            .map(|i| {
                let mut k = [0u8; 32];
                k[..8].copy_from_slice(&(i as u64).to_be_bytes());
                Validator {
                    public_key: PublicKey(k),
                    power: 1,
                }
            })
            .collect();
        assert!(matches!(
            ValidatorSet::new(too_many),
            Err(TypesError::TooMany { .. })
        ));
    }

    #[test]
    fn power_of_set_counts_each_validator_once() {
        let s = set(&[5, 7, 11]);
        let power = s.power_of_set([ValidatorIndex(0), ValidatorIndex(2), ValidatorIndex(0)]);
        assert_eq!(power, Some(16));
        assert_eq!(s.power_of_set([ValidatorIndex(3)]), None);
        assert_eq!(s.index_of(&key(1)), Some(ValidatorIndex(1)));
    }

    #[test]
    fn serde_round_trip_revalidates() {
        let s = set(&[1, 2]);
        let json = serde_json::to_string(&s).unwrap();
        let back: ValidatorSet = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.hash(), s.hash());
        let bad = json.replace("\"power\":2", "\"power\":0");
        assert!(serde_json::from_str::<ValidatorSet>(&bad).is_err());
    }
}
