//! The replica: the one state machine a driver feeds with inputs and polls
//! for outputs. It owns the rooms of the protocol (see the crate docs' map)
//! and routes each input through them; the rules live in the rooms.
//!
//! Who calls whom: [`Replica::handle`] fires due timers (pacemaker, sync),
//! then routes the input: a proposal through acceptance and voting, a vote
//! or timeout through the vote keeper, a sync message through sync, the
//! application's answers to the proposer, voting or epochs. Every
//! certificate any of them yields goes through `process_qc` / `process_tc`,
//! which raise the highest QC, apply the commit rule (commit) and move the
//! pacemaker; entering a round may make this replica the proposer.

use commons_types::{
    Epoch, Hash, Height, PublicKey, Round, SecretKey, Signature, ValidatorIndex, ValidatorSet,
};
use tracing::{debug, trace};

use crate::acceptance::{Acceptance, Placed, check_proposal};
use crate::certs::{Certificates, verify_qc, verify_tc};
use crate::commit::{Commit, CommitStep, commit_chain, commit_target};
use crate::contract::{Config, Destination, Input, Outbound, Ready, Request, Restart};
use crate::epochs::{Epochs, WhileWaiting, end_height};
use crate::message::{
    Block, Message, Proposal, QuorumCert, RootBlock, SafetyRecord, SyncRequest, SyncResponse,
    Timeout, TimeoutCert, Vote,
};
use crate::pacemaker::Pacemaker;
use crate::proposer::{PendingProposal, Plan, Proposer, build_block};
use crate::safety::commit_rule;
use crate::sync::{Peers, Sync, check_range};
use crate::time::Millis;
use crate::tree::BlockTree;
use crate::vote_keeper::{TimeoutSeen, VoteKeeper, VoteOutcome};
use crate::voting::{Decision, TimeoutAction, Voter};
use crate::{Reject, limits};

/// A consensus replica. Sans-I/O: see the crate docs for the contract.
#[derive(Debug)]
pub struct Replica {
    config: Config,
    key: SecretKey,
    public_key: PublicKey,
    me: Option<ValidatorIndex>,
    set: ValidatorSet,
    epoch: Epoch,
    now: Millis,

    voter: Voter,
    pacemaker: Pacemaker,
    certs: Certificates,
    blocks: Acceptance,
    votes: VoteKeeper,
    proposer: Proposer,
    commit: Commit,
    epochs: Epochs,
    sync: Sync,

    out: Ready,
}

/// Who this replica is and what it sees, for [`Sync`] (a macro, so that the
/// borrow is of the fields, not of the whole replica).
macro_rules! peers {
    ($r:expr) => {
        &Peers {
            me: $r.public_key,
            set: &$r.set,
            epoch: $r.epoch,
            now: $r.now,
            retry_ms: $r.config.sync_retry_ms,
        }
    };
}

mod inbound;
mod progress;

impl Replica {
    /// A replica for `set` (the set of the record's epoch when restarting)
    /// signing with `key`. A key outside the set makes an observer that
    /// follows and commits but never signs.
    pub fn new(
        config: Config,
        key: SecretKey,
        set: ValidatorSet,
        restart: Option<Restart>,
    ) -> Result<Replica, Reject> {
        assert!(config.payload_bytes_max <= limits::MAX_PAYLOAD_BYTES);
        assert!(config.round_timeout_ms > 0);
        assert!(config.round_timeout_ms <= config.round_timeout_ms_max);
        assert!(config.epoch_length_blocks > 0);
        let genesis = RootBlock::genesis(
            &config.chain_id,
            set.hash(),
            config.genesis_state_root,
            config.genesis_timestamp_ms,
        );
        let record = match &restart {
            Some(r) => r.record.clone(),
            None => SafetyRecord::fresh(Epoch::ZERO, genesis),
        };
        let epoch = record.epoch;
        let root = record.epoch_root;
        let public_key = key.public_key();
        let mut replica = Replica {
            me: set.index_of(&public_key),
            public_key,
            key,
            set,
            epoch,
            now: Millis::ZERO,
            voter: Voter::new(record),
            pacemaker: Pacemaker::new(),
            certs: Certificates::new(QuorumCert::root(epoch, &root)),
            blocks: Acceptance::new(BlockTree::new(root, Round::ZERO)),
            votes: VoteKeeper::default(),
            proposer: Proposer::new(epoch),
            commit: Commit::default(),
            epochs: Epochs::default(),
            sync: Sync::default(),
            out: Ready::default(),
            config,
        };
        if let Some(restart) = restart {
            replica.restore(restart)?;
        }
        if !replica.epochs.is_awaiting() {
            let start = replica
                .certs
                .highest()
                .round()
                .next()
                .max(replica.voter.record().highest_timeout_round)
                .max(Round(1));
            replica.advance_round(start, None);
        }
        Ok(replica)
    }

    fn restore(&mut self, restart: Restart) -> Result<(), Reject> {
        let (proposer, set) = (&mut self.proposer, &self.set);
        self.blocks
            .restore(self.epoch, restart.last_applied, restart.blocks, |b| {
                proposer.on_commit(set, b)
            })?;
        let mut qcs = restart.qcs;
        qcs.sort_by_key(|qc| qc.round());
        for qc in qcs {
            if qc.data.epoch != self.epoch {
                continue;
            }
            let root_qc = self.certs.root_qc();
            if let Err(e) = verify_qc(&qc, &self.config.chain_id, &self.set, self.epoch, root_qc) {
                debug!(round = qc.round().0, error = %e, "stored QC does not verify; skipped");
                continue;
            }
            self.certs.insert_verified(qc.clone());
            self.process_qc(qc, None);
        }
        // What was just read back is already stored.
        self.out.persist.qcs.clear();
        if self.blocks.tree.root().height >= self.epoch_end_height() {
            self.enter_epoch_end();
        }
        Ok(())
    }

    // ----- the driver's interface -------------------------------------

    /// Feeds one input at time `now`. Due timers fire first.
    pub fn handle(&mut self, now: Millis, input: Input) -> Result<(), Reject> {
        self.now = self.now.max(now);
        let running = !self.epochs.is_awaiting();
        let highest = self.certs.highest().round();
        self.pacemaker
            .start_clock(self.now, running, &self.config, highest);
        if self.pacemaker.is_due(self.now) {
            self.local_timeout();
        }
        self.sync
            .fire(peers!(self), &self.blocks.tree, &mut self.out.messages);
        match input {
            Input::Message { from, message } => self.on_message(from, message),
            Input::Payload {
                round,
                parent,
                payload,
                state_root,
            } => {
                let max = self.config.payload_bytes_max;
                let pending = self
                    .proposer
                    .take_payload_slot(round, parent, payload.len(), max)?;
                self.propose(pending, payload, state_root);
                Ok(())
            }
            Input::PayloadValidated { block_id, valid } => {
                let Some((round, id)) = self.voter.on_validated(block_id, valid)? else {
                    return Ok(());
                };
                let block =
                    (self.blocks.tree.get(&id).cloned()).ok_or(Reject::UnknownBlock { id })?;
                self.voter.check_vote(&block, round)?;
                self.vote(&block);
                Ok(())
            }
            Input::EpochChange {
                epoch,
                block_id,
                new_set,
            } => self.on_epoch_change(epoch, block_id, new_set),
            Input::Tick => Ok(()),
        }
    }

    /// What to persist, send and apply, if anything. See [`Ready`] for the
    /// order the driver must follow.
    pub fn poll_ready(&mut self) -> Option<Ready> {
        let (me, out) = (self.me, &self.out);
        let record = self.voter.record_for_ready(|| {
            out.messages.iter().any(|m| match &m.message {
                Message::Vote(v) => Some(v.voter) == me,
                Message::Timeout(t) => Some(t.voter) == me,
                _ => false,
            })
        });
        if record.is_none() && self.out.is_empty() {
            return None;
        }
        let mut ready = std::mem::take(&mut self.out);
        ready.persist.record = record;
        if let Some(r) = &ready.persist.record {
            self.voter.handed_out(r);
        }
        self.voter.check_covered(&ready.messages, self.me);
        Some(ready)
    }

    /// When the driver must call `handle(.., Input::Tick)` next, if ever.
    pub fn poll_deadline(&self) -> Option<Millis> {
        let sync = self.sync.deadline(self.config.sync_retry_ms);
        match (self.pacemaker.deadline(), sync) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ----- read-only views, for drivers and tests ---------------------

    pub fn round(&self) -> Round {
        self.pacemaker.round()
    }
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }
    pub fn validator_set(&self) -> &ValidatorSet {
        &self.set
    }
    pub fn index(&self) -> Option<ValidatorIndex> {
        self.me
    }
    pub fn record(&self) -> &SafetyRecord {
        self.voter.record()
    }
    pub fn highest_qc(&self) -> &QuorumCert {
        self.certs.highest()
    }
    pub fn committed_height(&self) -> Height {
        self.blocks.tree.root().height
    }
    pub fn committed_id(&self) -> Hash {
        self.blocks.tree.root().id
    }
    pub fn pending_blocks(&self) -> usize {
        self.blocks.tree.len()
    }
    pub fn block(&self, id: &Hash) -> Option<&Block> {
        self.blocks.tree.find(id)
    }
    pub fn leader(&self, round: Round) -> ValidatorIndex {
        self.proposer.leader(&self.set, round)
    }
    /// True while the replica waits for [`Input::EpochChange`].
    pub fn awaiting_epoch_change(&self) -> bool {
        self.epochs.is_awaiting()
    }

    // ----- helpers -------------------------------------------------------

    pub(super) fn epoch_end_height(&self) -> Height {
        let root = self.voter.record().epoch_root.height;
        end_height(root, self.config.epoch_length_blocks)
    }

    pub(super) fn key_of(&self, index: ValidatorIndex) -> Result<PublicKey, Reject> {
        self.set
            .get(index)
            .map(|v| v.public_key)
            .ok_or(Reject::UnknownValidator {
                index,
                len: self.set.len(),
            })
    }

    pub(super) fn send(&mut self, to: Destination, message: Message) {
        trace!(round = self.round().0, kind = message.kind(), "send");
        self.out.messages.push(Outbound { to, message });
    }

    /// Messages of another epoch are refused; one of a later epoch shows
    /// that this replica is behind: fetch the committed blocks.
    pub(super) fn check_epoch(&mut self, got: Epoch, from: PublicKey) -> Result<(), Reject> {
        if got == self.epoch {
            return Ok(());
        }
        if got > self.epoch {
            self.sync.start_committed(
                peers!(self),
                &self.blocks.tree,
                from,
                &mut self.out.messages,
            );
        }
        Err(Reject::WrongEpoch {
            got,
            current: self.epoch,
        })
    }

    pub(super) fn verify_qc(&mut self, qc: &QuorumCert) -> Result<(), Reject> {
        self.certs
            .verify_qc(qc, &self.config.chain_id, &self.set, self.epoch)
    }

    pub(super) fn verify_tc(&self, tc: &TimeoutCert) -> Result<(), Reject> {
        verify_tc(tc, &self.config.chain_id, &self.set, self.epoch)
    }

    pub(super) fn want(&mut self, id: Hash, height: Height, from: Option<PublicKey>) {
        let out = &mut self.out.messages;
        self.sync
            .want(peers!(self), &self.blocks.tree, id, height, from, out);
    }
}
