//! The emulator driven by the clients `sheets-sync` uses: `yup-oauth2` for the service-account
//! token and `google-sheets4` for the calls, over plain HTTP.

#![allow(clippy::unwrap_used)]

mod support;

use google_sheets4::api::{
    AddSheetRequest, BatchUpdateSpreadsheetRequest, BatchUpdateValuesRequest, Request, Scope,
    SheetProperties, ValueRange,
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
