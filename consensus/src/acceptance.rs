//! Block acceptance: what a block must satisfy to enter the pending tree,
//! and the orphans that wait for a missing parent.
//!
//! Rules (Jolteon, Gelashvili et al., FC 2022, Fig. 3 "Proposing" and
//! "Voting rule"; DiemBFT v4 `process_proposal`):
//!
//! - **Shape** ([`check_block_shape`]): a block of round r extends the QC of
//!   round r-1, or carries TC(r-1) of its own epoch together with an older
//!   QC; never both, never a QC of another epoch or of a later round; its
//!   height is one above its QC's block; round 0 belongs to the epoch's
//!   root; the payload is bounded.
//! - **Against its parent** ([`check_against_parent`]): one height above
//!   it, a later timestamp, and no payload once the parent is at or above
//!   the epoch's last height (such blocks only carry the 2-chain that
//!   commits the epoch's end).
//! - **The pending tree** ([`crate::tree`]) holds at most
//!   [`limits::MAX_PENDING_BLOCKS`] blocks above the committed root; a block
//!   at or below the root is old.
//! - **Orphans**: a block whose parent is missing waits, at most
//!   [`limits::MAX_ORPHAN_BLOCKS`] of them (the oldest round goes first),
//!   while [`crate::sync`] fetches the parent; when the parent enters the
//!   tree its waiting children are replayed, a proposal as a proposal (its
//!   signature kept), a fetched block as a fetched block.

use std::collections::BTreeMap;

use commons_types::{ChainId, Epoch, Hash, Height, PublicKey, Round, Signature};
use tracing::debug;

use crate::message::{Block, Proposal, RootBlock, proposal_signing_bytes};
use crate::tree::{BlockTree, ParentInfo};
use crate::{Reject, limits};

/// A block waiting for its parent.
#[derive(Debug, Clone)]
pub(crate) struct Orphan {
    pub block: Block,
    pub from: PublicKey,
    /// The proposal signature when it came as a proposal (so it is replayed
    /// as one); `None` for a block that came from sync.
    pub signature: Option<Signature>,
}

/// Where an offered block went.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Placed {
    /// It was in the tree already.
    Known,
    /// Its parent is missing: it waits among the orphans; fetch the parent.
    Orphaned { parent: Hash, parent_height: Height },
    /// It entered the tree.
    Inserted,
}

/// The pending tree and the orphans.
#[derive(Debug)]
pub(crate) struct Acceptance {
    pub tree: BlockTree,
    orphans: BTreeMap<Hash, Orphan>,
}

impl Acceptance {
    pub(crate) fn new(tree: BlockTree) -> Acceptance {
        Acceptance {
            tree,
            orphans: BTreeMap::new(),
        }
    }

    /// Offers a block whose QC is verified. `round` is the current round
    /// (for the error), `epoch_end` the epoch's last height. A block that
    /// enters the tree is also pushed to `persist`.
    pub(crate) fn place(
        &mut self,
        block: Block,
        from: PublicKey,
        signature: Option<Signature>,
        round: Round,
        epoch_end: Height,
        persist: &mut Vec<Block>,
    ) -> Result<Placed, Reject> {
        let id = block.id();
        if self.tree.contains(&id) {
            return Ok(Placed::Known);
        }
        if block.height() <= self.tree.root().height {
            return Err(Reject::OldRound {
                what: "block",
                round: block.round(),
                current: round,
            });
        }
        let Some(parent) = self.tree.parent_info(&block.parent_id()) else {
            if self.orphans.len() >= limits::MAX_ORPHAN_BLOCKS {
                let oldest = self
                    .orphans
                    .iter()
                    .min_by_key(|(_, o)| (o.block.round(), o.block.id()))
                    .map(|(id, _)| *id);
                if let Some(oldest) = oldest {
                    self.orphans.remove(&oldest);
                }
            }
            let parent = block.parent_id();
            let parent_height = Height(block.height().0 - 1);
            debug!(
                height = block.height().0,
                round = block.round().0,
                "parent missing; fetching"
            );
            self.orphans.insert(
                id,
                Orphan {
                    block,
                    from,
                    signature,
                },
            );
            return Ok(Placed::Orphaned {
                parent,
                parent_height,
            });
        };
        check_against_parent(&block, &parent, epoch_end)?;
        if self.tree.len() >= limits::MAX_PENDING_BLOCKS {
            return Err(Reject::Full {
                what: "pending block tree",
                limit: limits::MAX_PENDING_BLOCKS,
            });
        }
        self.tree.insert(block.clone());
        persist.push(block);
        Ok(Placed::Inserted)
    }

    /// Blocks of a committed range, hash-linked to a verified commit QC
    /// (see [`crate::sync::check_range`]): the ones not in the tree yet enter
    /// it, and are pushed to `persist`. Returns their ids.
    pub(crate) fn insert_committed(
        &mut self,
        blocks: Vec<Block>,
        persist: &mut Vec<Block>,
    ) -> Result<Vec<Hash>, Reject> {
        if self.tree.len() + blocks.len() > limits::MAX_PENDING_BLOCKS {
            return Err(Reject::Full {
                what: "pending block tree",
                limit: limits::MAX_PENDING_BLOCKS,
            });
        }
        let mut added = Vec::new();
        for block in blocks {
            if !self.tree.contains(&block.id()) {
                added.push(block.id());
                self.tree.insert(block.clone());
                persist.push(block);
            }
        }
        Ok(added)
    }

    /// Rebuilds the tree of epoch `epoch` from stored blocks after a
    /// restart: the committed chain up to `last_applied` (each block handed
    /// to `on_commit`, for reputation), then every stored block above it
    /// whose parent is known, parents first.
    pub(crate) fn restore(
        &mut self,
        epoch: Epoch,
        last_applied: Hash,
        blocks: Vec<Block>,
        mut on_commit: impl FnMut(&Block),
    ) -> Result<(), Reject> {
        let root = *self.tree.root();
        let mut by_id: BTreeMap<Hash, Block> = blocks
            .into_iter()
            .filter(|b| b.epoch() == epoch && b.height() > root.height)
            .map(|b| (b.id(), b))
            .collect();
        // The committed chain of this epoch up to what the application
        // applied: history for reputation and sync.
        let mut history = Vec::new();
        let mut cursor = last_applied;
        while cursor != root.id {
            let Some(block) = by_id.remove(&cursor) else {
                if history.is_empty() {
                    return Err(Reject::UnknownBlock { id: cursor });
                }
                // Older history was not passed in: start the tree at the
                // oldest block given (its parent acts as root).
                break;
            };
            cursor = block.parent_id();
            history.push(block);
        }
        history.reverse();
        if let Some(first) = history.first()
            && first.parent_id() != root.id
        {
            let base = RootBlock {
                id: first.parent_id(),
                height: Height(first.height().0 - 1),
                timestamp_ms: 0,
                state_root: first.state_root(),
            };
            self.tree = BlockTree::new(base, Round::ZERO);
        }
        for block in history {
            on_commit(&block);
            self.tree.commit(block, None);
        }
        // Pending blocks above, parents first.
        let mut pending: Vec<Block> = by_id.into_values().collect();
        pending.sort_by_key(|b| (b.height(), b.id()));
        for block in pending {
            if self.tree.parent_info(&block.parent_id()).is_some()
                && self.tree.len() < limits::MAX_PENDING_BLOCKS
                && block.height() > self.tree.root().height
            {
                self.tree.insert(block);
            }
        }
        Ok(())
    }

    /// The orphans waiting for block `id`, in id order.
    pub(crate) fn children_of(&self, id: &Hash) -> Vec<Hash> {
        self.orphans
            .iter()
            .filter(|(_, o)| o.block.parent_id() == *id)
            .map(|(k, _)| *k)
            .collect()
    }

    /// Takes an orphan out, if it is still waiting.
    pub(crate) fn take_orphan(&mut self, id: &Hash) -> Option<Orphan> {
        self.orphans.remove(id)
    }

    /// Orphans at or below the committed root will never be needed.
    pub(crate) fn committed_up_to(&mut self, root: Height) {
        self.orphans.retain(|_, o| o.block.height() > root);
    }

    /// A new epoch: orphans of the old one are dropped.
    pub(crate) fn clear_orphans(&mut self) {
        self.orphans.clear();
    }
}

/// A proposal of epoch `epoch` is signed by its proposer (`key`) and its
/// block has a valid shape.
pub(crate) fn check_proposal(
    proposal: &Proposal,
    key: &PublicKey,
    chain: &ChainId,
    epoch: Epoch,
    payload_bytes_max: usize,
) -> Result<(), Reject> {
    let block = &proposal.block;
    let signed = proposal_signing_bytes(chain, epoch, block.round(), &block.id());
    key.verify_raw(&signed, &proposal.signature)
        .map_err(|_| Reject::BadSignature {
            what: "proposal",
            signer: block.proposer(),
        })?;
    check_block_shape(block, payload_bytes_max)
}

/// What a block must satisfy on its own (Jolteon Fig. 3, "Proposing": a
/// block extends the QC of the previous round, or carries the TC of the
/// previous round).
pub(crate) fn check_block_shape(block: &Block, payload_bytes_max: usize) -> Result<(), Reject> {
    let round = block.round();
    let justify = block.justify();
    if round == Round::ZERO {
        return Err(Reject::MalformedBlock {
            reason: "round 0 belongs to the epoch root",
        });
    }
    if block.payload().len() > payload_bytes_max {
        return Err(Reject::PayloadTooLarge {
            got: block.payload().len(),
            limit: payload_bytes_max,
        });
    }
    if justify.data.epoch != block.epoch() {
        return Err(Reject::MalformedBlock {
            reason: "QC of another epoch",
        });
    }
    if justify.round() >= round {
        return Err(Reject::MalformedBlock {
            reason: "QC is not from an earlier round",
        });
    }
    if block.height() != justify.data.height.next() {
        return Err(Reject::WrongHeight {
            got: block.height(),
            expected: justify.data.height.next(),
        });
    }
    match block.timeout_cert() {
        None if justify.round().next() != round => Err(Reject::NotExtendingPreviousRound {
            round,
            qc_round: justify.round(),
        }),
        Some(_) if justify.round().next() == round => Err(Reject::MalformedBlock {
            reason: "TC carried although the QC is of the previous round",
        }),
        Some(tc) if tc.round.next() != round || tc.epoch != block.epoch() => {
            Err(Reject::MalformedBlock {
                reason: "TC is not of the previous round of this epoch",
            })
        }
        _ => Ok(()),
    }
}

/// What a block must satisfy against its parent (DiemBFT v4: heights
/// consecutive, timestamps increasing; Commons: no payload past the
/// epoch's end).
pub(crate) fn check_against_parent(
    block: &Block,
    parent: &ParentInfo,
    epoch_end: Height,
) -> Result<(), Reject> {
    if block.height() != parent.height.next() {
        return Err(Reject::WrongHeight {
            got: block.height(),
            expected: parent.height.next(),
        });
    }
    if block.timestamp_ms() <= parent.timestamp_ms {
        return Err(Reject::TimestampNotAfterParent {
            timestamp_ms: block.timestamp_ms(),
            parent_ms: parent.timestamp_ms,
        });
    }
    if parent.height >= epoch_end && !block.payload().is_empty() {
        return Err(Reject::PayloadAfterEpochEnd { end: epoch_end });
    }
    Ok(())
}

#[cfg(test)]
#[path = "acceptance_tests/mod.rs"]
mod tests;
