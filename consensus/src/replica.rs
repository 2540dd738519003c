//! The replica: the one state machine a driver feeds with inputs and polls
//! for outputs. See the crate docs for the rules it follows.

use std::collections::{BTreeMap, BTreeSet};

use commons_types::batch::{VerifyItem, verify_all};
use commons_types::{
    ChainId, Epoch, Hash, Height, PublicKey, Round, SecretKey, Signature, ValidatorIndex,
    ValidatorSet,
};
use tracing::{debug, trace};

use crate::certs::{qc_has_quorum, verify_qc, verify_tc};
use crate::election::LeaderElection;
use crate::message::{
    Block, BlockFields, Evidence, Message, Proposal, QuorumCert, RootBlock, SafetyRecord,
    SignedProposal, SignedTimeout, SyncRequest, SyncResponse, Timeout, TimeoutCert,
    TimeoutSignature, Vote, proposal_signing_bytes,
};
use crate::safety::{commit_rule, is_safe_to_timeout, is_safe_to_vote};
use crate::time::Millis;
use crate::tree::{BlockTree, ParentInfo};
use crate::{Reject, limits};

/// Settings every validator of a chain must agree on (all but the timeouts,
/// which only affect liveness).
#[derive(Clone, Debug)]
pub struct Config {
    pub chain_id: ChainId,
    /// Round timeout while rounds succeed.
    pub round_timeout_ms: u64,
    /// Cap of the doubled timeout while rounds keep failing.
    pub round_timeout_ms_max: u64,
    /// Largest payload a block may carry (at most
    /// [`limits::MAX_PAYLOAD_BYTES`]).
    pub payload_bytes_max: usize,
    /// How far ahead of a voter's `now` a block timestamp may be.
    pub clock_drift_ms_max: u64,
    /// Heights per epoch: epoch e ends at its root's height plus this.
    pub epoch_length_blocks: u64,
    /// How long to wait for a sync answer before asking another peer.
    pub sync_retry_ms: u64,
    /// Application state at genesis and genesis time (part of the genesis id).
    pub genesis_state_root: Hash,
    pub genesis_timestamp_ms: u64,
}

impl Config {
    /// Defaults for a LAN or a test: 1 s rounds backing off to 60 s, epochs
    /// that never end.
    pub fn new(chain_id: ChainId) -> Config {
        Config {
            chain_id,
            round_timeout_ms: 1_000,
            round_timeout_ms_max: 60_000,
            payload_bytes_max: limits::MAX_PAYLOAD_BYTES,
            clock_drift_ms_max: 5_000,
            epoch_length_blocks: u64::MAX,
            sync_retry_ms: 1_000,
            genesis_state_root: Hash::ZERO,
            genesis_timestamp_ms: 0,
        }
    }
}

/// What a restarted replica reads back from its storage.
#[derive(Clone, Debug)]
pub struct Restart {
    /// The last safety record handed out in a `Ready` (and persisted).
    pub record: SafetyRecord,
    /// The last committed block the application has applied (or the epoch
    /// root if none of this epoch). Committed blocks after it are delivered
    /// again, so each is applied exactly once.
    pub last_applied: Hash,
    /// Stored blocks: at least the committed chain of this epoch from the
    /// epoch root (or the last [`limits::REPUTATION_WINDOW`] of it) up to
    /// `last_applied`, and every stored block above it. Others are ignored.
    pub blocks: Vec<Block>,
    /// Stored QCs (from `Persist::qcs`).
    pub qcs: Vec<QuorumCert>,
}

/// An input to [`Replica::handle`].
// Inputs are moved into `handle` once and never stored in bulk, so the size
// of the largest variant costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Input {
    /// A message from the peer whose key the transport authenticated.
    Message { from: PublicKey, message: Message },
    /// The application's answer to [`Request::NeedPayload`].
    Payload {
        round: Round,
        parent: Hash,
        payload: Vec<u8>,
        state_root: Hash,
    },
    /// The application's verdict on [`Request::ValidatePayload`].
    PayloadValidated { block_id: Hash, valid: bool },
    /// The application's answer to [`Request::NeedValidatorSet`]: the set
    /// of `epoch`, which starts after committed block `block_id`.
    EpochChange {
        epoch: Epoch,
        block_id: Hash,
        new_set: ValidatorSet,
    },
    /// Time passed; the driver sends this at [`Replica::poll_deadline`].
    Tick,
}

/// Where a message goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// Every validator of the current epoch except this one.
    Broadcast,
    To(PublicKey),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outbound {
    pub to: Destination,
    pub message: Message,
}

/// What must reach stable storage before anything in the same `Ready` is
/// sent. Store `record` and `qcs` atomically (or `qcs` first).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Persist {
    /// The new safety record, if it changed: overwrite the stored one.
    pub record: Option<SafetyRecord>,
    /// Blocks that entered the pending tree, to keep for restart and sync.
    pub blocks: Vec<Block>,
    /// QCs that raised the highest QC or commit blocks.
    pub qcs: Vec<QuorumCert>,
}

/// A question to the application; the answer is an [`Input`].
// At most a few per `Ready`; boxing the block would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// This replica leads `round`: answer with [`Input::Payload`] for a block
    /// extending `parent`.
    NeedPayload {
        round: Round,
        parent: Hash,
        parent_height: Height,
    },
    /// Check this block's payload; answer with [`Input::PayloadValidated`].
    /// The replica votes only on a `valid: true` answer.
    ValidatePayload { block: Block },
    /// Block `block_id` at `height` ended the epoch; once it is applied,
    /// answer with [`Input::EpochChange`] for `epoch` (the same set if
    /// nothing changed).
    NeedValidatorSet {
        epoch: Epoch,
        block_id: Hash,
        height: Height,
    },
}

/// Everything the replica wants done, in the order the driver must do it:
/// 1. persist `persist` (durably: fsync),
/// 2. send `messages`,
/// 3. apply `committed` in order,
/// 4. answer `requests` (later, as inputs), and hand `evidence` to the
///    application.
///
/// Steps 3 and 4 may swap (see the crate's driver contract): applying can
/// wait until the answers are fed back, as long as an answer that needs
/// the applied state applies first.
///
/// Sending a vote, timeout or proposal before its record is durable could
/// let a restarted replica sign a different one for the same round: a
/// double vote, or two proposals (evidence against an honest validator).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    pub persist: Persist,
    pub messages: Vec<Outbound>,
    /// Newly committed blocks, oldest first, each exactly once.
    pub committed: Vec<Block>,
    pub requests: Vec<Request>,
    pub evidence: Vec<Evidence>,
}

impl Ready {
    fn is_empty(&self) -> bool {
        self.persist.record.is_none()
            && self.persist.blocks.is_empty()
            && self.persist.qcs.is_empty()
            && self.messages.is_empty()
            && self.committed.is_empty()
            && self.requests.is_empty()
            && self.evidence.is_empty()
    }
}

#[derive(Debug, Default)]
struct RoundVotes {
    /// Each voter's vote, and whether its signature was checked.
    by_voter: BTreeMap<ValidatorIndex, (Vote, bool)>,
    formed: bool,
}

#[derive(Debug, Default)]
struct RoundTimeouts {
    by_voter: BTreeMap<ValidatorIndex, SignedTimeout>,
    formed: bool,
}

#[derive(Debug, Clone)]
struct PendingProposal {
    round: Round,
    justify: QuorumCert,
    tc: Option<TimeoutCert>,
    parent: ParentInfo,
}

#[derive(Debug, Clone)]
struct Wanted {
    height: Height,
    peer: PublicKey,
    asked_at: Millis,
}

#[derive(Debug, Clone)]
struct Orphan {
    block: Block,
    from: PublicKey,
    /// The proposal signature when it came as a proposal (so it is replayed
    /// as one); `None` for a block that came from sync.
    signature: Option<Signature>,
}

#[derive(Debug, Default)]
struct SyncState {
    wanted: BTreeMap<Hash, Wanted>,
    committed: Option<(PublicKey, Millis)>,
    /// A one-shot committed-range request to a validator whose proposal
    /// named another leader than this replica computes (see
    /// `probe_commits`), and when it was sent.
    probe: Option<(PublicKey, Millis)>,
    /// The peer the last round timeout probed (see `local_timeout`); the
    /// next timeout probes the one after it.
    timeout_probe: Option<PublicKey>,
    /// Highest height a verified QC has shown to exist.
    target_height: Height,
    orphans: BTreeMap<Hash, Orphan>,
}

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

    record: SafetyRecord,
    record_dirty: bool,
    handed_record: SafetyRecord,

    tree: BlockTree,
    root_qc: QuorumCert,
    highest_qc: QuorumCert,
    last_round_tc: Option<TimeoutCert>,
    /// QCs already verified, by block id (only exact copies skip checks).
    certified: BTreeMap<Hash, QuorumCert>,

    round: Round,
    round_deadline: Option<Millis>,
    /// The first `handle` sets the deadline: `new` has no `now`.
    deadline_pending: bool,

    election: LeaderElection,
    votes: BTreeMap<Round, RoundVotes>,
    timeouts: BTreeMap<Round, RoundTimeouts>,
    seen_proposals: BTreeMap<(Round, ValidatorIndex), SignedProposal>,
    evidence_seen: BTreeSet<(Round, ValidatorIndex, u8)>,

    validating: Option<(Round, Hash)>,
    awaiting_payload: Option<PendingProposal>,
    propose_pending: bool,
    pending_commit: Option<QuorumCert>,
    sync: SyncState,

    awaiting_epoch: Option<RootBlock>,
    buffered: Vec<(PublicKey, Message)>,

    out: Ready,
}

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
        let root_qc = QuorumCert::root(epoch, &root);
        let public_key = key.public_key();
        let mut replica = Replica {
            me: set.index_of(&public_key),
            public_key,
            key,
            set,
            epoch,
            now: Millis::ZERO,
            handed_record: record.clone(),
            record,
            record_dirty: false,
            tree: BlockTree::new(root, Round::ZERO),
            highest_qc: root_qc.clone(),
            root_qc,
            last_round_tc: None,
            certified: BTreeMap::new(),
            round: Round::ZERO,
            round_deadline: None,
            deadline_pending: true,
            election: LeaderElection::new(epoch),
            votes: BTreeMap::new(),
            timeouts: BTreeMap::new(),
            seen_proposals: BTreeMap::new(),
            evidence_seen: BTreeSet::new(),
            validating: None,
            awaiting_payload: None,
            propose_pending: false,
            pending_commit: None,
            sync: SyncState::default(),
            awaiting_epoch: None,
            buffered: Vec::new(),
            out: Ready::default(),
            config,
        };
        if let Some(restart) = restart {
            replica.restore(restart)?;
        }
        if replica.awaiting_epoch.is_none() {
            let start = replica
                .highest_qc
                .round()
                .next()
                .max(replica.record.highest_timeout_round)
                .max(Round(1));
            let tc = None;
            replica.advance_round(start, tc);
        }
        Ok(replica)
    }

    fn restore(&mut self, restart: Restart) -> Result<(), Reject> {
        let root = *self.tree.root();
        let mut by_id: BTreeMap<Hash, Block> = restart
            .blocks
            .into_iter()
            .filter(|b| b.epoch() == self.epoch && b.height() > root.height)
            .map(|b| (b.id(), b))
            .collect();
        // The committed chain of this epoch up to what the application
        // applied: history for reputation and sync.
        let mut history = Vec::new();
        let mut cursor = restart.last_applied;
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
            self.election.on_commit(&self.set, &block);
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
        let mut qcs = restart.qcs;
        qcs.sort_by_key(|qc| qc.round());
        for qc in qcs {
            if qc.data.epoch != self.epoch {
                continue;
            }
            if let Err(e) = verify_qc(
                &qc,
                &self.config.chain_id,
                &self.set,
                self.epoch,
                &self.root_qc,
            ) {
                debug!(round = qc.round().0, error = %e, "stored QC does not verify; skipped");
                continue;
            }
            self.certified.insert(qc.block_id(), qc.clone());
            self.process_qc(qc, None);
        }
        // What was just read back is already stored.
        self.out.persist.qcs.clear();
        if self.tree.root().height >= self.epoch_end_height() {
            self.enter_epoch_end();
        }
        Ok(())
    }

    // ----- the driver's interface -------------------------------------

    /// Feeds one input at time `now`. Due timers fire first.
    pub fn handle(&mut self, now: Millis, input: Input) -> Result<(), Reject> {
        self.now = self.now.max(now);
        if self.deadline_pending {
            self.deadline_pending = false;
            if self.awaiting_epoch.is_none() {
                self.round_deadline = Some(self.now.plus(self.round_timeout_ms()));
            }
        }
        self.fire_timers();
        match input {
            Input::Message { from, message } => self.on_message(from, message),
            Input::Payload {
                round,
                parent,
                payload,
                state_root,
            } => self.on_payload(round, parent, payload, state_root),
            Input::PayloadValidated { block_id, valid } => self.on_validated(block_id, valid),
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
        let record = self.record_for_ready();
        if record.is_none() && self.out.is_empty() {
            return None;
        }
        let mut ready = std::mem::take(&mut self.out);
        ready.persist.record = record;
        if let Some(r) = &ready.persist.record {
            self.handed_record = r.clone();
        }
        // Persist before send: every vote, timeout or proposal this replica
        // signed that leaves now is covered by a record handed out with or
        // before it.
        #[cfg(feature = "mutations")]
        let check_covered = !crate::mutations::is(crate::mutations::Mutation::RecordAfterVote);
        #[cfg(not(feature = "mutations"))]
        let check_covered = true;
        for m in ready.messages.iter().filter(|_| check_covered) {
            match &m.message {
                Message::Vote(v) if Some(v.voter) == self.me => {
                    assert_eq!(self.handed_record.epoch, v.data.epoch);
                    assert!(self.handed_record.last_voted_round >= v.data.round);
                }
                Message::Timeout(t) if Some(t.voter) == self.me => {
                    assert_eq!(self.handed_record.epoch, t.epoch);
                    assert!(self.handed_record.highest_timeout_round >= t.round);
                }
                Message::Proposal(p) if Some(p.block.proposer()) == self.me => {
                    assert_eq!(self.handed_record.epoch, p.block.epoch());
                    assert!(self.handed_record.last_proposed_round >= p.block.round());
                }
                _ => {}
            }
        }
        Some(ready)
    }

    /// When the driver must call `handle(.., Input::Tick)` next, if ever.
    pub fn poll_deadline(&self) -> Option<Millis> {
        let sync = self
            .sync
            .wanted
            .values()
            .map(|w| w.asked_at)
            .chain(self.sync.committed.iter().map(|(_, at)| *at))
            .min()
            .map(|at| at.plus(self.config.sync_retry_ms));
        match (self.round_deadline, sync) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ----- read-only views, for drivers and tests ---------------------

    pub fn round(&self) -> Round {
        self.round
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
        &self.record
    }
    pub fn highest_qc(&self) -> &QuorumCert {
        &self.highest_qc
    }
    pub fn committed_height(&self) -> Height {
        self.tree.root().height
    }
    pub fn committed_id(&self) -> Hash {
        self.tree.root().id
    }
    pub fn pending_blocks(&self) -> usize {
        self.tree.len()
    }
    pub fn block(&self, id: &Hash) -> Option<&Block> {
        self.tree.find(id)
    }
    pub fn leader(&self, round: Round) -> ValidatorIndex {
        self.election.leader(&self.set, round)
    }
    /// True while the replica waits for [`Input::EpochChange`].
    pub fn awaiting_epoch_change(&self) -> bool {
        self.awaiting_epoch.is_some()
    }

    // ----- mutation points ---------------------------------------------

    /// The record to hand out in this `Ready`: whenever it changed.
    fn record_for_ready(&mut self) -> Option<SafetyRecord> {
        #[cfg(feature = "mutations")]
        if crate::mutations::is(crate::mutations::Mutation::RecordAfterVote) {
            let me = self.me;
            let signs = self.out.messages.iter().any(|m| match &m.message {
                Message::Vote(v) => Some(v.voter) == me,
                Message::Timeout(t) => Some(t.voter) == me,
                _ => false,
            });
            if signs {
                return None;
            }
        }
        if self.record_dirty {
            self.record_dirty = false;
            Some(self.record.clone())
        } else {
            None
        }
    }

    // ----- helpers -------------------------------------------------------

    fn round_timeout_ms(&self) -> u64 {
        // Rounds since the last QC: zero while rounds succeed.
        let failures = self
            .round
            .0
            .saturating_sub(self.highest_qc.round().0)
            .saturating_sub(1);
        round_timeout_ms(
            self.config.round_timeout_ms,
            self.config.round_timeout_ms_max,
            failures,
        )
    }

    fn epoch_end_height(&self) -> Height {
        Height(
            self.record
                .epoch_root
                .height
                .0
                .saturating_add(self.config.epoch_length_blocks),
        )
    }

    fn key_of(&self, index: ValidatorIndex) -> Result<PublicKey, Reject> {
        self.set
            .get(index)
            .map(|v| v.public_key)
            .ok_or(Reject::UnknownValidator {
                index,
                len: self.set.len(),
            })
    }

    fn send(&mut self, to: Destination, message: Message) {
        trace!(round = self.round.0, kind = message.kind(), "send");
        self.out.messages.push(Outbound { to, message });
    }

    fn report(&mut self, round: Round, validator: ValidatorIndex, kind: u8, evidence: Evidence) {
        if self.evidence_seen.insert((round, validator, kind))
            && self.out.evidence.len() < limits::MAX_PENDING_EVIDENCE
        {
            debug!(
                round = round.0,
                validator = validator.0,
                "equivocation evidence"
            );
            self.out.evidence.push(evidence);
        }
    }

    fn check_epoch(&mut self, got: Epoch, from: PublicKey) -> Result<(), Reject> {
        if got == self.epoch {
            return Ok(());
        }
        if got > self.epoch {
            // Peers are in a later epoch: this replica is behind.
            self.start_committed_sync(from);
        }
        Err(Reject::WrongEpoch {
            got,
            current: self.epoch,
        })
    }

    fn check_round_window(&self, what: &'static str, round: Round) -> Result<(), Reject> {
        if round.0 > self.round.0.saturating_add(limits::MAX_FUTURE_ROUNDS) {
            return Err(Reject::RoundTooFarAhead {
                what,
                round,
                current: self.round,
            });
        }
        Ok(())
    }

    fn verify_qc_cached(&mut self, qc: &QuorumCert) -> Result<(), Reject> {
        if self.certified.get(&qc.block_id()) == Some(qc) || *qc == self.root_qc {
            return Ok(());
        }
        verify_qc(
            qc,
            &self.config.chain_id,
            &self.set,
            self.epoch,
            &self.root_qc,
        )?;
        if self.certified.len() < 2 * limits::MAX_PENDING_BLOCKS {
            self.certified.insert(qc.block_id(), qc.clone());
        }
        Ok(())
    }

    fn next_peer(&self, after: &PublicKey) -> Option<PublicKey> {
        let keys: Vec<PublicKey> = self
            .set
            .validators()
            .iter()
            .map(|v| v.public_key)
            .filter(|k| *k != self.public_key)
            .collect();
        let pos = keys.iter().position(|k| k == after);
        let next = match pos {
            Some(p) => keys.get((p + 1) % keys.len().max(1)),
            None => keys.first(),
        };
        next.copied()
    }

    // ----- timers --------------------------------------------------------

    fn fire_timers(&mut self) {
        if let Some(deadline) = self.round_deadline
            && self.now >= deadline
        {
            self.local_timeout();
        }
        let retry = self.config.sync_retry_ms;
        let now = self.now;
        let due: Vec<Hash> = self
            .sync
            .wanted
            .iter()
            .filter(|(_, w)| w.asked_at.plus(retry) <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let Some(w) = self.sync.wanted.get(&id).cloned() else {
                continue;
            };
            let Some(peer) = self.next_peer(&w.peer) else {
                continue;
            };
            let count = self.ancestors_count(w.height);
            self.sync.wanted.insert(
                id,
                Wanted {
                    height: w.height,
                    peer,
                    asked_at: now,
                },
            );
            self.send(
                Destination::To(peer),
                Message::SyncRequest(SyncRequest::Ancestors { id, count }),
            );
        }
        if let Some((peer, at)) = self.sync.committed
            && at.plus(retry) <= now
        {
            self.sync.committed = None;
            if let Some(next) = self.next_peer(&peer) {
                self.start_committed_sync(next);
            }
        }
    }

    fn local_timeout(&mut self) {
        let round = self.round;
        self.round_deadline = Some(self.now.plus(self.round_timeout_ms()));
        self.probe_on_timeout();
        let Some(me) = self.me else { return };
        // Timed out already in this round (possibly before a restart):
        // resend the same timeout, never a different one.
        if self.record.highest_timeout_round == round
            && let Some(t) = self.record.last_timeout.clone()
            && t.round == round
            && t.epoch == self.epoch
        {
            self.send(Destination::Broadcast, Message::Timeout(t));
            return;
        }
        let last_tc_round = self.last_round_tc.as_ref().map(|tc| tc.round);
        if let Err(e) =
            is_safe_to_timeout(&self.record, round, self.highest_qc.round(), last_tc_round)
        {
            debug!(round = round.0, error = %e, "not timing out");
            return;
        }
        let timeout = Timeout::sign(
            self.epoch,
            round,
            self.highest_qc.clone(),
            self.last_round_tc
                .clone()
                .filter(|tc| tc.round.next() == round),
            me,
            &self.key,
            &self.config.chain_id,
        );
        // DiemBFT v4 make_timeout: no vote in a round after timing it out.
        self.record.last_voted_round = self.record.last_voted_round.max(round);
        self.record.highest_timeout_round = round;
        self.record.last_timeout = Some(timeout.clone());
        self.record_dirty = true;
        debug!(round = round.0, validator = me.0, "timeout");
        self.send(Destination::Broadcast, Message::Timeout(timeout.clone()));
        self.add_timeout(timeout.header());
    }

    // ----- rounds ----------------------------------------------------------

    fn advance_round(&mut self, round: Round, via_tc: Option<TimeoutCert>) {
        if round <= self.round || self.awaiting_epoch.is_some() {
            return;
        }
        self.round = round;
        self.last_round_tc = via_tc;
        self.validating = None;
        self.awaiting_payload = None;
        self.propose_pending = false;
        if !self.deadline_pending {
            self.round_deadline = Some(self.now.plus(self.round_timeout_ms()));
        }
        let keep_from = Round(round.0.saturating_sub(2));
        self.votes = self.votes.split_off(&keep_from);
        self.timeouts = self.timeouts.split_off(&keep_from);
        let keep_seen = Round(round.0.saturating_sub(limits::MAX_TRACKED_ROUNDS as u64));
        self.seen_proposals = self
            .seen_proposals
            .split_off(&(keep_seen, ValidatorIndex(0)));
        self.evidence_seen = self
            .evidence_seen
            .split_off(&(keep_seen, ValidatorIndex(0), 0));
        debug!(
            round = round.0,
            height = self.tree.root().height.0,
            "entered round"
        );
        if self.me.is_some() && self.leader(round) == self.me.unwrap_or_default() {
            self.start_proposal();
        }
    }

    fn process_qc(&mut self, qc: QuorumCert, from: Option<PublicKey>) {
        debug_assert!(qc.data.epoch == self.epoch);
        if qc.round() > self.highest_qc.round() {
            self.highest_qc = qc.clone();
            if self.record.highest_qc_round < qc.round() {
                self.record.highest_qc_round = qc.round();
                self.record_dirty = true;
            }
            self.out.persist.qcs.push(qc.clone());
            self.sync.target_height = self.sync.target_height.max(qc.data.height);
        }
        if qc.data.height > self.tree.root().height && !self.tree.contains(&qc.block_id()) {
            self.want(qc.block_id(), qc.data.height, from);
        }
        if let Some(target) = commit_rule(&qc.data) {
            if Height(qc.data.height.0.saturating_sub(1)) >= self.epoch_end_height() {
                // This QC commits the epoch's last block, and committing it
                // stops the rounds. Enter the next round first: its leader
                // proposes at once (an empty block above the epoch's end),
                // and that proposal is how the other replicas learn this QC
                // when its leader formed it. Otherwise they only learn it
                // by timing out the round and syncing.
                self.advance_round(qc.round().next(), None);
            }
            self.try_commit(target, &qc, from);
        }
        self.advance_round(qc.round().next(), None);
    }

    fn process_tc(&mut self, tc: TimeoutCert) {
        if tc.round >= self.round {
            let next = tc.round.next();
            self.advance_round(next, Some(tc));
        }
    }

    // ----- commits -------------------------------------------------------

    fn try_commit(&mut self, target: Hash, qc: &QuorumCert, from: Option<PublicKey>) {
        if self.awaiting_epoch.is_some() {
            return;
        }
        // The target is the parent of the QC's block.
        let target_height = Height(qc.data.height.0.saturating_sub(1));
        if target_height <= self.tree.root().height {
            // Committed already, before a restart (the QC was read back from
            // storage): keep it as the commit's proof, so that this replica
            // can hand the committed range to peers that did not see it.
            self.tree
                .add_missing_proof(&target, (Vec::new(), qc.clone()));
            return;
        }
        match self.tree.chain_to(&target) {
            Ok(chain) => self.commit_chain(chain, qc),
            Err(Some(missing)) => {
                if self
                    .pending_commit
                    .as_ref()
                    .is_none_or(|p| p.round() < qc.round())
                {
                    self.pending_commit = Some(qc.clone());
                }
                self.want(missing, target_height, from);
            }
            Err(None) => {
                debug!(
                    round = qc.round().0,
                    "QC commits a block conflicting with the committed chain"
                );
            }
        }
    }

    fn commit_chain(&mut self, chain: Vec<Block>, qc: &QuorumCert) {
        let end = self.epoch_end_height();
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
            self.election.on_commit(&self.set, &block);
            self.out.committed.push(block.clone());
            self.tree.commit(block, None);
        }
        self.tree.set_last_proof((suffix, qc.clone()));
        if !self.out.persist.qcs.contains(qc) {
            self.out.persist.qcs.push(qc.clone());
        }
        let root = self.tree.root().id;
        self.certified
            .retain(|id, _| *id == root || self.tree.contains(id));
        if self
            .pending_commit
            .as_ref()
            .is_some_and(|p| p.data.height.0.saturating_sub(1) <= self.tree.root().height.0)
        {
            self.pending_commit = None;
        }
        let root_height = self.tree.root().height;
        self.sync.wanted.retain(|_, w| w.height > root_height);
        self.sync
            .orphans
            .retain(|_, o| o.block.height() > root_height);
        if self.tree.root().height >= end {
            self.enter_epoch_end();
        }
    }

    fn enter_epoch_end(&mut self) {
        let root = *self.tree.root();
        debug!(height = root.height.0, epoch = self.epoch.0, "epoch ends");
        self.awaiting_epoch = Some(root);
        self.round_deadline = None;
        self.validating = None;
        self.awaiting_payload = None;
        self.out.requests.push(Request::NeedValidatorSet {
            epoch: self.epoch.next(),
            block_id: root.id,
            height: root.height,
        });
    }

    fn on_epoch_change(
        &mut self,
        epoch: Epoch,
        block_id: Hash,
        new_set: ValidatorSet,
    ) -> Result<(), Reject> {
        let Some(root) = self.awaiting_epoch else {
            return Err(Reject::Unexpected {
                what: "epoch change",
                reason: "the epoch has not ended",
            });
        };
        if epoch != self.epoch.next() || block_id != root.id {
            return Err(Reject::Unexpected {
                what: "epoch change",
                reason: "epoch or block does not match the epoch's last block",
            });
        }
        debug!(
            epoch = epoch.0,
            height = root.height.0,
            validators = new_set.len(),
            "new epoch"
        );
        self.epoch = epoch;
        self.me = new_set.index_of(&self.public_key);
        self.set = new_set;
        self.record = SafetyRecord::fresh(epoch, root);
        self.record_dirty = true;
        self.tree.restart_epoch(root);
        self.root_qc = QuorumCert::root(epoch, &root);
        self.highest_qc = self.root_qc.clone();
        self.last_round_tc = None;
        self.certified.clear();
        self.round = Round::ZERO;
        self.election = LeaderElection::new(epoch);
        self.votes.clear();
        self.timeouts.clear();
        self.seen_proposals.clear();
        self.evidence_seen.clear();
        self.pending_commit = None;
        self.sync = SyncState::default();
        self.awaiting_epoch = None;
        self.advance_round(Round(1), None);
        self.round_deadline = Some(self.now.plus(self.round_timeout_ms()));
        for (from, message) in std::mem::take(&mut self.buffered) {
            if let Err(e) = self.on_message(from, message) {
                trace!(error = %e, "buffered message refused");
            }
        }
        Ok(())
    }

    // ----- messages --------------------------------------------------------

    fn on_message(&mut self, from: PublicKey, message: Message) -> Result<(), Reject> {
        if let Some(root) = self.awaiting_epoch {
            let next = self.epoch.next();
            return match message {
                Message::SyncRequest(req) => self.on_sync_request(from, req),
                m if message_epoch(&m) == Some(next) => {
                    if self.buffered.len() >= limits::MAX_BUFFERED_NEXT_EPOCH {
                        return Err(Reject::Full {
                            what: "next-epoch buffer",
                            limit: limits::MAX_BUFFERED_NEXT_EPOCH,
                        });
                    }
                    self.buffered.push((from, m));
                    let _ = root;
                    Ok(())
                }
                _ => Err(Reject::AwaitingEpochChange { next }),
            };
        }
        match message {
            Message::Proposal(p) => self.on_proposal(from, p),
            Message::Vote(v) => self.on_vote(from, v),
            Message::Timeout(t) => self.on_timeout(from, t),
            Message::SyncRequest(req) => self.on_sync_request(from, req),
            Message::SyncResponse(resp) => self.on_sync_response(from, resp),
        }
    }

    fn on_proposal(&mut self, from: PublicKey, proposal: Proposal) -> Result<(), Reject> {
        let block = &proposal.block;
        let round = block.round();
        self.check_epoch(block.epoch(), from)?;
        let proposer = block.proposer();
        let proposer_key = self.key_of(proposer)?;
        // No round window here: a proposal far ahead is how a replica that
        // fell behind learns it did. Its certificates are checked before
        // they count, and a QC already checked costs nothing again.
        let signed = proposal_signing_bytes(&self.config.chain_id, self.epoch, round, &block.id());
        proposer_key
            .verify_raw(&signed, &proposal.signature)
            .map_err(|_| Reject::BadSignature {
                what: "proposal",
                signer: proposer,
            })?;
        check_block_shape(block, self.config.payload_bytes_max)?;
        self.verify_qc_cached(block.justify())?;
        if let Some(tc) = block.timeout_cert() {
            verify_tc(tc, &self.config.chain_id, &self.set, self.epoch)?;
        }
        // Certificates count whoever carried them.
        self.process_qc(block.justify().clone(), Some(from));
        if let Some(tc) = block.timeout_cert() {
            self.process_tc(tc.clone());
        }
        if self.awaiting_epoch.is_some() {
            return Err(Reject::AwaitingEpochChange {
                next: self.epoch.next(),
            });
        }
        self.check_round_window("proposal", round)?;
        // Equivocation: two signed proposals of one proposer in one round.
        let header = proposal.header();
        match self.seen_proposals.get(&(round, proposer)).copied() {
            Some(first) if first.block_id != block.id() => {
                self.report(
                    round,
                    proposer,
                    1,
                    Evidence::ConflictingProposals {
                        first,
                        second: header,
                    },
                );
                return Err(Reject::Equivocation {
                    validator: proposer,
                    round,
                });
            }
            Some(_) if self.tree.contains(&block.id()) => return Ok(()),
            Some(_) => {}
            None => {
                self.seen_proposals.insert((round, proposer), header);
            }
        }
        let leader = self.leader(round);
        if proposer != leader {
            self.probe_commits(proposer_key);
            return Err(Reject::WrongLeader {
                round,
                proposer,
                leader,
            });
        }
        let block = proposal.block.clone();
        if !self.accept_block(block.clone(), from, Some(proposal.signature))? {
            return Ok(());
        }
        self.maybe_vote(&block)
    }

    /// Puts a block whose QC is verified into the tree, or among the orphans
    /// if its parent is missing. Returns true if it is in the tree.
    fn accept_block(
        &mut self,
        block: Block,
        from: PublicKey,
        signature: Option<Signature>,
    ) -> Result<bool, Reject> {
        let id = block.id();
        if self.tree.contains(&id) {
            return Ok(true);
        }
        if block.height() <= self.tree.root().height {
            return Err(Reject::OldRound {
                what: "block",
                round: block.round(),
                current: self.round,
            });
        }
        let Some(parent) = self.tree.parent_info(&block.parent_id()) else {
            if self.sync.orphans.len() >= limits::MAX_ORPHAN_BLOCKS {
                let oldest = self
                    .sync
                    .orphans
                    .iter()
                    .min_by_key(|(_, o)| (o.block.round(), o.block.id()))
                    .map(|(id, _)| *id);
                if let Some(oldest) = oldest {
                    self.sync.orphans.remove(&oldest);
                }
            }
            let parent_id = block.parent_id();
            let parent_height = Height(block.height().0 - 1);
            debug!(
                height = block.height().0,
                round = block.round().0,
                "parent missing; fetching"
            );
            self.sync.orphans.insert(
                id,
                Orphan {
                    block,
                    from,
                    signature,
                },
            );
            self.want(parent_id, parent_height, Some(from));
            return Ok(false);
        };
        check_against_parent(&block, &parent, self.epoch_end_height())?;
        if self.tree.len() >= limits::MAX_PENDING_BLOCKS {
            return Err(Reject::Full {
                what: "pending block tree",
                limit: limits::MAX_PENDING_BLOCKS,
            });
        }
        let justify = signature.is_none().then(|| block.justify().clone());
        self.tree.insert(block.clone());
        self.out.persist.blocks.push(block);
        self.sync.wanted.remove(&id);
        // A block fetched by sync (not proposed to this replica) carries a
        // QC for its parent that this replica may never have seen, and that
        // QC may be the only one that commits the grandparent: a replica
        // that missed those rounds (crashed, partitioned) would otherwise
        // stay behind the others' commits, refuse every payload attesting
        // state it has not executed, and disagree on leaders (reputation
        // comes from the committed chain) until some later QC happened to
        // commit further. A proposal's QC is processed in `on_proposal`.
        if let Some(qc) = justify
            && qc.data.epoch == self.epoch
            && self.verify_qc_cached(&qc).is_ok()
        {
            self.process_qc(qc, Some(from));
        }
        // Children that were waiting for this block.
        let children: Vec<Hash> = self
            .sync
            .orphans
            .iter()
            .filter(|(_, o)| o.block.parent_id() == id)
            .map(|(k, _)| *k)
            .collect();
        for child in children {
            let Some(orphan) = self.sync.orphans.remove(&child) else {
                continue;
            };
            let result = match orphan.signature {
                Some(signature) => self.on_proposal(
                    orphan.from,
                    Proposal {
                        block: orphan.block,
                        signature,
                    },
                ),
                None => self
                    .accept_block(orphan.block, orphan.from, None)
                    .map(|_| ()),
            };
            if let Err(e) = result {
                trace!(error = %e, "orphan refused");
            }
        }
        self.retry_pending();
        Ok(true)
    }

    fn retry_pending(&mut self) {
        if let Some(qc) = self.pending_commit.clone()
            && let Some(target) = commit_rule(&qc.data)
            && self.tree.chain_to(&target).is_ok()
        {
            self.pending_commit = None;
            self.try_commit(target, &qc, None);
        }
        if self.propose_pending && self.tree.parent_info(&self.highest_qc.block_id()).is_some() {
            self.propose_pending = false;
            self.start_proposal();
        }
    }

    fn maybe_vote(&mut self, block: &Block) -> Result<(), Reject> {
        let round = block.round();
        is_safe_to_vote(
            &self.record,
            round,
            block.justify().round(),
            block.timeout_cert(),
        )?;
        if round != self.round {
            return Err(Reject::OldRound {
                what: "proposal",
                round,
                current: self.round,
            });
        }
        let now_ms = self.now.as_u64();
        if block.timestamp_ms() > now_ms.saturating_add(self.config.clock_drift_ms_max) {
            return Err(Reject::TimestampTooFarAhead {
                timestamp_ms: block.timestamp_ms(),
                now_ms,
                drift_ms: self.config.clock_drift_ms_max,
            });
        }
        let Some(me) = self.me else { return Ok(()) };
        if self.validating.is_some_and(|(r, _)| r == round) {
            return Ok(());
        }
        let after_end = Height(block.height().0 - 1) >= self.epoch_end_height();
        if block.proposer() == me || after_end {
            // Our own payload came from the application; blocks after the
            // epoch's end carry none.
            self.vote(block);
        } else {
            self.validating = Some((round, block.id()));
            self.out.requests.push(Request::ValidatePayload {
                block: block.clone(),
            });
        }
        Ok(())
    }

    fn on_validated(&mut self, block_id: Hash, valid: bool) -> Result<(), Reject> {
        let Some((round, id)) = self.validating.filter(|(_, id)| *id == block_id) else {
            return Err(Reject::Unexpected {
                what: "payload verdict",
                reason: "no validation is pending for this block in this round",
            });
        };
        self.validating = None;
        if !valid {
            debug!(round = round.0, "payload invalid; no vote");
            return Ok(());
        }
        let block = self
            .tree
            .get(&id)
            .cloned()
            .ok_or(Reject::UnknownBlock { id })?;
        is_safe_to_vote(
            &self.record,
            round,
            block.justify().round(),
            block.timeout_cert(),
        )?;
        self.vote(&block);
        Ok(())
    }

    fn vote(&mut self, block: &Block) {
        let Some(me) = self.me else { return };
        let data = block.vote_data();
        assert!(
            data.round > self.record.last_voted_round,
            "one vote per round"
        );
        assert_eq!(data.epoch, self.record.epoch);
        let vote = Vote::sign(data, me, &self.key, &self.config.chain_id);
        self.record.last_voted_round = data.round;
        self.record.last_vote = Some(vote.clone());
        self.record_dirty = true;
        let next = self.leader(data.round.next());
        debug!(
            height = data.height.0,
            round = data.round.0,
            validator = me.0,
            "vote"
        );
        if next == me {
            self.add_vote(vote, true);
        } else if let Ok(key) = self.key_of(next) {
            self.send(Destination::To(key), Message::Vote(vote));
        }
    }

    fn on_vote(&mut self, from: PublicKey, vote: Vote) -> Result<(), Reject> {
        let round = vote.data.round;
        self.check_epoch(vote.data.epoch, from)?;
        let key = self.key_of(vote.voter)?;
        if round.next() < self.round {
            return Err(Reject::OldRound {
                what: "vote",
                round,
                current: self.round,
            });
        }
        self.check_round_window("vote", round)?;
        if Some(self.leader(round.next())) != self.me {
            return Err(Reject::NotNextLeader { round });
        }
        let chain = self.config.chain_id.clone();
        if let Some((first, verified)) = self
            .votes
            .get(&round)
            .and_then(|rv| rv.by_voter.get(&vote.voter))
            .cloned()
        {
            if first.data == vote.data {
                if verified || first.signature == vote.signature {
                    return Ok(());
                }
                // The same data under another signature, while the stored
                // copy is unchecked: one of them is forged. Keeping the first
                // would let a forgery sent ahead shadow the voter's real
                // vote, which is never sent again, and be dropped only when
                // a quorum is checked: no QC would form. So the new one is
                // checked now and, if good, replaces the stored one.
                key.verify_raw(&vote.data.signing_bytes(&chain), &vote.signature)
                    .map_err(|_| Reject::BadSignature {
                        what: "vote",
                        signer: vote.voter,
                    })?;
                self.add_vote(vote, true);
                return Ok(());
            }
            if key
                .verify_raw(&vote.data.signing_bytes(&chain), &vote.signature)
                .is_err()
            {
                return Err(Reject::BadSignature {
                    what: "vote",
                    signer: vote.voter,
                });
            }
            let first_ok = verified
                || key
                    .verify_raw(&first.data.signing_bytes(&chain), &first.signature)
                    .is_ok();
            if first_ok {
                let voter = vote.voter;
                self.report(
                    round,
                    voter,
                    2,
                    Evidence::ConflictingVotes {
                        first,
                        second: vote,
                    },
                );
                return Err(Reject::Equivocation {
                    validator: voter,
                    round,
                });
            }
            // The stored one was a forgery: the new one replaces it.
        }
        self.add_vote(vote, false);
        Ok(())
    }

    /// Adds a vote (its signature checked or not) and forms a QC once the
    /// votes for one block reach a quorum, checking the unchecked ones in
    /// one batch first (Jolteon Fig. 3: the next leader forms the QC).
    fn add_vote(&mut self, vote: Vote, verified: bool) {
        let round = vote.data.round;
        let data = vote.data;
        let rv = self.votes.entry(round).or_default();
        if rv.formed {
            return;
        }
        rv.by_voter.insert(vote.voter, (vote, verified));
        let matching = |rv: &RoundVotes| -> Vec<ValidatorIndex> {
            rv.by_voter
                .iter()
                .filter(|(_, (v, _))| v.data == data)
                .map(|(i, _)| *i)
                .collect()
        };
        let power = self.set.power_of_set(matching(rv)).unwrap_or(0);
        if !qc_has_quorum(&self.set, power) {
            return;
        }
        // Check every unchecked signature for this block in one batch.
        let signed = data.signing_bytes(&self.config.chain_id);
        let unchecked: Vec<(ValidatorIndex, Signature)> = rv
            .by_voter
            .iter()
            .filter(|(_, (v, ok))| v.data == data && !ok)
            .map(|(i, (v, _))| (*i, v.signature))
            .collect();
        let items: Vec<VerifyItem<'_>> = unchecked
            .iter()
            .filter_map(|(i, s)| {
                self.set.get(*i).map(|v| VerifyItem {
                    public_key: v.public_key,
                    signed: &signed,
                    signature: *s,
                })
            })
            .collect();
        let results = verify_all(&items);
        for ((i, _), ok) in unchecked.iter().zip(results) {
            if ok {
                if let Some(entry) = rv.by_voter.get_mut(i) {
                    entry.1 = true;
                }
            } else {
                debug!(
                    round = round.0,
                    validator = i.0,
                    "bad vote signature dropped"
                );
                rv.by_voter.remove(i);
            }
        }
        let voters = matching(rv);
        let power = self.set.power_of_set(voters.iter().copied()).unwrap_or(0);
        if !qc_has_quorum(&self.set, power) {
            return;
        }
        rv.formed = true;
        let signatures: Vec<(ValidatorIndex, Signature)> = voters
            .iter()
            .filter_map(|i| rv.by_voter.get(i).map(|(v, _)| (*i, v.signature)))
            .collect();
        let qc = QuorumCert { data, signatures };
        debug!(height = data.height.0, round = round.0, "QC formed");
        self.certified.insert(qc.block_id(), qc.clone());
        self.process_qc(qc, None);
    }

    fn on_timeout(&mut self, from: PublicKey, timeout: Timeout) -> Result<(), Reject> {
        let round = timeout.round;
        self.check_epoch(timeout.epoch, from)?;
        let key = self.key_of(timeout.voter)?;
        if round < self.round {
            return Err(Reject::OldRound {
                what: "timeout",
                round,
                current: self.round,
            });
        }
        if let Err(e) = self.check_round_window("timeout", round) {
            // Too far ahead to keep, but its QC (if valid) still tells this
            // replica how far behind it is.
            if self.verify_qc_cached(&timeout.high_qc).is_ok() {
                self.process_qc(timeout.high_qc, Some(from));
            }
            return Err(e);
        }
        if timeout.high_qc.round() >= round {
            return Err(Reject::MalformedCertificate {
                what: "timeout",
                round,
                reason: "highest QC is not below the timeout's round",
            });
        }
        let header = timeout.header();
        let existing = self
            .timeouts
            .get(&round)
            .and_then(|rt| rt.by_voter.get(&timeout.voter))
            .copied();
        if existing.is_some_and(|e| e.high_qc_round == header.high_qc_round) {
            return Ok(());
        }
        key.verify_raw(
            &timeout.signing_bytes(&self.config.chain_id),
            &timeout.signature,
        )
        .map_err(|_| Reject::BadSignature {
            what: "timeout",
            signer: timeout.voter,
        })?;
        if let Some(first) = existing {
            self.report(
                round,
                timeout.voter,
                3,
                Evidence::ConflictingTimeouts {
                    first,
                    second: header,
                },
            );
            return Err(Reject::Equivocation {
                validator: timeout.voter,
                round,
            });
        }
        self.verify_qc_cached(&timeout.high_qc)?;
        if let Some(tc) = &timeout.last_round_tc {
            if tc.round.next() != round {
                return Err(Reject::MalformedCertificate {
                    what: "timeout",
                    round: tc.round,
                    reason: "last-round TC is not for the round before",
                });
            }
            verify_tc(tc, &self.config.chain_id, &self.set, self.epoch)?;
        }
        self.process_qc(timeout.high_qc, Some(from));
        if let Some(tc) = timeout.last_round_tc {
            self.process_tc(tc);
        }
        if self.awaiting_epoch.is_some() {
            return Ok(());
        }
        self.add_timeout(header);
        // Jolteon Fig. 3, pacemaker: join a round's timeout once more than
        // a third of the power (at least one honest) has timed out, so timers
        // that drifted apart still produce a TC.
        if round == self.round
            && self.record.highest_timeout_round < round
            && let Some(rt) = self.timeouts.get(&round)
        {
            let power = self
                .set
                .power_of_set(rt.by_voter.keys().copied())
                .unwrap_or(0);
            if self.set.is_validity(power) {
                self.local_timeout();
            }
        }
        Ok(())
    }

    fn add_timeout(&mut self, header: SignedTimeout) {
        let round = header.round;
        if round.0 + 2 < self.round.0 {
            return;
        }
        let rt = self.timeouts.entry(round).or_default();
        if rt.formed {
            return;
        }
        rt.by_voter.insert(header.voter, header);
        let power = self
            .set
            .power_of_set(rt.by_voter.keys().copied())
            .unwrap_or(0);
        if !qc_has_quorum(&self.set, power) {
            return;
        }
        rt.formed = true;
        let entries = rt
            .by_voter
            .values()
            .map(|t| TimeoutSignature {
                voter: t.voter,
                high_qc_round: t.high_qc_round,
                signature: t.signature,
            })
            .collect();
        let tc = TimeoutCert {
            epoch: self.epoch,
            round,
            entries,
        };
        debug!(round = round.0, "TC formed");
        self.process_tc(tc);
    }

    // ----- proposing -----------------------------------------------------

    fn start_proposal(&mut self) {
        let round = self.round;
        // A leader that voted (for its own block) or timed out in this round
        // already proposed in it, before a restart: a second block for the
        // round would be reported as equivocation evidence.
        if self.record.last_voted_round >= round {
            debug!(
                round = round.0,
                "already proposed or timed out in this round"
            );
            return;
        }
        let justify = self.highest_qc.clone();
        let Some(parent) = self.tree.parent_info(&justify.block_id()) else {
            self.propose_pending = true;
            let height = justify.data.height;
            self.want(justify.block_id(), height, None);
            return;
        };
        let tc = if justify.round().next() == round {
            None
        } else {
            match self
                .last_round_tc
                .clone()
                .filter(|tc| tc.round.next() == round)
            {
                Some(tc) => Some(tc),
                None => {
                    debug!(
                        round = round.0,
                        "leading without a QC or TC of the previous round"
                    );
                    return;
                }
            }
        };
        let pending = PendingProposal {
            round,
            justify,
            tc,
            parent,
        };
        if parent.height >= self.epoch_end_height() {
            // After the epoch's last block: an empty block keeps the chain
            // moving until that block commits.
            self.propose(pending, Vec::new(), parent.state_root);
        } else {
            self.out.requests.push(Request::NeedPayload {
                round,
                parent: parent.id,
                parent_height: parent.height,
            });
            self.awaiting_payload = Some(pending);
        }
    }

    fn on_payload(
        &mut self,
        round: Round,
        parent: Hash,
        payload: Vec<u8>,
        state_root: Hash,
    ) -> Result<(), Reject> {
        let Some(pending) = self
            .awaiting_payload
            .take_if(|p| p.round == round && p.parent.id == parent)
        else {
            return Err(Reject::Unexpected {
                what: "payload",
                reason: "this replica is not waiting for a payload for that round and parent",
            });
        };
        if payload.len() > self.config.payload_bytes_max {
            self.awaiting_payload = Some(pending);
            return Err(Reject::PayloadTooLarge {
                got: payload.len(),
                limit: self.config.payload_bytes_max,
            });
        }
        self.propose(pending, payload, state_root);
        Ok(())
    }

    fn propose(&mut self, pending: PendingProposal, payload: Vec<u8>, state_root: Hash) {
        let Some(me) = self.me else { return };
        assert_eq!(pending.round, self.round);
        if pending.round <= self.record.last_proposed_round {
            // Restarted after proposing in this round: another block would
            // be a second proposal for the round, evidence against this
            // validator. The round times out instead.
            debug!(round = pending.round.0, "already proposed in this round");
            return;
        }
        // Persisted before the proposal leaves (`poll_ready` checks it).
        self.record.last_proposed_round = pending.round;
        self.record_dirty = true;
        let block = Block::new(BlockFields {
            epoch: self.epoch,
            round: pending.round,
            height: pending.parent.height.next(),
            proposer: me,
            timestamp_ms: self
                .now
                .as_u64()
                .max(pending.parent.timestamp_ms.saturating_add(1)),
            state_root,
            justify: pending.justify,
            timeout_cert: pending.tc,
            payload,
        });
        let proposal = Proposal::sign(block.clone(), &self.key, &self.config.chain_id);
        debug!(
            height = block.height().0,
            round = block.round().0,
            validator = me.0,
            "propose"
        );
        self.seen_proposals
            .insert((block.round(), me), proposal.header());
        self.send(Destination::Broadcast, Message::Proposal(proposal));
        let from = self.public_key;
        match self.accept_block(block.clone(), from, None) {
            Ok(true) => {
                if let Err(e) = self.maybe_vote(&block) {
                    debug!(round = block.round().0, error = %e, "no vote for own block");
                }
            }
            Ok(false) => {}
            Err(e) => debug!(round = block.round().0, error = %e, "own block refused"),
        }
    }

    // ----- sync -----------------------------------------------------------

    fn ancestors_count(&self, height: Height) -> u16 {
        let gap = height.0.saturating_sub(self.tree.root().height.0).max(1);
        gap.min(limits::MAX_SYNC_BLOCKS as u64) as u16
    }

    fn want(&mut self, id: Hash, height: Height, from: Option<PublicKey>) {
        if self.tree.contains(&id)
            || id == self.tree.root().id
            || self.sync.wanted.contains_key(&id)
        {
            return;
        }
        let peer = match from.filter(|k| *k != self.public_key) {
            Some(p) => p,
            None => match self.next_peer(&self.public_key) {
                Some(p) => p,
                None => return,
            },
        };
        let gap = height.0.saturating_sub(self.tree.root().height.0);
        if gap > limits::SYNC_ANCESTORS_GAP_MAX {
            self.start_committed_sync(peer);
            return;
        }
        if self.sync.wanted.len() >= limits::MAX_WANTED_BLOCKS {
            return;
        }
        let count = self.ancestors_count(height);
        self.sync.wanted.insert(
            id,
            Wanted {
                height,
                peer,
                asked_at: self.now,
            },
        );
        trace!(height = height.0, "fetching block");
        self.send(
            Destination::To(peer),
            Message::SyncRequest(SyncRequest::Ancestors { id, count }),
        );
    }

    /// Leaders come from the committed chain's reputation, so two replicas
    /// one commit apart may disagree on leaders, and when they split the
    /// power in halves neither side can form a QC: the commit that would
    /// reconcile them (its QC reached only some replicas) never spreads,
    /// since no new QC forms. A signed proposal from a validator this
    /// replica does not take for the leader is the sign: ask that proposer
    /// once for the committed blocks above this replica's root. A proposer
    /// that is not ahead has no such range and does not answer, but learns
    /// from the request that this replica is ahead and probes it back
    /// (`note_requester_ahead`); at most one probe per sync retry period.
    fn probe_commits(&mut self, peer: PublicKey) {
        let retry = self.config.sync_retry_ms;
        if peer == self.public_key
            || self.sync.committed.is_some()
            || self
                .sync
                .probe
                .is_some_and(|(_, at)| self.now < at.plus(retry))
        {
            return;
        }
        self.sync.probe = Some((peer, self.now));
        let from_height = self.tree.root().height.next();
        debug!(height = from_height.0, "probing a peer for commits");
        self.send(
            Destination::To(peer),
            Message::SyncRequest(SyncRequest::Committed {
                epoch: self.epoch,
                from_height,
            }),
        );
    }

    /// A failed round may be a split on leaders (see `probe_commits`) in
    /// which no validator proposes at all: the leader each side computes
    /// takes another for the leader. Nothing then shows who is ahead, so
    /// each timeout probes the next peer in turn for commits above this
    /// replica's root. A peer ahead answers; a peer behind learns from the
    /// request that this replica is ahead and probes it back
    /// (`note_requester_ahead`); a peer at the same height has nothing to
    /// say. One small request per timed-out round, and within `n - 1`
    /// failed rounds every pair of replicas has compared commits.
    fn probe_on_timeout(&mut self) {
        let after = self.sync.timeout_probe.unwrap_or(self.public_key);
        let Some(peer) = self.next_peer(&after) else {
            return;
        };
        self.sync.timeout_probe = Some(peer);
        self.probe_commits(peer);
    }

    /// The other half of [`Replica::probe_commits`]: a committed-range
    /// request of this epoch that starts above `root + 1` shows that its
    /// sender committed beyond this replica's root. When the replicas
    /// that are behind are the ones proposing (their leader is not the one
    /// the replicas ahead compute), only the replicas ahead probe, and they
    /// probe a proposer that has nothing to give; without this the replicas
    /// behind never learn the commit that would make them agree on leaders
    /// again (simulator seed 1351). The answer is a one-shot probe back,
    /// rate-limited like any probe, so a peer lying about its height costs
    /// one request per sync retry period and is never retried.
    fn note_requester_ahead(&mut self, from: PublicKey, epoch: Epoch, from_height: Height) {
        // Only a validator's request counts: the probe slot is one per
        // retry period, and a peer outside the set could otherwise keep it
        // taken with made-up heights.
        if self.awaiting_epoch.is_none()
            && epoch == self.epoch
            && self.set.index_of(&from).is_some()
            && from_height > self.tree.root().height.next()
        {
            self.probe_commits(from);
        }
    }

    fn start_committed_sync(&mut self, peer: PublicKey) {
        if self.sync.committed.is_some() || peer == self.public_key {
            return;
        }
        self.sync.committed = Some((peer, self.now));
        let from_height = self.tree.root().height.next();
        debug!(height = from_height.0, "fetching committed blocks");
        self.send(
            Destination::To(peer),
            Message::SyncRequest(SyncRequest::Committed {
                epoch: self.epoch,
                from_height,
            }),
        );
    }

    fn on_sync_request(&mut self, from: PublicKey, request: SyncRequest) -> Result<(), Reject> {
        let response = match request {
            SyncRequest::Ancestors { id, count } => {
                let blocks = self.tree.ancestors(&id, usize::from(count));
                if blocks.is_empty() {
                    return Err(Reject::UnknownBlock { id });
                }
                SyncResponse::Ancestors { blocks }
            }
            SyncRequest::Committed { epoch, from_height } => {
                self.note_requester_ahead(from, epoch, from_height);
                let Some((blocks, commit_qc)) = self.tree.committed_range(epoch, from_height)
                else {
                    return Err(Reject::Unexpected {
                        what: "committed range request",
                        reason: "the range is not in the committed window",
                    });
                };
                SyncResponse::Committed { blocks, commit_qc }
            }
        };
        self.send(Destination::To(from), Message::SyncResponse(response));
        Ok(())
    }

    fn on_sync_response(&mut self, from: PublicKey, response: SyncResponse) -> Result<(), Reject> {
        match response {
            SyncResponse::Ancestors { blocks } => {
                let mut accepted = 0usize;
                for block in blocks {
                    // Only ids this replica asked for, each certified by a
                    // verified QC or hash-linked to one: the id check is the
                    // verification.
                    if self.sync.wanted.remove(&block.id()).is_none() {
                        continue;
                    }
                    accepted += 1;
                    if block.epoch() != self.epoch || block.height() <= self.tree.root().height {
                        continue;
                    }
                    if let Err(e) = self.accept_block(block, from, None) {
                        trace!(error = %e, "synced block refused");
                    }
                }
                if accepted == 0 {
                    return Err(Reject::Unsolicited {
                        what: "ancestor blocks",
                    });
                }
                Ok(())
            }
            SyncResponse::Committed { blocks, commit_qc } => {
                // Only the peer asked closes a request: were any answer to
                // do so, a peer could cancel every catch-up with a
                // worthless range and have the real answer refused.
                let asked = self.sync.committed.is_some_and(|(p, _)| p == from);
                if asked {
                    self.sync.committed = None;
                } else if self.sync.probe.is_some_and(|(p, _)| p == from) {
                    self.sync.probe = None;
                } else {
                    return Err(Reject::Unsolicited {
                        what: "committed range",
                    });
                }
                let result = self.on_committed_range(from, blocks, commit_qc);
                if result.is_err()
                    && asked
                    && let Some(next) = self.next_peer(&from)
                {
                    // The range asked for did not check out: ask the next
                    // peer now rather than after the retry period.
                    self.start_committed_sync(next);
                }
                result
            }
        }
    }

    fn on_committed_range(
        &mut self,
        from: PublicKey,
        blocks: Vec<Block>,
        commit_qc: QuorumCert,
    ) -> Result<(), Reject> {
        self.check_epoch(commit_qc.data.epoch, from)?;
        self.verify_qc_cached(&commit_qc)?;
        let Some(target) = commit_rule(&commit_qc.data) else {
            return Err(Reject::MalformedCertificate {
                what: "commit",
                round: commit_qc.round(),
                reason: "the QC commits nothing (rounds not consecutive)",
            });
        };
        let root = *self.tree.root();
        let blocks: Vec<Block> = blocks
            .into_iter()
            .filter(|b| b.height() > root.height)
            .collect();
        let linked = blocks.last().is_some_and(|b| b.id() == target)
            && blocks.first().is_some_and(|b| b.parent_id() == root.id)
            && blocks
                .windows(2)
                .all(|w| w[1].parent_id() == w[0].id() && w[1].height() == w[0].height().next())
            && blocks
                .first()
                .is_some_and(|b| b.height() == root.height.next());
        if !linked {
            return Err(Reject::Unexpected {
                what: "committed range",
                reason: "blocks do not link the committed root to the commit QC",
            });
        }
        if self.tree.len() + blocks.len() > limits::MAX_PENDING_BLOCKS {
            return Err(Reject::Full {
                what: "pending block tree",
                limit: limits::MAX_PENDING_BLOCKS,
            });
        }
        // Hash-linked to a verified commit QC: these are the committed blocks.
        for block in blocks {
            if !self.tree.contains(&block.id()) {
                self.sync.wanted.remove(&block.id());
                self.tree.insert(block.clone());
                self.out.persist.blocks.push(block);
            }
        }
        self.process_qc(commit_qc, Some(from));
        if self.awaiting_epoch.is_none()
            && self.sync.target_height.0
                > self.tree.root().height.0 + limits::SYNC_ANCESTORS_GAP_MAX
        {
            self.start_committed_sync(from);
        }
        Ok(())
    }
}

/// Pacemaker timeout: the base doubled per failed round, bounded (DiemBFT v4
/// "Pacemaker": exponential backoff; reset on a QC, since failures count
/// rounds since the highest QC).
pub(crate) fn round_timeout_ms(base_ms: u64, max_ms: u64, failures: u64) -> u64 {
    let exponent = failures.min(u64::from(limits::MAX_BACKOFF_EXPONENT)) as u32;
    base_ms.saturating_mul(1u64 << exponent).min(max_ms)
}

fn message_epoch(message: &Message) -> Option<Epoch> {
    match message {
        Message::Proposal(p) => Some(p.block.epoch()),
        Message::Vote(v) => Some(v.data.epoch),
        Message::Timeout(t) => Some(t.epoch),
        Message::SyncRequest(_) => None,
        Message::SyncResponse(SyncResponse::Committed { commit_qc, .. }) => {
            Some(commit_qc.data.epoch)
        }
        Message::SyncResponse(SyncResponse::Ancestors { .. }) => None,
    }
}

/// What a block must satisfy on its own (Jolteon Fig. 3, "Proposing": a
/// block extends the QC of the previous round, or carries the TC of the
/// previous round).
fn check_block_shape(block: &Block, payload_bytes_max: usize) -> Result<(), Reject> {
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

fn check_against_parent(
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
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_caps() {
        let cases: &[(u64, u64)] = &[
            (0, 100),
            (1, 200),
            (2, 400),
            (3, 800),
            (5, 3_200),
            (6, 5_000),
            (60, 5_000),
        ];
        for &(failures, expected) in cases {
            assert_eq!(
                round_timeout_ms(100, 5_000, failures),
                expected,
                "failures {failures}"
            );
        }
        assert_eq!(
            round_timeout_ms(100, u64::MAX, 1_000),
            100 << limits::MAX_BACKOFF_EXPONENT
        );
    }
}
