//! Block sync: fetching blocks a replica is missing, serving peers that are
//! missing them, and choosing whom to ask.
//!
//! Rules (Jolteon, Gelashvili et al., FC 2022, §5 "block synchronization"
//! is left to the implementation; these follow DiemBFT v4's sync manager):
//!
//! - **Ancestors by id.** A block whose parent is missing waits among the
//!   orphans (see [`crate::acceptance`]) while the parent is fetched by id
//!   from the peer that showed it ([`Sync::want`]). A fetched block is
//!   accepted only if its id was asked for ([`Sync::claim`]): every id asked
//!   for is certified by a verified QC or is the parent of such a block, so
//!   the hash chain is the verification. One request per id, at most
//!   [`limits::MAX_WANTED_BLOCKS`] at once, each retried with the next peer
//!   after `sync_retry_ms` ([`Sync::fire`]).
//! - **Committed ranges.** A replica more than
//!   [`limits::SYNC_ANCESTORS_GAP_MAX`] heights behind (or shown a later
//!   epoch) fetches committed ranges instead, each ending with the QC that
//!   commits its last block by the 2-chain rule ([`Sync::start_committed`],
//!   [`check_range`]). Only the peer asked closes a request
//!   ([`Sync::claim_committed`]), so a peer cannot cancel a catch-up with a
//!   worthless answer.
//! - **Commit probes.** Replicas one commit apart may compute different
//!   leaders (reputation comes from the committed chain) and split the power
//!   so that no QC forms. A replica probes a proposer it does not take for
//!   the leader ([`Sync::probe_commits`]) and, on each round timeout, the
//!   next peer in turn ([`Sync::probe_on_timeout`]); a validator asking for a
//!   range above this replica's root is ahead and is probed back
//!   ([`Sync::note_requester_ahead`]). One probe per retry period.
//! - **Serving** ([`Sync::serve`]): ancestors from the tree or the committed
//!   window, committed ranges from the window (see [`crate::tree`]).

use std::collections::BTreeMap;

use commons_types::{Epoch, Hash, Height, PublicKey, ValidatorSet};
use tracing::{debug, trace};

use crate::contract::{Destination, Outbound};
use crate::message::{Block, Message, RootBlock, SyncRequest, SyncResponse};
use crate::time::Millis;
use crate::tree::BlockTree;
use crate::{Reject, limits};

/// A block asked for, of which height, from whom, when.
#[derive(Debug, Clone)]
struct Wanted {
    height: Height,
    peer: PublicKey,
    asked_at: Millis,
}

/// Who this replica is and what it sees, for choosing and asking peers.
pub(crate) struct Peers<'a> {
    /// This replica's key (never asked).
    pub me: PublicKey,
    pub set: &'a ValidatorSet,
    pub epoch: Epoch,
    pub now: Millis,
    pub retry_ms: u64,
}

impl Peers<'_> {
    /// The validator after `after` in the set's order, skipping this
    /// replica; the first one if `after` is not in the set.
    pub(crate) fn next(&self, after: &PublicKey) -> Option<PublicKey> {
        let keys: Vec<PublicKey> = self
            .set
            .validators()
            .iter()
            .map(|v| v.public_key)
            .filter(|k| *k != self.me)
            .collect();
        let pos = keys.iter().position(|k| k == after);
        let next = match pos {
            Some(p) => keys.get((p + 1) % keys.len().max(1)),
            None => keys.first(),
        };
        next.copied()
    }
}

/// Outstanding requests and the peers they went to.
#[derive(Debug, Default)]
pub(crate) struct Sync {
    wanted: BTreeMap<Hash, Wanted>,
    /// The committed-range request in flight: to whom, when.
    committed: Option<(PublicKey, Millis)>,
    /// A one-shot committed-range request to a validator whose proposal
    /// named another leader than this replica computes (see
    /// `probe_commits`), and when it was sent.
    probe: Option<(PublicKey, Millis)>,
    /// The peer the last round timeout probed; the next timeout probes the
    /// one after it.
    timeout_probe: Option<PublicKey>,
    /// Highest height a verified QC has shown to exist.
    target_height: Height,
}

fn send(out: &mut Vec<Outbound>, peer: PublicKey, request: SyncRequest) {
    out.push(Outbound {
        to: Destination::To(peer),
        message: Message::SyncRequest(request),
    });
}

fn ancestors_count(tree: &BlockTree, height: Height) -> u16 {
    let gap = height.0.saturating_sub(tree.root().height.0).max(1);
    gap.min(limits::MAX_SYNC_BLOCKS as u64) as u16
}

impl Sync {
    /// When the oldest request in flight is due for a retry.
    pub(crate) fn deadline(&self, retry_ms: u64) -> Option<Millis> {
        self.wanted
            .values()
            .map(|w| w.asked_at)
            .chain(self.committed.iter().map(|(_, at)| *at))
            .min()
            .map(|at| at.plus(retry_ms))
    }

    /// A verified QC showed that `height` exists.
    pub(crate) fn saw_height(&mut self, height: Height) {
        self.target_height = self.target_height.max(height);
    }

    /// Whether verified QCs showed heights far enough above the root that
    /// committed ranges, not ancestors, should fetch them.
    pub(crate) fn far_behind(&self, root: Height) -> bool {
        self.target_height.0 > root.0 + limits::SYNC_ANCESTORS_GAP_MAX
    }

    /// A block arrived: it is no longer wanted.
    pub(crate) fn got(&mut self, id: &Hash) {
        self.wanted.remove(id);
    }

    /// Takes `id` off the wanted list; false if it was not asked for.
    pub(crate) fn claim(&mut self, id: &Hash) -> bool {
        self.wanted.remove(id).is_some()
    }

    /// Blocks at or below the committed root are no longer wanted.
    pub(crate) fn committed_up_to(&mut self, root: Height) {
        self.wanted.retain(|_, w| w.height > root);
    }

    /// Retries every request older than the retry period with the next peer.
    pub(crate) fn fire(&mut self, peers: &Peers<'_>, tree: &BlockTree, out: &mut Vec<Outbound>) {
        let retry = peers.retry_ms;
        let now = peers.now;
        let due: Vec<Hash> = self
            .wanted
            .iter()
            .filter(|(_, w)| w.asked_at.plus(retry) <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let Some(w) = self.wanted.get(&id).cloned() else {
                continue;
            };
            let Some(peer) = peers.next(&w.peer) else {
                continue;
            };
            let count = ancestors_count(tree, w.height);
            self.wanted.insert(
                id,
                Wanted {
                    height: w.height,
                    peer,
                    asked_at: now,
                },
            );
            send(out, peer, SyncRequest::Ancestors { id, count });
        }
        if let Some((peer, at)) = self.committed
            && at.plus(retry) <= now
        {
            self.committed = None;
            if let Some(next) = peers.next(&peer) {
                self.start_committed(peers, tree, next, out);
            }
        }
    }

    /// Fetches block `id` at `height`, from `from` if given, else from the
    /// first other validator; far above the root, a committed range instead.
    pub(crate) fn want(
        &mut self,
        peers: &Peers<'_>,
        tree: &BlockTree,
        id: Hash,
        height: Height,
        from: Option<PublicKey>,
        out: &mut Vec<Outbound>,
    ) {
        if tree.contains(&id) || id == tree.root().id || self.wanted.contains_key(&id) {
            return;
        }
        let peer = match from.filter(|k| *k != peers.me) {
            Some(p) => p,
            None => match peers.next(&peers.me) {
                Some(p) => p,
                None => return,
            },
        };
        let gap = height.0.saturating_sub(tree.root().height.0);
        if gap > limits::SYNC_ANCESTORS_GAP_MAX {
            self.start_committed(peers, tree, peer, out);
            return;
        }
        if self.wanted.len() >= limits::MAX_WANTED_BLOCKS {
            return;
        }
        let count = ancestors_count(tree, height);
        self.wanted.insert(
            id,
            Wanted {
                height,
                peer,
                asked_at: peers.now,
            },
        );
        trace!(height = height.0, "fetching block");
        send(out, peer, SyncRequest::Ancestors { id, count });
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
    pub(crate) fn probe_commits(
        &mut self,
        peers: &Peers<'_>,
        tree: &BlockTree,
        peer: PublicKey,
        out: &mut Vec<Outbound>,
    ) {
        if peer == peers.me
            || self.committed.is_some()
            || self
                .probe
                .is_some_and(|(_, at)| peers.now < at.plus(peers.retry_ms))
        {
            return;
        }
        self.probe = Some((peer, peers.now));
        let from_height = tree.root().height.next();
        debug!(height = from_height.0, "probing a peer for commits");
        send(
            out,
            peer,
            SyncRequest::Committed {
                epoch: peers.epoch,
                from_height,
            },
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
    pub(crate) fn probe_on_timeout(
        &mut self,
        peers: &Peers<'_>,
        tree: &BlockTree,
        out: &mut Vec<Outbound>,
    ) {
        let after = self.timeout_probe.unwrap_or(peers.me);
        let Some(peer) = peers.next(&after) else {
            return;
        };
        self.timeout_probe = Some(peer);
        self.probe_commits(peers, tree, peer, out);
    }

    /// The other half of [`Sync::probe_commits`]: a committed-range
    /// request of this epoch that starts above `root + 1` shows that its
    /// sender committed beyond this replica's root. When the replicas
    /// that are behind are the ones proposing (their leader is not the one
    /// the replicas ahead compute), only the replicas ahead probe, and they
    /// probe a proposer that has nothing to give; without this the replicas
    /// behind never learn the commit that would make them agree on leaders
    /// again (simulator seed 1351). The answer is a one-shot probe back,
    /// rate-limited like any probe, so a peer lying about its height costs
    /// one request per sync retry period and is never retried.
    fn note_requester_ahead(
        &mut self,
        peers: &Peers<'_>,
        tree: &BlockTree,
        from: PublicKey,
        epoch: Epoch,
        from_height: Height,
        out: &mut Vec<Outbound>,
    ) {
        // Only a validator's request counts: the probe slot is one per
        // retry period, and a peer outside the set could otherwise keep it
        // taken with made-up heights.
        if epoch == peers.epoch
            && peers.set.index_of(&from).is_some()
            && from_height > tree.root().height.next()
        {
            self.probe_commits(peers, tree, from, out);
        }
    }

    /// Asks `peer` for the committed blocks above the root, unless a
    /// committed-range request is already in flight.
    pub(crate) fn start_committed(
        &mut self,
        peers: &Peers<'_>,
        tree: &BlockTree,
        peer: PublicKey,
        out: &mut Vec<Outbound>,
    ) {
        if self.committed.is_some() || peer == peers.me {
            return;
        }
        self.committed = Some((peer, peers.now));
        let from_height = tree.root().height.next();
        debug!(height = from_height.0, "fetching committed blocks");
        send(
            out,
            peer,
            SyncRequest::Committed {
                epoch: peers.epoch,
                from_height,
            },
        );
    }

    /// Answers a peer's request from the tree and the committed window.
    /// `awaiting_epoch`: this replica's epoch has ended (no probing back).
    pub(crate) fn serve(
        &mut self,
        peers: &Peers<'_>,
        tree: &BlockTree,
        awaiting_epoch: bool,
        from: PublicKey,
        request: SyncRequest,
        out: &mut Vec<Outbound>,
    ) -> Result<(), Reject> {
        let response = match request {
            SyncRequest::Ancestors { id, count } => {
                let blocks = tree.ancestors(&id, usize::from(count));
                if blocks.is_empty() {
                    return Err(Reject::UnknownBlock { id });
                }
                SyncResponse::Ancestors { blocks }
            }
            SyncRequest::Committed { epoch, from_height } => {
                if !awaiting_epoch {
                    self.note_requester_ahead(peers, tree, from, epoch, from_height, out);
                }
                let Some((blocks, commit_qc)) = tree.committed_range(epoch, from_height) else {
                    return Err(Reject::Unexpected {
                        what: "committed range request",
                        reason: "the range is not in the committed window",
                    });
                };
                SyncResponse::Committed { blocks, commit_qc }
            }
        };
        out.push(Outbound {
            to: Destination::To(from),
            message: Message::SyncResponse(response),
        });
        Ok(())
    }

    /// A committed range arrived from `from`: only the peer asked (or
    /// probed) closes its request. Returns whether it was the one asked.
    pub(crate) fn claim_committed(&mut self, from: PublicKey) -> Result<bool, Reject> {
        if self.committed.is_some_and(|(p, _)| p == from) {
            self.committed = None;
            Ok(true)
        } else if self.probe.is_some_and(|(p, _)| p == from) {
            self.probe = None;
            Ok(false)
        } else {
            Err(Reject::Unsolicited {
                what: "committed range",
            })
        }
    }
}

/// The blocks of a committed range above `root` if they link it, block by
/// block, to `target`, the block a verified commit QC commits.
pub(crate) fn check_range(
    blocks: Vec<Block>,
    root: &RootBlock,
    target: Hash,
) -> Result<Vec<Block>, Reject> {
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
    if linked {
        Ok(blocks)
    } else {
        Err(Reject::Unexpected {
            what: "committed range",
            reason: "blocks do not link the committed root to the commit QC",
        })
    }
}

#[cfg(test)]
#[path = "sync_tests/mod.rs"]
mod tests;
