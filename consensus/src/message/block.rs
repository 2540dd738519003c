//! Blocks, the epoch's root block, and signed proposals.

use commons_types::{
    ChainId, Domain, Epoch, Hash, Height, Round, SecretKey, Signature, ValidatorIndex,
    signing_bytes,
};

use super::{QuorumCert, TimeoutCert, VoteData, Wire, read_index, write_index};
use crate::limits;
use crate::wire::{DecodeError, Reader, Writer};

const BLOCK_ID_DOMAIN: &[u8] = b"commons/block/v1";

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
