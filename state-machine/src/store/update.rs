//! The incremental update of one version: walks only the paths of the
//! written keys, page by page, and collects what the version's batch must
//! write (new pages, new values) and what it makes stale (replaced pages and
//! values, for the pruner).
//!
//! Every slot the walk leaves behind is canonical: an internal slot holds two
//! or more leaves, a subtree with one leaf is that leaf, an empty subtree is
//! empty. A write costs one hash per level on its path, and levels shared by
//! several writes of the block are hashed once: O(writes × log n).

use std::sync::Arc;

use super::page::{LeafEntry, NodeKey, PAGE_LEVELS, Page, Slot, holds_two_leaves, slot_depth};
use super::proof::{self, EMPTY_HASH};
use super::{MerkleStore, StoreError};

pub(crate) type Hash32 = [u8; 32];

/// One write of the version: `None` deletes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Op<'w> {
    pub key_hash: Hash32,
    pub value: Option<(&'w [u8], Hash32)>,
}

/// What applying a version produces.
#[derive(Debug)]
pub(crate) struct Update<'s, 'w> {
    store: &'s MerkleStore,
    version: u64,
    pub new_pages: Vec<(NodeKey, Arc<Page>)>,
    pub new_values: Vec<(Hash32, &'w [u8])>,
    pub stale_nodes: Vec<NodeKey>,
    pub stale_values: Vec<(u64, Hash32)>,
}

enum Small {
    /// At most one leaf survives: the slot's final content.
    Final(Slot),
    /// Two or more leaves: the slot must become internal.
    Split,
}

impl<'s, 'w> Update<'s, 'w> {
    pub fn new(store: &'s MerkleStore, version: u64) -> Update<'s, 'w> {
        Update {
            store,
            version,
            new_pages: Vec::new(),
            new_values: Vec::new(),
            stale_nodes: Vec::new(),
            stale_values: Vec::new(),
        }
    }

    /// Applies `ops` (sorted by key hash, distinct) to the tree whose root is
    /// `root`; returns the new root.
    pub fn run(&mut self, root: Slot, ops: &[Op<'w>]) -> Result<Slot, StoreError> {
        if ops.is_empty() {
            return Ok(root);
        }
        if let Slot::Child { hash, version } = root
            && ops.len() >= PARALLEL_OPS_MIN
        {
            let key = NodeKey::on_path(version, 0, &ops[0].key_hash);
            let page = self.store.load_page(&key, &hash)?;
            if is_full(&page) {
                return self.update_full_root(root, key, Page::clone(&page), ops);
            }
        }
        self.update_page(root, 0, ops)
    }

    /// The root page with all sixteen subtrees below it (any tree of more
    /// than a few hundred keys): updates the sixteen subtrees on rayon
    /// threads, then the page. Each subtree's result depends only on its own
    /// writes, and the results are merged in subtree order, the order the
    /// sequential walk would produce them in: the batch is the same bytes
    /// either way.
    fn update_full_root(
        &mut self,
        current: Slot,
        key: NodeKey,
        mut page: Page,
        ops: &[Op<'w>],
    ) -> Result<Slot, StoreError> {
        use rayon::prelude::*;

        let bottom = (1 << PAGE_LEVELS) - 1;
        let mut groups = Vec::with_capacity(1 << PAGE_LEVELS);
        let mut rest = ops;
        for child in 0..(1usize << PAGE_LEVELS) {
            // Ops are sorted, so the ones under child `child` (its bits are the
            // first PAGE_LEVELS bits of the key hash) form a run.
            let end = rest
                .partition_point(|op| usize::from(op.key_hash[0] >> (8 - PAGE_LEVELS)) == child);
            let (mine, others) = rest.split_at(end);
            rest = others;
            if !mine.is_empty() {
                groups.push((bottom + child, page.slots[bottom + child], mine));
            }
        }
        assert!(rest.is_empty());
        let store = self.store;
        let version = self.version;
        let results: Vec<Result<(usize, Slot, Update<'s, 'w>), StoreError>> = groups
            .into_par_iter()
            .map(|(index, slot, mine)| {
                let mut sub = Update::new(store, version);
                let slot = sub.update_page(slot, PAGE_LEVELS, mine)?;
                Ok((index, slot, sub))
            })
            .collect();
        for result in results {
            let (index, slot, sub) = result?;
            page.slots[index] = slot;
            self.new_pages.extend(sub.new_pages);
            self.new_values.extend(sub.new_values);
            self.stale_nodes.extend(sub.stale_nodes);
            self.stale_values.extend(sub.stale_values);
        }
        // Every slot above the bottom was internal; recompute them bottom-up,
        // collapsing where a subtree lost all but one leaf.
        for index in (0..bottom).rev() {
            normalize(&mut page, index);
        }
        self.finish_page(current, Some(key), page, 0, &ops[0].key_hash)
    }

    /// Updates the subtree at page depth `depth` whose content is `current`
    /// (empty, a leaf, or a child page); `ops` share the path's first `depth`
    /// bits. Returns the subtree's new content.
    fn update_page(
        &mut self,
        current: Slot,
        depth: usize,
        ops: &[Op<'w>],
    ) -> Result<Slot, StoreError> {
        assert!(!ops.is_empty());
        let (mut page, old_key) = match current {
            Slot::Child { hash, version } => {
                let key = NodeKey::on_path(version, depth, &ops[0].key_hash);
                let page = self.store.load_page(&key, &hash)?;
                (Page::clone(&page), Some(key))
            }
            Slot::Empty | Slot::Leaf(_) => (Page::with_root(current), None),
            Slot::Absent | Slot::Internal(_) => {
                panic!("page reference at depth {depth} is {current:?}")
            }
        };
        self.update_slot(&mut page, 0, depth, ops)?;
        self.finish_page(current, old_key, page, depth, &ops[0].key_hash)
    }

    /// Records the outcome of updating the page that `current` referred to
    /// (if any, under `old_key`): a new page, a collapse into a leaf or
    /// nothing, or no change at all.
    fn finish_page(
        &mut self,
        current: Slot,
        old_key: Option<NodeKey>,
        page: Page,
        depth: usize,
        path: &Hash32,
    ) -> Result<Slot, StoreError> {
        let root = page.slots[0];
        match root {
            Slot::Internal(hash) => {
                if let Slot::Child { hash: old_hash, .. } = current
                    && old_hash == hash
                {
                    // Deletes of absent keys, rewrites of equal values: the
                    // subtree is unchanged, keep the stored page.
                    return Ok(current);
                }
                self.stale_nodes.extend(old_key);
                let key = NodeKey::on_path(self.version, depth, path);
                self.new_pages.push((key, Arc::new(page)));
                Ok(Slot::Child {
                    hash,
                    version: self.version,
                })
            }
            Slot::Empty | Slot::Leaf(_) => {
                self.stale_nodes.extend(old_key);
                Ok(root)
            }
            Slot::Absent | Slot::Child { .. } => panic!("page root became {root:?}"),
        }
    }

    /// Updates slot `index` of `page`, at absolute depth `depth`.
    fn update_slot(
        &mut self,
        page: &mut Page,
        index: usize,
        depth: usize,
        ops: &[Op<'w>],
    ) -> Result<(), StoreError> {
        if slot_depth(index) == PAGE_LEVELS {
            page.slots[index] = self.update_page(page.slots[index], depth, ops)?;
            return Ok(());
        }
        let left = 2 * index + 1;
        let right = 2 * index + 2;
        match page.slots[index] {
            Slot::Internal(_) => {}
            Slot::Empty => match self.resolve_small(None, ops) {
                Small::Final(slot) => {
                    page.slots[index] = slot;
                    return Ok(());
                }
                Small::Split => {
                    page.slots[left] = Slot::Empty;
                    page.slots[right] = Slot::Empty;
                }
            },
            Slot::Leaf(leaf) => match self.resolve_small(Some(leaf), ops) {
                Small::Final(slot) => {
                    page.slots[index] = slot;
                    return Ok(());
                }
                Small::Split => {
                    // Push the leaf one level down; the recursion below
                    // applies its write, if the block has one.
                    page.slots[left] = Slot::Empty;
                    page.slots[right] = Slot::Empty;
                    let side = if proof::bit(&leaf.key_hash, depth) {
                        right
                    } else {
                        left
                    };
                    page.slots[side] = Slot::Leaf(leaf);
                }
            },
            slot @ (Slot::Absent | Slot::Child { .. }) => {
                panic!("slot {index} above the page bottom is {slot:?}")
            }
        }
        // Two distinct key hashes differ within 256 bits, so a slot with two
        // or more leaves is never deeper than 255.
        assert!(depth < 256);
        let split = ops.partition_point(|op| !proof::bit(&op.key_hash, depth));
        let (left_ops, right_ops) = ops.split_at(split);
        if !left_ops.is_empty() {
            self.update_slot(page, left, depth + 1, left_ops)?;
        }
        if !right_ops.is_empty() {
            self.update_slot(page, right, depth + 1, right_ops)?;
        }
        normalize(page, index);
        Ok(())
    }

    /// Applies `ops` to a subtree that is empty or one leaf, if at most one
    /// leaf survives; else says it must split.
    fn resolve_small(&mut self, existing: Option<LeafEntry>, ops: &[Op<'w>]) -> Small {
        let matched = existing.and_then(|leaf| {
            ops.binary_search_by(|op| op.key_hash.cmp(&leaf.key_hash))
                .ok()
        });
        let inserts = ops.iter().filter(|op| op.value.is_some()).count();
        let untouched = usize::from(existing.is_some() && matched.is_none());
        if inserts + untouched >= 2 {
            return Small::Split;
        }
        let mut result = Slot::Empty;
        if let Some(leaf) = existing {
            match matched.map(|at| ops[at].value) {
                None => result = Slot::Leaf(leaf),
                Some(Some((_, value_hash))) if value_hash == leaf.value_hash => {
                    result = Slot::Leaf(leaf)
                }
                Some(_) => self.stale_values.push((leaf.value_version, leaf.key_hash)),
            }
        }
        for op in ops {
            let Some((value, value_hash)) = op.value else {
                continue;
            };
            if matches!(result, Slot::Leaf(leaf) if leaf.key_hash == op.key_hash) {
                continue;
            }
            assert_eq!(result, Slot::Empty);
            result = Slot::Leaf(LeafEntry {
                key_hash: op.key_hash,
                value_hash,
                value_version: self.version,
            });
            self.new_values.push((op.key_hash, value));
        }
        Small::Final(result)
    }
}

/// Fewest writes for which a version updates the root page's subtrees in
/// parallel; below it, spawning tasks costs more than it saves.
const PARALLEL_OPS_MIN: usize = 256;

/// Whether every slot above the page's bottom is internal.
fn is_full(page: &Page) -> bool {
    page.slots[..(1 << PAGE_LEVELS) - 1]
        .iter()
        .all(|slot| matches!(slot, Slot::Internal(_)))
}

/// Recomputes internal slot `index` from its children, collapsing it into a
/// leaf or an empty subtree if fewer than two leaves are left below it.
fn normalize(page: &mut Page, index: usize) {
    let (left, right) = (2 * index + 1, 2 * index + 2);
    let (left_slot, right_slot) = (page.slots[left], page.slots[right]);
    if holds_two_leaves(&left_slot, &right_slot) {
        page.slots[index] =
            Slot::Internal(proof::internal_hash(&left_slot.hash(), &right_slot.hash()));
    } else {
        page.slots[index] = match (left_slot, right_slot) {
            (Slot::Leaf(leaf), _) | (_, Slot::Leaf(leaf)) => Slot::Leaf(leaf),
            _ => Slot::Empty,
        };
        page.slots[left] = Slot::Absent;
        page.slots[right] = Slot::Absent;
    }
}

/// The hash of a root slot (empty, leaf or page).
pub(crate) fn root_hash(root: &Slot) -> Hash32 {
    match root {
        Slot::Empty => EMPTY_HASH,
        slot => slot.hash(),
    }
}
