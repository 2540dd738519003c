//! Timeouts, proposals, the record and persist-before-send.

use super::*;

enum TimeoutOp {
    Timeout {
        round: u64,
        high_qc: QuorumCert,
        last_round_tc: Option<TimeoutCert>,
    },
    RaiseQc(u64),
    Sign(Block),
    Decide(Block),
}

/// What a timeout call gave: kind ("new" or "resend"), round, reported QC
/// round, carried TC round; `None` for no timeout.
type TimeoutGot = Option<(&'static str, u64, u64, Option<u64>)>;

struct TimeoutStep {
    what: &'static str,
    op: TimeoutOp,
    /// For `Timeout`: the answer; for `Decide`: the refusal; else unchecked.
    timeout: TimeoutGot,
    refusal: Option<Reject>,
    /// Expected state: last voted round, highest timeout round, highest QC
    /// round.
    record: (u64, u64, u64),
}

#[test]
fn timeouts_are_signed_once_per_round_and_raise_the_last_voted_round() {
    use TimeoutOp::{Decide, RaiseQc, Sign, Timeout as T};
    let b1 = block(1, &root_qc(), None, 1);
    let q1 = qc(&b1);
    let b2 = block(2, &q1, None, 1);
    let q2 = qc(&b2);
    let b3 = block(3, &q2, None, 1);
    let q3 = qc(&b3);
    let t = |round, high_qc: &QuorumCert, last_round_tc: Option<TimeoutCert>| T {
        round,
        high_qc: high_qc.clone(),
        last_round_tc,
    };
    let step = |what, op, timeout, refusal, record| TimeoutStep {
        what,
        op,
        timeout,
        refusal,
        record,
    };
    let steps = vec![
        step(
            "round 2 not entered (no QC(1), no TC(1)): no timeout",
            t(2, &root_qc(), None),
            None,
            None,
            (0, 0, 0),
        ),
        step(
            "round 1 entered by the root QC: a new timeout",
            t(1, &root_qc(), None),
            Some(("new", 1, 0, None)),
            None,
            (1, 1, 0),
        ),
        step(
            "round 1 again: the same timeout, resent",
            t(1, &root_qc(), None),
            Some(("resend", 1, 0, None)),
            None,
            (1, 1, 0),
        ),
        step(
            "no vote in a round timed out of",
            Decide(b1.clone()),
            None,
            Some(Reject::StaleRound {
                round: Round(1),
                last_voted: Round(1),
            }),
            (1, 1, 0),
        ),
        step(
            "round 2 entered by TC(1): the timeout carries it",
            t(2, &root_qc(), Some(tc(1, &[0, 0, 0]))),
            Some(("new", 2, 0, Some(1))),
            None,
            (2, 2, 0),
        ),
        step(
            "an earlier round: no timeout",
            t(1, &root_qc(), None),
            None,
            None,
            (2, 2, 0),
        ),
        step(
            "round 4 with QC(2) and TC(2) was not entered: no timeout",
            t(4, &q2, Some(tc(2, &[1, 1, 1]))),
            None,
            None,
            (2, 2, 0),
        ),
        step("a vote in round 3", Sign(b3.clone()), None, None, (3, 2, 0)),
        step(
            "a timeout in the round voted in is allowed",
            t(3, &q2, None),
            Some(("new", 3, 2, None)),
            None,
            (3, 3, 0),
        ),
        step("QC(3) is seen", RaiseQc(3), None, None, (3, 3, 3)),
        step(
            "a timeout reporting a QC below the highest seen: none",
            t(4, &q2, Some(tc(3, &[2, 2, 2]))),
            None,
            None,
            (3, 3, 3),
        ),
        step(
            "round 4 entered by QC(3): a TC of another round is not carried",
            t(4, &q3, Some(tc(2, &[1, 1, 1]))),
            Some(("new", 4, 3, None)),
            None,
            (4, 4, 3),
        ),
    ];
    let chain = chain();
    let mut voter = fresh();
    let mut last_new: Option<Timeout> = None;
    for (k, s) in steps.into_iter().enumerate() {
        let what = s.what;
        match s.op {
            TimeoutOp::Timeout {
                round,
                high_qc,
                last_round_tc,
            } => {
                let action = voter.timeout(
                    Epoch(0),
                    Round(round),
                    &high_qc,
                    last_round_tc.as_ref(),
                    ME,
                    &key(0),
                    &chain,
                );
                let (got, timeout) = match action {
                    TimeoutAction::New(t) => (Some("new"), Some(t)),
                    TimeoutAction::Resend(t) => {
                        assert_eq!(
                            Some(&t),
                            last_new.as_ref(),
                            "step {k}: {what}: the very timeout signed before"
                        );
                        (Some("resend"), Some(t))
                    }
                    TimeoutAction::None => (None, None),
                };
                let summary = got.zip(timeout.as_ref()).map(|(kind, t)| {
                    (
                        kind,
                        t.round.0,
                        t.high_qc.round().0,
                        t.last_round_tc.as_ref().map(|tc| tc.round.0),
                    )
                });
                assert_eq!(summary, s.timeout, "step {k}: {what}");
                if let Some(t) = timeout {
                    assert_eq!(t.voter, ME, "step {k}: {what}");
                    assert!(
                        key(0)
                            .public_key()
                            .verify_raw(&t.signing_bytes(&chain), &t.signature)
                            .is_ok(),
                        "step {k}: {what}: signed by this replica"
                    );
                    assert_eq!(
                        voter.record().last_timeout.as_ref(),
                        Some(&t),
                        "step {k}: {what}: recorded"
                    );
                    if got == Some("new") {
                        last_new = Some(t);
                    }
                }
            }
            TimeoutOp::RaiseQc(round) => voter.raise_qc_round(Round(round)),
            TimeoutOp::Sign(block) => {
                voter.sign_vote(&block, ME, &key(0), &chain);
            }
            TimeoutOp::Decide(block) => {
                let got = voter.decide(
                    &block,
                    block.round(),
                    NOW,
                    DRIFT_MS,
                    Some(ME),
                    Height(FAR_END),
                );
                assert_eq!(got.err(), s.refusal, "step {k}: {what}");
            }
        }
        let r = voter.record();
        assert_eq!(
            (
                r.last_voted_round.0,
                r.highest_timeout_round.0,
                r.highest_qc_round.0
            ),
            s.record,
            "step {k}: {what}: record"
        );
    }
}

#[test]
fn a_restarted_replica_resends_its_stored_timeout() {
    let chain = chain();
    let mut voter = fresh();
    let TimeoutAction::New(first) =
        voter.timeout(Epoch(0), Round(1), &root_qc(), None, ME, &key(0), &chain)
    else {
        panic!("round 1 is entered by the root QC");
    };
    // Restarted from the stored record, now holding a higher QC and a TC:
    // still the same timeout, never a different one for the round.
    let mut restarted = Voter::new(voter.record().clone());
    let q1 = qc(&block(1, &root_qc(), None, 1));
    let tc0 = tc(0, &[0, 0, 0]);
    match restarted.timeout(Epoch(0), Round(1), &q1, Some(&tc0), ME, &key(0), &chain) {
        TimeoutAction::Resend(t) => assert_eq!(t, first),
        other => panic!("expected the stored timeout again, got {other:?}"),
    }
    assert_eq!(restarted.record_for_ready(|| true), None, "nothing changed");
    // A stored timeout of another epoch is not resent: a new one is signed.
    let root1 = QuorumCert::root(Epoch(1), &root());
    match restarted.timeout(Epoch(1), Round(1), &root1, None, ME, &key(0), &chain) {
        TimeoutAction::New(t) => assert_eq!((t.epoch, t.round), (Epoch(1), Round(1))),
        other => panic!("expected a new timeout for epoch 1, got {other:?}"),
    }
}

// ----- proposals and the record handed out -----------------------------------

#[test]
fn a_proposal_is_noted_once_per_round() {
    // (round, whether it may be proposed, last proposed round after)
    let cases: &[(u64, bool, u64)] = &[
        (3, true, 3),
        (3, false, 3),
        (2, false, 3),
        (4, true, 4),
        (10, true, 10),
        (9, false, 10),
    ];
    let mut voter = fresh();
    for (k, &(round, ok, last)) in cases.iter().enumerate() {
        assert_eq!(
            voter.note_proposed(Round(round)),
            ok,
            "case {k}: round {round}"
        );
        assert_eq!(
            voter.record().last_proposed_round,
            Round(last),
            "case {k}: round {round}"
        );
        let handed = voter.record_for_ready(|| false);
        assert_eq!(
            handed.map(|r| r.last_proposed_round),
            ok.then_some(Round(last)),
            "case {k}: the record is handed out only when it changed"
        );
    }
}

struct RecordStep {
    what: &'static str,
    op: Box<dyn Fn(&mut Voter)>,
    /// The record handed out: (epoch, last voted, highest QC, highest
    /// timeout, last proposed round), or none.
    handed: Option<(u64, u64, u64, u64, u64)>,
}

#[test]
fn the_record_is_handed_out_only_when_it_changed() {
    let steps = vec![
        RecordStep {
            what: "a fresh voter has nothing new to hand out",
            op: Box::new(|_| {}),
            handed: None,
        },
        RecordStep {
            what: "a QC round not above the recorded one changes nothing",
            op: Box::new(|v| v.raise_qc_round(Round(0))),
            handed: None,
        },
        RecordStep {
            what: "a higher QC round is handed out",
            op: Box::new(|v| v.raise_qc_round(Round(2))),
            handed: Some((0, 0, 2, 0, 0)),
        },
        RecordStep {
            what: "handed out once",
            op: Box::new(|_| {}),
            handed: None,
        },
        RecordStep {
            what: "a lower QC round changes nothing",
            op: Box::new(|v| v.raise_qc_round(Round(1))),
            handed: None,
        },
        RecordStep {
            what: "a vote is handed out",
            op: Box::new(|v| {
                let b3 = block(3, &root_qc(), Some(tc(2, &[0])), 1);
                v.sign_vote(&b3, ME, &key(0), &chain());
            }),
            handed: Some((0, 3, 2, 0, 0)),
        },
        RecordStep {
            what: "a timeout is handed out",
            op: Box::new(|v| {
                let q = QuorumCert {
                    data: VoteData {
                        round: Round(3),
                        ..root_qc().data
                    },
                    signatures: Vec::new(),
                };
                assert!(matches!(
                    v.timeout(Epoch(0), Round(4), &q, None, ME, &key(0), &chain()),
                    TimeoutAction::New(_)
                ));
            }),
            handed: Some((0, 4, 2, 4, 0)),
        },
        RecordStep {
            what: "a proposal is handed out",
            op: Box::new(|v| assert!(v.note_proposed(Round(5)))),
            handed: Some((0, 4, 2, 4, 5)),
        },
        RecordStep {
            what: "a validation pending changes nothing",
            op: Box::new(|v| {
                let b6 = block(6, &root_qc(), Some(tc(5, &[0])), 1);
                assert_eq!(
                    v.decide(&b6, Round(6), NOW, DRIFT_MS, Some(ME), Height(FAR_END)),
                    Ok(Decision::Validate)
                );
            }),
            handed: None,
        },
        RecordStep {
            what: "a new epoch starts a fresh record, handed out",
            op: Box::new(|v| v.new_epoch(Epoch(1), root())),
            handed: Some((1, 0, 0, 0, 0)),
        },
    ];
    let mut voter = fresh();
    for (k, s) in steps.into_iter().enumerate() {
        let what = s.what;
        (s.op)(&mut voter);
        let handed = voter.record_for_ready(|| false);
        if let Some(r) = &handed {
            assert_eq!(r, voter.record(), "step {k}: {what}: the current record");
        }
        let summary = handed.map(|r| {
            (
                r.epoch.0,
                r.last_voted_round.0,
                r.highest_qc_round.0,
                r.highest_timeout_round.0,
                r.last_proposed_round.0,
            )
        });
        assert_eq!(summary, s.handed, "step {k}: {what}");
    }
}

// ----- persist before send ---------------------------------------------------

/// A voter that signed a vote in round 1, a timeout in round 1 and noted a
/// proposal in round 2, with the messages; the record not yet handed out.
fn signed_all() -> (Voter, Vec<Outbound>) {
    let chain = chain();
    let mut voter = fresh();
    let b1 = block(1, &root_qc(), None, 1);
    let vote = voter.sign_vote(&b1, ME, &key(0), &chain);
    let TimeoutAction::New(timeout) =
        voter.timeout(Epoch(0), Round(1), &root_qc(), None, ME, &key(0), &chain)
    else {
        panic!("round 1 is entered by the root QC");
    };
    assert!(voter.note_proposed(Round(2)));
    let own = block(2, &qc(&b1), None, ME.0);
    let proposal = Proposal::sign(own, &key(0), &chain);
    let messages = vec![
        outbound(Message::Vote(vote)),
        outbound(Message::Timeout(timeout)),
        outbound(Message::Proposal(proposal)),
    ];
    (voter, messages)
}

#[test]
fn messages_covered_by_the_handed_record_pass() {
    let (mut voter, messages) = signed_all();
    let record = voter.record_for_ready(|| true).expect("the record changed");
    voter.handed_out(&record);
    voter.check_covered(&messages, Some(ME));
    // Others' messages and an observer's check need no record of this one.
    let b9 = block(9, &root_qc(), None, 1);
    let others = vec![
        outbound(Message::Vote(Vote::sign(
            b9.vote_data(),
            ValidatorIndex(1),
            &key(1),
            &chain(),
        ))),
        outbound(Message::Proposal(Proposal::sign(b9, &key(1), &chain()))),
    ];
    voter.check_covered(&others, Some(ME));
    fresh().check_covered(&messages, None);
}

fn check_uncovered(index: usize) {
    let (mut voter, messages) = signed_all();
    // The record handed out is the one before the signatures.
    let before = SafetyRecord::fresh(Epoch(0), root());
    voter.handed_out(&before);
    voter.check_covered(&messages[index..=index], Some(ME));
}

#[test]
#[should_panic(expected = "handed.last_voted_round")]
fn an_uncovered_vote_is_caught() {
    check_uncovered(0);
}

#[test]
#[should_panic(expected = "handed.highest_timeout_round")]
fn an_uncovered_timeout_is_caught() {
    check_uncovered(1);
}

#[test]
#[should_panic(expected = "handed.last_proposed_round")]
fn an_uncovered_proposal_is_caught() {
    check_uncovered(2);
}

#[test]
#[should_panic(expected = "handed.last_voted_round")]
fn a_vote_after_the_last_handed_record_is_caught() {
    let chain = chain();
    let mut voter = fresh();
    let b1 = block(1, &root_qc(), None, 1);
    voter.sign_vote(&b1, ME, &key(0), &chain);
    let record = voter.record_for_ready(|| true).expect("changed");
    voter.handed_out(&record);
    let b2 = block(2, &qc(&b1), None, 1);
    let vote = voter.sign_vote(&b2, ME, &key(0), &chain);
    voter.check_covered(&[outbound(Message::Vote(vote))], Some(ME));
}
