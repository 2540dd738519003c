use crate::limits;

/// Errors of the shared types: malformed keys, signatures, encodings and sets.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum TypesError {
    #[error("{what} must be {expected} bytes, got {got}")]
    BadLength {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("invalid hex in {what}: {reason}")]
    BadHex { what: &'static str, reason: String },
    #[error("signature does not verify")]
    BadSignature,
    #[error("input of {got} bytes exceeds the limit of {limit} bytes for {what}")]
    TooLarge {
        what: &'static str,
        got: usize,
        limit: usize,
    },
    #[error("{what} has {got} entries, more than the limit of {limit}")]
    TooMany {
        what: &'static str,
        got: usize,
        limit: usize,
    },
    #[error("cannot decode {what}: {reason}")]
    Decode { what: &'static str, reason: String },
    #[error("chain id must be 1 to {max} bytes of [a-z0-9-], got {got:?}", max = limits::MAX_CHAIN_ID_BYTES)]
    BadChainId { got: String },
    #[error("validator set is empty")]
    EmptyValidatorSet,
    #[error("validator {0} appears twice in the set")]
    DuplicateValidator(String),
    #[error("validator {0} has zero voting power")]
    ZeroPower(String),
    #[error("total voting power exceeds {}", limits::MAX_TOTAL_POWER)]
    PowerOverflow,
}
