//! Deterministic cluster simulator and the `commons-sim` CLI (issue 8). Not built yet.
