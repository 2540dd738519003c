//! `commons-bench`: an end-to-end load generator for a running Commons
//! network. Pre-signs settlements from many funded demo accounts, streams
//! them over `SubmitBatch` at a fixed `--rate` or as fast as accepted, for
//! `--duration` seconds, and reports committed settlements per second, the
//! ceiling measured on this machine in the same run, submission-to-finality
//! latency, refusals and CPU use: a table, or one JSON object with `--json`.
//!
//! Example (a devnet started with `commons-node devnet --accounts 512`):
//!   commons-bench --devnet-dir commons-devnet --duration 30 --accounts 512

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use commons_benches::load::{self, LoadOptions};
use commons_benches::report;
use commons_types::ChainId;

/// The node's allocator (see `node/src/main.rs`), so figures are the node's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "commons-bench",
    version,
    about = "End-to-end load generator for a Commons network"
)]
struct Cli {
    /// gRPC endpoint of a validator, http://HOST:PORT (repeatable, or
    /// comma-separated). Settlements are spread over all of them.
    #[arg(long = "endpoint", value_delimiter = ',')]
    endpoints: Vec<String>,
    /// A devnet directory (`commons-node devnet --dir`): its validators'
    /// endpoints, and their processes for CPU figures.
    #[arg(long)]
    devnet_dir: Option<PathBuf>,
    /// Process id of a validator whose CPU use to report (repeatable).
    #[arg(long = "node-pid", value_delimiter = ',')]
    node_pids: Vec<u32>,
    #[arg(long, default_value = "commons-devnet")]
    chain_id: String,
    /// Settlements per second offered over all endpoints (open loop).
    /// Without it: saturation, as fast as the nodes accept.
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds of load measured.
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Demo accounts that buy (each also sells to the previous one).
    #[arg(long, default_value_t = 256)]
    accounts: u32,
    /// First demo account used: runs on one network with disjoint ranges
    /// never conflict on nonces.
    #[arg(long, default_value_t = 0)]
    first_account: u32,
    /// Settlements to pre-sign (default: enough for the rate, or the
    /// ceiling, over the duration).
    #[arg(long)]
    txs: Option<usize>,
    /// Most settlements outstanding (sent, neither committed nor refused).
    #[arg(long, default_value_t = 20_000)]
    max_pending: usize,
    /// Longest wait after the window for accepted settlements to commit.
    #[arg(long, default_value_t = 30.0)]
    drain_s: f64,
    /// Seconds the ceiling's batch verification is timed, before the load
    /// and again after it (each in four windows; the fastest one counts;
    /// the ratio uses the first).
    #[arg(long, default_value_t = 2.0)]
    ceiling_s: f64,
    /// Print one JSON object on stdout (the table goes to stderr).
    #[arg(long)]
    json: bool,
    /// No progress lines.
    #[arg(long)]
    quiet: bool,
    /// Write latency by second sent to this CSV file (second, committed,
    /// p50, p99, max, p99 of submission to proposal), to tell a tail spread
    /// over the run from a few stalls.
    #[arg(long)]
    timeline: Option<PathBuf>,
}

fn seconds(s: f64, what: &str) -> Result<Duration> {
    if !(0.0..=86_400.0).contains(&s) {
        bail!("{what} must be between 0 and 86400 seconds, got {s}");
    }
    Ok(Duration::from_secs_f64(s))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let mut endpoints = cli.endpoints.clone();
    let mut node_homes = Vec::new();
    if let Some(dir) = &cli.devnet_dir {
        let nodes = commons_node::devnet::read_devnet(dir)
            .with_context(|| format!("reading the devnet in {}", dir.display()))?;
        if nodes.is_empty() {
            bail!("{} holds no devnet", dir.display());
        }
        if endpoints.is_empty() {
            endpoints = nodes.iter().map(|n| format!("http://{}", n.grpc)).collect();
        }
        node_homes = nodes.iter().map(|n| n.home.clone()).collect();
    }
    if endpoints.is_empty() {
        bail!("say where to send: --endpoint http://HOST:PORT or --devnet-dir DIR");
    }
    if let Some(r) = cli.rate
        && !(r.is_finite() && r > 0.0)
    {
        bail!("--rate must be a positive number of settlements per second, got {r}");
    }
    let opts = LoadOptions {
        endpoints,
        node_pids: cli.node_pids.clone(),
        node_homes,
        chain: ChainId::new(cli.chain_id.clone())
            .map_err(|e| anyhow::anyhow!("--chain-id: {e}"))?,
        rate: cli.rate,
        duration: seconds(cli.duration, "--duration")?,
        first_account: cli.first_account,
        accounts: cli.accounts,
        txs: cli.txs,
        max_pending: cli.max_pending.max(1),
        drain: seconds(cli.drain_s, "--drain-s")?,
        ceiling: seconds(cli.ceiling_s, "--ceiling-s")?,
        progress: !cli.quiet,
        timeline: cli.timeline.is_some(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let report = runtime.block_on(load::run(opts))?;
    if let Some(path) = &cli.timeline {
        std::fs::write(path, report::timeline_csv(&report.timeline))
            .with_context(|| format!("writing the timeline to {}", path.display()))?;
    }
    if cli.json {
        eprint!("{}", report.to_table());
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_table());
    }
    Ok(())
}
