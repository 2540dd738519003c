//! Property tests. Every oracle here is written independently of the code
//! it checks: the naive tally below neither calls `WeightedVote::split` nor
//! `tally::decide`, and states each rule in a different but equivalent form.

mod common;

use std::collections::BTreeMap;

use common::{Chain, content, key};
use commons_governance::*;
use commons_types::{Amount, Height, PublicKey};
use proptest::prelude::*;

// ---------------------------------------------------------------- strategies

/// A valid weighted vote: a non-empty set of options, weights cut from
/// 1..=999 so each is positive and they sum to 1000.
fn weighted_vote() -> impl Strategy<Value = Vec<(u32, u32)>> {
    (1usize..=4)
        .prop_flat_map(|k| {
            (
                proptest::sample::subsequence(vec![1u32, 2, 3, 4], k),
                proptest::sample::subsequence((1u32..1000).collect::<Vec<_>>(), k - 1),
            )
        })
        .prop_map(|(options, cuts)| {
            let mut bounds = vec![0];
            bounds.extend(cuts);
            bounds.push(1000);
            options
                .into_iter()
                .zip(bounds.windows(2).map(|w| w[1] - w[0]))
                .collect()
        })
        .prop_shuffle()
}

fn power() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..5, 0u64..2_000, 0u64..(1 << 40), 0u64..(u64::MAX / 64)]
}

#[derive(Clone, Debug)]
struct Params {
    quorum: u64,
    threshold: u64,
    veto: u64,
}

fn params() -> impl Strategy<Value = Params> {
    (1u64..=900, 500u64..=900, 200u64..=1000).prop_map(|(quorum, threshold, veto)| Params {
        quorum,
        threshold,
        veto,
    })
}

// ---------------------------------------------------------------- naive oracle

/// One voter's contribution per option `[yes, no, abstain, veto]`, from the
/// documented rule: floors, then the remainder to the largest weight, the
/// lowest option number on ties.
fn naive_parts(power: u64, vote: &[(u32, u32)]) -> [u128; 4] {
    let p = u128::from(power);
    let mut parts = [0u128; 4];
    for &(option, weight) in vote {
        parts[option as usize - 1] = p * u128::from(weight) / 1000;
    }
    let mut ranked: Vec<(u32, u32)> = vote.to_vec();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let counted: u128 = parts.iter().sum();
    parts[ranked[0].0 as usize - 1] += p - counted;
    parts
}

#[derive(Debug, PartialEq)]
enum NaiveOutcome {
    Passed,
    NoQuorum,
    BelowThreshold,
    Vetoed,
}

/// The rules as thresholds on integers: quorum needs at least
/// `ceil(q * total / 1000)` (and someone voting); a veto at least
/// `ceil(v * turnout / 1000)`; yes more than `floor(t * (yes+no+veto) / 1000)`.
fn naive_outcome(parts: [u128; 4], total: u128, p: &Params) -> NaiveOutcome {
    let [yes, no, abstain, veto] = parts;
    let turnout = yes + no + abstain + veto;
    let quorum_needed = (u128::from(p.quorum) * total).div_ceil(1000);
    if turnout == 0 || turnout < quorum_needed {
        return NaiveOutcome::NoQuorum;
    }
    let veto_needed = (u128::from(p.veto) * turnout).div_ceil(1000);
    if veto >= veto_needed {
        return NaiveOutcome::Vetoed;
    }
    if yes > u128::from(p.threshold) * (yes + no + veto) / 1000 {
        NaiveOutcome::Passed
    } else {
        NaiveOutcome::BelowThreshold
    }
}

struct MapSnapshot(BTreeMap<PublicKey, u64>);

impl StakeSnapshot for MapSnapshot {
    fn power_at_voting_start(&self, _: ProposalId, voter: &PublicKey) -> u64 {
        self.0.get(voter).copied().unwrap_or(0)
    }
}

/// A proposal in voting with the given snapshot total, made through the
/// public lifecycle.
fn proposal_in_voting(power_total: u64) -> Proposal {
    let params = common::test_params();
    let validators = Chain::new(&[]).validators;
    let ctx = SubmitContext {
        height: Height(1),
        params: &params,
        validators: &validators,
        active_proposals: 0,
        bonded_total: power_total,
    };
    let (p, effect) = Proposal::submit(
        ProposalId(1),
        key(1),
        content(ProposalAction::Text),
        Amount(100),
        &ctx,
    )
    .expect("a text proposal with the full deposit is accepted");
    assert!(matches!(effect, DepositEffect::VotingStarted(_)));
    p
}

// ---------------------------------------------------------------- tallies

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn tally_matches_the_naive_tally(
        voters in proptest::collection::vec((power(), weighted_vote()), 0..40),
        abstainers in proptest::collection::vec(power(), 0..5),
        p in params(),
    ) {
        let mut stakes = BTreeMap::new();
        let mut votes = BTreeMap::new();
        let mut naive = [0u128; 4];
        for (i, (power, vote)) in voters.iter().enumerate() {
            stakes.insert(key(i as u8), *power);
            votes.insert(key(i as u8), WeightedVote::from_wire(vote.clone()).unwrap());
            let parts = naive_parts(*power, vote);
            for (n, part) in naive.iter_mut().zip(parts) {
                *n += part;
            }
        }
        // Stake that does not vote still counts in the total.
        for (i, power) in abstainers.iter().enumerate() {
            stakes.insert(key(100 + i as u8), *power);
        }
        let total: u128 = stakes.values().map(|&s| u128::from(s)).sum();
        let total = u64::try_from(total).unwrap();
        let proposal = proposal_in_voting(total);
        let gov = GovParams {
            quorum_permille: p.quorum,
            threshold_permille: p.threshold,
            veto_permille: p.veto,
            ..GovParams::default()
        };
        let result = proposal.tally_so_far(&votes, &MapSnapshot(stakes.clone()), &gov).unwrap();
        let c = result.counts;
        prop_assert_eq!(
            [c.yes, c.no, c.abstain, c.no_with_veto].map(u128::from),
            naive
        );
        let expected = naive_outcome(naive, u128::from(total), &p);
        let got = match result.outcome {
            Outcome::Passed => NaiveOutcome::Passed,
            Outcome::Rejected(RejectReason::NoQuorum) => NaiveOutcome::NoQuorum,
            Outcome::Rejected(RejectReason::BelowThreshold) => NaiveOutcome::BelowThreshold,
            Outcome::Vetoed => NaiveOutcome::Vetoed,
            Outcome::DepositLapsed => panic!("a tally never lapses"),
        };
        prop_assert_eq!(got, expected);
        // The power counted never exceeds the snapshot's total, and each
        // voter is counted exactly once, in full.
        let voted: u128 = votes.keys().map(|k| u128::from(stakes[k])).sum();
        prop_assert_eq!(c.yes as u128 + c.no as u128 + c.abstain as u128 + c.no_with_veto as u128, voted);
        prop_assert!(voted <= u128::from(total));
    }

    #[test]
    fn decide_matches_the_naive_rules_at_their_boundaries(
        // Multiples of 1000 make the permille boundaries exact integers.
        total in prop_oneof![1u64..1_000_000, (1u64..1000).prop_map(|k| k * 1000)],
        p in params(),
        round_turnout in any::<bool>(),
        d_quorum in -1i64..=1,
        d_veto in -1i64..=1,
        d_yes in 0u64..=1,
        abstain_share in 0u64..=1000,
    ) {
        // Random counts miss the exact boundaries; build counts that sit on
        // them, one unit below or one above, for each rule in turn.
        let clamp = |x: i64| u64::try_from(x.max(0)).unwrap();
        let quorum_needed = (u128::from(p.quorum) * u128::from(total)).div_ceil(1000) as i64;
        let mut turnout = clamp(quorum_needed + d_quorum);
        if round_turnout {
            turnout = turnout.div_ceil(1000) * 1000;
        }
        let veto_needed = (u128::from(p.veto) * u128::from(turnout)).div_ceil(1000) as i64;
        let veto = clamp(veto_needed + d_veto).min(turnout);
        let rest = turnout - veto;
        let abstain = rest * abstain_share / 1000;
        let yes_no = rest - abstain;
        let tie = u64::try_from(u128::from(p.threshold) * u128::from(yes_no + veto) / 1000).unwrap();
        let yes = (tie + d_yes).min(yes_no);
        let no = yes_no - yes;
        let counts = TallyCounts { yes, no, abstain, no_with_veto: veto };
        let gov = GovParams {
            quorum_permille: p.quorum,
            threshold_permille: p.threshold,
            veto_permille: p.veto,
            ..GovParams::default()
        };
        let got = match tally::decide(&counts, total, &gov).outcome {
            Outcome::Passed => NaiveOutcome::Passed,
            Outcome::Rejected(RejectReason::NoQuorum) => NaiveOutcome::NoQuorum,
            Outcome::Rejected(RejectReason::BelowThreshold) => NaiveOutcome::BelowThreshold,
            Outcome::Vetoed => NaiveOutcome::Vetoed,
            Outcome::DepositLapsed => panic!("a tally never lapses"),
        };
        let expected = naive_outcome(
            [yes, no, abstain, veto].map(u128::from),
            u128::from(total),
            &p,
        );
        prop_assert_eq!(got, expected, "{:?} of {}", counts, total);
    }

    #[test]
    fn a_snapshot_larger_than_its_total_is_refused(
        voters in proptest::collection::vec((1u64..1_000_000, weighted_vote()), 1..20),
        shortfall in 1u64..1000,
    ) {
        let stakes: BTreeMap<PublicKey, u64> =
            voters.iter().enumerate().map(|(i, (p, _))| (key(i as u8), *p)).collect();
        let votes: BTreeMap<PublicKey, WeightedVote> = voters
            .iter()
            .enumerate()
            .map(|(i, (_, v))| (key(i as u8), WeightedVote::from_wire(v.clone()).unwrap()))
            .collect();
        let sum: u64 = stakes.values().sum();
        let proposal = proposal_in_voting(sum.saturating_sub(shortfall));
        let got = proposal.count_votes(&votes, &MapSnapshot(stakes));
        let refused = matches!(got, Err(GovError::PowerExceedsSnapshot { .. }));
        prop_assert!(refused, "{got:?}");
    }

    #[test]
    fn a_running_tally_equals_a_recount(
        voters in proptest::collection::vec(power(), 1..10),
        changes in proptest::collection::vec((0usize..10, weighted_vote()), 1..40),
    ) {
        // Voters change their votes many times; the ledger's running tally
        // (remove the old vote, add the new) must equal a recount of the
        // latest votes.
        let stakes: BTreeMap<PublicKey, u64> =
            voters.iter().enumerate().map(|(i, p)| (key(i as u8), *p)).collect();
        let mut latest: BTreeMap<PublicKey, WeightedVote> = BTreeMap::new();
        let mut running = TallyCounts::default();
        for (who, vote) in changes {
            let voter = key((who % voters.len()) as u8);
            let power = stakes[&voter];
            let vote = WeightedVote::from_wire(vote).unwrap();
            if let Some(old) = latest.insert(voter, vote.clone()) {
                running.remove_vote(power, &old).unwrap();
            }
            running.add_vote(power, &vote).unwrap();
        }
        let total = stakes.values().map(|&p| u128::from(p)).sum::<u128>();
        let proposal = proposal_in_voting(u64::try_from(total).unwrap());
        let recount = proposal.count_votes(&latest, &MapSnapshot(stakes)).unwrap();
        prop_assert_eq!(running, recount);
    }

    #[test]
    fn wire_votes_are_accepted_exactly_when_valid(
        raw in proptest::collection::vec((0u32..6, 0u32..1100), 0..6),
    ) {
        let mut seen = [false; 7];
        let mut sum = 0u64;
        let mut valid = raw.len() <= 4;
        for &(o, w) in &raw {
            valid &= (1..=4).contains(&o) && (1..=1000).contains(&w) && !seen[o as usize];
            seen[o as usize] = true;
            sum += u64::from(w);
        }
        valid &= sum == 1000;
        let got = WeightedVote::from_wire(raw.clone());
        prop_assert_eq!(got.is_ok(), valid, "{:?} -> {:?}", raw, got);
        if let Ok(v) = got {
            let total: u32 = v.entries().iter().map(|&(_, w)| u32::from(w)).sum();
            prop_assert_eq!(total, 1000);
        }
    }
}

// ---------------------------------------------------------------- lifecycles

#[derive(Clone, Debug)]
enum Op {
    Submit {
        who: u8,
        deposit: u64,
    },
    Deposit {
        proposal: u64,
        who: u8,
        amount: u64,
    },
    Vote {
        proposal: u64,
        who: u8,
        vote: Vec<(u32, u32)>,
    },
    Stake {
        who: u8,
        stake: u64,
    },
    EndBlocks(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..6, 0u64..150).prop_map(|(who, deposit)| Op::Submit { who, deposit }),
        (1u64..12, 0u8..6, 0u64..80).prop_map(|(proposal, who, amount)| Op::Deposit {
            proposal,
            who,
            amount
        }),
        (1u64..12, 0u8..6, weighted_vote()).prop_map(|(proposal, who, vote)| Op::Vote {
            proposal,
            who,
            vote
        }),
        (0u8..6, 0u64..2_000).prop_map(|(who, stake)| Op::Stake { who, stake }),
        (1u8..8).prop_map(Op::EndBlocks),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn deposits_are_conserved_over_random_lifecycles(
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        let mut chain = Chain::new(&[(0, 500), (1, 300), (2, 200), (3, 0)]);
        for op in ops {
            // Refusals are part of the lifecycle: they must change nothing.
            let deposited = chain.deposited;
            let refused = match op {
                Op::Submit { who, deposit } => {
                    chain.submit(who, content(ProposalAction::Text), deposit).is_err()
                }
                Op::Deposit { proposal, who, amount } => {
                    let id = ProposalId(proposal);
                    chain.proposals.contains_key(&id) && chain.deposit(id, who, amount).is_err()
                }
                Op::Vote { proposal, who, vote } => {
                    let id = ProposalId(proposal);
                    let vote = WeightedVote::from_wire(vote).unwrap();
                    chain.proposals.contains_key(&id) && chain.vote(id, who, vote).is_err()
                }
                Op::Stake { who, stake } => {
                    chain.set_stake(who, stake);
                    false
                }
                Op::EndBlocks(n) => {
                    for _ in 0..n {
                        chain.end_block();
                    }
                    false
                }
            };
            if refused {
                prop_assert_eq!(chain.deposited, deposited);
            }
            prop_assert!(chain.active() <= 3);
            for p in chain.proposals.values() {
                prop_assert_eq!(p.check(), Ok(()));
            }
        }
        // Let every proposal finish.
        for _ in 0..25 {
            chain.end_block();
        }
        prop_assert_eq!(chain.active(), 0);
        prop_assert!(chain.escrow.is_empty());
        prop_assert_eq!(chain.returned + chain.burned, chain.deposited);
        for r in &chain.resolutions {
            let burned = matches!(r.outcome, Outcome::Vetoed | Outcome::DepositLapsed);
            prop_assert_eq!(r.deposits.refunds.is_empty(), burned);
            prop_assert_eq!(r.deposits.burned.is_zero(), !burned);
            if let Some(t) = r.tally {
                prop_assert!(t.counts.turnout() <= u128::from(t.power_total));
            }
        }
    }
}

// ---------------------------------------------------------------- encoding

fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<char>(), 0..max).prop_map(move |cs| {
        let mut s = String::new();
        for c in cs {
            if s.len() + c.len_utf8() > max {
                break;
            }
            s.push(c);
        }
        s
    })
}

fn public_key() -> impl Strategy<Value = PublicKey> {
    any::<[u8; 32]>().prop_map(PublicKey)
}

fn action() -> impl Strategy<Value = ProposalAction> {
    let validator_change = prop_oneof![
        (public_key(), any::<u64>()).prop_map(|(key, power)| ValidatorChange::Add { key, power }),
        public_key().prop_map(|key| ValidatorChange::Remove { key }),
        (public_key(), any::<u64>())
            .prop_map(|(key, power)| ValidatorChange::Reweight { key, power }),
    ];
    prop_oneof![
        Just(ProposalAction::Text),
        proptest::collection::vec(
            (text(limits::MAX_PARAM_NAME_BYTES), any::<u64>()),
            0..=limits::MAX_PARAM_CHANGES
        )
        .prop_map(|cs| ProposalAction::ParamChange(
            cs.into_iter()
                .map(|(name, value)| ParamChange { name, value })
                .collect()
        )),
        (public_key(), any::<u64>()).prop_map(|(recipient, a)| ProposalAction::TreasurySpend {
            recipient,
            amount: Amount(a)
        }),
        proptest::collection::vec(validator_change, 0..=limits::MAX_VALIDATOR_CHANGES)
            .prop_map(ProposalAction::ValidatorChange),
        public_key().prop_map(|account| ProposalAction::ExcludeAccount { account }),
        public_key().prop_map(|account| ProposalAction::ReinstateAccount { account }),
        (
            text(limits::MAX_UPGRADE_NAME_BYTES),
            any::<u64>(),
            text(limits::MAX_UPGRADE_INFO_BYTES)
        )
            .prop_map(|(name, h, info)| ProposalAction::SoftwareUpgrade {
                name,
                height: Height(h),
                info
            }),
    ]
}

fn proposal_content() -> impl Strategy<Value = ProposalContent> {
    (text(limits::MAX_TITLE_BYTES), text(2_000), action()).prop_map(
        |(title, description, action)| ProposalContent {
            title,
            description,
            action,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encode_then_decode_round_trips(c in proposal_content()) {
        let bytes = c.encode();
        prop_assert!(bytes.len() <= limits::MAX_PROPOSAL_BYTES);
        prop_assert_eq!(c.encoded_len(), bytes.len());
        prop_assert_eq!(ProposalContent::decode(&bytes), Ok(c));
    }

    #[test]
    fn decode_never_panics_and_what_it_accepts_is_canonical(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        if let Ok(c) = ProposalContent::decode(&bytes) {
            prop_assert_eq!(c.encode(), bytes);
        }
    }

    #[test]
    fn damaged_encodings_never_panic(
        c in proposal_content(),
        cut in any::<proptest::sample::Index>(),
        flip in any::<proptest::sample::Index>(),
        xor in 1u8..=255,
    ) {
        let bytes = c.encode();
        // Every strict prefix is refused.
        let prefix = &bytes[..cut.index(bytes.len())];
        prop_assert!(ProposalContent::decode(prefix).is_err());
        // A flipped byte either is refused or decodes canonically.
        let mut damaged = bytes.clone();
        let at = flip.index(damaged.len());
        damaged[at] ^= xor;
        if let Ok(d) = ProposalContent::decode(&damaged) {
            prop_assert_eq!(d.encode(), damaged);
        }
        // Trailing bytes are refused.
        let mut longer = bytes;
        longer.push(0);
        prop_assert_eq!(ProposalContent::decode(&longer), Err(GovError::TrailingBytes { extra: 1 }));
    }

    #[test]
    fn split_counts_exactly_the_power(power in any::<u64>(), vote in weighted_vote()) {
        let v = WeightedVote::from_wire(vote.clone()).unwrap();
        let parts = v.split(power);
        prop_assert_eq!(parts.iter().map(|&p| u128::from(p)).sum::<u128>(), u128::from(power));
        prop_assert_eq!(parts.map(u128::from), naive_parts(power, &vote));
    }
}
