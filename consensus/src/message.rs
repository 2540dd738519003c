//! The protocol's values and their canonical encodings (see [`crate::wire`]).
//!
//! What each signature covers, always as
//! `signing_bytes(domain, chain_id, message)`:
//!
//! | value | domain | message (fixed layout, big-endian) |
//! | --- | --- | --- |
//! | [`Vote`] | `Domain::Vote` | [`VoteData`]: epoch, round, height, block id, parent id, parent round (96 bytes) |
//! | [`Timeout`] | `Domain::Timeout` | epoch, round, round of the sender's highest QC (24 bytes) |
//! | [`Proposal`] | `Domain::Proposal` | epoch, round, block id (48 bytes) |
//!
//! A block's id is `SHA-256("commons/block/v1" || encoding of the block)`;
//! the encoding covers every field, including the certificates it carries,
//! so the id commits to the whole block. Received blocks are hashed over the
//! bytes as received.

use commons_types::{
    ChainId, Domain, Epoch, Hash, Height, Round, SecretKey, Signature, ValidatorIndex,
    ValidatorSet, signing_bytes,
};

use crate::wire::{DecodeError, Reader, Writer};
use crate::{Reject, limits};

const BLOCK_ID_DOMAIN: &[u8] = b"commons/block/v1";

/// Encoding of one value kind; `encode`/`decode` wrap it.
pub(crate) trait Wire: Sized {
    const WHAT: &'static str;
    fn write(&self, w: &mut Writer);
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError>;
}

macro_rules! encode_decode {
    ($($ty:ty),*) => {$(
        impl $ty {
            /// The canonical encoding.
            pub fn encode(&self) -> Vec<u8> {
                let mut w = Writer::new();
                Wire::write(self, &mut w);
                w.into_bytes()
            }

            /// Decodes exactly one value, bounded by
            /// [`limits::MAX_MESSAGE_BYTES`]; trailing bytes are an error.
            pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
                if bytes.len() > limits::MAX_MESSAGE_BYTES {
                    return Err(DecodeError::TooLong {
                        what: <$ty as Wire>::WHAT,
                        got: bytes.len(),
                        limit: limits::MAX_MESSAGE_BYTES,
                    });
                }
                let mut r = Reader::new(bytes);
                let value = <$ty as Wire>::read(&mut r)?;
                r.finish(<$ty as Wire>::WHAT)?;
                Ok(value)
            }
        }
    )*};
}

encode_decode!(
    VoteData,
    Vote,
    QuorumCert,
    TimeoutCert,
    Timeout,
    Block,
    Proposal,
    Message,
    Evidence,
    SafetyRecord
);

fn write_index(w: &mut Writer, i: ValidatorIndex) {
    w.u16(i.0);
}

fn read_index(r: &mut Reader<'_>, what: &'static str) -> Result<ValidatorIndex, DecodeError> {
    Ok(ValidatorIndex(r.u16(what)?))
}

/// What a vote is for. Carrying the parent lets anyone apply the 2-chain
/// commit rule from a QC alone (a QC whose `round == parent_round + 1`
/// commits `parent_id`), which is what committed-range sync relies on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VoteData {
    pub epoch: Epoch,
    pub round: Round,
    pub height: Height,
    pub block_id: Hash,
    pub parent_id: Hash,
    pub parent_round: Round,
}

impl VoteData {
    /// The bytes a vote signs, with the domain and chain prefix.
    pub fn signing_bytes(&self, chain: &ChainId) -> Vec<u8> {
        signing_bytes(Domain::Vote, chain, &self.encode())
    }
}

impl Wire for VoteData {
    const WHAT: &'static str = "vote data";
    fn write(&self, w: &mut Writer) {
        w.u64(self.epoch.0);
        w.u64(self.round.0);
        w.u64(self.height.0);
        w.hash(&self.block_id);
        w.hash(&self.parent_id);
        w.u64(self.parent_round.0);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(VoteData {
            epoch: Epoch(r.u64("vote epoch")?),
            round: Round(r.u64("vote round")?),
            height: Height(r.u64("vote height")?),
            block_id: r.hash("vote block id")?,
            parent_id: r.hash("vote parent id")?,
            parent_round: Round(r.u64("vote parent round")?),
        })
    }
}

/// One validator's signed vote for a block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vote {
    pub data: VoteData,
    pub voter: ValidatorIndex,
    pub signature: Signature,
}

impl Vote {
    pub fn sign(data: VoteData, voter: ValidatorIndex, key: &SecretKey, chain: &ChainId) -> Vote {
        let signature = key.sign_raw(&data.signing_bytes(chain));
        Vote {
            data,
            voter,
            signature,
        }
    }
}

impl Wire for Vote {
    const WHAT: &'static str = "vote";
    fn write(&self, w: &mut Writer) {
        self.data.write(w);
        write_index(w, self.voter);
        w.signature(&self.signature);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Vote {
            data: VoteData::read(r)?,
            voter: read_index(r, "voter")?,
            signature: r.signature("vote signature")?,
        })
    }
}

/// A quorum certificate: votes of more than two thirds of the power for one
/// [`VoteData`]. Signatures are sorted by strictly increasing validator index
/// (one canonical form). The epoch's root QC has no signatures: it is the
/// agreed starting point of the epoch, accepted only if equal to the
/// replica's own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumCert {
    pub data: VoteData,
    pub signatures: Vec<(ValidatorIndex, Signature)>,
}

impl QuorumCert {
    pub fn round(&self) -> Round {
        self.data.round
    }

    pub fn block_id(&self) -> Hash {
        self.data.block_id
    }

    /// The root QC of an epoch: certifies the epoch's root block at round 0.
    pub fn root(epoch: Epoch, root: &RootBlock) -> QuorumCert {
        QuorumCert {
            data: VoteData {
                epoch,
                round: Round::ZERO,
                height: root.height,
                block_id: root.id,
                parent_id: root.id,
                parent_round: Round::ZERO,
            },
            signatures: Vec::new(),
        }
    }

    pub fn signers(&self) -> impl Iterator<Item = ValidatorIndex> + '_ {
        self.signatures.iter().map(|(i, _)| *i)
    }
}

fn write_sigs(w: &mut Writer, sigs: &[(ValidatorIndex, Signature)]) {
    w.len(sigs.len());
    for (i, s) in sigs {
        write_index(w, *i);
        w.signature(s);
    }
}

fn read_sigs(
    r: &mut Reader<'_>,
    what: &'static str,
) -> Result<Vec<(ValidatorIndex, Signature)>, DecodeError> {
    let n = r.len(what, limits::MAX_CERT_SIGNERS, 2 + Signature::LEN)?;
    let mut out: Vec<(ValidatorIndex, Signature)> = Vec::with_capacity(n);
    for _ in 0..n {
        let i = read_index(r, what)?;
        let s = r.signature(what)?;
        if out.last().is_some_and(|(prev, _)| *prev >= i) {
            return Err(DecodeError::NotCanonical {
                what,
                reason: "signer indices must strictly increase",
            });
        }
        out.push((i, s));
    }
    Ok(out)
}

impl Wire for QuorumCert {
    const WHAT: &'static str = "quorum certificate";
    fn write(&self, w: &mut Writer) {
        self.data.write(w);
        write_sigs(w, &self.signatures);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(QuorumCert {
            data: VoteData::read(r)?,
            signatures: read_sigs(r, "QC signatures")?,
        })
    }
}

/// The bytes a timeout signs (DiemBFT v4 signs the round and the round of
/// the sender's highest QC, so that a TC aggregates signatures over
/// different high-QC rounds).
pub fn timeout_signing_bytes(
    chain: &ChainId,
    epoch: Epoch,
    round: Round,
    high_qc_round: Round,
) -> Vec<u8> {
    let mut w = Writer::new();
    w.u64(epoch.0);
    w.u64(round.0);
    w.u64(high_qc_round.0);
    signing_bytes(Domain::Timeout, chain, &w.into_bytes())
}

/// One signature inside a TC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeoutSignature {
    pub voter: ValidatorIndex,
    pub high_qc_round: Round,
    pub signature: Signature,
}

/// A timeout certificate: timeouts of more than two thirds of the power for
/// one round, each with the round of its sender's highest QC. Entries sorted
/// by strictly increasing voter index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeoutCert {
    pub epoch: Epoch,
    pub round: Round,
    pub entries: Vec<TimeoutSignature>,
}

impl TimeoutCert {
    /// The highest QC round any signer reported: a block justified by this
    /// TC must extend a QC at least this high (Jolteon's locking rule).
    pub fn highest_qc_round(&self) -> Round {
        self.entries
            .iter()
            .map(|e| e.high_qc_round)
            .max()
            .unwrap_or(Round::ZERO)
    }
}

impl Wire for TimeoutCert {
    const WHAT: &'static str = "timeout certificate";
    fn write(&self, w: &mut Writer) {
        w.u64(self.epoch.0);
        w.u64(self.round.0);
        w.len(self.entries.len());
        for e in &self.entries {
            write_index(w, e.voter);
            w.u64(e.high_qc_round.0);
            w.signature(&e.signature);
        }
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let epoch = Epoch(r.u64("TC epoch")?);
        let round = Round(r.u64("TC round")?);
        let n = r.len(
            "TC entries",
            limits::MAX_CERT_SIGNERS,
            2 + 8 + Signature::LEN,
        )?;
        let mut entries: Vec<TimeoutSignature> = Vec::with_capacity(n);
        for _ in 0..n {
            let e = TimeoutSignature {
                voter: read_index(r, "TC voter")?,
                high_qc_round: Round(r.u64("TC high QC round")?),
                signature: r.signature("TC signature")?,
            };
            if entries.last().is_some_and(|prev| prev.voter >= e.voter) {
                return Err(DecodeError::NotCanonical {
                    what: "TC entries",
                    reason: "voter indices must strictly increase",
                });
            }
            entries.push(e);
        }
        Ok(TimeoutCert {
            epoch,
            round,
            entries,
        })
    }
}

/// A validator's signed timeout for a round, with its highest QC (so the next
/// leader can extend it) and, when it entered the round by a TC, that TC (so a
/// replica that missed it can catch up; DiemBFT v4 `last_round_tc`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeout {
    pub epoch: Epoch,
    pub round: Round,
    pub high_qc: QuorumCert,
    pub voter: ValidatorIndex,
    pub signature: Signature,
    pub last_round_tc: Option<TimeoutCert>,
}

impl Timeout {
    pub fn signing_bytes(&self, chain: &ChainId) -> Vec<u8> {
        timeout_signing_bytes(chain, self.epoch, self.round, self.high_qc.round())
    }

    pub fn sign(
        epoch: Epoch,
        round: Round,
        high_qc: QuorumCert,
        last_round_tc: Option<TimeoutCert>,
        voter: ValidatorIndex,
        key: &SecretKey,
        chain: &ChainId,
    ) -> Timeout {
        let signature = key.sign_raw(&timeout_signing_bytes(chain, epoch, round, high_qc.round()));
        Timeout {
            epoch,
            round,
            high_qc,
            voter,
            signature,
            last_round_tc,
        }
    }

    pub fn header(&self) -> SignedTimeout {
        SignedTimeout {
            epoch: self.epoch,
            round: self.round,
            high_qc_round: self.high_qc.round(),
            voter: self.voter,
            signature: self.signature,
        }
    }
}

impl Wire for Timeout {
    const WHAT: &'static str = "timeout";
    fn write(&self, w: &mut Writer) {
        w.u64(self.epoch.0);
        w.u64(self.round.0);
        self.high_qc.write(w);
        write_index(w, self.voter);
        w.signature(&self.signature);
        match &self.last_round_tc {
            None => w.u8(0),
            Some(tc) => {
                w.u8(1);
                tc.write(w);
            }
        }
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Timeout {
            epoch: Epoch(r.u64("timeout epoch")?),
            round: Round(r.u64("timeout round")?),
            high_qc: QuorumCert::read(r)?,
            voter: read_index(r, "timeout voter")?,
            signature: r.signature("timeout signature")?,
            last_round_tc: if r.flag("timeout last TC")? {
                Some(TimeoutCert::read(r)?)
            } else {
                None
            },
        })
    }
}

/// The block an epoch starts from: genesis for epoch 0, the last committed
/// block of epoch e for epoch e + 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RootBlock {
    pub id: Hash,
    pub height: Height,
    pub timestamp_ms: u64,
    pub state_root: Hash,
}

impl RootBlock {
    /// Genesis: a commitment to the chain, the first validator set and the
    /// initial application state.
    pub fn genesis(
        chain: &ChainId,
        set_hash: Hash,
        state_root: Hash,
        timestamp_ms: u64,
    ) -> RootBlock {
        let id = Hash::digest_parts(&[
            b"commons/genesis/v1",
            chain.as_str().as_bytes(),
            set_hash.as_bytes(),
            state_root.as_bytes(),
            &timestamp_ms.to_be_bytes(),
        ]);
        RootBlock {
            id,
            height: Height::ZERO,
            timestamp_ms,
            state_root,
        }
    }

    pub fn of(block: &Block) -> RootBlock {
        RootBlock {
            id: block.id(),
            height: block.height(),
            timestamp_ms: block.timestamp_ms(),
            state_root: block.state_root(),
        }
    }
}

impl Wire for RootBlock {
    const WHAT: &'static str = "root block";
    fn write(&self, w: &mut Writer) {
        w.hash(&self.id);
        w.u64(self.height.0);
        w.u64(self.timestamp_ms);
        w.hash(&self.state_root);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(RootBlock {
            id: r.hash("root id")?,
            height: Height(r.u64("root height")?),
            timestamp_ms: r.u64("root timestamp")?,
            state_root: r.hash("root state root")?,
        })
    }
}

/// A block. Its parent is the block its `justify` QC certifies. Fields are
/// read through methods: the id is computed once, when the block is built or
/// decoded, and must never go stale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    epoch: Epoch,
    round: Round,
    height: Height,
    proposer: ValidatorIndex,
    timestamp_ms: u64,
    state_root: Hash,
    justify: QuorumCert,
    timeout_cert: Option<TimeoutCert>,
    payload: Vec<u8>,
    id: Hash,
}

/// The fields of a new block, before its id is computed.
#[derive(Clone, Debug)]
pub struct BlockFields {
    pub epoch: Epoch,
    pub round: Round,
    pub height: Height,
    pub proposer: ValidatorIndex,
    pub timestamp_ms: u64,
    pub state_root: Hash,
    pub justify: QuorumCert,
    pub timeout_cert: Option<TimeoutCert>,
    pub payload: Vec<u8>,
}

impl Block {
    pub fn new(f: BlockFields) -> Block {
        let mut block = Block {
            epoch: f.epoch,
            round: f.round,
            height: f.height,
            proposer: f.proposer,
            timestamp_ms: f.timestamp_ms,
            state_root: f.state_root,
            justify: f.justify,
            timeout_cert: f.timeout_cert,
            payload: f.payload,
            id: Hash::ZERO,
        };
        let mut w = Writer::new();
        block.write_fields(&mut w);
        block.id = Hash::digest_parts(&[BLOCK_ID_DOMAIN, &w.into_bytes()]);
        block
    }

    pub fn id(&self) -> Hash {
        self.id
    }
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }
    pub fn round(&self) -> Round {
        self.round
    }
    pub fn height(&self) -> Height {
        self.height
    }
    pub fn proposer(&self) -> ValidatorIndex {
        self.proposer
    }
    pub fn timestamp_ms(&self) -> u64 {
        self.timestamp_ms
    }
    /// The application's state root after executing the parent.
    pub fn state_root(&self) -> Hash {
        self.state_root
    }
    pub fn justify(&self) -> &QuorumCert {
        &self.justify
    }
    pub fn timeout_cert(&self) -> Option<&TimeoutCert> {
        self.timeout_cert.as_ref()
    }
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }
    // The parent is the block the justify QC certifies (not that block's
    // parent), so the getter reads `block_id` on purpose.
    #[allow(clippy::misnamed_getters)]
    pub fn parent_id(&self) -> Hash {
        self.justify.data.block_id
    }

    /// What a vote for this block signs.
    pub fn vote_data(&self) -> VoteData {
        VoteData {
            epoch: self.epoch,
            round: self.round,
            height: self.height,
            block_id: self.id,
            parent_id: self.justify.data.block_id,
            parent_round: self.justify.data.round,
        }
    }

    pub fn into_fields(self) -> BlockFields {
        BlockFields {
            epoch: self.epoch,
            round: self.round,
            height: self.height,
            proposer: self.proposer,
            timestamp_ms: self.timestamp_ms,
            state_root: self.state_root,
            justify: self.justify,
            timeout_cert: self.timeout_cert,
            payload: self.payload,
        }
    }

    fn write_fields(&self, w: &mut Writer) {
        w.u64(self.epoch.0);
        w.u64(self.round.0);
        w.u64(self.height.0);
        write_index(w, self.proposer);
        w.u64(self.timestamp_ms);
        w.hash(&self.state_root);
        self.justify.write(w);
        match &self.timeout_cert {
            None => w.u8(0),
            Some(tc) => {
                w.u8(1);
                tc.write(w);
            }
        }
        w.bytes(&self.payload);
    }
}

impl Wire for Block {
    const WHAT: &'static str = "block";
    fn write(&self, w: &mut Writer) {
        self.write_fields(w);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let start = r.position();
        let epoch = Epoch(r.u64("block epoch")?);
        let round = Round(r.u64("block round")?);
        let height = Height(r.u64("block height")?);
        let proposer = read_index(r, "block proposer")?;
        let timestamp_ms = r.u64("block timestamp")?;
        let state_root = r.hash("block state root")?;
        let justify = QuorumCert::read(r)?;
        let timeout_cert = if r.flag("block TC")? {
            Some(TimeoutCert::read(r)?)
        } else {
            None
        };
        let payload = r.bytes("block payload", limits::MAX_PAYLOAD_BYTES)?;
        // Hash what was received, not a re-encoding of it.
        let id = Hash::digest_parts(&[BLOCK_ID_DOMAIN, r.since(start)]);
        Ok(Block {
            epoch,
            round,
            height,
            proposer,
            timestamp_ms,
            state_root,
            justify,
            timeout_cert,
            payload,
            id,
        })
    }
}

/// The signed part of a proposal: enough for anyone to check an
/// equivocation without the blocks themselves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignedProposal {
    pub epoch: Epoch,
    pub round: Round,
    pub block_id: Hash,
    pub proposer: ValidatorIndex,
    pub signature: Signature,
}

pub fn proposal_signing_bytes(chain: &ChainId, epoch: Epoch, round: Round, id: &Hash) -> Vec<u8> {
    let mut w = Writer::new();
    w.u64(epoch.0);
    w.u64(round.0);
    w.hash(id);
    signing_bytes(Domain::Proposal, chain, &w.into_bytes())
}

impl SignedProposal {
    pub fn signing_bytes(&self, chain: &ChainId) -> Vec<u8> {
        proposal_signing_bytes(chain, self.epoch, self.round, &self.block_id)
    }
}

/// A leader's block with its signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    pub block: Block,
    pub signature: Signature,
}

impl Proposal {
    pub fn sign(block: Block, key: &SecretKey, chain: &ChainId) -> Proposal {
        let signature = key.sign_raw(&proposal_signing_bytes(
            chain,
            block.epoch(),
            block.round(),
            &block.id(),
        ));
        Proposal { block, signature }
    }

    pub fn header(&self) -> SignedProposal {
        SignedProposal {
            epoch: self.block.epoch(),
            round: self.block.round(),
            block_id: self.block.id(),
            proposer: self.block.proposer(),
            signature: self.signature,
        }
    }
}

impl Wire for Proposal {
    const WHAT: &'static str = "proposal";
    fn write(&self, w: &mut Writer) {
        self.block.write(w);
        w.signature(&self.signature);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Proposal {
            block: Block::read(r)?,
            signature: r.signature("proposal signature")?,
        })
    }
}

/// A request for blocks from a replica that is missing them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncRequest {
    /// Block `id` and up to `count - 1` of its ancestors, newest first.
    Ancestors { id: Hash, count: u16 },
    /// Committed blocks of `epoch` from `from_height` on, ending with a block
    /// committed by the QC sent with them.
    Committed { epoch: Epoch, from_height: Height },
}

/// The answer to a [`SyncRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncResponse {
    /// Newest first, each the parent of the one before.
    Ancestors { blocks: Vec<Block> },
    /// Oldest first, each the parent of the next; `commit_qc` certifies a
    /// child of the last block in the next round (2-chain commit rule), so
    /// the last block and all before it are committed.
    Committed {
        blocks: Vec<Block>,
        commit_qc: QuorumCert,
    },
}

/// Every message replicas exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Proposal(Proposal),
    Vote(Vote),
    Timeout(Timeout),
    SyncRequest(SyncRequest),
    SyncResponse(SyncResponse),
}

impl Message {
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Proposal(_) => "proposal",
            Message::Vote(_) => "vote",
            Message::Timeout(_) => "timeout",
            Message::SyncRequest(_) => "sync request",
            Message::SyncResponse(_) => "sync response",
        }
    }
}

fn write_blocks(w: &mut Writer, blocks: &[Block]) {
    w.len(blocks.len());
    for b in blocks {
        b.write(w);
    }
}

fn read_blocks(r: &mut Reader<'_>) -> Result<Vec<Block>, DecodeError> {
    // A block encodes to at least ~200 bytes; 100 is a safe lower bound for
    // the pre-allocation check.
    let n = r.len("sync blocks", limits::MAX_SYNC_BLOCKS, 100)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(Block::read(r)?);
    }
    Ok(out)
}

impl Wire for Message {
    const WHAT: &'static str = "message";
    fn write(&self, w: &mut Writer) {
        match self {
            Message::Proposal(p) => {
                w.u8(1);
                p.write(w);
            }
            Message::Vote(v) => {
                w.u8(2);
                v.write(w);
            }
            Message::Timeout(t) => {
                w.u8(3);
                t.write(w);
            }
            Message::SyncRequest(SyncRequest::Ancestors { id, count }) => {
                w.u8(4);
                w.hash(id);
                w.u16(*count);
            }
            Message::SyncRequest(SyncRequest::Committed { epoch, from_height }) => {
                w.u8(5);
                w.u64(epoch.0);
                w.u64(from_height.0);
            }
            Message::SyncResponse(SyncResponse::Ancestors { blocks }) => {
                w.u8(6);
                write_blocks(w, blocks);
            }
            Message::SyncResponse(SyncResponse::Committed { blocks, commit_qc }) => {
                w.u8(7);
                write_blocks(w, blocks);
                commit_qc.write(w);
            }
        }
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.u8("message tag")? {
            1 => Message::Proposal(Proposal::read(r)?),
            2 => Message::Vote(Vote::read(r)?),
            3 => Message::Timeout(Timeout::read(r)?),
            4 => Message::SyncRequest(SyncRequest::Ancestors {
                id: r.hash("sync id")?,
                count: r.u16("sync count")?,
            }),
            5 => Message::SyncRequest(SyncRequest::Committed {
                epoch: Epoch(r.u64("sync epoch")?),
                from_height: Height(r.u64("sync from height")?),
            }),
            6 => Message::SyncResponse(SyncResponse::Ancestors {
                blocks: read_blocks(r)?,
            }),
            7 => Message::SyncResponse(SyncResponse::Committed {
                blocks: read_blocks(r)?,
                commit_qc: QuorumCert::read(r)?,
            }),
            tag => {
                return Err(DecodeError::BadTag {
                    what: "message",
                    tag,
                });
            }
        })
    }
}

/// The signed part of a timeout, enough to check an equivocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignedTimeout {
    pub epoch: Epoch,
    pub round: Round,
    pub high_qc_round: Round,
    pub voter: ValidatorIndex,
    pub signature: Signature,
}

impl SignedTimeout {
    pub fn signing_bytes(&self, chain: &ChainId) -> Vec<u8> {
        timeout_signing_bytes(chain, self.epoch, self.round, self.high_qc_round)
    }
}

/// Proof that one validator signed two conflicting messages in one round of
/// one epoch. Anyone holding the epoch's validator set can check it with
/// [`Evidence::check`](crate::Evidence::check).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Evidence {
    /// Two votes for different blocks.
    ConflictingVotes { first: Vote, second: Vote },
    /// Two proposals of different blocks.
    ConflictingProposals {
        first: SignedProposal,
        second: SignedProposal,
    },
    /// Two timeouts reporting different highest-QC rounds.
    ConflictingTimeouts {
        first: SignedTimeout,
        second: SignedTimeout,
    },
}

impl Evidence {
    /// Checks the evidence against the validator set of its epoch: one
    /// validator, one round, two different signed contents, both signatures
    /// valid. Returns the offender.
    pub fn check(&self, chain: &ChainId, set: &ValidatorSet) -> Result<ValidatorIndex, Reject> {
        let (who, round, differ, signed) = match self {
            Evidence::ConflictingVotes { first, second } => (
                (first.voter, second.voter),
                (
                    first.data.round,
                    second.data.round,
                    first.data.epoch,
                    second.data.epoch,
                ),
                first.data != second.data,
                [
                    (first.data.signing_bytes(chain), first.signature),
                    (second.data.signing_bytes(chain), second.signature),
                ],
            ),
            Evidence::ConflictingProposals { first, second } => (
                (first.proposer, second.proposer),
                (first.round, second.round, first.epoch, second.epoch),
                first.block_id != second.block_id,
                [
                    (first.signing_bytes(chain), first.signature),
                    (second.signing_bytes(chain), second.signature),
                ],
            ),
            Evidence::ConflictingTimeouts { first, second } => (
                (first.voter, second.voter),
                (first.round, second.round, first.epoch, second.epoch),
                first.high_qc_round != second.high_qc_round,
                [
                    (first.signing_bytes(chain), first.signature),
                    (second.signing_bytes(chain), second.signature),
                ],
            ),
        };
        let not_conflicting = Reject::Unexpected {
            what: "evidence",
            reason: "the two messages are not from one validator in one round with different content",
        };
        if who.0 != who.1 || round.0 != round.1 || round.2 != round.3 || !differ {
            return Err(not_conflicting);
        }
        let key = set
            .get(who.0)
            .ok_or(Reject::UnknownValidator {
                index: who.0,
                len: set.len(),
            })?
            .public_key;
        for (bytes, signature) in &signed {
            key.verify_raw(bytes, signature)
                .map_err(|_| Reject::BadSignature {
                    what: "evidence",
                    signer: who.0,
                })?;
        }
        Ok(who.0)
    }
}

fn write_signed_proposal(w: &mut Writer, p: &SignedProposal) {
    w.u64(p.epoch.0);
    w.u64(p.round.0);
    w.hash(&p.block_id);
    write_index(w, p.proposer);
    w.signature(&p.signature);
}

fn read_signed_proposal(r: &mut Reader<'_>) -> Result<SignedProposal, DecodeError> {
    Ok(SignedProposal {
        epoch: Epoch(r.u64("proposal epoch")?),
        round: Round(r.u64("proposal round")?),
        block_id: r.hash("proposal block id")?,
        proposer: read_index(r, "proposer")?,
        signature: r.signature("proposal signature")?,
    })
}

fn write_signed_timeout(w: &mut Writer, t: &SignedTimeout) {
    w.u64(t.epoch.0);
    w.u64(t.round.0);
    w.u64(t.high_qc_round.0);
    write_index(w, t.voter);
    w.signature(&t.signature);
}

fn read_signed_timeout(r: &mut Reader<'_>) -> Result<SignedTimeout, DecodeError> {
    Ok(SignedTimeout {
        epoch: Epoch(r.u64("timeout epoch")?),
        round: Round(r.u64("timeout round")?),
        high_qc_round: Round(r.u64("timeout high QC round")?),
        voter: read_index(r, "timeout voter")?,
        signature: r.signature("timeout signature")?,
    })
}

impl Wire for Evidence {
    const WHAT: &'static str = "evidence";
    fn write(&self, w: &mut Writer) {
        match self {
            Evidence::ConflictingVotes { first, second } => {
                w.u8(1);
                first.write(w);
                second.write(w);
            }
            Evidence::ConflictingProposals { first, second } => {
                w.u8(2);
                write_signed_proposal(w, first);
                write_signed_proposal(w, second);
            }
            Evidence::ConflictingTimeouts { first, second } => {
                w.u8(3);
                write_signed_timeout(w, first);
                write_signed_timeout(w, second);
            }
        }
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.u8("evidence tag")? {
            1 => Evidence::ConflictingVotes {
                first: Vote::read(r)?,
                second: Vote::read(r)?,
            },
            2 => Evidence::ConflictingProposals {
                first: read_signed_proposal(r)?,
                second: read_signed_proposal(r)?,
            },
            3 => Evidence::ConflictingTimeouts {
                first: read_signed_timeout(r)?,
                second: read_signed_timeout(r)?,
            },
            tag => {
                return Err(DecodeError::BadTag {
                    what: "evidence",
                    tag,
                });
            }
        })
    }
}

/// What a replica must have on stable storage before any vote, timeout or
/// proposal it signed leaves it (see [`crate::Ready`]). With it, a restarted
/// replica never signs two different votes, timeouts or proposals for one
/// round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SafetyRecord {
    pub epoch: Epoch,
    /// The block the epoch started from.
    pub epoch_root: RootBlock,
    /// Highest round voted in, or timed out in (a replica that timed out a
    /// round no longer votes in it; DiemBFT v4 `highest_vote_round`).
    pub last_voted_round: Round,
    /// Highest QC round seen: the 2-chain lock. A timeout never reports a
    /// lower one.
    pub highest_qc_round: Round,
    /// Highest round this replica signed a timeout for.
    pub highest_timeout_round: Round,
    /// The last vote signed, resent unchanged rather than re-signed.
    pub last_vote: Option<Vote>,
    /// The last timeout signed, resent unchanged rather than re-signed.
    pub last_timeout: Option<Timeout>,
    /// Highest round this replica proposed a block in. A second, different
    /// proposal for one round is evidence of equivocation against its
    /// signer, so a replica restarted in a round it already proposed in
    /// leaves that round to time out. Encoded last and read as zero when
    /// absent, so records written before it was added still decode.
    pub last_proposed_round: Round,
}

impl SafetyRecord {
    /// The record of a replica that has never voted in `epoch`.
    pub fn fresh(epoch: Epoch, epoch_root: RootBlock) -> SafetyRecord {
        SafetyRecord {
            epoch,
            epoch_root,
            last_voted_round: Round::ZERO,
            highest_qc_round: Round::ZERO,
            highest_timeout_round: Round::ZERO,
            last_vote: None,
            last_timeout: None,
            last_proposed_round: Round::ZERO,
        }
    }
}

impl Wire for SafetyRecord {
    const WHAT: &'static str = "safety record";
    fn write(&self, w: &mut Writer) {
        w.u64(self.epoch.0);
        self.epoch_root.write(w);
        w.u64(self.last_voted_round.0);
        w.u64(self.highest_qc_round.0);
        w.u64(self.highest_timeout_round.0);
        match &self.last_vote {
            None => w.u8(0),
            Some(v) => {
                w.u8(1);
                v.write(w);
            }
        }
        match &self.last_timeout {
            None => w.u8(0),
            Some(t) => {
                w.u8(1);
                t.write(w);
            }
        }
        w.u64(self.last_proposed_round.0);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(SafetyRecord {
            epoch: Epoch(r.u64("record epoch")?),
            epoch_root: RootBlock::read(r)?,
            last_voted_round: Round(r.u64("record last voted round")?),
            highest_qc_round: Round(r.u64("record highest QC round")?),
            highest_timeout_round: Round(r.u64("record highest timeout round")?),
            last_vote: if r.flag("record last vote")? {
                Some(Vote::read(r)?)
            } else {
                None
            },
            last_timeout: if r.flag("record last timeout")? {
                Some(Timeout::read(r)?)
            } else {
                None
            },
            last_proposed_round: if r.remaining() == 0 {
                Round::ZERO
            } else {
                Round(r.u64("record last proposed round")?)
            },
        })
    }
}
