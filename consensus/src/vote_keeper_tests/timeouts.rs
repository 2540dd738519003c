//! Timeouts and the TCs they form.

use super::*;

enum TimeoutOp {
    /// `check_timeout` of `voter`'s timeout of `round` reporting `hq`.
    Check {
        voter: u16,
        round: u64,
        hq: u64,
        sig: Sig,
    },
    /// `add_timeout` of it at `current`.
    Add {
        voter: u16,
        round: u64,
        hq: u64,
        current: u64,
    },
}

#[derive(Debug, PartialEq, Eq)]
enum TimeoutOut {
    Seen(Result<TimeoutSeen, Reject>),
    /// The TC formed, as (voter, reported QC round) entries.
    Tc(Option<Vec<(u16, u64)>>),
}

struct TimeoutStep {
    what: &'static str,
    op: TimeoutOp,
    out: TimeoutOut,
    evidence: usize,
    /// `timeout_power` of the step's round afterwards.
    power: Option<u64>,
}

#[test]
fn timeouts_form_a_tc_at_a_quorum_and_equivocations_are_reported_once() {
    use Sig::{Forged, Real};
    use TimeoutOp::{Add, Check};
    use TimeoutOut::{Seen, Tc};
    let equivocation = |voter: u16, round: u64| {
        Seen(Err(Reject::Equivocation {
            validator: ValidatorIndex(voter),
            round: Round(round),
        }))
    };
    let step = |what, op, out, evidence, power| TimeoutStep {
        what,
        op,
        out,
        evidence,
        power,
    };
    let steps = vec![
        step(
            "a new timeout is fresh; checking does not count it",
            Check {
                voter: 0,
                round: 5,
                hq: 3,
                sig: Real,
            },
            Seen(Ok(TimeoutSeen::Fresh)),
            0,
            None,
        ),
        step(
            "added, it counts; one timeout is no TC",
            Add {
                voter: 0,
                round: 5,
                hq: 3,
                current: 5,
            },
            Tc(None),
            0,
            Some(10),
        ),
        step(
            "the same timeout again is a duplicate",
            Check {
                voter: 0,
                round: 5,
                hq: 3,
                sig: Real,
            },
            Seen(Ok(TimeoutSeen::Duplicate)),
            0,
            Some(10),
        ),
        step(
            "a forged timeout is refused",
            Check {
                voter: 1,
                round: 5,
                hq: 3,
                sig: Forged,
            },
            Seen(Err(Reject::BadSignature {
                what: "timeout",
                signer: ValidatorIndex(1),
            })),
            0,
            Some(10),
        ),
        step(
            "a second voter's timeout, reporting another QC round",
            Check {
                voter: 1,
                round: 5,
                hq: 4,
                sig: Real,
            },
            Seen(Ok(TimeoutSeen::Fresh)),
            0,
            Some(10),
        ),
        step(
            "20 of 40: more than a third (join), no TC",
            Add {
                voter: 1,
                round: 5,
                hq: 4,
                current: 5,
            },
            Tc(None),
            0,
            Some(20),
        ),
        step(
            "voter 0 times out again reporting another QC round: evidence",
            Check {
                voter: 0,
                round: 5,
                hq: 4,
                sig: Real,
            },
            equivocation(0, 5),
            1,
            Some(20),
        ),
        step(
            "the same equivocation again: not reported twice",
            Check {
                voter: 0,
                round: 5,
                hq: 4,
                sig: Real,
            },
            equivocation(0, 5),
            0,
            Some(20),
        ),
        step(
            "a third different timeout of the voter: still reported once",
            Check {
                voter: 0,
                round: 5,
                hq: 2,
                sig: Real,
            },
            equivocation(0, 5),
            0,
            Some(20),
        ),
        step(
            "a forged different timeout is no evidence",
            Check {
                voter: 1,
                round: 5,
                hq: 2,
                sig: Forged,
            },
            Seen(Err(Reject::BadSignature {
                what: "timeout",
                signer: ValidatorIndex(1),
            })),
            0,
            Some(20),
        ),
        step(
            "the third timeout forms TC(5) with every reported QC round",
            Add {
                voter: 2,
                round: 5,
                hq: 3,
                current: 5,
            },
            Tc(Some(vec![(0, 3), (1, 4), (2, 3)])),
            0,
            Some(30),
        ),
        step(
            "after the TC a fourth timeout is not counted",
            Add {
                voter: 3,
                round: 5,
                hq: 3,
                current: 5,
            },
            Tc(None),
            0,
            Some(30),
        ),
        step(
            "a timeout three rounds below the current one is not kept",
            Add {
                voter: 0,
                round: 2,
                hq: 1,
                current: 5,
            },
            Tc(None),
            0,
            None,
        ),
        step(
            "a timeout two rounds below is kept",
            Add {
                voter: 0,
                round: 3,
                hq: 1,
                current: 5,
            },
            Tc(None),
            0,
            Some(10),
        ),
        step(
            "an equivocation in another round is reported again",
            Check {
                voter: 0,
                round: 3,
                hq: 2,
                sig: Real,
            },
            equivocation(0, 3),
            1,
            Some(10),
        ),
    ];
    let (set, chain) = (set(), chain());
    let mut keeper = VoteKeeper::default();
    for (k, s) in steps.into_iter().enumerate() {
        let what = s.what;
        let mut evidence = Vec::new();
        let (round, voter, out) = match s.op {
            Check {
                voter,
                round,
                hq,
                sig,
            } => {
                let signer = match sig {
                    Sig::Real => key(voter as u8),
                    Sig::Forged => forger(),
                };
                let header = timeout(voter, round, hq, &signer);
                let pk = key(voter as u8).public_key();
                let seen = keeper.check_timeout(header, &pk, &chain, &mut evidence);
                (round, voter, TimeoutOut::Seen(seen))
            }
            Add {
                voter,
                round,
                hq,
                current,
            } => {
                let header = timeout(voter, round, hq, &key(voter as u8));
                let tc = keeper.add_timeout(header, Round(current), &set, Epoch(0));
                if let Some(tc) = &tc {
                    assert_eq!(tc.round, Round(round), "step {k}: {what}: TC round");
                    assert_eq!(
                        verify_tc(tc, &chain, &set, Epoch(0)),
                        Ok(()),
                        "step {k}: {what}: the TC verifies"
                    );
                }
                let entries = tc.map(|tc| {
                    tc.entries
                        .iter()
                        .map(|e| (e.voter.0, e.high_qc_round.0))
                        .collect()
                });
                (round, voter, TimeoutOut::Tc(entries))
            }
        };
        assert_eq!(out, s.out, "step {k}: {what}");
        assert_eq!(evidence.len(), s.evidence, "step {k}: {what}: evidence");
        assert_evidence(&evidence, voter, &format!("step {k}: {what}"));
        assert_eq!(
            keeper.timeout_power(Round(round), &set),
            s.power,
            "step {k}: {what}: timeout power"
        );
    }
}

// ----- proposals -----------------------------------------------------------
