//! Standalone verification of Commons state proofs.
//!
//! This module depends on nothing but SHA-256 (the `sha2` crate) and the
//! standard library, so the client crate and outside parties can use it as is
//! or copy it. It implements the normative format of `DESIGN.md` ("State"):
//!
//! - `key_hash = SHA-256(key)`, bits read from the most significant bit of
//!   byte 0; `value_hash = SHA-256(value)`.
//! - An empty subtree hashes to 32 zero bytes.
//! - A subtree holding exactly one leaf hashes to
//!   `SHA-256(0x00 || key_hash || value_hash)`.
//! - Any other subtree hashes to `SHA-256(0x01 || left || right)`.
//! - A proof for `key` is `(leaf, siblings)`: `leaf` is absent or some
//!   `(key_hash', value_hash')`; `siblings` run from depth 1 (just under the
//!   root) down to the depth where the path ends. To verify: start with the
//!   leaf's hash (or 32 zero bytes), fold the siblings from the deepest up,
//!   putting the running hash on the left where that depth's bit of
//!   `key_hash` is 0; compare with the root.
//! - Membership: `key_hash' == key_hash` and `value_hash'` matches the value.
//!   Non-membership: no leaf, or a leaf whose `key_hash'` differs but shares
//!   the first `siblings.len()` bits with `key_hash`.
//!
//! # Wire encoding ([`Proof::to_bytes`], [`Proof::from_bytes`])
//!
//! ```text
//! flags            1 byte   0 = no leaf, 1 = leaf follows
//! leaf             64 bytes key_hash' || value_hash'   (only if flags == 1)
//! sibling_count    2 bytes  big-endian, at most 256
//! present_bitmap   ceil(sibling_count / 8) bytes; bit i (MSB of byte 0 first)
//!                  is 1 when sibling i is not the empty hash; unused bits are 0
//! siblings         32 bytes for each bit set in present_bitmap, in order
//! ```
//!
//! Empty siblings are common deep in a sparse tree (two keys sharing a long
//! prefix), so they cost one bit instead of 32 bytes. The encoding is
//! canonical: decoding rejects a set bit whose sibling is all zeros, non-zero
//! padding bits, unknown flags and trailing bytes, so one proof has exactly
//! one encoding. Decoding never allocates more than the input justifies.

use std::fmt;

use sha2::{Digest, Sha256};

/// Length of every hash in the tree.
pub const HASH_BYTES: usize = 32;

/// The hash of an empty subtree.
pub const EMPTY_HASH: [u8; HASH_BYTES] = [0; HASH_BYTES];

/// Most siblings a proof can have: one per bit of a 256-bit key hash. Two
/// distinct key hashes differ within 256 bits, so no path is longer.
pub const MAX_PROOF_SIBLINGS: usize = 256;

/// Largest encoded proof: flags, leaf, count, full bitmap, 256 siblings.
pub const MAX_PROOF_BYTES: usize =
    1 + 2 * HASH_BYTES + 2 + MAX_PROOF_SIBLINGS / 8 + MAX_PROOF_SIBLINGS * HASH_BYTES;

const TAG_LEAF: u8 = 0x00;
const TAG_INTERNAL: u8 = 0x01;

/// `SHA-256(key)`: where a key lives in the tree.
pub fn key_hash(key: &[u8]) -> [u8; HASH_BYTES] {
    Sha256::digest(key).into()
}

/// `SHA-256(value)`.
pub fn value_hash(value: &[u8]) -> [u8; HASH_BYTES] {
    Sha256::digest(value).into()
}

/// Hash of a subtree holding exactly one leaf.
pub fn leaf_hash(key_hash: &[u8; HASH_BYTES], value_hash: &[u8; HASH_BYTES]) -> [u8; HASH_BYTES] {
    let mut hasher = Sha256::new();
    hasher.update([TAG_LEAF]);
    hasher.update(key_hash);
    hasher.update(value_hash);
    hasher.finalize().into()
}

/// Hash of a subtree holding two or more leaves.
pub fn internal_hash(left: &[u8; HASH_BYTES], right: &[u8; HASH_BYTES]) -> [u8; HASH_BYTES] {
    let mut hasher = Sha256::new();
    hasher.update([TAG_INTERNAL]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// Bit `depth` of a key hash (0 = most significant bit of byte 0); `true`
/// means the right child. `depth` must be below 256; callers bound it.
pub fn bit(key_hash: &[u8; HASH_BYTES], depth: usize) -> bool {
    (key_hash[depth / 8] >> (7 - depth % 8)) & 1 == 1
}

/// Whether `a` and `b` agree on their first `bits` bits (`bits <= 256`).
pub fn shares_prefix(a: &[u8; HASH_BYTES], b: &[u8; HASH_BYTES], bits: usize) -> bool {
    let whole = bits / 8;
    if a[..whole] != b[..whole] {
        return false;
    }
    let rest = bits % 8;
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    (a[whole] ^ b[whole]) & mask == 0
}

/// The leaf at the end of a proof's path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProofLeaf {
    pub key_hash: [u8; HASH_BYTES],
    pub value_hash: [u8; HASH_BYTES],
}

/// A proof of membership or non-membership of one key (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Proof {
    /// The leaf where the key's path ends, if the path ends at a leaf.
    pub leaf: Option<ProofLeaf>,
    /// Sibling hashes from depth 1 (just under the root) downwards.
    pub siblings: Vec<[u8; HASH_BYTES]>,
}

/// Why a proof does not show what the verifier asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProofError {
    /// More siblings than a 256-bit key hash has bits.
    TooManySiblings { count: usize },
    /// Asked for membership, but the proof ends at no leaf or at another key's leaf.
    KeyAbsent,
    /// The proof ends at the key's leaf, but with another value.
    ValueMismatch {
        expected: [u8; HASH_BYTES],
        found: [u8; HASH_BYTES],
    },
    /// Asked for non-membership, but the proof ends at the key's own leaf.
    KeyPresent,
    /// A non-membership leaf that does not share the path's prefix with the key.
    LeafOffPath { depth: usize },
    /// The folded hash is not the root.
    RootMismatch {
        expected: [u8; HASH_BYTES],
        computed: [u8; HASH_BYTES],
    },
}

impl fmt::Display for ProofError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProofError::TooManySiblings { count } => {
                write!(
                    f,
                    "proof has {count} siblings, at most {MAX_PROOF_SIBLINGS} allowed"
                )
            }
            ProofError::KeyAbsent => f.write_str("proof shows the key is absent"),
            ProofError::ValueMismatch { expected, found } => write!(
                f,
                "proof holds value hash {} for the key, expected {}",
                hex(found),
                hex(expected)
            ),
            ProofError::KeyPresent => f.write_str("proof shows the key is present"),
            ProofError::LeafOffPath { depth } => write!(
                f,
                "non-membership leaf does not share the key's first {depth} bits"
            ),
            ProofError::RootMismatch { expected, computed } => write!(
                f,
                "proof folds to root {}, expected {}",
                hex(computed),
                hex(expected)
            ),
        }
    }
}

impl std::error::Error for ProofError {}

/// Why bytes are not a canonical encoded proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProofDecodeError {
    /// The input ends before the field that needs `needed` bytes at `offset`.
    Truncated { offset: usize, needed: usize },
    /// The flags byte is neither 0 nor 1.
    BadFlags { flags: u8 },
    /// The sibling count is above [`MAX_PROOF_SIBLINGS`].
    TooManySiblings { count: usize },
    /// Padding bits after the last sibling's bit are set.
    NonZeroPadding,
    /// A sibling marked present is the empty hash (it must be encoded as absent).
    EmptySiblingMarkedPresent { index: usize },
    /// Bytes are left after the proof.
    TrailingBytes { count: usize },
}

impl fmt::Display for ProofDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProofDecodeError::Truncated { offset, needed } => {
                write!(
                    f,
                    "proof truncated: {needed} bytes needed at offset {offset}"
                )
            }
            ProofDecodeError::BadFlags { flags } => write!(f, "proof flags {flags:#04x} unknown"),
            ProofDecodeError::TooManySiblings { count } => {
                write!(
                    f,
                    "proof has {count} siblings, at most {MAX_PROOF_SIBLINGS} allowed"
                )
            }
            ProofDecodeError::NonZeroPadding => f.write_str("proof bitmap padding is not zero"),
            ProofDecodeError::EmptySiblingMarkedPresent { index } => {
                write!(f, "proof sibling {index} is empty but marked present")
            }
            ProofDecodeError::TrailingBytes { count } => {
                write!(f, "{count} bytes after the end of the proof")
            }
        }
    }
}

impl std::error::Error for ProofDecodeError {}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Proof {
    /// The root this proof implies for a key whose hash is `key_hash`,
    /// folding the siblings from the deepest up.
    pub fn implied_root(
        &self,
        key_hash: &[u8; HASH_BYTES],
    ) -> Result<[u8; HASH_BYTES], ProofError> {
        if self.siblings.len() > MAX_PROOF_SIBLINGS {
            return Err(ProofError::TooManySiblings {
                count: self.siblings.len(),
            });
        }
        let mut running = match &self.leaf {
            Some(leaf) => leaf_hash(&leaf.key_hash, &leaf.value_hash),
            None => EMPTY_HASH,
        };
        for (depth, sibling) in self.siblings.iter().enumerate().rev() {
            running = if bit(key_hash, depth) {
                internal_hash(sibling, &running)
            } else {
                internal_hash(&running, sibling)
            };
        }
        Ok(running)
    }

    /// Encodes the proof (format in the module doc).
    pub fn to_bytes(&self) -> Vec<u8> {
        let count = self.siblings.len().min(MAX_PROOF_SIBLINGS);
        let mut out = Vec::with_capacity(1 + 2 * HASH_BYTES + 2 + count.div_ceil(8) + count * 32);
        match &self.leaf {
            Some(leaf) => {
                out.push(1);
                out.extend_from_slice(&leaf.key_hash);
                out.extend_from_slice(&leaf.value_hash);
            }
            None => out.push(0),
        }
        // A proof built by anything but `from_bytes` or the store could hold
        // more than 256 siblings; encoding the first 256 keeps `to_bytes`
        // total, and such a proof never verifies anyway.
        out.extend_from_slice(&(count as u16).to_be_bytes());
        let bitmap_at = out.len();
        out.resize(bitmap_at + count.div_ceil(8), 0);
        for (index, sibling) in self.siblings.iter().take(count).enumerate() {
            if *sibling != EMPTY_HASH {
                out[bitmap_at + index / 8] |= 0x80 >> (index % 8);
                out.extend_from_slice(sibling);
            }
        }
        out
    }

    /// Decodes a proof, rejecting anything but the canonical encoding.
    pub fn from_bytes(bytes: &[u8]) -> Result<Proof, ProofDecodeError> {
        let mut reader = Reader { bytes, offset: 0 };
        let flags = reader.take(1)?[0];
        let leaf = match flags {
            0 => None,
            1 => Some(ProofLeaf {
                key_hash: reader.hash()?,
                value_hash: reader.hash()?,
            }),
            flags => return Err(ProofDecodeError::BadFlags { flags }),
        };
        let count_bytes = reader.take(2)?;
        let count = usize::from(u16::from_be_bytes([count_bytes[0], count_bytes[1]]));
        if count > MAX_PROOF_SIBLINGS {
            return Err(ProofDecodeError::TooManySiblings { count });
        }
        let bitmap = reader.take(count.div_ceil(8))?;
        if count % 8 != 0 {
            let padding_mask = 0xffu8 >> (count % 8);
            if bitmap[count / 8] & padding_mask != 0 {
                return Err(ProofDecodeError::NonZeroPadding);
            }
        }
        let mut siblings = Vec::with_capacity(count);
        for index in 0..count {
            if bitmap[index / 8] & (0x80 >> (index % 8)) != 0 {
                let sibling = reader.hash()?;
                if sibling == EMPTY_HASH {
                    return Err(ProofDecodeError::EmptySiblingMarkedPresent { index });
                }
                siblings.push(sibling);
            } else {
                siblings.push(EMPTY_HASH);
            }
        }
        let rest = bytes.len() - reader.offset;
        if rest != 0 {
            return Err(ProofDecodeError::TrailingBytes { count: rest });
        }
        Ok(Proof { leaf, siblings })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, needed: usize) -> Result<&'a [u8], ProofDecodeError> {
        let end = self
            .offset
            .checked_add(needed)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(ProofDecodeError::Truncated {
                offset: self.offset,
                needed,
            })?;
        let out = &self.bytes[self.offset..end];
        self.offset = end;
        Ok(out)
    }

    fn hash(&mut self) -> Result<[u8; HASH_BYTES], ProofDecodeError> {
        let mut out = [0; HASH_BYTES];
        out.copy_from_slice(self.take(HASH_BYTES)?);
        Ok(out)
    }
}

/// Checks that `proof` shows `key` bound to `value` (`Some`) or absent
/// (`None`) in the tree whose root is `root`.
pub fn verify_proof(
    root: &[u8; HASH_BYTES],
    key: &[u8],
    value: Option<&[u8]>,
    proof: &Proof,
) -> Result<(), ProofError> {
    let depth = proof.siblings.len();
    if depth > MAX_PROOF_SIBLINGS {
        return Err(ProofError::TooManySiblings { count: depth });
    }
    let key_hash = key_hash(key);
    match (value, &proof.leaf) {
        (Some(value), Some(leaf)) => {
            if leaf.key_hash != key_hash {
                return Err(ProofError::KeyAbsent);
            }
            let expected = value_hash(value);
            if leaf.value_hash != expected {
                return Err(ProofError::ValueMismatch {
                    expected,
                    found: leaf.value_hash,
                });
            }
        }
        (Some(_), None) => return Err(ProofError::KeyAbsent),
        (None, Some(leaf)) => {
            if leaf.key_hash == key_hash {
                return Err(ProofError::KeyPresent);
            }
            if !shares_prefix(&leaf.key_hash, &key_hash, depth) {
                return Err(ProofError::LeafOffPath { depth });
            }
        }
        (None, None) => {}
    }
    let computed = proof.implied_root(&key_hash)?;
    if computed != *root {
        return Err(ProofError::RootMismatch {
            expected: *root,
            computed,
        });
    }
    Ok(())
}
