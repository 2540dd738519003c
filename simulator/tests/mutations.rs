//! The simulator finds deliberately broken variants of the consensus core.
//! Built only with `--features commons-simulator/mutations`:
//!
//! ```text
//! cargo test --release --workspace --features commons-simulator/mutations -- mutation
//! ```
#![cfg(feature = "mutations")]

use commons_consensus::mutations::Mutation;
use commons_simulator::swarm::{random_profile, swarm};
use commons_simulator::{Behaviour, Fault, Options};

/// Seeds a swarm may take to find each broken variant.
const SEEDS_MAX: u64 = 200;

fn hunt(mutation: Mutation, profile: &(dyn Fn(u64) -> Options + Sync)) -> u64 {
    let named = |seed: u64| {
        let mut o = profile(seed);
        o.mutation = Some(mutation.name().to_string());
        o
    };
    let r = swarm(0..SEEDS_MAX, 2, true, &named).expect("runs");
    let first = r
        .first_failure()
        .unwrap_or_else(|| panic!("{} not found in {SEEDS_MAX} seeds", mutation.name()));
    let seeds = first.options.seed + 1;
    eprintln!(
        "mutation {} found after {seeds} seeds by {}: {}\n  replay: {}",
        mutation.name(),
        first.violations[0].check,
        first.violations[0].detail,
        first.options.command()
    );
    assert!(seeds <= SEEDS_MAX);
    seeds
}

fn adversarial(seed: u64) -> Options {
    let mut o = random_profile(seed, 3_000, 5_000);
    o.faults = vec![
        Fault::Loss,
        Fault::Reorder,
        Fault::Partition,
        Fault::Crash,
        Fault::Skew,
    ];
    o
}

#[test]
fn mutation_quorum_two_thirds_inclusive_is_found() {
    // A split-brain validator holding a third of the power: with quorums of
    // at least two thirds each half of the network certifies its own chain.
    hunt(Mutation::QuorumTwoThirdsInclusive, &|seed| {
        let mut o = Options::new(seed);
        o.validators = 3;
        o.byzantine = vec![Behaviour::SplitBrain];
        o.faults = vec![Fault::Partition, Fault::Loss];
        o.fault_ms = 3_000;
        o.liveness_ms = 5_000;
        o
    });
}

#[test]
fn mutation_locking_rule_dropped_is_found() {
    hunt(Mutation::LockingRuleDropped, &adversarial);
}

#[test]
fn mutation_record_after_vote_is_found() {
    hunt(Mutation::RecordAfterVote, &adversarial);
}

#[test]
fn mutation_commit_one_chain_is_found() {
    hunt(Mutation::CommitOneChain, &adversarial);
}

#[test]
fn mutation_tc_ignores_highest_qc_is_found() {
    hunt(Mutation::TcIgnoresHighestQc, &adversarial);
}
