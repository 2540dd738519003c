//! Cross-crate property tests (filled as the ledger and consensus land).
