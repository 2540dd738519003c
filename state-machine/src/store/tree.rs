//! The tree of one version, in memory: an immutable binary sparse Merkle
//! tree whose versions share every subtree they have in common.
//!
//! Applying a version copies only the paths of its writes (O(writes × log n)
//! new nodes and hashes); every other subtree is the previous version's,
//! shared through `Arc`. Dropping a version frees exactly the nodes no other
//! version holds, so pruning the tree costs no I/O.
//!
//! Every tree built here is canonical (`DESIGN.md` "State"): an internal
//! node holds two or more leaves, a subtree with one leaf is that leaf, an
//! empty subtree is empty. Structure is checked where it could go wrong:
//! [`Tree::build`] refuses unsorted or repeated leaves, [`Tree::check`]
//! recomputes every hash.

use std::sync::Arc;

use super::proof::{self, EMPTY_HASH, HASH_BYTES};

pub(crate) type Hash32 = [u8; HASH_BYTES];

/// Fewest writes under a node for which its two subtrees are updated (or
/// built) on two rayon tasks; below it, a task costs more than it saves.
pub(crate) const PARALLEL_OPS_MIN: usize = 512;

/// A leaf: which key, which value, and the version whose `values` entry
/// holds the value's bytes. Its hash is kept, not recomputed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Leaf {
    pub key_hash: Hash32,
    pub value_hash: Hash32,
    pub value_version: u64,
    pub hash: Hash32,
}

impl Leaf {
    pub fn new(key_hash: Hash32, value_hash: Hash32, value_version: u64) -> Leaf {
        Leaf {
            key_hash,
            value_hash,
            value_version,
            hash: proof::leaf_hash(&key_hash, &value_hash),
        }
    }
}

/// A subtree with two or more leaves.
#[derive(Debug)]
pub(crate) struct Internal {
    pub hash: Hash32,
    pub left: Tree,
    pub right: Tree,
}

/// A subtree: empty, one leaf, or an internal node.
#[derive(Clone, Debug, Default)]
pub(crate) enum Tree {
    #[default]
    Empty,
    Leaf(Arc<Leaf>),
    Internal(Arc<Internal>),
}

/// One write of a version: `None` deletes, `Some((value_hash,
/// value_version))` sets the key's leaf.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Op {
    pub key_hash: Hash32,
    pub leaf: Option<(Hash32, u64)>,
}

/// What [`Tree::check`] walked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TreeCount {
    pub leaves: u64,
    pub internal_nodes: u64,
}

impl Tree {
    pub fn hash(&self) -> Hash32 {
        match self {
            Tree::Empty => EMPTY_HASH,
            Tree::Leaf(leaf) => leaf.hash,
            Tree::Internal(node) => node.hash,
        }
    }

    fn same(&self, other: &Tree) -> bool {
        match (self, other) {
            (Tree::Empty, Tree::Empty) => true,
            (Tree::Leaf(a), Tree::Leaf(b)) => Arc::ptr_eq(a, b),
            (Tree::Internal(a), Tree::Internal(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// The subtree with `left` and `right` as children, collapsed if it holds
    /// fewer than two leaves.
    fn join(left: Tree, right: Tree) -> Tree {
        match (&left, &right) {
            (Tree::Empty, Tree::Empty) => Tree::Empty,
            (Tree::Leaf(_), Tree::Empty) => left,
            (Tree::Empty, Tree::Leaf(_)) => right,
            _ => Tree::Internal(Arc::new(Internal {
                hash: proof::internal_hash(&left.hash(), &right.hash()),
                left,
                right,
            })),
        }
    }

    /// The tree holding exactly `leaves`, which must be sorted by key hash
    /// and distinct (else `None`).
    pub fn build(leaves: &[Arc<Leaf>]) -> Option<Tree> {
        if leaves
            .windows(2)
            .any(|pair| pair[0].key_hash >= pair[1].key_hash)
        {
            return None;
        }
        Some(build_sorted(leaves, 0))
    }

    /// The tree with `ops` applied (`ops` sorted by key hash and distinct),
    /// sharing `self` wherever nothing changed; and for each op, the leaf its
    /// key had before (`None` if absent), in the order of `ops`.
    pub fn update(&self, ops: &[Op]) -> (Tree, Vec<Option<Arc<Leaf>>>) {
        debug_assert!(
            ops.windows(2)
                .all(|pair| pair[0].key_hash < pair[1].key_hash)
        );
        let mut olds = Vec::with_capacity(ops.len());
        let tree = update(self, 0, ops, &mut olds);
        // Every op ends in exactly one subtree that is empty or one leaf,
        // and each such subtree records its ops once, in order.
        assert_eq!(olds.len(), ops.len());
        (tree, olds)
    }

    /// The leaf on the path of `key_hash`, if the path ends in one (it may be
    /// another key's leaf: check its key hash).
    pub fn leaf_on_path(&self, key_hash: &Hash32) -> Option<&Arc<Leaf>> {
        let mut current = self;
        let mut depth = 0;
        // Each step goes one level down, and a path has at most 256 levels.
        loop {
            match current {
                Tree::Empty => return None,
                Tree::Leaf(leaf) => return Some(leaf),
                Tree::Internal(node) => {
                    current = if proof::bit(key_hash, depth) {
                        &node.right
                    } else {
                        &node.left
                    };
                    depth += 1;
                }
            }
        }
    }

    /// The leaf of `key_hash` itself, if the key is present.
    pub fn get(&self, key_hash: &Hash32) -> Option<&Arc<Leaf>> {
        self.leaf_on_path(key_hash)
            .filter(|leaf| leaf.key_hash == *key_hash)
    }

    /// The leaf where the path of `key_hash` ends (if any) and the sibling
    /// hashes from depth 1 down, as a proof carries them.
    pub fn path(&self, key_hash: &Hash32) -> (Option<&Arc<Leaf>>, Vec<Hash32>) {
        let mut siblings = Vec::new();
        let mut current = self;
        let mut depth = 0;
        loop {
            match current {
                Tree::Empty => return (None, siblings),
                Tree::Leaf(leaf) => return (Some(leaf), siblings),
                Tree::Internal(node) => {
                    let (next, sibling) = if proof::bit(key_hash, depth) {
                        (&node.right, &node.left)
                    } else {
                        (&node.left, &node.right)
                    };
                    siblings.push(sibling.hash());
                    current = next;
                    depth += 1;
                }
            }
        }
    }

    /// Every leaf, in key-hash order.
    pub fn leaves(&self, out: &mut Vec<Arc<Leaf>>) {
        match self {
            Tree::Empty => {}
            Tree::Leaf(leaf) => out.push(Arc::clone(leaf)),
            Tree::Internal(node) => {
                node.left.leaves(out);
                node.right.leaves(out);
            }
        }
    }

    /// Recomputes every hash and checks the structure (canonical shape,
    /// every leaf on its path); returns what it counted or what is wrong.
    pub fn check(&self) -> Result<TreeCount, String> {
        let mut count = TreeCount::default();
        check(self, 0, &[0; HASH_BYTES], &mut count)?;
        Ok(count)
    }
}

fn build_sorted(leaves: &[Arc<Leaf>], depth: usize) -> Tree {
    match leaves {
        [] => Tree::Empty,
        [leaf] => Tree::Leaf(Arc::clone(leaf)),
        _ => {
            // Distinct key hashes differ within 256 bits.
            assert!(depth < 256);
            let split = leaves.partition_point(|leaf| !proof::bit(&leaf.key_hash, depth));
            let (left, right) = leaves.split_at(split);
            let (left, right) = if leaves.len() >= PARALLEL_OPS_MIN {
                rayon::join(
                    || build_sorted(left, depth + 1),
                    || build_sorted(right, depth + 1),
                )
            } else {
                (
                    build_sorted(left, depth + 1),
                    build_sorted(right, depth + 1),
                )
            };
            Tree::join(left, right)
        }
    }
}

fn update(tree: &Tree, depth: usize, ops: &[Op], olds: &mut Vec<Option<Arc<Leaf>>>) -> Tree {
    if ops.is_empty() {
        return tree.clone();
    }
    match tree {
        Tree::Internal(node) => {
            let (left, right) = update_children(&node.left, &node.right, depth, ops, olds);
            if left.same(&node.left) && right.same(&node.right) {
                return tree.clone();
            }
            Tree::join(left, right)
        }
        Tree::Empty | Tree::Leaf(_) => update_small(tree, depth, ops, olds),
    }
}

/// Updates the two children of a node at `depth` with the ops on each side.
fn update_children(
    left: &Tree,
    right: &Tree,
    depth: usize,
    ops: &[Op],
    olds: &mut Vec<Option<Arc<Leaf>>>,
) -> (Tree, Tree) {
    // Two distinct key hashes differ within 256 bits, so a node with
    // something below it to update is never deeper than 255.
    assert!(depth < 256);
    let split = ops.partition_point(|op| !proof::bit(&op.key_hash, depth));
    let (left_ops, right_ops) = ops.split_at(split);
    if ops.len() >= PARALLEL_OPS_MIN && !left_ops.is_empty() && !right_ops.is_empty() {
        let mut right_olds = Vec::with_capacity(right_ops.len());
        let (left, right) = rayon::join(
            || update(left, depth + 1, left_ops, olds),
            || update(right, depth + 1, right_ops, &mut right_olds),
        );
        olds.append(&mut right_olds);
        (left, right)
    } else {
        let left = update(left, depth + 1, left_ops, olds);
        let right = update(right, depth + 1, right_ops, olds);
        (left, right)
    }
}

/// Applies `ops` to a subtree that is empty or one leaf.
fn update_small(tree: &Tree, depth: usize, ops: &[Op], olds: &mut Vec<Option<Arc<Leaf>>>) -> Tree {
    let existing = match tree {
        Tree::Leaf(leaf) => Some(leaf),
        _ => None,
    };
    let matched = existing.and_then(|leaf| {
        ops.binary_search_by(|op| op.key_hash.cmp(&leaf.key_hash))
            .ok()
    });
    let inserts = ops.iter().filter(|op| op.leaf.is_some()).count();
    let untouched = usize::from(existing.is_some() && matched.is_none());
    if inserts + untouched >= 2 {
        // Two or more leaves: an internal node, the existing leaf (if it
        // survives untouched or is rewritten) one level down on its side.
        // Its ops are recorded where they end, below.
        let (mut left, mut right) = (Tree::Empty, Tree::Empty);
        if let Some(leaf) = existing {
            if proof::bit(&leaf.key_hash, depth) {
                right = tree.clone();
            } else {
                left = tree.clone();
            }
        }
        let (left, right) = update_children(&left, &right, depth, ops, olds);
        return Tree::join(left, right);
    }
    olds.extend(ops.iter().enumerate().map(|(at, _)| {
        if Some(at) == matched {
            existing.map(Arc::clone)
        } else {
            None
        }
    }));
    if untouched == 1 {
        // Every op deletes an absent key.
        return tree.clone();
    }
    match ops
        .iter()
        .find_map(|op| op.leaf.map(|leaf| (op.key_hash, leaf)))
    {
        None => Tree::Empty,
        Some((key_hash, (value_hash, value_version))) => match existing {
            // A rewrite of the same value keeps the leaf (and its version).
            Some(leaf) if leaf.key_hash == key_hash && leaf.value_hash == value_hash => {
                tree.clone()
            }
            _ => Tree::Leaf(Arc::new(Leaf::new(key_hash, value_hash, value_version))),
        },
    }
}

fn check(tree: &Tree, depth: usize, prefix: &Hash32, count: &mut TreeCount) -> Result<(), String> {
    match tree {
        Tree::Empty => Ok(()),
        Tree::Leaf(leaf) => {
            if !proof::shares_prefix(&leaf.key_hash, prefix, depth) {
                return Err(format!("leaf off its path at depth {depth}"));
            }
            if proof::leaf_hash(&leaf.key_hash, &leaf.value_hash) != leaf.hash {
                return Err(format!("leaf hash wrong at depth {depth}"));
            }
            count.leaves += 1;
            Ok(())
        }
        Tree::Internal(node) => {
            if depth >= 256 {
                return Err("internal node below depth 255".to_owned());
            }
            let two_or_more = !matches!(
                (&node.left, &node.right),
                (Tree::Empty, Tree::Empty)
                    | (Tree::Leaf(_), Tree::Empty)
                    | (Tree::Empty, Tree::Leaf(_))
            );
            if !two_or_more {
                return Err(format!(
                    "internal node with fewer than two leaves at depth {depth}"
                ));
            }
            if proof::internal_hash(&node.left.hash(), &node.right.hash()) != node.hash {
                return Err(format!("internal hash wrong at depth {depth}"));
            }
            count.internal_nodes += 1;
            let mut right_prefix = *prefix;
            right_prefix[depth / 8] |= 0x80 >> (depth % 8);
            check(&node.left, depth + 1, prefix, count)?;
            check(&node.right, depth + 1, &right_prefix, count)
        }
    }
}
