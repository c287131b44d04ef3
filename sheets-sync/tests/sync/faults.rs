use std::time::Duration;

use serde_json::{Value, json};
use sheets_emulator::Faults;

use super::helpers::{OTHER_SPREADSHEET, Pipeline, SPREADSHEET, rows_by_id, send};

const TAB: &str = "household-finance";

#[tokio::test]
async fn with_30_percent_of_calls_refused_every_row_lands_once() {
    let pipeline = Pipeline::start().await;
    pipeline.emulator.set_faults(Faults {
        error_rate: 0.3,
        error_status: 429,
        retry_after_seconds: Some(1),
        seed: Some(7),
        ..Faults::default()
    });
    send(&pipeline, 600).await;
    let cells = pipeline.tab_with_rows(TAB, 600).await;
    assert_eq!(rows_by_id(&cells).len(), 600);
    pipeline.stop().await;
}

#[tokio::test]
async fn replies_lost_after_the_write_never_duplicate_a_row() {
    let pipeline = Pipeline::start().await;
    // One reply in four lost after the write was applied (far more than Google ever does).
    pipeline.emulator.set_faults(Faults {
        drop_reply_rate: 0.25,
        seed: Some(7),
        ..Faults::default()
    });
    send(&pipeline, 600).await;
    let cells = pipeline.tab_with_rows(TAB, 600).await;
    assert_eq!(rows_by_id(&cells).len(), 600);
    pipeline.stop().await;
}

#[tokio::test]
async fn while_google_fails_rows_wait_readyz_says_so_and_writing_resumes_by_itself() {
    let pipeline = Pipeline::start().await;
    pipeline.emulator.set_faults(Faults {
        error_rate: 1.0,
        error_status: 503,
        ..Faults::default()
    });
    send(&pipeline, 20).await;
    let (_, body) = collect_testkit::eventually(
        Duration::from_secs(30),
        "readyz to report the sheet",
        || async {
            let (status, body) = pipeline.sheets_sync_readiness().await;
            (status == 503 && body["checks"]["sheets"] != "ok").then_some((status, body))
        },
    )
    .await;
    let reason = body["checks"]["sheets"].as_str().unwrap();
    assert!(
        reason.contains("household-finance") && reason.contains("503"),
        "{reason}"
    );
    assert!(pipeline.tab(TAB).len() <= 1, "nothing written meanwhile");
    let metrics_url = format!("http://{}/metrics", pipeline.sheets_sync.unwrap());
    collect_testkit::eventually(
        Duration::from_secs(30),
        "20 rows waiting in the metrics",
        || async {
            let metrics = pipeline
                .client
                .get(&metrics_url)
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            metrics
                .lines()
                .any(|line| line == "collect_sheets_rows_waiting 20")
                .then_some(())
        },
    )
    .await;

    pipeline.emulator.set_faults(Faults::default());
    let cells = pipeline.tab_with_rows(TAB, 20).await;
    assert_eq!(rows_by_id(&cells).len(), 20);
    collect_testkit::eventually(Duration::from_secs(30), "readyz to recover", || async {
        (pipeline.sheets_sync_readiness().await.0 == 200).then_some(())
    })
    .await;
    pipeline.stop().await;
}

#[tokio::test]
async fn a_full_spreadsheet_holds_rows_until_the_form_moves_to_another() {
    let pipeline = Pipeline::start().await;
    // Room for the default tab (1000 x 26) and 200 cells more: not for the form's tab (23
    // columns, and rows), but for the 5 rows the other spreadsheet's Sheet1 gains.
    pipeline.emulator.set_faults(Faults {
        max_cells: Some(26_200),
        ..Faults::default()
    });
    send(&pipeline, 5).await;
    // The form says why; sheets-sync stays ready (Google answers: it is this form's sheet).
    let body = collect_testkit::eventually(
        Duration::from_secs(30),
        "the form's sheet reported full",
        || async {
            let body = form_sheet(&pipeline).await;
            (body["status"] == "failing").then_some(body)
        },
    )
    .await;
    assert!(
        body["failure"]["reason"]
            .as_str()
            .unwrap()
            .contains("limit"),
        "{body}"
    );
    assert_eq!(body["failure"]["about_this_sheet"], true, "{body}");
    assert_eq!(pipeline.sheets_sync_readiness().await.0, 200);

    // The operator moves the form to another spreadsheet (its existing first tab, which fits
    // under the same limit): writing resumes there by itself.
    let (_, mut form) = pipeline.get("/v1/forms/household-finance").await;
    let form = form.as_object_mut().unwrap();
    form.remove("form_id");
    form.remove("version");
    form.insert(
        "sheet".into(),
        json!({"spreadsheet_id": OTHER_SPREADSHEET, "tab": "Sheet1"}),
    );
    assert_eq!(
        pipeline
            .put("/v1/forms/household-finance", &json!(form))
            .await
            .status(),
        200
    );
    let cells = collect_testkit::eventually(
        Duration::from_secs(30),
        "rows in the new spreadsheet",
        || async {
            let cells = pipeline.emulator.tab_values(OTHER_SPREADSHEET, "Sheet1")?;
            (cells.len() == 6).then_some(cells)
        },
    )
    .await;
    assert_eq!(rows_by_id(&cells).len(), 5);
    assert_eq!(
        pipeline.emulator.tab_titles(SPREADSHEET).unwrap(),
        ["Sheet1"],
        "the full spreadsheet never got the form's tab"
    );
    collect_testkit::eventually(
        Duration::from_secs(30),
        "the form writing again",
        || async { (form_sheet(&pipeline).await["status"] == "writing").then_some(()) },
    )
    .await;
    pipeline.stop().await;
}

/// `GET /v1/forms/household-finance/sheet`.
async fn form_sheet(pipeline: &Pipeline) -> Value {
    pipeline.get("/v1/forms/household-finance/sheet").await.1
}
