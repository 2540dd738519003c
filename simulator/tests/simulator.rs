//! The simulator's own tests: determinism, a fixed set of seeds for every
//! fault class and every Byzantine behaviour (all must pass on the real
//! core), and checks that the checks fire.

use commons_simulator::swarm::{random_profile, swarm};
use commons_simulator::{Behaviour, Fault, Options, run};

fn short(seed: u64) -> Options {
    let mut o = Options::new(seed);
    o.fault_ms = 3_000;
    o.liveness_ms = 10_000;
    o.epoch_length_blocks = 25;
    o
}

fn assert_ok(o: Options) {
    let command = o.command();
    let r = run(o, false).expect("runs");
    assert!(r.ok(), "violations {:?}\nreplay: {command}", r.violations);
    assert!(r.committed_height > 0, "nothing committed: {command}");
}

#[test]
fn same_seed_same_digest() {
    let mut o = short(7);
    o.faults = Fault::ALL.to_vec();
    o.byzantine = vec![Behaviour::Equivocate];
    let a = run(o.clone(), true).expect("runs");
    let b = run(o.clone(), true).expect("runs");
    assert_eq!(a.digest, b.digest);
    assert_eq!(a.trace, b.trace);
    assert_eq!(a.stats, b.stats);
    assert!(a.stats.delivered > 100, "the run did something");
    o.seed = 8;
    let c = run(o, false).expect("runs");
    assert_ne!(a.digest, c.digest, "another seed, another run");
}

#[test]
fn every_fault_class_alone_keeps_safety_and_liveness() {
    for (k, fault) in Fault::ALL.into_iter().enumerate() {
        for seed in 0..2 {
            let mut o = short(100 + 10 * k as u64 + seed);
            o.faults = vec![fault];
            assert_ok(o);
        }
    }
}

#[test]
fn every_byzantine_behaviour_alone_keeps_safety_and_liveness() {
    for (k, behaviour) in Behaviour::ALL.into_iter().enumerate() {
        for seed in 0..2 {
            let mut o = short(200 + 10 * k as u64 + seed);
            o.byzantine = vec![behaviour];
            o.faults = vec![Fault::Loss, Fault::Crash];
            assert_ok(o);
        }
    }
}

#[test]
fn spare_validator_joins_through_governance_and_an_epoch_change() {
    let mut o = Options::new(3);
    o.fault_ms = 2_000;
    o.liveness_ms = 12_000;
    o.epoch_length_blocks = 30;
    let r = run(o, false).expect("runs");
    assert!(r.ok(), "{:?}", r.violations);
    assert!(r.spare_joined, "the spare validator joined");
    assert!(r.epoch >= 1);
    assert!(r.txs_committed > 50, "transfers and settlements commit");
}

#[test]
fn a_crashed_leader_does_not_equivocate_after_restart() {
    // Regression: seed 1 with every fault made validator 0 crash right
    // after proposing in round 6 and propose a second block for round 6
    // after restarting; its peers held valid equivocation evidence against
    // an honest validator. The core now skips proposing in a round its
    // record shows it already voted or timed out in (and, since the
    // swarm's seed 6127 below, proposed in).
    let mut o = Options::new(1);
    o.byzantine = vec![Behaviour::Replay];
    o.faults = Fault::ALL.to_vec();
    assert_ok(o);
}

/// A swarm failure replayed with its exact options.
fn swarm_case(
    seed: u64,
    epoch_length_blocks: u64,
    byzantine: &[Behaviour],
    faults: &[Fault],
) -> Options {
    let mut o = short(seed);
    o.validators = 7;
    o.tx_per_sec = 10;
    o.epoch_length_blocks = epoch_length_blocks;
    o.byzantine = byzantine.to_vec();
    o.faults = faults.to_vec();
    o
}

#[test]
fn a_leader_restarted_after_refusing_its_own_block_does_not_propose_again() {
    // Regression: the swarm's seed 6127. Validator 1 proposed in round 7 on
    // an older QC than the one its TC reported, so it refused to vote for
    // its own block and nothing in its record showed the round. It crashed,
    // restarted and proposed another block for round 7, and a peer held
    // equivocation evidence against an honest validator. The record now
    // keeps the last round proposed in, persisted before the proposal
    // leaves.
    use Fault::*;
    let mut o = swarm_case(
        6127,
        26,
        &[Behaviour::StaleQc],
        &[
            Loss,
            Duplicate,
            Partition,
            ScheduledPartition,
            Asymmetric,
            Crash,
        ],
    );
    o.validators = 5;
    assert_eq!(
        o.command(),
        "commons-sim run --seed 6127 --validators 5 --time-ms 3000 --liveness-ms 10000 \
         --tx-per-sec 10 --epoch-length 26 --byzantine stale-qc \
         --faults loss,duplicate,partition,scheduled-partition,asymmetric,crash",
        "the options the swarm printed"
    );
    assert_ok(o);
}

#[test]
fn replicas_restarted_after_a_commit_still_prove_it_to_the_others() {
    // Regression: the swarm's seed 3952. The two replicas that committed
    // height 5 both crashed and restarted, and read that commit back from
    // storage without the QC proving it; they refused every request for the
    // range, the other three never committed it, and reputation named
    // different leaders on the two sides until the end: no commit in the
    // 10 s after GST. A QC read back now proves the commit it made.
    use Fault::*;
    let mut o = swarm_case(
        3952,
        44,
        &[Behaviour::StaleQc],
        &[Duplicate, ScheduledPartition, Asymmetric, Crash],
    );
    o.validators = 4;
    assert_eq!(
        o.command(),
        "commons-sim run --seed 3952 --validators 4 --time-ms 3000 --liveness-ms 10000 \
         --tx-per-sec 10 --epoch-length 44 --byzantine stale-qc \
         --faults duplicate,scheduled-partition,asymmetric,crash",
        "the options the swarm printed"
    );
    assert_ok(o);
}

#[test]
fn replicas_one_commit_apart_reconcile_their_leaders() {
    // Regression: the swarm's seed 1351. A stale-QC validator's fork attack
    // let one honest replica commit a block the others never saw committed;
    // reputation then named different leaders on the two sides, neither
    // side reached a quorum, and in most rounds no one proposed at all, so
    // the wrong-leader probe never fired: 23 rounds in 10 s after GST and
    // no commit. The core now probes a peer on each timeout and probes
    // back a requester that shows it committed further.
    use Fault::*;
    let o = swarm_case(
        1351,
        29,
        &[Behaviour::StaleQc, Behaviour::Withhold],
        &[Duplicate, Partition, ScheduledPartition, Asymmetric, Slow],
    );
    let command = o.command();
    let r = run(o, false).expect("runs");
    assert!(r.ok(), "violations {:?}\nreplay: {command}", r.violations);
    assert!(r.rounds > 60, "{} rounds: {command}", r.rounds);
}

#[test]
fn invalid_txs_and_split_brain_leaders_do_not_stall_transactions() {
    // Regression: the swarm's seeds 325, 1312 and 1396 missed the
    // transaction window with an invalid-txs and a split-brain validator.
    // The first committed block of an epoch (it carries the signer-less
    // root QC) made its proposer the only eligible leader, so the TC that
    // followed the split-brain leader's rounds blamed that proposer, and
    // the Byzantine validators stayed eligible and led most rounds (seed
    // 325 needs that fix; 1312 and 1396 already passed with the probes
    // of the test above).
    use Fault::*;
    let byzantine = [Behaviour::InvalidTxs, Behaviour::SplitBrain];
    for o in [
        swarm_case(325, 23, &byzantine, &[Loss, Reorder, Asymmetric, Crash]),
        swarm_case(
            1312,
            38,
            &byzantine,
            &[Loss, Duplicate, Reorder, Asymmetric],
        ),
        swarm_case(1396, 28, &byzantine, &[Loss, Crash, Slow]),
    ] {
        assert_ok(o);
    }
}

#[test]
fn swarm_of_random_profiles_finds_nothing_in_the_real_core() {
    let r = swarm(0..24, 2, false, &|seed| random_profile(seed, 3_000, 10_000)).expect("runs");
    assert_eq!(r.runs, 24);
    for f in &r.failures {
        eprintln!(
            "seed {} {:?}: {}",
            f.options.seed,
            f.violations,
            f.options.command()
        );
    }
    assert!(r.failures.is_empty());
    assert!(r.rounds > 24 * 20);
}

#[test]
fn more_than_a_third_byzantine_is_refused_liveness_but_checked_for_safety() {
    // One split-brain validator of three holds exactly a third: the real
    // core stays safe (quorums of more than two thirds intersect in an
    // honest validator) even though it cannot make progress.
    let mut o = short(5);
    o.validators = 3;
    o.byzantine = vec![Behaviour::SplitBrain];
    o.faults = vec![Fault::Partition];
    assert!(!o.within_fault_bound());
    let r = run(o, false).expect("runs");
    assert!(r.ok(), "{:?}", r.violations);
}
