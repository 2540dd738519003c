//! What replicas send each other: the message envelope and sync requests
//! and responses.

use commons_types::{Epoch, Hash, Height};

use super::{Block, Proposal, QuorumCert, Timeout, Vote, Wire};
use crate::limits;
use crate::wire::{DecodeError, Reader, Writer};

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
