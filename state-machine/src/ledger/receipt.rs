//! Receipts: what each transaction of a committed block did, and the roots
//! that commit a block's transactions and receipts (merkle-cbt over SHA-256).

use commons_types::codec::{Reader, Writer};
use commons_types::{Hash, Height, TypesError};
use merkle_cbt::CBMT;
use merkle_cbt::merkle_tree::Merge;

use crate::ledger::limits;

/// The outcome of one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub tx_id: Hash,
    pub height: Height,
    /// 0 on success, else [`crate::TxError::code`].
    pub code: u32,
    /// Empty on success, else the error's message (truncated to
    /// [`limits::MAX_RECEIPT_MESSAGE_BYTES`]).
    pub message: String,
    /// The fee actually charged (0 when the transaction was invalid).
    pub fee: u64,
}

impl Receipt {
    pub fn success(&self) -> bool {
        self.code == 0
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(60 + self.message.len());
        w.hash(&self.tx_id).u64(self.height.0).u32(self.code);
        w.str(&self.message).u64(self.fee);
        w.finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<Receipt, TypesError> {
        let mut r = Reader::new(bytes, "receipt");
        let receipt = Receipt {
            tx_id: r.hash()?,
            height: Height(r.u64()?),
            code: r.u32()?,
            message: r.string(limits::MAX_RECEIPT_MESSAGE_BYTES)?,
            fee: r.u64()?,
        };
        r.finish()?;
        Ok(receipt)
    }

    pub fn hash(&self) -> Hash {
        Hash::digest(&self.encode())
    }
}

/// Cuts `message` to at most `max` bytes on a character boundary.
pub fn truncate_message(mut message: String, max: usize) -> String {
    if message.len() > max {
        let mut cut = max;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    message
}

struct Sha256Merge;

impl Merge for Sha256Merge {
    type Item = Hash;
    fn merge(left: &Hash, right: &Hash) -> Hash {
        Hash::digest_parts(&[&[0x01], &left.0, &right.0])
    }
}

/// The root of a complete binary Merkle tree (merkle-cbt) over `leaves`,
/// each leaf hashed as `SHA-256(0x00 || leaf)` so no leaf can pose as an
/// inner node. The empty list has the zero hash.
pub fn merkle_root(leaves: &[Hash]) -> Hash {
    let hashed: Vec<Hash> = leaves
        .iter()
        .map(|l| Hash::digest_parts(&[&[0x00], &l.0]))
        .collect();
    CBMT::<Hash, Sha256Merge>::build_merkle_root(&hashed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipt_round_trip_and_truncation() {
        let r = Receipt {
            tx_id: Hash([1; 32]),
            height: Height(4),
            code: 6,
            message: "insufficient".into(),
            fee: 10,
        };
        assert_eq!(Receipt::decode(&r.encode()).unwrap(), r);
        assert_eq!(truncate_message("ééé".into(), 3), "é");
        assert_eq!(truncate_message("abc".into(), 3), "abc");
    }

    #[test]
    fn merkle_root_known_answers() {
        assert_eq!(merkle_root(&[]), Hash::ZERO);
        let a = Hash([0xaa; 32]);
        let b = Hash([0xbb; 32]);
        let leaf = |h: &Hash| Hash::digest_parts(&[&[0x00], &h.0]);
        assert_eq!(merkle_root(&[a]), leaf(&a));
        assert_eq!(
            merkle_root(&[a, b]),
            Hash::digest_parts(&[&[0x01], &leaf(&a).0, &leaf(&b).0])
        );
        assert_ne!(merkle_root(&[a, b]), merkle_root(&[b, a]));
    }
}
