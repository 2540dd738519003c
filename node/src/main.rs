//! `commons-node`: the validator process.
//!
//! - `commons-node init --home DIR` writes a key, a config and a genesis.
//! - `commons-node start --home DIR` runs a validator.
//! - `commons-node devnet --validators N` runs N validators on 127.0.0.1 as
//!   child processes until Ctrl-C.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use commons_node::config::{Home, PeerConfig};
use commons_node::devnet::{self, DevnetNode, DevnetOptions, InitOptions};
use commons_types::PublicKey;
use tracing_subscriber::EnvFilter;

/// mimalloc, not the system allocator: the state tree allocates and frees
/// many small nodes per block, across threads (ARCHITECTURE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc reads its options from the environment when it starts, before
/// `main`; the devnet gives its nodes the recommended delay before freed
/// memory goes back to the OS unless the caller chose one (docs/operators.md,
/// ARCHITECTURE.md "mimalloc as the allocator").
const PURGE_DELAY_VAR: &str = "MIMALLOC_PURGE_DELAY";
const RECOMMENDED_PURGE_DELAY_MS: &str = "10000";

#[derive(Parser, Debug)]
#[command(name = "commons-node", version, about = "The Commons validator node")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write a validator home: a new key (mode 0600), config.toml and a
    /// genesis (a one-validator chain, or a copy of --genesis to join one).
    ///
    /// Example: commons-node init --home ~/.commons --genesis genesis.json
    Init {
        #[arg(long)]
        home: PathBuf,
        /// Genesis file of the chain to join.
        #[arg(long)]
        genesis: Option<PathBuf>,
        /// Chain id of a new one-validator chain (without --genesis).
        #[arg(long, default_value = "commons-local")]
        chain_id: String,
        #[arg(long, default_value = "127.0.0.1:26656")]
        p2p_listen: SocketAddr,
        #[arg(long, default_value = "127.0.0.1:9090")]
        grpc_listen: SocketAddr,
        #[arg(long, default_value = "127.0.0.1:9100")]
        metrics_listen: SocketAddr,
        /// A peer to dial besides the genesis validators: HEXKEY@HOST:PORT.
        #[arg(long = "peer", value_parser = parse_peer)]
        peers: Vec<PeerConfig>,
    },
    /// Run the validator of a home written by `init` until SIGTERM or Ctrl-C.
    Start {
        #[arg(long)]
        home: PathBuf,
    },
    /// Run a local network of validators on 127.0.0.1, each a separate
    /// process, until Ctrl-C. Reuses the network in --dir if there is one.
    ///
    /// Example: commons-node devnet --validators 4
    Devnet {
        #[arg(long, default_value_t = 4)]
        validators: usize,
        #[arg(long, default_value = "commons-devnet")]
        dir: PathBuf,
        /// Validator i listens on base+10i (p2p), base+10i+1 (gRPC) and
        /// base+10i+2 (metrics).
        #[arg(long, default_value_t = 26600)]
        base_port: u16,
        /// Blocks per epoch (validator-set changes take effect at epoch ends).
        #[arg(long, default_value_t = 100)]
        epoch_length: u64,
        /// Genesis parameter override, NAME=VALUE (repeatable).
        #[arg(long = "param", value_parser = parse_param)]
        params: Vec<(String, u64)>,
        /// Base round timeout of every validator (default: the genesis value).
        #[arg(long)]
        round_timeout_ms: Option<u64>,
        /// Funded demo accounts in the genesis (keys:
        /// commons_node::devnet::demo_account_key(0..N)); commons-bench
        /// signs from many of them.
        #[arg(long, default_value_t = devnet::DEVNET_DEMO_ACCOUNTS)]
        accounts: u32,
        /// Delete an existing devnet in --dir first.
        #[arg(long)]
        reset: bool,
        /// Only write the validators' homes; do not start them.
        #[arg(long)]
        init_only: bool,
    },
}

fn parse_peer(s: &str) -> Result<PeerConfig, String> {
    let (key, address) = s
        .split_once('@')
        .ok_or_else(|| format!("{s:?}: expected HEXKEY@HOST:PORT"))?;
    let public_key = PublicKey::from_hex(key).map_err(|e| format!("{key:?}: {e}"))?;
    if address.is_empty() {
        return Err(format!("{s:?}: missing HOST:PORT after @"));
    }
    Ok(PeerConfig {
        public_key,
        address: address.to_string(),
    })
}

fn parse_param(s: &str) -> Result<(String, u64), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected NAME=VALUE"))?;
    let value = value
        .parse::<u64>()
        .map_err(|e| format!("{s:?}: value is not a non-negative integer: {e}"))?;
    Ok((name.to_string(), value))
}

fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    init_tracing();
    match cli.command {
        Command::Init {
            home,
            genesis,
            chain_id,
            p2p_listen,
            grpc_listen,
            metrics_listen,
            peers,
        } => {
            let key = devnet::init(&InitOptions {
                home: home.clone(),
                genesis,
                chain_id,
                p2p_listen,
                grpc_listen,
                metrics_listen: Some(metrics_listen),
                peers,
            })?;
            println!("initialized {}", home.display());
            println!("validator public key: {key}");
            Ok(())
        }
        Command::Start { home } => {
            let home = Home::load(&home)?;
            if let Some(threads) = home.config.compute_threads {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build_global()
                    .context("starting the compute thread pool")?;
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the tokio runtime")?;
            runtime.block_on(commons_node::node::run(home))?;
            Ok(())
        }
        Command::Devnet {
            validators,
            dir,
            base_port,
            epoch_length,
            params,
            round_timeout_ms,
            accounts,
            reset,
            init_only,
        } => {
            let opts = DevnetOptions {
                validators,
                dir,
                base_port,
                epoch_length_blocks: epoch_length,
                params: params.into_iter().collect::<BTreeMap<_, _>>(),
                round_timeout_ms,
                demo_accounts: accounts,
            };
            let nodes = prepare_devnet(&opts, reset)?;
            print_devnet(&opts.dir, &nodes, opts.demo_accounts);
            if init_only {
                return Ok(());
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the tokio runtime")?;
            runtime.block_on(run_devnet(nodes))
        }
    }
}

fn prepare_devnet(opts: &DevnetOptions, reset: bool) -> Result<Vec<DevnetNode>> {
    let marker = opts
        .dir
        .join("node0")
        .join(commons_node::config::CONFIG_FILE);
    if marker.exists() {
        if reset {
            std::fs::remove_dir_all(&opts.dir)
                .with_context(|| format!("removing {}", opts.dir.display()))?;
        } else {
            let nodes = devnet::read_devnet(&opts.dir)?;
            if nodes.len() != opts.validators {
                bail!(
                    "{} holds a devnet of {} validators, not {}; pass --reset to replace it or --dir for another",
                    opts.dir.display(),
                    nodes.len(),
                    opts.validators
                );
            }
            println!("reusing the devnet in {}", opts.dir.display());
            return Ok(nodes);
        }
    } else if opts.dir.exists()
        && std::fs::read_dir(&opts.dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
    {
        bail!(
            "{} exists and is not a devnet; choose another --dir",
            opts.dir.display()
        );
    }
    Ok(devnet::write_devnet(opts)?)
}

fn print_devnet(dir: &Path, nodes: &[DevnetNode], demo_accounts: u32) {
    println!("devnet of {} validators in {}", nodes.len(), dir.display());
    for (i, n) in nodes.iter().enumerate() {
        println!(
            "  node{i}: gRPC http://{}  metrics http://{}/metrics  p2p {}  key {}",
            n.grpc, n.metrics, n.p2p, n.public_key
        );
    }
    println!(
        "funded demo accounts: {} (keys: commons_node::devnet::demo_account_key(0..{}))",
        demo_accounts, demo_accounts
    );
}

async fn run_devnet(nodes: Vec<DevnetNode>) -> Result<()> {
    let exe = std::env::current_exe().context("locating the commons-node binary")?;
    let mut children = Vec::with_capacity(nodes.len());
    for (i, node) in nodes.iter().enumerate() {
        let log_path = node.home.join("node.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let err = log
            .try_clone()
            .with_context(|| format!("opening {}", log_path.display()))?;
        let mut command = tokio::process::Command::new(&exe);
        if std::env::var_os(PURGE_DELAY_VAR).is_none() {
            command.env(PURGE_DELAY_VAR, RECOMMENDED_PURGE_DELAY_MS);
        }
        let child = command
            .arg("start")
            .arg("--home")
            .arg(&node.home)
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting node{i}"))?;
        println!(
            "started node{i} (pid {}), log {}",
            child.id().unwrap_or(0),
            log_path.display()
        );
        children.push(child);
    }
    println!("devnet running; press Ctrl-C to stop");
    let mut exited = None;
    {
        let waits = futures::future::select_all(children.iter_mut().map(|c| Box::pin(c.wait())));
        tokio::select! {
            _ = commons_node::node::shutdown_signal() => {}
            (status, index, _) = waits => exited = Some((index, status)),
        }
    }
    if let Some((index, status)) = &exited {
        eprintln!(
            "node{index} exited ({}); stopping the devnet. See {}",
            status
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_else(|e| e.to_string()),
            nodes[*index].home.join("node.log").display()
        );
    }
    println!("stopping validators");
    for child in &children {
        if let Some(pid) = child.id() {
            // SIGTERM lets each node finish its current step and close its
            // database; a node that does not stop in time is killed.
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
    }
    for (i, child) in children.iter_mut().enumerate() {
        match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                eprintln!("node{i} did not stop within 10 s; killing it");
                let _ = child.kill().await;
            }
        }
    }
    println!("devnet stopped");
    if exited.is_some() {
        bail!("a validator exited unexpectedly");
    }
    Ok(())
}
