//! Newtypes for protocol numbers, so a round is never passed where a height
//! belongs.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! counter {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl $name {
            pub const ZERO: $name = $name(0);

            /// The next value. Counters start at zero and advance by one per
            /// step, so reaching `u64::MAX` would take longer than any
            /// deployment lives; saturating keeps even that case panic-free.
            pub fn next(self) -> $name {
                $name(self.0.saturating_add(1))
            }

            /// The previous value, or `None` at zero.
            pub fn prev(self) -> Option<$name> {
                self.0.checked_sub(1).map($name)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }
    };
}

counter!(
    /// Height of a committed block; genesis is height 0.
    Height
);
counter!(
    /// Consensus round; every round has one leader.
    Round
);
counter!(
    /// Validator-set epoch.
    Epoch
);

/// An amount of the ledger's native unit. Arithmetic is checked: a ledger must
/// refuse an operation that would overflow, never wrap.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Amount(pub u64);

impl Amount {
    pub const ZERO: Amount = Amount(0);

    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }

    pub fn checked_mul(self, factor: u64) -> Option<Amount> {
        self.0.checked_mul(factor).map(Amount)
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Amount({})", self.0)
    }
}

/// Position of a validator in its [`crate::ValidatorSet`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ValidatorIndex(pub u16);

impl ValidatorIndex {
    pub fn as_usize(self) -> usize {
        usize::from(self.0)
    }
}

impl fmt::Display for ValidatorIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for ValidatorIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "V{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_step_without_panicking() {
        assert_eq!(Round(1).next(), Round(2));
        assert_eq!(Round(u64::MAX).next(), Round(u64::MAX));
        assert_eq!(Height(0).prev(), None);
        assert_eq!(Height(5).prev(), Some(Height(4)));
    }

    #[test]
    fn amounts_refuse_overflow() {
        assert_eq!(Amount(u64::MAX).checked_add(Amount(1)), None);
        assert_eq!(Amount(1).checked_sub(Amount(2)), None);
        assert_eq!(Amount(3).checked_add(Amount(4)), Some(Amount(7)));
    }
}
