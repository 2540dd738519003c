//! The invariants, checked as the run goes (safety) and at its end
//! (liveness). Each oracle is computed from what the simulator observed,
//! never by asking the code under test whether it is right.

use std::collections::{BTreeMap, BTreeSet};

use commons_consensus::{Block, Timeout, Vote, VoteData};
use commons_types::{Epoch, Hash, Height, PublicKey, Round};

/// One broken invariant: which check, and what was seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The check's name (`agreement`, `state-root`, `supply`, ...).
    pub check: &'static str,
    pub detail: String,
    /// Virtual time at which it was seen.
    pub at_ms: u64,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at {} ms: {}", self.check, self.at_ms, self.detail)
    }
}

/// What honest nodes committed and signed, for the safety checks.
#[derive(Debug, Default)]
pub struct Checker {
    /// Height → (block id, state root after it), as first committed by an
    /// honest node.
    chain: BTreeMap<Height, (Hash, Hash)>,
    /// Every vote an honest validator sent, by (key, epoch, round).
    votes: BTreeMap<(PublicKey, Epoch, Round), VoteData>,
    /// Every timeout an honest validator sent: its reported QC round.
    timeouts: BTreeMap<(PublicKey, Epoch, Round), Round>,
    pub violations: Vec<Violation>,
}

impl Checker {
    fn fail(&mut self, check: &'static str, at_ms: u64, detail: String) {
        self.violations.push(Violation {
            check,
            detail,
            at_ms,
        });
    }

    /// Agreement and equal state roots: every honest node commits the same
    /// block at each height, and its state root after that block is the
    /// same.
    pub fn committed(&mut self, at_ms: u64, node: usize, block: &Block, state_root: Hash) {
        let h = block.height();
        match self.chain.get(&h) {
            None => {
                self.chain.insert(h, (block.id(), state_root));
            }
            Some(&(id, root)) => {
                if id != block.id() {
                    self.fail(
                        "agreement",
                        at_ms,
                        format!(
                            "node {node} committed block {} at height {}, another honest node committed {}",
                            block.id(),
                            h.0,
                            id
                        ),
                    );
                } else if root != state_root {
                    self.fail(
                        "state-root",
                        at_ms,
                        format!(
                            "node {node} has state root {state_root} after height {}, another honest node has {root}",
                            h.0
                        ),
                    );
                }
            }
        }
    }

    /// No honest validator signs two different votes in one round of one
    /// epoch (whatever crashes and restarts it went through).
    pub fn vote_sent(&mut self, at_ms: u64, node: usize, key: PublicKey, vote: &Vote) {
        let k = (key, vote.data.epoch, vote.data.round);
        match self.votes.get(&k) {
            None => {
                self.votes.insert(k, vote.data);
            }
            Some(first) if *first != vote.data => {
                let first = *first;
                self.fail(
                    "honest-double-vote",
                    at_ms,
                    format!(
                        "node {node} voted for {} and {} in epoch {} round {}",
                        first.block_id, vote.data.block_id, vote.data.epoch.0, vote.data.round.0
                    ),
                );
            }
            Some(_) => {}
        }
    }

    /// Nor two different timeouts for one round.
    pub fn timeout_sent(&mut self, at_ms: u64, node: usize, key: PublicKey, timeout: &Timeout) {
        let k = (key, timeout.epoch, timeout.round);
        let reported = timeout.high_qc.round();
        match self.timeouts.get(&k) {
            None => {
                self.timeouts.insert(k, reported);
            }
            Some(first) if *first != reported => {
                let first = *first;
                self.fail(
                    "honest-double-timeout",
                    at_ms,
                    format!(
                        "node {node} timed out round {} of epoch {} twice, reporting QC rounds {} and {}",
                        timeout.round.0, timeout.epoch.0, first.0, reported.0
                    ),
                );
            }
            Some(_) => {}
        }
    }

    pub fn violation(&mut self, check: &'static str, at_ms: u64, detail: String) {
        self.fail(check, at_ms, detail);
    }

    /// Whether `key` sent a vote in `epoch` or a later one.
    pub fn voted_in(&self, key: PublicKey, epoch: Epoch) -> bool {
        self.votes
            .range((key, epoch, Round::ZERO)..)
            .next()
            .is_some_and(|((k, _, _), _)| *k == key)
    }

    /// Highest height any honest node committed.
    pub fn committed_height(&self) -> Height {
        self.chain.keys().next_back().copied().unwrap_or(Height(0))
    }

    /// Block ids committed by honest nodes, for the tests.
    pub fn committed_ids(&self) -> BTreeSet<Hash> {
        self.chain.values().map(|(id, _)| *id).collect()
    }
}
