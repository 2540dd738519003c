//! Tests of the vote keeper, as tables of steps: each step one input, the
//! outputs it must give (QC, TC, forged signers, refusal, evidence) and the
//! state it must leave (votes held, timeout power).

use commons_types::{Hash, Height, SecretKey};

use super::*;
use crate::certs::{verify_qc, verify_tc};
use crate::fixtures::{chain, key, set_with};
use crate::message::{RootBlock, Timeout, VoteData, proposal_signing_bytes};

mod evidence;
mod timeouts;

const A: u8 = 1;
const B: u8 = 2;

/// A key outside every set here: what it signs for a validator is a forgery.
fn forger() -> SecretKey {
    key(200)
}

/// Four validators of power 10: a quorum is three of them (30 > 80/3).
fn set() -> ValidatorSet {
    set_with(&[10; 4])
}

/// The vote data for block `block` of `round`.
fn data(round: u64, block: u8) -> VoteData {
    VoteData {
        epoch: Epoch(0),
        round: Round(round),
        height: Height(round),
        block_id: Hash::digest(&[b'b', block, round as u8]),
        parent_id: Hash::digest(b"parent"),
        parent_round: Round(round.saturating_sub(1)),
    }
}

fn signed_vote(voter: u16, round: u64, block: u8, key: &SecretKey) -> Vote {
    Vote::sign(data(round, block), ValidatorIndex(voter), key, &chain())
}

fn vote(voter: u16, round: u64, block: u8) -> Vote {
    signed_vote(voter, round, block, &key(voter as u8))
}

fn forged_vote(voter: u16, round: u64, block: u8) -> Vote {
    signed_vote(voter, round, block, &forger())
}

/// A QC of `round` as a timeout carries it (only its round is signed).
fn qc_of(round: u64) -> QuorumCert {
    QuorumCert {
        data: data(round, A),
        signatures: Vec::new(),
    }
}

fn timeout(voter: u16, round: u64, high_qc: u64, key: &SecretKey) -> SignedTimeout {
    Timeout::sign(
        Epoch(0),
        Round(round),
        qc_of(high_qc),
        None,
        ValidatorIndex(voter),
        key,
        &chain(),
    )
    .header()
}

fn proposal(proposer: u16, round: u64, block: u8) -> SignedProposal {
    let block_id = Hash::digest(&[b'p', block, round as u8]);
    let signed = proposal_signing_bytes(&chain(), Epoch(0), Round(round), &block_id);
    SignedProposal {
        epoch: Epoch(0),
        round: Round(round),
        block_id,
        proposer: ValidatorIndex(proposer),
        signature: key(proposer as u8).sign_raw(&signed),
    }
}

/// A root QC no test QC equals, for `verify_qc`.
fn root_qc() -> QuorumCert {
    let root = RootBlock::genesis(&chain(), set().hash(), Hash::ZERO, 0);
    QuorumCert::root(Epoch(0), &root)
}

fn votes_held(keeper: &VoteKeeper, round: u64) -> usize {
    keeper
        .votes
        .get(&Round(round))
        .map_or(0, |rv| rv.by_voter.len())
}

/// Every evidence value names `offender` and checks against the set.
fn assert_evidence(evidence: &[Evidence], offender: u16, what: &str) {
    for e in evidence {
        assert_eq!(
            e.check(&chain(), &set()),
            Ok(ValidatorIndex(offender)),
            "{what}: evidence {e:?}"
        );
    }
}

// ----- votes ---------------------------------------------------------------

#[derive(Clone, Copy)]
enum Sig {
    Real,
    Forged,
}

struct VoteStep {
    what: &'static str,
    // Input: a vote of `voter` for `block` of `round`, at `current`.
    voter: u16,
    round: u64,
    block: u8,
    sig: Sig,
    current: u64,
    leads_next: bool,
    // Expected output: the QC's signers, the forged signers, or a refusal.
    expect: Result<(Option<&'static [u16]>, &'static [u16]), Reject>,
    // Expected: new evidence values (all against `voter`).
    evidence: usize,
    // Expected state: votes held for the round.
    held: usize,
}

/// A step named `what`; its input set by `vote`, expecting no QC, no
/// forgery and no evidence unless told.
fn v(what: &'static str) -> VoteStep {
    VoteStep {
        what,
        voter: 0,
        round: 0,
        block: A,
        sig: Sig::Real,
        current: 0,
        leads_next: true,
        expect: Ok((None, &[])),
        evidence: 0,
        held: 0,
    }
}

impl VoteStep {
    /// Expected state: `n` votes held for the round.
    fn held(mut self, n: usize) -> Self {
        self.held = n;
        self
    }
    /// Input: `voter`'s vote for `block` of `round`, in that round, led by
    /// this replica.
    fn vote(mut self, voter: u16, round: u64, block: u8, sig: Sig) -> Self {
        (self.voter, self.round, self.block, self.sig) = (voter, round, block, sig);
        self.current = round;
        self
    }
    /// Input: the current round is `current`.
    fn at(mut self, current: u64) -> Self {
        self.current = current;
        self
    }
    /// Input: this replica does not lead the next round.
    fn not_leading(mut self) -> Self {
        self.leads_next = false;
        self
    }
    /// Expected: the QC, signed by `signers`.
    fn qc(mut self, signers: &'static [u16]) -> Self {
        self.expect = Ok((Some(signers), &[]));
        self
    }
    /// Expected: no QC, `forged` signatures dropped.
    fn forged(mut self, forged: &'static [u16]) -> Self {
        self.expect = Ok((None, forged));
        self
    }
    /// Expected: the vote refused.
    fn refused(mut self, reject: Reject) -> Self {
        self.expect = Err(reject);
        self
    }
    /// Expected: `n` new evidence values.
    fn evidence(mut self, n: usize) -> Self {
        self.evidence = n;
        self
    }
}

#[test]
fn votes_form_a_qc_at_a_quorum_and_forgeries_and_equivocations_are_caught() {
    use Sig::{Forged, Real};
    let equivocation = |voter: u16, round: u64| Reject::Equivocation {
        validator: ValidatorIndex(voter),
        round: Round(round),
    };
    let bad_signature = |voter: u16| Reject::BadSignature {
        what: "vote",
        signer: ValidatorIndex(voter),
    };
    let steps = vec![
        // Round 5: the quorum, a forgery in the batch, equivocation.
        v("a first vote is kept; one vote is no quorum")
            .vote(0, 5, A, Real)
            .held(1),
        v("the same vote again is ignored")
            .vote(0, 5, A, Real)
            .held(1),
        v("a vote for another block of the round counts apart")
            .vote(1, 5, B, Real)
            .held(2),
        v("two votes for A (20 of 40): no QC")
            .vote(2, 5, A, Real)
            .held(3),
        v("a forged third vote reaches the count: the batch drops it, names its signer")
            .vote(3, 5, A, Forged)
            .held(3)
            .forged(&[3]),
        v("the real third vote completes the quorum: QC of exactly those three")
            .vote(3, 5, A, Real)
            .held(4)
            .qc(&[0, 2, 3]),
        v("voter 1, who voted B, votes A: equivocation, reported")
            .vote(1, 5, A, Real)
            .held(4)
            .refused(equivocation(1, 5))
            .evidence(1),
        v("the same equivocation again: refused, not reported twice")
            .vote(1, 5, A, Real)
            .held(4)
            .refused(equivocation(1, 5)),
        // Round 6: a forgery sent ahead of the real vote.
        v("a forged copy sent ahead is kept unchecked")
            .vote(0, 6, A, Forged)
            .held(1),
        v("the real vote under another signature replaces it")
            .vote(0, 6, A, Real)
            .held(1),
        v("a second real vote: no quorum yet")
            .vote(1, 6, A, Real)
            .held(2),
        v("the quorum forms: the forgery did not shadow the real vote")
            .vote(2, 6, A, Real)
            .held(3)
            .qc(&[0, 1, 2]),
        // Round 7: a forged copy sent after the real vote.
        v("a real vote is kept unchecked")
            .vote(0, 7, A, Real)
            .held(1),
        v("a forged copy of it is checked at once and refused")
            .vote(0, 7, A, Forged)
            .held(1)
            .refused(bad_signature(0)),
        v("a second real vote").vote(1, 7, A, Real).held(2),
        v("the quorum forms with the real vote kept")
            .vote(2, 7, A, Real)
            .held(3)
            .qc(&[0, 1, 2]),
        // Round 8: a forgery for one block, the real vote for another.
        v("a forged vote for A is kept unchecked")
            .vote(0, 8, A, Forged)
            .held(1),
        v("the voter's real vote for B replaces it: no evidence")
            .vote(0, 8, B, Real)
            .held(1),
        v("a forged vote for A now: refused, no evidence against the voter")
            .vote(0, 8, A, Forged)
            .held(1)
            .refused(bad_signature(0)),
        v("a second vote for B").vote(1, 8, B, Real).held(2),
        v("the quorum for B forms")
            .vote(2, 8, B, Real)
            .held(3)
            .qc(&[0, 1, 2]),
        // The window and the leader.
        v("a vote two rounds old is refused")
            .vote(3, 8, A, Real)
            .held(3)
            .at(10)
            .refused(Reject::OldRound {
                what: "vote",
                round: Round(8),
                current: Round(10),
            }),
        v("a vote of the previous round is kept")
            .vote(3, 9, A, Real)
            .held(1)
            .at(10),
        v("a vote 16 rounds ahead is kept")
            .vote(3, 26, A, Real)
            .held(1)
            .at(10),
        v("a vote 17 rounds ahead is refused")
            .vote(3, 27, A, Real)
            .held(0)
            .at(10)
            .refused(Reject::RoundTooFarAhead {
                what: "vote",
                round: Round(27),
                current: Round(10),
            }),
        v("a replica that does not lead the next round refuses")
            .vote(3, 10, A, Real)
            .held(0)
            .not_leading()
            .refused(Reject::NotNextLeader { round: Round(10) }),
    ];
    let (set, chain) = (set(), chain());
    let mut keeper = VoteKeeper::default();
    for (k, s) in steps.into_iter().enumerate() {
        let what = s.what;
        let vote = match s.sig {
            Sig::Real => vote(s.voter, s.round, s.block),
            Sig::Forged => forged_vote(s.voter, s.round, s.block),
        };
        let pk = key(s.voter as u8).public_key();
        let mut evidence = Vec::new();
        let got = keeper.on_vote(
            vote,
            &pk,
            Round(s.current),
            || s.leads_next,
            &set,
            &chain,
            &mut evidence,
        );
        let summary = got.as_ref().map(|o| {
            let signers: Option<Vec<u16>> =
                o.qc.as_ref().map(|qc| qc.signers().map(|i| i.0).collect());
            let forged: Vec<u16> = o.forged.iter().map(|i| i.0).collect();
            (signers, forged)
        });
        let expected = s
            .expect
            .clone()
            .map(|(qc, forged)| (qc.map(<[u16]>::to_vec), forged.to_vec()));
        assert_eq!(summary.map_err(Clone::clone), expected, "step {k}: {what}");
        if let Ok(VoteOutcome { qc: Some(qc), .. }) = &got {
            assert_eq!(qc.data, data(s.round, s.block), "step {k}: {what}: QC data");
            assert_eq!(
                verify_qc(qc, &chain, &set, Epoch(0), &root_qc()),
                Ok(()),
                "step {k}: {what}: the QC verifies"
            );
        }
        assert_eq!(evidence.len(), s.evidence, "step {k}: {what}: evidence");
        assert_evidence(&evidence, s.voter, &format!("step {k}: {what}"));
        assert_eq!(
            votes_held(&keeper, s.round),
            s.held,
            "step {k}: {what}: votes held"
        );
    }
}

#[test]
fn the_quorum_is_strictly_more_than_two_thirds_of_the_power() {
    let chain = chain();
    // (powers, voters in order, the number of votes after which the QC forms)
    let cases: &[(&[u64], &[u16], usize)] = &[
        (&[10, 10, 10], &[0, 1, 2], 3), // two of three is exactly 2/3: no QC
        (&[10, 10, 10, 1], &[0, 3, 1, 2], 3), // 11, then 21 > 62/3
        (&[10, 10, 10, 10], &[3, 2, 1, 0], 3),
        (&[40, 1, 1, 1], &[1, 2, 3, 0], 4), // only the heavy validator's vote makes it
    ];
    for (c, (powers, voters, forms_at)) in cases.iter().enumerate() {
        let set = set_with(powers);
        let mut keeper = VoteKeeper::default();
        for (n, voter) in voters.iter().enumerate() {
            let outcome = keeper.add_vote(vote(*voter, 3, A), false, &set, &chain);
            let votes = n + 1;
            assert!(outcome.forged.is_empty(), "case {c}, {votes} votes");
            match outcome.qc {
                Some(qc) => {
                    assert_eq!(votes, *forms_at, "case {c}: QC after {votes} votes");
                    let power = set.power_of_set(qc.signers()).expect("signers in set");
                    assert!(set.is_quorum(power), "case {c}");
                    assert_eq!(qc.signers().count(), votes, "case {c}: every vote signs");
                }
                None => assert_ne!(votes, *forms_at, "case {c}: no QC after {votes} votes"),
            }
            if votes > *forms_at {
                break;
            }
        }
    }
}

#[test]
fn votes_after_the_qc_of_the_round_are_not_counted_again() {
    let (set, chain) = (set(), chain());
    let mut keeper = VoteKeeper::default();
    let mut qcs = 0;
    for voter in 0..4 {
        if keeper
            .add_vote(vote(voter, 4, A), false, &set, &chain)
            .qc
            .is_some()
        {
            qcs += 1;
        }
    }
    assert_eq!(qcs, 1, "one QC per round");
    assert_eq!(votes_held(&keeper, 4), 3, "the fourth vote is not kept");
}

#[test]
fn a_batch_with_several_forgeries_names_each_signer() {
    let (set, chain) = (set(), chain());
    let mut keeper = VoteKeeper::default();
    let a = keeper.add_vote(forged_vote(0, 2, A), false, &set, &chain);
    let b = keeper.add_vote(forged_vote(1, 2, A), false, &set, &chain);
    assert_eq!(a, VoteOutcome::default());
    assert_eq!(b, VoteOutcome::default());
    let c = keeper.add_vote(vote(2, 2, A), false, &set, &chain);
    assert_eq!(c.qc, None, "two of three signatures were forged");
    assert_eq!(c.forged, vec![ValidatorIndex(0), ValidatorIndex(1)]);
    assert_eq!(votes_held(&keeper, 2), 1, "only the good vote stays");
    // The good vote was checked in the batch: real votes of 0 and 1 complete it.
    assert_eq!(keeper.add_vote(vote(0, 2, A), false, &set, &chain).qc, None);
    let qc = keeper.add_vote(vote(1, 2, A), false, &set, &chain).qc;
    assert_eq!(
        qc.map(|qc| qc.signers().map(|i| i.0).collect::<Vec<_>>()),
        Some(vec![0, 1, 2])
    );
}

// ----- timeouts ------------------------------------------------------------
