//! The proposer: who leads each round, and how a leader builds its block.
//!
//! Rules (Jolteon, Gelashvili et al., FC 2022, Fig. 3 "Proposing"; DiemBFT
//! v4 "Proposal generator" and "Leader election"):
//!
//! - **Leaders** come from [`crate::election`]: a stake-weighted draw among
//!   validators with a good reputation on the committed chain
//!   ([`Proposer::leader`]); every committed block feeds it
//!   ([`Proposer::on_commit`]).
//! - **On entering round r**, its leader proposes one block extending its
//!   highest QC, carrying TC(r-1) when that QC is not of round r-1
//!   ([`Proposer::plan`]). With neither QC(r-1) nor TC(r-1) it does not
//!   propose: the round was not entered legitimately.
//! - **Once per round**, across restarts: a leader that already voted or
//!   timed out in the round (so proposed before a restart) does not plan
//!   another proposal; one whose record says it proposed does not build
//!   another block ([`crate::voting::Voter::note_proposed`]). A second block
//!   would be equivocation evidence against it.
//! - **The payload** comes from the application ([`crate::Request::NeedPayload`]),
//!   at most `payload_bytes_max` ([`Proposer::take_payload_slot`]). Past the
//!   epoch's last height the block is empty and built at once.
//! - **A missing parent** (the highest QC's block not yet received) is
//!   fetched, and the proposal waits for it ([`Proposer::take_waiting`]).
//! - **The block** ([`build_block`]): one height above its parent, timestamp
//!   the leader's clock but always after the parent's.

use commons_types::{Epoch, Hash, Height, Round, ValidatorIndex, ValidatorSet};
use tracing::debug;

use crate::Reject;
use crate::contract::Request;
use crate::election::LeaderElection;
use crate::message::{Block, BlockFields, QuorumCert, SafetyRecord, TimeoutCert};
use crate::time::Millis;
use crate::tree::ParentInfo;

/// A proposal decided on, waiting for its payload.
#[derive(Debug, Clone)]
pub(crate) struct PendingProposal {
    pub round: Round,
    pub justify: QuorumCert,
    pub tc: Option<TimeoutCert>,
    pub parent: ParentInfo,
}

/// What a leader does on entering its round.
#[derive(Debug)]
pub(crate) enum Plan {
    /// Nothing: already proposed, or no certificate for the round.
    Skip,
    /// The parent is missing: fetch it (id, height), then plan again.
    FetchParent { id: Hash, height: Height },
    /// Build an empty block now (past the epoch's end).
    Empty(PendingProposal),
    /// Ask the application for a payload.
    AskPayload(Request),
}

/// Leader election and the leader's proposal in progress.
#[derive(Debug)]
pub(crate) struct Proposer {
    election: LeaderElection,
    /// The proposal waiting for the application's payload.
    awaiting_payload: Option<PendingProposal>,
    /// A proposal waiting for the highest QC's block to arrive.
    waiting_for_parent: bool,
}

impl Proposer {
    pub(crate) fn new(epoch: Epoch) -> Proposer {
        Proposer {
            election: LeaderElection::new(epoch),
            awaiting_payload: None,
            waiting_for_parent: false,
        }
    }

    pub(crate) fn leader(&self, set: &ValidatorSet, round: Round) -> ValidatorIndex {
        self.election.leader(set, round)
    }

    pub(crate) fn election_mut(&mut self) -> &mut LeaderElection {
        &mut self.election
    }

    /// A committed block counts for reputation.
    pub(crate) fn on_commit(&mut self, set: &ValidatorSet, block: &Block) {
        self.election.on_commit(set, block);
    }

    /// A new round: whatever the last one waited for is dropped.
    pub(crate) fn abandon_round(&mut self) {
        self.awaiting_payload = None;
        self.waiting_for_parent = false;
    }

    /// The epoch ended: no payload is awaited.
    pub(crate) fn stop(&mut self) {
        self.awaiting_payload = None;
    }

    /// A new epoch: reputation starts over.
    pub(crate) fn reset(&mut self, epoch: Epoch) {
        self.election = LeaderElection::new(epoch);
    }

    /// What this replica, leader of `round`, does on entering it. `parent`
    /// is the highest QC's block if known; `tc` the TC of the round before,
    /// if the round was entered by it.
    pub(crate) fn plan(
        &mut self,
        round: Round,
        record: &SafetyRecord,
        highest_qc: &QuorumCert,
        parent: Option<ParentInfo>,
        tc: Option<TimeoutCert>,
        epoch_end: Height,
    ) -> Plan {
        // A leader that voted (for its own block) or timed out in this round
        // already proposed in it, before a restart: a second block for the
        // round would be reported as equivocation evidence.
        if record.last_voted_round >= round {
            debug!(
                round = round.0,
                "already proposed or timed out in this round"
            );
            return Plan::Skip;
        }
        let justify = highest_qc.clone();
        let Some(parent) = parent else {
            self.waiting_for_parent = true;
            return Plan::FetchParent {
                id: justify.block_id(),
                height: justify.data.height,
            };
        };
        let tc = if justify.round().next() == round {
            None
        } else {
            match tc {
                Some(tc) => Some(tc),
                None => {
                    debug!(
                        round = round.0,
                        "leading without a QC or TC of the previous round"
                    );
                    return Plan::Skip;
                }
            }
        };
        let pending = PendingProposal {
            round,
            justify,
            tc,
            parent,
        };
        if parent.height >= epoch_end {
            // After the epoch's last block: an empty block keeps the chain
            // moving until that block commits.
            Plan::Empty(pending)
        } else {
            let request = Request::NeedPayload {
                round,
                parent: parent.id,
                parent_height: parent.height,
            };
            self.awaiting_payload = Some(pending);
            Plan::AskPayload(request)
        }
    }

    /// Whether a proposal waited for its parent and `parent_known` now
    /// (asked only then): plan again.
    pub(crate) fn take_waiting(&mut self, parent_known: impl FnOnce() -> bool) -> bool {
        if self.waiting_for_parent && parent_known() {
            self.waiting_for_parent = false;
            true
        } else {
            false
        }
    }

    /// The proposal that waits for this payload (of `len` bytes, at most
    /// `max`), for `round` and `parent`.
    pub(crate) fn take_payload_slot(
        &mut self,
        round: Round,
        parent: Hash,
        len: usize,
        max: usize,
    ) -> Result<PendingProposal, Reject> {
        let Some(pending) = self
            .awaiting_payload
            .take_if(|p| p.round == round && p.parent.id == parent)
        else {
            return Err(Reject::Unexpected {
                what: "payload",
                reason: "this replica is not waiting for a payload for that round and parent",
            });
        };
        if len > max {
            self.awaiting_payload = Some(pending);
            return Err(Reject::PayloadTooLarge {
                got: len,
                limit: max,
            });
        }
        Ok(pending)
    }
}

/// The block `me` proposes for `pending` at time `now`.
pub(crate) fn build_block(
    pending: PendingProposal,
    epoch: Epoch,
    me: ValidatorIndex,
    now: Millis,
    payload: Vec<u8>,
    state_root: Hash,
) -> Block {
    Block::new(BlockFields {
        epoch,
        round: pending.round,
        height: pending.parent.height.next(),
        proposer: me,
        timestamp_ms: now
            .as_u64()
            .max(pending.parent.timestamp_ms.saturating_add(1)),
        state_root,
        justify: pending.justify,
        timeout_cert: pending.tc,
        payload,
    })
}

#[cfg(test)]
#[path = "proposer_tests.rs"]
mod tests;
