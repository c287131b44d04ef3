//! The emulator driven by the clients `sheets-sync` uses: `yup-oauth2` for the service-account
//! token and `google-sheets4` for the calls, over plain HTTP.

#![allow(clippy::unwrap_used)]

mod support;

use google_sheets4::api::{
    AddSheetRequest, AppendDimensionRequest, BatchUpdateSpreadsheetRequest,
    BatchUpdateValuesRequest, DeleteDimensionRequest, DimensionRange, GridRange,
    InsertDimensionRequest, Request, Scope, SheetProperties, SortRangeRequest, SortSpec,
    ValueRange,
};
use google_sheets4::{Error, Sheets};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use support::{SPREADSHEET, start};

async fn hub(url: &str, key: &Value) -> Sheets<HttpConnector> {
    let key: yup_oauth2::ServiceAccountKey = serde_json::from_value(key.clone()).unwrap();
    let auth_client = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let auth = yup_oauth2::ServiceAccountAuthenticator::with_client(
        key,
        yup_oauth2::client::CustomHyperClientBuilder::from(auth_client),
    )
    .build()
    .await
    .unwrap();
    let client = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let mut hub = Sheets::new(client, auth);
    // google-sheets4 appends `v4/spreadsheets/...` to the base URL itself.
    hub.base_url(format!("{url}/"));
    hub.root_url(format!("{url}/"));
    hub
}

fn rows(values: Value) -> ValueRange {
    ValueRange {
        values: Some(serde_json::from_value(values).unwrap()),
        major_dimension: Some("ROWS".into()),
        range: None,
    }
}

#[tokio::test]
async fn google_sheets4_and_yup_oauth2_work_against_the_emulator() {
    let server = start().await;
    let hub = hub(&server.url, &server.key).await;

    let add = BatchUpdateSpreadsheetRequest {
        requests: Some(vec![Request {
            add_sheet: Some(AddSheetRequest {
                properties: Some(SheetProperties {
                    title: Some("Responses 2024".into()),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let (_, added) = hub
        .spreadsheets()
        .batch_update(add, SPREADSHEET)
        .add_scope(Scope::Spreadsheet)
        .doit()
        .await
        .unwrap();
    let replies = added.replies.unwrap();
    let properties = replies[0].add_sheet.as_ref().unwrap().properties.as_ref();
    assert_eq!(
        properties.and_then(|p| p.title.as_deref()),
        Some("Responses 2024")
    );

    // Headers with values.batchUpdate, RAW.
    let headers = BatchUpdateValuesRequest {
        value_input_option: Some("RAW".into()),
        data: Some(vec![ValueRange {
            range: Some("'Responses 2024'!A1:C1".into()),
            values: Some(vec![vec![json!("id"), json!("answer"), json!("score")]]),
            major_dimension: Some("ROWS".into()),
        }]),
        ..Default::default()
    };
    let (_, written) = hub
        .spreadsheets()
        .values_batch_update(headers, SPREADSHEET)
        .add_scope(Scope::Spreadsheet)
        .doit()
        .await
        .unwrap();
    assert_eq!(written.total_updated_cells, Some(3));

    // Two appends, the range percent-encoded as sheets-sync sends it, and raw.
    let encoded = "%27Responses%202024%27%21A%3AC";
    let (_, first) = hub
        .spreadsheets()
        .values_append(
            rows(json!([["r1", "=IMPORTXML(\"http://x\",\"//a\")", 3]])),
            SPREADSHEET,
            encoded,
        )
        .value_input_option("RAW")
        .insert_data_option("INSERT_ROWS")
        .add_scope(Scope::Spreadsheet)
        .doit()
        .await
        .unwrap();
    assert_eq!(first.table_range.as_deref(), Some("'Responses 2024'!A1:C1"));
    let updates = first.updates.unwrap();
    assert_eq!(
        updates.updated_range.as_deref(),
        Some("'Responses 2024'!A2:C2")
    );
    assert_eq!(updates.updated_cells, Some(3));

    let (_, second) = hub
        .spreadsheets()
        .values_append(
            rows(json!([["r2", "yes", 4.5], ["r3", "no", 0]])),
            SPREADSHEET,
            "'Responses 2024'!A:C",
        )
        .value_input_option("RAW")
        .insert_data_option("INSERT_ROWS")
        .add_scope(Scope::Spreadsheet)
        .doit()
        .await
        .unwrap();
    assert_eq!(
        second.updates.unwrap().updated_range.as_deref(),
        Some("'Responses 2024'!A3:C4")
    );

    let (_, read) = hub
        .spreadsheets()
        .values_get(SPREADSHEET, encoded)
        .value_render_option("UNFORMATTED_VALUE")
        .add_scope(Scope::Spreadsheet)
        .doit()
        .await
        .unwrap();
    assert_eq!(read.range.as_deref(), Some("'Responses 2024'!A1:C1003"));
    assert_eq!(
        json!(read.values.unwrap()),
        json!([
            ["id", "answer", "score"],
            ["r1", "=IMPORTXML(\"http://x\",\"//a\")", 3],
            ["r2", "yes", 4.5],
            ["r3", "no", 0],
        ])
    );

    let (_, spreadsheet) = hub
        .spreadsheets()
        .get(SPREADSHEET)
        .add_scope(Scope::Spreadsheet)
        .doit()
        .await
        .unwrap();
    let titles: Vec<String> = spreadsheet
        .sheets
        .unwrap()
        .into_iter()
        .filter_map(|sheet| sheet.properties?.title)
        .collect();
    assert_eq!(titles, ["Sheet1", "Responses 2024"]);
    assert_eq!(server.emulator.stats().tokens_issued, 2);
}

#[tokio::test]
async fn the_clients_see_faults_as_google_would_show_them() {
    let server = start().await;
    let hub = hub(&server.url, &server.key).await;
    let append = |label: &'static str| {
        hub.spreadsheets()
            .values_append(rows(json!([[label]])), SPREADSHEET, "Sheet1!A:A")
            .value_input_option("RAW")
            .insert_data_option("INSERT_ROWS")
            .add_scope(Scope::Spreadsheet)
            .doit()
    };

    // A lost reply: the client gets a transport error although the row was written.
    server.set_faults(json!({ "drop_reply_rate": 1.0 })).await;
    let error = append("lost reply").await.unwrap_err();
    assert!(matches!(error, Error::HttpError(_)), "{error:?}");
    assert_eq!(
        server.emulator.tab_values(SPREADSHEET, "Sheet1").unwrap(),
        vec![vec![json!("lost reply")]]
    );

    // A quota refusal: Google's error body, nothing written.
    server
        .set_faults(json!({ "error_rate": 1.0, "error_status": 429, "retry_after_seconds": 3 }))
        .await;
    match append("refused").await.unwrap_err() {
        Error::BadRequest(body) => {
            assert_eq!(body["error"]["code"], 429);
            assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED");
        }
        other => panic!("expected Google's error body, got {other:?}"),
    }
    assert_eq!(
        server
            .emulator
            .tab_values(SPREADSHEET, "Sheet1")
            .unwrap()
            .len(),
        1
    );

    server.set_faults(json!({})).await;
    let (_, appended) = append("fine").await.unwrap();
    assert_eq!(
        appended.updates.unwrap().updated_range.as_deref(),
        Some("Sheet1!A2")
    );
}

#[tokio::test]
async fn google_sheets4_sorts_inserts_and_deletes_rows_like_a_person() {
    let server = start().await;
    let hub = hub(&server.url, &server.key).await;
    server
        .emulator
        .update_values(
            SPREADSHEET,
            "Sheet1!A1",
            serde_json::from_value(json!([
                ["id", "score"],
                ["r1", 30],
                ["r2", "absent"],
                ["r3", 10],
                ["r4", ""],
                ["r5", 20],
            ]))
            .unwrap(),
        )
        .unwrap();
    let batch = |requests: Vec<Request>| {
        hub.spreadsheets()
            .batch_update(
                BatchUpdateSpreadsheetRequest {
                    requests: Some(requests),
                    ..Default::default()
                },
                SPREADSHEET,
            )
            .add_scope(Scope::Spreadsheet)
            .doit()
    };
    let rows_range = |start: i32, end: i32| DimensionRange {
        sheet_id: Some(0),
        dimension: Some("ROWS".into()),
        start_index: Some(start),
        end_index: Some(end),
    };

    // Sort the data rows by score, descending (text first, empty last); then delete row index 3
    // (r5 once sorted), insert an empty row under the header, and add 10 rows at the bottom,
    // in one batch.
    let (_, reply) = batch(vec![
        Request {
            sort_range: Some(SortRangeRequest {
                range: Some(GridRange {
                    sheet_id: Some(0),
                    start_row_index: Some(1),
                    ..Default::default()
                }),
                sort_specs: Some(vec![SortSpec {
                    dimension_index: Some(1),
                    sort_order: Some("DESCENDING".into()),
                    ..Default::default()
                }]),
            }),
            ..Default::default()
        },
        Request {
            delete_dimension: Some(DeleteDimensionRequest {
                range: Some(rows_range(3, 4)),
            }),
            ..Default::default()
        },
        Request {
            insert_dimension: Some(InsertDimensionRequest {
                range: Some(rows_range(1, 2)),
                inherit_from_before: Some(true),
            }),
            ..Default::default()
        },
        Request {
            append_dimension: Some(AppendDimensionRequest {
                sheet_id: Some(0),
                dimension: Some("ROWS".into()),
                length: Some(10),
            }),
            ..Default::default()
        },
    ])
    .await
    .unwrap();
    assert_eq!(reply.replies.map(|r| r.len()), Some(4));
    assert_eq!(
        json!(server.emulator.tab_values(SPREADSHEET, "Sheet1").unwrap()),
        json!([
            ["id", "score"],
            [],
            ["r2", "absent"],
            ["r1", 30],
            ["r3", 10],
            ["r4"],
        ])
    );
    assert_eq!(
        server.emulator.grid_size(SPREADSHEET, "Sheet1"),
        Some((1010, 26))
    );

    // Deleting every row: Google's 400, as the client shows it; nothing changes.
    match batch(vec![Request {
        delete_dimension: Some(DeleteDimensionRequest {
            range: Some(DimensionRange {
                sheet_id: Some(0),
                dimension: Some("ROWS".into()),
                ..Default::default()
            }),
        }),
        ..Default::default()
    }])
    .await
    .unwrap_err()
    {
        Error::BadRequest(body) => {
            assert_eq!(body["error"]["code"], 400);
            assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
            assert_eq!(
                body["error"]["message"],
                "Invalid requests[0].deleteDimension: You can't delete all the rows on the sheet."
            );
        }
        other => panic!("expected Google's error body, got {other:?}"),
    }
    assert_eq!(
        server.emulator.grid_size(SPREADSHEET, "Sheet1"),
        Some((1010, 26))
    );
}
