//! Table tests: every proposal kind from submission to execution, and the
//! edge cases of the lifecycle and the tally.

mod common;

use VoteOption::*;
use common::{Chain, change, content, key, test_params};
use commons_governance::*;
use commons_types::{Amount, Height, PublicKey};

fn yes() -> WeightedVote {
    WeightedVote::single(Yes)
}
fn no() -> WeightedVote {
    WeightedVote::single(No)
}
fn veto() -> WeightedVote {
    WeightedVote::single(NoWithVeto)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Scenario {
    Pass,
    Reject,
    Veto,
}

/// Stakes: account 1 has 600, account 2 has 400 (total 1000).
fn votes_for(s: Scenario) -> [(u8, WeightedVote); 2] {
    match s {
        Scenario::Pass => [(1, yes()), (2, no())],
        Scenario::Reject => [(1, no()), (2, yes())],
        Scenario::Veto => [(1, yes()), (2, veto())],
    }
}

#[test]
fn every_kind_from_submission_to_execution() {
    let far = Height(1_000);
    let kinds: Vec<(&str, ProposalAction)> = vec![
        ("text", ProposalAction::Text),
        (
            "param",
            ProposalAction::ParamChange(vec![
                change("fee_base", 5),
                change("epoch_length_blocks", 77),
            ]),
        ),
        (
            "spend",
            ProposalAction::TreasurySpend {
                recipient: key(9),
                amount: Amount(300),
            },
        ),
        (
            "validators",
            ProposalAction::ValidatorChange(vec![
                ValidatorChange::Remove { key: key(201) },
                ValidatorChange::Reweight {
                    key: key(202),
                    power: 25,
                },
                ValidatorChange::Add {
                    key: key(7),
                    power: 5,
                },
            ]),
        ),
        (
            "exclude",
            ProposalAction::ExcludeAccount { account: key(8) },
        ),
        (
            "reinstate",
            ProposalAction::ReinstateAccount { account: key(8) },
        ),
        (
            "upgrade",
            ProposalAction::SoftwareUpgrade {
                name: "v2.0.0".into(),
                height: far,
                info: "sha256:abc".into(),
            },
        ),
    ];
    for (name, action) in &kinds {
        for scenario in [Scenario::Pass, Scenario::Reject, Scenario::Veto] {
            let mut chain = Chain::new(&[(1, 600), (2, 400)]);
            if *name == "reinstate" {
                chain.excluded.insert(key(8));
            }
            let before = (
                chain.params.clone(),
                chain.validators.clone(),
                chain.treasury,
                chain.excluded.clone(),
            );
            // Proposer 1 puts up 40, depositor 3 the remaining 60 a block later.
            let (id, effect) = chain.submit(1, content(action.clone()), 40).unwrap();
            assert_eq!(
                effect,
                DepositEffect::Pending {
                    missing: Amount(60)
                }
            );
            chain.end_block();
            let effect = chain.deposit(id, 3, 60).unwrap();
            let DepositEffect::VotingStarted(window) = effect else {
                panic!("{name}: voting should start, got {effect:?}");
            };
            assert_eq!(window.start, Height(2));
            assert_eq!(window.end, Height(12));
            assert_eq!(window.power_total, 1000);
            for (who, vote) in votes_for(scenario) {
                chain.vote(id, who, vote).unwrap();
            }
            let r = chain.run_until_finished(id);
            assert_eq!(
                chain.height,
                Height(13),
                "{name}: tallied at the end of block 12"
            );
            let expected = match scenario {
                Scenario::Pass => Outcome::Passed,
                Scenario::Reject => Outcome::Rejected(RejectReason::BelowThreshold),
                Scenario::Veto => Outcome::Vetoed,
            };
            assert_eq!(r.outcome, expected, "{name} {scenario:?}");
            assert_eq!(chain.proposal(id).phase(), Phase::Finished);
            assert!(
                chain.execution_failures.is_empty(),
                "{name}: {:?}",
                chain.execution_failures
            );
            match scenario {
                Scenario::Pass | Scenario::Reject => {
                    assert_eq!(
                        r.deposits.refunds,
                        vec![(key(1), Amount(40)), (key(3), Amount(60))],
                        "{name}"
                    );
                    assert_eq!(r.deposits.burned, Amount::ZERO);
                }
                Scenario::Veto => {
                    assert!(r.deposits.refunds.is_empty());
                    assert_eq!(r.deposits.burned, Amount(100));
                }
            }
            if scenario != Scenario::Pass {
                assert_eq!(r.execute, None);
                let after = (
                    chain.params.clone(),
                    chain.validators.clone(),
                    chain.treasury,
                    chain.excluded.clone(),
                );
                assert_eq!(after, before, "{name} {scenario:?}: nothing executes");
                continue;
            }
            assert_eq!(r.execute.as_ref(), Some(action), "{name}");
            match *name {
                "text" => {
                    assert_eq!(chain.params, before.0);
                    assert_eq!(chain.treasury, before.2);
                }
                "param" => {
                    assert_eq!(chain.params.get(Param::FeeBase), 5);
                    assert_eq!(chain.params.get_by_name("epoch_length_blocks"), Some(77));
                }
                "spend" => assert_eq!(chain.treasury, 700),
                "validators" => {
                    let powers: Vec<(PublicKey, u64)> = chain
                        .validators
                        .validators()
                        .iter()
                        .map(|v| (v.public_key, v.power))
                        .collect();
                    assert_eq!(
                        powers,
                        vec![(key(202), 25), (key(203), 10), (key(204), 10), (key(7), 5)]
                    );
                }
                "exclude" => assert!(chain.excluded.contains(&key(8))),
                "reinstate" => assert!(!chain.excluded.contains(&key(8))),
                "upgrade" => assert_eq!(chain.upgrades, vec![("v2.0.0".to_owned(), far)]),
                other => panic!("unhandled kind {other}"),
            }
        }
    }
}

/// One voting scenario: stakes, votes, expected outcome.
struct TallyCase {
    name: &'static str,
    stakes: &'static [(u8, u64)],
    votes: Vec<(u8, WeightedVote)>,
    expected: Outcome,
}

#[test]
fn tally_boundaries_through_the_lifecycle() {
    use Outcome::*;
    use RejectReason::*;
    let split = |e: &[(VoteOption, u16)]| WeightedVote::new(e).unwrap();
    let cases = vec![
        TallyCase {
            name: "quorum reached by exactly the parameter (334 of 1000)",
            stakes: &[(1, 334), (2, 666)],
            votes: vec![(1, yes())],
            expected: Passed,
        },
        TallyCase {
            name: "quorum one unit short",
            stakes: &[(1, 333), (2, 667)],
            votes: vec![(1, yes())],
            expected: Rejected(NoQuorum),
        },
        TallyCase {
            name: "tie on the threshold fails",
            stakes: &[(1, 500), (2, 500)],
            votes: vec![(1, yes()), (2, no())],
            expected: Rejected(BelowThreshold),
        },
        TallyCase {
            name: "tie made of split votes fails",
            stakes: &[(1, 1000)],
            votes: vec![(
                1,
                split(&[(Yes, 400), (No, 300), (NoWithVeto, 100), (Abstain, 200)]),
            )],
            expected: Rejected(BelowThreshold),
        },
        TallyCase {
            name: "one unit over the tie passes",
            stakes: &[(1, 501), (2, 499)],
            votes: vec![(1, yes()), (2, no())],
            expected: Passed,
        },
        TallyCase {
            name: "veto at exactly its parameter (334 of 1000 cast)",
            stakes: &[(1, 666), (2, 334)],
            votes: vec![(1, yes()), (2, veto())],
            expected: Vetoed,
        },
        TallyCase {
            name: "veto one unit short",
            stakes: &[(1, 667), (2, 333)],
            votes: vec![(1, yes()), (2, veto())],
            expected: Passed,
        },
        TallyCase {
            name: "veto share counts abstain in its denominator",
            stakes: &[(1, 500), (2, 166), (3, 334)],
            votes: vec![(1, yes()), (2, split(&[(Abstain, 1000)])), (3, veto())],
            expected: Vetoed,
        },
        TallyCase {
            name: "70/30 split vote: 700 yes, 300 abstain",
            stakes: &[(1, 1000)],
            votes: vec![(1, split(&[(Yes, 700), (Abstain, 300)]))],
            expected: Passed,
        },
        TallyCase {
            name: "nobody votes",
            stakes: &[(1, 1000)],
            votes: vec![],
            expected: Rejected(NoQuorum),
        },
    ];
    for case in cases {
        let mut chain = Chain::new(case.stakes);
        let (id, effect) = chain.submit(1, content(ProposalAction::Text), 100).unwrap();
        assert!(
            matches!(effect, DepositEffect::VotingStarted(_)),
            "{}",
            case.name
        );
        for (who, vote) in case.votes {
            chain.vote(id, who, vote).unwrap();
        }
        let r = chain.run_until_finished(id);
        assert_eq!(r.outcome, case.expected, "{}", case.name);
        let burned = case.expected == Vetoed;
        assert_eq!(
            r.deposits.burned,
            if burned { Amount(100) } else { Amount::ZERO }
        );
        assert_eq!(
            r.execute.is_some(),
            case.expected == Passed,
            "{}",
            case.name
        );
    }
}

#[test]
fn a_vote_changed_in_the_last_block_counts() {
    let mut chain = Chain::new(&[(1, 600), (2, 400)]);
    let (id, effect) = chain.submit(1, content(ProposalAction::Text), 100).unwrap();
    let DepositEffect::VotingStarted(window) = effect else {
        panic!("{effect:?}")
    };
    chain.vote(id, 1, yes()).unwrap();
    chain.vote(id, 2, no()).unwrap();
    chain.advance_to(window.end.0);
    assert_eq!(chain.proposal(id).blocks_left(chain.height), Some(0));
    assert_eq!(chain.proposal(id).due(chain.height), Some(Due::Tally));
    // Still in the last block: account 1 changes its mind.
    chain.vote(id, 1, no()).unwrap();
    let r = chain.run_until_finished(id);
    let tally = r.tally.unwrap();
    assert_eq!(
        tally.counts,
        TallyCounts {
            yes: 0,
            no: 1000,
            abstain: 0,
            no_with_veto: 0
        }
    );
    assert_eq!(r.outcome, Outcome::Rejected(RejectReason::BelowThreshold));
    // A block later the vote is over.
    assert_eq!(
        chain.vote(id, 1, yes()),
        Err(GovError::WrongPhase {
            id,
            expected: Phase::VotingPeriod,
            actual: Phase::Finished
        })
    );
}

#[test]
fn a_vote_after_the_end_height_is_refused_even_before_the_tally_runs() {
    let mut chain = Chain::new(&[(1, 600)]);
    let (id, _) = chain.submit(1, content(ProposalAction::Text), 100).unwrap();
    let p = chain.proposal(id);
    let VotingWindow { start, end, .. } = match p.status() {
        ProposalStatus::VotingPeriod(w) => *w,
        other => panic!("{other:?}"),
    };
    assert_eq!(p.check_vote(end, &key(1), 600), Ok(()));
    assert_eq!(
        p.check_vote(end.next(), &key(1), 600),
        Err(GovError::PeriodOver {
            id,
            height: end.next(),
            end
        })
    );
    assert_eq!(
        p.check_vote(Height(start.0 - 1), &key(1), 600),
        Err(GovError::BeforeVoting {
            id,
            height: Height(start.0 - 1),
            start
        })
    );
}

#[test]
fn stake_moved_during_the_vote_counts_at_its_snapshot() {
    // Account 1 (600) votes yes and then unbonds everything; account 2 (400)
    // bonds ten times more and votes no; account 3 bonds during the vote.
    let mut chain = Chain::new(&[(1, 600), (2, 400)]);
    let (id, _) = chain.submit(1, content(ProposalAction::Text), 100).unwrap();
    chain.vote(id, 1, yes()).unwrap();
    chain.end_block();
    chain.set_stake(1, 0);
    chain.set_stake(2, 4_000);
    chain.set_stake(3, 10_000);
    // Changing stake twice keeps the first record: the snapshot value.
    chain.set_stake(2, 5_000);
    chain.vote(id, 2, no()).unwrap();
    assert_eq!(
        chain.vote(id, 3, no()),
        Err(GovError::NoVotingPower { id, voter: key(3) })
    );
    let r = chain.run_until_finished(id);
    let tally = r.tally.unwrap();
    assert_eq!(tally.power_total, 1000);
    assert_eq!((tally.counts.yes, tally.counts.no), (600, 400));
    assert_eq!(
        r.outcome,
        Outcome::Passed,
        "current stake would have rejected it"
    );
}

#[test]
fn an_inconsistent_snapshot_is_refused_not_counted() {
    // A ledger bug: the snapshot reports more power than its total.
    struct Inflated;
    impl StakeSnapshot for Inflated {
        fn power_at_voting_start(&self, _: ProposalId, _: &PublicKey) -> u64 {
            700
        }
    }
    let mut chain = Chain::new(&[(1, 600), (2, 400)]);
    let (id, _) = chain.submit(1, content(ProposalAction::Text), 100).unwrap();
    chain.vote(id, 1, yes()).unwrap();
    chain.vote(id, 2, yes()).unwrap();
    let votes = chain.votes[&id].clone();
    let p = chain.proposal(id);
    assert_eq!(
        p.count_votes(&votes, &Inflated),
        Err(GovError::PowerExceedsSnapshot {
            id,
            counted: 1400,
            total: 1000
        })
    );
    let mut p = p.clone();
    let too_much = TallyCounts {
        yes: 1001,
        ..TallyCounts::default()
    };
    assert!(matches!(
        p.conclude(Height(100), too_much, &test_params().gov()),
        Err(GovError::PowerExceedsSnapshot { .. })
    ));
    assert_eq!(
        p.phase(),
        Phase::VotingPeriod,
        "a refused conclusion changes nothing"
    );
}

#[test]
fn submissions_refused_by_table() {
    let long_title = "t".repeat(141);
    let cases: Vec<(&str, ProposalContent, u64, GovError)> = vec![
        (
            "unknown parameter",
            content(ProposalAction::ParamChange(vec![change("fee_bsae", 1)])),
            100,
            GovError::UnknownParam {
                name: "fee_bsae".into(),
            },
        ),
        (
            "parameter out of range",
            content(ProposalAction::ParamChange(vec![change(
                "quorum_permille",
                950,
            )])),
            100,
            GovError::ParamOutOfRange {
                name: "quorum_permille",
                value: 950,
                min: 1,
                max: 900,
            },
        ),
        (
            "parameters out of order",
            content(ProposalAction::ParamChange(vec![change(
                "round_timeout_ms_max",
                60,
            )])),
            100,
            GovError::ParamOrder {
                lower: "round_timeout_ms_base",
                lower_value: 1000,
                upper: "round_timeout_ms_max",
                upper_value: 60,
            },
        ),
        (
            "description over the parameter",
            ProposalContent {
                description: "d".repeat(10_000),
                ..content(ProposalAction::Text)
            },
            100,
            GovError::FieldTooLong {
                field: "description",
                got: 10_000,
                limit: 5_000,
            },
        ),
        (
            "empty title",
            ProposalContent {
                title: "  ".into(),
                ..content(ProposalAction::Text)
            },
            100,
            GovError::Empty { field: "title" },
        ),
        (
            "control character in title",
            ProposalContent {
                title: "Hi\x1b[2J".into(),
                ..content(ProposalAction::Text)
            },
            100,
            GovError::BadCharacter {
                field: "title",
                found: '\x1b',
            },
        ),
        (
            "zero treasury spend",
            content(ProposalAction::TreasurySpend {
                recipient: key(9),
                amount: Amount(0),
            }),
            100,
            GovError::ZeroAmount {
                what: "treasury spend",
            },
        ),
        (
            "removing every validator",
            content(ProposalAction::ValidatorChange(
                (201..=204)
                    .map(|i| ValidatorChange::Remove { key: key(i) })
                    .collect(),
            )),
            100,
            GovError::ValidatorSet(commons_types::TypesError::EmptyValidatorSet),
        ),
        (
            "adding a present validator",
            content(ProposalAction::ValidatorChange(vec![
                ValidatorChange::Add {
                    key: key(201),
                    power: 1,
                },
            ])),
            100,
            GovError::ValidatorPresent { key: key(201) },
        ),
        (
            "reweighting an absent validator",
            content(ProposalAction::ValidatorChange(vec![
                ValidatorChange::Reweight {
                    key: key(9),
                    power: 1,
                },
            ])),
            100,
            GovError::ValidatorAbsent { key: key(9) },
        ),
        (
            "changing a validator twice",
            content(ProposalAction::ValidatorChange(vec![
                ValidatorChange::Reweight {
                    key: key(201),
                    power: 1,
                },
                ValidatorChange::Remove { key: key(201) },
            ])),
            100,
            GovError::DuplicateValidatorChange { key: key(201) },
        ),
        (
            "reweighting to zero",
            content(ProposalAction::ValidatorChange(vec![
                ValidatorChange::Reweight {
                    key: key(201),
                    power: 0,
                },
            ])),
            100,
            GovError::ValidatorSet(commons_types::TypesError::ZeroPower(key(201).to_hex())),
        ),
        (
            // Submitted at height 1, deposit period 10, voting period 10: the
            // vote can end at 21 at the latest, so 22 is the earliest height.
            "upgrade too soon",
            content(ProposalAction::SoftwareUpgrade {
                name: "v2".into(),
                height: Height(21),
                info: String::new(),
            }),
            100,
            GovError::UpgradeTooSoon {
                height: Height(21),
                earliest: Height(22),
            },
        ),
        (
            "upgrade with a bad name",
            content(ProposalAction::SoftwareUpgrade {
                name: "v2 final".into(),
                height: Height(100),
                info: String::new(),
            }),
            100,
            GovError::BadCharacter {
                field: "upgrade name",
                found: ' ',
            },
        ),
        (
            "initial deposit below its share",
            content(ProposalAction::Text),
            24,
            GovError::InitialDepositTooSmall {
                got: Amount(24),
                min: Amount(25),
                permille: 250,
            },
        ),
        (
            "zero deposit",
            content(ProposalAction::Text),
            0,
            GovError::ZeroAmount {
                what: "initial deposit",
            },
        ),
        (
            "title over the hard ceiling is refused by decode",
            ProposalContent {
                title: long_title,
                ..content(ProposalAction::Text)
            },
            100,
            GovError::FieldTooLong {
                field: "title",
                got: 141,
                limit: 140,
            },
        ),
    ];
    for (name, content, deposit, expected) in cases {
        let mut chain = Chain::new(&[(1, 1000)]);
        chain.params = chain
            .params
            .with_changes(&[change("max_description_bytes", 5_000)])
            .unwrap();
        assert_eq!(
            chain.submit(1, content, deposit).map(|_| ()),
            Err(expected),
            "{name}"
        );
        assert_eq!(chain.active(), 0, "{name}: nothing was created");
        assert_eq!(chain.deposited, 0, "{name}: nothing was escrowed");
    }
    // The upgrade one height later is accepted.
    let mut chain = Chain::new(&[(1, 1000)]);
    let upgrade = content(ProposalAction::SoftwareUpgrade {
        name: "v2".into(),
        height: Height(22),
        info: String::new(),
    });
    assert!(chain.submit(1, upgrade, 100).is_ok());
}

#[test]
fn over_size_content_is_refused_before_parsing_and_at_the_parameter() {
    // Over the hard ceiling: refused on length alone, whatever the bytes.
    let huge = vec![0xff; limits::MAX_PROPOSAL_BYTES + 1];
    assert_eq!(
        ProposalContent::decode(&huge),
        Err(GovError::ContentTooLarge {
            got: limits::MAX_PROPOSAL_BYTES + 1,
            limit: limits::MAX_PROPOSAL_BYTES
        })
    );
    // Under the ceiling but over the `max_proposal_bytes` parameter.
    let mut chain = Chain::new(&[(1, 1000)]);
    chain.params = chain
        .params
        .with_changes(&[change("max_proposal_bytes", 2048)])
        .unwrap();
    let big = ProposalContent {
        description: "d".repeat(3000),
        ..content(ProposalAction::Text)
    };
    let len = big.encoded_len();
    assert!(len <= limits::MAX_PROPOSAL_BYTES);
    assert_eq!(
        chain.submit(1, big, 100).map(|_| ()),
        Err(GovError::ContentTooLarge {
            got: len,
            limit: 2048
        })
    );
    // A count over its ceiling is refused before anything is allocated.
    let mut bytes = content(ProposalAction::Text).encode();
    let kind_at = bytes.len() - 1;
    bytes[kind_at] = 4; // validator change
    bytes.extend_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(
        ProposalContent::decode(&bytes),
        Err(GovError::TooManyEntries {
            what: "validator changes",
            got: u32::MAX as usize,
            limit: limits::MAX_VALIDATOR_CHANGES
        })
    );
}

#[test]
fn the_active_proposal_cap_holds_and_frees_up() {
    let mut chain = Chain::new(&[(1, 1000)]);
    let (first, _) = chain.submit(1, content(ProposalAction::Text), 100).unwrap();
    chain.submit(2, content(ProposalAction::Text), 30).unwrap();
    chain.submit(3, content(ProposalAction::Text), 30).unwrap();
    assert_eq!(chain.active(), 3);
    assert_eq!(
        chain
            .submit(4, content(ProposalAction::Text), 100)
            .map(|_| ()),
        Err(GovError::TooManyActive {
            active: 3,
            limit: 3
        })
    );
    // The first (in voting since block 1) finishes at the end of block 11;
    // the other two lapse at the end of block 11 as well.
    chain.run_until_finished(first);
    assert_eq!(chain.active(), 0);
    assert!(chain.submit(4, content(ProposalAction::Text), 100).is_ok());
}

#[test]
fn deposit_lapse_burns_and_deposits_close_with_the_period() {
    let mut chain = Chain::new(&[(1, 1000)]);
    let (id, effect) = chain.submit(1, content(ProposalAction::Text), 25).unwrap();
    assert_eq!(
        effect,
        DepositEffect::Pending {
            missing: Amount(75)
        }
    );
    assert_eq!(chain.proposal(id).deposit_end(), Height(11));
    assert_eq!(chain.proposal(id).blocks_left(Height(1)), Some(10));
    chain.advance_to(5);
    assert_eq!(
        chain.deposit(id, 2, 30),
        Ok(DepositEffect::Pending {
            missing: Amount(45)
        })
    );
    assert_eq!(
        chain.deposit(id, 2, 0),
        Err(GovError::ZeroAmount { what: "deposit" })
    );
    chain.advance_to(11);
    // The last block of the period still takes deposits.
    assert_eq!(
        chain.deposit(id, 1, 20),
        Ok(DepositEffect::Pending {
            missing: Amount(25)
        })
    );
    assert_eq!(
        chain.proposal(id).deposits().get(&key(1)),
        Some(&Amount(45))
    );
    let r = chain.run_until_finished(id);
    assert_eq!(r.outcome, Outcome::DepositLapsed);
    assert_eq!(r.tally, None);
    assert_eq!(r.deposits.burned, Amount(75));
    assert!(r.deposits.refunds.is_empty());
    assert_eq!(r.execute, None);
    assert_eq!(chain.proposal(id).blocks_left(chain.height), None);
    assert_eq!(
        chain.deposit(id, 2, 100),
        Err(GovError::WrongPhase {
            id,
            expected: Phase::DepositPeriod,
            actual: Phase::Finished
        })
    );
}

#[test]
fn reaching_the_minimum_in_the_last_deposit_block_starts_voting() {
    let mut chain = Chain::new(&[(1, 1000)]);
    let (id, _) = chain.submit(1, content(ProposalAction::Text), 25).unwrap();
    chain.advance_to(11);
    let effect = chain.deposit(id, 2, 75).unwrap();
    assert_eq!(
        effect,
        DepositEffect::VotingStarted(VotingWindow {
            start: Height(11),
            end: Height(21),
            power_total: 1000
        })
    );
    // Not lapsed at the end of block 11: it is voting now.
    assert_eq!(chain.proposal(id).due(Height(11)), None);
    assert_eq!(
        chain.deposit(id, 3, 5),
        Err(GovError::WrongPhase {
            id,
            expected: Phase::DepositPeriod,
            actual: Phase::VotingPeriod
        })
    );
    chain.vote(id, 1, yes()).unwrap();
    let r = chain.run_until_finished(id);
    assert_eq!(r.outcome, Outcome::Passed);
    assert_eq!(
        r.deposits.refunds,
        vec![(key(1), Amount(25)), (key(2), Amount(75))]
    );
}

#[test]
fn lifecycle_steps_refuse_the_wrong_moment() {
    let mut chain = Chain::new(&[(1, 1000)]);
    let (id, _) = chain.submit(1, content(ProposalAction::Text), 25).unwrap();
    let gov = chain.gov();
    let mut p = chain.proposal(id).clone();
    assert_eq!(
        p.lapse(Height(10)),
        Err(GovError::NotDue {
            id,
            height: Height(10),
            end: Height(11)
        })
    );
    assert_eq!(
        p.conclude(Height(50), TallyCounts::default(), &gov)
            .map(|_| ()),
        Err(GovError::WrongPhase {
            id,
            expected: Phase::VotingPeriod,
            actual: Phase::DepositPeriod
        })
    );
    p.add_deposit(Height(2), key(2), Amount(75), &gov, 1000)
        .unwrap();
    assert_eq!(
        p.conclude(Height(11), TallyCounts::default(), &gov)
            .map(|_| ()),
        Err(GovError::NotDue {
            id,
            height: Height(11),
            end: Height(12)
        })
    );
    let r = p
        .conclude(Height(12), TallyCounts::default(), &gov)
        .unwrap();
    assert_eq!(r.outcome, Outcome::Rejected(RejectReason::NoQuorum));
    // Exactly once.
    assert!(matches!(
        p.conclude(Height(12), TallyCounts::default(), &gov),
        Err(GovError::WrongPhase { .. })
    ));
}

#[test]
fn depositors_are_capped_but_existing_ones_may_add() {
    let mut chain = Chain::new(&[(1, 1000)]);
    chain.params = chain
        .params
        .with_changes(&[change("min_deposit", 1_000_000)])
        .unwrap();
    let (id, _) = chain
        .submit(0, content(ProposalAction::Text), 250_000)
        .unwrap();
    for who in 1..limits::MAX_DEPOSITORS as u8 {
        chain.deposit(id, who, 1).unwrap();
    }
    assert_eq!(chain.proposal(id).deposits().len(), limits::MAX_DEPOSITORS);
    assert_eq!(
        chain.deposit(id, 250, 1),
        Err(GovError::TooManyDepositors {
            id,
            limit: limits::MAX_DEPOSITORS
        })
    );
    assert!(chain.deposit(id, 1, 1).is_ok());
}

#[test]
fn tally_so_far_is_a_query_that_changes_nothing() {
    let mut chain = Chain::new(&[(1, 300), (2, 700)]);
    let (id, _) = chain.submit(1, content(ProposalAction::Text), 100).unwrap();
    chain.vote(id, 1, yes()).unwrap();
    let gov = chain.gov();
    let votes = chain.votes[&id].clone();
    let before = chain.proposal(id).clone();
    let so_far = chain
        .proposal(id)
        .tally_so_far(&votes, &chain, &gov)
        .unwrap();
    assert_eq!(so_far.counts.yes, 300);
    assert!(!so_far.quorum_reached);
    assert_eq!(so_far.outcome, Outcome::Rejected(RejectReason::NoQuorum));
    assert_eq!(chain.proposal(id), &before);
    chain.vote(id, 2, yes()).unwrap();
    let votes = chain.votes[&id].clone();
    let so_far = chain
        .proposal(id)
        .tally_so_far(&votes, &chain, &gov)
        .unwrap();
    assert_eq!(so_far.outcome, Outcome::Passed);
    // A proposal still collecting deposits has no tally.
    let (pending, _) = chain.submit(1, content(ProposalAction::Text), 30).unwrap();
    assert!(matches!(
        chain.proposal(pending).tally_so_far(&votes, &chain, &gov),
        Err(GovError::WrongPhase { .. })
    ));
}

#[test]
fn a_passed_change_that_no_longer_applies_fails_at_execution_only() {
    // Two validator changes, each valid alone, that together would empty
    // the set: the second fails when the ledger re-applies it.
    let mut chain = Chain::new(&[(1, 1000)]);
    let remove = |keys: std::ops::RangeInclusive<u8>| {
        content(ProposalAction::ValidatorChange(
            keys.map(|i| ValidatorChange::Remove { key: key(i) })
                .collect(),
        ))
    };
    let (a, _) = chain.submit(1, remove(201..=202), 100).unwrap();
    let (b, _) = chain.submit(1, remove(203..=204), 100).unwrap();
    chain.vote(a, 1, yes()).unwrap();
    chain.vote(b, 1, yes()).unwrap();
    chain.run_until_finished(b);
    assert!(
        chain
            .resolutions
            .iter()
            .all(|r| r.outcome == Outcome::Passed)
    );
    assert_eq!(chain.validators.len(), 2);
    assert_eq!(
        chain.execution_failures,
        vec![(
            b,
            GovError::ValidatorSet(commons_types::TypesError::EmptyValidatorSet)
        )]
    );
}
