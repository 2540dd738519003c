//! One load run against a running network: pre-sign, measure the ceiling,
//! stream settlements over `SubmitBatch` to every endpoint for a fixed
//! window, watch commits on `Subscribe`, drain, time the ceiling again, and
//! report.
//!
//! Settlement `k` is bought by account `k % accounts`, and every account
//! sends to one endpoint only (account `a` to endpoint `a % endpoints`), so
//! each account's nonces reach its node in order. The load is open loop: at a
//! fixed rate each endpoint's sender keeps to its share of the schedule
//! whatever the commits do; at saturation (no rate) it sends as fast as its
//! stream takes settlements. Either way it honours back-pressure: gRPC flow
//! control blocks a sender whose node reads slower, a "mempool full" or
//! "nonce too far" answer pauses it briefly and queues the settlement for a
//! retry, and no more than `max_pending` settlements are outstanding (sent
//! and neither committed nor refused for good).
//!
//! Latency is per settlement: from its first send to the moment it appears
//! in a committed block on the first endpoint's `Subscribe` stream.

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use commons_proto::v1 as api;
use commons_types::ChainId;
use commons_types::tx::pb;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::corpus::{AccountPlan, Corpus};
use crate::limits;
use crate::report::Report;
use crate::stats::{self, CpuSnapshot, CpuUse};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot reach {endpoint}: {reason}")]
    Connect { endpoint: String, reason: String },
    #[error("{endpoint}: {call}: {status}")]
    Call {
        endpoint: String,
        call: &'static str,
        status: String,
    },
    #[error("{0}")]
    Setup(String),
}

/// What one run does.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// gRPC endpoints (`http://host:port`), one per validator.
    pub endpoints: Vec<String>,
    /// Processes whose CPU use is reported (the validators).
    pub node_pids: Vec<u32>,
    /// Homes of validators whose processes are looked up (`commons-node
    /// start --home H`) once the network answers, when `node_pids` is empty.
    pub node_homes: Vec<PathBuf>,
    pub chain: ChainId,
    /// Settlements per second over all endpoints; `None`: saturation.
    pub rate: Option<f64>,
    pub duration: Duration,
    pub first_account: u32,
    pub accounts: u32,
    /// Settlements to pre-sign; `None`: enough for the rate (or the
    /// ceiling) over the window, plus `max_pending`.
    pub txs: Option<usize>,
    pub max_pending: usize,
    /// Longest wait after the window for accepted settlements to commit.
    pub drain: Duration,
    /// How long the ceiling's verification rate is timed, in
    /// [`crate::corpus::CEILING_WINDOWS`] windows of which the best counts.
    pub ceiling: Duration,
    pub progress: bool,
    /// Keep latency by second sent ([`Report::timeline`]).
    pub timeline: bool,
}

const NONE: u8 = 0;
const ACCEPTED: u8 = 1;
const INVALID: u8 = 2;
const DUPLICATE: u8 = 3;
const BACKPRESSURE: u8 = 4;

/// The wall clock in Unix microseconds (0 if it reads before 1970).
fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Per-settlement fate, shared by the senders, their answer readers and the
/// commit watcher. Times are microseconds since `start`, plus one, so that
/// zero means "not yet".
#[derive(Debug)]
struct Track {
    start: Instant,
    /// `start` on the wall clock, in Unix microseconds: block timestamps
    /// (the proposing leader's wall clock, in Unix milliseconds) are placed
    /// on the same axis with it. Nodes and bench share the machine's clock.
    start_unix_us: u64,
    sent_us: Vec<AtomicU64>,
    committed_us: Vec<AtomicU64>,
    /// The timestamp of the block that committed each settlement.
    proposed_us: Vec<AtomicU64>,
    state: Vec<AtomicU8>,
    sent: AtomicU64,
    accepted: AtomicU64,
    rejected: AtomicU64,
    backpressure: AtomicU64,
    committed: AtomicU64,
    stop: AtomicBool,
    exhausted: AtomicBool,
    blocks: Mutex<Vec<(u64, usize)>>,
    errors: Mutex<Vec<String>>,
}

impl Track {
    fn new(n: usize) -> Track {
        Track {
            start: Instant::now(),
            start_unix_us: unix_us(),
            sent_us: (0..n).map(|_| AtomicU64::new(0)).collect(),
            committed_us: (0..n).map(|_| AtomicU64::new(0)).collect(),
            proposed_us: (0..n).map(|_| AtomicU64::new(0)).collect(),
            state: (0..n).map(|_| AtomicU8::new(NONE)).collect(),
            sent: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            backpressure: AtomicU64::new(0),
            committed: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            exhausted: AtomicBool::new(false),
            blocks: Mutex::new(Vec::new()),
            errors: Mutex::new(Vec::new()),
        }
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX - 1) + 1
    }

    /// A Unix-millisecond wall-clock time on `now_us`'s axis (at least 1).
    fn wall_ms_to_us(&self, unix_ms: u64) -> u64 {
        unix_ms
            .saturating_mul(1000)
            .saturating_sub(self.start_unix_us)
            .saturating_add(1)
    }

    fn error(&self, e: String) {
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        if errors.len() < limits::ERRORS_KEPT {
            errors.push(e);
        }
    }

    /// Sent at least once and neither committed nor refused for good.
    fn outstanding(&self) -> u64 {
        let done = self.committed.load(Ordering::Relaxed) + self.rejected.load(Ordering::Relaxed);
        self.sent.load(Ordering::Relaxed).saturating_sub(done)
    }
}

async fn connect(endpoint: &str, within: Duration) -> Result<Channel, LoadError> {
    let deadline = Instant::now() + within;
    loop {
        let attempt = Channel::from_shared(endpoint.to_string())
            .map_err(|e| LoadError::Connect {
                endpoint: endpoint.to_string(),
                reason: e.to_string(),
            })?
            .connect()
            .await;
        match attempt {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() >= deadline => {
                return Err(LoadError::Connect {
                    endpoint: endpoint.to_string(),
                    reason: e.to_string(),
                });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Waits until `channel`'s node serves state with proofs (a few blocks
/// after the network starts), so the run does not time the start; returns
/// the size of the validator set in force.
async fn wait_ready(endpoint: &str, channel: &Channel) -> Result<usize, LoadError> {
    let mut q = api::query_client::QueryClient::new(channel.clone());
    let deadline = Instant::now() + Duration::from_secs(limits::START_WAIT_S);
    loop {
        let status = match q.get_validator_set(api::ValidatorSetRequest {}).await {
            Ok(r) => return Ok(r.into_inner().validators.len()),
            Err(s) if s.code() == tonic::Code::Unavailable => s.to_string(),
            Err(s) => {
                return Err(LoadError::Call {
                    endpoint: endpoint.to_string(),
                    call: "GetValidatorSet",
                    status: s.to_string(),
                });
            }
        };
        if Instant::now() >= deadline {
            return Err(LoadError::Setup(format!(
                "{endpoint} served no state within {} s ({status})",
                limits::START_WAIT_S
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The next nonce of each account of the plan, read from `channel`'s node.
async fn account_nonces(
    endpoint: &str,
    channel: &Channel,
    first: u32,
    count: u32,
) -> Result<Vec<u64>, LoadError> {
    let q = api::query_client::QueryClient::new(channel.clone());
    let answers: Vec<Result<u64, LoadError>> = futures::stream::iter(first..first + count)
        .map(|i| {
            let mut q = q.clone();
            async move {
                let key = commons_node::devnet::demo_account_key(i).public_key();
                let r = q
                    .get_account(api::AccountRequest {
                        account: key.0.to_vec().into(),
                    })
                    .await
                    .map_err(|s| LoadError::Call {
                        endpoint: endpoint.to_string(),
                        call: "GetAccount",
                        status: s.to_string(),
                    })?;
                match r.into_inner().account {
                    Some(a) if a.balance > 0 => Ok(a.nonce),
                    _ => Err(LoadError::Setup(format!(
                        "demo account {i} is not funded; start the devnet with --accounts {} or more",
                        first + count
                    ))),
                }
            }
        })
        .buffered(limits::QUERY_CONCURRENCY)
        .collect()
        .await;
    answers.into_iter().collect()
}

/// The probe corpus's parallel batch verification rate, in signatures per
/// second, timed for `seconds` off the async runtime.
async fn time_ceiling(probe: &Arc<Corpus>, seconds: Duration) -> Result<f64, LoadError> {
    let probe = Arc::clone(probe);
    tokio::task::spawn_blocking(move || probe.verify_rate(seconds))
        .await
        .map_err(|e| LoadError::Setup(format!("ceiling task: {e}")))?
        .map_err(LoadError::Setup)
}

/// Sends one endpoint's settlements in order (retries first) until stopped.
#[allow(clippy::too_many_arguments)]
async fn send_loop(
    track: Arc<Track>,
    corpus: Arc<Corpus>,
    queue: Vec<u32>,
    retry: Arc<Mutex<VecDeque<u32>>>,
    pause_until_us: Arc<AtomicU64>,
    out: mpsc::Sender<pb::SignedTx>,
    rate: Option<f64>,
    max_pending: u64,
) {
    let mut next = 0usize;
    let mut sends = 0u64;
    let begin = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(limits::SEND_TICK_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !track.stop.load(Ordering::Relaxed) {
        tick.tick().await;
        if track.now_us() < pause_until_us.load(Ordering::Relaxed) {
            continue;
        }
        let due = match rate {
            Some(r) => ((r * begin.elapsed().as_secs_f64()) as u64).saturating_sub(sends),
            None => limits::SATURATION_TICK_TXS,
        };
        let room = max_pending.saturating_sub(track.outstanding());
        let mut budget = due.min(room);
        while budget > 0 && !track.stop.load(Ordering::Relaxed) {
            let k = match retry.lock().unwrap_or_else(|p| p.into_inner()).pop_front() {
                Some(k) => k,
                None => match queue.get(next) {
                    Some(k) => {
                        next += 1;
                        *k
                    }
                    None => {
                        track.exhausted.store(true, Ordering::Relaxed);
                        break;
                    }
                },
            };
            let slot = k as usize;
            if track.sent_us[slot].load(Ordering::Relaxed) == 0 {
                track.sent_us[slot].store(track.now_us(), Ordering::Relaxed);
                track.sent.fetch_add(1, Ordering::Relaxed);
            }
            if out.send(corpus.txs[slot].clone()).await.is_err() {
                return;
            }
            sends += 1;
            budget -= 1;
        }
    }
}

/// Reads one endpoint's `SubmitBatch` answers.
async fn answer_loop(
    endpoint: String,
    track: Arc<Track>,
    corpus: Arc<Corpus>,
    mut answers: tonic::Streaming<api::SubmitResult>,
    retry: Arc<Mutex<VecDeque<u32>>>,
    pause_until_us: Arc<AtomicU64>,
) {
    loop {
        let answer = match answers.message().await {
            Ok(Some(a)) => a,
            Ok(None) => return,
            Err(status) => {
                if !track.stop.load(Ordering::Relaxed) {
                    track.error(format!("{endpoint}: SubmitBatch: {status}"));
                }
                return;
            }
        };
        let Some(k) = corpus.index_of(&answer.tx_id) else {
            track.error(format!(
                "{endpoint}: an answer for an unknown transaction: {}",
                answer.error
            ));
            continue;
        };
        let slot = k as usize;
        let code = api::SubmitCode::try_from(answer.code).unwrap_or(api::SubmitCode::Unspecified);
        match code {
            api::SubmitCode::Accepted => {
                track.state[slot].store(ACCEPTED, Ordering::Relaxed);
                track.accepted.fetch_add(1, Ordering::Relaxed);
            }
            api::SubmitCode::MempoolFull | api::SubmitCode::NonceTooFar => {
                track.state[slot].store(BACKPRESSURE, Ordering::Relaxed);
                track.backpressure.fetch_add(1, Ordering::Relaxed);
                retry.lock().unwrap_or_else(|p| p.into_inner()).push_back(k);
                pause_until_us.store(
                    track.now_us() + limits::BACKPRESSURE_PAUSE_MS * 1000,
                    Ordering::Relaxed,
                );
            }
            api::SubmitCode::Duplicate => {
                track.state[slot].store(DUPLICATE, Ordering::Relaxed);
                track.rejected.fetch_add(1, Ordering::Relaxed);
                track.error(format!("{endpoint}: duplicate: {}", answer.error));
            }
            api::SubmitCode::Invalid | api::SubmitCode::Unspecified => {
                track.state[slot].store(INVALID, Ordering::Relaxed);
                track.rejected.fetch_add(1, Ordering::Relaxed);
                track.error(format!("{endpoint}: rejected: {}", answer.error));
            }
        }
    }
}

/// Records the first time each of our settlements shows up committed.
async fn watch_commits(
    track: Arc<Track>,
    corpus: Arc<Corpus>,
    mut blocks: tonic::Streaming<api::CommittedBlock>,
) {
    loop {
        let block = match blocks.message().await {
            Ok(Some(b)) => b,
            Ok(None) => return,
            Err(status) => {
                if !track.stop.load(Ordering::Relaxed) {
                    track.error(format!("Subscribe: {status}"));
                }
                return;
            }
        };
        let now = track.now_us();
        let proposed = track.wall_ms_to_us(block.timestamp_ms);
        let mut ours = 0usize;
        for tx in &block.txs {
            if let Some(k) = corpus.index_of(&tx.tx_id) {
                ours += 1;
                if track.committed_us[k as usize]
                    .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
                {
                    track.proposed_us[k as usize].store(proposed, Ordering::Relaxed);
                    track.committed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        track
            .blocks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((now, ours));
    }
}

fn progress_line(track: &Track, last: &mut (Instant, u64)) -> String {
    let committed = track.committed.load(Ordering::Relaxed);
    let dt = last.0.elapsed().as_secs_f64().max(1e-3);
    let rate = committed.saturating_sub(last.1) as f64 / dt;
    *last = (Instant::now(), committed);
    format!(
        "[{:>5.1}s] sent {} accepted {} committed {} ({:.0}/s) outstanding {} rejected {} back-pressure {}",
        track.start.elapsed().as_secs_f64(),
        track.sent.load(Ordering::Relaxed),
        track.accepted.load(Ordering::Relaxed),
        committed,
        rate,
        track.outstanding(),
        track.rejected.load(Ordering::Relaxed),
        track.backpressure.load(Ordering::Relaxed),
    )
}

fn say(progress: bool, line: &str) {
    if progress {
        eprintln!("{line}");
    }
}

/// Runs the load and measures it.
pub async fn run(opts: LoadOptions) -> Result<Report, LoadError> {
    if opts.endpoints.is_empty() {
        return Err(LoadError::Setup("no endpoint to send to".into()));
    }
    if opts.accounts < 2 {
        return Err(LoadError::Setup(
            "--accounts must be at least 2 (a settlement has a buyer and a seller)".into(),
        ));
    }
    let mut channels = Vec::with_capacity(opts.endpoints.len());
    for e in &opts.endpoints {
        channels.push(connect(e, Duration::from_secs(limits::START_WAIT_S)).await?);
    }
    let first = &opts.endpoints[0];
    let validators = wait_ready(first, &channels[0]).await?;
    let mut node_pids = opts.node_pids.clone();
    if node_pids.is_empty() && !opts.node_homes.is_empty() {
        let found = stats::find_node_pids(&opts.node_homes);
        if found.iter().any(Option::is_none) {
            say(
                true,
                &format!(
                    "warning: found {} of {} validator processes; CPU figures cover those",
                    found.iter().flatten().count(),
                    found.len()
                ),
            );
        }
        node_pids = found.into_iter().flatten().collect();
    }
    let nonces = account_nonces(first, &channels[0], opts.first_account, opts.accounts).await?;
    let plan = AccountPlan {
        first: opts.first_account,
        count: opts.accounts,
        nonces,
    };

    // The ceiling, timed on a small corpus before any load (and again once
    // the run has drained, with the same corpus, see below).
    say(opts.progress, "timing parallel batch verification...");
    let probe = {
        let chain = opts.chain.clone();
        let plan = plan.clone();
        tokio::task::spawn_blocking(move || {
            Arc::new(Corpus::sign(
                &chain,
                &plan,
                crate::corpus::CEILING_BATCH_SIGNATURES / 2,
            ))
        })
        .await
        .map_err(|e| LoadError::Setup(format!("ceiling task: {e}")))?
    };
    let verify_sigs_per_s = time_ceiling(&probe, opts.ceiling).await?;
    // Every validator checks both signatures of every settlement.
    let sigs_per_settlement = validators.max(1) as f64 * 2.0;
    let ceiling_per_s = verify_sigs_per_s / sigs_per_settlement;

    let count = opts.txs.unwrap_or_else(|| {
        let rate = opts.rate.unwrap_or(ceiling_per_s);
        ((rate * opts.duration.as_secs_f64()) as usize + opts.max_pending)
            .clamp(1_000, limits::MAX_TXS)
    });
    say(
        opts.progress,
        &format!(
            "ceiling {ceiling_per_s:.0}/s ({verify_sigs_per_s:.0} signatures/s, {validators} validators); signing {count} settlements from {} accounts...",
            opts.accounts
        ),
    );
    let corpus = {
        let chain = opts.chain.clone();
        let plan = plan.clone();
        Arc::new(
            tokio::task::spawn_blocking(move || Corpus::sign(&chain, &plan, count))
                .await
                .map_err(|e| LoadError::Setup(format!("signing task: {e}")))?,
        )
    };

    // Every account sends to one endpoint.
    let n = opts.endpoints.len();
    let mut queues: Vec<Vec<u32>> = vec![Vec::new(); n];
    for (k, buyer) in corpus.buyer.iter().enumerate() {
        queues[*buyer as usize % n].push(k as u32);
    }

    let track = Arc::new(Track::new(corpus.len()));
    let blocks = api::subscribe_client::SubscribeClient::new(channels[0].clone())
        .max_decoding_message_size(limits::MAX_GRPC_MESSAGE_BYTES)
        .blocks(api::SubscribeRequest {
            from_height: 0,
            account: Default::default(),
            marketplace: Default::default(),
        })
        .await
        .map_err(|s| LoadError::Call {
            endpoint: first.clone(),
            call: "Subscribe.Blocks",
            status: s.to_string(),
        })?
        .into_inner();
    let watcher = tokio::spawn(watch_commits(track.clone(), corpus.clone(), blocks));

    let ticks_per_s = stats::clock_ticks_per_s();
    let cpu_start = CpuSnapshot::take(&node_pids);
    let window_start = Instant::now();
    let window_start_us = track.now_us();
    let rate_each = opts.rate.map(|r| r / n as f64);
    let mut senders = Vec::with_capacity(n);
    let mut readers = Vec::with_capacity(n);
    for (i, queue) in queues.into_iter().enumerate() {
        let (out, rx) = mpsc::channel(limits::SEND_CHANNEL_TXS);
        let answers = api::tx_client::TxClient::new(channels[i].clone())
            .max_decoding_message_size(limits::MAX_GRPC_MESSAGE_BYTES)
            .submit_batch(ReceiverStream::new(rx))
            .await
            .map_err(|s| LoadError::Call {
                endpoint: opts.endpoints[i].clone(),
                call: "SubmitBatch",
                status: s.to_string(),
            })?
            .into_inner();
        let retry = Arc::new(Mutex::new(VecDeque::new()));
        let pause = Arc::new(AtomicU64::new(0));
        readers.push(tokio::spawn(answer_loop(
            opts.endpoints[i].clone(),
            track.clone(),
            corpus.clone(),
            answers,
            retry.clone(),
            pause.clone(),
        )));
        senders.push(tokio::spawn(send_loop(
            track.clone(),
            corpus.clone(),
            queue,
            retry,
            pause,
            out,
            rate_each,
            opts.max_pending as u64,
        )));
    }

    // The window, with a progress line.
    let tty = std::io::stderr().is_terminal();
    let mut last = (Instant::now(), 0u64);
    let mut printed = Instant::now();
    while window_start.elapsed() < opts.duration {
        let left = opts.duration.saturating_sub(window_start.elapsed());
        tokio::time::sleep(left.min(Duration::from_secs(1))).await;
        if opts.progress {
            if tty {
                eprint!("\r{}\x1b[K", progress_line(&track, &mut last));
                let _ = std::io::stderr().flush();
            } else if printed.elapsed() >= Duration::from_secs(limits::PROGRESS_LOG_S) {
                eprintln!("{}", progress_line(&track, &mut last));
                printed = Instant::now();
            }
        }
    }
    let window_end_us = track.now_us();
    let window_s = window_start.elapsed().as_secs_f64();
    let cpu_end = CpuSnapshot::take(&node_pids);
    track.stop.store(true, Ordering::Relaxed);
    if opts.progress && tty {
        eprintln!();
    }
    for s in senders {
        let _ = s.await;
    }

    // Drain: accepted settlements still commit; their latencies count.
    let drain_start = Instant::now();
    let mut progress_at = (Instant::now(), track.committed.load(Ordering::Relaxed));
    loop {
        let committed = track.committed.load(Ordering::Relaxed);
        if committed >= track.accepted.load(Ordering::Relaxed) {
            break;
        }
        if committed > progress_at.1 {
            progress_at = (Instant::now(), committed);
        }
        if drain_start.elapsed() >= opts.drain
            || progress_at.0.elapsed() >= Duration::from_secs(limits::DRAIN_STALL_S)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    say(
        opts.progress,
        &format!(
            "window {window_s:.1} s, drained for {:.1} s",
            drain_start.elapsed().as_secs_f64()
        ),
    );
    for r in readers {
        r.abort();
    }
    watcher.abort();

    // The machine's verification rate drifts by several percent from one
    // sample to the next: timed again after the run, the two readings
    // bracket the window. The ratio uses the first.
    say(opts.progress, "timing parallel batch verification again...");
    let verify_sigs_per_s_after = time_ceiling(&probe, opts.ceiling).await?;

    // Fates, from the per-settlement records.
    let mut report = Report {
        validators,
        endpoints: n,
        cores: std::thread::available_parallelism().map_or(1, |c| c.get()),
        duration_s: window_s,
        target_rate_per_s: opts.rate,
        ceiling_per_s,
        verify_sigs_per_s,
        ceiling_after_per_s: verify_sigs_per_s_after / sigs_per_settlement,
        verify_sigs_per_s_after,
        corpus_exhausted: track.exhausted.load(Ordering::Relaxed),
        backpressure_answers: track.backpressure.load(Ordering::Relaxed),
        ..Report::default()
    };
    let mut latencies_ms = Vec::new();
    let mut to_block_ms = Vec::new();
    let mut block_to_final_ms = Vec::new();
    let mut by_second_sent = Vec::new();
    for k in 0..corpus.len() {
        let sent = track.sent_us[k].load(Ordering::Relaxed);
        if sent == 0 {
            continue;
        }
        report.submitted += 1;
        let committed = track.committed_us[k].load(Ordering::Relaxed);
        match track.state[k].load(Ordering::Relaxed) {
            ACCEPTED => {
                report.accepted += 1;
                if committed == 0 {
                    report.uncommitted += 1;
                }
            }
            INVALID => report.rejected_invalid += 1,
            DUPLICATE => report.rejected_duplicate += 1,
            _ => report.unresolved += 1,
        }
        if committed != 0 {
            report.committed_total += 1;
            if committed <= window_end_us {
                report.committed += 1;
            }
            let latency_ms = committed.saturating_sub(sent) as f64 / 1000.0;
            latencies_ms.push(latency_ms);
            // Millisecond timestamps: each part is exact to within 1 ms.
            let proposed = track.proposed_us[k].load(Ordering::Relaxed);
            let to_block = proposed.saturating_sub(sent) as f64 / 1000.0;
            to_block_ms.push(to_block);
            block_to_final_ms.push(committed.saturating_sub(proposed) as f64 / 1000.0);
            if opts.timeline && sent > window_start_us {
                by_second_sent.push((sent - window_start_us, latency_ms, to_block));
            }
        }
    }
    report.rejected = report.rejected_invalid + report.rejected_duplicate;
    report.committed_per_s = report.committed as f64 / window_s.max(1e-9);
    report.ratio_to_ceiling = if ceiling_per_s > 0.0 {
        report.committed_per_s / ceiling_per_s
    } else {
        0.0
    };
    latencies_ms.sort_by(f64::total_cmp);
    report.latency_ms_p50 = stats::percentile(&latencies_ms, 50.0);
    report.latency_ms_p90 = stats::percentile(&latencies_ms, 90.0);
    report.latency_ms_p99 = stats::percentile(&latencies_ms, 99.0);
    report.latency_ms_max = latencies_ms.last().copied();
    report.timeline = crate::report::timeline(&by_second_sent);
    to_block_ms.sort_by(f64::total_cmp);
    block_to_final_ms.sort_by(f64::total_cmp);
    report.to_block_ms_p50 = stats::percentile(&to_block_ms, 50.0);
    report.to_block_ms_p99 = stats::percentile(&to_block_ms, 99.0);
    report.block_to_final_ms_p50 = stats::percentile(&block_to_final_ms, 50.0);
    report.block_to_final_ms_p99 = stats::percentile(&block_to_final_ms, 99.0);
    {
        let blocks = track.blocks.lock().unwrap_or_else(|p| p.into_inner());
        let in_window: Vec<&(u64, usize)> = blocks
            .iter()
            .filter(|(t, _)| *t > window_start_us && *t <= window_end_us)
            .collect();
        report.blocks = in_window.len() as u64;
        let txs: usize = in_window.iter().map(|(_, n)| n).sum();
        report.txs_per_block = if in_window.is_empty() {
            0.0
        } else {
            txs as f64 / in_window.len() as f64
        };
    }
    let cpu = CpuUse::between(&cpu_start, &cpu_end, window_s, ticks_per_s);
    report.cpu_nodes_pct = cpu.nodes_total_pct();
    report.cpu_node_pct = cpu.nodes_pct.clone();
    report.cpu_bench_pct = cpu.bench_pct;
    report.cpu_machine_busy_pct = cpu.machine_busy_pct;
    report.errors = track
        .errors
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    Ok(report)
}
