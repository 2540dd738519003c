//! Errors: why one transaction failed ([`TxError`], which becomes a receipt
//! code), and why the ledger itself could not go on ([`LedgerError`]).

use commons_types::{Height, PublicKey, TypesError};

/// Why a transaction was rejected or failed. Each variant has a stable
/// numeric code ([`TxError::code`]) that receipts and the API carry, and a
/// message naming the values that explain it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    #[error("malformed transaction: {0}")]
    Malformed(String),
    #[error("wrong chain id: this chain is {expected:?}, the transaction is for {got:?}")]
    WrongChain { expected: String, got: String },
    #[error("signature {index} does not verify")]
    BadSignature { index: usize },
    #[error("nonce {got} is not the account's next nonce {expected} (replayed or out of order)")]
    BadNonce { expected: u64, got: u64 },
    #[error("fee {offered} is below the required {required}")]
    FeeTooLow { offered: u64, required: u64 },
    #[error("insufficient funds in {account}: need {needed}, have {available}")]
    InsufficientFunds {
        account: PublicKey,
        needed: u64,
        available: u64,
    },
    #[error("wrong signer: expected {expected} as signer {index}, got {got}")]
    WrongSigner {
        index: usize,
        expected: PublicKey,
        got: PublicKey,
    },
    #[error("the action needs {needed} signatures, the transaction has {got}")]
    SignerCount { needed: usize, got: usize },
    #[error("trade {trade_id} of marketplace {marketplace} is already settled")]
    DuplicateTrade {
        marketplace: PublicKey,
        trade_id: u64,
    },
    #[error("account {0} is excluded by the DAO")]
    Excluded(PublicKey),
    #[error("no lease {0}")]
    UnknownLease(u64),
    #[error("{who} is not the {role} of lease {lease}")]
    NotLeaseParty {
        lease: u64,
        who: PublicKey,
        role: &'static str,
    },
    #[error("claim of {amount} exceeds what lease {lease} allows so far ({allowed})")]
    ClaimExceedsRate {
        lease: u64,
        amount: u64,
        allowed: u64,
    },
    #[error("invalid action: {0}")]
    InvalidAction(String),
    #[error("account {0} already has the most unbondings in flight")]
    TooManyUnbondings(PublicKey),
    #[error("amount overflow in {0}")]
    Overflow(&'static str),
    #[error("governance: {0}")]
    Governance(String),
    #[error("invalid evidence: {0}")]
    InvalidEvidence(String),
    #[error("too many entries due at height {0}; choose another duration")]
    SlotFull(Height),
}

impl TxError {
    /// The receipt code. 0 means success; these never change meaning.
    pub fn code(&self) -> u32 {
        match self {
            TxError::Malformed(_) => 1,
            TxError::WrongChain { .. } => 2,
            TxError::BadSignature { .. } => 3,
            TxError::BadNonce { .. } => 4,
            TxError::FeeTooLow { .. } => 5,
            TxError::InsufficientFunds { .. } => 6,
            TxError::WrongSigner { .. } => 7,
            TxError::SignerCount { .. } => 8,
            TxError::DuplicateTrade { .. } => 9,
            TxError::Excluded(_) => 10,
            TxError::UnknownLease(_) => 11,
            TxError::NotLeaseParty { .. } => 12,
            TxError::ClaimExceedsRate { .. } => 13,
            TxError::InvalidAction(_) => 14,
            TxError::TooManyUnbondings(_) => 15,
            TxError::Overflow(_) => 16,
            TxError::Governance(_) => 17,
            TxError::InvalidEvidence(_) => 18,
            TxError::SlotFull(_) => 19,
        }
    }
}

impl From<TypesError> for TxError {
    fn from(e: TypesError) -> TxError {
        TxError::Malformed(e.to_string())
    }
}

/// Why the ledger could not execute at all: the store failed or holds data
/// that does not decode. These stop the node; they are never caused by a
/// transaction's content.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("state store: {0}")]
    Store(String),
    #[error("corrupt state at key {key}: {source}")]
    Corrupt {
        key: String,
        #[source]
        source: TypesError,
    },
    #[error("block at height {got} does not follow the last executed height {last}")]
    OutOfOrder { last: Height, got: Height },
    #[error("genesis: {0}")]
    Genesis(String),
    #[error("block has {got} transactions, more than the limit of {limit}")]
    BlockTooLarge { got: usize, limit: usize },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_nonzero() {
        let k = PublicKey([1; 32]);
        let all = [
            TxError::Malformed(String::new()),
            TxError::WrongChain {
                expected: String::new(),
                got: String::new(),
            },
            TxError::BadSignature { index: 0 },
            TxError::BadNonce {
                expected: 0,
                got: 0,
            },
            TxError::FeeTooLow {
                offered: 0,
                required: 0,
            },
            TxError::InsufficientFunds {
                account: k,
                needed: 0,
                available: 0,
            },
            TxError::WrongSigner {
                index: 0,
                expected: k,
                got: k,
            },
            TxError::SignerCount { needed: 0, got: 0 },
            TxError::DuplicateTrade {
                marketplace: k,
                trade_id: 0,
            },
            TxError::Excluded(k),
            TxError::UnknownLease(0),
            TxError::NotLeaseParty {
                lease: 0,
                who: k,
                role: "",
            },
            TxError::ClaimExceedsRate {
                lease: 0,
                amount: 0,
                allowed: 0,
            },
            TxError::InvalidAction(String::new()),
            TxError::TooManyUnbondings(k),
            TxError::Overflow(""),
            TxError::Governance(String::new()),
            TxError::InvalidEvidence(String::new()),
            TxError::SlotFull(Height(0)),
        ];
        let mut codes: Vec<u32> = all.iter().map(TxError::code).collect();
        assert!(codes.iter().all(|c| *c != 0));
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
    }
}
