//! The pacemaker: which round the replica is in, when that round times out,
//! and the timeout certificate it entered the round by.
//!
//! Rules (Jolteon, Gelashvili et al., FC 2022, Fig. 3 "Pacemaker"; DiemBFT
//! v4, "Pacemaker" and `advance_round`):
//!
//! - **Entering a round.** A replica enters round r on QC(r-1) or TC(r-1),
//!   from whatever message carries it, and never goes back: a certificate of
//!   a later round makes it jump ([`Pacemaker::enter`]). A round entered by a
//!   TC keeps that TC, since the leader must carry it in its proposal and a
//!   timeout of round r carries it to replicas that missed it
//!   ([`Pacemaker::tc_for`]).
//! - **The round timer.** Entering a round restarts its timer. The timer is
//!   `round_timeout_ms * 2^k`, k the rounds since the highest QC, capped by
//!   [`limits::MAX_BACKOFF_EXPONENT`] and `round_timeout_ms_max`
//!   ([`round_timeout_ms`]): it backs off while rounds fail and resets on
//!   progress (DiemBFT v4's exponential backoff). When it fires, the replica
//!   broadcasts a timeout (see [`crate::vote_keeper`] for the timeouts it
//!   collects); it fires again one period later if the round is still the
//!   same.
//! - **No clock inside.** Time comes in with each input; the timer is a
//!   deadline the driver reads through `Replica::poll_deadline`. The first
//!   input starts it ([`Pacemaker::start_clock`]), since building a replica
//!   has no `now`.
//! - **Epoch ends** stop the timer ([`Pacemaker::stop`]) until the next
//!   epoch starts at round 1 ([`Pacemaker::reset`]).

use commons_types::Round;

use crate::contract::Config;
use crate::message::TimeoutCert;
use crate::time::Millis;
use crate::{Reject, limits};

/// Rounds, deadlines and the TC of the previous round.
#[derive(Debug)]
pub(crate) struct Pacemaker {
    round: Round,
    deadline: Option<Millis>,
    /// The first input sets the deadline: building a replica has no `now`.
    deadline_pending: bool,
    /// The TC the current round was entered by, if it was.
    last_round_tc: Option<TimeoutCert>,
}

impl Pacemaker {
    pub(crate) fn new() -> Pacemaker {
        Pacemaker {
            round: Round::ZERO,
            deadline: None,
            deadline_pending: true,
            last_round_tc: None,
        }
    }

    pub(crate) fn round(&self) -> Round {
        self.round
    }

    pub(crate) fn deadline(&self) -> Option<Millis> {
        self.deadline
    }

    /// The TC the current round was entered by.
    pub(crate) fn last_round_tc(&self) -> Option<&TimeoutCert> {
        self.last_round_tc.as_ref()
    }

    /// The TC of the round before `round`, if the current round was entered
    /// by it: what a proposal or a timeout of `round` carries.
    pub(crate) fn tc_for(&self, round: Round) -> Option<TimeoutCert> {
        self.last_round_tc
            .clone()
            .filter(|tc| tc.round.next() == round)
    }

    /// The current round's timeout: the base doubled per round since the
    /// highest QC (zero while rounds succeed).
    pub(crate) fn timeout_ms(&self, config: &Config, highest_qc_round: Round) -> u64 {
        let failures = self
            .round
            .0
            .saturating_sub(highest_qc_round.0)
            .saturating_sub(1);
        round_timeout_ms(
            config.round_timeout_ms,
            config.round_timeout_ms_max,
            failures,
        )
    }

    /// On the first input: starts the timer unless `running` is false (the
    /// epoch has ended). Later calls do nothing.
    pub(crate) fn start_clock(
        &mut self,
        now: Millis,
        running: bool,
        config: &Config,
        highest_qc_round: Round,
    ) {
        if self.deadline_pending {
            self.deadline_pending = false;
            if running {
                self.deadline = Some(now.plus(self.timeout_ms(config, highest_qc_round)));
            }
        }
    }

    /// Whether the round timer has fired by `now`.
    pub(crate) fn is_due(&self, now: Millis) -> bool {
        self.deadline.is_some_and(|d| now >= d)
    }

    /// Restarts the round timer from `now` (after a timeout fired, or at the
    /// start of an epoch).
    pub(crate) fn restart_timer(&mut self, now: Millis, config: &Config, highest_qc_round: Round) {
        self.deadline = Some(now.plus(self.timeout_ms(config, highest_qc_round)));
    }

    /// Enters `round` if it is later than the current one, keeping the TC it
    /// was entered by; returns whether it did. The timer restarts unless the
    /// clock has not started yet (the first input starts it).
    pub(crate) fn enter(
        &mut self,
        round: Round,
        via_tc: Option<TimeoutCert>,
        now: Millis,
        config: &Config,
        highest_qc_round: Round,
    ) -> bool {
        if round <= self.round {
            return false;
        }
        self.round = round;
        self.last_round_tc = via_tc;
        if !self.deadline_pending {
            self.deadline = Some(now.plus(self.timeout_ms(config, highest_qc_round)));
        }
        true
    }

    /// Refuses a message of a round too far ahead of the current one to be
    /// kept (at most [`limits::MAX_FUTURE_ROUNDS`] ahead).
    pub(crate) fn check_window(&self, what: &'static str, round: Round) -> Result<(), Reject> {
        check_window(what, round, self.round)
    }

    /// The epoch ended: no round runs until the next one starts.
    pub(crate) fn stop(&mut self) {
        self.deadline = None;
    }

    /// A new epoch: rounds count from zero again, with no TC.
    pub(crate) fn reset(&mut self) {
        self.round = Round::ZERO;
        self.last_round_tc = None;
    }
}

/// Refuses a message of `round` if it is more than
/// [`limits::MAX_FUTURE_ROUNDS`] ahead of the `current` round.
pub(crate) fn check_window(what: &'static str, round: Round, current: Round) -> Result<(), Reject> {
    if round.0 > current.0.saturating_add(limits::MAX_FUTURE_ROUNDS) {
        return Err(Reject::RoundTooFarAhead {
            what,
            round,
            current,
        });
    }
    Ok(())
}

/// Pacemaker timeout: the base doubled per failed round, bounded (DiemBFT v4
/// "Pacemaker": exponential backoff; reset on a QC, since failures count
/// rounds since the highest QC).
pub(crate) fn round_timeout_ms(base_ms: u64, max_ms: u64, failures: u64) -> u64 {
    let exponent = failures.min(u64::from(limits::MAX_BACKOFF_EXPONENT)) as u32;
    base_ms.saturating_mul(1u64 << exponent).min(max_ms)
}

#[cfg(test)]
mod tests {
    use commons_types::{ChainId, Epoch};

    use super::*;

    fn config() -> Config {
        let mut c = Config::new(ChainId::new("pacemaker-test").expect("chain id"));
        c.round_timeout_ms = 100;
        c.round_timeout_ms_max = 1_000;
        c
    }

    fn tc(round: u64) -> TimeoutCert {
        TimeoutCert {
            epoch: Epoch::ZERO,
            round: Round(round),
            entries: Vec::new(),
        }
    }

    #[test]
    fn backoff_doubles_then_caps() {
        let cases: &[(u64, u64)] = &[
            (0, 100),
            (1, 200),
            (2, 400),
            (3, 800),
            (5, 3_200),
            (6, 5_000),
            (60, 5_000),
        ];
        for &(failures, expected) in cases {
            assert_eq!(
                round_timeout_ms(100, 5_000, failures),
                expected,
                "failures {failures}"
            );
        }
        assert_eq!(
            round_timeout_ms(100, u64::MAX, 1_000),
            100 << limits::MAX_BACKOFF_EXPONENT
        );
    }

    enum Op {
        Start {
            now: u64,
            running: bool,
        },
        Enter {
            round: u64,
            tc: Option<u64>,
            now: u64,
        },
        Restart {
            now: u64,
        },
        Stop,
        Reset,
    }

    struct Step {
        what: &'static str,
        op: Op,
        highest_qc_round: u64,
        /// Expected: whether `Enter` entered, then round, deadline, TC round.
        entered: Option<bool>,
        round: u64,
        deadline: Option<u64>,
        tc_round: Option<u64>,
    }

    #[test]
    fn rounds_and_deadlines_follow_the_rules() {
        use Op::*;
        let steps = [
            Step {
                what: "entering before the clock starts sets no deadline",
                op: Enter {
                    round: 1,
                    tc: None,
                    now: 0,
                },
                highest_qc_round: 0,
                entered: Some(true),
                round: 1,
                deadline: None,
                tc_round: None,
            },
            Step {
                what: "the first input starts the timer at the base timeout",
                op: Start {
                    now: 50,
                    running: true,
                },
                highest_qc_round: 0,
                entered: None,
                round: 1,
                deadline: Some(150),
                tc_round: None,
            },
            Step {
                what: "a later start does nothing",
                op: Start {
                    now: 90,
                    running: true,
                },
                highest_qc_round: 0,
                entered: None,
                round: 1,
                deadline: Some(150),
                tc_round: None,
            },
            Step {
                what: "QC(1) enters round 2 with a fresh base timer",
                op: Enter {
                    round: 2,
                    tc: None,
                    now: 120,
                },
                highest_qc_round: 1,
                entered: Some(true),
                round: 2,
                deadline: Some(220),
                tc_round: None,
            },
            Step {
                what: "never back to an earlier or the same round",
                op: Enter {
                    round: 2,
                    tc: Some(1),
                    now: 130,
                },
                highest_qc_round: 1,
                entered: Some(false),
                round: 2,
                deadline: Some(220),
                tc_round: None,
            },
            Step {
                what: "TC(2) enters round 3; one failed round doubles the timer",
                op: Enter {
                    round: 3,
                    tc: Some(2),
                    now: 300,
                },
                highest_qc_round: 1,
                entered: Some(true),
                round: 3,
                deadline: Some(500),
                tc_round: Some(2),
            },
            Step {
                what: "a jump over rounds backs off further, capped by the maximum",
                op: Enter {
                    round: 9,
                    tc: Some(8),
                    now: 1_000,
                },
                highest_qc_round: 1,
                entered: Some(true),
                round: 9,
                deadline: Some(2_000),
                tc_round: Some(8),
            },
            Step {
                what: "a fired timer restarts from now",
                op: Restart { now: 2_000 },
                highest_qc_round: 1,
                entered: None,
                round: 9,
                deadline: Some(3_000),
                tc_round: Some(8),
            },
            Step {
                what: "the epoch's end stops the timer",
                op: Stop,
                highest_qc_round: 1,
                entered: None,
                round: 9,
                deadline: None,
                tc_round: Some(8),
            },
            Step {
                what: "a new epoch counts rounds from zero, without a TC",
                op: Reset,
                highest_qc_round: 0,
                entered: None,
                round: 0,
                deadline: None,
                tc_round: None,
            },
        ];
        let config = config();
        let mut p = Pacemaker::new();
        for (k, s) in steps.into_iter().enumerate() {
            let hq = Round(s.highest_qc_round);
            let entered = match s.op {
                Start { now, running } => {
                    p.start_clock(Millis(now), running, &config, hq);
                    None
                }
                Enter { round, tc: t, now } => {
                    Some(p.enter(Round(round), t.map(tc), Millis(now), &config, hq))
                }
                Restart { now } => {
                    p.restart_timer(Millis(now), &config, hq);
                    None
                }
                Stop => {
                    p.stop();
                    None
                }
                Reset => {
                    p.reset();
                    None
                }
            };
            assert_eq!(entered, s.entered, "step {k}: {}", s.what);
            assert_eq!(p.round(), Round(s.round), "step {k}: {}", s.what);
            assert_eq!(p.deadline(), s.deadline.map(Millis), "step {k}: {}", s.what);
            assert_eq!(
                p.last_round_tc().map(|tc| tc.round.0),
                s.tc_round,
                "step {k}: {}",
                s.what
            );
        }
    }

    #[test]
    fn the_timer_is_due_at_its_deadline_and_the_tc_belongs_to_the_next_round() {
        let config = config();
        let mut p = Pacemaker::new();
        assert!(!p.is_due(Millis(1_000_000)), "no deadline, never due");
        p.start_clock(Millis(0), true, &config, Round::ZERO);
        assert!(!p.is_due(Millis(99)));
        assert!(p.is_due(Millis(100)));
        assert!(p.enter(Round(4), Some(tc(3)), Millis(0), &config, Round(2)));
        assert_eq!(p.tc_for(Round(4)).map(|t| t.round), Some(Round(3)));
        assert!(p.tc_for(Round(5)).is_none(), "TC(3) justifies round 4 only");
        let mut stopped = Pacemaker::new();
        stopped.start_clock(Millis(0), false, &config, Round::ZERO);
        assert_eq!(stopped.deadline(), None, "an ended epoch starts no timer");
    }
}
