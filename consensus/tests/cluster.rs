//! Whole clusters of replicas wired in memory: hundreds of commits, with and
//! without a silent validator, agreement checked across replicas.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Cluster, config};

fn commits(n: usize, silent: Option<usize>, blocks: usize) -> Cluster {
    let mut c = Cluster::new(n, config());
    if let Some(s) = silent {
        c.nodes[s].silent = true;
    }
    c.run_until(|c| c.min_committed() >= blocks, 2_000_000);
    c.assert_agreement();
    c
}

#[test]
fn four_validators_commit_hundreds_of_blocks() {
    let c = commits(4, None, 300);
    // The happy path never times out: every committed block's QC is of the
    // round just before it.
    let node = &c.nodes[0];
    assert!(node.committed.iter().all(|b| b.timeout_cert().is_none()));
    assert!(node.replica.round().0 >= 300);
}

#[test]
fn seven_validators_commit_hundreds_of_blocks() {
    let c = commits(7, None, 300);
    assert!(
        c.nodes[3]
            .committed
            .iter()
            .all(|b| b.timeout_cert().is_none())
    );
}

#[test]
fn four_validators_with_one_silent_commit_and_skip_the_silent_leader() {
    let c = commits(4, Some(2), 300);
    let node = &c.nodes[0];
    let timeouts = node
        .committed
        .iter()
        .filter(|b| b.timeout_cert().is_some())
        .count();
    // Reputation stops electing the silent validator after the first
    // window: a handful of timed-out rounds, not one in four.
    assert!(timeouts < 30, "{timeouts} timed-out rounds in 300 blocks");
    assert!(
        node.committed
            .iter()
            .all(|b| b.proposer().0 != 2 || b.height().0 < 5)
    );
}

#[test]
fn seven_validators_with_one_silent_commit() {
    let c = commits(7, Some(5), 300);
    let timeouts = c.nodes[0]
        .committed
        .iter()
        .filter(|b| b.timeout_cert().is_some())
        .count();
    assert!(timeouts < 30, "{timeouts} timed-out rounds in 300 blocks");
}

#[test]
fn a_restarted_replica_catches_up_and_agrees() {
    let mut c = Cluster::new(4, config());
    c.run_until(|c| c.min_committed() >= 20, 200_000);
    c.restart(1);
    c.run_until(|c| c.min_committed() >= 60, 400_000);
    c.assert_agreement();
}

#[test]
fn a_replica_silent_for_long_syncs_committed_ranges() {
    let mut c = Cluster::new(4, config());
    c.nodes[3].silent = true;
    c.run_until(|c| c.nodes[0].committed.len() >= 120, 1_000_000);
    c.nodes[3].silent = false;
    c.input(3, commons_consensus::Input::Tick);
    let target = c.nodes[0].committed.len() + 20;
    c.run_until(|c| c.nodes[3].committed.len() >= target, 2_000_000);
    c.assert_agreement();
}

#[test]
fn the_same_run_twice_is_identical() {
    let a = commits(4, Some(1), 50);
    let b = commits(4, Some(1), 50);
    let ids = |c: &Cluster| {
        c.nodes[0]
            .committed
            .iter()
            .map(|b| b.id())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&a)[..50], ids(&b)[..50]);
}

#[test]
fn epochs_change_every_twenty_heights_and_replicas_agree() {
    let mut cfg = config();
    cfg.epoch_length_blocks = 20;
    let mut c = Cluster::new(4, cfg);
    c.run_until(|c| c.min_committed() >= 100, 2_000_000);
    c.assert_agreement();
    assert!(
        c.nodes.iter().all(|n| n.replica.epoch().0 >= 4),
        "epochs advanced"
    );
    // Epoch e's blocks are exactly heights 20e+1 ..= 20e+20.
    for b in &c.nodes[0].committed {
        assert_eq!(
            b.epoch().0,
            (b.height().0 - 1) / 20,
            "height {}",
            b.height().0
        );
    }
}

/// The first replica to commit an epoch's last block (the one that formed
/// the QC committing it) starts the next epoch at once, and when it leads
/// round 1 there, its proposal reaches the others before they committed
/// that block. The proposal must not be lost to them: with no fault, no
/// round of any epoch times out. Forty epoch changes, so that the leader of
/// some first rounds is the replica that formed the QC.
fn simulated_ms_to_commit(blocks: usize, epoch_length_blocks: u64) -> u64 {
    let mut cfg = config();
    cfg.epoch_length_blocks = epoch_length_blocks;
    let mut c = Cluster::new(4, cfg);
    let start = c.now;
    c.run_until(|c| c.min_committed() >= blocks, 4_000_000);
    c.assert_agreement();
    c.now.as_u64() - start.as_u64()
}

#[test]
fn an_epoch_change_costs_no_round_timeout() {
    let one_epoch = simulated_ms_to_commit(200, 1_000);
    let forty_epochs = simulated_ms_to_commit(200, 5);
    eprintln!("200 blocks: {one_epoch} ms in one epoch, {forty_epochs} ms over 40 epochs");
    // An epoch change costs a few message delays (empty blocks until the
    // last one commits, the new epoch's first round); one timed-out round
    // costs round_timeout_ms.
    assert!(
        forty_epochs < one_epoch + 40 * 8 * common::LATENCY_MS + config().round_timeout_ms,
        "200 blocks: {one_epoch} ms in one epoch, {forty_epochs} ms over 40 epochs"
    );
}
