//! Epochs: where an epoch ends, the wait for the next validator set, and
//! the messages that arrive for the next epoch meanwhile.
//!
//! Rules (DESIGN "Epochs"; DiemBFT v4 "Epoch change"):
//!
//! - **The end.** Epoch e ends at the committed block of height
//!   `root(e).height + epoch_length_blocks` ([`end_height`]). Committing it
//!   stops the rounds and asks the application for the next set
//!   ([`Epochs::begin_wait`]); the application answers after applying that
//!   block, so the answer can reflect it.
//! - **The change** ([`Epochs::accept_change`]): the answer must name the
//!   next epoch and the block that ended this one. Epoch e+1 starts at round
//!   1 with that block as root and a signature-less root QC every replica
//!   derives alike, a fresh safety record, new quorums and a new leader
//!   election.
//! - **Other epochs' messages** are refused ([`Reject::WrongEpoch`]); a
//!   message of a later epoch shows that this replica is behind and starts
//!   a committed-range sync. While waiting, next-epoch messages are buffered
//!   (at most [`limits::MAX_BUFFERED_NEXT_EPOCH`]) and replayed once the
//!   epoch starts ([`Epochs::on_message_while_waiting`]); sync requests are
//!   still served, so peers behind can catch up to the end.

use commons_types::{Epoch, Hash, Height, PublicKey};

use crate::contract::Request;
use crate::message::{Message, RootBlock, SyncRequest, SyncResponse};
use crate::{Reject, limits};

/// The last height of the epoch whose root is at `root`.
pub(crate) fn end_height(root: Height, epoch_length_blocks: u64) -> Height {
    Height(root.0.saturating_add(epoch_length_blocks))
}

/// The epoch a message belongs to, if it names one.
pub(crate) fn message_epoch(message: &Message) -> Option<Epoch> {
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

/// What to do with a message while the next set is awaited.
#[derive(Debug)]
pub(crate) enum WhileWaiting {
    /// Serve this request.
    Serve(SyncRequest),
    /// Kept for the next epoch.
    Buffered,
}

/// Whether the epoch has ended, and what waits for the next one.
#[derive(Debug, Default)]
pub(crate) struct Epochs {
    /// The block that ended the epoch, while the next set is awaited.
    awaiting: Option<RootBlock>,
    buffered: Vec<(PublicKey, Message)>,
}

impl Epochs {
    pub(crate) fn is_awaiting(&self) -> bool {
        self.awaiting.is_some()
    }

    /// The epoch `epoch` ended at `root`: the request for the next set.
    pub(crate) fn begin_wait(&mut self, epoch: Epoch, root: RootBlock) -> Request {
        self.awaiting = Some(root);
        Request::NeedValidatorSet {
            epoch: epoch.next(),
            block_id: root.id,
            height: root.height,
        }
    }

    /// Routes a message that arrived while the next set is awaited.
    pub(crate) fn on_message_while_waiting(
        &mut self,
        epoch: Epoch,
        from: PublicKey,
        message: Message,
    ) -> Result<WhileWaiting, Reject> {
        let next = epoch.next();
        match message {
            Message::SyncRequest(req) => Ok(WhileWaiting::Serve(req)),
            m if message_epoch(&m) == Some(next) => {
                if self.buffered.len() >= limits::MAX_BUFFERED_NEXT_EPOCH {
                    return Err(Reject::Full {
                        what: "next-epoch buffer",
                        limit: limits::MAX_BUFFERED_NEXT_EPOCH,
                    });
                }
                self.buffered.push((from, m));
                Ok(WhileWaiting::Buffered)
            }
            _ => Err(Reject::AwaitingEpochChange { next }),
        }
    }

    /// Checks the application's answer: it must be for the epoch after
    /// `epoch` and name the block that ended it. Returns that block, the
    /// new epoch's root, and stops waiting.
    pub(crate) fn accept_change(
        &mut self,
        epoch: Epoch,
        new_epoch: Epoch,
        block_id: Hash,
    ) -> Result<RootBlock, Reject> {
        let Some(root) = self.awaiting else {
            return Err(Reject::Unexpected {
                what: "epoch change",
                reason: "the epoch has not ended",
            });
        };
        if new_epoch != epoch.next() || block_id != root.id {
            return Err(Reject::Unexpected {
                what: "epoch change",
                reason: "epoch or block does not match the epoch's last block",
            });
        }
        self.awaiting = None;
        Ok(root)
    }

    /// The messages buffered for the epoch that just started, in arrival
    /// order.
    pub(crate) fn take_buffered(&mut self) -> Vec<(PublicKey, Message)> {
        std::mem::take(&mut self.buffered)
    }
}

#[cfg(test)]
#[path = "epochs_tests.rs"]
mod tests;
