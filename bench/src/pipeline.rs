//! End to end: N responses through ingest → validator → the database (PostgreSQL or
//! MySQL/MariaDB) → sheets-sync → emulator.
//! Senders post batches over keep-alive connections as fast as ingest accepts them; the run
//! ends when the last response is a row in the sheet. Latencies come from the store: each
//! response's `received_at` (ingest), `stored_at` (the validator's commit) and its sheet row's
//! `written_at` (sheets-sync, after the Sheets call).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use collect_testkit::Engine;
use serde_json::Value;

use crate::http_load::envelope;
use crate::services::{KEY, Peaks, SPREADSHEET, ready, wind_down};
use crate::{Args, p50_p99, progress};

pub struct EndToEnd {
    /// Responses per second from the first request to the last sheet row.
    pub rate: f64,
}

/// Concurrent senders, and responses per batch request.
const SENDERS: usize = 8;
pub const BATCH: usize = 250;

pub async fn run(args: &Args, engine: Engine, peaks: &mut Peaks) -> anyhow::Result<EndToEnd> {
    let n = args.responses;
    println!(
        "\n## 3. End to end on {engine}: {n} responses, ingest → validator → {engine} → sheets-sync → emulator"
    );
    let setup = crate::services::stack(engine).await?;
    let ingest = ready(&setup, setup.start_ingest().await).await;
    let validator = ready(&setup, setup.start_validator().await).await;
    let sync = ready(&setup, setup.start_sheets_sync().await).await;
    let pool = collect_testkit::database_pool(&setup.database_url).await;
    // Whatever happens, the services stop and the namespace and database go.
    let figures: anyhow::Result<EndToEnd> = async {
        let started = Instant::now();
        let next = Arc::new(AtomicUsize::new(0));
        let sent_bar = progress(n as u64, "accepted by ingest");
        let url = ingest.url("/v1/forms/household-finance/responses:batch");
        let senders: Vec<_> = (0..SENDERS)
            .map(|_| {
                let url = url.clone();
                let next = next.clone();
                let bar = sent_bar.clone();
                tokio::spawn(async move { send(next, n, "e2e", move |_| url.clone(), bar).await })
            })
            .collect();
        let stored_bar = progress(n as u64, &format!("committed to {engine}"));
        let sheet_bar = progress(n as u64, "rows in the sheet");
        let bars = indicatif::MultiProgress::new();
        let sent_bar = bars.add(sent_bar);
        let stored_bar = bars.add(stored_bar);
        let sheet_bar = bars.add(sheet_bar);

        let mut accepted_at = None;
        let mut committed_at = None;
        let mut peaks_seen = (0u64, 0u64, 0u64);
        let deadline = Duration::from_secs(3600);
        loop {
            let stored = collect_testkit::count(&pool, "SELECT count(*) FROM responses").await?;
            let rows = collect_testkit::count(&pool, "SELECT count(*) FROM sheet_rows").await?;
            stored_bar.set_position(stored as u64);
            sheet_bar.set_position(rows as u64);
            if accepted_at.is_none() && senders.iter().all(|s| s.is_finished()) {
                accepted_at = Some(started.elapsed());
            }
            if committed_at.is_none() && stored as usize >= n {
                committed_at = Some(started.elapsed());
            }
            if rows as usize >= n {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < deadline,
                "not done within {deadline:?}: {stored} stored, {rows} in the sheet"
            );
            // RSS is sampled as the run goes (VmHWM keeps the peak anyway).
            peaks_seen.0 = peaks_seen.0.max(ingest.peak_rss_bytes().unwrap_or(0));
            peaks_seen.1 = peaks_seen.1.max(validator.peak_rss_bytes().unwrap_or(0));
            peaks_seen.2 = peaks_seen.2.max(sync.peak_rss_bytes().unwrap_or(0));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let total = started.elapsed();
        for sender in senders {
            sender.await??;
        }
        sent_bar.finish();
        stored_bar.finish();
        sheet_bar.finish();
        let _ = bars.clear();

        let accepted = accepted_at.unwrap_or(total).as_secs_f64();
        let committed = committed_at.unwrap_or(total).as_secs_f64();
        let rate = n as f64 / total.as_secs_f64();
        println!(
            "accepted by ingest: all {n} in {accepted:.1} s ({:.0}/s)",
            n as f64 / accepted
        );
        println!(
            "committed to {engine}: all in {committed:.1} s ({:.0}/s)",
            n as f64 / committed
        );
        println!(
            "in the sheet: all in {:.1} s: {rate:.0} responses/s end to end",
            total.as_secs_f64()
        );
        // Milliseconds from ingest to the commit, and to the sheet, per response.
        let (mut to_commit, mut to_sheet) = crate::load::latencies(engine, &pool, "e2e").await?;
        let (c50, c99) = p50_p99(&mut to_commit);
        let (s50, s99) = p50_p99(&mut to_sheet);
        println!("received → committed: p50 {c50:.0} ms, p99 {c99:.0} ms");
        println!("received → in the sheet: p50 {s50:.0} ms, p99 {s99:.0} ms");
        let cells = setup
            .emulator
            .tab_values(SPREADSHEET, "household-finance")
            .map_or(0, |t| t.len().saturating_sub(1));
        anyhow::ensure!(
            cells == n,
            "the emulator's sheet has {cells} rows, expected {n}"
        );
        println!(
            "Sheets calls: {} (writes {})",
            setup.emulator.stats().sheets_requests,
            setup.emulator.write_count()
        );

        Ok(EndToEnd { rate })
    }
    .await;
    pool.close().await;
    wind_down(setup, [ingest, validator, sync], peaks).await;
    figures
}

/// Takes the next batch of ids (`<prefix>-<i>`) until `n` are sent, each batch to the URL
/// `url` gives for its first index; a batch not wholly accepted is sent again.
pub async fn send(
    next: Arc<AtomicUsize>,
    n: usize,
    prefix: &'static str,
    url: impl Fn(usize) -> String,
    bar: indicatif::ProgressBar,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()?;
    loop {
        let first = next.fetch_add(BATCH, Ordering::Relaxed);
        if first >= n {
            return Ok(());
        }
        let url = url(first);
        let batch: Vec<Value> = (first..(first + BATCH).min(n))
            .map(|i| envelope(&format!("{prefix}-{i}")))
            .collect();
        let mut attempts = 0;
        loop {
            let response = client.post(&url).bearer_auth(KEY).json(&batch).send().await;
            if let Ok(response) = response {
                if response.status() == 202 {
                    bar.inc(batch.len() as u64);
                    break;
                }
            }
            attempts += 1;
            anyhow::ensure!(attempts < 20, "ingest refused a batch 20 times");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}
