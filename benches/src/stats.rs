//! Latency percentiles and CPU accounting from `/proc`.

use std::path::{Path, PathBuf};

/// The `p`-th percentile (0..=100) of `sorted` by the nearest-rank method:
/// the smallest value with at least `p`% of the values at or below it.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Clock ticks per second of `/proc/<pid>/stat`'s times (`getconf
/// CLK_TCK`); 100 on every Linux this runs on, asked for anyway.
pub fn clock_ticks_per_s() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// User plus system time of a process so far, in clock ticks, from the
/// text of `/proc/<pid>/stat`. The command name (field 2) is in parentheses
/// and may hold spaces, so fields are counted from its closing parenthesis.
pub fn parse_process_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state (3), ppid (4) ... utime is field 14, stime 15.
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

/// Busy and total ticks of all cores from the text of `/proc/stat`.
pub fn parse_machine_ticks(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    let total: u64 = values.iter().sum();
    // idle (4th) and iowait (5th) are not busy.
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

pub fn process_ticks(pid: u32) -> Option<u64> {
    parse_process_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

pub fn self_ticks() -> Option<u64> {
    parse_process_ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

pub fn machine_ticks() -> Option<(u64, u64)> {
    parse_machine_ticks(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// CPU times at one instant: each watched process, this process and the
/// machine.
#[derive(Clone, Debug)]
pub struct CpuSnapshot {
    pub nodes: Vec<Option<u64>>,
    pub bench: Option<u64>,
    pub machine: Option<(u64, u64)>,
}

impl CpuSnapshot {
    pub fn take(pids: &[u32]) -> CpuSnapshot {
        CpuSnapshot {
            nodes: pids.iter().map(|p| process_ticks(*p)).collect(),
            bench: self_ticks(),
            machine: machine_ticks(),
        }
    }
}

/// CPU use between two snapshots, in percent of one core (200 = two cores
/// busy), and the machine's busy share of all its cores.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CpuUse {
    /// Per watched process, `None` if it could not be read at both ends.
    pub nodes_pct: Vec<Option<f64>>,
    pub bench_pct: Option<f64>,
    pub machine_busy_pct: Option<f64>,
}

impl CpuUse {
    pub fn between(a: &CpuSnapshot, b: &CpuSnapshot, seconds: f64, ticks_per_s: f64) -> CpuUse {
        let pct = |x: Option<u64>, y: Option<u64>| match (x, y) {
            (Some(x), Some(y)) if seconds > 0.0 => {
                Some(y.saturating_sub(x) as f64 / ticks_per_s / seconds * 100.0)
            }
            _ => None,
        };
        CpuUse {
            nodes_pct: a
                .nodes
                .iter()
                .zip(&b.nodes)
                .map(|(x, y)| pct(*x, *y))
                .collect(),
            bench_pct: pct(a.bench, b.bench),
            machine_busy_pct: match (a.machine, b.machine) {
                (Some((busy_a, total_a)), Some((busy_b, total_b))) if total_b > total_a => {
                    Some(busy_b.saturating_sub(busy_a) as f64 / (total_b - total_a) as f64 * 100.0)
                }
                _ => None,
            },
        }
    }

    /// Sum over the watched processes that could be read.
    pub fn nodes_total_pct(&self) -> Option<f64> {
        let read: Vec<f64> = self.nodes_pct.iter().flatten().copied().collect();
        if read.is_empty() {
            None
        } else {
            Some(read.iter().sum())
        }
    }
}

/// Processes running `commons-node start --home H` for each home in
/// `homes`, found by their command lines in `/proc`; `None` where none runs.
pub fn find_node_pids(homes: &[PathBuf]) -> Vec<Option<u32>> {
    let wanted: Vec<Option<PathBuf>> = homes.iter().map(|h| h.canonicalize().ok()).collect();
    let mut found = vec![None; homes.len()];
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let Some(home) = start_home(&cmdline) else {
            continue;
        };
        // A relative --home is relative to that process's directory.
        let home = if home.is_absolute() {
            home
        } else {
            match std::fs::read_link(entry.path().join("cwd")) {
                Ok(cwd) => cwd.join(home),
                Err(_) => continue,
            }
        };
        let Ok(home) = home.canonicalize() else {
            continue;
        };
        for (slot, w) in found.iter_mut().zip(&wanted) {
            if w.as_deref() == Some(home.as_path()) && slot.is_none() {
                *slot = Some(pid);
            }
        }
    }
    found
}

/// The `--home` of a `commons-node start` command line (NUL-separated).
pub fn start_home(cmdline: &[u8]) -> Option<PathBuf> {
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let exe = Path::new(std::str::from_utf8(args.first()?).ok()?);
    if exe.file_name()? != "commons-node" || args.get(1)? != b"start" {
        return None;
    }
    let at = args.iter().position(|a| *a == b"--home")?;
    let home = std::str::from_utf8(args.get(at + 1)?).ok()?;
    (!home.is_empty()).then(|| PathBuf::from(home))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 90.0), Some(90.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 50.0), Some(2.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn process_ticks_skip_a_name_with_spaces() {
        let stat = "4242 (commons node) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    250 75 0 0 20 0 9 0 123 456 789";
        assert_eq!(parse_process_ticks(stat), Some(325));
        assert_eq!(parse_process_ticks("12 (x) S 1"), None);
        assert_eq!(parse_process_ticks("no parenthesis"), None);
    }

    #[test]
    fn machine_ticks_count_idle_and_iowait_as_not_busy() {
        let stat = "cpu  100 5 50 800 40 0 5 0 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n";
        assert_eq!(parse_machine_ticks(stat), Some((160, 1000)));
        assert_eq!(parse_machine_ticks("intr 5\n"), None);
    }

    #[test]
    fn cpu_use_between_snapshots() {
        let a = CpuSnapshot {
            nodes: vec![Some(100), None],
            bench: Some(10),
            machine: Some((500, 1000)),
        };
        let b = CpuSnapshot {
            nodes: vec![Some(300), Some(5)],
            bench: Some(60),
            machine: Some((900, 1400)),
        };
        let u = CpuUse::between(&a, &b, 2.0, 100.0);
        assert_eq!(u.nodes_pct, vec![Some(100.0), None]);
        assert_eq!(u.bench_pct, Some(25.0));
        assert_eq!(u.machine_busy_pct, Some(100.0));
        assert_eq!(u.nodes_total_pct(), Some(100.0));
    }

    #[test]
    fn own_process_is_readable() {
        assert!(self_ticks().is_some());
        assert!(machine_ticks().is_some());
        assert!(clock_ticks_per_s() > 0.0);
    }

    #[test]
    fn start_home_of_node_command_lines() {
        assert_eq!(
            start_home(b"/x/commons-node\0start\0--home\0/tmp/net/node0\0"),
            Some(PathBuf::from("/tmp/net/node0"))
        );
        assert_eq!(start_home(b"commons-node\0devnet\0--dir\0d\0"), None);
        assert_eq!(start_home(b"/bin/sh\0start\0--home\0/h\0"), None);
        assert_eq!(start_home(b"commons-node\0start\0--home\0"), None);
        assert_eq!(start_home(b""), None);
    }
}
