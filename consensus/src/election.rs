//! Leader election: stake-weighted, deterministic, skipping validators that
//! failed recently.
//!
//! The leader of round r in epoch e is drawn from the *eligible* validators
//! with probability proportional to power, by `SHA-256("commons/leader/v1"
//! || e || r) mod eligible power`. Eligibility is the reputation of DiemBFT
//! v4 ("Leader election", `elect_reputation_leader`), computed from the
//! committed chain only, so every replica that committed the same blocks
//! agrees:
//!
//! - a validator is *active* if, in the last [`limits::REPUTATION_WINDOW`]
//!   committed blocks of the epoch, it proposed one or signed the QC one
//!   carries;
//! - a validator has *failed* if, in that window, a committed block carries
//!   a TC for the round before it and the validator was that round's leader;
//! - until the active validators of the window hold a quorum of the power
//!   (the first block of an epoch carries the signature-less root QC, so
//!   alone it names only its proposer), every validator counts as active;
//! - eligible = active minus failed; if that has no power (start of an epoch),
//!   every validator is eligible.
//!
//! Round r uses the reputation as of the newest committed block whose round
//! is at most `r - REPUTATION_LAG_ROUNDS`, so a replica in round r has almost
//! surely committed it. A replica that has not (it is catching up) may pick
//! another leader for a while: that costs it liveness, never safety, since
//! safety never depends on who leads.

use std::collections::VecDeque;

use commons_types::{Epoch, Hash, Round, ValidatorIndex, ValidatorSet};

use crate::limits;
use crate::message::Block;

#[derive(Debug, Clone)]
struct CommittedInfo {
    proposer: ValidatorIndex,
    signers: Vec<ValidatorIndex>,
    failed_leader: Option<ValidatorIndex>,
}

#[derive(Debug, Clone)]
pub(crate) struct LeaderElection {
    epoch: Epoch,
    window: VecDeque<CommittedInfo>,
    /// (round of a committed block, eligibility after it); rounds increase.
    snapshots: VecDeque<(Round, Vec<bool>)>,
}

impl LeaderElection {
    pub(crate) fn new(epoch: Epoch) -> LeaderElection {
        LeaderElection {
            epoch,
            window: VecDeque::new(),
            snapshots: VecDeque::new(),
        }
    }

    pub(crate) fn leader(&self, set: &ValidatorSet, round: Round) -> ValidatorIndex {
        let eligible = self.eligible_for(round);
        let weight = |i: usize, power: u64| match eligible {
            Some(e) if e.get(i).copied().unwrap_or(false) => power,
            Some(_) => 0,
            None => power,
        };
        let total: u64 = set
            .validators()
            .iter()
            .enumerate()
            .map(|(i, v)| weight(i, v.power))
            .sum();
        // Snapshots only keep eligibility with positive power, so total > 0
        // unless the set itself were empty, which ValidatorSet forbids.
        assert!(total > 0, "no eligible power in round {round}");
        let seed = Hash::digest_parts(&[
            b"commons/leader/v1",
            &self.epoch.0.to_be_bytes(),
            &round.0.to_be_bytes(),
        ]);
        let mut first = [0u8; 8];
        first.copy_from_slice(&seed.0[..8]);
        let mut x = u64::from_be_bytes(first) % total;
        for (i, v) in set.validators().iter().enumerate() {
            let w = weight(i, v.power);
            if x < w {
                return ValidatorIndex(i as u16);
            }
            x -= w;
        }
        // x < total guarantees the loop returned; the last index keeps this
        // total without a panic path.
        ValidatorIndex(set.len().saturating_sub(1) as u16)
    }

    fn eligible_for(&self, round: Round) -> Option<&Vec<bool>> {
        let cutoff = round.0.checked_sub(limits::REPUTATION_LAG_ROUNDS)?;
        self.snapshots
            .iter()
            .rev()
            .find(|(r, _)| r.0 <= cutoff)
            .map(|(_, e)| e)
    }

    /// Folds one committed block (in commit order) into the reputation.
    pub(crate) fn on_commit(&mut self, set: &ValidatorSet, block: &Block) {
        assert_eq!(block.epoch(), self.epoch);
        if let Some(last) = self.snapshots.back() {
            assert!(last.0 < block.round(), "commits arrive in round order");
        }
        let failed_leader = block
            .timeout_cert()
            .and_then(|_| block.round().prev())
            .map(|r| self.leader(set, r));
        self.window.push_back(CommittedInfo {
            proposer: block.proposer(),
            signers: block.justify().signers().collect(),
            failed_leader,
        });
        while self.window.len() > limits::REPUTATION_WINDOW {
            self.window.pop_front();
        }
        let mut active = vec![false; set.len()];
        let mut failed = vec![false; set.len()];
        for info in &self.window {
            for i in std::iter::once(info.proposer).chain(info.signers.iter().copied()) {
                if let Some(slot) = active.get_mut(i.as_usize()) {
                    *slot = true;
                }
            }
            if let Some(slot) = info
                .failed_leader
                .and_then(|i| failed.get_mut(i.as_usize()))
            {
                *slot = true;
            }
        }
        let power_of = |flags: &[bool]| -> u64 {
            set.validators()
                .iter()
                .zip(flags)
                .filter(|(_, f)| **f)
                .map(|(v, _)| v.power)
                .sum()
        };
        if !set.is_quorum(power_of(&active)) {
            // A window this young has not yet shown a quorum signing (the
            // first block of an epoch carries the signature-less root QC, so
            // it alone names only its proposer active). Judging liveness
            // from it would make one validator the only leader until the
            // next commit: count everyone active until the window has seen
            // a quorum.
            active = vec![true; set.len()];
        }
        let eligible: Vec<bool> = active.iter().zip(&failed).map(|(a, f)| *a && !*f).collect();
        if power_of(&eligible) > 0 {
            self.snapshots.push_back((block.round(), eligible));
        } else {
            self.snapshots
                .push_back((block.round(), vec![true; set.len()]));
        }
        while self.snapshots.len() > limits::MAX_COMMITTED_WINDOW {
            self.snapshots.pop_front();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeSet;

    use commons_types::{ChainId, Height, SecretKey, Validator};

    use super::*;
    use crate::message::{BlockFields, QuorumCert, RootBlock};

    fn set_of(n: usize) -> ValidatorSet {
        let validators = (0..n)
            .map(|i| {
                let mut seed = [7u8; 32];
                seed[0] = i as u8;
                Validator {
                    public_key: SecretKey::from_seed(seed).public_key(),
                    power: 10,
                }
            })
            .collect();
        ValidatorSet::new(validators).unwrap()
    }

    #[test]
    fn the_first_block_of_an_epoch_does_not_make_its_proposer_the_only_leader() {
        // Regression (simulator seeds 325, 1312): the first committed block
        // carries the root QC, which has no signers, so its window named
        // only its proposer active and that proposer led every round whose
        // reputation came from it; a failed round was then blamed on it
        // instead of on the leader the replicas had really waited for.
        let set = set_of(4);
        let chain = ChainId::new("election-test").unwrap();
        let root = RootBlock::genesis(&chain, set.hash(), Hash::ZERO, 0);
        let first = Block::new(BlockFields {
            epoch: Epoch::ZERO,
            round: Round(1),
            height: Height(1),
            proposer: ValidatorIndex(2),
            timestamp_ms: 1,
            state_root: Hash::ZERO,
            justify: QuorumCert::root(Epoch::ZERO, &root),
            timeout_cert: None,
            payload: Vec::new(),
        });
        let mut election = LeaderElection::new(Epoch::ZERO);
        election.on_commit(&set, &first);
        let from = 1 + limits::REPUTATION_LAG_ROUNDS;
        assert_eq!(election.eligible_for(Round(from)), Some(&vec![true; 4]));
        let leaders: BTreeSet<ValidatorIndex> = (from..from + 64)
            .map(|r| election.leader(&set, Round(r)))
            .collect();
        assert_eq!(leaders.len(), 4, "every validator leads some round");
    }
}
