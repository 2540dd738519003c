//! `commons-bench` against a real 4-validator devnet (separate processes,
//! RocksDB in a temporary directory) for a few seconds at a fixed rate: the
//! JSON has the promised fields and its counts add up.

#![allow(clippy::unwrap_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BENCH: &str = env!("CARGO_BIN_EXE_commons-bench");

/// `commons-node` is built beside `commons-bench` (same target directory,
/// same profile) by the workspace build.
fn node_bin() -> PathBuf {
    let bin = Path::new(BENCH).parent().unwrap().join("commons-node");
    assert!(
        bin.exists(),
        "{} is missing: build the whole workspace",
        bin.display()
    );
    bin
}

/// Validator processes, killed when the test ends however it ends.
struct Nodes(Vec<Child>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A base port whose 4 validators' 3 ports each are free now.
fn free_base_port() -> u16 {
    let seed = u64::from(std::process::id()) * 7919 % 200;
    for attempt in 0..200u64 {
        let base = 30_000 + ((seed + attempt * 37) % 200) * 120;
        let free = (0..4u64).all(|i| {
            (0..3u64).all(|k| TcpListener::bind(("127.0.0.1", (base + 10 * i + k) as u16)).is_ok())
        });
        if free {
            return base as u16;
        }
    }
    panic!("no free port range");
}

fn logs(net: &Path) -> String {
    (0..4)
        .map(|i| {
            let text =
                std::fs::read_to_string(net.join(format!("node{i}/node.log"))).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(8).collect();
            format!(
                "--- node{i}\n{}\n",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )
        })
        .collect()
}

#[test]
fn bench_reports_commits_against_a_real_devnet() {
    let node = node_bin();
    let dir = tempfile::tempdir().unwrap();
    let net = dir.path().join("net");
    let status = Command::new(&node)
        .args([
            "devnet",
            "--init-only",
            "--validators",
            "4",
            "--accounts",
            "48",
        ])
        .arg("--dir")
        .arg(&net)
        .args(["--base-port", &free_base_port().to_string()])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "devnet --init-only failed");
    let mut nodes = Nodes(Vec::new());
    for i in 0..4 {
        let home = net.join(format!("node{i}"));
        let log = std::fs::File::create(home.join("node.log")).unwrap();
        nodes.0.push(
            Command::new(&node)
                .arg("start")
                .arg("--home")
                .arg(&home)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }

    let out_path = dir.path().join("bench.json");
    let err_path = dir.path().join("bench.err");
    let mut bench = Command::new(BENCH)
        .arg("--devnet-dir")
        .arg(&net)
        .args(["--duration", "4", "--rate", "300", "--accounts", "32"])
        .args([
            "--first-account",
            "8",
            "--txs",
            "3000",
            "--max-pending",
            "2000",
        ])
        .args(["--ceiling-s", "0.3", "--drain-s", "10", "--json", "--quiet"])
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = bench.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = bench.kill();
            panic!("commons-bench did not finish within 60 s\n{}", logs(&net));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = std::fs::read_to_string(&err_path).unwrap();
    assert!(
        status.success(),
        "commons-bench failed:\n{stderr}\n{}",
        logs(&net)
    );
    let stdout = std::fs::read_to_string(&out_path).unwrap();
    assert_eq!(stdout.lines().count(), 1, "one JSON line: {stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();

    for field in [
        "validators",
        "duration_s",
        "committed_per_s",
        "ceiling_per_s",
        "latency_ms_p50",
        "latency_ms_p99",
        "rejected",
    ] {
        assert!(v.get(field).is_some(), "missing {field}: {stdout}");
    }
    let n = |f: &str| {
        v[f].as_f64()
            .unwrap_or_else(|| panic!("{f} is not a number: {stdout}"))
    };
    assert_eq!(n("validators"), 4.0);
    assert!(n("duration_s") >= 4.0, "{stdout}");
    assert!(
        n("committed_per_s") > 0.0,
        "nothing committed: {stdout}\n{stderr}"
    );
    assert!(n("ceiling_per_s") > 0.0, "{stdout}");
    // Timed again after the run, on the same corpus: a reading, and the
    // same conversion from signatures to settlements (to within JSON's
    // float parsing, which may be one unit in the last place off).
    assert!(n("verify_sigs_per_s_after") > 0.0, "{stdout}");
    let expected = n("verify_sigs_per_s_after") / 8.0;
    assert!(
        (n("ceiling_after_per_s") - expected).abs() <= expected * 1e-12,
        "{stdout}"
    );
    assert_eq!(v["target_rate_per_s"].as_f64(), Some(300.0));

    // Every settlement sent has one fate; committed ones were accepted.
    assert!(n("submitted") > 0.0);
    assert_eq!(
        n("submitted"),
        n("accepted") + n("rejected") + n("unresolved"),
        "{stdout}"
    );
    assert_eq!(
        n("rejected"),
        n("rejected_invalid") + n("rejected_duplicate")
    );
    assert_eq!(n("rejected"), 0.0, "valid settlements refused: {stdout}");
    assert!(n("committed") <= n("committed_total"), "{stdout}");
    assert_eq!(
        n("committed_total") + n("uncommitted"),
        n("accepted"),
        "{stdout}"
    );
    // At 300/s for 4 s the network keeps up: nearly everything commits.
    assert!(n("submitted") >= 1000.0, "{stdout}");
    assert_eq!(n("uncommitted"), 0.0, "{stdout}");
    assert!(n("latency_ms_p50") > 0.0);
    assert!(n("latency_ms_p50") <= n("latency_ms_p99"));
    assert!(n("latency_ms_p99") <= n("latency_ms_max"));
    assert!(n("ratio_to_ceiling") > 0.0);

    // The validators' processes were found from the devnet directory.
    let per_node = v["cpu_node_pct"].as_array().unwrap();
    assert_eq!(per_node.len(), 4, "{stdout}");
    assert!(
        per_node.iter().all(|p| p.as_f64().is_some_and(|p| p > 0.0)),
        "{stdout}"
    );
    assert!(n("cpu_bench_pct") >= 0.0);
    drop(nodes);
}
