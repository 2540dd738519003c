//! The network model: per-link latency, loss, duplication, reordering,
//! partitions (random, scheduled, asymmetric) and bandwidth. Before GST any
//! of these may hold; after it the network is synchronous: every message
//! arrives within the link's base latency plus half of it (plus a slow
//! receiver's processing delay).

use std::collections::{BTreeMap, BTreeSet};

use rand_chacha::ChaCha8Rng;

use crate::byzantine::below;

/// Messages above this size skip the bandwidth queue: they are refused on
/// arrival anyway and would otherwise block a link for minutes.
const BANDWIDTH_SIZE_MAX: usize = 1 << 20;

#[derive(Debug)]
pub struct Network {
    /// Base one-way latency of each link, `[from][to]`, in ms.
    base_ms: Vec<Vec<u64>>,
    /// Side of each node while a partition holds.
    pub partition: Option<Vec<u8>>,
    /// One-way cuts: messages from `.0` to `.1` are lost.
    pub cuts: BTreeSet<(usize, usize)>,
    /// When each link's bandwidth queue is free again.
    link_free_ms: BTreeMap<(usize, usize), u64>,
    pub loss_permille: u64,
    pub duplicate_permille: u64,
    pub reorder: bool,
    /// Bytes per ms per link, if limited.
    pub bandwidth: Option<u64>,
    /// Extra delay before a node processes what it receives.
    pub slow_ms: Vec<u64>,
}

/// When (and whether) one copy of a message arrives.
#[derive(Debug)]
pub struct Arrivals {
    pub at_ms: Vec<u64>,
}

impl Network {
    pub fn new(rng: &mut ChaCha8Rng, nodes: usize) -> Network {
        let base_ms = (0..nodes)
            .map(|_| (0..nodes).map(|_| 5 + below(rng, 36)).collect())
            .collect();
        Network {
            base_ms,
            partition: None,
            cuts: BTreeSet::new(),
            link_free_ms: BTreeMap::new(),
            loss_permille: 0,
            duplicate_permille: 0,
            reorder: false,
            bandwidth: None,
            slow_ms: vec![0; nodes],
        }
    }

    /// The network from GST on: no loss, no partitions, bounded delay.
    pub fn stabilize(&mut self) {
        self.partition = None;
        self.cuts.clear();
        self.loss_permille = 0;
        self.duplicate_permille = 0;
        self.reorder = false;
        self.bandwidth = None;
        self.link_free_ms.clear();
    }

    pub fn connected(&self, from: usize, to: usize) -> bool {
        if self.cuts.contains(&(from, to)) {
            return false;
        }
        match &self.partition {
            Some(sides) => sides.get(from) == sides.get(to),
            None => true,
        }
    }

    /// The arrival times of a message of `len` bytes sent now (none if lost).
    pub fn send(
        &mut self,
        rng: &mut ChaCha8Rng,
        now_ms: u64,
        from: usize,
        to: usize,
        len: usize,
    ) -> Arrivals {
        let mut at_ms = Vec::new();
        if !self.connected(from, to) || below(rng, 1000) < self.loss_permille {
            return Arrivals { at_ms };
        }
        let copies = if below(rng, 1000) < self.duplicate_permille {
            2
        } else {
            1
        };
        let base = self.base_ms[from][to];
        let mut depart = now_ms;
        if let Some(bytes_per_ms) = self.bandwidth
            && len <= BANDWIDTH_SIZE_MAX
        {
            let free = self.link_free_ms.entry((from, to)).or_insert(0);
            depart = depart.max(*free) + (len as u64) / bytes_per_ms.max(1);
            *free = depart;
        }
        for _ in 0..copies {
            let mut latency = base + below(rng, base / 2 + 1);
            if self.reorder && below(rng, 5) == 0 {
                latency += below(rng, 300);
            }
            at_ms.push(depart + latency + self.slow_ms[to]);
        }
        Arrivals { at_ms }
    }
}
