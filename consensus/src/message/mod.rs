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

use crate::limits;
use crate::wire::{DecodeError, Reader, Writer};
use commons_types::ValidatorIndex;

mod block;
mod certificates;
mod evidence;
mod exchange;

pub use block::{Block, BlockFields, Proposal, RootBlock, SignedProposal, proposal_signing_bytes};
pub use certificates::{
    QuorumCert, Timeout, TimeoutCert, TimeoutSignature, Vote, VoteData, timeout_signing_bytes,
};
pub use evidence::{Evidence, SafetyRecord, SignedTimeout};
pub use exchange::{Message, SyncRequest, SyncResponse};

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

pub(super) fn write_index(w: &mut Writer, i: ValidatorIndex) {
    w.u16(i.0);
}

pub(super) fn read_index(
    r: &mut Reader<'_>,
    what: &'static str,
) -> Result<ValidatorIndex, DecodeError> {
    Ok(ValidatorIndex(r.u16(what)?))
}
