use std::time::{Duration, Instant};

use collect_testkit::{ServiceProcess, eventually};
use nix::sys::signal::Signal;
use serde_json::json;
use sheets_emulator::Faults;

use super::helpers::{Pipeline, metric, rows_by_id, send};

const TAB: &str = "household-finance";

#[tokio::test]
async fn two_instances_at_once_write_every_row_once() {
    let mut pipeline = Pipeline::start().await;
    let (second, _) = pipeline.start_sheets_sync().await;
    pipeline.add_service(second);
    // Slow writes, so both instances are at work at once.
    pipeline.emulator.set_faults(Faults {
        latency_ms: 20,
        ..Faults::default()
    });
    send(&pipeline, 2000).await;
    let cells = pipeline.tab_with_rows(TAB, 2000).await;
    assert_eq!(rows_by_id(&cells).len(), 2000);
    pipeline.stop().await;
}

#[tokio::test]
async fn sigkill_mid_batch_loses_and_duplicates_nothing() {
    let pipeline = Pipeline::start_with(false).await;
    pipeline.emulator.set_faults(Faults {
        latency_ms: 150,
        ..Faults::default()
    });
    let binary = env!("CARGO_BIN_EXE_sheets-sync");
    let env = pipeline.sheets_sync_env();
    let mut sync = ServiceProcess::start(binary, &env).await;
    send(&pipeline, 1000).await;

    // Killed while it writes: some rows are in, others not yet.
    eventually(Duration::from_secs(60), "a few batches written", || async {
        (pipeline.tab(TAB).len() > 150).then_some(())
    })
    .await;
    sync.signal(Signal::SIGKILL);
    let status = sync.wait(Duration::from_secs(10)).await;
    assert!(!status.success());
    let written_before = pipeline.tab(TAB).len() - 1;
    assert!(
        written_before < 1000,
        "killed before the end ({written_before} rows)"
    );

    // Its successor finishes the work, without duplicates.
    pipeline.emulator.set_faults(Faults::default());
    let mut successor = ServiceProcess::start(binary, &env).await;
    let cells = pipeline.tab_with_rows(TAB, 1000).await;
    assert_eq!(rows_by_id(&cells).len(), 1000);
    successor.signal(Signal::SIGTERM);
    assert!(successor.wait(Duration::from_secs(15)).await.success());
    pipeline.stop().await;
}

/// Posts `<form>-<n>` to the form.
async fn answer(pipeline: &Pipeline, form: &str, n: usize) {
    let body = json!([{
        "response_id": format!("{form}-{n}"),
        "collector": {"user_id": "u-1"},
        "answers": {"a": "x"},
    }]);
    let path = format!("/v1/forms/{form}/responses:batch");
    assert_eq!(pipeline.post(&path, &body).await.status(), 202);
}

/// The `spreadsheets.get` calls sheets-sync made.
async fn looks(pipeline: &Pipeline) -> f64 {
    let metrics = pipeline.sheets_sync_metrics().await;
    metric(
        &metrics,
        r#"collect_sheets_api_calls_total{method="spreadsheets.get",status="200"}"#,
    )
    .unwrap_or(0.0)
}

#[tokio::test]
async fn one_look_at_a_spreadsheet_serves_every_tab_written_there() {
    // Two forms write to two tabs of one spreadsheet, both all the time; a tab being written is
    // looked up again every 300 ms (`SHEETS_TAB_CHECK_MS`).
    let pipeline = Pipeline::start_with(false)
        .await
        .with_sheets_sync(|config| {
            config.tab_check_ms = 300;
            config.batch_max_wait_ms = 20;
        })
        .await;
    for form in ["north", "south"] {
        pipeline.put_form(form, form, &[("a", "A")], &[]).await;
        answer(&pipeline, form, 0).await;
        pipeline.tab_with_rows(form, 1).await;
    }
    let before = looks(&pipeline).await;
    let started = Instant::now();
    let mut n = 1;
    while started.elapsed() < Duration::from_secs(3) {
        for form in ["north", "south"] {
            answer(&pipeline, form, n).await;
        }
        for form in ["north", "south"] {
            pipeline.tab_with_rows(form, n + 1).await;
        }
        n += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let made = looks(&pipeline).await - before;
    // One look per 300 ms for the spreadsheet; one per tab would be about twice as many.
    let most = (elapsed / 0.3).floor() + 1.0;
    assert!(
        (2.0..=most).contains(&made),
        "{made} looks in {elapsed:.1} s, {n} rounds (at most {most})"
    );

    // A person deletes south's tab. north's next look forgets it; south's next response
    // recreates it, refilled with every south response.
    pipeline.delete_tab("south");
    let seen = looks(&pipeline).await;
    let mut next = n;
    eventually(Duration::from_secs(20), "north looks again", || {
        let pipeline = &pipeline;
        let round = next;
        next += 1;
        async move {
            answer(pipeline, "north", round).await;
            pipeline.tab_with_rows("north", round + 1).await;
            (looks(pipeline).await > seen).then_some(())
        }
    })
    .await;
    answer(&pipeline, "south", n).await;
    let cells = pipeline.tab_with_rows("south", n + 1).await;
    let rows = rows_by_id(&cells);
    for i in 0..=n {
        assert!(rows.contains_key(&format!("south-{i}")), "south-{i}");
    }
    pipeline.stop().await;
}
