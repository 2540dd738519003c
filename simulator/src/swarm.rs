//! Many seeds, each with a fault profile drawn from the seed, on a few
//! threads. One run stays on one thread, so each is as deterministic as a
//! `run`; only the wall-clock figures depend on the machine.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

use crate::byzantine::below;
use crate::options::{Behaviour, Fault, Options};
use crate::{Report, SimError, run};

/// The profile a swarm runs for `seed`: 4, 5 or 7 validators, as many
/// Byzantine ones as the bound allows (f < n/3) with behaviours drawn at
/// random, and each fault class with probability one half.
pub fn random_profile(seed: u64, fault_ms: u64, liveness_ms: u64) -> Options {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5157_4a52_4d00_0001);
    let mut o = Options::new(seed);
    o.validators = [4, 4, 4, 5, 7][below(&mut rng, 5) as usize];
    let f = (o.validators - 1) / 3;
    o.byzantine = (0..f)
        .map(|_| Behaviour::ALL[below(&mut rng, Behaviour::ALL.len() as u64) as usize])
        .collect();
    o.faults = Fault::ALL
        .into_iter()
        .filter(|_| below(&mut rng, 2) == 0)
        .collect();
    o.fault_ms = fault_ms;
    o.liveness_ms = liveness_ms;
    o.epoch_length_blocks = 20 + below(&mut rng, 30);
    o.tx_per_sec = 10;
    o
}

/// What a swarm found.
#[derive(Debug)]
pub struct SwarmReport {
    pub runs: u64,
    /// Failed runs, by seed.
    pub failures: Vec<Report>,
    pub rounds: u64,
    pub virtual_ms: u64,
    pub wall: Duration,
}

impl SwarmReport {
    pub fn rounds_per_sec(&self) -> f64 {
        self.rounds as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    /// The first failing seed, if any.
    pub fn first_failure(&self) -> Option<&Report> {
        self.failures.iter().min_by_key(|r| r.options.seed)
    }
}

/// Runs `profile(seed)` for every seed in `seeds` on `jobs` threads. With
/// `stop_at_first`, no new seed starts after a failure; every seed below
/// the first failing one has still been run, so that seed is exact.
pub fn swarm(
    seeds: std::ops::Range<u64>,
    jobs: usize,
    stop_at_first: bool,
    profile: &(dyn Fn(u64) -> Options + Sync),
) -> Result<SwarmReport, SimError> {
    let started = Instant::now();
    let next = AtomicU64::new(seeds.start);
    let stop = AtomicBool::new(false);
    let results: Mutex<(u64, Vec<Report>, u64, u64)> = Mutex::new((0, Vec::new(), 0, 0));
    let error: Mutex<Option<SimError>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| {
                loop {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let seed = next.fetch_add(1, Ordering::SeqCst);
                    if seed >= seeds.end {
                        break;
                    }
                    match run(profile(seed), false) {
                        Ok(report) => {
                            let failed = !report.ok();
                            if failed && stop_at_first {
                                stop.store(true, Ordering::SeqCst);
                            }
                            if let Ok(mut r) = results.lock() {
                                r.0 += 1;
                                r.2 += report.rounds;
                                r.3 += report.virtual_ms;
                                if failed {
                                    r.1.push(report);
                                }
                            }
                        }
                        Err(e) => {
                            stop.store(true, Ordering::SeqCst);
                            if let Ok(mut slot) = error.lock() {
                                *slot = Some(e);
                            }
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = error.into_inner().ok().flatten() {
        return Err(e);
    }
    let (runs, mut failures, rounds, virtual_ms) = results
        .into_inner()
        .map_err(|_| SimError::Setup("a swarm thread panicked".into()))?;
    failures.sort_by_key(|r| r.options.seed);
    Ok(SwarmReport {
        runs,
        failures,
        rounds,
        virtual_ms,
        wall: started.elapsed(),
    })
}
