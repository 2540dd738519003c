//! The driver contract's types: what a driver configures a replica with,
//! feeds it ([`Input`]) and takes from it ([`Ready`]), in the order the
//! crate docs' "Driver contract" fixes.

use commons_types::{ChainId, Epoch, Hash, Height, PublicKey, Round, ValidatorSet};

use crate::limits;
use crate::message::{Block, Evidence, Message, QuorumCert, SafetyRecord};

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
    pub(crate) fn is_empty(&self) -> bool {
        self.persist.record.is_none()
            && self.persist.blocks.is_empty()
            && self.persist.qcs.is_empty()
            && self.messages.is_empty()
            && self.committed.is_empty()
            && self.requests.is_empty()
            && self.evidence.is_empty()
    }
}
