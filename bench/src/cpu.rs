//! CPU time per process during a phase, from `/proc`: what each process of the pipeline spends
//! per response when all of them share the machine.

use std::collections::BTreeMap;

/// `/proc` reports CPU time in USER_HZ ticks, 100 a second on Linux whatever the kernel's HZ.
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU ticks (user + system) per process group, and the machine's busy and total ticks.
#[derive(Clone, Default)]
pub struct Snapshot {
    groups: BTreeMap<&'static str, u64>,
    busy: u64,
    total: u64,
}

/// The group a process belongs to, by its name (`comm`).
fn group(comm: &str) -> &'static str {
    match comm {
        "ingest" => "ingest",
        "validator" => "validator",
        "sheets-sync" => "sheets-sync",
        "beam.smp" | "erl_child_setup" | "epmd" => "RabbitMQ",
        "postgres" => "PostgreSQL",
        "mariadbd" | "mysqld" => "MariaDB",
        "wrk" => "wrk",
        "collect-bench" => "bench + emulator",
        _ => "other",
    }
}

/// Reads every process's CPU time now.
pub fn snapshot() -> Snapshot {
    let mut snapshot = Snapshot::default();
    // Children that have exited and been waited for (wrk, once it ends) are no longer in
    // `/proc`; their CPU time is in this process's children usage.
    if let Ok(usage) = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
    {
        let micros =
            |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64;
        let ticks = (micros(usage.user_time()) + micros(usage.system_time())) as f64
            * TICKS_PER_SECOND
            / 1e6;
        snapshot.groups.insert("wrk", ticks as u64);
    }
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !name.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{name}/stat")) else {
                continue;
            };
            // `pid (comm) state ppid …`: comm may hold spaces and parentheses, so split at the
            // last `)`; utime and stime are the 14th and 15th fields of the line.
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                continue;
            };
            let comm = &stat[open + 1..close];
            let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
            let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
            // After the comm: state is field 3, so utime (14) and stime (15) are at 11 and 12.
            if let (Some(user), Some(system)) = (ticks(11), ticks(12)) {
                *snapshot.groups.entry(group(comm)).or_insert(0) += user + system;
            }
        }
    }
    if let Ok(stat) = std::fs::read_to_string("/proc/stat") {
        if let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) {
            let values: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|v| v.parse().ok())
                .collect();
            snapshot.total = values.iter().take(8).sum();
            // idle and iowait are the 4th and 5th.
            let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
            snapshot.busy = snapshot.total.saturating_sub(idle);
        }
    }
    snapshot
}

/// CPU spent between two snapshots.
pub struct Spent {
    /// Seconds of CPU per group.
    pub groups: Vec<(&'static str, f64)>,
    /// The share of the machine (all cores) that was busy.
    pub busy: f64,
}

impl Snapshot {
    pub fn since(&self, before: &Snapshot) -> Spent {
        let mut groups: Vec<(&'static str, f64)> = self
            .groups
            .iter()
            .map(|(&group, &ticks)| {
                let earlier = before.groups.get(group).copied().unwrap_or(0);
                (
                    group,
                    ticks.saturating_sub(earlier) as f64 / TICKS_PER_SECOND,
                )
            })
            .filter(|(_, seconds)| *seconds > 0.0)
            .collect();
        groups.sort_by(|a, b| b.1.total_cmp(&a.1));
        let total = self.total.saturating_sub(before.total).max(1);
        let busy = self.busy.saturating_sub(before.busy) as f64 / total as f64;
        Spent { groups, busy }
    }
}

impl Spent {
    /// `ms CPU per 1,000 responses` for each group, for `responses`.
    pub fn per_thousand(&self, responses: u64) -> String {
        let per = 1000.0 / responses.max(1) as f64;
        let parts: Vec<String> = self
            .groups
            .iter()
            .map(|(group, seconds)| format!("{group} {:.0}", seconds * 1000.0 * per))
            .collect();
        format!(
            "{}; machine {:.0}% busy",
            parts.join(", "),
            self.busy * 100.0
        )
    }
}
