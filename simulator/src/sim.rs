//! The scheduler: nodes, their disks and clocks, the event queue, fault
//! injection, and the driver loop that follows the consensus driver
//! contract (persist, then send, then apply, then answer requests).

use std::collections::{BTreeMap, BTreeSet};

use commons_consensus::{
    Block, Config, Destination, Evidence, Input, Message, Millis, Proposal, QuorumCert, Ready,
    Replica, Request, Restart, RootBlock, SafetyRecord, TimeoutCert, TimeoutSignature, Vote,
};
use commons_state_machine::ledger::gov::{gkey, load_proposal};
use commons_state_machine::ledger::state::{decode_ids, decode_u64, key};
use commons_state_machine::ledger::{Genesis, Ledger, Working};
use commons_state_machine::{Application, Payload};
use commons_types::{
    ChainId, Epoch, Hash, PublicKey, Round, SecretKey, ValidatorIndex, ValidatorSet,
};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};
use tracing::debug;

use crate::byzantine::{self, ForkAttack, REPLAY_POOL_MAX, Send, below};
use crate::check::{Checker, Violation};
use crate::net::Network;
use crate::options::{Behaviour, Fault, Options};
use crate::workload::{self, Clients};
use crate::{SimError, limits};

/// A node's clock: `local = offset + global * rate / 1000`.
#[derive(Clone, Copy, Debug)]
struct Clock {
    offset_ms: u64,
    rate_permille: u64,
}

impl Clock {
    fn local(self, global_ms: u64) -> u64 {
        self.offset_ms + global_ms * self.rate_permille / 1000
    }

    /// The first global time at which the local clock reads `local_ms`.
    fn global(self, local_ms: u64) -> u64 {
        if local_ms <= self.offset_ms {
            return 0;
        }
        let d = local_ms - self.offset_ms;
        let mut g = (d * 1000).div_ceil(self.rate_permille);
        while self.local(g) < local_ms {
            g += 1;
        }
        g
    }
}

/// One write the driver made to a node's disk.
#[derive(Clone, Debug)]
enum Write {
    Record(Box<SafetyRecord>),
    Block(Block),
    Qc(QuorumCert),
}

/// A node's disk. Writes land in a buffer; a sync (before anything is sent,
/// and with every applied block, which the ledger writes atomically with a
/// sync) makes everything written so far durable. A crash keeps a prefix of
/// the buffer and loses the rest.
#[derive(Debug, Default)]
struct Disk {
    record: Option<SafetyRecord>,
    blocks: BTreeMap<Hash, Block>,
    qcs: Vec<QuorumCert>,
    unsynced: Vec<Write>,
}

impl Disk {
    fn sync(&mut self) {
        for w in std::mem::take(&mut self.unsynced) {
            match w {
                Write::Record(r) => self.record = Some(*r),
                Write::Block(b) => {
                    self.blocks.insert(b.id(), b);
                }
                Write::Qc(q) => {
                    self.qcs.push(q);
                    if self.qcs.len() > limits::STORED_QCS_MAX {
                        self.qcs.remove(0);
                    }
                }
            }
        }
    }

    fn crash(&mut self, kept: usize) {
        self.unsynced.truncate(kept);
        self.sync();
    }
}

/// Where a node crashes inside the handling of its next `Ready`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CrashPoint {
    /// After writing (unsynced), before sending.
    BeforeSend,
    /// After sending, before applying.
    BeforeApply,
    /// After applying the first committed block.
    MidApply,
}

#[derive(Debug)]
struct Node {
    key: SecretKey,
    public: PublicKey,
    behaviour: Option<Behaviour>,
    /// Split-brain halves talk only to nodes of their side's parity.
    side: Option<u8>,
    replica: Option<Replica>,
    app: Application,
    disk: Disk,
    /// Committed blocks applied to the ledger: durable with the ledger.
    applied: Vec<Block>,
    /// The validator set of each epoch this node entered (durable: the
    /// ledger holds it).
    sets: BTreeMap<Epoch, ValidatorSet>,
    clock: Clock,
    armed: Option<CrashPoint>,
    replay_pool: Vec<Vec<u8>>,
    /// A stale-QC validator's fork attack in progress.
    attack: Option<ForkAttack>,
    /// Fork blocks a stale-QC validator proposed or votes for.
    fork: BTreeSet<Hash>,
    /// Its replica's proposals it replaced by fork blocks (their votes
    /// are not sent).
    replaced: BTreeSet<Hash>,
    oversized_sent: bool,
    height_at_gst: u64,
}

impl Node {
    fn honest(&self) -> bool {
        self.behaviour.is_none()
    }
    fn height(&self) -> u64 {
        self.applied.last().map_or(0, |b| b.height().0)
    }
}

#[derive(Debug)]
enum Event {
    Deliver {
        from: usize,
        to: usize,
        bytes: Vec<u8>,
    },
    Crash {
        node: usize,
    },
    Restart {
        node: usize,
    },
    PartitionStart,
    PartitionHeal,
    CutStart,
    CutHeal,
    /// A fork attack's victim hears the other validators again.
    IsolationEnd {
        cuts: Vec<(usize, usize)>,
    },
    ClientTick,
    Gst,
}

/// Counters of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub events: u64,
    pub delivered: u64,
    pub decode_rejected: u64,
    pub handle_rejected: u64,
    pub crashes: u64,
    pub restarts: u64,
    pub evidence: u64,
    pub forged_sent: u64,
    pub invalid_txs_proposed: u64,
    /// Fork attacks a stale-QC validator started (a victim cut off).
    pub fork_attacks: u64,
    /// Stale fork blocks it proposed.
    pub fork_proposals: u64,
}

/// The outcome of one run.
#[derive(Clone, Debug)]
pub struct Report {
    pub options: Options,
    /// SHA-256 of the trace, hex.
    pub digest: String,
    pub violations: Vec<Violation>,
    /// Rounds simulated: over all epochs, the highest round an honest node
    /// entered.
    pub rounds: u64,
    pub committed_height: u64,
    pub epoch: u64,
    /// Whether the spare validator joined through an epoch change.
    pub spare_joined: bool,
    pub txs_signed: usize,
    pub txs_committed: usize,
    pub virtual_ms: u64,
    pub stats: Stats,
    /// The event log, when asked for.
    pub trace: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}

/// One simulated cluster.
#[derive(Debug)]
pub struct Sim {
    opts: Options,
    rng: ChaCha8Rng,
    now: u64,
    gst_ms: u64,
    end_ms: u64,
    after_gst: bool,
    queue: BTreeMap<(u64, u64), Event>,
    seq: u64,
    nodes: Vec<Node>,
    net: Network,
    config: Config,
    chain: ChainId,
    genesis: Genesis,
    genesis_root: RootBlock,
    spare: usize,
    checker: Checker,
    clients: Clients,
    invalid_txs: BTreeSet<Hash>,
    known_accounts: Vec<PublicKey>,
    max_round: BTreeMap<Epoch, Round>,
    spare_epoch: Option<(Epoch, u64)>,
    hasher: Sha256,
    trace: Option<Vec<String>>,
    stats: Stats,
}

fn setup(e: impl std::fmt::Display) -> SimError {
    SimError::Setup(e.to_string())
}

impl Sim {
    pub fn new(opts: Options, keep_trace: bool) -> Result<Sim, SimError> {
        opts.check()?;
        #[cfg(feature = "mutations")]
        {
            let m = match &opts.mutation {
                Some(name) => Some(
                    commons_consensus::mutations::Mutation::from_name(name)
                        .ok_or_else(|| SimError::Options(format!("unknown mutation {name:?}")))?,
                ),
                None => None,
            };
            commons_consensus::mutations::set(m);
        }
        #[cfg(not(feature = "mutations"))]
        if opts.mutation.is_some() {
            return Err(SimError::Options(
                "mutations need the simulator's `mutations` feature".into(),
            ));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
        let n = opts.validators;
        let genesis = workload::genesis(n, opts.epoch_length_blocks)?;
        let set = genesis.validator_set().map_err(setup)?;
        let chain = workload::chain_id()?;
        let ledger = Ledger::in_memory(&genesis).map_err(setup)?;
        let mut config = Config::new(chain.clone());
        config.round_timeout_ms = limits::ROUND_TIMEOUT_MS;
        config.round_timeout_ms_max = limits::ROUND_TIMEOUT_MS_MAX;
        config.sync_retry_ms = limits::SYNC_RETRY_MS;
        config.epoch_length_blocks = opts.epoch_length_blocks;
        config.genesis_state_root = ledger.state_root();
        config.genesis_timestamp_ms = 0;
        let genesis_root = RootBlock::genesis(&chain, set.hash(), ledger.state_root(), 0);

        // Nodes: validators 0..n (the last ones Byzantine), the spare, then
        // the second halves of split-brain validators.
        let byz_from = n - opts.byzantine.len();
        let mut specs: Vec<(usize, Option<Behaviour>, Option<u8>)> = (0..n)
            .map(|i| {
                let b = (i >= byz_from).then(|| opts.byzantine[i - byz_from]);
                let side = (b == Some(Behaviour::SplitBrain)).then_some(0);
                (i, b, side)
            })
            .collect();
        specs.push((n, None, None));
        for i in byz_from..n {
            if opts.byzantine[i - byz_from] == Behaviour::SplitBrain {
                specs.push((i, Some(Behaviour::SplitBrain), Some(1)));
            }
        }
        let total = specs.len();
        let skew = opts.faults.contains(&Fault::Skew);
        let mut nodes = Vec::with_capacity(total);
        for (key_index, behaviour, side) in specs {
            let key = workload::validator_key(key_index);
            let clock = if skew {
                Clock {
                    offset_ms: below(&mut rng, 1_000),
                    rate_permille: 990 + below(&mut rng, 21),
                }
            } else {
                Clock {
                    offset_ms: 0,
                    rate_permille: 1000,
                }
            };
            let replica =
                Replica::new(config.clone(), key.clone(), set.clone(), None).map_err(setup)?;
            nodes.push(Node {
                public: key.public_key(),
                key,
                behaviour,
                side,
                replica: Some(replica),
                app: Application::new(Ledger::in_memory(&genesis).map_err(setup)?),
                disk: Disk::default(),
                applied: Vec::new(),
                sets: BTreeMap::from([(Epoch::ZERO, set.clone())]),
                clock,
                armed: None,
                replay_pool: Vec::new(),
                attack: None,
                fork: BTreeSet::new(),
                replaced: BTreeSet::new(),
                oversized_sent: false,
                height_at_gst: 0,
            });
        }
        let mut net = Network::new(&mut rng, total);
        let faults = &opts.faults;
        if faults.contains(&Fault::Loss) {
            net.loss_permille = 20 + below(&mut rng, 130);
        }
        if faults.contains(&Fault::Duplicate) {
            net.duplicate_permille = 20 + below(&mut rng, 130);
        }
        net.reorder = faults.contains(&Fault::Reorder);
        if faults.contains(&Fault::Bandwidth) {
            net.bandwidth = Some(20 + below(&mut rng, 200));
        }
        if faults.contains(&Fault::Slow) {
            let slow = below(&mut rng, total as u64) as usize;
            net.slow_ms[slow] = 30 + below(&mut rng, 120);
        }
        let gst_ms = opts.fault_ms;
        let end_ms = gst_ms + opts.liveness_ms;
        let mut sim = Sim {
            known_accounts: workload::known_accounts(n),
            rng,
            now: 0,
            gst_ms,
            end_ms,
            after_gst: false,
            queue: BTreeMap::new(),
            seq: 0,
            nodes,
            net,
            config,
            chain,
            genesis,
            genesis_root,
            spare: n,
            checker: Checker::default(),
            clients: Clients::default(),
            invalid_txs: BTreeSet::new(),
            max_round: BTreeMap::new(),
            spare_epoch: None,
            hasher: Sha256::new(),
            trace: keep_trace.then(Vec::new),
            stats: Stats::default(),
            opts,
        };
        sim.schedule_faults();
        sim.push(0, Event::ClientTick);
        sim.push(gst_ms, Event::Gst);
        Ok(sim)
    }

    fn push(&mut self, at_ms: u64, event: Event) {
        self.seq += 1;
        self.queue.insert((at_ms, self.seq), event);
    }

    fn log(&mut self, parts: &[&[u8]], line: impl FnOnce() -> String) {
        self.hasher.update(self.now.to_le_bytes());
        for p in parts {
            self.hasher.update((p.len() as u64).to_le_bytes());
            self.hasher.update(p);
        }
        if let Some(t) = &mut self.trace {
            t.push(format!("{:>8} {}", self.now, line()));
        }
    }

    fn violation(&mut self, check: &'static str, detail: String) {
        let now = self.now;
        self.log(&[b"violation", check.as_bytes()], || {
            format!("VIOLATION {check}: {detail}")
        });
        self.checker.violation(check, now, detail);
    }

    fn schedule_faults(&mut self) {
        let f = self.opts.fault_ms;
        let faults = self.opts.faults.clone();
        if faults.contains(&Fault::Partition) {
            let mut t = below(&mut self.rng, 1_000);
            while t < f {
                self.push(t, Event::PartitionStart);
                let heal = t + 300 + below(&mut self.rng, 2_500);
                self.push(heal.min(f), Event::PartitionHeal);
                t = heal + 500 + below(&mut self.rng, 3_000);
            }
        }
        if faults.contains(&Fault::ScheduledPartition) {
            // Validators split in two halves, from f/4 to f/2.
            self.push(f / 4, Event::PartitionStart);
            self.push(f / 2, Event::PartitionHeal);
        }
        if faults.contains(&Fault::Asymmetric) {
            let mut t = below(&mut self.rng, 1_000);
            while t < f {
                self.push(t, Event::CutStart);
                let heal = t + 500 + below(&mut self.rng, 3_000);
                self.push(heal.min(f), Event::CutHeal);
                t = heal + 200 + below(&mut self.rng, 2_000);
            }
        }
        if faults.contains(&Fault::Crash) {
            let mut t = 200 + below(&mut self.rng, 1_500);
            while t < f {
                let node = below(&mut self.rng, self.nodes.len() as u64) as usize;
                self.push(t, Event::Crash { node });
                let back = t + 100 + below(&mut self.rng, 3_000);
                if back < f {
                    self.push(back, Event::Restart { node });
                }
                t += 300 + below(&mut self.rng, 2_500);
            }
        }
    }

    // ----- the loop --------------------------------------------------------

    /// Runs to the end (or the first violation) and reports.
    pub fn run(mut self) -> Report {
        for i in 0..self.nodes.len() {
            self.input(i, Input::Tick);
        }
        let mut steps: u64 = 0;
        while self.checker.violations.is_empty() {
            steps += 1;
            if steps > limits::STEPS_MAX {
                self.violation("stuck", format!("more than {} events", limits::STEPS_MAX));
                break;
            }
            if !self.after_gst
                && let Some(max) = self.opts.rounds_max
                && self.rounds() >= max
            {
                // The faulty period ends early: GST now.
                self.gst_ms = self.now;
                self.end_ms = self.now + self.opts.liveness_ms;
                self.on_gst();
            }
            let next_event = self.queue.keys().next().map(|(t, _)| *t);
            let next_deadline = self
                .nodes
                .iter()
                .enumerate()
                .filter_map(|(i, n)| {
                    let d = n.replica.as_ref()?.poll_deadline()?;
                    Some((n.clock.global(d.as_u64()).max(self.now), i))
                })
                .min();
            let take_event = match (next_event, next_deadline) {
                (Some(t), Some((d, _))) => t <= d,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let at = if take_event {
                next_event.unwrap_or(self.end_ms)
            } else {
                next_deadline.map_or(self.end_ms, |(d, _)| d)
            };
            if at > self.end_ms {
                break;
            }
            self.now = at;
            self.stats.events += 1;
            if take_event {
                if let Some((_, event)) = self.queue.pop_first() {
                    self.on_event(event);
                }
            } else if let Some((_, i)) = next_deadline {
                self.log(&[b"tick", &(i as u64).to_le_bytes()], || {
                    format!("tick n{i}")
                });
                self.input(i, Input::Tick);
            }
        }
        self.now = self.now.max(self.end_ms.min(self.now));
        if self.checker.violations.is_empty() {
            self.check_liveness();
        }
        self.finish()
    }

    fn rounds(&self) -> u64 {
        self.max_round.values().map(|r| r.0).sum()
    }

    fn finish(mut self) -> Report {
        let violations = self.checker.violations.clone();
        for v in &violations {
            self.hasher.update(v.check.as_bytes());
        }
        let digest: String = std::mem::take(&mut self.hasher)
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let epoch = self
            .nodes
            .iter()
            .filter_map(|n| n.replica.as_ref().map(|r| r.epoch().0))
            .max()
            .unwrap_or(0);
        Report {
            digest,
            violations,
            rounds: self.rounds(),
            committed_height: self.checker.committed_height().0,
            epoch,
            spare_joined: self.spare_epoch.is_some(),
            txs_signed: self.clients.signed.len(),
            txs_committed: self.clients.committed.len(),
            virtual_ms: self.now,
            stats: self.stats,
            trace: self.trace.unwrap_or_default(),
            options: self.opts,
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Deliver { from, to, bytes } => self.deliver(from, to, bytes),
            Event::Crash { node } => {
                if self.after_gst || self.nodes[node].replica.is_none() {
                    return;
                }
                if below(&mut self.rng, 2) == 0 {
                    self.crash(node);
                } else {
                    let point = match below(&mut self.rng, 3) {
                        0 => CrashPoint::BeforeSend,
                        1 => CrashPoint::BeforeApply,
                        _ => CrashPoint::MidApply,
                    };
                    self.nodes[node].armed = Some(point);
                }
            }
            Event::Restart { node } => self.restart(node),
            Event::PartitionStart => {
                let n = self.nodes.len();
                let sides: Vec<u8> = if self.now == self.opts.fault_ms / 4
                    && self.opts.faults.contains(&Fault::ScheduledPartition)
                    && self.net.partition.is_none()
                {
                    (0..n)
                        .map(|i| u8::from(i >= self.opts.validators / 2))
                        .collect()
                } else {
                    let mut s: Vec<u8> = (0..n).map(|_| below(&mut self.rng, 2) as u8).collect();
                    // Never a trivial split.
                    s[0] = 0;
                    let last = n - 1;
                    s[last] = 1;
                    s
                };
                let text = format!("{sides:?}");
                self.log(&[b"partition", &sides], || format!("partition {text}"));
                self.net.partition = Some(sides);
            }
            Event::PartitionHeal => {
                self.log(&[b"heal"], || "partition healed".into());
                self.net.partition = None;
            }
            Event::CutStart => {
                let n = self.nodes.len() as u64;
                let a = below(&mut self.rng, n) as usize;
                let b = below(&mut self.rng, n) as usize;
                if a != b {
                    self.log(&[b"cut", &[a as u8, b as u8]], || {
                        format!("cut n{a} -> n{b}")
                    });
                    self.net.cuts.insert((a, b));
                }
            }
            Event::CutHeal => {
                self.log(&[b"cuts healed"], || "cuts healed".into());
                self.net.cuts.clear();
            }
            Event::IsolationEnd { cuts } => {
                self.log(&[b"isolation ends"], || "isolation ends".into());
                for c in cuts {
                    self.net.cuts.remove(&c);
                }
            }
            Event::ClientTick => {
                self.client_tick();
                let every = 1_000 / self.opts.tx_per_sec.max(1);
                let next = self.now + every.max(1);
                if next <= self.end_ms {
                    self.push(next, Event::ClientTick);
                }
            }
            Event::Gst => self.on_gst(),
        }
    }

    fn on_gst(&mut self) {
        if self.after_gst {
            return;
        }
        self.after_gst = true;
        self.log(&[b"gst"], || "GST: faults stop".into());
        self.net.stabilize();
        for i in 0..self.nodes.len() {
            self.nodes[i].armed = None;
            if self.nodes[i].replica.is_none() {
                self.restart(i);
            }
            self.nodes[i].height_at_gst = self.nodes[i].height();
        }
    }

    // ----- nodes ------------------------------------------------------------

    fn crash(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if node.replica.is_none() {
            return;
        }
        let unsynced = node.disk.unsynced.len();
        let kept = below(&mut self.rng, unsynced as u64 + 1) as usize;
        let node = &mut self.nodes[i];
        node.replica = None;
        node.armed = None;
        node.disk.crash(kept);
        self.stats.crashes += 1;
        self.log(&[b"crash", &(i as u64).to_le_bytes()], || {
            format!("crash n{i} (kept {kept} of {unsynced} unsynced writes)")
        });
    }

    fn restart(&mut self, i: usize) {
        if self.nodes[i].replica.is_some() {
            return;
        }
        // The ledger is durable as of the last applied block: rebuild it
        // from genesis by re-applying the applied chain (what RocksDB would
        // read back). The mempool is lost.
        let ledger = match Ledger::in_memory(&self.genesis) {
            Ok(l) => l,
            Err(e) => {
                self.violation("restart", format!("node {i}: {e}"));
                return;
            }
        };
        let mut app = Application::new(ledger);
        for b in &self.nodes[i].applied {
            if let Err(e) = app.apply(b, &[]) {
                let detail = format!("node {i} replaying height {}: {e}", b.height().0);
                self.violation("restart", detail);
                return;
            }
        }
        let node = &mut self.nodes[i];
        node.app = app;
        let record = node
            .disk
            .record
            .clone()
            .unwrap_or_else(|| SafetyRecord::fresh(Epoch::ZERO, self.genesis_root));
        let Some(set) = node.sets.get(&record.epoch).cloned() else {
            let detail = format!("node {i} has no set for epoch {}", record.epoch.0);
            self.violation("restart", detail);
            return;
        };
        let last_applied = node.applied.last().map_or(self.genesis_root.id, |b| b.id());
        let mut blocks: BTreeMap<Hash, Block> = node.disk.blocks.clone();
        for b in node
            .applied
            .iter()
            .rev()
            .take(limits::RESTART_APPLIED_BLOCKS)
        {
            blocks.insert(b.id(), b.clone());
        }
        let restart = Restart {
            record,
            last_applied,
            blocks: blocks.into_values().collect(),
            qcs: node.disk.qcs.clone(),
        };
        match Replica::new(self.config.clone(), node.key.clone(), set, Some(restart)) {
            Ok(r) => node.replica = Some(r),
            Err(e) => {
                self.violation("restart", format!("node {i}: {e}"));
                return;
            }
        }
        self.stats.restarts += 1;
        self.log(&[b"restart", &(i as u64).to_le_bytes()], || {
            format!("restart n{i}")
        });
        self.drain(i);
        self.input(i, Input::Tick);
    }

    fn input(&mut self, i: usize, input: Input) {
        let local = self.nodes[i].clock.local(self.now);
        let Some(replica) = self.nodes[i].replica.as_mut() else {
            return;
        };
        let _span = tracing::debug_span!("node", node = i, t = self.now).entered();
        if let Err(e) = replica.handle(Millis(local), input) {
            self.stats.handle_rejected += 1;
            debug!(error = %e, "input refused");
        }
        if self.nodes[i].honest()
            && let Some(r) = &self.nodes[i].replica
            && r.index().is_some()
        {
            let e = self.max_round.entry(r.epoch()).or_insert(Round::ZERO);
            *e = (*e).max(r.round());
        }
        self.drain(i);
    }

    /// The driver contract, for every `Ready`: write, sync if anything is
    /// sent, send, apply, answer.
    fn drain(&mut self, i: usize) {
        let mut follow_ups = Vec::new();
        while let Some(ready) = self.nodes[i].replica.as_mut().and_then(Replica::poll_ready) {
            let Ready {
                persist,
                messages,
                committed,
                requests,
                evidence,
            } = ready;
            let disk = &mut self.nodes[i].disk;
            if let Some(r) = persist.record {
                disk.unsynced.push(Write::Record(Box::new(r)));
            }
            for b in persist.blocks {
                disk.unsynced.push(Write::Block(b));
            }
            for q in persist.qcs {
                disk.unsynced.push(Write::Qc(q));
            }
            if self.nodes[i].armed == Some(CrashPoint::BeforeSend) {
                self.crash(i);
                return;
            }
            if !messages.is_empty() {
                self.nodes[i].disk.sync();
            }
            for m in messages {
                self.send(i, m.to, m.message);
            }
            if self.nodes[i].armed == Some(CrashPoint::BeforeApply) {
                self.crash(i);
                return;
            }
            for (k, block) in committed.into_iter().enumerate() {
                if k == 1 && self.nodes[i].armed == Some(CrashPoint::MidApply) {
                    self.crash(i);
                    return;
                }
                self.apply(i, block);
                if !self.checker.violations.is_empty() {
                    return;
                }
            }
            for e in evidence {
                self.stats.evidence += 1;
                let Some(replica) = self.nodes[i].replica.as_ref() else {
                    break;
                };
                let set = replica.validator_set().clone();
                if let Ok(offender) = e.check(&self.chain, &set)
                    && let Some(v) = set.get(offender)
                {
                    let accused = v.public_key;
                    let honest = self.nodes.iter().any(|n| n.public == accused && n.honest());
                    if honest && self.nodes[i].honest() {
                        let kind = match &e {
                            Evidence::ConflictingVotes { .. } => "votes",
                            Evidence::ConflictingProposals { .. } => "proposals",
                            Evidence::ConflictingTimeouts { .. } => "timeouts",
                        };
                        self.violation(
                            "evidence-against-honest",
                            format!(
                                "node {i} holds valid evidence of conflicting {kind} against honest validator {}: {e:?}",
                                offender.0
                            ),
                        );
                    }
                }
            }
            for r in requests {
                if let Some(input) = self.answer(i, r) {
                    follow_ups.push(input);
                }
            }
        }
        for input in follow_ups {
            self.input(i, input);
        }
    }

    fn answer(&mut self, i: usize, request: Request) -> Option<Input> {
        let node = &mut self.nodes[i];
        let replica = node.replica.as_ref()?;
        match request {
            Request::NeedPayload {
                round,
                parent,
                parent_height: _,
            } => {
                let parent_block = replica.block(&parent).cloned();
                let mut pending = Vec::new();
                let mut cursor = parent;
                while let Some(b) = replica.block(&cursor) {
                    if b.height() <= replica.committed_height() {
                        break;
                    }
                    cursor = b.parent_id();
                    pending.push(b.clone());
                }
                let refs: Vec<&Block> = pending.iter().collect();
                let (mut payload, state_root) = match node.app.propose(parent_block.as_ref(), &refs)
                {
                    Ok(p) => p,
                    Err(e) => {
                        self.violation("application", format!("node {i} propose: {e}"));
                        return None;
                    }
                };
                if node.behaviour == Some(Behaviour::InvalidTxs)
                    && let Ok(mut p) = Payload::decode(&payload)
                {
                    let salt = self.rng.next_u64() % 1_000_000;
                    if let Ok((id, bytes)) = workload::forged_transfer(salt) {
                        p.txs.push(bytes);
                        payload = p.encode();
                        self.invalid_txs.insert(id);
                        self.stats.invalid_txs_proposed += 1;
                    }
                }
                Some(Input::Payload {
                    round,
                    parent,
                    payload,
                    state_root,
                })
            }
            Request::ValidatePayload { block } => {
                let parent = replica.block(&block.parent_id()).cloned();
                let valid = node.app.validate(&block, parent.as_ref()).is_ok();
                Some(Input::PayloadValidated {
                    block_id: block.id(),
                    valid,
                })
            }
            Request::NeedValidatorSet {
                epoch,
                block_id,
                height,
            } => {
                let applied = node.app.ledger().height();
                if applied != height {
                    let detail = format!(
                        "node {i} asked for the set after height {}, the ledger is at {}",
                        height.0, applied.0
                    );
                    self.violation("epoch-change", detail);
                    return None;
                }
                let new_set = match node.app.validator_set() {
                    Ok(s) => s,
                    Err(e) => {
                        self.violation("application", format!("node {i} validator set: {e}"));
                        return None;
                    }
                };
                node.sets.insert(epoch, new_set.clone());
                if i == self.spare
                    && new_set.index_of(&node.public).is_some()
                    && self.spare_epoch.is_none()
                {
                    self.spare_epoch = Some((epoch, self.now));
                }
                self.log(
                    &[b"epoch", &epoch.0.to_le_bytes(), &(i as u64).to_le_bytes()],
                    || {
                        format!(
                            "n{i} enters epoch {} with {} validators",
                            epoch.0,
                            new_set.len()
                        )
                    },
                );
                Some(Input::EpochChange {
                    epoch,
                    block_id,
                    new_set,
                })
            }
        }
    }

    fn apply(&mut self, i: usize, block: Block) {
        let node = &mut self.nodes[i];
        let expected = node.app.ledger().height().next();
        if block.height() != expected {
            let detail = format!(
                "node {i} was handed height {} to apply, its ledger expects {}",
                block.height().0,
                expected.0
            );
            self.violation("apply-order", detail);
            return;
        }
        if let Some(last) = node.applied.last()
            && last.id() != block.parent_id()
        {
            let detail = format!(
                "node {i} committed height {} not extending its previous block",
                block.height().0
            );
            self.violation("chain", detail);
            return;
        }
        let applied = match node.app.apply(&block, &[]) {
            Ok(a) => a,
            Err(e) => {
                self.violation("application", format!("node {i} apply: {e}"));
                return;
            }
        };
        // The ledger writes the block atomically, with a sync.
        node.applied.push(block.clone());
        node.disk.sync();
        let honest = node.honest();
        let id = block.id();
        self.log(
            &[
                b"commit",
                &(i as u64).to_le_bytes(),
                &block.height().0.to_le_bytes(),
                &id.0,
                &applied.state_root.0,
            ],
            || {
                format!(
                    "n{i} commits height {} {} root {}",
                    block.height().0,
                    id,
                    applied.state_root
                )
            },
        );
        if !honest {
            return;
        }
        self.checker
            .committed(self.now, i, &block, applied.state_root);
        for tx in &applied.tx_ids {
            if self.invalid_txs.contains(tx) || !self.clients.signed.contains_key(tx) {
                self.violation(
                    "committed-tx-valid",
                    format!(
                        "node {i} committed transaction {tx} at height {} that no client signed",
                        block.height().0
                    ),
                );
                return;
            }
        }
        self.clients.on_committed(&applied.tx_ids, self.now);
        if let Err(detail) = self.check_supply(i) {
            self.violation("supply", detail);
        }
    }

    /// Conservation of supply: every account the workload can touch (its
    /// holdings: balance, bonded, unbonding), the treasury and the deposits
    /// of active proposals add up to the ledger's `msupply`, which never
    /// grows. (The workload opens no leases, so no escrow is held.)
    fn check_supply(&self, i: usize) -> Result<(), String> {
        let ledger = self.nodes[i].app.ledger();
        let view = ledger.view();
        let mut w = Working::new(&view);
        let err = |e: commons_state_machine::LedgerError| format!("node {i}: {e}");
        let mut held: u128 = 0;
        for k in &self.known_accounts {
            held += w.account(k).map_err(err)?.holdings();
        }
        held += u128::from(w.treasury().map_err(err)?);
        let active = match w.get(gkey::ACTIVE).map_err(err)? {
            Some(bytes) => decode_ids(&bytes).map_err(|e| e.to_string())?,
            None => Vec::new(),
        };
        for id in active {
            if let Some(p) = load_proposal(&mut w, id).map_err(err)? {
                held += u128::from(p.deposit_total().0);
            }
        }
        let supply = match w.get(key::SUPPLY).map_err(err)? {
            Some(bytes) => decode_u64(&bytes, "supply").map_err(|e| e.to_string())?,
            None => return Err(format!("node {i}: no supply record")),
        };
        if held != u128::from(supply) {
            return Err(format!(
                "node {i} at height {}: accounts, treasury and deposits hold {held}, supply is {supply}",
                ledger.height().0
            ));
        }
        if supply > self.genesis.supply() {
            return Err(format!(
                "node {i}: supply {supply} grew above the genesis supply {}",
                self.genesis.supply()
            ));
        }
        Ok(())
    }

    // ----- the network ------------------------------------------------------

    /// Whether node `a` may talk to node `b` (split-brain halves keep to
    /// their side).
    fn may_talk(&self, a: usize, b: usize) -> bool {
        if a == b || self.nodes[a].public == self.nodes[b].public {
            return false;
        }
        let side_ok = |x: &Node, y_id: usize, y: &Node| match (x.side, y.side) {
            (Some(sx), Some(sy)) => sx == sy,
            (Some(sx), None) => (y_id % 2) as u8 == sx,
            _ => true,
        };
        side_ok(&self.nodes[a], b, &self.nodes[b]) && side_ok(&self.nodes[b], a, &self.nodes[a])
    }

    fn send(&mut self, i: usize, to: Destination, message: Message) {
        let targets: Vec<usize> = match &to {
            Destination::Broadcast => (0..self.nodes.len()).collect(),
            Destination::To(k) => (0..self.nodes.len())
                .filter(|j| self.nodes[*j].public == *k)
                .collect(),
        };
        let targets: Vec<usize> = targets
            .into_iter()
            .filter(|j| self.may_talk(i, *j))
            .collect();
        let me = self.nodes[i].public;
        let own_vote = matches!(&message, Message::Vote(v) if self.index_is(i, v.voter.0));
        let own_timeout = matches!(&message, Message::Timeout(t) if self.index_is(i, t.voter.0));
        if self.nodes[i].honest() {
            if let Message::Vote(v) = &message
                && own_vote
            {
                self.check_covered(i, v.data.epoch, v.data.round, true);
                self.checker.vote_sent(self.now, i, me, v);
            }
            if let Message::Timeout(t) = &message
                && own_timeout
            {
                self.check_covered(i, t.epoch, t.round, false);
                self.checker.timeout_sent(self.now, i, me, t);
            }
        }
        let sends: Vec<Send> = match self.nodes[i].behaviour {
            Some(Behaviour::StaleQc) => self.stale_qc_sends(i, targets, message),
            None | Some(Behaviour::SplitBrain) | Some(Behaviour::InvalidTxs) => vec![Send {
                to: targets,
                bytes: message.encode(),
                delay_ms: 0,
            }],
            Some(Behaviour::Withhold) if own_vote || own_timeout => Vec::new(),
            Some(Behaviour::Equivocate) => match &message {
                Message::Proposal(p) if self.index_is(i, p.block.proposer().0) => {
                    byzantine::equivocate(p, &self.nodes[i].key, &self.chain, &targets)
                }
                _ => vec![Send {
                    to: targets,
                    bytes: message.encode(),
                    delay_ms: 0,
                }],
            },
            Some(Behaviour::DoubleVote) => {
                let mut v = vec![Send {
                    to: targets.clone(),
                    bytes: message.encode(),
                    delay_ms: 0,
                }];
                if let Message::Vote(vote) = &message
                    && own_vote
                {
                    v.push(Send {
                        to: targets,
                        bytes: byzantine::double_vote(vote, &self.nodes[i].key, &self.chain),
                        delay_ms: 0,
                    });
                }
                v
            }
            Some(Behaviour::Forge) => {
                let allow_big = !self.nodes[i].oversized_sent;
                let (bytes, what) = byzantine::forged(&mut self.rng, &message, allow_big);
                if what == "oversized" {
                    self.nodes[i].oversized_sent = true;
                }
                self.stats.forged_sent += 1;
                let n = self.nodes.len() as u64;
                let victim = below(&mut self.rng, n) as usize;
                let mut v = vec![Send {
                    to: targets,
                    bytes: message.encode(),
                    delay_ms: 0,
                }];
                if self.may_talk(i, victim) {
                    v.push(Send {
                        to: vec![victim],
                        bytes,
                        delay_ms: 0,
                    });
                }
                v
            }
            Some(Behaviour::Replay) => {
                let mut v = vec![Send {
                    to: targets,
                    bytes: message.encode(),
                    delay_ms: 0,
                }];
                let pool = self.nodes[i].replay_pool.len() as u64;
                if pool > 0 && below(&mut self.rng, 2) == 0 {
                    let old =
                        self.nodes[i].replay_pool[below(&mut self.rng, pool) as usize].clone();
                    let n = self.nodes.len() as u64;
                    let victim = below(&mut self.rng, n) as usize;
                    if self.may_talk(i, victim) {
                        v.push(Send {
                            to: vec![victim],
                            bytes: old,
                            delay_ms: below(&mut self.rng, 500),
                        });
                    }
                }
                v
            }
            Some(Behaviour::Withhold) => vec![Send {
                to: targets,
                bytes: message.encode(),
                delay_ms: 0,
            }],
        };
        self.transmit(i, sends);
    }

    /// Hands each copy to the network.
    fn transmit(&mut self, i: usize, sends: Vec<Send>) {
        for s in sends {
            for j in s.to {
                let arrivals =
                    self.net
                        .send(&mut self.rng, self.now + s.delay_ms, i, j, s.bytes.len());
                for at in arrivals.at_ms {
                    self.push(
                        at,
                        Event::Deliver {
                            from: i,
                            to: j,
                            bytes: s.bytes.clone(),
                        },
                    );
                }
            }
        }
    }

    // ----- the stale-QC validator ---------------------------------------------

    /// A block node `i` knows: in its replica's tree or among its last
    /// applied blocks.
    fn known_block(&self, i: usize, id: &Hash) -> Option<Block> {
        let node = &self.nodes[i];
        if let Some(b) = node.replica.as_ref().and_then(|r| r.block(id)) {
            return Some(b.clone());
        }
        node.applied
            .iter()
            .rev()
            .take(byzantine::FORK_BLOCKS_MAX)
            .find(|b| b.id() == *id)
            .cloned()
    }

    /// What a fork below the commit `justify` makes extends: `justify`
    /// certifies B1, whose QC certifies B2 (the block `justify` commits when
    /// their rounds are consecutive); B2's own QC is the stale one, and its
    /// block the fork's parent. Also whether `justify` commits B2.
    fn stale_target(&self, i: usize, justify: &QuorumCert) -> Option<(QuorumCert, Block, bool)> {
        let b1 = self.known_block(i, &justify.block_id())?;
        let b2 = self.known_block(i, &b1.justify().block_id())?;
        let stale = b2.justify().clone();
        let parent = self.known_block(i, &stale.block_id())?;
        let commits = b1.round() == b2.round().next();
        (parent.epoch() == b1.epoch()).then_some((stale, parent, commits))
    }

    /// Every node `i` may talk to.
    fn reachable(&self, i: usize) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|j| self.may_talk(i, *j))
            .collect()
    }

    /// Cuts `victim` off from every node but `attacker` until the attack
    /// ends (at the latest at GST, when the network heals anyway).
    fn isolate(&mut self, attacker: usize, victim: usize) -> u64 {
        let until = (self.now + byzantine::FORK_ISOLATION_MS).min(self.gst_ms);
        let mut cuts = Vec::new();
        for j in 0..self.nodes.len() {
            if j == victim || j == attacker {
                continue;
            }
            for c in [(victim, j), (j, victim)] {
                if self.net.cuts.insert(c) {
                    cuts.push(c);
                }
            }
        }
        self.log(&[b"isolate", &[attacker as u8, victim as u8]], || {
            format!("n{attacker} forks: n{victim} cut off until {until} ms")
        });
        self.push(until, Event::IsolationEnd { cuts });
        until
    }

    /// What a stale-QC validator sends instead of `message` (see
    /// [`Behaviour::StaleQc`]).
    fn stale_qc_sends(&mut self, i: usize, targets: Vec<usize>, message: Message) -> Vec<Send> {
        let (now, after_gst) = (self.now, self.after_gst);
        if self.nodes[i]
            .attack
            .as_ref()
            .is_some_and(|a| after_gst || a.until_ms <= now)
        {
            self.nodes[i].attack = None;
        }
        let plain = |to: Vec<usize>, m: &Message| {
            vec![Send {
                to,
                bytes: m.encode(),
                delay_ms: 0,
            }]
        };
        let Some(me) = self.nodes[i].replica.as_ref().and_then(Replica::index) else {
            return plain(targets, &message);
        };
        let victim = self.nodes[i].attack.as_ref().map(|a| a.victim);
        let only_victim = |targets: Vec<usize>| -> Vec<usize> {
            targets.into_iter().filter(|j| Some(*j) == victim).collect()
        };
        match &message {
            // While the attack lasts, whatever carries the hidden QC goes to
            // the victim only.
            Message::Proposal(_) | Message::SyncResponse(_) if victim.is_some() => {
                plain(only_victim(targets), &message)
            }
            Message::Proposal(p) if p.block.proposer() == me => {
                let key = self.nodes[i].key.clone();
                if let Some(tc) = p.block.timeout_cert()
                    && let Some((stale, parent, _)) = self.stale_target(i, p.block.justify())
                {
                    // After a TC: a stale fork block in place of the real
                    // proposal, the lock broken in plain sight.
                    let tc =
                        byzantine::with_own_entry(tc.clone(), me, stale.round(), &key, &self.chain);
                    if let Some(fork) =
                        byzantine::fork_proposal(p, &stale, &parent, Some(tc), &key, &self.chain)
                    {
                        remember(&mut self.nodes[i].replaced, p.block.id());
                        return self.send_fork(i, me, targets, fork);
                    }
                }
                if !after_gst
                    && let Some((stale, parent, true)) = self.stale_target(i, p.block.justify())
                {
                    // The leaders of the two rounds after it must be
                    // honest validators that are not the victim: they
                    // certify the fork block and the block that commits it.
                    let round = p.block.round();
                    let next: Vec<ValidatorIndex> = self.nodes[i]
                        .replica
                        .as_ref()
                        .map(|r| vec![r.leader(round.next()), r.leader(round.next().next())])
                        .unwrap_or_default();
                    let honest: Vec<usize> = targets
                        .iter()
                        .copied()
                        .filter(|j| {
                            let n = &self.nodes[*j];
                            n.honest()
                                && n.replica
                                    .as_ref()
                                    .and_then(Replica::index)
                                    .is_some_and(|x| !next.contains(&x))
                        })
                        .collect();
                    if !next.contains(&me) && !honest.is_empty() {
                        let victim = honest[below(&mut self.rng, honest.len() as u64) as usize];
                        let until_ms = self.isolate(i, victim);
                        self.stats.fork_attacks += 1;
                        // Its vote for this proposal would make its vote
                        // for the fork block an equivocation the others
                        // refuse.
                        remember(&mut self.nodes[i].replaced, p.block.id());
                        self.nodes[i].attack = Some(ForkAttack {
                            victim,
                            proposal: p.clone(),
                            stale,
                            parent,
                            timeouts: Vec::new(),
                            forked: false,
                            until_ms,
                        });
                        return plain(vec![victim], &message);
                    }
                }
                plain(targets, &message)
            }
            Message::Timeout(t) if t.voter == me => match &self.nodes[i].attack {
                Some(a) if a.stale.round() < t.round && a.stale.data.epoch == t.epoch => {
                    let lowered =
                        byzantine::lowered_timeout(t, &a.stale, &self.nodes[i].key, &self.chain);
                    plain(targets, &Message::Timeout(lowered))
                }
                _ => plain(targets, &message),
            },
            Message::Vote(v) if self.nodes[i].replaced.contains(&v.data.block_id) => Vec::new(),
            _ => plain(targets, &message),
        }
    }

    /// Sends a stale-QC validator's fork block and its own vote for it.
    fn send_fork(
        &mut self,
        i: usize,
        me: ValidatorIndex,
        targets: Vec<usize>,
        fork: Proposal,
    ) -> Vec<Send> {
        let vote = Vote::sign(fork.block.vote_data(), me, &self.nodes[i].key, &self.chain);
        let id = fork.block.id();
        remember(&mut self.nodes[i].fork, id);
        self.stats.fork_proposals += 1;
        self.log(&[b"fork", &id.0], || {
            format!("n{i} proposes fork block {id}")
        });
        let everyone = self.reachable(i);
        vec![
            Send {
                to: targets,
                bytes: Message::Proposal(fork).encode(),
                delay_ms: 0,
            },
            Send {
                to: everyone,
                bytes: Message::Vote(vote).encode(),
                delay_ms: 0,
            },
        ]
    }

    /// What a stale-QC validator does with what it receives: it votes for
    /// every block extending its fork, and during an attack collects the
    /// timeouts of the round before its proposal (from validators that
    /// never saw the QC ending that round); with a quorum of them (its own
    /// entry lowered) it has a TC that lets it propose the fork block in
    /// the round of the proposal only the victim saw.
    fn stale_qc_receives(&mut self, i: usize, message: &Message) {
        let Some(me) = self.nodes[i].replica.as_ref().and_then(Replica::index) else {
            return;
        };
        match message {
            Message::Proposal(p) => {
                let block = &p.block;
                let node = &self.nodes[i];
                if !node.fork.contains(&block.parent_id())
                    || node.fork.contains(&block.id())
                    || block.proposer() == me
                {
                    return;
                }
                let vote = Vote::sign(block.vote_data(), me, &node.key, &self.chain);
                remember(&mut self.nodes[i].fork, block.id());
                let everyone = self.reachable(i);
                self.transmit(
                    i,
                    vec![Send {
                        to: everyone,
                        bytes: Message::Vote(vote).encode(),
                        delay_ms: 0,
                    }],
                );
            }
            Message::Timeout(t) => {
                let Some(set) = self.nodes[i]
                    .replica
                    .as_ref()
                    .map(|r| r.validator_set().clone())
                else {
                    return;
                };
                let Some(a) = self.nodes[i].attack.as_mut() else {
                    return;
                };
                if a.forked
                    || t.voter == me
                    || t.epoch != a.proposal.block.epoch()
                    || t.round.next() != a.proposal.block.round()
                    || a.timeouts.iter().any(|e| e.voter == t.voter)
                {
                    return;
                }
                let h = t.header();
                a.timeouts.push(TimeoutSignature {
                    voter: h.voter,
                    high_qc_round: h.high_qc_round,
                    signature: h.signature,
                });
                let power: u64 = a
                    .timeouts
                    .iter()
                    .map(|e| e.voter)
                    .chain([me])
                    .filter_map(|v| set.get(v).map(|v| v.power))
                    .sum();
                if power < set.quorum_power() {
                    return;
                }
                a.forked = true;
                let mut entries = a.timeouts.clone();
                entries.sort_by_key(|e| e.voter);
                let tc = TimeoutCert {
                    epoch: t.epoch,
                    round: t.round,
                    entries,
                };
                let (template, stale, parent) =
                    (a.proposal.clone(), a.stale.clone(), a.parent.clone());
                let key = self.nodes[i].key.clone();
                let tc = byzantine::with_own_entry(tc, me, stale.round(), &key, &self.chain);
                if let Some(fork) = byzantine::fork_proposal(
                    &template,
                    &stale,
                    &parent,
                    Some(tc),
                    &key,
                    &self.chain,
                ) {
                    let everyone = self.reachable(i);
                    let sends = self.send_fork(i, me, everyone, fork);
                    self.transmit(i, sends);
                }
            }
            _ => {}
        }
    }

    fn index_is(&self, i: usize, index: u16) -> bool {
        self.nodes[i]
            .replica
            .as_ref()
            .and_then(|r| r.index())
            .is_some_and(|me| me.0 == index)
    }

    /// Persist before send, checked from the outside: a vote or timeout an
    /// honest node sends must be covered by the record on its disk (synced).
    fn check_covered(&mut self, i: usize, epoch: Epoch, round: Round, vote: bool) {
        let covered = self.nodes[i].disk.record.as_ref().is_some_and(|r| {
            r.epoch == epoch
                && if vote {
                    r.last_voted_round >= round
                } else {
                    r.highest_timeout_round >= round
                }
        });
        if !covered {
            let what = if vote { "vote" } else { "timeout" };
            self.violation(
                "persist-before-send",
                format!(
                    "node {i} sent a {what} for round {} of epoch {} before its record covering it was on disk",
                    round.0, epoch.0
                ),
            );
        }
    }

    fn deliver(&mut self, from: usize, to: usize, bytes: Vec<u8>) {
        if self.nodes[to].replica.is_none() {
            return;
        }
        self.stats.delivered += 1;
        let digest = if bytes.len() <= limits::TRACE_HASH_BYTES_MAX {
            Hash::digest(&bytes)
        } else {
            Hash::ZERO
        };
        self.log(&[b"deliver", &[from as u8, to as u8], &digest.0], || {
            format!("n{from} -> n{to} {} bytes {}", bytes.len(), digest)
        });
        let message = match Message::decode(&bytes) {
            Ok(m) => m,
            Err(e) => {
                self.stats.decode_rejected += 1;
                debug!(error = %e, "undecodable message");
                return;
            }
        };
        if message.encode() != bytes {
            self.violation(
                "canonical-encoding",
                format!("a non-canonical encoding from node {from} decoded"),
            );
            return;
        }
        if self.nodes[to].behaviour == Some(Behaviour::StaleQc) {
            self.stale_qc_receives(to, &message);
        }
        if self.nodes[to].behaviour == Some(Behaviour::Replay) {
            let pool = &mut self.nodes[to].replay_pool;
            if pool.len() >= REPLAY_POOL_MAX {
                pool.remove(0);
            }
            pool.push(bytes);
        }
        let sender = self.nodes[from].public;
        self.input(
            to,
            Input::Message {
                from: sender,
                message,
            },
        );
    }

    // ----- clients ------------------------------------------------------------

    /// The honest live node furthest ahead: what clients read nonces from.
    fn reference(&self) -> Option<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].honest() && self.nodes[*i].replica.is_some())
            .max_by_key(|i| (self.nodes[*i].height(), usize::MAX - *i))
    }

    fn nonce_of(&self, r: usize, k: &PublicKey) -> u64 {
        self.nodes[r].app.ledger().account(k).map_or(0, |a| a.nonce)
    }

    /// The account's nonce after the highest commit any honest node applied
    /// (crashed ones included: their ledger is durable). Reading it from the
    /// live node furthest ahead instead goes wrong when the node that
    /// applied the account's last transaction is down and the others have
    /// not applied that block yet: the client would sign with a spent nonce
    /// and its transaction could never commit.
    fn latest_nonce(&self, k: &PublicKey) -> u64 {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].honest())
            .map(|i| self.nonce_of(i, k))
            .max()
            .unwrap_or(0)
    }

    /// A client hands its transaction to a few live nodes, or to all of
    /// them when it resends (there is no mempool gossip; each leader
    /// proposes from its own mempool).
    fn submit(&mut self, bytes: &[u8], everywhere: bool) {
        let live: Vec<usize> = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].replica.is_some())
            .collect();
        if live.is_empty() {
            return;
        }
        let first = below(&mut self.rng, live.len() as u64) as usize;
        let count = if everywhere {
            live.len()
        } else {
            limits::SUBMIT_NODES.min(live.len())
        };
        for k in 0..count {
            let i = live[(first + k) % live.len()];
            let _ = self.nodes[i].app.submit(vec![bytes.to_vec()]);
        }
    }

    fn client_tick(&mut self) {
        let Some(r) = self.reference() else { return };
        // Resend what has waited long.
        let stale: Vec<Vec<u8>> = self
            .clients
            .in_flight
            .values_mut()
            .filter(|f| f.last_sent_ms + limits::RESUBMIT_MS <= self.now)
            .map(|f| {
                f.last_sent_ms = self.now;
                f.bytes.clone()
            })
            .collect();
        for b in stale {
            self.submit(&b, true);
        }
        if self.opts.governance {
            self.governance(r);
        }
        // A new transfer or settlement from a user with nothing in flight.
        let u = below(&mut self.rng, workload::USERS as u64) as usize;
        let user = workload::user_key(u);
        if self.clients.in_flight.contains_key(&user.public_key()) {
            return;
        }
        let nonce = self.latest_nonce(&user.public_key());
        let other =
            (u + 1 + below(&mut self.rng, workload::USERS as u64 - 1) as usize) % workload::USERS;
        let tx = if below(&mut self.rng, 10) < 7 {
            let amount = 1 + below(&mut self.rng, 1_000);
            workload::transfer(&user, workload::user_key(other).public_key(), amount, nonce)
        } else {
            self.clients.next_trade_id += 1;
            let market = workload::user_key((u + 3) % workload::USERS).public_key();
            let qty = 1 + below(&mut self.rng, 100);
            workload::settle(
                &user,
                &workload::user_key(other),
                market,
                self.clients.next_trade_id,
                qty,
                nonce,
            )
        };
        if let Ok(tx) = tx {
            let f = self.clients.add(user.public_key(), &tx, self.now);
            self.log(&[b"submit", &f.id.0], || format!("client submits {}", f.id));
            self.submit(&f.bytes, false);
        }
    }

    /// The validator-set change: stakeholder 0 proposes adding the spare;
    /// once the proposal is on the chain, every stakeholder votes yes.
    fn governance(&mut self, r: usize) {
        let proposer = workload::stakeholder_key(0);
        match self.clients.governance_step {
            0 if self.now >= 500 => {
                let nonce = self.latest_nonce(&proposer.public_key());
                let spare = self.nodes[self.spare].public;
                if let Ok(tx) = workload::propose_add_validator(&proposer, spare, nonce) {
                    let f = self.clients.add(proposer.public_key(), &tx, self.now);
                    self.submit(&f.bytes, false);
                    self.clients.governance_step = 1;
                }
            }
            1 => {
                let view = self.nodes[r].app.ledger().view();
                let mut w = Working::new(&view);
                let exists = matches!(load_proposal(&mut w, 0), Ok(Some(_)));
                if !exists || self.clients.in_flight.contains_key(&proposer.public_key()) {
                    return;
                }
                for s in 0..workload::STAKEHOLDERS {
                    let voter = workload::stakeholder_key(s);
                    let nonce = self.latest_nonce(&voter.public_key());
                    if let Ok(tx) = workload::vote_yes(&voter, 0, nonce) {
                        let f = self.clients.add(voter.public_key(), &tx, self.now);
                        self.submit(&f.bytes, false);
                    }
                }
                self.clients.governance_step = 2;
            }
            _ => {}
        }
    }

    // ----- liveness -------------------------------------------------------------

    /// After GST: every honest validator commits new blocks, and every
    /// transaction submitted early enough is committed. Promised only while
    /// the Byzantine power is below a third.
    fn check_liveness(&mut self) {
        if !self.opts.within_fault_bound() || !self.after_gst {
            return;
        }
        for i in 0..self.nodes.len() {
            let node = &self.nodes[i];
            if !node.honest() {
                continue;
            }
            let Some(replica) = &node.replica else {
                continue;
            };
            if replica.index().is_none() {
                continue;
            }
            let grown = node.height().saturating_sub(node.height_at_gst);
            if grown < limits::LIVENESS_BLOCKS_MIN {
                let detail = format!(
                    "honest node {i} committed {grown} blocks in the {} ms after GST (height {} at GST), fewer than {}",
                    self.opts.liveness_ms,
                    node.height_at_gst,
                    limits::LIVENESS_BLOCKS_MIN
                );
                self.violation("liveness", detail);
                return;
            }
        }
        let deadline = self.end_ms.saturating_sub(self.opts.liveness_ms / 2);
        let lost: Vec<Hash> = self
            .clients
            .signed
            .iter()
            .filter(|(id, at)| **at <= deadline && !self.clients.committed.contains_key(*id))
            .map(|(id, _)| *id)
            .collect();
        if let Some(id) = lost.first() {
            let in_pools: Vec<usize> = (0..self.nodes.len())
                .filter(|i| self.nodes[*i].app.mempool().contains(id))
                .collect();
            let nonces = in_pools.first().and_then(|&i| {
                let tx = self.nodes[i].app.mempool().get(id)?;
                let body = tx.tx.decode_body().ok()?;
                let payer = tx.tx.fee_payer()?;
                Some((body.nonce, self.nonce_of(i, &payer)))
            });
            let detail = format!(
                "{} client transactions signed before {deadline} ms never committed (first: {id}, in the mempools of nodes {in_pools:?}; its nonce and the account's: {nonces:?})",
                lost.len()
            );
            self.violation("liveness-txs", detail);
            return;
        }
        if let Some((epoch, at)) = self.spare_epoch
            && at + self.opts.liveness_ms / 2 <= self.end_ms
        {
            let spare = self.nodes[self.spare].public;
            if !self.checker.voted_in(spare, epoch) {
                let detail = format!(
                    "the spare validator joined in epoch {} at {at} ms and never voted",
                    epoch.0
                );
                self.violation("liveness-spare", detail);
            }
        }
    }
}

/// Adds `id` to a bounded set of block ids.
fn remember(set: &mut BTreeSet<Hash>, id: Hash) {
    set.insert(id);
    while set.len() > byzantine::FORK_BLOCKS_MAX {
        set.pop_first();
    }
}

/// Runs one scenario.
pub fn run(opts: Options, keep_trace: bool) -> Result<Report, SimError> {
    Ok(Sim::new(opts, keep_trace)?.run())
}
