//! Deliberately broken variants of the safety rules, compiled only with the
//! `mutations` feature, so the simulator can show that it finds the bugs
//! they introduce. Never enabled in the node: the feature is off by default
//! and only the simulator's own `mutations` feature turns it on.
//!
//! The switch is per thread: a simulator run (one seed) runs on one thread,
//! and the mutation points are all called on the replica's thread.

use std::cell::Cell;

/// One broken variant of one mutation point (see the crate docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mutation {
    /// `certs::qc_has_quorum`: at least two thirds instead of more than.
    QuorumTwoThirdsInclusive,
    /// `safety::locking_rule_holds`: a block after a TC may extend any QC.
    LockingRuleDropped,
    /// `voting::Voter::record_for_ready`: the safety record is handed out
    /// only in a `Ready` that sends no vote or timeout of this replica, so
    /// votes leave before the record that covers them is persisted.
    RecordAfterVote,
    /// `safety::commit_rule`: a QC commits its own block (1-chain).
    CommitOneChain,
    /// `safety::tc_lock_round`: a TC's lock is its lowest reported QC, not
    /// its highest.
    TcIgnoresHighestQc,
}

impl Mutation {
    pub const ALL: [Mutation; 5] = [
        Mutation::QuorumTwoThirdsInclusive,
        Mutation::LockingRuleDropped,
        Mutation::RecordAfterVote,
        Mutation::CommitOneChain,
        Mutation::TcIgnoresHighestQc,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mutation::QuorumTwoThirdsInclusive => "quorum-two-thirds-inclusive",
            Mutation::LockingRuleDropped => "locking-rule-dropped",
            Mutation::RecordAfterVote => "record-after-vote",
            Mutation::CommitOneChain => "commit-one-chain",
            Mutation::TcIgnoresHighestQc => "tc-ignores-highest-qc",
        }
    }

    pub fn from_name(name: &str) -> Option<Mutation> {
        Mutation::ALL.into_iter().find(|m| m.name() == name)
    }
}

thread_local! {
    static ACTIVE: Cell<Option<Mutation>> = const { Cell::new(None) };
}

/// Turns `mutation` on (or every mutation off) for the calling thread.
pub fn set(mutation: Option<Mutation>) {
    ACTIVE.with(|a| a.set(mutation));
}

/// The mutation active on the calling thread.
pub fn active() -> Option<Mutation> {
    ACTIVE.with(|a| a.get())
}

pub(crate) fn is(mutation: Mutation) -> bool {
    active() == Some(mutation)
}
