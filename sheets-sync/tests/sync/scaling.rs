use std::time::{Duration, Instant};

use collect_testkit::{ServiceProcess, eventually};
use nix::sys::signal::Signal;
use serde_json::json;
use sheets_emulator::Faults;

use super::helpers::{Pipeline, SPREADSHEET, metric, rows_by_id, send};

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
    let mut env = pipeline.sheets_sync_env();
    // Batches of at most 100 rows, so that the kill falls between two of them.
    env.push(("SHEETS_BATCH_MAX_ROWS", "100".into()));
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
    post_batch(pipeline, form, &body).await;
}

/// Posts envelopes to the form's batch route; ingest takes them.
async fn post_batch(pipeline: &Pipeline, form: &str, body: &serde_json::Value) {
    let path = format!("/v1/forms/{form}/responses:batch");
    assert_eq!(pipeline.post(&path, body).await.status(), 202);
}

/// The `spreadsheets.get` calls sheets-sync made.
async fn looks(pipeline: &Pipeline) -> f64 {
    calls(pipeline, "spreadsheets.get").await
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

/// sheets-sync's calls of `method` that Google answered with 200.
async fn calls(pipeline: &Pipeline, method: &str) -> f64 {
    let metrics = pipeline.sheets_sync_metrics().await;
    metric(
        &metrics,
        &format!(r#"collect_sheets_api_calls_total{{method="{method}",status="200"}}"#),
    )
    .unwrap_or(0.0)
}

#[tokio::test]
async fn a_new_forms_tab_and_header_cost_one_write() {
    // Under Google's quota (60 writes and 60 reads a minute) each call of a form's first
    // batch counts: hundreds of new forms paid two writes and two reads for their tabs.
    let pipeline = Pipeline::start_with(false)
        .await
        .with_sheets_sync(|_| {})
        .await;
    pipeline
        .put_form(
            "west",
            "west",
            &[("a", "Answer A"), ("b", "Answer B")],
            &["site"],
        )
        .await;
    let body = json!(
        (0..3)
            .map(|n| json!({
                "response_id": format!("west-{n}"),
                "collector": {"user_id": "u-1"},
                "answers": {"a": format!("x{n}"), "b": "y"},
                "metadata": {"site": "Pune"},
            }))
            .collect::<Vec<_>>()
    );
    post_batch(&pipeline, "west", &body).await;
    let cells = pipeline.tab_with_rows("west", 3).await;
    let header: Vec<&str> = cells[0].iter().map(|cell| cell.as_str().unwrap()).collect();
    assert_eq!(header[0], "response_id");
    assert!(
        header.contains(&"Answer A") && header.contains(&"site"),
        "{header:?}"
    );
    let rows = rows_by_id(&cells);
    let a = header.iter().position(|name| *name == "Answer A").unwrap();
    assert_eq!(rows["west-2"][a], "x2");
    let (_, columns) = pipeline.emulator.grid_size(SPREADSHEET, "west").unwrap();
    assert_eq!(columns as usize, header.len(), "as wide as the header");

    // The tab and its header: one batchUpdate (addSheet and updateCells); the rows: one
    // append. One look at the spreadsheet; nothing read back.
    assert_eq!(calls(&pipeline, "spreadsheets.batchUpdate").await, 1.0);
    assert_eq!(calls(&pipeline, "values.append").await, 1.0);
    assert_eq!(calls(&pipeline, "values.batchUpdate").await, 0.0);
    assert_eq!(calls(&pipeline, "spreadsheets.get").await, 1.0);
    assert_eq!(calls(&pipeline, "values.get").await, 0.0);
    assert_eq!(calls(&pipeline, "values.batchGet").await, 0.0);

    // The next batch reads the header and finds it as written.
    let body = json!([{
        "response_id": "west-3",
        "collector": {"user_id": "u-1"},
        "answers": {"a": "y", "b": "z"},
        "metadata": {"site": "Pune"},
    }]);
    post_batch(&pipeline, "west", &body).await;
    let cells = pipeline.tab_with_rows("west", 4).await;
    assert_eq!(rows_by_id(&cells).len(), 4);
    assert_eq!(calls(&pipeline, "values.batchGet").await, 1.0);
    assert_eq!(calls(&pipeline, "spreadsheets.batchUpdate").await, 1.0);
    pipeline.stop().await;
}

#[tokio::test]
async fn a_backlog_goes_out_in_requests_as_full_as_allowed() {
    // 900 responses wait while no sheets-sync runs (an outage, or Google's quota behind a
    // burst). A batch is due at 200 rows (`SHEETS_BATCH_ROWS` in these tests) but carries up
    // to `SHEETS_BATCH_MAX_ROWS`: the backlog goes out in one append, not five.
    let pipeline = Pipeline::start_with(false).await;
    send(&pipeline, 900).await;
    waiting(&pipeline, 900).await;
    let pipeline = pipeline
        .with_sheets_sync(|config| config.batch_max_rows = 1000)
        .await;
    let cells = pipeline.tab_with_rows(TAB, 900).await;
    assert_eq!(rows_by_id(&cells).len(), 900);
    assert_eq!(calls(&pipeline, "values.append").await, 1.0);
    pipeline.stop().await;
}

#[tokio::test]
async fn a_backlog_of_large_rows_stops_at_the_bytes() {
    // The same with rows of ~30 KB and at most 400,000 bytes a request: the first batch
    // reads a few rows to learn their size, then every request stays within the bytes.
    let pipeline = Pipeline::start_with(false).await;
    pipeline.put_form("wide", "wide", &[("a", "A")], &[]).await;
    for chunk in (0..60).collect::<Vec<_>>().chunks(20) {
        let body = json!(
            chunk
                .iter()
                .map(|n| json!({
                    "response_id": format!("wide-{n}"),
                    "collector": {"user_id": "u-1"},
                    "answers": {"a": "w".repeat(30_000)},
                }))
                .collect::<Vec<_>>()
        );
        post_batch(&pipeline, "wide", &body).await;
    }
    waiting(&pipeline, 60).await;
    let pipeline = pipeline
        .with_sheets_sync(|config| {
            config.batch_max_rows = 1000;
            config.batch_max_bytes = 400_000;
        })
        .await;
    let cells = pipeline.tab_with_rows("wide", 60).await;
    assert_eq!(rows_by_id(&cells).len(), 60);
    // 14 rows of ~30 KB reach 400,000 bytes: 60 rows in 5 requests.
    assert_eq!(calls(&pipeline, "values.append").await, 5.0);
    pipeline.stop().await;
}

/// Waits until `n` responses wait for the sheet.
async fn waiting(pipeline: &Pipeline, n: i64) {
    let pool = collect_testkit::database_pool(&pipeline.database_url).await;
    eventually(Duration::from_secs(60), "responses waiting", || async {
        let waiting = collect_testkit::count(&pool, "SELECT count(*) FROM sheet_outbox")
            .await
            .ok()?;
        (waiting == n).then_some(())
    })
    .await;
    pool.close().await;
}

#[tokio::test]
async fn new_forms_of_one_spreadsheet_get_their_tabs_in_one_write() {
    // Three new forms of one spreadsheet have responses waiting when sheets-sync starts (a
    // launch, or Google's quota behind a burst): their tabs and headers are created in one
    // request, after one look at the spreadsheet, and each form's rows in one append.
    let pipeline = Pipeline::start_with(false).await;
    let forms = ["east", "north", "south"];
    for form in forms {
        pipeline
            .put_form(form, form, &[("a", &format!("{form} A"))], &[])
            .await;
        for n in 0..2 {
            answer(&pipeline, form, n).await;
        }
    }
    waiting(&pipeline, 6).await;
    let pipeline = pipeline.with_sheets_sync(|_| {}).await;
    for form in forms {
        let cells = pipeline.tab_with_rows(form, 2).await;
        assert_eq!(cells[0][0], "response_id");
        assert!(
            cells[0].contains(&serde_json::Value::from(format!("{form} A"))),
            "{:?}",
            cells[0]
        );
        let rows = rows_by_id(&cells);
        assert!(rows.contains_key(&format!("{form}-0")) && rows.contains_key(&format!("{form}-1")));
    }
    assert_eq!(calls(&pipeline, "spreadsheets.batchUpdate").await, 1.0);
    assert_eq!(calls(&pipeline, "spreadsheets.get").await, 1.0);
    assert_eq!(calls(&pipeline, "values.append").await, 3.0);
    assert_eq!(calls(&pipeline, "values.batchGet").await, 0.0);
    assert_eq!(calls(&pipeline, "values.get").await, 0.0);
    pipeline.stop().await;
}

#[tokio::test]
async fn new_tabs_that_cannot_be_made_are_not_tried_every_pass() {
    // Two new forms write to a spreadsheet that is full (Google's 10 million cells; its one
    // tab's 26,000 here): neither tab can be created. The forms' rows wait (reported per
    // form), and sheets-sync does not look the spreadsheet up again on every pass over the
    // outbox (every 25 ms here) to try: the failed tabs are backed off, and making tabs
    // together skips them.
    let pipeline = Pipeline::start_with(false).await;
    pipeline.emulator.set_faults(Faults {
        max_cells: Some(26_000),
        ..Faults::default()
    });
    for form in ["east", "north"] {
        pipeline.put_form(form, form, &[("a", "A")], &[]).await;
        answer(&pipeline, form, 0).await;
    }
    waiting(&pipeline, 2).await;
    let pipeline = pipeline.with_sheets_sync(|_| {}).await;
    eventually(
        Duration::from_secs(20),
        "both forms reported blocked",
        || async {
            let blocked = pipeline.get("/v1/forms/east/sheet").await.1["status"] == "failing"
                && pipeline.get("/v1/forms/north/sheet").await.1["status"] == "failing";
            blocked.then_some(())
        },
    )
    .await;
    let before = looks(&pipeline).await;
    tokio::time::sleep(Duration::from_millis(1500)).await; // passes go by; nothing to wait for
    let made = looks(&pipeline).await - before;
    // Each form's own batch looks again only when its backoff is over (1 s, then 2 s...).
    assert!(made <= 3.0, "{made} looks in 1.5 s");
    assert_eq!(
        pipeline.emulator.tab_titles(SPREADSHEET).unwrap(),
        vec!["Sheet1".to_owned()]
    );
    assert_eq!(calls(&pipeline, "values.append").await, 0.0);
    pipeline.stop().await;
}

#[tokio::test]
async fn a_persons_tab_named_like_a_new_forms_in_another_case_is_the_forms_tab() {
    // A person made tabs `East` and `North`; two new forms write to `east` and `north`.
    // Google's tab names are unique whatever their case (`east` cannot be added beside
    // `East`): the forms write to the person's tabs.
    let pipeline = Pipeline::start_with(false).await;
    pipeline
        .emulator
        .batch_update(
            SPREADSHEET,
            vec![
                json!({"addSheet": {"properties": {"title": "East"}}}),
                json!({"addSheet": {"properties": {"title": "North"}}}),
            ],
        )
        .unwrap();
    for form in ["east", "north"] {
        pipeline.put_form(form, form, &[("a", "A")], &[]).await;
        answer(&pipeline, form, 0).await;
    }
    waiting(&pipeline, 2).await;
    let pipeline = pipeline.with_sheets_sync(|_| {}).await;
    for (form, tab) in [("east", "East"), ("north", "North")] {
        let cells = pipeline.tab_with_rows(tab, 1).await;
        assert_eq!(cells[0][0], "response_id");
        assert_eq!(cells[1][0], format!("{form}-0"));
        let (_, status) = pipeline.get(&format!("/v1/forms/{form}/sheet")).await;
        assert_eq!(status["status"], "writing", "{status}");
    }
    assert_eq!(
        pipeline.emulator.tab_titles(SPREADSHEET).unwrap(),
        ["Sheet1", "East", "North"].map(str::to_owned).to_vec()
    );
    pipeline.stop().await;
}
