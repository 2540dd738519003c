//! Sans-I/O consensus core of Commons: chained HotStuff with the 2-chain
//! commit rule and timeout certificates — Jolteon (Gelashvili et al.,
//! "Jolteon and Ditto", FC 2022, Fig. 3) in the concrete form of DiemBFT v4.
//!
//! The core does no I/O: no clock, no disk, no network, no randomness. A
//! driver (the node's event loop, the simulator) feeds [`Input`]s with the
//! current time to [`Replica::handle`], takes [`Ready`] values from
//! [`Replica::poll_ready`], and calls `handle(now, Input::Tick)` at
//! [`Replica::poll_deadline`].
//!
//! # Driver contract
//!
//! 1. Build with [`Replica::new`] (fresh, or from a [`Restart`] read back from
//!    storage) and call `handle(now, Input::Tick)` once: the first `handle`
//!    starts the round timer.
//! 2. After every `handle`, drain `poll_ready` until it returns `None`. For
//!    each [`Ready`], in this order: **persist** `persist` durably (the record
//!    and the QCs atomically), **then send** `messages`, then apply
//!    `committed` in order, then answer `requests` (as later inputs) and hand
//!    `evidence` to the application. Applying may wait until the answers
//!    have been fed back (so a vote does not wait for execution), provided
//!    an answer that reads the applied state applies what it needs first;
//!    the core only needs each block applied once, in order, before
//!    [`Request::NeedValidatorSet`] is answered. A vote, timeout or
//!    proposal sent before its record is durable can make a restarted
//!    replica sign a conflicting one. The core asserts its side: every
//!    vote, timeout or proposal it releases is covered by a record released
//!    in the same or an earlier `Ready`.
//! 3. Committed blocks come out once each, in height order. After a restart,
//!    blocks committed after `Restart::last_applied` come out again, so the
//!    application applies each exactly once.
//!
//! # Map
//!
//! The replica is a thin driver over rooms, one per part of the protocol,
//! each with its own state and rules (its `//!` doc cites the paper):
//!
//! | room | state | rules |
//! | --- | --- | --- |
//! | `replica` ([`Replica`]) | identity, epoch, validator set, the rooms, the outbox | routes inputs to rooms and their results to each other; assembles [`Ready`] |
//! | `voting` | the safety record, the payload under validation | voting rule, timeouts, one proposal per round, persist before send |
//! | `vote_keeper` | votes, timeouts and proposal headers by round | quorum counting, QC and TC formation, forged-signature attribution, equivocation evidence |
//! | `pacemaker` | round, deadline, TC of the previous round | entering rounds, the backed-off round timer, the round window |
//! | `proposer` | leader election, the proposal waiting for a payload or parent | who leads, what a leader proposes |
//! | `acceptance` | the pending tree, orphans | block shape and parent checks, orphans waiting for parents |
//! | `certs` | root QC, highest QC, QCs already checked | checking QCs and TCs |
//! | `commit` | the commit waiting for missing blocks | 2-chain commit rule, commit chains |
//! | `epochs` | whether the epoch ended, next-epoch messages | epoch end and change |
//! | `sync` | requests in flight, probes | fetching and serving blocks and committed ranges, whom to ask |
//!
//! Below them sit `message` (values and their encodings), `safety` (the
//! voting, timeout and commit predicates), `election`, `tree` and `wire`.
//! `contract` holds the driver contract's types.
//!
//! Who calls whom: [`Replica::handle`] fires the pacemaker's and sync's
//! timers, then routes the input. A proposal goes through `acceptance`
//! (signature, shape, parent) and `voting` (the voting rule); a vote or
//! timeout through `vote_keeper`; sync messages through `sync`. Every QC or
//! TC any room yields goes back through the replica (`process_qc`,
//! `process_tc`): `certs` raises the highest QC, `commit` applies the
//! commit rule, `pacemaker` enters the next round, and when this replica
//! leads it `proposer` plans the block. No room holds or changes another
//! room's state: what one needs of another comes in as an argument.
//!
//! # Protocol
//!
//! - Blocks carry epoch, round, height, proposer, timestamp, the application's
//!   state root after the parent, an opaque bounded payload, the QC of the
//!   parent (`justify`), and a TC of the previous round when that round timed
//!   out (the QC is then the leader's highest). A block's id is SHA-256 of its
//!   canonical encoding ([`message`]).
//! - Proposing (Fig. 3 "Proposing"): on entering round r, its leader asks the
//!   application for a payload ([`Request::NeedPayload`]) and proposes a block
//!   extending its highest QC, with TC(r-1) if it entered r by a TC.
//! - Voting (Fig. 3 "Voting rule", `safety::is_safe_to_vote`): once per round,
//!   for a block of the current round from the round's leader that extends
//!   QC(r-1), or TC(r-1) and a QC at least as high as every QC reported in it
//!   (the 2-chain lock). The application checks the payload first
//!   ([`Request::ValidatePayload`]); the vote goes to the next leader, who
//!   forms the QC.
//! - Commit (Fig. 3 "Commit rule", `safety::commit_rule`): a QC for a block
//!   whose parent has the previous round commits the parent and its ancestors.
//! - Pacemaker (Fig. 3 "Pacemaker"): a replica enters round r on QC(r-1) or
//!   TC(r-1), from whatever message carries it; a replica that sees a
//!   certificate of a later round jumps to it. When the round timer fires it
//!   broadcasts a timeout carrying its highest QC; a quorum of timeouts forms
//!   TC(r). It joins a round's timeout once more than a third of the power has
//!   timed out. The timer is `round_timeout_ms * 2^k`, k the rounds since the
//!   highest QC (capped), so it backs off while rounds fail and resets on
//!   progress.
//! - Quorum: strictly more than two thirds of the epoch's stake
//!   ([`commons_types::ValidatorSet::is_quorum`]). QCs and TCs are checked in
//!   one parallel batch each ([`commons_types::batch`]); votes are collected
//!   unchecked and batch-checked when they would form a quorum.
//! - Leader election: stake-weighted draw from a hash of (epoch, round) among
//!   validators with a good reputation on the committed chain (see the
//!   `election` module): a crashed validator stops being elected after a
//!   window of commits.
//! - Sync: a block whose parent is missing waits (bounded) while the parent is
//!   fetched by id from the peer that showed it; a block is accepted from sync
//!   only if its id was certified by a verified QC or is the parent of such a
//!   block (the hash chain is the verification). A replica more than
//!   [`limits::SYNC_ANCESTORS_GAP_MAX`] heights behind fetches committed
//!   ranges, each ending with the QC that commits its last block.
//! - Commit probes: replicas one commit apart may compute different leaders
//!   (reputation comes from the committed chain) and split the power so
//!   that no QC forms, and with it no commit that would reconcile them. So
//!   a replica asks a peer for the committed range above its root when it
//!   gets a proposal from a validator it does not take for the leader, and
//!   on each round timeout (the next peer in turn); a replica asked for a
//!   range starting above its own root + 1 learns the asker is ahead and
//!   asks it back. One request at a time, at most one per sync retry period.
//! - Epochs: epoch e ends at the committed block of height
//!   `root(e).height + epoch_length_blocks`. Committing it stops the rounds
//!   and asks the application for the next set ([`Request::NeedValidatorSet`],
//!   answered after it applied that block, so the answer can reflect it).
//!   [`Input::EpochChange`] starts epoch e+1 at round 1 with that block as
//!   root (a signature-less root QC every replica derives alike), fresh safety
//!   record, new quorums and new leader election. Messages of other epochs are
//!   refused (next-epoch ones are buffered, bounded, while waiting).
//! - Evidence: two signed votes, proposals or timeouts of one validator for
//!   one round with different content become an [`Evidence`], reported once.
//!
//! # Departures from the paper, and why they are safe
//!
//! - Votes and timeouts sign compact fixed-layout data (DiemBFT v4 style), not
//!   whole blocks: the vote data names the block by its id, which commits to
//!   the whole block.
//! - Timeouts raise `last_voted_round` (DiemBFT v4 `make_timeout`): after
//!   timing out a round a replica never votes in it. Stricter than Fig. 3.
//! - A restarted replica resends its stored vote or timeout for a round rather
//!   than signing a new one: identical content, so never an equivocation.
//! - Blocks above the epoch's last height (proposed while it awaits its
//!   2-chain) must carry empty payloads and are never committed in that epoch:
//!   a committed epoch ends exactly at its boundary block for every replica,
//!   because all commit the same chain.
//! - Blocks fetched by sync are not re-voted and their embedded QCs are not
//!   re-verified: they are hash-linked to a QC that was, and honest voters
//!   checked them before certifying them.
//! - Leader reputation lags the committed chain by
//!   [`limits::REPUTATION_LAG_ROUNDS`] rounds: replicas that have not yet
//!   committed that far may disagree on a leader, which costs liveness only;
//!   no safety rule depends on who leads.
//!
//! # Mutation points
//!
//! Each safety decision is one small function so that a later, test-only
//! switch can break it deliberately: `certs::qc_has_quorum` (quorum size),
//! `safety::is_safe_to_vote` / `safety::locking_rule_holds` (voting and
//! lock), `safety::tc_lock_round` (TC's highest QC), `safety::commit_rule`
//! (2-chain), `voting::Voter::record_for_ready` (record persisted before
//! sending).
#![deny(clippy::unwrap_used)]

mod acceptance;
mod certs;
mod commit;
mod contract;
mod election;
mod epochs;
mod error;
#[cfg(test)]
mod fixtures;
pub mod limits;
pub mod message;
#[cfg(feature = "mutations")]
pub mod mutations;
mod pacemaker;
mod proposer;
mod replica;
mod safety;
mod sync;
mod time;
mod tree;
mod vote_keeper;
mod voting;
pub mod wire;

pub use contract::{Config, Destination, Input, Outbound, Persist, Ready, Request, Restart};
pub use error::Reject;
pub use message::{
    Block, BlockFields, Evidence, Message, Proposal, QuorumCert, RootBlock, SafetyRecord,
    SignedProposal, SignedTimeout, SyncRequest, SyncResponse, Timeout, TimeoutCert,
    TimeoutSignature, Vote, VoteData,
};
pub use replica::Replica;
pub use time::Millis;
pub use wire::DecodeError;
