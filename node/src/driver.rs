//! The driver: the one task that owns the consensus [`Replica`] and is the
//! only writer of the [`Application`], following the consensus crate's
//! driver contract to the letter:
//!
//! after every `handle`, drain `poll_ready`; for each `Ready`
//! 1. persist the record, QCs and blocks in one fsynced batch
//!    ([`storage::persist`]),
//! 2. then queue its messages on the transport,
//! 3. then queue its committed blocks, to be applied in order, each with its
//!    receipts, tx index, height index and last-applied marker in the same
//!    atomic batch as its state version,
//! 4. then answer its requests as later inputs, and turn evidence into an
//!    `Evidence` transaction.
//!
//! The queued blocks are applied once the answers are fed back: a
//! proposal's certificate commits its grandparent, and executing that
//! block before validating and voting put execution on every round's
//! critical path. Proposals attest a state one block older instead (see
//! `Application::propose`), so voters have it. A validator that leads the
//! next round also holds its applying back until it has proposed (see
//! [`Driver::proposal_due`]).
//!
//! Inputs arrive on channels: peer messages and gossip from the transport,
//! submissions from the gRPC API, and the timer at `poll_deadline`. Block
//! timestamps come from the wall clock in Unix milliseconds, which is also
//! the `now` the replica sees (only differences and bounds matter to it).
//!
//! A storage or execution failure stops the node: continuing could send a
//! vote whose record is not durable or diverge from the committed chain.
//! The store's batches are atomic, so a restart resumes from the last
//! complete step.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use commons_consensus::{
    Block, Destination, Evidence, Input, Message, Millis, Ready, Reject, Replica, Request,
    SyncRequest, SyncResponse, Timeout,
};
use commons_state_machine::ledger::{LedgerParams, Receipt, VerifiedTxs, Working};
use commons_state_machine::{
    AdmitError, Application, LedgerError, Payload, PayloadError, Received, decode_received,
};
use commons_types::tx::{SignedTx, pb};
use commons_types::{ChainId, Epoch, Hash, Height, PublicKey, Round, SecretKey};
use prost::Message as _;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tracing::{debug, error, info, trace, warn};

use crate::limits;
use crate::metrics::Metrics;
use crate::storage::{self, StorageError};
use crate::transport::{self, PeerEvent, TransportHandle};

/// Why the driver stopped.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    #[error("consensus refused the application's answer: {0}")]
    Consensus(Reject),
    #[error("internal: {0}")]
    Internal(String),
}

/// A committed, executed block, as subscribers see it.
#[derive(Debug)]
pub struct CommittedEvent {
    pub block: Block,
    pub txs: Vec<(Hash, SignedTx)>,
    pub receipts: Vec<Receipt>,
    pub state_root: Hash,
}

/// The admission verdict of one submitted transaction.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// `None` when the envelope does not decode.
    pub tx_id: Option<Hash>,
    pub result: Result<(), AdmitError>,
}

/// Where a submission's verdicts go (or why there are none).
pub type SubmissionReply = oneshot::Sender<Result<Vec<Verdict>, String>>;

/// A client submission, answered with one verdict per transaction.
#[derive(Debug)]
pub struct Submission {
    pub txs: Vec<Vec<u8>>,
    pub reply: SubmissionReply,
}

/// Rejected transaction ids and why, bounded, for `GetTxStatus`.
#[derive(Debug, Default)]
pub struct RejectedCache {
    by_id: BTreeMap<Hash, String>,
    order: VecDeque<Hash>,
}

impl RejectedCache {
    pub fn insert(&mut self, id: Hash, reason: String) {
        if self.by_id.insert(id, reason).is_none() {
            self.order.push_back(id);
            while self.order.len() > limits::REJECTED_REMEMBERED {
                if let Some(old) = self.order.pop_front() {
                    self.by_id.remove(&old);
                }
            }
        }
    }

    pub fn get(&self, id: &Hash) -> Option<&String> {
        self.by_id.get(id)
    }
}

/// What the driver shares with the API: the application behind a lock (the
/// driver is its only writer), the committed-block feed and a few gauges.
#[derive(Debug)]
pub struct Shared {
    pub app: RwLock<Application>,
    pub chain: ChainId,
    pub events: broadcast::Sender<Arc<CommittedEvent>>,
    pub rejected: Mutex<RejectedCache>,
    pub submissions: mpsc::Sender<Submission>,
    pub metrics: Metrics,
    pub epoch: AtomicU64,
    pub round: AtomicU64,
}

impl Shared {
    pub fn read_app(&self) -> std::sync::RwLockReadGuard<'_, Application> {
        self.app.read().unwrap_or_else(|p| p.into_inner())
    }
    fn write_app(&self) -> std::sync::RwLockWriteGuard<'_, Application> {
        self.app.write().unwrap_or_else(|p| p.into_inner())
    }
}

pub fn now_ms() -> Millis {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    Millis(u64::try_from(ms).unwrap_or(u64::MAX))
}

/// Transactions gathered for one admission batch: this node's clients'
/// submissions (each answered with its verdicts) and peers' gossip.
#[derive(Debug, Default)]
struct Admission {
    local: Vec<Vec<u8>>,
    /// Each submission's reply and how many of `local` are its.
    replies: Vec<(SubmissionReply, usize)>,
    peer: Vec<Vec<u8>>,
}

impl Admission {
    fn add_submission(&mut self, s: Submission) {
        self.replies.push((s.reply, s.txs.len()));
        self.local.extend(s.txs);
    }

    fn len(&self) -> usize {
        self.local.len() + self.peer.len()
    }

    fn is_empty(&self) -> bool {
        self.local.is_empty() && self.peer.is_empty() && self.replies.is_empty()
    }
}

#[derive(Debug)]
pub struct Driver {
    replica: Replica,
    key: SecretKey,
    shared: Arc<Shared>,
    transport: TransportHandle,
    answers: VecDeque<Input>,
    gossip: Vec<Vec<u8>>,
    empty_block_interval_ms: u64,
    min_block_interval_ms: u64,
    /// A proposal held back (the mempool is empty, or the parent is too
    /// recent): when to make it.
    delayed_payload: Option<(Millis, Request)>,
    /// The earliest a held-back proposal may go, whatever arrives.
    delayed_payload_min: Millis,
    /// Transactions held back to be admitted with those arriving next, and
    /// until when at most (see [`limits::ADMIT_LINGER_MS`]).
    lingering: Admission,
    linger_until: Option<Millis>,
    /// Committed blocks not yet applied, in height order. A `Ready`'s
    /// committed blocks are applied once the answers it asked for have been
    /// fed back to the core (see [`Driver::drain`]), so that a vote or a
    /// proposal never waits for execution.
    to_apply: VecDeque<Block>,
    /// When the queued blocks must be applied at the latest, however busy
    /// the proposal path is.
    apply_by: Option<Millis>,
    /// The latest (epoch, round) this validator sent a timeout for: the
    /// core resends a timeout until the round ends, and only the first
    /// counts.
    last_timeout: (Epoch, Round),
}

impl Driver {
    pub fn new(
        replica: Replica,
        key: SecretKey,
        shared: Arc<Shared>,
        transport: TransportHandle,
        empty_block_interval_ms: u64,
        min_block_interval_ms: u64,
    ) -> Driver {
        Driver {
            replica,
            key,
            shared,
            transport,
            answers: VecDeque::new(),
            gossip: Vec::new(),
            empty_block_interval_ms,
            min_block_interval_ms,
            delayed_payload: None,
            delayed_payload_min: Millis::ZERO,
            lingering: Admission::default(),
            linger_until: None,
            last_timeout: (Epoch(0), Round::ZERO),
            to_apply: VecDeque::new(),
            apply_by: None,
        }
    }

    /// Runs until `shutdown` fires or a fatal error.
    pub async fn run(
        mut self,
        mut peer_events: mpsc::Receiver<PeerEvent>,
        mut submissions: mpsc::Receiver<Submission>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), DriverError> {
        tokio::task::block_in_place(|| self.step(Input::Tick))?;
        let mut gossip_timer =
            tokio::time::interval(Duration::from_millis(limits::GOSSIP_FLUSH_MS));
        gossip_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let deadline = [
                self.replica.poll_deadline(),
                self.delayed_payload.as_ref().map(|(at, _)| *at),
                self.linger_until,
                self.apply_by,
            ]
            .into_iter()
            .flatten()
            .min();
            let sleep = match deadline {
                Some(deadline) => {
                    Duration::from_millis(deadline.as_u64().saturating_sub(now_ms().as_u64()))
                }
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                event = peer_events.recv() => {
                    let Some(event) = event else { return Ok(()) };
                    tokio::task::block_in_place(|| {
                        self.on_inputs(Some(event), None, &mut peer_events, &mut submissions)
                    })?;
                }
                submission = submissions.recv() => {
                    let Some(submission) = submission else { return Ok(()) };
                    tokio::task::block_in_place(|| {
                        self.on_inputs(None, Some(submission), &mut peer_events, &mut submissions)
                    })?;
                }
                _ = tokio::time::sleep(sleep) => {
                    tokio::task::block_in_place(|| self.on_timer())?;
                }
                _ = gossip_timer.tick() => self.flush_gossip(),
                _ = shutdown.changed() => {
                    info!("driver stopping");
                    return Ok(());
                }
            }
        }
    }

    fn on_timer(&mut self) -> Result<(), DriverError> {
        // Whatever the timer is for, lingering transactions go first: a
        // proposal made below then carries them.
        let (mut lingering, _) = self.take_lingering();
        self.admit_queued(&mut lingering)?;
        if let Some((at, _)) = &self.delayed_payload
            && *at <= now_ms()
            && let Some((_, request)) = self.delayed_payload.take()
            && let Some(answer) = self.make_payload(request)?
        {
            self.answers.push_back(answer);
        }
        self.step(Input::Tick)
    }

    fn flush_gossip(&mut self) {
        if self.gossip.is_empty() {
            return;
        }
        let peers = self.peer_keys();
        for chunk in self.gossip.chunks(limits::GOSSIP_BATCH_TXS) {
            self.transport
                .send_all(peers.iter(), transport::txs_frame(chunk));
        }
        self.gossip.clear();
    }

    /// Every validator of the epoch and every connected peer (validators
    /// about to join included), except this node.
    fn peer_keys(&self) -> Vec<PublicKey> {
        let me = self.key.public_key();
        let mut keys: Vec<PublicKey> = self
            .replica
            .validator_set()
            .validators()
            .iter()
            .map(|v| v.public_key)
            .chain(self.transport.connected())
            .filter(|k| *k != me)
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// Handles one input and the inputs already queued behind it (at most
    /// `DRIVER_COALESCE_INPUTS`), admitting the transactions of every queued
    /// submission and gossip frame as one batch: one parallel signature
    /// batch and one write lock instead of one per frame. Batches grow when
    /// the driver is busy (inputs queue up meanwhile) and cost no waiting
    /// when it is idle. Consensus messages keep their place: transactions
    /// queued before a message are admitted before it is handled.
    fn on_inputs(
        &mut self,
        event: Option<PeerEvent>,
        submission: Option<Submission>,
        peer_events: &mut mpsc::Receiver<PeerEvent>,
        submissions: &mut mpsc::Receiver<Submission>,
    ) -> Result<(), DriverError> {
        let (mut admission, until) = self.take_lingering();
        if let Some(s) = submission {
            admission.add_submission(s);
        }
        let mut next = event;
        let mut taken = 0usize;
        loop {
            match next.take() {
                Some(PeerEvent::Txs { from, txs }) => {
                    trace!(peer = %from, count = txs.len(), "gossiped transactions");
                    // Peers gossip what they admitted; no re-gossip (full mesh).
                    admission.peer.extend(txs);
                }
                Some(PeerEvent::Message { from, message }) => {
                    self.admit_queued(&mut admission)?;
                    self.on_message(from, message)?;
                }
                None => {}
            }
            taken += 1;
            if taken >= limits::DRIVER_COALESCE_INPUTS || admission.len() >= limits::ADMIT_BATCH_TXS
            {
                break;
            }
            match peer_events.try_recv() {
                Ok(e) => next = Some(e),
                Err(_) => break,
            }
        }
        while taken < limits::DRIVER_COALESCE_INPUTS && admission.len() < limits::ADMIT_BATCH_TXS {
            match submissions.try_recv() {
                Ok(s) => admission.add_submission(s),
                Err(_) => break,
            }
            taken += 1;
        }
        // Few transactions and an idle driver: wait a little for more, so
        // that signatures are verified in batches large enough to pay off
        // (measured here: 47 µs a signature in a batch of two settlements,
        // 29 µs in a batch of 64). The wait counts from the first
        // transaction held back.
        let now = now_ms();
        let until = until.unwrap_or(now.plus(limits::ADMIT_LINGER_MS));
        if !admission.is_empty() && admission.len() < limits::ADMIT_LINGER_TXS && now < until {
            self.lingering = admission;
            self.linger_until = Some(until);
            return Ok(());
        }
        self.admit_queued(&mut admission)
    }

    /// The transactions held back for a larger batch and their deadline,
    /// leaving none.
    fn take_lingering(&mut self) -> (Admission, Option<Millis>) {
        (
            std::mem::take(&mut self.lingering),
            self.linger_until.take(),
        )
    }

    /// Admits and answers what `admission` holds, leaving it empty. A store
    /// failure is answered to every submission; it stops the node when peer
    /// gossip was part of the batch, as admitting gossip always did.
    fn admit_queued(&mut self, admission: &mut Admission) -> Result<(), DriverError> {
        if admission.is_empty() {
            return Ok(());
        }
        let Admission {
            local,
            replies,
            peer,
        } = std::mem::take(admission);
        let has_peer = !peer.is_empty();
        let peer = self.unseen(peer);
        let local_count = local.len();
        let mut received = decode_received(local);
        received.extend(peer);
        match self.admit(received, local_count) {
            Ok(verdicts) => {
                let mut verdicts = verdicts.into_iter();
                for (reply, count) in replies {
                    let mine: Vec<Verdict> = verdicts.by_ref().take(count).collect();
                    let _ = reply.send(Ok(mine));
                }
                Ok(())
            }
            Err(e) => {
                for (reply, _) in replies {
                    let _ = reply.send(Err(e.to_string()));
                }
                if has_peer { Err(e.into()) } else { Ok(()) }
            }
        }
    }

    /// The gossiped transactions this node has not seen, decoded: neither
    /// pending in its mempool (by id: a copy under other signatures would
    /// be refused as a duplicate) nor verified before as this exact
    /// envelope (in a proposal it checked, or admitted and since
    /// committed). Admission verifies signatures
    /// before it looks for duplicates, so a transaction that reached this
    /// node in a proposal before its gossip would otherwise be verified
    /// twice; a peer's verdict is not answered to anyone, so skipping it
    /// changes nothing else.
    fn unseen(&self, peer: Vec<Vec<u8>>) -> Vec<Received> {
        // Decoded before the lock is taken: the API's readers share it.
        let decoded = decode_received(peer);
        let app = self.shared.read_app();
        let pool = app.mempool();
        decoded
            .into_iter()
            .filter(|(prepared, _)| match prepared {
                Ok(p) => !pool.contains(&p.id) && !VerifiedTxs::is_verified(pool, p),
                // Admission answers what does not decode.
                Err(_) => true,
            })
            .collect()
    }

    /// Admits `received` to the mempool. The first `local` came from this
    /// node's clients: admitted ones are gossiped, refused ones remembered
    /// for `GetTxStatus`. The rest came from peers.
    fn admit(
        &mut self,
        received: Vec<Received>,
        local: usize,
    ) -> Result<Vec<Verdict>, LedgerError> {
        let ids: Vec<Option<Hash>> = received
            .iter()
            .map(|(prepared, _)| prepared.as_ref().ok().map(|p| p.id))
            .collect();
        // Only this node's clients' transactions are gossiped on.
        let mut local_bytes: Vec<Option<Vec<u8>>> = received[..local.min(received.len())]
            .iter()
            .map(|(_, bytes)| Some(bytes.clone()))
            .collect();
        self.shared
            .metrics
            .admission_batch_txs
            .observe(received.len() as f64);
        let results = {
            let mut app = self.shared.write_app();
            let results = app.submit_decoded(received)?;
            self.shared
                .metrics
                .mempool_txs
                .set(app.mempool().len() as i64);
            results
        };
        let mut verdicts = Vec::with_capacity(results.len());
        for (i, (result, tx_id)) in results.into_iter().zip(ids).enumerate() {
            let gossip = i < local;
            match &result {
                Ok(_) => {
                    // A proposal waiting for transactions can go now (or
                    // once its parent is old enough).
                    if let Some((at, _)) = &mut self.delayed_payload {
                        *at = (*at).min(self.delayed_payload_min);
                    }
                    if gossip
                        && self.gossip.len() < limits::GOSSIP_PENDING_TXS
                        && let Some(bytes) = local_bytes.get_mut(i).and_then(Option::take)
                    {
                        self.gossip.push(bytes);
                    }
                }
                Err(e) => {
                    self.shared.metrics.mempool_rejects.inc();
                    if gossip
                        && let Some(id) = tx_id
                        && !matches!(e, AdmitError::Duplicate(_) | AdmitError::Full { .. })
                    {
                        let mut rejected = self
                            .shared
                            .rejected
                            .lock()
                            .unwrap_or_else(|p| p.into_inner());
                        rejected.insert(id, e.to_string());
                    }
                }
            }
            verdicts.push(Verdict {
                tx_id,
                result: result.map(|_| ()),
            });
        }
        Ok(verdicts)
    }

    fn on_message(&mut self, from: PublicKey, message: Message) -> Result<(), DriverError> {
        let request = match &message {
            Message::SyncRequest(r) => Some(r.clone()),
            _ => None,
        };
        let result = self
            .replica
            .handle(now_ms(), Input::Message { from, message });
        if let Err(reject) = &result {
            match (reject, &request) {
                // Older than the core's in-memory window: serve from the store.
                (
                    Reject::Unexpected { .. },
                    Some(SyncRequest::Committed { epoch, from_height }),
                )
                | (
                    Reject::UnknownBlock { .. },
                    Some(SyncRequest::Committed { epoch, from_height }),
                ) => {
                    self.serve_committed(from, *epoch, *from_height)?;
                }
                (Reject::UnknownBlock { .. }, Some(SyncRequest::Ancestors { id, count })) => {
                    self.serve_ancestors(from, *id, *count)?;
                }
                (
                    Reject::Decode(_)
                    | Reject::BadSignature { .. }
                    | Reject::MalformedBlock { .. }
                    | Reject::MalformedCertificate { .. }
                    | Reject::NoQuorum { .. },
                    _,
                ) => {
                    self.shared.metrics.invalid_messages.inc();
                    self.transport.penalize(
                        &from,
                        limits::SCORE_INVALID_MESSAGE,
                        "invalid message",
                    );
                    debug!(peer = %from, error = %reject, "invalid consensus message");
                }
                _ => trace!(peer = %from, error = %reject, "message refused"),
            }
        }
        self.drain()
    }

    fn serve_committed(
        &mut self,
        to: PublicKey,
        epoch: Epoch,
        from: Height,
    ) -> Result<(), DriverError> {
        let range = {
            let app = self.shared.read_app();
            storage::committed_range(app.ledger().store(), epoch, from)?
        };
        if let Some((blocks, commit_qc)) = range {
            debug!(peer = %to, from = from.0, count = blocks.len(), "serving committed blocks from the store");
            let message = Message::SyncResponse(SyncResponse::Committed { blocks, commit_qc });
            self.transport.send(&to, transport::message_frame(&message));
        }
        Ok(())
    }

    fn serve_ancestors(&mut self, to: PublicKey, id: Hash, count: u16) -> Result<(), DriverError> {
        let blocks = {
            let app = self.shared.read_app();
            storage::ancestors(app.ledger().store(), &id, count)?
        };
        if !blocks.is_empty() {
            let message = Message::SyncResponse(SyncResponse::Ancestors { blocks });
            self.transport.send(&to, transport::message_frame(&message));
        }
        Ok(())
    }

    /// Feeds one input, then drains, then feeds the answers it produced.
    fn step(&mut self, input: Input) -> Result<(), DriverError> {
        if let Err(e) = self.replica.handle(now_ms(), input) {
            debug!(error = %e, "input refused");
        }
        self.drain()
    }

    fn drain(&mut self) -> Result<(), DriverError> {
        // Bounded: each answer is produced by a request of a Ready, and the
        // core asks at most a few questions per input. Committed blocks are
        // applied when no answer is left to feed back: the vote for a
        // proposal (whose certificate committed them) goes out first. A
        // block a proposal attests to is older than the ones its
        // certificate commits (see `Application::propose`), and a request
        // that does need them applies them first (see `answer`).
        loop {
            while let Some(ready) = self.replica.poll_ready() {
                self.on_ready(ready)?;
            }
            if let Some(answer) = self.answers.pop_front() {
                if let Err(e) = self.replica.handle(now_ms(), answer) {
                    // An answer can go stale (the round moved on): harmless.
                    debug!(error = %e, "answer refused");
                }
                continue;
            }
            if self.to_apply.is_empty() {
                break;
            }
            if self.proposal_due() && self.apply_by.is_some_and(|by| now_ms() < by) {
                break;
            }
            self.apply_pending()?;
        }
        self.shared
            .round
            .store(self.replica.round().0, Ordering::Relaxed);
        self.shared
            .epoch
            .store(self.replica.epoch().0, Ordering::Relaxed);
        self.shared.metrics.round.set(self.replica.round().0 as i64);
        self.shared.metrics.epoch.set(self.replica.epoch().0 as i64);
        Ok(())
    }

    fn on_ready(&mut self, ready: Ready) -> Result<(), DriverError> {
        // 1. Persist, durably, before anything of this Ready leaves.
        {
            let app = self.shared.read_app();
            storage::persist(app.ledger().store(), &ready.persist)?;
        }
        // 2. Send.
        for out in &ready.messages {
            if let Message::Timeout(t) = &out.message {
                self.on_timeout_sent(t);
            }
            let frame = transport::message_frame(&out.message);
            match &out.to {
                Destination::Broadcast => {
                    // The epoch's validators, and connected followers: a
                    // node outside the set (one voted in and waiting for its
                    // epoch) follows the chain from the proposals and
                    // timeouts it receives, whose certificates commit.
                    let peers = self.peer_keys();
                    self.transport.send_all(peers.iter(), frame);
                }
                Destination::To(key) => {
                    self.transport.send(key, frame);
                }
            }
        }
        // 3. Queue committed blocks, in order, to be applied once this
        //    Ready's answers are in (see `drain`).
        if !ready.committed.is_empty() && self.apply_by.is_none() {
            self.apply_by = Some(now_ms().plus(limits::APPLY_DEFER_MS_MAX));
        }
        self.to_apply.extend(ready.committed);
        // 4. Answer requests (as later inputs) and report evidence.
        for request in ready.requests {
            if let Some(answer) = self.answer(request)? {
                self.answers.push_back(answer);
            }
        }
        for evidence in ready.evidence {
            self.report_evidence(&evidence);
        }
        Ok(())
    }

    /// Counts and logs a round this validator timed out: each one costs the
    /// chain a round timeout of waiting, so they explain latency spikes.
    fn on_timeout_sent(&mut self, t: &Timeout) {
        if (t.epoch, t.round) <= self.last_timeout {
            return;
        }
        self.last_timeout = (t.epoch, t.round);
        self.shared.metrics.round_timeouts.inc();
        info!(
            epoch = t.epoch.0,
            round = t.round.0,
            leader = self.replica.leader(t.round).0,
            high_qc_round = t.high_qc.round().0,
            "round timed out"
        );
    }

    /// Whether applying now would hold up the chain: this validator leads
    /// the next round, so the votes of this one come to it, and its
    /// certificate and proposal follow them at once. It then applies after
    /// proposing (the votes for its proposal take a validation's time to
    /// come back), or while its proposal waits for the block interval, or
    /// at `apply_by` at the latest.
    fn proposal_due(&self) -> bool {
        let Some(me) = self.replica.index() else {
            return false;
        };
        let round = self.replica.round();
        self.delayed_payload.is_none()
            && self.replica.record().last_proposed_round < round
            && self.replica.leader(round.next()) == me
    }

    /// Applies every committed block still queued, in order.
    fn apply_pending(&mut self) -> Result<(), DriverError> {
        self.apply_by = None;
        while let Some(block) = self.to_apply.pop_front() {
            self.apply(&block)?;
        }
        Ok(())
    }

    fn apply(&mut self, block: &Block) -> Result<(), DriverError> {
        let txs = commons_state_machine::app::executed_txs(block);
        let mut app = self.shared.write_app();
        let expected = app.ledger().height().next();
        if block.height() < expected {
            // Applied before a crash; the core re-delivers after
            // `Restart::last_applied`, which the store keeps exactly.
            return Err(DriverError::Internal(format!(
                "block {} delivered again; last applied is {}",
                block.height(),
                expected.0 - 1
            )));
        }
        // Receipts, tx index and markers go into the block's own batch.
        let applied = app.apply_with(block, |store, txs, outcome| {
            storage::applied_writes(store, block, txs, &outcome.receipts)
                .map_err(|e| LedgerError::Store(e.to_string()))
        })?;
        self.shared
            .metrics
            .mempool_txs
            .set(app.mempool().len() as i64);
        drop(app);
        let metrics = &self.shared.metrics;
        metrics.height.set(block.height().0 as i64);
        metrics.committed_blocks.inc();
        metrics.committed_txs.inc_by(txs.len() as u64);
        let latency_ms = now_ms().as_u64().saturating_sub(block.timestamp_ms());
        metrics
            .commit_latency_seconds
            .observe(latency_ms as f64 / 1000.0);
        debug!(
            height = block.height().0,
            round = block.round().0,
            txs = txs.len(),
            "applied"
        );
        let event = CommittedEvent {
            block: block.clone(),
            txs: txs.into_iter().map(|t| (t.id, t.tx)).collect(),
            receipts: applied.receipts,
            state_root: applied.state_root,
        };
        // No subscriber is fine.
        let _ = self.shared.events.send(Arc::new(event));
        Ok(())
    }

    fn answer(&mut self, request: Request) -> Result<Option<Input>, DriverError> {
        match request {
            request @ Request::NeedPayload { .. } => {
                let Request::NeedPayload { parent, .. } = &request else {
                    return Ok(None);
                };
                let parent_ms = self.replica.block(parent).map_or(0, |b| b.timestamp_ms());
                let earliest = Millis(parent_ms).plus(self.min_block_interval_ms);
                // Transactions of committed blocks not yet applied still sit
                // in the mempool; they are not counted as waiting.
                let applying: usize = self
                    .to_apply
                    .iter()
                    .map(|b| Payload::tx_count(b.payload()))
                    .sum();
                let idle = self.shared.read_app().mempool().len() <= applying;
                let at = if idle && self.empty_block_interval_ms > 0 {
                    Millis(parent_ms).plus(self.empty_block_interval_ms)
                } else {
                    earliest
                };
                if at > now_ms() {
                    self.delayed_payload = Some((at, request));
                    self.delayed_payload_min = earliest;
                    return Ok(None);
                }
                self.make_payload(request)
            }
            Request::ValidatePayload { block } => {
                let parent = self.replica.block(&block.parent_id()).cloned();
                let mut verdict = self.shared.write_app().validate(&block, parent.as_ref());
                if matches!(verdict, Err(PayloadError::StateNotExecuted { .. }))
                    && !self.to_apply.is_empty()
                {
                    // It attests a block committed but not applied yet.
                    self.apply_pending()?;
                    verdict = self.shared.write_app().validate(&block, parent.as_ref());
                }
                if let Err(e) = &verdict {
                    debug!(height = block.height().0, round = block.round().0, error = %e, "payload refused");
                }
                Ok(Some(Input::PayloadValidated {
                    block_id: block.id(),
                    valid: verdict.is_ok(),
                }))
            }
            Request::NeedValidatorSet {
                epoch,
                block_id,
                height,
            } => {
                // The set is the state after the epoch's last block.
                self.apply_pending()?;
                let app = self.shared.read_app();
                if app.ledger().height() != height {
                    return Err(DriverError::Internal(format!(
                        "validator set asked for at height {height}, executed {}",
                        app.ledger().height()
                    )));
                }
                let new_set = app.validator_set()?;
                storage::store_epoch_set(app.ledger().store(), epoch, &new_set)?;
                info!(
                    epoch = epoch.0,
                    height = height.0,
                    validators = new_set.len(),
                    "epoch change"
                );
                Ok(Some(Input::EpochChange {
                    epoch,
                    block_id,
                    new_set,
                }))
            }
        }
    }

    /// The answer to `NeedPayload`: a payload of mempool transactions not
    /// already in the uncommitted ancestors.
    fn make_payload(&mut self, request: Request) -> Result<Option<Input>, DriverError> {
        let Request::NeedPayload {
            round,
            parent,
            parent_height,
        } = request
        else {
            return Ok(None);
        };
        if self.replica.round() != round {
            return Ok(None);
        }
        let parent_block = self.replica.block(&parent);
        // Committed blocks not applied yet are still pending to the ledger.
        let mut pending: Vec<&Block> = self.to_apply.iter().collect();
        let committed = self.replica.committed_height();
        let mut cursor = parent_block;
        while let Some(b) = cursor {
            if b.height() <= committed {
                break;
            }
            cursor = self.replica.block(&b.parent_id());
            pending.push(b);
        }
        let app = self.shared.read_app();
        let (payload, state_root) = app.propose(parent_block, &pending)?;
        trace!(round = round.0, parent_height = parent_height.0, "payload");
        Ok(Some(Input::Payload {
            round,
            parent,
            payload,
            state_root,
        }))
    }

    /// Hands equivocation evidence to the ledger as an `Evidence`
    /// transaction signed by this validator, admitted here and gossiped.
    fn report_evidence(&mut self, evidence: &Evidence) {
        self.shared.metrics.evidence.inc();
        warn!("equivocation evidence from consensus; submitting it to the ledger");
        let tx = {
            let app = self.shared.read_app();
            let me = self.key.public_key();
            let nonce = match app.ledger().account(&me) {
                Ok(a) => a.nonce,
                Err(e) => {
                    error!(error = %e, "cannot read this validator's account for evidence");
                    return;
                }
            };
            let view = app.ledger().view();
            let params = match LedgerParams::load(&mut Working::new(&view)) {
                Ok(p) => p,
                Err(e) => {
                    error!(error = %e, "cannot read parameters for evidence");
                    return;
                }
            };
            let encoded = evidence.encode();
            // The fee depends on the encoded size, which depends on the fee's
            // varint: size with a maximal fee bounds it.
            let body = |fee: u64| pb::TxBody {
                chain_id: self.shared.chain.to_string(),
                nonce,
                fee,
                action: Some(pb::Action {
                    kind: Some(pb::action::Kind::Evidence(pb::Evidence {
                        evidence: encoded.clone().into(),
                    })),
                }),
            };
            let upper = SignedTx::sign(
                body(u64::MAX).encode_to_vec(),
                &self.shared.chain,
                &[&self.key],
            )
            .encode()
            .len();
            let fee = params.required_fee(upper);
            SignedTx::sign(body(fee).encode_to_vec(), &self.shared.chain, &[&self.key]).encode()
        };
        match self.admit(decode_received(vec![tx]), 1) {
            Ok(v) => {
                if let Some(Verdict { result: Err(e), .. }) = v.first() {
                    warn!(error = %e, "evidence transaction not admitted");
                }
            }
            Err(e) => error!(error = %e, "evidence transaction not admitted"),
        }
    }
}
