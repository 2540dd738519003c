//! Vote options and weighted split votes (as in Cosmos SDK v0.46+), and how
//! one voter's power is divided among the options.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{GovError, limits};

/// The four options; the discriminants are the numbers used on the wire
/// (`commons.v1.WeightedOption.option`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum VoteOption {
    Yes = 1,
    No = 2,
    Abstain = 3,
    NoWithVeto = 4,
}

impl VoteOption {
    pub const ALL: [VoteOption; 4] = [
        VoteOption::Yes,
        VoteOption::No,
        VoteOption::Abstain,
        VoteOption::NoWithVeto,
    ];

    pub fn from_wire(option: u32) -> Result<VoteOption, GovError> {
        match option {
            1 => Ok(VoteOption::Yes),
            2 => Ok(VoteOption::No),
            3 => Ok(VoteOption::Abstain),
            4 => Ok(VoteOption::NoWithVeto),
            got => Err(GovError::UnknownVoteOption { got }),
        }
    }

    pub fn to_wire(self) -> u32 {
        self as u32
    }

    /// Position in [`VoteOption::ALL`] and in [`WeightedVote::split`]'s
    /// result.
    fn index(self) -> usize {
        self as usize - 1
    }
}

impl fmt::Display for VoteOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VoteOption::Yes => "yes",
            VoteOption::No => "no",
            VoteOption::Abstain => "abstain",
            VoteOption::NoWithVeto => "no-with-veto",
        })
    }
}

/// A vote: 1 to 4 options, each at most once, each with a weight of 1 to
/// 1000 permille, the weights summing to exactly 1000. Kept sorted by option,
/// so equal votes compare and serialize equal. The invariants hold for every
/// value of this type (serde re-checks them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<(VoteOption, u16)>", into = "Vec<(VoteOption, u16)>")]
pub struct WeightedVote {
    entries: Vec<(VoteOption, u16)>,
}

impl WeightedVote {
    /// The whole power on one option.
    pub fn single(option: VoteOption) -> WeightedVote {
        WeightedVote {
            entries: vec![(option, limits::PERMILLE as u16)],
        }
    }

    /// A split vote, checked.
    pub fn new(entries: &[(VoteOption, u16)]) -> Result<WeightedVote, GovError> {
        Self::from_wire(entries.iter().map(|&(o, w)| (o.to_wire(), u32::from(w))))
    }

    /// A vote from the wire's `(option, weight_permille)` pairs. Refuses more
    /// than [`limits::MAX_VOTE_OPTIONS`] entries before collecting them.
    pub fn from_wire(
        options: impl IntoIterator<Item = (u32, u32)>,
    ) -> Result<WeightedVote, GovError> {
        let mut weights = [0u16; 4];
        let mut count = 0usize;
        let mut sum: u64 = 0;
        for (raw_option, raw_weight) in options {
            count += 1;
            if count > limits::MAX_VOTE_OPTIONS {
                return Err(GovError::TooManyEntries {
                    what: "vote options",
                    got: count,
                    limit: limits::MAX_VOTE_OPTIONS,
                });
            }
            let option = VoteOption::from_wire(raw_option)?;
            let weight = u16::try_from(raw_weight)
                .ok()
                .filter(|w| (1..=limits::PERMILLE).contains(&u64::from(*w)))
                .ok_or(GovError::BadVoteWeight {
                    option: raw_option,
                    weight: raw_weight,
                })?;
            let slot = &mut weights[option.index()];
            if *slot != 0 {
                return Err(GovError::DuplicateVoteOption { option: raw_option });
            }
            *slot = weight;
            sum += u64::from(weight);
        }
        if sum != limits::PERMILLE {
            return Err(GovError::VoteWeightSum { sum });
        }
        let entries = VoteOption::ALL
            .iter()
            .zip(weights)
            .filter(|&(_, w)| w != 0)
            .map(|(&o, w)| (o, w))
            .collect();
        Ok(WeightedVote { entries })
    }

    /// The `(option, weight_permille)` entries, sorted by option.
    pub fn entries(&self) -> &[(VoteOption, u16)] {
        &self.entries
    }

    /// Divides `power` among the options, indexed as [`VoteOption::ALL`]
    /// (yes, no, abstain, no-with-veto).
    ///
    /// Rounding: each entry first gets `floor(power * weight / 1000)`
    /// (computed in u128); the remainder `power - sum` (fewer than the number
    /// of entries, so at most 3) goes to the entry with the largest weight,
    /// the earliest option among equal weights. So the parts always sum to
    /// exactly `power` — a voter is counted in full, never more — and no part
    /// differs from its exact share by 1 or more, except the largest, by
    /// less than the number of entries.
    pub fn split(&self, power: u64) -> [u64; 4] {
        let mut parts = [0u64; 4];
        let mut counted: u64 = 0;
        for &(option, weight) in &self.entries {
            let share = u128::from(power) * u128::from(weight) / u128::from(limits::PERMILLE);
            // weight <= 1000, so the share is at most `power`.
            let share = u64::try_from(share).unwrap_or(power);
            parts[option.index()] = share;
            counted = counted.saturating_add(share);
        }
        let mut largest: Option<(VoteOption, u16)> = None;
        for &(option, weight) in &self.entries {
            if largest.is_none_or(|(_, w)| weight > w) {
                largest = Some((option, weight));
            }
        }
        if let Some((option, _)) = largest {
            // Sum of floors never exceeds `power` (weights sum to 1000).
            let remainder = power.saturating_sub(counted);
            parts[option.index()] = parts[option.index()].saturating_add(remainder);
        }
        parts
    }
}

impl TryFrom<Vec<(VoteOption, u16)>> for WeightedVote {
    type Error = GovError;
    fn try_from(entries: Vec<(VoteOption, u16)>) -> Result<WeightedVote, GovError> {
        WeightedVote::new(&entries)
    }
}

impl From<WeightedVote> for Vec<(VoteOption, u16)> {
    fn from(vote: WeightedVote) -> Vec<(VoteOption, u16)> {
        vote.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use VoteOption::*;

    #[test]
    fn votes_are_checked_by_table() {
        // (wire entries, expected)
        type Case = (Vec<(u32, u32)>, Result<Vec<(VoteOption, u16)>, GovError>);
        let cases: Vec<Case> = vec![
            (vec![(1, 1000)], Ok(vec![(Yes, 1000)])),
            (
                vec![(3, 300), (1, 700)],
                Ok(vec![(Yes, 700), (Abstain, 300)]),
            ),
            (
                vec![(1, 250), (2, 250), (3, 250), (4, 250)],
                Ok(vec![
                    (Yes, 250),
                    (No, 250),
                    (Abstain, 250),
                    (NoWithVeto, 250),
                ]),
            ),
            (vec![], Err(GovError::VoteWeightSum { sum: 0 })),
            (vec![(1, 999)], Err(GovError::VoteWeightSum { sum: 999 })),
            (
                vec![(1, 700), (2, 301)],
                Err(GovError::VoteWeightSum { sum: 1001 }),
            ),
            (vec![(5, 1000)], Err(GovError::UnknownVoteOption { got: 5 })),
            (vec![(0, 1000)], Err(GovError::UnknownVoteOption { got: 0 })),
            (
                vec![(1, 500), (1, 500)],
                Err(GovError::DuplicateVoteOption { option: 1 }),
            ),
            (
                vec![(1, 1000), (2, 0)],
                Err(GovError::BadVoteWeight {
                    option: 2,
                    weight: 0,
                }),
            ),
            (
                vec![(1, 66_536)],
                Err(GovError::BadVoteWeight {
                    option: 1,
                    weight: 66_536,
                }),
            ),
            (
                vec![(1, 200), (2, 200), (3, 200), (4, 200), (1, 200)],
                Err(GovError::TooManyEntries {
                    what: "vote options",
                    got: 5,
                    limit: 4,
                }),
            ),
        ];
        for (wire, expected) in cases {
            let got = WeightedVote::from_wire(wire.clone()).map(|v| v.entries().to_vec());
            assert_eq!(got, expected, "{wire:?}");
        }
    }

    #[test]
    fn split_counts_the_voter_in_full() {
        let v = |e: &[(VoteOption, u16)]| WeightedVote::new(e).unwrap();
        // (vote, power, expected [yes, no, abstain, veto])
        let cases = [
            (v(&[(Yes, 700), (Abstain, 300)]), 1000, [700, 0, 300, 0]),
            (v(&[(Yes, 700), (Abstain, 300)]), 10, [7, 0, 3, 0]),
            // floor(0.7) = 0, floor(0.3) = 0; the 1 goes to yes, the larger.
            (v(&[(Yes, 700), (Abstain, 300)]), 1, [1, 0, 0, 0]),
            // Three equal thirds: floors 0,0,0 plus remainder 2 to the
            // earliest option among the largest weights. Weights are
            // 333/333/334: abstain is largest.
            (v(&[(Yes, 333), (No, 333), (Abstain, 334)]), 2, [0, 0, 2, 0]),
            (
                v(&[(Yes, 333), (No, 333), (Abstain, 334)]),
                1000,
                [333, 333, 334, 0],
            ),
            // Equal weights: the earliest option takes the remainder.
            (v(&[(No, 500), (NoWithVeto, 500)]), 3, [0, 2, 0, 1]),
            (
                WeightedVote::single(NoWithVeto),
                u64::MAX,
                [0, 0, 0, u64::MAX],
            ),
            (
                v(&[(Yes, 1), (No, 999)]),
                u64::MAX,
                [u64::MAX / 1000, u64::MAX - u64::MAX / 1000, 0, 0],
            ),
            (v(&[(Yes, 500), (No, 500)]), 0, [0, 0, 0, 0]),
        ];
        for (vote, power, expected) in cases {
            let parts = vote.split(power);
            assert_eq!(parts, expected, "{vote:?} {power}");
            assert_eq!(
                parts.iter().map(|&p| u128::from(p)).sum::<u128>(),
                u128::from(power)
            );
        }
    }

    #[test]
    fn wire_numbers_match_the_proto() {
        for option in VoteOption::ALL {
            assert_eq!(VoteOption::from_wire(option.to_wire()), Ok(option));
        }
        assert_eq!(Yes.to_wire(), 1);
        assert_eq!(NoWithVeto.to_wire(), 4);
    }
}
