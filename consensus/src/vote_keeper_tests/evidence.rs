//! Proposal headers, evidence marks and pruning.

use super::*;

struct ProposalStep {
    what: &'static str,
    /// The header of `proposer`'s block `block` of `round`; `own`: noted as
    /// this replica's own proposal (no answer expected).
    proposer: u16,
    round: u64,
    block: u8,
    own: bool,
    expect: Option<Result<ProposalSeen, Reject>>,
    evidence: usize,
}

#[test]
fn proposal_headers_are_first_then_again_and_a_second_block_is_evidence() {
    let equivocation = |proposer: u16, round: u64| {
        Some(Err(Reject::Equivocation {
            validator: ValidatorIndex(proposer),
            round: Round(round),
        }))
    };
    let p = |what, proposer, round, block, expect, evidence| ProposalStep {
        what,
        proposer,
        round,
        block,
        own: false,
        expect,
        evidence,
    };
    let steps = vec![
        p("a first header", 1, 3, A, Some(Ok(ProposalSeen::First)), 0),
        p(
            "the same header again",
            1,
            3,
            A,
            Some(Ok(ProposalSeen::Again)),
            0,
        ),
        p(
            "another block of the proposer in the round: evidence",
            1,
            3,
            B,
            equivocation(1, 3),
            1,
        ),
        p(
            "a third block: refused, not reported twice",
            1,
            3,
            7,
            equivocation(1, 3),
            0,
        ),
        p(
            "the first block is still the one kept",
            1,
            3,
            A,
            Some(Ok(ProposalSeen::Again)),
            0,
        ),
        p(
            "another proposer in the same round",
            2,
            3,
            B,
            Some(Ok(ProposalSeen::First)),
            0,
        ),
        p(
            "the proposer in the next round",
            1,
            4,
            B,
            Some(Ok(ProposalSeen::First)),
            0,
        ),
        ProposalStep {
            what: "this replica's own proposal is noted",
            proposer: 0,
            round: 4,
            block: A,
            own: true,
            expect: None,
            evidence: 0,
        },
        p(
            "a copy of the own proposal comes back",
            0,
            4,
            A,
            Some(Ok(ProposalSeen::Again)),
            0,
        ),
        p(
            "another block under the own name: evidence",
            0,
            4,
            B,
            equivocation(0, 4),
            1,
        ),
    ];
    let mut keeper = VoteKeeper::default();
    for (k, s) in steps.into_iter().enumerate() {
        let what = s.what;
        let header = proposal(s.proposer, s.round, s.block);
        let mut evidence = Vec::new();
        let got = if s.own {
            keeper.note_own_proposal(header);
            None
        } else {
            Some(keeper.note_proposal(header, &mut evidence))
        };
        assert_eq!(got, s.expect, "step {k}: {what}");
        assert_eq!(evidence.len(), s.evidence, "step {k}: {what}: evidence");
        assert_evidence(&evidence, s.proposer, &format!("step {k}: {what}"));
    }
}

// ----- evidence bound, pruning ----------------------------------------------

#[test]
fn evidence_is_reported_once_per_round_validator_and_kind() {
    let (set, chain) = (set(), chain());
    let pk = key(1).public_key();
    let mut keeper = VoteKeeper::default();
    let mut evidence = Vec::new();
    // Validator 1 equivocates in round 6 in all three ways, twice each.
    for _ in 0..2 {
        keeper
            .note_proposal(proposal(1, 6, A), &mut evidence)
            .expect("first or again");
        assert!(
            keeper
                .note_proposal(proposal(1, 6, B), &mut evidence)
                .is_err()
        );
        keeper
            .on_vote(
                vote(1, 6, A),
                &pk,
                Round(6),
                || true,
                &set,
                &chain,
                &mut evidence,
            )
            .expect("a vote");
        assert!(
            keeper
                .on_vote(
                    vote(1, 6, B),
                    &pk,
                    Round(6),
                    || true,
                    &set,
                    &chain,
                    &mut evidence
                )
                .is_err()
        );
        if keeper.timeout_power(Round(6), &set).is_none() {
            let first = timeout(1, 6, 4, &key(1));
            assert_eq!(
                keeper.check_timeout(first, &pk, &chain, &mut evidence),
                Ok(TimeoutSeen::Fresh)
            );
            assert_eq!(keeper.add_timeout(first, Round(6), &set, Epoch(0)), None);
        }
        assert!(
            keeper
                .check_timeout(timeout(1, 6, 5, &key(1)), &pk, &chain, &mut evidence)
                .is_err()
        );
    }
    let kinds: Vec<&str> = evidence
        .iter()
        .map(|e| match e {
            Evidence::ConflictingProposals { .. } => "proposals",
            Evidence::ConflictingVotes { .. } => "votes",
            Evidence::ConflictingTimeouts { .. } => "timeouts",
        })
        .collect();
    assert_eq!(kinds, vec!["proposals", "votes", "timeouts"]);
    assert_evidence(&evidence, 1, "three kinds");
}

#[test]
fn evidence_handed_out_at_once_is_bounded() {
    let mut keeper = VoteKeeper::default();
    let mut evidence = Vec::new();
    let mut refused = 0;
    // 4 proposers in 20 rounds: 80 equivocations, more than the bound.
    for round in 1..=20 {
        for proposer in 0..4 {
            keeper
                .note_proposal(proposal(proposer, round, A), &mut evidence)
                .expect("first header");
            if keeper
                .note_proposal(proposal(proposer, round, B), &mut evidence)
                .is_err()
            {
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 80, "every second block is refused");
    assert_eq!(evidence.len(), limits::MAX_PENDING_EVIDENCE);
    assert_evidence(&evidence[..1], 0, "first evidence");
}

#[test]
fn prune_forgets_rounds_the_current_round_no_longer_needs() {
    let (set, chain) = (set(), chain());
    let mut keeper = VoteKeeper::default();
    let mut evidence = Vec::new();
    for round in 1..=100 {
        for voter in 0..2 {
            let outcome = keeper.add_vote(vote(voter, round, A), false, &set, &chain);
            assert_eq!(outcome, VoteOutcome::default(), "round {round}");
        }
        keeper.add_timeout(timeout(0, round, 0, &key(0)), Round(round), &set, Epoch(0));
        keeper
            .note_proposal(proposal(0, round, A), &mut evidence)
            .expect("first header");
    }
    // Equivocations of validator 1 at rounds 35 and 36, reported.
    for round in [35, 36] {
        keeper
            .note_proposal(proposal(1, round, A), &mut evidence)
            .expect("first header");
        assert!(
            keeper
                .note_proposal(proposal(1, round, B), &mut evidence)
                .is_err()
        );
    }
    assert_eq!(evidence.len(), 2);

    keeper.prune(Round(100));

    // Votes and timeouts: the two rounds before the current one are kept.
    assert_eq!(
        keeper.timeout_power(Round(97), &set),
        None,
        "timeouts of 97"
    );
    assert_eq!(
        keeper.timeout_power(Round(98), &set),
        Some(10),
        "timeouts of 98"
    );
    assert_eq!(
        keeper.timeout_power(Round(100), &set),
        Some(10),
        "timeouts of 100"
    );
    assert_eq!(
        keeper.add_vote(vote(2, 97, A), false, &set, &chain).qc,
        None,
        "the votes of round 97 are forgotten"
    );
    assert!(
        keeper
            .add_vote(vote(2, 98, A), false, &set, &chain)
            .qc
            .is_some(),
        "the votes of round 98 are kept"
    );
    // Proposal headers and evidence marks: the last MAX_TRACKED_ROUNDS.
    let first_kept = 100 - limits::MAX_TRACKED_ROUNDS as u64;
    assert_eq!(first_kept, 36);
    let mut evidence = Vec::new();
    assert_eq!(
        keeper.note_proposal(proposal(0, 35, B), &mut evidence),
        Ok(ProposalSeen::First),
        "the header of round 35 is forgotten"
    );
    assert_eq!(
        keeper.note_proposal(proposal(0, 36, A), &mut evidence),
        Ok(ProposalSeen::Again),
        "the header of round 36 is kept"
    );
    keeper
        .note_proposal(proposal(1, 35, A), &mut evidence)
        .expect("forgotten, so first");
    assert!(
        keeper
            .note_proposal(proposal(1, 35, B), &mut evidence)
            .is_err()
    );
    assert_eq!(evidence.len(), 1, "the mark of round 35 is forgotten");
    assert!(
        keeper
            .note_proposal(proposal(1, 36, B), &mut evidence)
            .is_err()
    );
    assert_eq!(evidence.len(), 1, "the mark of round 36 is kept");

    keeper.clear();
    assert_eq!(keeper.timeout_power(Round(100), &set), None, "cleared");
    assert_eq!(votes_held(&keeper, 100), 0, "cleared");
    assert_eq!(
        keeper.note_proposal(proposal(0, 100, B), &mut evidence),
        Ok(ProposalSeen::First),
        "cleared"
    );
}
