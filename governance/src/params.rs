//! The parameter registry: every tunable number of the ledger, of consensus
//! and of governance itself, with its range, default and meaning, in one
//! table. A parameter-change proposal names entries of this table; the
//! ledger stores a [`ParamSet`] and reads values by [`Param`] (or by name).

use std::collections::BTreeMap;
use std::fmt;

use commons_types::Amount;
use serde::{Deserialize, Serialize};

use crate::{GovError, limits};

/// Which part of the system reads a parameter. Informational: every part
/// reads the same [`ParamSet`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Module {
    Ledger,
    Consensus,
    Governance,
}

/// Every registered parameter. The discriminant is the index into
/// [`PARAM_SPECS`] (checked at compile time).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Param {
    FeeBase,
    FeePerByte,
    UnbondingPeriodBlocks,
    SlashPermille,
    MaxBlockTxs,
    LeaseMaxDurationBlocks,
    RoundTimeoutMsBase,
    RoundTimeoutMsMax,
    EpochLengthBlocks,
    MinDeposit,
    MinInitialDepositPermille,
    DepositPeriodBlocks,
    VotingPeriodBlocks,
    QuorumPermille,
    ThresholdPermille,
    VetoPermille,
    MaxActiveProposals,
    MaxProposalBytes,
    MaxTitleBytes,
    MaxDescriptionBytes,
}

/// Number of registered parameters.
pub const PARAM_COUNT: usize = 20;

/// One registered parameter: its name on the wire, its inclusive range, its
/// genesis default and what it means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamSpec {
    pub param: Param,
    pub name: &'static str,
    pub module: Module,
    pub min: u64,
    pub max: u64,
    pub default: u64,
    pub doc: &'static str,
}

/// Defaults that speak of time assume about one block per second (the
/// default round timeout is one second).
const DAY_BLOCKS: u64 = 86_400;

/// The registry. Ranges exist so that no single vote can break the chain:
/// each bound says why in `doc`. Ranges of governance's own parameters are
/// chosen so that governance can never vote itself into a state where no
/// further proposal could pass (threshold below 100%, quorum reachable,
/// size limits that still fit a parameter-change proposal).
pub const PARAM_SPECS: [ParamSpec; PARAM_COUNT] = [
    ParamSpec {
        param: Param::FeeBase,
        name: "fee_base",
        module: Module::Ledger,
        min: 0,
        max: 1_000_000_000_000,
        default: 1_000,
        doc: "Fee of every transaction before its size is counted. Bounded so a vote cannot price every account out of transacting.",
    },
    ParamSpec {
        param: Param::FeePerByte,
        name: "fee_per_byte",
        module: Module::Ledger,
        min: 0,
        max: 1_000_000_000,
        default: 10,
        doc: "Fee per byte of the encoded signed transaction; with the size limit, bounds the largest fee.",
    },
    ParamSpec {
        param: Param::UnbondingPeriodBlocks,
        name: "unbonding_period_blocks",
        module: Module::Ledger,
        min: 1,
        max: 100_000_000,
        default: 14 * DAY_BLOCKS,
        doc: "Blocks between an Unbond and the stake becoming spendable, so misbehaviour can still be slashed.",
    },
    ParamSpec {
        param: Param::SlashPermille,
        name: "slash_permille",
        module: Module::Ledger,
        min: 0,
        max: limits::PERMILLE,
        default: 50,
        doc: "Share of a validator's bonded stake slashed on evidence of equivocation, in permille.",
    },
    ParamSpec {
        param: Param::MaxBlockTxs,
        name: "max_block_txs",
        module: Module::Ledger,
        min: 1,
        max: 100_000,
        default: 10_000,
        doc: "Transactions in one block; at least one so the chain can always make progress.",
    },
    ParamSpec {
        param: Param::LeaseMaxDurationBlocks,
        name: "lease_max_duration_blocks",
        module: Module::Ledger,
        min: 1,
        max: 1_000_000_000,
        default: 30 * DAY_BLOCKS,
        doc: "Longest lease a buyer may open; escrow cannot be locked for longer.",
    },
    ParamSpec {
        param: Param::RoundTimeoutMsBase,
        name: "round_timeout_ms_base",
        module: Module::Consensus,
        min: 50,
        max: 60_000,
        default: 1_000,
        doc: "First round timeout after a commit; above a LAN round trip, and at most a minute.",
    },
    ParamSpec {
        param: Param::RoundTimeoutMsMax,
        name: "round_timeout_ms_max",
        module: Module::Consensus,
        min: 50,
        max: 3_600_000,
        default: 60_000,
        doc: "Ceiling of the doubling round timeout; never below round_timeout_ms_base.",
    },
    ParamSpec {
        param: Param::EpochLengthBlocks,
        name: "epoch_length_blocks",
        module: Module::Consensus,
        min: 1,
        max: 10_000_000,
        default: 1_000,
        doc: "Blocks per epoch; validator-set changes take effect at the next epoch boundary.",
    },
    ParamSpec {
        param: Param::MinDeposit,
        name: "min_deposit",
        module: Module::Governance,
        min: 1,
        max: 1_000_000_000_000_000_000,
        default: 10_000_000,
        doc: "Total deposit a proposal needs to enter voting; its first defence against spam.",
    },
    ParamSpec {
        param: Param::MinInitialDepositPermille,
        name: "min_initial_deposit_permille",
        module: Module::Governance,
        min: 0,
        max: limits::PERMILLE,
        default: 250,
        doc: "Share of min_deposit the proposer must put up at submission, so filling the active-proposal cap burns real funds.",
    },
    ParamSpec {
        param: Param::DepositPeriodBlocks,
        name: "deposit_period_blocks",
        module: Module::Governance,
        min: 1,
        max: 10_000_000,
        default: 2 * DAY_BLOCKS,
        doc: "Blocks after submission during which deposits are accepted; the proposal lapses at its end.",
    },
    ParamSpec {
        param: Param::VotingPeriodBlocks,
        name: "voting_period_blocks",
        module: Module::Governance,
        min: 10,
        max: 10_000_000,
        default: 2 * DAY_BLOCKS,
        doc: "Blocks of voting; at least 10 so no proposal can pass before members can react.",
    },
    ParamSpec {
        param: Param::QuorumPermille,
        name: "quorum_permille",
        module: Module::Governance,
        min: 1,
        max: 900,
        default: 334,
        doc: "Least turnout, in permille of the snapshot's total power; at most 900 so a quorum stays reachable.",
    },
    ParamSpec {
        param: Param::ThresholdPermille,
        name: "threshold_permille",
        module: Module::Governance,
        min: 500,
        max: 900,
        default: 500,
        doc: "Yes must exceed this share of yes + no + veto; never below a majority, never unreachable.",
    },
    ParamSpec {
        param: Param::VetoPermille,
        name: "veto_permille",
        module: Module::Governance,
        min: 200,
        max: limits::PERMILLE,
        default: 334,
        doc: "Veto share of all cast power that vetoes a proposal and burns its deposit; at least 200 so a small minority cannot block everything.",
    },
    ParamSpec {
        param: Param::MaxActiveProposals,
        name: "max_active_proposals",
        module: Module::Governance,
        min: 1,
        max: limits::MAX_ACTIVE_PROPOSALS_CEILING,
        default: 32,
        doc: "Proposals in their deposit or voting period at once; bounds the end-of-block work of the ledger.",
    },
    ParamSpec {
        param: Param::MaxProposalBytes,
        name: "max_proposal_bytes",
        module: Module::Governance,
        min: 1024,
        max: limits::MAX_PROPOSAL_BYTES as u64,
        default: limits::MAX_PROPOSAL_BYTES as u64,
        doc: "Encoded size of a proposal's content; at least 1 KiB so a parameter change always fits.",
    },
    ParamSpec {
        param: Param::MaxTitleBytes,
        name: "max_title_bytes",
        module: Module::Governance,
        min: 16,
        max: limits::MAX_TITLE_BYTES as u64,
        default: limits::MAX_TITLE_BYTES as u64,
        doc: "Length of a proposal title in bytes.",
    },
    ParamSpec {
        param: Param::MaxDescriptionBytes,
        name: "max_description_bytes",
        module: Module::Governance,
        min: 0,
        max: limits::MAX_DESCRIPTION_BYTES as u64,
        default: limits::MAX_DESCRIPTION_BYTES as u64,
        doc: "Length of a proposal description in bytes.",
    },
];

/// Pairs `(lower, upper)` that must satisfy `lower <= upper` in every
/// parameter set, checked after applying a change.
pub const PARAM_ORDER: [(Param, Param); 1] =
    [(Param::RoundTimeoutMsBase, Param::RoundTimeoutMsMax)];

// The registry is consistent: entry i describes the parameter with
// discriminant i, and every default lies in its range.
const _: () = {
    let mut i = 0;
    while i < PARAM_COUNT {
        let spec = &PARAM_SPECS[i];
        assert!(spec.param as usize == i);
        assert!(spec.min <= spec.default);
        assert!(spec.default <= spec.max);
        assert!(spec.name.len() <= limits::MAX_PARAM_NAME_BYTES);
        i += 1;
    }
    assert!(PARAM_COUNT <= limits::MAX_PARAM_CHANGES);
};

impl Param {
    /// Every parameter, in registry order.
    pub const ALL: [Param; PARAM_COUNT] = {
        let mut all = [Param::FeeBase; PARAM_COUNT];
        let mut i = 0;
        while i < PARAM_COUNT {
            all[i] = PARAM_SPECS[i].param;
            i += 1;
        }
        all
    };

    pub fn spec(self) -> &'static ParamSpec {
        // The discriminant indexes the registry (checked at compile time).
        &PARAM_SPECS[self as usize]
    }

    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// The parameter registered under `name`, if any.
    pub fn from_name(name: &str) -> Option<Param> {
        PARAM_SPECS.iter().find(|s| s.name == name).map(|s| s.param)
    }
}

impl fmt::Display for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One change of a parameter-change proposal. The name is kept as sent so
/// that an unknown name can be reported as such.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamChange {
    pub name: String,
    pub value: u64,
}

/// A full set of parameter values: one value for every registered
/// parameter, each within its range, and every [`PARAM_ORDER`] relation
/// holding. Those invariants hold for every value of this type.
///
/// Serialized (serde) as a map from name to value in name order, which is
/// deterministic. Deserializing rejects unknown names, out-of-range values
/// and broken relations; a missing name takes its default, so a genesis file
/// lists only what it changes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "BTreeMap<String, u64>", into = "BTreeMap<String, u64>")]
pub struct ParamSet {
    values: [u64; PARAM_COUNT],
}

impl Default for ParamSet {
    fn default() -> ParamSet {
        let mut values = [0; PARAM_COUNT];
        for (value, spec) in values.iter_mut().zip(PARAM_SPECS.iter()) {
            *value = spec.default;
        }
        ParamSet { values }
    }
}

impl fmt::Debug for ParamSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(p, v)| (p.name(), v)))
            .finish()
    }
}

impl ParamSet {
    pub fn get(&self, param: Param) -> u64 {
        // Every discriminant is below PARAM_COUNT.
        self.values[param as usize]
    }

    /// The value of the parameter registered under `name`, if any.
    pub fn get_by_name(&self, name: &str) -> Option<u64> {
        Param::from_name(name).map(|p| self.get(p))
    }

    /// Every parameter and its value, in registry order.
    pub fn iter(&self) -> impl Iterator<Item = (Param, u64)> + '_ {
        Param::ALL.iter().map(|&p| (p, self.get(p)))
    }

    /// The set after `changes`, or why they are refused: an empty list, too
    /// many changes, an unknown name, a name given twice, a value outside its
    /// range, or a result that breaks a [`PARAM_ORDER`] relation. Called at
    /// submission (through [`validate_param_change`]) and again by the ledger
    /// at execution, since another proposal may have changed the set since.
    pub fn with_changes(&self, changes: &[ParamChange]) -> Result<ParamSet, GovError> {
        if changes.is_empty() {
            return Err(GovError::Empty {
                field: "parameter changes",
            });
        }
        if changes.len() > limits::MAX_PARAM_CHANGES {
            return Err(GovError::TooManyEntries {
                what: "parameter changes",
                got: changes.len(),
                limit: limits::MAX_PARAM_CHANGES,
            });
        }
        let mut next = self.clone();
        let mut seen = [false; PARAM_COUNT];
        for change in changes {
            let param = Param::from_name(&change.name).ok_or_else(|| GovError::UnknownParam {
                name: change.name.clone(),
            })?;
            let slot = &mut seen[param as usize];
            if *slot {
                return Err(GovError::DuplicateParam { name: param.name() });
            }
            *slot = true;
            check_range(param, change.value)?;
            next.values[param as usize] = change.value;
        }
        next.check_relations()?;
        Ok(next)
    }

    /// Re-checks the invariants, for a set read back from storage.
    pub fn check(&self) -> Result<(), GovError> {
        for (param, value) in self.iter() {
            check_range(param, value)?;
        }
        self.check_relations()
    }

    fn check_relations(&self) -> Result<(), GovError> {
        for (lower, upper) in PARAM_ORDER {
            if self.get(lower) > self.get(upper) {
                return Err(GovError::ParamOrder {
                    lower: lower.name(),
                    lower_value: self.get(lower),
                    upper: upper.name(),
                    upper_value: self.get(upper),
                });
            }
        }
        Ok(())
    }

    /// Governance's own parameters, typed.
    pub fn gov(&self) -> GovParams {
        GovParams {
            min_deposit: Amount(self.get(Param::MinDeposit)),
            min_initial_deposit_permille: self.get(Param::MinInitialDepositPermille),
            deposit_period_blocks: self.get(Param::DepositPeriodBlocks),
            voting_period_blocks: self.get(Param::VotingPeriodBlocks),
            quorum_permille: self.get(Param::QuorumPermille),
            threshold_permille: self.get(Param::ThresholdPermille),
            veto_permille: self.get(Param::VetoPermille),
            max_active_proposals: self.get(Param::MaxActiveProposals),
            max_proposal_bytes: self.get(Param::MaxProposalBytes),
            max_title_bytes: self.get(Param::MaxTitleBytes),
            max_description_bytes: self.get(Param::MaxDescriptionBytes),
        }
    }
}

fn check_range(param: Param, value: u64) -> Result<(), GovError> {
    let spec = param.spec();
    if value < spec.min || value > spec.max {
        return Err(GovError::ParamOutOfRange {
            name: spec.name,
            value,
            min: spec.min,
            max: spec.max,
        });
    }
    Ok(())
}

/// Checks a parameter change against the current set: what a proposal's
/// submission runs, so an invalid change never reaches a vote.
pub fn validate_param_change(current: &ParamSet, changes: &[ParamChange]) -> Result<(), GovError> {
    current.with_changes(changes).map(|_| ())
}

impl TryFrom<BTreeMap<String, u64>> for ParamSet {
    type Error = GovError;
    fn try_from(map: BTreeMap<String, u64>) -> Result<ParamSet, GovError> {
        let mut set = ParamSet::default();
        for (name, value) in map {
            let param = Param::from_name(&name).ok_or(GovError::UnknownParam { name })?;
            check_range(param, value)?;
            set.values[param as usize] = value;
        }
        set.check_relations()?;
        Ok(set)
    }
}

impl From<ParamSet> for BTreeMap<String, u64> {
    fn from(set: ParamSet) -> BTreeMap<String, u64> {
        set.iter().map(|(p, v)| (p.name().to_owned(), v)).collect()
    }
}

/// Governance's own parameters as typed fields, read from a [`ParamSet`] by
/// [`ParamSet::gov`]. Rules take this rather than the whole set so tests can
/// state exactly the values they depend on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GovParams {
    pub min_deposit: Amount,
    pub min_initial_deposit_permille: u64,
    pub deposit_period_blocks: u64,
    pub voting_period_blocks: u64,
    pub quorum_permille: u64,
    pub threshold_permille: u64,
    pub veto_permille: u64,
    pub max_active_proposals: u64,
    pub max_proposal_bytes: u64,
    pub max_title_bytes: u64,
    pub max_description_bytes: u64,
}

impl Default for GovParams {
    fn default() -> GovParams {
        ParamSet::default().gov()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(name: &str, value: u64) -> ParamChange {
        ParamChange {
            name: name.into(),
            value,
        }
    }

    #[test]
    fn names_are_unique_and_snake_case() {
        for (i, a) in PARAM_SPECS.iter().enumerate() {
            assert!(
                a.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{}",
                a.name
            );
            assert_eq!(Param::from_name(a.name), Some(a.param));
            for b in &PARAM_SPECS[i + 1..] {
                assert_ne!(a.name, b.name);
            }
        }
    }

    #[test]
    fn brief_names_are_registered() {
        for name in [
            "fee_base",
            "fee_per_byte",
            "unbonding_period_blocks",
            "slash_permille",
            "max_block_txs",
            "lease_max_duration_blocks",
            "round_timeout_ms_base",
            "round_timeout_ms_max",
            "epoch_length_blocks",
            "min_deposit",
            "quorum_permille",
            "threshold_permille",
            "veto_permille",
        ] {
            assert!(Param::from_name(name).is_some(), "{name}");
        }
    }

    #[test]
    fn changes_are_checked_by_table() {
        let set = ParamSet::default();
        // (changes, expected result)
        let cases: Vec<(Vec<ParamChange>, Result<u64, GovError>)> = vec![
            (vec![change("fee_base", 7)], Ok(7)),
            (
                vec![change("fee_base", 1_000_000_000_000)],
                Ok(1_000_000_000_000),
            ),
            (
                vec![change("fee_base", 1_000_000_000_001)],
                Err(GovError::ParamOutOfRange {
                    name: "fee_base",
                    value: 1_000_000_000_001,
                    min: 0,
                    max: 1_000_000_000_000,
                }),
            ),
            (
                vec![change("fee_bse", 1)],
                Err(GovError::UnknownParam {
                    name: "fee_bse".into(),
                }),
            ),
            (
                vec![change("fee_base", 1), change("fee_base", 2)],
                Err(GovError::DuplicateParam { name: "fee_base" }),
            ),
            (
                vec![],
                Err(GovError::Empty {
                    field: "parameter changes",
                }),
            ),
            (
                vec![
                    change("round_timeout_ms_base", 60_000),
                    change("fee_base", 3),
                ],
                Ok(3),
            ),
            (
                vec![change("round_timeout_ms_max", 500)],
                Err(GovError::ParamOrder {
                    lower: "round_timeout_ms_base",
                    lower_value: 1_000,
                    upper: "round_timeout_ms_max",
                    upper_value: 500,
                }),
            ),
            (
                vec![change("threshold_permille", 1000)],
                Err(GovError::ParamOutOfRange {
                    name: "threshold_permille",
                    value: 1000,
                    min: 500,
                    max: 900,
                }),
            ),
        ];
        for (changes, expected) in cases {
            let got = set.with_changes(&changes).map(|s| s.get(Param::FeeBase));
            assert_eq!(got, expected, "{changes:?}");
            assert_eq!(
                validate_param_change(&set, &changes).is_ok(),
                expected.is_ok()
            );
        }
    }

    #[test]
    fn lowering_both_timeouts_together_is_allowed() {
        // The relation is checked on the result, not change by change.
        let set = ParamSet::default()
            .with_changes(&[
                change("round_timeout_ms_max", 100),
                change("round_timeout_ms_base", 80),
            ])
            .unwrap();
        assert_eq!(set.get(Param::RoundTimeoutMsBase), 80);
        assert_eq!(set.get(Param::RoundTimeoutMsMax), 100);
        assert_eq!(set.get_by_name("round_timeout_ms_max"), Some(100));
        assert_eq!(set.get_by_name("nope"), None);
    }

    #[test]
    fn too_many_changes_are_refused_before_looking_at_names() {
        let changes = vec![change("x", 1); limits::MAX_PARAM_CHANGES + 1];
        assert_eq!(
            ParamSet::default().with_changes(&changes),
            Err(GovError::TooManyEntries {
                what: "parameter changes",
                got: limits::MAX_PARAM_CHANGES + 1,
                limit: limits::MAX_PARAM_CHANGES,
            })
        );
    }

    #[test]
    fn serde_is_by_name_and_revalidates() {
        let set = ParamSet::default()
            .with_changes(&[change("fee_per_byte", 3)])
            .unwrap();
        let map: BTreeMap<String, u64> = set.clone().into();
        assert_eq!(map.len(), PARAM_COUNT);
        assert_eq!(map.get("fee_per_byte"), Some(&3));
        assert_eq!(ParamSet::try_from(map.clone()), Ok(set.clone()));
        // A partial map takes defaults for the rest.
        let partial = BTreeMap::from([("fee_per_byte".to_owned(), 3)]);
        assert_eq!(ParamSet::try_from(partial), Ok(set));
        let mut bad = map.clone();
        bad.insert("bogus".into(), 1);
        assert!(matches!(
            ParamSet::try_from(bad),
            Err(GovError::UnknownParam { .. })
        ));
        let mut bad = map;
        bad.insert("slash_permille".into(), 1001);
        assert!(matches!(
            ParamSet::try_from(bad),
            Err(GovError::ParamOutOfRange { .. })
        ));
        assert_eq!(ParamSet::default().check(), Ok(()));
    }
}
