//! Issue 11: one refused row does not block its tab, every call has a deadline, the tab locks
//! do not grow the connections, a huge `Retry-After`, questions named like fixed columns.

use std::time::Duration;

use collect_shared::messages::{FormId, ResponseId};
use collect_shared::store::Store;
use collect_testkit::eventually;
use serde_json::{Value, json};
use sheets_emulator::Faults;

use super::helpers::{Pipeline, column, envelope, metric, rows_by_id, send};

const TAB: &str = "household-finance";
const BATCH: &str = "/v1/forms/household-finance/responses:batch";

async fn store(pipeline: &Pipeline) -> Store {
    let mut config = pipeline.sheets_sync_config();
    config.common.database_max_connections = 2;
    Store::connect(&config.common.store_settings())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_cell_over_googles_limit_is_cut_with_a_marker_and_its_row_lands() {
    let pipeline = Pipeline::start().await;
    // A 60,000-character e-mail answer: its cell, and its type flag that repeats it, are over
    // Google's 50,000 characters a cell.
    let mut long = envelope("r-long", 1, 10);
    long["answers"]["email"] = json!("x".repeat(60_000));
    let batch = json!([long, envelope("r-after", 1, 10)]);
    assert_eq!(pipeline.post(BATCH, &batch).await.status(), 202);

    let cells = pipeline.tab_with_rows(TAB, 2).await;
    let header = cells[0].clone();
    let rows = rows_by_id(&cells);
    let row = &rows["r-long"];
    assert_eq!(row[column(&header, "status")], "flagged");
    for name in ["flags", "email"] {
        let text = row[column(&header, name)].as_str().unwrap();
        assert_eq!(text.chars().count(), 50_000, "{name}");
        assert!(text.ends_with("…[truncated]"), "{name}");
    }
    let flags = row[column(&header, "flags")].as_str().unwrap();
    assert!(
        flags.starts_with("type:email: email: \"xxx"),
        "{}",
        &flags[..40]
    );
    assert_eq!(rows["r-after"][column(&header, "status")], "valid");
    pipeline.stop().await;
}

#[tokio::test]
async fn a_batch_over_googles_payload_limit_goes_out_in_requests_within_the_byte_cap() {
    // 100 rows of 120 KB (12 MB, over the 10 MiB Google takes in one request), written as one
    // batch: it becomes due only once all 100 wait.
    let pipeline = Pipeline::start_with(false)
        .await
        .with_sheets_sync(|config| {
            config.batch_rows = 100;
            config.batch_max_wait_ms = 120_000;
        })
        .await;
    pipeline
        .put_form("big", "big", &[("a", "A"), ("b", "B"), ("c", "C")], &[])
        .await;
    for chunk in (0..100).collect::<Vec<_>>().chunks(8) {
        let batch: Vec<Value> = chunk
            .iter()
            .map(|i| {
                json!({
                    "response_id": format!("big-{i}"),
                    "collector": {"user_id": "u-1"},
                    "answers": {"a": "a".repeat(40_000), "b": "b".repeat(40_000), "c": "c".repeat(40_000)},
                })
            })
            .collect();
        let response = pipeline
            .post("/v1/forms/big/responses:batch", &json!(batch))
            .await;
        assert_eq!(response.status(), 202);
    }
    let cells = pipeline.tab_with_rows("big", 100).await;
    let rows = rows_by_id(&cells);
    assert_eq!(rows.len(), 100);
    assert_eq!(rows["big-42"][1 + 3 + 1].as_str().unwrap().len(), 40_000);
    let metrics = pipeline.sheets_sync_metrics().await;
    let appends = metric(
        &metrics,
        r#"collect_sheets_api_calls_total{method="values.append",status="200"}"#,
    )
    .unwrap();
    // At most 2,000,000 bytes (SHEETS_BATCH_MAX_BYTES) a request: 16 rows.
    assert!(appends >= 7.0, "{appends} appends");
    assert!(
        !metrics.contains(r#"status="400""#),
        "a request was refused:\n{metrics}"
    );
    pipeline.stop().await;
}

#[tokio::test]
async fn a_row_the_sheet_refuses_is_parked_and_the_rows_after_it_flow() {
    let pipeline = Pipeline::start().await;
    pipeline.emulator.set_faults(Faults {
        refuse_text: Some("REFUSE-ME".into()),
        ..Faults::default()
    });
    let batch: Vec<Value> = (0..10)
        .map(|i| {
            let mut response = envelope(&format!("r-{i}"), 1, 10);
            if i == 3 {
                response["answers"]["name"] = json!("REFUSE-ME");
            }
            response
        })
        .collect();
    assert_eq!(pipeline.post(BATCH, &json!(batch)).await.status(), 202);

    // The nine others land; r-3 is parked with the API's reason, off the outbox.
    let cells = pipeline.tab_with_rows(TAB, 9).await;
    let rows = rows_by_id(&cells);
    assert!(!rows.contains_key("r-3"));
    for i in (0..10).filter(|i| *i != 3) {
        assert!(rows.contains_key(&format!("r-{i}")), "r-{i}");
    }
    let store = store(&pipeline).await;
    let r3 = ResponseId::parse("r-3").unwrap();
    let household = FormId::parse(TAB).unwrap();
    let parked = store
        .sheet_parked(&household, &r3)
        .await
        .unwrap()
        .expect("r-3 parked");
    assert_eq!(parked.tab, TAB);
    assert_eq!(parked.revision, 1);
    assert!(
        parked
            .reason
            .starts_with("values.append: 400 Invalid value at"),
        "{}",
        parked.reason
    );
    assert_eq!(
        store
            .sheet_parked(&household, &ResponseId::parse("r-4").unwrap())
            .await
            .unwrap(),
        None
    );
    // The response's GET says why it is not in the sheet.
    let (_, view) = pipeline
        .get("/v1/forms/household-finance/responses/r-3")
        .await;
    assert_eq!(view["sheet"], Value::Null, "{view}");
    assert_eq!(view["sheet_parked"]["tab"], TAB, "{view}");
    assert_eq!(view["sheet_parked"]["revision"], 1, "{view}");
    assert_eq!(
        view["sheet_parked"]["reason"],
        json!(parked.reason),
        "{view}"
    );
    eventually(Duration::from_secs(20), "the parked metrics", || async {
        let metrics = pipeline.sheets_sync_metrics().await;
        (metric(&metrics, "collect_sheets_rows_parked_total") == Some(1.0)
            && metric(&metrics, "collect_sheets_rows_parked") == Some(1.0))
        .then_some(())
    })
    .await;
    let (status, _) = pipeline.sheets_sync_readiness().await;
    assert_eq!(
        status, 200,
        "a parked row does not make sheets-sync unready"
    );

    // A newer revision unparks it.
    pipeline.emulator.set_faults(Faults::default());
    let mut fixed = envelope("r-3", 2, 10);
    fixed["answers"]["name"] = json!("Fixed");
    assert_eq!(pipeline.post(BATCH, &json!([fixed])).await.status(), 202);
    let cells = pipeline.tab_with_rows(TAB, 10).await;
    let header = cells[0].clone();
    let rows = rows_by_id(&cells);
    assert_eq!(rows["r-3"][column(&header, "name")], "Fixed");
    assert_eq!(rows["r-3"][column(&header, "revision")], 2);
    assert_eq!(store.sheet_parked(&household, &r3).await.unwrap(), None);
    eventually(Duration::from_secs(20), "the parked gauge at 0", || async {
        let metrics = pipeline.sheets_sync_metrics().await;
        (metric(&metrics, "collect_sheets_rows_parked") == Some(0.0)).then_some(())
    })
    .await;
    pipeline.stop().await;
}

#[tokio::test]
async fn a_hung_sheets_api_times_out_shows_in_readyz_and_every_row_lands_once() {
    let pipeline = Pipeline::start_with(false)
        .await
        .with_sheets_sync(|config| config.request_timeout_ms = 500)
        .await;
    send(&pipeline, 10).await;
    pipeline.tab_with_rows(TAB, 10).await;

    // The server accepts and never answers: appends time out (their outcome unknown).
    pipeline.emulator.set_faults(Faults {
        hang: true,
        ..Faults::default()
    });
    let batch: Vec<Value> = (10..20)
        .map(|i| envelope(&format!("r-{i}"), 1, 10))
        .collect();
    assert_eq!(pipeline.post(BATCH, &json!(batch)).await.status(), 202);
    let (_, body) = eventually(
        Duration::from_secs(30),
        "readyz to report the hang",
        || async {
            let (status, body) = pipeline.sheets_sync_readiness().await;
            (status == 503 && body["checks"]["sheets"] != "ok").then_some((status, body))
        },
    )
    .await;
    let reason = body["checks"]["sheets"].as_str().unwrap();
    assert!(
        reason.contains("household-finance") && reason.contains("no answer within 500 ms"),
        "{reason}"
    );
    let metrics = pipeline.sheets_sync_metrics().await;
    assert!(metrics.contains(r#"status="timeout""#), "{metrics}");
    assert_eq!(
        pipeline.tab(TAB).len(),
        11,
        "nothing written while it hangs"
    );

    pipeline.emulator.set_faults(Faults::default());
    let cells = pipeline.tab_with_rows(TAB, 20).await;
    assert_eq!(rows_by_id(&cells).len(), 20);
    eventually(Duration::from_secs(60), "readyz to recover", || async {
        (pipeline.sheets_sync_readiness().await.0 == 200).then_some(())
    })
    .await;
    pipeline.stop().await;
}

#[tokio::test]
async fn fifteen_forms_on_fifteen_tabs_with_three_database_connections() {
    let pipeline = Pipeline::start_with(false)
        .await
        .with_sheets_sync(|config| config.common.database_max_connections = 3)
        .await;
    for i in 0..15 {
        let form = format!("form-{i}");
        pipeline
            .put_form(&form, &format!("tab-{i}"), &[("answer", "Answer")], &[])
            .await;
        let response = pipeline
            .post(
                &format!("/v1/forms/{form}/responses"),
                &json!({
                    "response_id": format!("f{i}"),
                    "collector": {"user_id": "u-1"},
                    "answers": {"answer": format!("answer {i}")},
                }),
            )
            .await;
        assert_eq!(response.status(), 202);
    }
    for i in 0..15 {
        let cells = pipeline.tab_with_rows(&format!("tab-{i}"), 1).await;
        let answer = column(&cells[0], "Answer");
        assert_eq!(cells[1][0], format!("f{i}"));
        assert_eq!(cells[1][answer], format!("answer {i}"));
    }
    pipeline.stop().await;
}

#[tokio::test]
async fn a_huge_retry_after_backs_the_tab_off_and_readyz_still_tells() {
    let pipeline = Pipeline::start().await;
    pipeline.emulator.set_faults(Faults {
        error_rate: 1.0,
        error_status: 429,
        retry_after_seconds: Some(99_999_999_999),
        ..Faults::default()
    });
    send(&pipeline, 3).await;
    let sheet = || async { pipeline.get("/v1/forms/household-finance/sheet").await.1 };
    let body = eventually(
        Duration::from_secs(30),
        "the form's sheet to report the 429",
        || async {
            let body = sheet().await;
            (body["status"] == "failing").then_some(body)
        },
    )
    .await;
    let reason = body["failure"]["reason"].as_str().unwrap();
    assert!(reason.contains("429"), "{reason}");
    // The writer lives on (it did not panic): its heartbeat keeps beating, so sheets-sync is
    // ready (over quota is this credential's state, not Google out of reach), and the form
    // still says why.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (status, body) = pipeline.sheets_sync_readiness().await;
    assert_eq!(
        (status, &body["checks"]["sheets"]),
        (200, &json!("ok")),
        "{body}"
    );
    let body = sheet().await;
    assert_eq!(body["status"], "failing", "{body}");
    assert!(
        body["failure"]["reason"].as_str().unwrap().contains("429"),
        "{body}"
    );
    pipeline.stop().await;
}

#[tokio::test]
async fn a_question_labelled_like_another_column_keeps_its_answer() {
    let pipeline = Pipeline::start().await;
    pipeline
        .put_form(
            "labels",
            "labels",
            &[
                ("state", "status"),
                ("place", "location"),
                ("rev", "revision"),
            ],
            &["location"],
        )
        .await;
    let response = pipeline
        .post(
            "/v1/forms/labels/responses",
            &json!({
                "response_id": "l-1",
                "collector": {"user_id": "u-1"},
                "answers": {"state": "married", "place": "Pune", "rev": "7"},
                "metadata": {"location": "Mumbai"},
            }),
        )
        .await;
    assert_eq!(response.status(), 202);
    let cells = pipeline.tab_with_rows("labels", 1).await;
    let header = &cells[0];
    let row = &cells[1];
    for (name, value) in [
        ("response_id", json!("l-1")),
        ("status", json!("valid")),
        ("revision", json!(0)),
        ("location", json!("Mumbai")),
        ("status (question)", json!("married")),
        ("location (question)", json!("Pune")),
        ("revision (question)", json!("7")),
    ] {
        assert_eq!(row[column(header, name)], value, "{name}");
    }
    pipeline.stop().await;
}
