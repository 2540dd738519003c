//! Byzantine behaviours: each tampers with what a real replica sends,
//! re-signing with the validator's own key where the tampered message must
//! still verify.

use commons_consensus::message::timeout_signing_bytes;
use commons_consensus::{
    Block, Message, Proposal, QuorumCert, Timeout, TimeoutCert, TimeoutSignature, Vote,
    limits as consensus_limits,
};
use commons_state_machine::Payload;
use commons_types::{ChainId, Hash, Round, SecretKey, ValidatorIndex};
use rand_chacha::ChaCha8Rng;
use rand_core::RngCore;

/// A copy of a message to send: to whom (node ids), its bytes, and extra
/// delay before it leaves.
#[derive(Clone, Debug)]
pub struct Send {
    pub to: Vec<usize>,
    pub bytes: Vec<u8>,
    pub delay_ms: u64,
}

/// Received messages a replayer keeps for later.
pub const REPLAY_POOL_MAX: usize = 256;

pub fn below(rng: &mut ChaCha8Rng, n: u64) -> u64 {
    if n == 0 { 0 } else { rng.next_u64() % n }
}

/// Splits `targets` into two halves by position.
fn halves(targets: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let mid = targets.len().div_ceil(2);
    (targets[..mid].to_vec(), targets[mid..].to_vec())
}

/// The equivocating leader: a second block for the same round (the same
/// fields, one millisecond later, so a different id), signed with the
/// leader's key. One half gets the first block at once, the other half the
/// second; each half gets the other block too, later.
pub fn equivocate(
    proposal: &Proposal,
    key: &SecretKey,
    chain: &ChainId,
    targets: &[usize],
) -> Vec<Send> {
    let mut fields = proposal.block.clone().into_fields();
    fields.timestamp_ms = fields.timestamp_ms.saturating_add(1);
    let twin = Proposal::sign(Block::new(fields), key, chain);
    let first = Message::Proposal(proposal.clone()).encode();
    let second = Message::Proposal(twin).encode();
    let (a, b) = halves(targets);
    vec![
        Send {
            to: a.clone(),
            bytes: first.clone(),
            delay_ms: 0,
        },
        Send {
            to: b.clone(),
            bytes: second.clone(),
            delay_ms: 0,
        },
        Send {
            to: a,
            bytes: second,
            delay_ms: 150,
        },
        Send {
            to: b,
            bytes: first,
            delay_ms: 150,
        },
    ]
}

/// The double voter: its real vote, and a second signed vote of the same
/// round for a block that differs (a made-up id with the same parent).
pub fn double_vote(vote: &Vote, key: &SecretKey, chain: &ChainId) -> Vec<u8> {
    let mut data = vote.data;
    data.block_id = Hash::digest_parts(&[&b"double-vote"[..], &data.block_id.0[..]]);
    Message::Vote(Vote::sign(data, vote.voter, key, chain)).encode()
}

/// The forger: one bad message per call, of a kind drawn at random.
pub fn forged(
    rng: &mut ChaCha8Rng,
    original: &Message,
    oversized_allowed: bool,
) -> (Vec<u8>, &'static str) {
    match below(rng, 7) {
        0 => {
            // A valid message whose signature bytes were flipped.
            let mut m = original.clone();
            match &mut m {
                Message::Vote(v) => v.signature.0[3] ^= 1,
                Message::Proposal(p) => p.signature.0[3] ^= 1,
                Message::Timeout(t) => t.signature.0[3] ^= 1,
                _ => {}
            }
            (m.encode(), "forged signature")
        }
        1 => {
            let n = below(rng, 512) as usize;
            let mut bytes = vec![0u8; n];
            rng.fill_bytes(&mut bytes);
            (bytes, "random bytes")
        }
        2 => {
            let mut bytes = original.encode();
            let cut = below(rng, bytes.len() as u64) as usize;
            bytes.truncate(cut);
            (bytes, "truncated")
        }
        3 => {
            let mut bytes = original.encode();
            if !bytes.is_empty() {
                let at = below(rng, bytes.len() as u64) as usize;
                bytes[at] ^= 1 << below(rng, 8);
            }
            (bytes, "bit flip")
        }
        4 => {
            // A sync response announcing four billion blocks.
            (vec![6, 0xff, 0xff, 0xff, 0xff, 0], "length bomb")
        }
        5 => {
            let mut bytes = original.encode();
            bytes.extend_from_slice(&[0, 1, 2]);
            (bytes, "trailing bytes")
        }
        _ if oversized_allowed => (
            vec![1u8; consensus_limits::MAX_MESSAGE_BYTES + 1],
            "oversized",
        ),
        _ => (vec![99, 0, 0], "bad tag"),
    }
}

/// How long a stale-QC validator keeps the victim of a fork attack cut off
/// from the other validators: a timed-out round, the fork proposal and two
/// rounds certifying it fit several times over at the simulator's timeouts.
pub const FORK_ISOLATION_MS: u64 = 3_000;

/// Fork and replaced block ids a stale-QC validator remembers.
pub const FORK_BLOCKS_MAX: usize = 64;

/// A stale-QC validator's fork attack in progress (see
/// [`crate::options::Behaviour::StaleQc`]).
#[derive(Clone, Debug)]
pub struct ForkAttack {
    /// The honest validator that alone received the proposal whose QC
    /// commits a block, and is cut off from the others.
    pub victim: usize,
    /// That proposal (round k): the fork block reuses its round and
    /// header fields.
    pub proposal: Proposal,
    /// The QC the fork extends: the one the committed block itself carries,
    /// so the fork's first block is a sibling of the committed one.
    pub stale: QuorumCert,
    /// The block `stale` certifies: the fork's parent.
    pub parent: Block,
    /// Timeouts of round k - 1 from the other validators, which never saw
    /// the QC that ends that round.
    pub timeouts: Vec<TimeoutSignature>,
    /// Whether the fork block was sent.
    pub forked: bool,
    /// The attack (and the victim's isolation) ends then.
    pub until_ms: u64,
}

/// `tc` with this validator's own entry reporting `stale` (a timeout it may
/// sign: it holds that QC), re-signed; inserted if it was not there.
pub fn with_own_entry(
    mut tc: TimeoutCert,
    me: ValidatorIndex,
    stale: Round,
    key: &SecretKey,
    chain: &ChainId,
) -> TimeoutCert {
    let entry = TimeoutSignature {
        voter: me,
        high_qc_round: stale,
        signature: key.sign_raw(&timeout_signing_bytes(chain, tc.epoch, tc.round, stale)),
    };
    match tc.entries.binary_search_by_key(&me, |e| e.voter) {
        Ok(at) => tc.entries[at] = entry,
        Err(at) => tc.entries.insert(at, entry),
    }
    tc
}

/// The stale-QC leader's fork block: `template`'s round and header fields,
/// justified by `tc` (when given) and extending `stale` (whose block is
/// `parent`), with an empty payload that attests what the parent attested
/// (valid for any validator that executed that far). Re-signed. None if
/// the parent's payload does not decode.
pub fn fork_proposal(
    template: &Proposal,
    stale: &QuorumCert,
    parent: &Block,
    tc: Option<TimeoutCert>,
    key: &SecretKey,
    chain: &ChainId,
) -> Option<Proposal> {
    let parent_payload = Payload::decode(parent.payload()).ok()?;
    let mut fields = template.block.clone().into_fields();
    fields.height = parent.height().next();
    fields.justify = stale.clone();
    fields.state_root = parent.state_root();
    fields.payload = Payload {
        state_height: parent_payload.state_height,
        txs: Vec::new(),
    }
    .encode();
    fields.timestamp_ms = fields.timestamp_ms.max(parent.timestamp_ms() + 1);
    if let Some(tc) = tc {
        fields.timeout_cert = Some(tc);
    }
    Some(Proposal::sign(Block::new(fields), key, chain))
}

/// The same timeout, re-signed reporting `stale` as the highest QC (a
/// stale-QC validator hides the QC that commits the victim's block).
pub fn lowered_timeout(
    timeout: &Timeout,
    stale: &QuorumCert,
    key: &SecretKey,
    chain: &ChainId,
) -> Timeout {
    Timeout::sign(
        timeout.epoch,
        timeout.round,
        stale.clone(),
        timeout.last_round_tc.clone(),
        timeout.voter,
        key,
        chain,
    )
}
