//! `commons-sim`: runs one simulated scenario, or a swarm of seeds.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use commons_simulator::options::parse_list;
use commons_simulator::swarm::{random_profile, swarm};
use commons_simulator::{Behaviour, Fault, Options, Report, run};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

/// The node's allocator (see `node/src/main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "commons-sim",
    about = "Deterministic cluster simulator of Commons"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs one scenario; the last line printed is the trace digest.
    Run(RunArgs),
    /// Runs many seeds, each with a fault profile drawn from its seed.
    Swarm(SwarmArgs),
}

#[derive(Args, Debug)]
struct RunArgs {
    #[arg(long)]
    seed: u64,
    #[arg(long, default_value_t = 4)]
    validators: usize,
    /// A number of Byzantine validators (behaviours drawn from the seed) or
    /// a comma-separated list of behaviours: equivocate, double-vote,
    /// withhold, forge, replay, invalid-txs, split-brain, stale-qc.
    #[arg(long, default_value = "")]
    byzantine: String,
    /// Comma-separated fault classes, or `all`: loss, duplicate, reorder,
    /// partition, scheduled-partition, asymmetric, crash, skew, slow,
    /// bandwidth.
    #[arg(long, default_value = "")]
    faults: String,
    /// Virtual time with faults; GST follows.
    #[arg(long, default_value_t = 20_000)]
    time_ms: u64,
    /// Virtual time after GST in which liveness must show.
    #[arg(long, default_value_t = 20_000)]
    liveness_ms: u64,
    /// End the faulty period once this many rounds were simulated.
    #[arg(long)]
    rounds: Option<u64>,
    #[arg(long, default_value_t = 20)]
    tx_per_sec: u64,
    #[arg(long, default_value_t = 40)]
    epoch_length: u64,
    /// Skip the validator-set change through governance.
    #[arg(long)]
    no_governance: bool,
    /// A deliberately broken variant of the core (needs the `mutations`
    /// feature): quorum-two-thirds-inclusive, locking-rule-dropped,
    /// record-after-vote, commit-one-chain, tc-ignores-highest-qc.
    #[arg(long)]
    mutation: Option<String>,
    /// Write the event log to this file.
    #[arg(long)]
    trace: Option<std::path::PathBuf>,
}

#[derive(Args, Debug)]
struct SwarmArgs {
    /// A range of seeds, `A..B` (B excluded), or a count N meaning `0..N`.
    #[arg(long)]
    seeds: String,
    #[arg(long, default_value_t = 2)]
    jobs: usize,
    #[arg(long, default_value_t = 3_000)]
    time_ms: u64,
    #[arg(long, default_value_t = 10_000)]
    liveness_ms: u64,
    /// Stop at the first failing seed.
    #[arg(long)]
    stop_at_first: bool,
    #[arg(long)]
    mutation: Option<String>,
}

fn parse_seeds(s: &str) -> Result<std::ops::Range<u64>> {
    if let Some((a, b)) = s.split_once("..") {
        let a: u64 = a.parse().context("seed range start")?;
        let b: u64 = b.parse().context("seed range end")?;
        if b <= a {
            bail!("empty seed range {s}");
        }
        Ok(a..b)
    } else {
        let n: u64 = s.parse().context("seed count")?;
        Ok(0..n)
    }
}

fn options(args: &RunArgs) -> Result<Options> {
    let mut o = Options::new(args.seed);
    o.validators = args.validators;
    o.byzantine = match args.byzantine.parse::<usize>() {
        Ok(k) => {
            let mut rng = ChaCha8Rng::seed_from_u64(args.seed ^ 0xb42a);
            (0..k)
                .map(|_| Behaviour::ALL[(rng.next_u64() % Behaviour::ALL.len() as u64) as usize])
                .collect()
        }
        Err(_) => parse_list(&args.byzantine)?,
    };
    o.faults = if args.faults == "all" {
        Fault::ALL.to_vec()
    } else {
        parse_list(&args.faults)?
    };
    o.fault_ms = args.time_ms;
    o.liveness_ms = args.liveness_ms;
    o.rounds_max = args.rounds;
    o.tx_per_sec = args.tx_per_sec;
    o.epoch_length_blocks = args.epoch_length;
    o.governance = !args.no_governance;
    o.mutation = args.mutation.clone();
    o.check()?;
    Ok(o)
}

fn print_failure(r: &Report) {
    for v in &r.violations {
        println!("FAILED seed {}: {v}", r.options.seed);
    }
    println!("  options: {:?}", r.options);
    println!("  replay:  {}", r.options.command());
}

fn main() -> Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            let opts = options(&args)?;
            let started = Instant::now();
            let report = run(opts, args.trace.is_some())?;
            let wall = started.elapsed();
            if let Some(path) = &args.trace {
                std::fs::write(path, report.trace.join("\n") + "\n")
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            println!("command: {}", report.options.command());
            println!(
                "rounds {} height {} epoch {} spare joined {} txs {}/{} committed, virtual {} ms",
                report.rounds,
                report.committed_height,
                report.epoch,
                report.spare_joined,
                report.txs_committed,
                report.txs_signed,
                report.virtual_ms
            );
            println!("stats: {:?}", report.stats);
            if report.ok() {
                println!("ok: no violation");
            } else {
                print_failure(&report);
            }
            println!(
                "wall {:.3} s, {:.0} rounds/s",
                wall.as_secs_f64(),
                report.rounds as f64 / wall.as_secs_f64().max(1e-9)
            );
            println!("digest {}", report.digest);
            Ok(if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Swarm(args) => {
            let seeds = parse_seeds(&args.seeds)?;
            let mutation = args.mutation.clone();
            let (time_ms, liveness_ms) = (args.time_ms, args.liveness_ms);
            let profile = move |seed: u64| {
                let mut o = random_profile(seed, time_ms, liveness_ms);
                o.mutation = mutation.clone();
                o
            };
            let report = swarm(seeds.clone(), args.jobs, args.stop_at_first, &profile)?;
            for f in &report.failures {
                print_failure(f);
            }
            println!(
                "seeds {}..{}: {} runs, {} failed; {} rounds, {} virtual s; wall {:.1} s, {:.0} rounds/s",
                seeds.start,
                seeds.end,
                report.runs,
                report.failures.len(),
                report.rounds,
                report.virtual_ms / 1000,
                report.wall.as_secs_f64(),
                report.rounds_per_sec()
            );
            Ok(if report.failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
