//! Criterion micro-benchmarks live in `benches/`; the `commons-bench` load generator arrives with issue 11.
