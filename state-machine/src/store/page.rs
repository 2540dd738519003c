//! How the binary tree is cut into pages on disk, and the byte layout of
//! every stored record.
//!
//! A page holds the binary subtree under one node at a depth that is a
//! multiple of [`PAGE_LEVELS`], down to [`PAGE_LEVELS`] levels below it. Its
//! slots are numbered like a binary heap (slot 0 is the page's root, the
//! children of slot `i` are `2i + 1` for bit 0 and `2i + 2` for bit 1), so
//! `i + 1` written in binary is a 1 followed by the bits of the path from the
//! page's root to the slot. A slot at the page's bottom level that holds two
//! or more leaves refers to the page below it ([`Slot::Child`]). A page
//! exists only for a subtree with two or more leaves; a subtree with one
//! leaf is that leaf (the collapse of `DESIGN.md`), wherever it sits.
//!
//! Grouping four levels per page cuts the RocksDB entries a write touches
//! from one per binary level (about 20 at a million keys) to about five, most
//! of them shared by the other writes of the block; the stored internal
//! hashes let a page be read back without rehashing it.

use super::StoreError;
use super::proof::{self, EMPTY_HASH, HASH_BYTES};

/// Binary levels grouped in one page.
pub(crate) const PAGE_LEVELS: usize = 4;
/// Slots of a page: a complete binary tree of `PAGE_LEVELS + 1` levels.
pub(crate) const PAGE_SLOTS: usize = (1 << (PAGE_LEVELS + 1)) - 1;

const _: () = assert!(256 % PAGE_LEVELS == 0);
const _: () = assert!(PAGE_LEVELS >= 1);
// The parallel root update reads a page's path from the first byte.
const _: () = assert!(PAGE_LEVELS <= 8);

pub(crate) type Hash32 = [u8; HASH_BYTES];

/// The leaf of one key: which key, which value, and the version whose
/// `values` entry holds the value bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LeafEntry {
    pub key_hash: Hash32,
    pub value_hash: Hash32,
    pub value_version: u64,
}

impl LeafEntry {
    pub fn hash(&self) -> Hash32 {
        proof::leaf_hash(&self.key_hash, &self.value_hash)
    }
}

/// What one slot of a page holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    /// Not part of the tree: an ancestor slot is a leaf, empty, or a child page.
    Absent,
    /// An empty subtree.
    Empty,
    /// A subtree with exactly one leaf.
    Leaf(LeafEntry),
    /// A subtree with two or more leaves, above the page's bottom level; the
    /// hash is `SHA-256(0x01 || left || right)` of slots `2i + 1`, `2i + 2`.
    Internal(Hash32),
    /// A subtree with two or more leaves at the page's bottom level, stored as
    /// the page written at `version`.
    Child { hash: Hash32, version: u64 },
}

impl Slot {
    /// The subtree hash of a present slot.
    pub fn hash(&self) -> Hash32 {
        match self {
            Slot::Absent => {
                // Only present slots are ever hashed: an absent slot hashed
                // means the page structure is broken, a bug of ours.
                panic!("hash of an absent slot");
            }
            Slot::Empty => EMPTY_HASH,
            Slot::Leaf(leaf) => leaf.hash(),
            Slot::Internal(hash) => *hash,
            Slot::Child { hash, .. } => *hash,
        }
    }
}

/// Relative depth of slot `index` inside its page.
pub(crate) fn slot_depth(index: usize) -> usize {
    (usize::BITS - 1 - (index + 1).leading_zeros()) as usize
}

/// Where a stored page lives: the version that wrote it and the path to its
/// root (`depth` bits of `prefix`, the rest zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct NodeKey {
    pub version: u64,
    pub depth: u16,
    pub prefix: Hash32,
}

impl NodeKey {
    /// The key of the page at `depth` on the path of `key_hash`, written at `version`.
    pub fn on_path(version: u64, depth: usize, key_hash: &Hash32) -> NodeKey {
        assert!(depth < 256);
        assert!(depth.is_multiple_of(PAGE_LEVELS));
        NodeKey {
            version,
            depth: depth as u16,
            prefix: truncate(key_hash, depth),
        }
    }

    /// `version (8, big-endian) || depth (1) || the prefix's ceil(depth / 8) bytes`.
    pub fn encode(&self) -> Vec<u8> {
        let prefix_len = usize::from(self.depth).div_ceil(8);
        let mut out = Vec::with_capacity(9 + prefix_len);
        out.extend_from_slice(&self.version.to_be_bytes());
        out.push(self.depth as u8);
        out.extend_from_slice(&self.prefix[..prefix_len]);
        out
    }
}

/// `key_hash` with every bit from `depth` on cleared.
pub(crate) fn truncate(key_hash: &Hash32, depth: usize) -> Hash32 {
    let mut out = [0; HASH_BYTES];
    let whole = depth / 8;
    out[..whole].copy_from_slice(&key_hash[..whole]);
    if !depth.is_multiple_of(8) {
        out[whole] = key_hash[whole] & (0xffu8 << (8 - depth % 8));
    }
    out
}

/// Key of a value in the `values` column: `version (8, big-endian) || key_hash`.
pub(crate) fn value_key(version: u64, key_hash: &Hash32) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + HASH_BYTES);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(key_hash);
    out
}

pub(crate) fn read_array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(bytes);
    out
}

const TAG_EMPTY: u8 = 0;
const TAG_LEAF: u8 = 1;
const TAG_INTERNAL: u8 = 2;
const TAG_CHILD: u8 = 3;

/// A decoded page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Page {
    pub slots: [Slot; PAGE_SLOTS],
}

impl Page {
    /// A page whose root slot holds `root` (empty or a leaf, before an update
    /// splits it).
    pub fn with_root(root: Slot) -> Page {
        let mut slots = [Slot::Absent; PAGE_SLOTS];
        slots[0] = root;
        Page { slots }
    }

    pub fn root_hash(&self) -> Hash32 {
        self.slots[0].hash()
    }

    /// Pre-order encoding: per present slot a tag, then for a leaf
    /// `key_hash || value_hash || value_version`, for an internal slot its
    /// hash (then its two children), for a child page its hash and version.
    pub fn encode(&self) -> Vec<u8> {
        // Upper bound: 15 internal slots (33 bytes) and 16 leaves (73 bytes).
        let mut out = Vec::with_capacity(2048);
        self.encode_slot(0, &mut out);
        out
    }

    fn encode_slot(&self, index: usize, out: &mut Vec<u8>) {
        match &self.slots[index] {
            Slot::Absent => panic!("encoding an absent slot {index}"),
            Slot::Empty => out.push(TAG_EMPTY),
            Slot::Leaf(leaf) => {
                out.push(TAG_LEAF);
                out.extend_from_slice(&leaf.key_hash);
                out.extend_from_slice(&leaf.value_hash);
                out.extend_from_slice(&leaf.value_version.to_be_bytes());
            }
            Slot::Internal(hash) => {
                out.push(TAG_INTERNAL);
                out.extend_from_slice(hash);
                self.encode_slot(2 * index + 1, out);
                self.encode_slot(2 * index + 2, out);
            }
            Slot::Child { hash, version } => {
                out.push(TAG_CHILD);
                out.extend_from_slice(hash);
                out.extend_from_slice(&version.to_be_bytes());
            }
        }
    }

    /// Decodes the page stored under `key`, checking its structure: tags in
    /// their allowed levels, every leaf on the page's path, no internal slot
    /// with fewer than two leaves below it, nothing left over. Stored hashes
    /// are taken as they are; [`Page::verify_hashes`] recomputes them.
    pub fn decode(key: &NodeKey, bytes: &[u8]) -> Result<Page, StoreError> {
        let mut page = Page::with_root(Slot::Absent);
        let mut offset = 0;
        page.decode_slot(key, bytes, &mut offset, 0)?;
        if offset != bytes.len() {
            return Err(StoreError::corrupt(
                "page",
                format!("{key:?}: {} trailing bytes", bytes.len() - offset),
            ));
        }
        if !matches!(page.slots[0], Slot::Internal(_)) {
            return Err(StoreError::corrupt(
                "page",
                format!("{key:?}: root is not internal"),
            ));
        }
        Ok(page)
    }

    fn decode_slot(
        &mut self,
        key: &NodeKey,
        bytes: &[u8],
        offset: &mut usize,
        index: usize,
    ) -> Result<(), StoreError> {
        let corrupt = |detail: String| StoreError::corrupt("page", format!("{key:?}: {detail}"));
        let mut take =
            |n: usize| take_bytes(bytes, offset, n).ok_or_else(|| corrupt("truncated".into()));
        let depth = slot_depth(index);
        let tag = take(1)?[0];
        let slot = match tag {
            TAG_EMPTY => Slot::Empty,
            TAG_LEAF => {
                let key_hash: Hash32 = read_array(take(HASH_BYTES)?);
                let value_hash: Hash32 = read_array(take(HASH_BYTES)?);
                let value_version = u64::from_be_bytes(read_array(take(8)?));
                let absolute = usize::from(key.depth) + depth;
                if !proof::shares_prefix(&key_hash, &key.prefix, usize::from(key.depth))
                    || !slot_on_path(index, &key_hash, usize::from(key.depth))
                {
                    return Err(corrupt(format!("leaf off its path at depth {absolute}")));
                }
                Slot::Leaf(LeafEntry {
                    key_hash,
                    value_hash,
                    value_version,
                })
            }
            TAG_INTERNAL if depth < PAGE_LEVELS => Slot::Internal(read_array(take(HASH_BYTES)?)),
            TAG_CHILD if depth == PAGE_LEVELS && usize::from(key.depth) + PAGE_LEVELS < 256 => {
                let hash = read_array(take(HASH_BYTES)?);
                let version = u64::from_be_bytes(read_array(take(8)?));
                Slot::Child { hash, version }
            }
            tag => return Err(corrupt(format!("tag {tag} in slot {index}"))),
        };
        self.slots[index] = slot;
        if let Slot::Internal(_) = slot {
            self.decode_slot(key, bytes, offset, 2 * index + 1)?;
            self.decode_slot(key, bytes, offset, 2 * index + 2)?;
            let left = self.slots[2 * index + 1];
            let right = self.slots[2 * index + 2];
            if !holds_two_leaves(&left, &right) {
                return Err(corrupt(format!("slot {index} holds fewer than two leaves")));
            }
        }
        Ok(())
    }

    /// Recomputes every internal hash from the slots below it and compares
    /// with the stored one; returns the page's root hash.
    pub fn verify_hashes(&self, key: &NodeKey) -> Result<Hash32, StoreError> {
        self.verify_slot(key, 0)
    }

    fn verify_slot(&self, key: &NodeKey, index: usize) -> Result<Hash32, StoreError> {
        match self.slots[index] {
            Slot::Internal(stored) => {
                let left = self.verify_slot(key, 2 * index + 1)?;
                let right = self.verify_slot(key, 2 * index + 2)?;
                let computed = proof::internal_hash(&left, &right);
                if computed != stored {
                    return Err(StoreError::corrupt(
                        "page",
                        format!("{key:?}: slot {index} hash does not match its children"),
                    ));
                }
                Ok(computed)
            }
            slot => Ok(slot.hash()),
        }
    }
}

fn take_bytes<'a>(bytes: &'a [u8], offset: &mut usize, n: usize) -> Option<&'a [u8]> {
    let end = offset.checked_add(n).filter(|end| *end <= bytes.len())?;
    let out = &bytes[*offset..end];
    *offset = end;
    Some(out)
}

/// Whether an internal slot with these children is canonical: it must hold
/// two or more leaves, else it would have collapsed.
pub(crate) fn holds_two_leaves(left: &Slot, right: &Slot) -> bool {
    !matches!(
        (left, right),
        (Slot::Empty, Slot::Empty) | (Slot::Empty, Slot::Leaf(_)) | (Slot::Leaf(_), Slot::Empty)
    )
}

/// Whether slot `index` of a page rooted at `page_depth` lies on the path of
/// `key_hash`: the bits after the leading 1 of `index + 1` are the path.
fn slot_on_path(index: usize, key_hash: &Hash32, page_depth: usize) -> bool {
    let depth = slot_depth(index);
    let path = index + 1;
    (0..depth).all(|level| {
        let want = (path >> (depth - 1 - level)) & 1 == 1;
        proof::bit(key_hash, page_depth + level) == want
    })
}

/// Encodes the root of a version as it sits in `meta`: one slot (empty, a
/// leaf, or the page at depth 0).
pub(crate) fn encode_root(root: &Slot) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 2 * HASH_BYTES + 8);
    match root {
        Slot::Empty => out.push(TAG_EMPTY),
        Slot::Leaf(leaf) => {
            out.push(TAG_LEAF);
            out.extend_from_slice(&leaf.key_hash);
            out.extend_from_slice(&leaf.value_hash);
            out.extend_from_slice(&leaf.value_version.to_be_bytes());
        }
        Slot::Child { hash, version } => {
            out.push(TAG_CHILD);
            out.extend_from_slice(hash);
            out.extend_from_slice(&version.to_be_bytes());
        }
        Slot::Absent | Slot::Internal(_) => panic!("a root is empty, a leaf or a page"),
    }
    out
}

pub(crate) fn decode_root(bytes: &[u8]) -> Result<Slot, StoreError> {
    let bad = || StoreError::corrupt("root record", format!("{} bytes", bytes.len()));
    match bytes.first() {
        Some(&TAG_EMPTY) if bytes.len() == 1 => Ok(Slot::Empty),
        Some(&TAG_LEAF) if bytes.len() == 1 + 2 * HASH_BYTES + 8 => Ok(Slot::Leaf(LeafEntry {
            key_hash: read_array(&bytes[1..33]),
            value_hash: read_array(&bytes[33..65]),
            value_version: u64::from_be_bytes(read_array(&bytes[65..73])),
        })),
        Some(&TAG_CHILD) if bytes.len() == 1 + HASH_BYTES + 8 => Ok(Slot::Child {
            hash: read_array(&bytes[1..33]),
            version: u64::from_be_bytes(read_array(&bytes[33..41])),
        }),
        _ => Err(bad()),
    }
}
