//! Commits: the 2-chain rule applied to each QC, and the chain of blocks a
//! commit delivers.
//!
//! Rules (Jolteon, Gelashvili et al., FC 2022, Fig. 3 "Commit rule";
//! DiemBFT v4 `process_qc` / `commit`):
//!
//! - **2-chain** ([`crate::safety::commit_rule`]): a QC for block B' whose
//!   parent B has round `B'.round - 1` commits B and every ancestor of B.
//! - **Once, in order** ([`commit_chain`]): the committed blocks leave the
//!   replica oldest first, each exactly once, and become the tree's new root
//!   one by one; the QC that committed them is kept as the proof a peer
//!   catching up is served (see [`crate::sync`]).
//! - **Missing blocks** ([`Commit::plan`]): a QC may commit blocks this
//!   replica has not received. The QC waits as the pending commit (the
//!   highest one) while the first missing block is fetched, and is applied
//!   once the chain is complete ([`Commit::retry`]).
//! - **Epoch end**: blocks above the epoch's last height are never
//!   committed in that epoch; a commit past the end delivers up to the end
//!   and records the rest with the proof (see the crate docs, "Departures").
//! - A QC whose chain reaches the root's height elsewhere than the root
//!   conflicts with the committed chain: it is dropped (only more than a
//!   third of Byzantine power could sign it).

use commons_types::{Hash, Height, ValidatorSet};
use tracing::debug;

use crate::Reject;
use crate::election::LeaderElection;
use crate::message::{Block, QuorumCert};
use crate::safety::commit_rule;
use crate::tree::BlockTree;

/// What a commit QC asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CommitStep {
    /// Committed already (a QC read back after a restart); its proof was
    /// kept.
    Done,
    /// These blocks, oldest first, are now committed.
    Chain(Vec<Block>),
    /// Block `id` at `height` (or below it) is missing; the QC waits.
    Missing { id: Hash, height: Height },
    /// The chain conflicts with the committed one.
    Conflicts,
}

/// The commit that waits for missing blocks.
#[derive(Debug, Default)]
pub(crate) struct Commit {
    pending: Option<QuorumCert>,
}

impl Commit {
    /// Which blocks `qc` commits, if `target` is the block it commits.
    pub(crate) fn plan(
        &mut self,
        tree: &mut BlockTree,
        target: Hash,
        qc: &QuorumCert,
    ) -> CommitStep {
        // The target is the parent of the QC's block.
        let target_height = Height(qc.data.height.0.saturating_sub(1));
        if target_height <= tree.root().height {
            // Committed already, before a restart (the QC was read back from
            // storage): keep it as the commit's proof, so that this replica
            // can hand the committed range to peers that did not see it.
            tree.add_missing_proof(&target, (Vec::new(), qc.clone()));
            return CommitStep::Done;
        }
        match tree.chain_to(&target) {
            Ok(chain) => CommitStep::Chain(chain),
            Err(Some(missing)) => {
                if self.pending.as_ref().is_none_or(|p| p.round() < qc.round()) {
                    self.pending = Some(qc.clone());
                }
                CommitStep::Missing {
                    id: missing,
                    height: target_height,
                }
            }
            Err(None) => {
                debug!(
                    round = qc.round().0,
                    "QC commits a block conflicting with the committed chain"
                );
                CommitStep::Conflicts
            }
        }
    }

    /// The pending commit, once every block it needs is in the tree: the
    /// block it commits and the QC.
    pub(crate) fn retry(&mut self, tree: &BlockTree) -> Option<(Hash, QuorumCert)> {
        let qc = self.pending.clone()?;
        let target = commit_rule(&qc.data)?;
        tree.chain_to(&target).ok()?;
        self.pending = None;
        Some((target, qc))
    }

    /// The root reached `root`: a pending commit at or below it is done.
    pub(crate) fn committed_up_to(&mut self, root: Height) {
        if self
            .pending
            .as_ref()
            .is_some_and(|p| p.data.height.0.saturating_sub(1) <= root.0)
        {
            self.pending = None;
        }
    }

    /// A new epoch: nothing waits.
    pub(crate) fn clear(&mut self) {
        self.pending = None;
    }
}

/// The block a QC offered as a commit proof commits, or why it commits
/// nothing (its rounds are not consecutive).
pub(crate) fn commit_target(qc: &QuorumCert) -> Result<Hash, Reject> {
    commit_rule(&qc.data).ok_or(Reject::MalformedCertificate {
        what: "commit",
        round: qc.round(),
        reason: "the QC commits nothing (rounds not consecutive)",
    })
}

/// Commits `chain` (oldest first) under `qc`, up to the epoch's last height
/// `end`: each block goes to `committed`, becomes the tree's root and counts
/// for leader reputation; the QC becomes the proof of the last one, with the
/// blocks past `end` it also certifies.
pub(crate) fn commit_chain(
    tree: &mut BlockTree,
    election: &mut LeaderElection,
    set: &ValidatorSet,
    chain: Vec<Block>,
    qc: &QuorumCert,
    end: Height,
    committed: &mut Vec<Block>,
) {
    let mut suffix = Vec::new();
    for block in chain {
        if block.height() > end {
            suffix.push(block);
            continue;
        }
        debug!(
            height = block.height().0,
            round = block.round().0,
            validator = block.proposer().0,
            "commit"
        );
        election.on_commit(set, &block);
        committed.push(block.clone());
        tree.commit(block, None);
    }
    tree.set_last_proof((suffix, qc.clone()));
}

#[cfg(test)]
#[path = "commit_tests.rs"]
mod tests;
