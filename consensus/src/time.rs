//! Time as the driver passes it in. The core has no clock.

use std::fmt;

/// Milliseconds on the driver's monotonic clock (the node's monotonic clock since
/// start, the simulator's virtual time). Only differences and comparisons
/// matter to the core, except for block timestamps, which the driver should
/// then feed from a clock all validators roughly share (Unix milliseconds).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Millis(pub u64);

impl Millis {
    pub const ZERO: Millis = Millis(0);

    /// `self + ms`, saturating: far-future deadlines stay far in the future.
    pub fn plus(self, ms: u64) -> Millis {
        Millis(self.0.saturating_add(ms))
    }

    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}
