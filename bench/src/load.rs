//! The whole pipeline under an external load generator, as a user would try it: ingest,
//! validator and sheets-sync running as processes with the Sheets emulator, and `wrk` posting
//! the seed payload to `POST /collect`, each request a new response (`collect.lua`).
//!
//! 1. Closed loop (`wrk -t2 -c<connections> -d<seconds>s`): accepted/s and latency, then how
//!    long until every accepted response is committed and in the sheet, measured in the store
//!    (`received_at` of the first to the last `stored_at` / `written_at`).
//! 2. Fixed rate, half the closed loop's accepted/s (steady state, below capacity): ingest's
//!    latency (wrk's), and received → committed and received → in the sheet per response.
//!
//! CPU time per process (from `/proc`) is printed per 1,000 responses for each phase, and how
//! long the disk took to flush a small write meanwhile (`disk.rs`): a pause of the disk is a
//! pause of every confirm and commit, and shows in ingest's p99 though no process caused it.

use std::time::{Duration, Instant};

use anyhow::Context;
use collect_testkit::{Engine, Stack};
use serde::Deserialize;
use sqlx::AssertSqlSafe;

use crate::cpu;
use crate::disk::{DiskProbe, Flushes};
use crate::services::{KEY, Peaks, ready, wind_down};
use crate::{Args, p50_p99};

const SCRIPT: &str = include_str!("collect.lua");
/// wrk's threads: one per core.
const THREADS: usize = 2;

pub struct LoadFigures {
    pub accepted_rate: f64,
    pub committed_rate: f64,
    pub half_rate: f64,
    pub half_p99_ms: f64,
    pub half_commit_p99_ms: f64,
    /// The disk's slowest flush during the half-load phase, when measured.
    pub half_disk_max_ms: Option<f64>,
}

/// What `collect.lua`'s `done()` prints.
#[derive(Deserialize)]
struct WrkReport {
    requests: u64,
    duration_us: u64,
    connect_errors: u64,
    read_errors: u64,
    write_errors: u64,
    timeouts: u64,
    refused: u64,
    late: u64,
    max_lag_ms: f64,
    p50_us: u64,
    p99_us: u64,
    max_us: u64,
}

impl WrkReport {
    fn accepted(&self) -> u64 {
        self.requests.saturating_sub(self.refused)
    }

    fn rate(&self) -> f64 {
        self.accepted() as f64 / (self.duration_us as f64 / 1e6)
    }

    fn describe(&self) -> String {
        format!(
            "{:.0} accepted/s ({} in {:.1} s), p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} refused, {} socket errors, {} timeouts",
            self.rate(),
            self.accepted(),
            self.duration_us as f64 / 1e6,
            self.p50_us as f64 / 1000.0,
            self.p99_us as f64 / 1000.0,
            self.max_us as f64 / 1000.0,
            self.refused,
            self.connect_errors + self.read_errors + self.write_errors,
            self.timeouts,
        )
    }
}

pub async fn run(args: &Args, engine: Engine, peaks: &mut Peaks) -> anyhow::Result<LoadFigures> {
    println!(
        "\n## 6. The whole pipeline under wrk on {engine}: POST /collect, ingest, validator, sheets-sync and the emulator running"
    );
    which_wrk()?;
    let mut setup = crate::services::stack(engine).await?;
    // The services log as they do by default (`info`), as a user runs them.
    setup.env.retain(|(name, _)| *name != "RUST_LOG");
    let ingest = ready(&setup, setup.start_ingest().await).await;
    let validator = ready(&setup, setup.start_validator().await).await;
    let sync = ready(&setup, setup.start_sheets_sync().await).await;
    let pool = collect_testkit::database_pool(&setup.database_url).await;
    let script = script_file(&setup)?;
    let url = ingest.url("");
    // Whatever happens in the phases, the services stop and the namespace and database go.
    let figures = phases(args, engine, &setup, &pool, &script, &url).await;
    pool.close().await;
    let _ = std::fs::remove_file(&script);
    wind_down(setup, [ingest, validator, sync], peaks).await;
    figures
}

/// The warm-up, the closed loop and the half-load phase, each drained and reported.
async fn phases(
    args: &Args,
    engine: Engine,
    setup: &Stack,
    pool: &sqlx::AnyPool,
    script: &std::path::Path,
    url: &str,
) -> anyhow::Result<LoadFigures> {
    // A short warm-up (connections, the form cache), drained before the phases.
    let warm = wrk(script, url, args, "warm", None, 3).await?;
    drained(setup, pool, "warm", warm.accepted()).await?;

    // 1. Closed loop.
    let messages = published(url).await;
    let before = cpu::snapshot();
    let disk = DiskProbe::start("full");
    let full = wrk(script, url, args, "full", None, args.seconds).await?;
    let during = cpu::snapshot();
    let full_disk = disk.map(DiskProbe::finish);
    println!(
        "closed loop (wrk -t{THREADS} -c{} -d{}s): {}",
        args.connections,
        args.seconds,
        full.describe()
    );
    let drain = drained(setup, pool, "full", full.accepted()).await?;
    let after = cpu::snapshot();
    let committed_rate = drain.stored as f64 / drain.committed_s;
    println!(
        "committed: {} in {:.1} s from the first request ({committed_rate:.0}/s); in the sheet: all in {:.1} s ({:.0}/s)",
        drain.stored,
        drain.committed_s,
        drain.in_sheet_s,
        drain.stored as f64 / drain.in_sheet_s,
    );
    println!(
        "CPU while wrk ran, ms per 1,000 accepted: {}",
        during.since(&before).per_thousand(full.accepted())
    );
    println!(
        "CPU from the first request to the last row in the sheet, ms per 1,000 responses: {}",
        after.since(&before).per_thousand(drain.stored)
    );
    print_disk(full_disk.as_ref());
    print_gathering(messages, published(url).await, full.accepted());

    // 2. Fixed rate, half the closed loop's.
    let half_rate = (full.rate() / 2.0).max(1.0);
    let messages = published(url).await;
    let before = cpu::snapshot();
    let disk = DiskProbe::start("half");
    let half = wrk(script, url, args, "half", Some(half_rate), args.seconds).await?;
    let during = cpu::snapshot();
    let half_disk = disk.map(DiskProbe::finish);
    println!(
        "fixed rate, half ({half_rate:.0}/s, wrk -t{THREADS} -c{} -d{}s, paced): {}",
        args.connections,
        args.seconds,
        half.describe()
    );
    println!(
        "schedule: {} requests sent more than 1 ms after they were due (largest lag {:.1} ms)",
        half.late, half.max_lag_ms
    );
    let drain = drained(setup, pool, "half", half.accepted()).await?;
    let (mut to_commit, mut to_sheet) = latencies(engine, pool, "half").await?;
    let (c50, c99) = p50_p99(&mut to_commit);
    let (s50, s99) = p50_p99(&mut to_sheet);
    println!(
        "received → committed: p50 {c50:.0} ms, p99 {c99:.0} ms; received → in the sheet: p50 {s50:.0} ms, p99 {s99:.0} ms ({} responses)",
        drain.stored
    );
    println!(
        "CPU while wrk ran, ms per 1,000 accepted: {}",
        during.since(&before).per_thousand(half.accepted())
    );
    print_disk(half_disk.as_ref());
    print_gathering(messages, published(url).await, half.accepted());
    Ok(LoadFigures {
        accepted_rate: full.rate(),
        committed_rate,
        half_rate,
        half_p99_ms: half.p99_us as f64 / 1000.0,
        half_commit_p99_ms: c99,
        half_disk_max_ms: half_disk.map(|flushes| flushes.max_ms()),
    })
}

/// ingest's confirmed publishes to `N.responses` so far, from its `/metrics`.
#[derive(Debug, Clone, Copy)]
struct Published {
    messages: f64,
    /// Their publish → confirm times, summed.
    confirm_seconds: f64,
}

/// The messages ingest had published to `N.responses` and how long their confirms took (its
/// `collect_publish_confirm_seconds`), or `None` if they could not be read.
async fn published(url: &str) -> Option<Published> {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let sum_of = |name: &str| -> Option<f64> {
        text.lines()
            .filter(|line| line.starts_with(name) && line[name.len()..].starts_with('{'))
            .filter(|line| line.contains("responses\""))
            .map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    Some(Published {
        messages: sum_of("collect_publish_confirm_seconds_count")?,
        confirm_seconds: sum_of("collect_publish_confirm_seconds_sum")?,
    })
}

/// How many responses each of ingest's messages carried in a phase (`gather.rs`): the broker's
/// cost is per message, so this says how much of it a response bears; and how long the broker
/// took to confirm a message, which a closed loop's requests wait for.
fn print_gathering(before: Option<Published>, after: Option<Published>, accepted: u64) {
    match (before, after) {
        (Some(before), Some(after)) if after.messages > before.messages => {
            let messages = after.messages - before.messages;
            println!(
                "ingest's messages to N.responses: {messages:.0}, {:.1} responses each, confirmed {:.2} ms after their publish on average",
                accepted as f64 / messages,
                (after.confirm_seconds - before.confirm_seconds) / messages * 1000.0,
            )
        }
        _ => println!("ingest's messages to N.responses: not read from its /metrics"),
    }
}

/// The disk's flushes while wrk ran, and what a stall means for the figures above.
fn print_disk(flushes: Option<&Flushes>) {
    let Some(flushes) = flushes else {
        println!("disk while wrk ran: not measured (no file could be written beside the binary)");
        return;
    };
    println!("disk while wrk ran: {}", flushes.describe());
    if flushes.stalls() > 0 {
        println!(
            "  the disk stalled for up to {:.0} ms: every broker confirm and database commit waited as long, and with them every request in flight (wrk's latency counts from when a request was due). A burst of the kernel's write-back does this; writing back in small steps (vm.dirty_background_bytes = 8 MB) took the stalls away on this project's machines: README, \"Host settings\"",
            flushes.max_ms()
        );
    }
}

fn which_wrk() -> anyhow::Result<()> {
    let found = std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .is_ok();
    anyhow::ensure!(
        found,
        "wrk is not installed (scripts/bench.sh installs it: apt-get install wrk)"
    );
    Ok(())
}

/// `collect.lua` with the seed payload spliced in around the response id.
fn script_file(setup: &Stack) -> anyhow::Result<std::path::PathBuf> {
    const MARK: &str = "RESPONSE-ID-HERE";
    let payload = collect_testkit::seed_payload(MARK).to_string();
    let (before, after) = payload.split_once(MARK).context("no id in the payload")?;
    let script = SCRIPT
        .replace("BEFORE_ID", &format!("[==[{before}]==]"))
        .replace("AFTER_ID", &format!("[==[{after}]==]"));
    let path = std::env::temp_dir().join(format!("collect-bench-{}.lua", setup.namespace));
    std::fs::write(&path, script)?;
    Ok(path)
}

/// Runs wrk for `seconds` with ids `<prefix>-<thread>-<n>`, at `rate` a second if given.
async fn wrk(
    script: &std::path::Path,
    url: &str,
    args: &Args,
    prefix: &str,
    rate: Option<f64>,
    seconds: u64,
) -> anyhow::Result<WrkReport> {
    let output = tokio::process::Command::new("wrk")
        .args([
            format!("-t{THREADS}"),
            format!("-c{}", args.connections),
            format!("-d{seconds}s"),
            "--timeout".into(),
            "10s".into(),
            "-s".into(),
            script.display().to_string(),
            url.to_owned(),
        ])
        .env("COLLECT_PREFIX", prefix)
        .env(
            "COLLECT_RATE",
            rate.map_or("0".into(), |r| format!("{r:.3}")),
        )
        .env("COLLECT_THREADS", THREADS.to_string())
        .env("COLLECT_KEY", KEY)
        .kill_on_drop(true)
        .output()
        .await
        .context("running wrk")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("COLLECT "))
        .with_context(|| {
            format!(
                "wrk printed no report: {stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
    Ok(serde_json::from_str(line)?)
}

struct Drained {
    stored: u64,
    /// From the first response's `received_at` to the last `stored_at`.
    committed_s: f64,
    /// From the first response's `received_at` to the last sheet row's `written_at`.
    in_sheet_s: f64,
}

/// How often [`drained`] asks the database: the figures come from the rows' timestamps, not
/// from when the poll saw them, and a count over every response is not free (34 ms at
/// 180,000 rows), so seldom enough not to weigh on the pipeline it measures.
const POLL: Duration = Duration::from_millis(500);

/// How long a sheet must go on refusing rows before [`drained`] gives up on it.
const REFUSED_FOR: Duration = Duration::from_secs(60);

/// Waits until the responses with ids `<prefix>-…` (`prefix` is one of this module's own
/// constants, spliced into the SQL) are all committed and all in the sheet: at
/// least `accepted` (wrk counts the answers it read; requests still in flight when it stopped
/// may have been accepted too), and the count unchanged for a second.
async fn drained(
    setup: &Stack,
    pool: &sqlx::AnyPool,
    prefix: &'static str,
    accepted: u64,
) -> anyhow::Result<Drained> {
    let (spans, sheet) = match setup.engine {
        Engine::Postgres => (
            format!(
                "SELECT count(*)::int8, COALESCE(extract(epoch FROM max(stored_at) - min(received_at)), 0)::float8
                 FROM responses WHERE response_id LIKE '{prefix}-%'"
            ),
            format!(
                "SELECT count(*)::int8, COALESCE(extract(epoch FROM max(s.written_at) - min(r.received_at)), 0)::float8
                 FROM sheet_rows s JOIN responses r USING (response_id) WHERE r.response_id LIKE '{prefix}-%'"
            ),
        ),
        Engine::MySql => (
            format!(
                "SELECT count(*), COALESCE(CAST(TIMESTAMPDIFF(MICROSECOND, min(received_at), max(stored_at)) AS DOUBLE) / 1e6, 0)
                 FROM responses WHERE response_id LIKE '{prefix}-%'"
            ),
            format!(
                "SELECT count(*), COALESCE(CAST(TIMESTAMPDIFF(MICROSECOND, min(r.received_at), max(s.written_at)) AS DOUBLE) / 1e6, 0)
                 FROM sheet_rows s JOIN responses r USING (response_id) WHERE r.response_id LIKE '{prefix}-%'"
            ),
        ),
    };
    let deadline = Instant::now() + Duration::from_secs(3600);
    let mut last = (0i64, Instant::now());
    let (stored, committed_s) = loop {
        let (count, span): (i64, f64) = sqlx::query_as(AssertSqlSafe(spans.as_str()))
            .fetch_one(pool)
            .await?;
        if count != last.0 {
            last = (count, Instant::now());
        } else if count as u64 >= accepted && last.1.elapsed() >= Duration::from_secs(1) {
            break (count as u64, span);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{prefix}: {count} of {accepted} committed after an hour"
        );
        tokio::time::sleep(POLL).await;
    };
    let mut refused_since: Option<Instant> = None;
    let in_sheet_s = loop {
        // The join is counted only once the outbox is empty: run every 100 ms, it cost
        // PostgreSQL more than the sheet stage it measures (110 ms a run at 180,000 rows).
        let waiting: i64 =
            sqlx::query_scalar("SELECT count(*) FROM (SELECT 1 FROM sheet_outbox LIMIT 1) AS w")
                .fetch_one(pool)
                .await?;
        if waiting == 0 {
            let (count, span): (i64, f64) = sqlx::query_as(AssertSqlSafe(sheet.as_str()))
                .fetch_one(pool)
                .await?;
            if count as u64 >= stored {
                break span;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{prefix}: {count} of {stored} in the sheet after an hour"
            );
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{prefix}: rows still wait for the sheet after an hour"
        );
        // A sheet that refuses the rows (full: Google's 10,000,000 cells a spreadsheet, which
        // the emulator enforces; about 430,000 rows of the seed form) would be waited for
        // until the deadline; sheets-sync says so in `sheet_status`. A refusal that passes
        // (a quota's 429, say) clears that row within a minute.
        let refused: Option<String> = if waiting > 0 {
            sqlx::query_scalar("SELECT reason FROM sheet_status WHERE about_this_sheet LIMIT 1")
                .fetch_optional(pool)
                .await?
        } else {
            None
        };
        match (refused, refused_since) {
            (None, _) => refused_since = None,
            (Some(_), None) => refused_since = Some(Instant::now()),
            (Some(reason), Some(since)) if since.elapsed() >= REFUSED_FOR => anyhow::bail!(
                "{prefix}: the sheet stage stopped, as sheets-sync reports: {reason} (shorter phases, or fewer connections, keep the benchmark's sheet under Google's limit)"
            ),
            (Some(_), Some(_)) => {}
        }
        tokio::time::sleep(POLL).await;
    };
    Ok(Drained {
        stored,
        committed_s,
        in_sheet_s,
    })
}

/// Milliseconds from ingest to the commit, and to the sheet, for each response `<prefix>-…`.
pub async fn latencies(
    engine: Engine,
    pool: &sqlx::AnyPool,
    prefix: &'static str,
) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let (committed, written) = match engine {
        Engine::Postgres => (
            format!(
                "SELECT (extract(epoch FROM stored_at - received_at) * 1000)::float8
                 FROM responses WHERE response_id LIKE '{prefix}-%'"
            ),
            format!(
                "SELECT (extract(epoch FROM s.written_at - r.received_at) * 1000)::float8
                 FROM sheet_rows s JOIN responses r USING (response_id) WHERE r.response_id LIKE '{prefix}-%'"
            ),
        ),
        Engine::MySql => (
            format!(
                "SELECT CAST(TIMESTAMPDIFF(MICROSECOND, received_at, stored_at) AS DOUBLE) / 1000
                 FROM responses WHERE response_id LIKE '{prefix}-%'"
            ),
            format!(
                "SELECT CAST(TIMESTAMPDIFF(MICROSECOND, r.received_at, s.written_at) AS DOUBLE) / 1000
                 FROM sheet_rows s JOIN responses r USING (response_id) WHERE r.response_id LIKE '{prefix}-%'"
            ),
        ),
    };
    let to_commit = sqlx::query_scalar(AssertSqlSafe(committed))
        .fetch_all(pool)
        .await?;
    let to_sheet = sqlx::query_scalar(AssertSqlSafe(written))
        .fetch_all(pool)
        .await?;
    Ok((to_commit, to_sheet))
}
