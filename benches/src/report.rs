//! What one `commons-bench` run measured: one JSON object, or a table.

use serde::Serialize;

/// The result of one run. Counts are of settlements; `*_pct` CPU figures
/// are percent of one core (200 = two cores busy) except
/// `cpu_machine_busy_pct`, which is the busy share of all cores.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    pub validators: usize,
    pub endpoints: usize,
    pub cores: usize,
    pub duration_s: f64,
    /// The fixed offered rate; `None` at saturation (as fast as accepted).
    pub target_rate_per_s: Option<f64>,
    /// Distinct settlements sent at least once.
    pub submitted: u64,
    /// Settlements the node admitted to its mempool.
    pub accepted: u64,
    /// Settlements refused for good (invalid, duplicate).
    pub rejected: u64,
    pub rejected_invalid: u64,
    pub rejected_duplicate: u64,
    /// Sent, but the last answer was "mempool full" or "nonce too far" and
    /// the run ended before a retry was accepted (or no answer came).
    pub unresolved: u64,
    /// "Mempool full" and "nonce too far" answers: back-pressure, retried.
    pub backpressure_answers: u64,
    /// Committed settlements seen within the measured window.
    pub committed: u64,
    /// Committed in the window and while draining after it.
    pub committed_total: u64,
    /// Accepted but not seen committed by the end of the drain.
    pub uncommitted: u64,
    pub committed_per_s: f64,
    /// Parallel batch verification rate ÷ (validators × 2 signatures).
    pub ceiling_per_s: f64,
    pub verify_sigs_per_s: f64,
    /// `committed_per_s ÷ ceiling_per_s`.
    pub ratio_to_ceiling: f64,
    /// The same timing repeated after the run has drained: the two
    /// readings bracket the window, since the machine's rate drifts.
    pub ceiling_after_per_s: f64,
    pub verify_sigs_per_s_after: f64,
    /// Submission to finality (first send until seen in a committed block
    /// on the Subscribe stream), of every settlement seen committed.
    pub latency_ms_p50: Option<f64>,
    pub latency_ms_p90: Option<f64>,
    pub latency_ms_p99: Option<f64>,
    pub latency_ms_max: Option<f64>,
    /// The latency in two parts, split at the timestamp of the block that
    /// committed the settlement (its leader's clock when it proposed):
    /// submission to that proposal (admission, gossip, waiting for a
    /// leader), and that proposal to finality (votes, the certifying child,
    /// execution, delivery). Percentiles of each part separately.
    pub to_block_ms_p50: Option<f64>,
    pub to_block_ms_p99: Option<f64>,
    pub block_to_final_ms_p50: Option<f64>,
    pub block_to_final_ms_p99: Option<f64>,
    /// Committed blocks seen in the window and their mean size.
    pub blocks: u64,
    pub txs_per_block: f64,
    pub cpu_nodes_pct: Option<f64>,
    pub cpu_node_pct: Vec<Option<f64>>,
    pub cpu_bench_pct: Option<f64>,
    pub cpu_machine_busy_pct: Option<f64>,
    /// The pre-signed settlements ran out before the window ended.
    pub corpus_exhausted: bool,
    /// The first refusal or stream error messages, for diagnosis.
    pub errors: Vec<String>,
    /// Latency by the second of the window in which settlements were first
    /// sent (`--timeline`): whether a tail is spread or a few stalls.
    #[serde(skip)]
    pub timeline: Vec<TimelineRow>,
}

/// The settlements first sent in one second of the window that were seen
/// committed, and their latency.
#[derive(Clone, Debug, PartialEq)]
pub struct TimelineRow {
    /// Whole seconds from the window's start.
    pub second: u64,
    pub committed: u64,
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
    pub latency_ms_max: f64,
    pub to_block_ms_p99: f64,
}

/// The timeline of `samples`: (sent, µs from the window's start; latency
/// ms; submission to proposal ms). Samples sent before the window are left
/// out; rows are by second, in order, seconds with nothing committed absent.
pub fn timeline(samples: &[(u64, f64, f64)]) -> Vec<TimelineRow> {
    let mut by_second: std::collections::BTreeMap<u64, (Vec<f64>, Vec<f64>)> =
        std::collections::BTreeMap::new();
    for &(sent_us, latency_ms, to_block_ms) in samples {
        let entry = by_second.entry(sent_us / 1_000_000).or_default();
        entry.0.push(latency_ms);
        entry.1.push(to_block_ms);
    }
    by_second
        .into_iter()
        .map(|(second, (mut latency, mut to_block))| {
            latency.sort_by(f64::total_cmp);
            to_block.sort_by(f64::total_cmp);
            let p = |v: &[f64], q: f64| crate::stats::percentile(v, q).unwrap_or(0.0);
            TimelineRow {
                second,
                committed: latency.len() as u64,
                latency_ms_p50: p(&latency, 50.0),
                latency_ms_p99: p(&latency, 99.0),
                latency_ms_max: latency.last().copied().unwrap_or(0.0),
                to_block_ms_p99: p(&to_block, 99.0),
            }
        })
        .collect()
}

/// The timeline as CSV with a header line.
pub fn timeline_csv(rows: &[TimelineRow]) -> String {
    let mut out = String::from(
        "second,committed,latency_ms_p50,latency_ms_p99,latency_ms_max,to_block_ms_p99\n",
    );
    for r in rows {
        out.push_str(&format!(
            "{},{},{:.1},{:.1},{:.1},{:.1}\n",
            r.second,
            r.committed,
            r.latency_ms_p50,
            r.latency_ms_p99,
            r.latency_ms_max,
            r.to_block_ms_p99
        ));
    }
    out
}

impl Report {
    pub fn to_json(&self) -> String {
        // A struct of numbers, options and strings always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The human-readable table.
    pub fn to_table(&self) -> String {
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1} ms"));
        let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}%"));
        let mut rows: Vec<(String, String)> = vec![
            (
                "load".into(),
                match self.target_rate_per_s {
                    Some(r) => format!("fixed rate {r:.0}/s"),
                    None => "saturation (as fast as accepted)".into(),
                },
            ),
            (
                "validators / endpoints / cores".into(),
                format!("{} / {} / {}", self.validators, self.endpoints, self.cores),
            ),
            ("window".into(), format!("{:.1} s", self.duration_s)),
            (
                "submitted / accepted".into(),
                format!("{} / {}", self.submitted, self.accepted),
            ),
            (
                "rejected (invalid / duplicate)".into(),
                format!(
                    "{} ({} / {})",
                    self.rejected, self.rejected_invalid, self.rejected_duplicate
                ),
            ),
            (
                "back-pressure answers / unresolved".into(),
                format!("{} / {}", self.backpressure_answers, self.unresolved),
            ),
            (
                "committed in window / after drain".into(),
                format!(
                    "{} / {} ({} uncommitted)",
                    self.committed, self.committed_total, self.uncommitted
                ),
            ),
            (
                "committed per second".into(),
                format!("{:.0}/s", self.committed_per_s),
            ),
            (
                "ceiling (verify rate ÷ 2·validators)".into(),
                format!(
                    "{:.0}/s ({:.0} sig/s)",
                    self.ceiling_per_s, self.verify_sigs_per_s
                ),
            ),
            (
                "ceiling timed after the run".into(),
                format!(
                    "{:.0}/s ({:.0} sig/s)",
                    self.ceiling_after_per_s, self.verify_sigs_per_s_after
                ),
            ),
            (
                "ratio to ceiling".into(),
                format!("{:.1}%", self.ratio_to_ceiling * 100.0),
            ),
            (
                "latency p50 / p90 / p99 / max".into(),
                format!(
                    "{} / {} / {} / {}",
                    ms(self.latency_ms_p50),
                    ms(self.latency_ms_p90),
                    ms(self.latency_ms_p99),
                    ms(self.latency_ms_max)
                ),
            ),
            (
                "to proposal p50 / p99".into(),
                format!(
                    "{} / {}",
                    ms(self.to_block_ms_p50),
                    ms(self.to_block_ms_p99)
                ),
            ),
            (
                "proposal to final p50 / p99".into(),
                format!(
                    "{} / {}",
                    ms(self.block_to_final_ms_p50),
                    ms(self.block_to_final_ms_p99)
                ),
            ),
            (
                "blocks / settlements per block".into(),
                format!("{} / {:.0}", self.blocks, self.txs_per_block),
            ),
            (
                "CPU: nodes (each) / bench / machine".into(),
                format!(
                    "{} ({}) / {} / {} busy",
                    pct(self.cpu_nodes_pct),
                    self.cpu_node_pct
                        .iter()
                        .map(|p| pct(*p))
                        .collect::<Vec<_>>()
                        .join(" "),
                    pct(self.cpu_bench_pct),
                    pct(self.cpu_machine_busy_pct)
                ),
            ),
        ];
        if self.corpus_exhausted {
            rows.push((
                "note".into(),
                "pre-signed settlements ran out; raise --txs".into(),
            ));
        }
        for e in &self.errors {
            rows.push(("error".into(), e.clone()));
        }
        let width = rows
            .iter()
            .map(|(k, _)| k.chars().count())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for (k, v) in rows {
            let pad = width - k.chars().count();
            out.push_str(&format!("{k}{}  {v}\n", " ".repeat(pad)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_the_promised_fields() {
        let r = Report {
            validators: 4,
            duration_s: 30.0,
            committed_per_s: 1234.5,
            ceiling_per_s: 9000.0,
            latency_ms_p50: Some(12.0),
            latency_ms_p99: None,
            ..Report::default()
        };
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        for field in [
            "validators",
            "duration_s",
            "committed_per_s",
            "ceiling_per_s",
            "latency_ms_p50",
            "latency_ms_p99",
            "rejected",
        ] {
            assert!(v.get(field).is_some(), "missing {field}");
        }
        assert_eq!(v["validators"], 4);
        assert_eq!(v["committed_per_s"], 1234.5);
        assert!(v["latency_ms_p99"].is_null());
        assert!(!r.to_json().contains('\n'), "one line");
    }

    #[test]
    fn timeline_groups_by_second_sent() {
        // Second 0: latencies 10..=100 ms; second 2: one at 900 ms.
        let mut samples: Vec<(u64, f64, f64)> = (1..=10)
            .map(|i| (i * 50_000, f64::from(i as u32) * 10.0, 5.0))
            .collect();
        samples.push((2_300_000, 900.0, 700.0));
        let rows = timeline(&samples);
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!((rows[0].second, rows[0].committed), (0, 10));
        assert_eq!(rows[0].latency_ms_p50, 50.0);
        assert_eq!(rows[0].latency_ms_p99, 100.0);
        assert_eq!(rows[0].to_block_ms_p99, 5.0);
        assert_eq!((rows[1].second, rows[1].committed), (2, 1));
        assert_eq!(rows[1].latency_ms_max, 900.0);
        let csv = timeline_csv(&rows);
        assert_eq!(csv.lines().count(), 3);
        assert_eq!(csv.lines().nth(2), Some("2,1,900.0,900.0,900.0,700.0"));
        let json = Report {
            timeline: rows,
            ..Report::default()
        }
        .to_json();
        assert!(
            !json.contains("timeline"),
            "the timeline is not part of the JSON"
        );
    }

    #[test]
    fn table_lists_rates_and_latencies() {
        let r = Report {
            target_rate_per_s: Some(500.0),
            committed_per_s: 499.0,
            latency_ms_p99: Some(250.0),
            corpus_exhausted: true,
            ..Report::default()
        };
        let t = r.to_table();
        assert!(t.contains("fixed rate 500/s"), "{t}");
        assert!(t.contains("499/s"), "{t}");
        assert!(t.contains("250.0 ms"), "{t}");
        assert!(t.contains("raise --txs"), "{t}");
    }
}
