use commons_types::{Epoch, Hash, Height, PublicKey, Round, ValidatorIndex};

use crate::wire::DecodeError;

/// Why an input was refused, in whole or in part. Inputs from peers are
/// adversarial: every one of these is an expected outcome, never a panic. A
/// refusal can follow safe partial work (a valid block stored, a certificate
/// adopted) before the part that was refused (the vote): the variant names
/// the refused part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    #[error("malformed message: {0}")]
    Decode(#[from] DecodeError),
    #[error("message of epoch {got}, replica is in epoch {current}")]
    WrongEpoch { got: Epoch, current: Epoch },
    #[error("replica is waiting for the validator set of epoch {next}")]
    AwaitingEpochChange { next: Epoch },
    #[error("validator index {index} is not in the set of {len}")]
    UnknownValidator { index: ValidatorIndex, len: usize },
    #[error("{key:?} is not a validator of this epoch")]
    UnknownPeer { key: PublicKey },
    #[error("bad {what} signature from validator {signer}")]
    BadSignature {
        what: &'static str,
        signer: ValidatorIndex,
    },
    #[error("{what} has power {power}, a quorum needs {needed}")]
    NoQuorum {
        what: &'static str,
        power: u64,
        needed: u64,
    },
    #[error("{what} certificate of round {round} is malformed: {reason}")]
    MalformedCertificate {
        what: &'static str,
        round: Round,
        reason: &'static str,
    },
    #[error("vote refused: round {round} is not above the last voted round {last_voted}")]
    StaleRound { round: Round, last_voted: Round },
    #[error("{what} of round {round} is older than the current round {current}")]
    OldRound {
        what: &'static str,
        round: Round,
        current: Round,
    },
    #[error("{what} of round {round} is too far ahead of the current round {current}")]
    RoundTooFarAhead {
        what: &'static str,
        round: Round,
        current: Round,
    },
    #[error(
        "vote refused: block extends a QC of round {qc_round}, below the highest QC round {lock} in its TC"
    )]
    BreaksLock { qc_round: Round, lock: Round },
    #[error(
        "block of round {round} extends a QC of round {qc_round} without a TC of round {round} - 1"
    )]
    NotExtendingPreviousRound { round: Round, qc_round: Round },
    #[error("block of round {round} was proposed by {proposer}, the leader is {leader}")]
    WrongLeader {
        round: Round,
        proposer: ValidatorIndex,
        leader: ValidatorIndex,
    },
    #[error("vote for round {round} sent to a replica that is not the leader of the next round")]
    NotNextLeader { round: Round },
    #[error("malformed block: {reason}")]
    MalformedBlock { reason: &'static str },
    #[error("payload of {got} bytes exceeds the limit of {limit}")]
    PayloadTooLarge { got: usize, limit: usize },
    #[error("block height {got}, expected {expected} (parent height + 1)")]
    WrongHeight { got: Height, expected: Height },
    #[error("block timestamp {timestamp_ms} is not after its parent's {parent_ms}")]
    TimestampNotAfterParent { timestamp_ms: u64, parent_ms: u64 },
    #[error("block timestamp {timestamp_ms} is more than {drift_ms} ms ahead of now ({now_ms})")]
    TimestampTooFarAhead {
        timestamp_ms: u64,
        now_ms: u64,
        drift_ms: u64,
    },
    #[error("block after the epoch's last height {end} must carry no payload")]
    PayloadAfterEpochEnd { end: Height },
    #[error("{what} is full ({limit} entries)")]
    Full { what: &'static str, limit: usize },
    #[error("validator {validator} equivocated in round {round}")]
    Equivocation {
        validator: ValidatorIndex,
        round: Round,
    },
    #[error("unsolicited {what}")]
    Unsolicited { what: &'static str },
    #[error("{what} does not fit the replica's state: {reason}")]
    Unexpected {
        what: &'static str,
        reason: &'static str,
    },
    #[error("block {id:?} is not known")]
    UnknownBlock { id: Hash },
    #[error(
        "a QC commits block {id:?} that conflicts with the committed chain (more than f Byzantine)"
    )]
    ConflictingCommit { id: Hash },
}
