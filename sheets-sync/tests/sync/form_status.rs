//! A form without a usable sheet is that form's problem: it is reported per form (its sheet
//! route and a gauge) while other forms keep flowing, and sheets-sync stays ready; only Google
//! out of reach makes it unready.

use std::time::Duration;

use collect_testkit::eventually;
use serde_json::{Value, json};

use super::helpers::{Pipeline, metric, send};

#[tokio::test]
async fn a_form_whose_spreadsheet_is_missing_is_reported_per_form_and_the_others_flow() {
    let pipeline = Pipeline::start().await;
    let form = json!({
        "title": "Lost",
        "questions": [{"id": "visits", "label": "Visits", "type": "integer"}],
        "sheet": {"spreadsheet_id": "not-shared-yet", "tab": "lost"}
    });
    assert_eq!(pipeline.put("/v1/forms/lost", &form).await.status(), 201);
    for i in 0..3 {
        let response = json!({"response_id": format!("l-{i}"), "collector": {"user_id": "u-1"},
                              "answers": {"visits": i}});
        assert_eq!(
            pipeline
                .post("/v1/forms/lost/responses", &response)
                .await
                .status(),
            202
        );
    }
    send(&pipeline, 5).await;

    // The other form's rows land, and the lost form says why its rows wait.
    eventually(Duration::from_secs(30), "the other form's rows", || async {
        (pipeline.tab("household-finance").len() == 6).then_some(())
    })
    .await;
    let (_, sheet) = eventually(Duration::from_secs(30), "the lost form failing", || async {
        let (status, body) = pipeline.get("/v1/forms/lost/sheet").await;
        (status == 200 && body["status"] == "failing" && body["rows_waiting"] == 3)
            .then_some((status, body))
    })
    .await;
    assert_eq!(sheet["form_id"], "lost");
    assert_eq!(sheet["spreadsheet_id"], "not-shared-yet");
    assert_eq!(sheet["tab"], "lost");
    assert_eq!(sheet["failure"]["spreadsheet_id"], "not-shared-yet");
    assert_eq!(sheet["failure"]["about_this_sheet"], true);
    let reason = sheet["failure"]["reason"].as_str().unwrap();
    assert!(reason.contains("404"), "{reason}");
    assert_eq!(sheet["rows_parked"], 0);
    assert_eq!(
        metric(
            &pipeline.sheets_sync_metrics().await,
            "collect_sheets_form_failing{form_id=\"lost\"}"
        ),
        Some(1.0)
    );
    // Failing longer than SHEETS_NOT_READY_AFTER_MS (300 ms here), and still ready.
    let (_, healthy) = pipeline.get("/v1/forms/household-finance/sheet").await;
    assert_eq!(
        (
            &healthy["status"],
            &healthy["failure"],
            &healthy["rows_waiting"]
        ),
        (&json!("writing"), &Value::Null, &json!(0))
    );
    let (status, body) = pipeline.sheets_sync_readiness().await;
    assert_eq!(
        (status, &body["checks"]["sheets"]),
        (200, &json!("ok")),
        "{body}"
    );

    // Someone creates and shares the spreadsheet: the rows flow by themselves.
    pipeline.emulator.create_spreadsheet("not-shared-yet");
    eventually(Duration::from_secs(60), "the lost form's rows", || async {
        let cells = pipeline.emulator.tab_values("not-shared-yet", "lost")?;
        (cells.len() == 4).then_some(())
    })
    .await;
    eventually(Duration::from_secs(30), "the lost form writing", || async {
        let (_, body) = pipeline.get("/v1/forms/lost/sheet").await;
        (body["status"] == "writing" && body["rows_waiting"] == 0).then_some(())
    })
    .await;
    eventually(Duration::from_secs(10), "the gauge back to 0", || async {
        (metric(
            &pipeline.sheets_sync_metrics().await,
            "collect_sheets_form_failing{form_id=\"lost\"}",
        ) == Some(0.0))
        .then_some(())
    })
    .await;
    let (status, body) = pipeline.get("/v1/forms/no-such-form/sheet").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("unknown_form"))
    );
    pipeline.stop().await;
}
