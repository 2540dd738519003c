//! Fixed-seed trace digests: the regression net for refactors that must not
//! change behaviour.
//!
//! Each seed runs the swarm's random profile (Byzantine validators, every
//! fault class by chance, epoch changes, governance), and its digest covers
//! every event of the run, every message's bytes among them. A pure
//! refactor of the consensus core, the state machine or the simulator
//! leaves every digest as it is; a change that moves even one message, one
//! timer or one byte of one block changes the digests of the seeds it
//! touches.
//!
//! The expected digests live in `digests.txt` beside this file, one
//! `seed digest` per line. A change that is meant to alter behaviour
//! re-records them with
//!
//! ```sh
//! COMMONS_RECORD_DIGESTS=1 cargo test --release -p commons-simulator --test digests
//! ```
//!
//! and says so in its commit; a refactor never does.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use commons_simulator::swarm::random_profile;
use commons_simulator::{Behaviour, Fault, run};

/// Seeds 0..SEEDS; enough that every Byzantine behaviour and fault class is
/// drawn many times over.
const SEEDS: u64 = 200;
/// The swarm's default budgets (`commons-sim swarm`).
const FAULT_MS: u64 = 3_000;
const LIVENESS_MS: u64 = 10_000;

/// Read at run time, not baked in at compile time: a test binary reused
/// from a build directory shared between clones must read the clone it runs
/// for.
fn expected_path() -> PathBuf {
    let root = std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR");
    PathBuf::from(root).join("tests/digests.txt")
}

fn parse(text: &str) -> BTreeMap<u64, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (seed, digest) = l
                .split_once(' ')
                .unwrap_or_else(|| panic!("digests.txt: line {l:?} is not `seed digest`"));
            let seed = seed
                .parse()
                .unwrap_or_else(|_| panic!("digests.txt: bad seed in {l:?}"));
            (seed, digest.trim().to_string())
        })
        .collect()
}

/// Runs every seed on two threads; each run stays on one thread, so each
/// digest is as deterministic as a single `run`.
fn digests() -> BTreeMap<u64, (String, bool)> {
    let next = Mutex::new(0u64);
    let out = Mutex::new(BTreeMap::new());
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                loop {
                    let seed = {
                        let mut n = next.lock().expect("seed counter");
                        let s = *n;
                        *n += 1;
                        s
                    };
                    if seed >= SEEDS {
                        break;
                    }
                    let report =
                        run(random_profile(seed, FAULT_MS, LIVENESS_MS), false).expect("runs");
                    let ok = report.ok();
                    out.lock()
                        .expect("digest map")
                        .insert(seed, (report.digest, ok));
                }
            });
        }
    });
    out.into_inner().expect("digest map")
}

#[test]
fn the_seeds_draw_every_byzantine_behaviour_and_fault_class() {
    let profiles: Vec<_> = (0..SEEDS)
        .map(|seed| random_profile(seed, FAULT_MS, LIVENESS_MS))
        .collect();
    for behaviour in Behaviour::ALL {
        assert!(
            profiles.iter().any(|o| o.byzantine.contains(&behaviour)),
            "no seed draws {behaviour:?}"
        );
    }
    for fault in Fault::ALL {
        assert!(
            profiles.iter().any(|o| o.faults.contains(&fault)),
            "no seed draws {fault:?}"
        );
    }
}

#[test]
fn fixed_seed_digests_are_unchanged() {
    let runs = digests();
    // Every seed also passes the simulator's own checks: a digest recorded
    // from a broken run would keep the breakage.
    let failed: Vec<u64> = runs
        .iter()
        .filter(|(_, (_, ok))| !ok)
        .map(|(seed, _)| *seed)
        .collect();
    if let Some(first) = failed.first() {
        panic!(
            "seeds {failed:?} broke a safety or liveness check; replay the first with `{}`",
            random_profile(*first, FAULT_MS, LIVENESS_MS).command()
        );
    }
    let got: BTreeMap<u64, String> = runs.into_iter().map(|(s, (d, _))| (s, d)).collect();
    let path = expected_path();
    if std::env::var_os("COMMONS_RECORD_DIGESTS").is_some() {
        let mut text = String::from(
            "# seed digest: commons-sim runs of the swarm's random profile \
             (fault 3000 ms, liveness 10000 ms); see digests.rs\n",
        );
        for (seed, digest) in &got {
            text.push_str(&format!("{seed} {digest}\n"));
        }
        std::fs::write(&path, text).expect("write digests.txt");
        return;
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (record with COMMONS_RECORD_DIGESTS=1)",
            path.display()
        )
    });
    let expected = parse(&text);
    assert_eq!(
        expected.keys().copied().collect::<Vec<_>>(),
        (0..SEEDS).collect::<Vec<_>>(),
        "digests.txt must hold exactly seeds 0..{SEEDS}"
    );
    let changed: Vec<String> = got
        .iter()
        .filter(|(seed, digest)| expected.get(seed) != Some(digest))
        .map(|(seed, _)| {
            format!(
                "seed {seed}: replay with `{}`",
                random_profile(*seed, FAULT_MS, LIVENESS_MS).command()
            )
        })
        .collect();
    assert!(
        changed.is_empty(),
        "{} of {SEEDS} seeds ran differently:\n{}",
        changed.len(),
        changed.join("\n")
    );
}
