//! A scale run: many responses across many forms end to end (`--parts scale`), with every
//! service running. Forms are copies of the built-in one (`PUT /v1/forms/{id}`), each writing
//! to a tab of its own; senders post batches (as the end-to-end part does), each batch to one
//! form, round robin. The run
//! ends when every sheet holds every one of its responses; it reports how long each stage took
//! and what grew: the database's size, the queues' depth, the services' memory.
//! `--sheets-writes-per-minute 60` runs it under Google's real quota.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use collect_testkit::{Engine, ServiceProcess, Stack};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use serde_json::Value;

use crate::Args;
use crate::pipeline::{BATCH, send};
use crate::services::{KEY, Peaks, ready, wind_down};

const SENDERS: usize = 8;
const FORMS_PER_SPREADSHEET: usize = 20;

/// The spreadsheet of the `i`th form.
fn spreadsheet_of(i: usize) -> String {
    format!("scale-sheet-{:02}", i / FORMS_PER_SPREADSHEET)
}

pub async fn run(args: &Args, engine: Engine, peaks: &mut Peaks) -> anyhow::Result<()> {
    let n = args.scale_responses;
    let forms = args.scale_forms.max(1);
    let quota = args.sheets_writes_per_minute;
    println!(
        "\n## 7. Scale on {engine}: {n} responses across {forms} forms, end to end, SHEETS_WRITES_PER_MINUTE={quota}"
    );
    let mut setup = crate::services::stack(engine).await?;
    setup
        .sheets_sync_env
        .push(("SHEETS_WRITES_PER_MINUTE", quota.to_string()));
    let ingest = ready(&setup, setup.start_ingest().await).await;
    let validator = ready(&setup, setup.start_validator().await).await;
    let sync = ready(&setup, setup.start_sheets_sync().await).await;
    let pool = collect_testkit::database_pool(&setup.database_url).await;
    // Whatever happens, the services stop and the namespace and database go.
    let services = [ingest, validator, sync];
    let done = measure(args, engine, &setup, &services, &pool).await;
    pool.close().await;
    wind_down(setup, services, peaks).await;
    done
}

/// The forms, the responses sent across them, and what grew until every sheet was complete.
async fn measure(
    args: &Args,
    engine: Engine,
    setup: &Stack,
    [ingest, validator, sync]: &[ServiceProcess; 3],
    pool: &sqlx::AnyPool,
) -> anyhow::Result<()> {
    let n = args.scale_responses;
    let forms = args.scale_forms.max(1);
    let client = reqwest::Client::new();

    // The forms: copies of the built-in one.
    let mut definition: Value = client
        .get(ingest.url("/v1/forms/household-finance"))
        .bearer_auth(KEY)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    if let Some(fields) = definition.as_object_mut() {
        fields.remove("form_id");
        fields.remove("version");
    }
    // Each copy writes to a tab of its own (its id), FORMS_PER_SPREADSHEET to a spreadsheet: a
    // Google spreadsheet holds at most 10 million cells, and 200 forms of 5,000 rows of ~23
    // cells would not fit in one (a first run filled it at 429,250 rows; the rest waited).
    let form_ids: Vec<String> = (0..forms).map(|i| format!("scale-{i:03}")).collect();
    for (i, form) in form_ids.iter().enumerate() {
        let spreadsheet = spreadsheet_of(i);
        if i % FORMS_PER_SPREADSHEET == 0 {
            setup.emulator.create_spreadsheet(&spreadsheet);
        }
        definition["sheet"] = serde_json::json!({"spreadsheet_id": spreadsheet, "tab": form});
        client
            .put(ingest.url(&format!("/v1/forms/{form}")))
            .bearer_auth(KEY)
            .json(&definition)
            .send()
            .await?
            .error_for_status()
            .with_context(|| format!("registering {form}"))?;
    }

    let amqp = lapin::Connection::connect(
        &collect_testkit::amqp_url(),
        lapin::ConnectionProperties::default(),
    )
    .await?;
    let channel = amqp.create_channel().await?;
    let depth = |queue: String| {
        let channel = channel.clone();
        async move {
            channel
                .queue_declare(
                    queue.as_str().into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map(|q| q.message_count())
                .unwrap_or(0)
        }
    };

    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let form_ids = Arc::new(form_ids);
    let senders: Vec<_> = (0..SENDERS)
        .map(|_| {
            let base = ingest.url("");
            let next = next.clone();
            let form_ids = form_ids.clone();
            // Each batch to the next form, round robin.
            let url = move |first: usize| {
                let form = &form_ids[(first / BATCH) % form_ids.len()];
                format!("{base}/v1/forms/{form}/responses:batch")
            };
            let bar = indicatif::ProgressBar::hidden();
            tokio::spawn(async move { send(next, n, "s", url, bar).await })
        })
        .collect();

    let size_sql = match engine {
        Engine::Postgres => "SELECT pg_database_size(current_database())::int8",
        Engine::MySql => {
            "SELECT CAST(COALESCE(SUM(data_length + index_length), 0) AS SIGNED)
             FROM information_schema.tables WHERE table_schema = DATABASE()"
        }
    };
    let mut accepted_at = None;
    let mut committed_at = None;
    let (mut validator_depth, mut outbox_depth, mut size) = (0u32, 0i64, 0i64);
    let mut last_report = Instant::now();
    let deadline = Duration::from_secs(4 * 3600);
    let total = loop {
        let stored = collect_testkit::count(pool, "SELECT count(*) FROM responses").await?;
        let rows = collect_testkit::count(pool, "SELECT count(*) FROM sheet_rows").await?;
        validator_depth = validator_depth.max(depth(setup.topology.validator_queue()).await);
        let waiting = collect_testkit::count(pool, "SELECT count(*) FROM sheet_outbox").await?;
        outbox_depth = outbox_depth.max(waiting);
        size = size.max(collect_testkit::count(pool, size_sql).await?);
        if accepted_at.is_none() && senders.iter().all(|s| s.is_finished()) {
            accepted_at = Some(started.elapsed());
        }
        if committed_at.is_none() && stored as usize >= n {
            committed_at = Some(started.elapsed());
        }
        if rows as usize >= n {
            break started.elapsed();
        }
        if last_report.elapsed() >= Duration::from_secs(30) {
            last_report = Instant::now();
            println!(
                "  {:>5.0} s: {} accepted, {stored} committed, {rows} in sheets; N.validator {}, sheet outbox {waiting}; database {:.0} MB",
                started.elapsed().as_secs_f64(),
                next.load(Ordering::Relaxed).min(n),
                depth(setup.topology.validator_queue()).await,
                size as f64 / 1e6,
            );
        }
        anyhow::ensure!(
            started.elapsed() < deadline,
            "not done within {deadline:?}: {stored} stored, {rows} in the sheets"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    for sender in senders {
        sender.await??;
    }
    let accepted = accepted_at.unwrap_or(total).as_secs_f64();
    let committed = committed_at.unwrap_or(total).as_secs_f64();
    println!(
        "accepted by ingest: all {n} in {accepted:.0} s ({:.0}/s)",
        n as f64 / accepted
    );
    println!(
        "committed to {engine}: all in {committed:.0} s ({:.0}/s)",
        n as f64 / committed
    );
    println!(
        "every sheet complete: {:.0} s after the first request ({:.0} responses/s end to end)",
        total.as_secs_f64(),
        n as f64 / total.as_secs_f64()
    );
    let per_form = n / forms;
    let complete = form_ids
        .iter()
        .enumerate()
        .filter(|(i, form)| {
            setup
                .emulator
                .tab_values(&spreadsheet_of(*i), form)
                .map_or(0, |t| t.len().saturating_sub(1))
                >= per_form
        })
        .count();
    anyhow::ensure!(
        complete == forms,
        "{complete} of {forms} tabs hold their {per_form} rows"
    );
    println!(
        "the emulator: {forms} tabs of {per_form} rows each in {} spreadsheets; Sheets calls {} (writes {})",
        forms.div_ceil(FORMS_PER_SPREADSHEET),
        setup.emulator.stats().sheets_requests,
        setup.emulator.write_count()
    );
    println!(
        "grew: database {:.0} MB at most ({:.0} bytes a response); deepest: N.validator {validator_depth}, the sheet outbox {outbox_depth} rows",
        size as f64 / 1e6,
        size as f64 / n as f64
    );
    for (name, process) in [
        ("ingest", &ingest),
        ("validator", &validator),
        ("sheets-sync", &sync),
    ] {
        println!(
            "peak RSS {name}: {:.1} MB",
            process.peak_rss_bytes().unwrap_or(0) as f64 / 1_048_576.0
        );
    }
    let _ = amqp.close(200, "done".into()).await;
    Ok(())
}
