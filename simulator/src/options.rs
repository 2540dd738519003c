//! What one run simulates: cluster size, Byzantine behaviours, fault classes,
//! workload and duration. Everything a run does follows from these options
//! and the seed; [`Options::command`] prints the command that replays them.

use std::fmt;
use std::str::FromStr;

use crate::SimError;

/// A class of fault the environment injects before the global stabilization
/// time (GST). After GST the network is synchronous and every crashed node is
/// restarted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// Messages dropped at random.
    Loss,
    /// Messages delivered twice.
    Duplicate,
    /// Extra jitter, so messages overtake each other.
    Reorder,
    /// Random partitions of the nodes into two sides, healed after a while.
    Partition,
    /// One fixed partition: the first half of the validators against the
    /// rest, from a quarter to half of the faulty period.
    ScheduledPartition,
    /// One-way link cuts: a hears b, b does not hear a.
    Asymmetric,
    /// Crashes that lose unsynced writes, and restarts from what was synced.
    Crash,
    /// Clock offset and drift per node (timeouts and block timestamps).
    Skew,
    /// One node processes every message late.
    Slow,
    /// Per-link bandwidth limit: large messages queue behind each other.
    Bandwidth,
}

impl Fault {
    pub const ALL: [Fault; 10] = [
        Fault::Loss,
        Fault::Duplicate,
        Fault::Reorder,
        Fault::Partition,
        Fault::ScheduledPartition,
        Fault::Asymmetric,
        Fault::Crash,
        Fault::Skew,
        Fault::Slow,
        Fault::Bandwidth,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::Loss => "loss",
            Fault::Duplicate => "duplicate",
            Fault::Reorder => "reorder",
            Fault::Partition => "partition",
            Fault::ScheduledPartition => "scheduled-partition",
            Fault::Asymmetric => "asymmetric",
            Fault::Crash => "crash",
            Fault::Skew => "skew",
            Fault::Slow => "slow",
            Fault::Bandwidth => "bandwidth",
        }
    }
}

impl FromStr for Fault {
    type Err = SimError;
    fn from_str(s: &str) -> Result<Fault, SimError> {
        Fault::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| SimError::Options(format!("unknown fault class {s:?}")))
    }
}

/// What a Byzantine validator does. Each wraps a real replica (so it takes
/// part in the protocol) and tampers with what it sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Behaviour {
    /// As leader, signs two different blocks per round and sends one to
    /// each half of the validators (and, later, the other one too).
    Equivocate,
    /// Signs a second, different vote in every round it votes in.
    DoubleVote,
    /// Never sends its votes or timeouts.
    Withhold,
    /// Sends forged signatures, malformed bytes and oversized messages.
    Forge,
    /// Sends old messages it received again, to random validators.
    Replay,
    /// As leader, proposes transactions with bad signatures.
    InvalidTxs,
    /// Runs two honest-looking replicas with its one key, each talking to a
    /// different half of the other validators (double signing by
    /// construction).
    SplitBrain,
    /// Forks below a commit that only one honest validator saw (the attack
    /// the 2-chain lock and the TC's highest QC exist for). Before GST, as
    /// leader of round k holding the QC of round k - 1 that commits a block
    /// B, it sends its proposal to one honest validator only (which commits
    /// B), and the network cuts that victim off from the others for a
    /// while. It hides that QC (its timeouts report the QC B carries), and
    /// once the others time out round k - 1 it forms the TC of round k - 1
    /// from their timeouts and its own, lowered, and proposes in round k a
    /// block extending the QC B carries: a sibling of B. It votes for that
    /// fork and for every block extending it. At any time, a proposal of
    /// its own after a TC is replaced by such a stale fork block.
    StaleQc,
}

impl Behaviour {
    pub const ALL: [Behaviour; 8] = [
        Behaviour::Equivocate,
        Behaviour::DoubleVote,
        Behaviour::Withhold,
        Behaviour::Forge,
        Behaviour::Replay,
        Behaviour::InvalidTxs,
        Behaviour::SplitBrain,
        Behaviour::StaleQc,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Behaviour::Equivocate => "equivocate",
            Behaviour::DoubleVote => "double-vote",
            Behaviour::Withhold => "withhold",
            Behaviour::Forge => "forge",
            Behaviour::Replay => "replay",
            Behaviour::InvalidTxs => "invalid-txs",
            Behaviour::SplitBrain => "split-brain",
            Behaviour::StaleQc => "stale-qc",
        }
    }
}

impl FromStr for Behaviour {
    type Err = SimError;
    fn from_str(s: &str) -> Result<Behaviour, SimError> {
        Behaviour::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| SimError::Options(format!("unknown Byzantine behaviour {s:?}")))
    }
}

/// One scenario. The seed drives every random choice of the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub seed: u64,
    /// Validators at genesis, each with power 10.
    pub validators: usize,
    /// One behaviour per Byzantine validator (the last validators of the
    /// genesis set are the Byzantine ones).
    pub byzantine: Vec<Behaviour>,
    pub faults: Vec<Fault>,
    /// Virtual time during which faults are injected; GST comes after it.
    pub fault_ms: u64,
    /// Virtual time after GST in which liveness must show.
    pub liveness_ms: u64,
    /// Ends the faulty period early once this many rounds were simulated.
    pub rounds_max: Option<u64>,
    /// Client transactions submitted per second of virtual time.
    pub tx_per_sec: u64,
    /// Run the governance scenario: a proposal adds a spare validator,
    /// which joins at an epoch change.
    pub governance: bool,
    /// Heights per epoch (ledger genesis parameter and consensus config).
    pub epoch_length_blocks: u64,
    /// Name of a deliberately broken variant of the core (only with the
    /// `mutations` feature).
    pub mutation: Option<String>,
}

impl Options {
    /// Defaults: 4 validators, no faults, 20 s of virtual time then 20 s of
    /// liveness window, 20 transactions per second, governance on.
    pub fn new(seed: u64) -> Options {
        Options {
            seed,
            validators: 4,
            byzantine: Vec::new(),
            faults: Vec::new(),
            fault_ms: 20_000,
            liveness_ms: 20_000,
            rounds_max: None,
            tx_per_sec: 20,
            governance: true,
            epoch_length_blocks: 40,
            mutation: None,
        }
    }

    /// Byzantine validators' total power is below a third of the genesis
    /// power: the condition under which liveness is promised. (Safety is
    /// checked whatever the count.)
    pub fn within_fault_bound(&self) -> bool {
        3 * self.byzantine.len() < self.validators
    }

    pub fn check(&self) -> Result<(), SimError> {
        if self.validators == 0 || self.validators > 32 {
            return Err(SimError::Options(format!(
                "validators must be between 1 and 32, not {}",
                self.validators
            )));
        }
        if self.byzantine.len() >= self.validators {
            return Err(SimError::Options(
                "at least one validator must be honest".into(),
            ));
        }
        if self.epoch_length_blocks < 2 {
            return Err(SimError::Options(
                "epoch length must be at least 2 blocks".into(),
            ));
        }
        if self.fault_ms == 0 || self.liveness_ms < 5_000 {
            return Err(SimError::Options(
                "the faulty period must be positive and the liveness window at least 5 s".into(),
            ));
        }
        Ok(())
    }

    /// The command line that replays this run.
    pub fn command(&self) -> String {
        let mut c = format!(
            "commons-sim run --seed {} --validators {} --time-ms {} --liveness-ms {} --tx-per-sec {} --epoch-length {}",
            self.seed,
            self.validators,
            self.fault_ms,
            self.liveness_ms,
            self.tx_per_sec,
            self.epoch_length_blocks
        );
        if !self.byzantine.is_empty() {
            let names: Vec<&str> = self.byzantine.iter().map(|b| b.name()).collect();
            c.push_str(&format!(" --byzantine {}", names.join(",")));
        }
        if !self.faults.is_empty() {
            let names: Vec<&str> = self.faults.iter().map(|f| f.name()).collect();
            c.push_str(&format!(" --faults {}", names.join(",")));
        }
        if let Some(r) = self.rounds_max {
            c.push_str(&format!(" --rounds {r}"));
        }
        if !self.governance {
            c.push_str(" --no-governance");
        }
        if let Some(m) = &self.mutation {
            c.push_str(&format!(" --mutation {m}"));
        }
        c
    }
}

impl fmt::Display for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.command())
    }
}

/// Parses a comma-separated list (empty string: empty list).
pub fn parse_list<T: FromStr<Err = SimError>>(s: &str) -> Result<Vec<T>, SimError> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(T::from_str)
        .collect()
}
