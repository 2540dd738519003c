//! The pending block tree above the last committed block, and the window of
//! recently committed blocks kept for sync and reputation.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use commons_types::{Hash, Height, Round};

use crate::limits;
use crate::message::{Block, QuorumCert, RootBlock};

/// What a child needs to know of its parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ParentInfo {
    pub id: Hash,
    pub height: Height,
    pub round: Round,
    pub timestamp_ms: u64,
    pub state_root: Hash,
}

/// One committed block, with the proof of its commit when it was the target
/// of one: the QC that commits it, and the blocks between it and that QC's
/// block when the commit went past the epoch's end (almost always none).
#[derive(Clone, Debug)]
pub(crate) struct CommittedEntry {
    pub block: Block,
    pub proof: Option<(Vec<Block>, QuorumCert)>,
}

#[derive(Debug)]
pub(crate) struct BlockTree {
    root: RootBlock,
    root_round: Round,
    blocks: BTreeMap<Hash, Block>,
    committed: VecDeque<CommittedEntry>,
}

impl BlockTree {
    pub(crate) fn new(root: RootBlock, root_round: Round) -> BlockTree {
        BlockTree {
            root,
            root_round,
            blocks: BTreeMap::new(),
            committed: VecDeque::new(),
        }
    }

    pub(crate) fn root(&self) -> &RootBlock {
        &self.root
    }

    pub(crate) fn len(&self) -> usize {
        self.blocks.len()
    }

    pub(crate) fn get(&self, id: &Hash) -> Option<&Block> {
        self.blocks.get(id)
    }

    pub(crate) fn contains(&self, id: &Hash) -> bool {
        self.blocks.contains_key(id)
    }

    /// The parent of a new block: a pending block or the root.
    pub(crate) fn parent_info(&self, id: &Hash) -> Option<ParentInfo> {
        if *id == self.root.id {
            return Some(ParentInfo {
                id: *id,
                height: self.root.height,
                round: self.root_round,
                timestamp_ms: self.root.timestamp_ms,
                state_root: self.root.state_root,
            });
        }
        self.blocks.get(id).map(|b| ParentInfo {
            id: *id,
            height: b.height(),
            round: b.round(),
            timestamp_ms: b.timestamp_ms(),
            state_root: b.state_root(),
        })
    }

    /// Inserts a block whose parent is known; returns false if it was
    /// already there.
    pub(crate) fn insert(&mut self, block: Block) -> bool {
        assert!(
            self.parent_info(&block.parent_id()).is_some(),
            "a block enters the tree only after its parent"
        );
        assert!(block.height() > self.root.height);
        assert!(self.blocks.len() < limits::MAX_PENDING_BLOCKS);
        self.blocks.insert(block.id(), block).is_none()
    }

    /// The chain from the root (exclusive) to `id` (inclusive), oldest
    /// first; `Err(missing)` names the first block not present, or
    /// `Err(None)` when the chain reaches the root's height elsewhere than
    /// the root (it conflicts with the committed chain).
    pub(crate) fn chain_to(&self, id: &Hash) -> Result<Vec<Block>, Option<Hash>> {
        let mut out = Vec::new();
        let mut cursor = *id;
        // Bounded: each step lowers the height, and the tree is bounded.
        for _ in 0..=limits::MAX_PENDING_BLOCKS {
            if cursor == self.root.id {
                out.reverse();
                return Ok(out);
            }
            let Some(block) = self.blocks.get(&cursor) else {
                return Err(Some(cursor));
            };
            if block.height() <= self.root.height {
                return Err(None);
            }
            cursor = block.parent_id();
            out.push(block.clone());
        }
        Err(None)
    }

    /// Makes `block` (already delivered as committed) the new root: keeps it
    /// in the committed window and drops every pending block that does not
    /// descend from it.
    pub(crate) fn commit(&mut self, block: Block, proof: Option<(Vec<Block>, QuorumCert)>) {
        assert_eq!(block.parent_id(), self.root.id, "commits extend the root");
        assert_eq!(block.height(), self.root.height.next());
        self.root = RootBlock::of(&block);
        self.root_round = block.round();
        self.committed.push_back(CommittedEntry { block, proof });
        while self.committed.len() > limits::MAX_COMMITTED_WINDOW {
            self.committed.pop_front();
        }
        self.prune();
    }

    /// Starts a new epoch from `root`: every pending block is dropped (they
    /// belong to the old epoch); the committed window stays, to serve peers
    /// that are still catching up with the old epoch.
    pub(crate) fn restart_epoch(&mut self, root: RootBlock) {
        self.root = root;
        self.root_round = Round::ZERO;
        self.blocks.clear();
    }

    /// Attaches a commit proof to the newest committed entry.
    pub(crate) fn set_last_proof(&mut self, proof: (Vec<Block>, QuorumCert)) {
        if let Some(last) = self.committed.back_mut() {
            last.proof = Some(proof);
        }
    }

    /// Attaches `proof` to the newest committed entry if that is block `id`
    /// and it has none: a replica restarted from storage knows its commits
    /// but learns their proofs only as it reads their QCs back.
    pub(crate) fn add_missing_proof(&mut self, id: &Hash, proof: (Vec<Block>, QuorumCert)) {
        if let Some(last) = self.committed.back_mut()
            && last.block.id() == *id
            && last.proof.is_none()
        {
            last.proof = Some(proof);
        }
    }

    fn prune(&mut self) {
        let mut keep: BTreeSet<Hash> = BTreeSet::new();
        keep.insert(self.root.id);
        let mut by_height: Vec<&Block> = self.blocks.values().collect();
        by_height.sort_by_key(|b| (b.height(), b.id()));
        for b in by_height {
            if b.height() > self.root.height && keep.contains(&b.parent_id()) {
                keep.insert(b.id());
            }
        }
        self.blocks.retain(|id, _| keep.contains(id));
    }

    /// A block by id from the tree or the committed window.
    pub(crate) fn find(&self, id: &Hash) -> Option<&Block> {
        self.blocks.get(id).or_else(|| {
            self.committed
                .iter()
                .rev()
                .map(|e| &e.block)
                .find(|b| b.id() == *id)
        })
    }

    /// `id` and up to `count - 1` ancestors, newest first.
    pub(crate) fn ancestors(&self, id: &Hash, count: usize) -> Vec<Block> {
        let mut out = Vec::new();
        let mut cursor = *id;
        while out.len() < count.min(limits::MAX_SYNC_BLOCKS) {
            let Some(b) = self.find(&cursor) else { break };
            cursor = b.parent_id();
            out.push(b.clone());
        }
        out
    }

    /// Committed blocks of `epoch` from `from` on, ending at a block with a
    /// commit proof, plus that proof. At most `MAX_SYNC_BLOCKS` blocks.
    pub(crate) fn committed_range(
        &self,
        epoch: commons_types::Epoch,
        from: Height,
    ) -> Option<(Vec<Block>, QuorumCert)> {
        let start = self
            .committed
            .iter()
            .position(|e| e.block.epoch() == epoch && e.block.height() == from)?;
        let mut best = None;
        for (k, e) in self.committed.iter().enumerate().skip(start) {
            if e.block.epoch() != epoch {
                break;
            }
            let taken = k - start + 1;
            if let Some((suffix, _)) = &e.proof {
                if taken + suffix.len() > limits::MAX_SYNC_BLOCKS {
                    break;
                }
                best = Some(k);
            }
            if taken >= limits::MAX_SYNC_BLOCKS {
                break;
            }
        }
        let end = best?;
        let entry = self.committed.get(end)?;
        let (suffix, qc) = entry.proof.clone()?;
        let mut blocks: Vec<Block> = self
            .committed
            .iter()
            .skip(start)
            .take(end - start + 1)
            .map(|e| e.block.clone())
            .collect();
        blocks.extend(suffix);
        Some((blocks, qc))
    }
}
