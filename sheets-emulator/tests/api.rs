//! The emulator over HTTP, as a client of Google's API would see it.

#![allow(clippy::unwrap_used)]

mod support;

use serde_json::{Value, json};
use support::{SPREADSHEET, rows, start};

#[tokio::test]
async fn append_reports_the_rows_it_wrote_and_appends_land_one_after_another() {
    let server = start().await;
    let (status, reply) = server
        .put(
            "/values/Sheet1!A1:T10?valueInputOption=RAW",
            json!({ "values": rows(0, 10, 20) }),
        )
        .await;
    assert_eq!(status, 200, "{reply}");

    let (status, reply) = server.append("Sheet1!A:T", rows(10, 50, 20)).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply,
        json!({
            "spreadsheetId": SPREADSHEET,
            "tableRange": "Sheet1!A1:T10",
            "updates": {
                "spreadsheetId": SPREADSHEET,
                "updatedRange": "Sheet1!A11:T60",
                "updatedRows": 50,
                "updatedColumns": 20,
                "updatedCells": 1000,
            },
        })
    );

    let (_, reply) = server.append("Sheet1!A:T", rows(60, 2, 20)).await;
    assert_eq!(reply["tableRange"], "Sheet1!A1:T60");
    assert_eq!(reply["updates"]["updatedRange"], "Sheet1!A61:T62");

    let stored = server.emulator.tab_values(SPREADSHEET, "Sheet1").unwrap();
    assert_eq!(stored.len(), 62);
    for (index, row) in stored.iter().enumerate() {
        assert_eq!(row[0], json!(format!("r{index}c0")));
    }
}

#[tokio::test]
async fn append_to_an_empty_tab_starts_at_the_range_and_has_no_table() {
    let server = start().await;
    let (status, reply) = server.append("Sheet1", rows(0, 3, 2)).await;
    assert_eq!(status, 200, "{reply}");
    assert!(reply.get("tableRange").is_none(), "{reply}");
    assert_eq!(reply["updates"]["updatedRange"], "Sheet1!A1:B3");
}

#[tokio::test]
async fn append_is_not_idempotent() {
    let server = start().await;
    let batch = rows(0, 2, 3);
    let (first, _) = server.append("Sheet1!A1", batch.clone()).await;
    let (second, reply) = server.append("Sheet1!A1", batch).await;
    assert_eq!((first, second), (200, 200));
    assert_eq!(reply["updates"]["updatedRange"], "Sheet1!A3:C4");
    let stored = server.emulator.tab_values(SPREADSHEET, "Sheet1").unwrap();
    assert_eq!(stored.len(), 4);
    assert_eq!(stored[0], stored[2]);
    assert_eq!(server.emulator.write_count(), 2);
}

#[tokio::test]
async fn update_and_batch_update_write_where_asked() {
    let server = start().await;
    let (status, reply) = server
        .put(
            "/values/Sheet1!B2:D3?valueInputOption=RAW",
            json!({ "range": "Sheet1!B2:D3", "majorDimension": "ROWS", "values": [["a", 1, true], ["b"]] }),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply,
        json!({
            "spreadsheetId": SPREADSHEET,
            "updatedRange": "Sheet1!B2:D3",
            "updatedRows": 2,
            "updatedColumns": 3,
            "updatedCells": 4,
        })
    );

    // More rows than the range holds is refused, as Google does.
    let (status, reply) = server
        .put(
            "/values/Sheet1!A1:B1?valueInputOption=RAW",
            json!({ "values": [["x"], ["y"]] }),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        reply["error"]["message"],
        "Requested writing within range ['Sheet1'!A1:B1], but tried writing to row [2]"
    );

    // valueInputOption is required.
    let (status, reply) = server
        .put("/values/Sheet1!A1", json!({ "values": [["x"]] }))
        .await;
    assert_eq!(status, 400);
    assert_eq!(reply["error"]["status"], "INVALID_ARGUMENT");

    let (status, reply) = server
        .post(
            ":batchUpdate",
            json!({ "requests": [{ "addSheet": { "properties": { "title": "My tab" } } }] }),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply["replies"][0]["addSheet"]["properties"]["title"],
        "My tab"
    );
    assert_eq!(reply["replies"][0]["addSheet"]["properties"]["index"], 1);

    let (status, reply) = server
        .post(
            "/values:batchUpdate",
            json!({
                "valueInputOption": "USER_ENTERED",
                "data": [
                    { "range": "Sheet1!A1", "values": [["1", "2"]] },
                    { "range": "'My tab'!A1:A3", "majorDimension": "COLUMNS", "values": [["x", "y", "z"]] },
                ],
            }),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["totalUpdatedRows"], 4);
    assert_eq!(reply["totalUpdatedColumns"], 3);
    assert_eq!(reply["totalUpdatedCells"], 5);
    assert_eq!(reply["totalUpdatedSheets"], 2);
    assert_eq!(reply["responses"][1]["updatedRange"], "'My tab'!A1:A3");
    assert_eq!(
        server.emulator.tab_values(SPREADSHEET, "My tab").unwrap(),
        vec![vec![json!("x")], vec![json!("y")], vec![json!("z")]]
    );
    assert_eq!(
        server.emulator.tab_values(SPREADSHEET, "Sheet1").unwrap()[0],
        vec![json!(1), json!(2)]
    );

    // One bad range refuses the whole batch.
    let (status, reply) = server
        .post(
            "/values:batchUpdate",
            json!({
                "valueInputOption": "RAW",
                "data": [
                    { "range": "Sheet1!Z9", "values": [["kept?"]] },
                    { "range": "Nope!A1", "values": [["x"]] },
                ],
            }),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(reply["error"]["message"], "Unable to parse range: Nope!A1");
    let sheet1 = server.emulator.tab_values(SPREADSHEET, "Sheet1").unwrap();
    assert!(sheet1.len() < 9, "the batch was applied in part");
}

#[tokio::test]
async fn raw_keeps_a_formula_as_text_and_user_entered_makes_it_a_formula() {
    let server = start().await;
    let formula = r#"=IMPORTXML("http://x","//a")"#;
    let (status, _) = server
        .put(
            "/values/Sheet1!A1?valueInputOption=RAW",
            json!({ "values": [[formula]] }),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = server
        .put(
            "/values/Sheet1!A2?valueInputOption=USER_ENTERED",
            json!({ "values": [[formula]] }),
        )
        .await;
    assert_eq!(status, 200);

    let cells = server.emulator.tab_cells(SPREADSHEET, "Sheet1").unwrap();
    assert_eq!(cells[0][0], sheets_emulator::Cell::Text(formula.into()));
    assert_eq!(cells[1][0], sheets_emulator::Cell::Formula(formula.into()));

    let (_, formatted) = server.get("/values/Sheet1!A1:A2").await;
    assert_eq!(formatted["values"], json!([[formula], ["#ERROR!"]]));
    let (_, formulas) = server
        .get("/values/Sheet1!A1:A2?valueRenderOption=FORMULA")
        .await;
    assert_eq!(formulas["values"], json!([[formula], [formula]]));
}

#[tokio::test]
async fn formatted_and_unformatted_render_differ_like_google() {
    let server = start().await;
    server
        .put(
            "/values/Sheet1!A1?valueInputOption=USER_ENTERED",
            json!({ "values": [["42", "2.5", "TRUE", "text", "", "'7"]] }),
        )
        .await;
    let (status, formatted) = server.get("/values/Sheet1!A1:Z1").await;
    assert_eq!(status, 200, "{formatted}");
    assert_eq!(
        formatted,
        json!({
            "range": "Sheet1!A1:Z1",
            "majorDimension": "ROWS",
            "values": [["42", "2.5", "TRUE", "text", "", "7"]],
        })
    );
    let (_, unformatted) = server
        .get("/values/Sheet1!A1:Z1?valueRenderOption=UNFORMATTED_VALUE")
        .await;
    assert_eq!(
        unformatted["values"],
        json!([[42, 2.5, true, "text", "", "7"]])
    );
    // An empty range has no `values` at all.
    let (_, empty) = server.get("/values/Sheet1!C5:D9").await;
    assert_eq!(
        empty,
        json!({ "range": "Sheet1!C5:D9", "majorDimension": "ROWS" })
    );
    // The whole tab is clipped to the grid.
    let (_, whole) = server.get("/values/Sheet1").await;
    assert_eq!(whole["range"], "Sheet1!A1:Z1000");
}

#[tokio::test]
async fn ranges_arrive_encoded_or_not() {
    let server = start().await;
    server
        .post(
            ":batchUpdate",
            json!({ "requests": [
                { "addSheet": { "properties": { "title": "It's" } } },
                { "addSheet": { "properties": { "title": "Q&A #1 / 2" } } },
            ] }),
        )
        .await;
    let (status, reply) = server
        .put(
            "/values/%27It%27%27s%27%21A1?valueInputOption=RAW",
            json!({ "values": [["quoted"]] }),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["updatedRange"], "'It''s'!A1");
    let (status, reply) = server
        .append("%27Q%26A%20%231%20%2F%202%27%21A%3AB", json!([["x", "y"]]))
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["updates"]["updatedRange"], "'Q&A #1 / 2'!A1:B1");
    // Unencoded, as google-sheets4 sends a range it was given as is.
    let (status, reply) = server.get("/values/'It''s'!A1").await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["values"], json!([["quoted"]]));
    // Columns past Z: the grid must have them (update does not grow it; append does).
    let (status, reply) = server
        .put(
            "/values/Sheet1!AA3?valueInputOption=RAW",
            json!({ "values": [["far"]] }),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        reply["error"]["message"],
        "Range ('Sheet1'!AA3) exceeds grid limits. Max rows: 1000, max columns: 26"
    );
    // (INSERT_ROWS: the grid gains a row as well as a column.)
    let (status, reply) = server.append("Sheet1!Z3", json!([["z", "far"]])).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["updates"]["updatedRange"], "Sheet1!Z3:AA3");
    let (_, reply) = server.get("/values/Sheet1!AA3:AA3").await;
    assert_eq!(reply["values"], json!([["far"]]));
    // A range without a tab is on the first tab.
    let (_, reply) = server.get("/values/AA3").await;
    assert_eq!(reply["range"], "Sheet1!AA3");
    // Reading past the grid is refused too.
    let (status, reply) = server.get("/values/Sheet1!A1:AB2").await;
    assert_eq!(status, 400);
    assert_eq!(
        reply["error"]["message"],
        "Range ('Sheet1'!A1:AB2) exceeds grid limits. Max rows: 1001, max columns: 27"
    );

    let (status, reply) = server
        .call(server.http.get(format!(
            "{}?ranges=Sheet1!AA3&ranges=%27It%27%27s%27!A1",
            server.v4("/values:batchGet")
        )))
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["valueRanges"][0]["values"], json!([["far"]]));
    assert_eq!(reply["valueRanges"][1]["values"], json!([["quoted"]]));
}

#[tokio::test]
async fn unknown_tabs_spreadsheets_and_requests_get_googles_errors() {
    let server = start().await;
    let (status, reply) = server.get("/values/Nope!A1").await;
    assert_eq!(status, 400);
    assert_eq!(
        reply,
        json!({ "error": { "code": 400, "message": "Unable to parse range: Nope!A1", "status": "INVALID_ARGUMENT" } })
    );
    let (status, reply) = server
        .call(
            server
                .http
                .get(format!("{}/v4/spreadsheets/missing", server.url)),
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        reply,
        json!({ "error": { "code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND" } })
    );
    let (status, reply) = server
        .post(
            ":batchUpdate",
            json!({ "requests": [{ "addSheet": { "properties": { "title": "Sheet1" } } }] }),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        reply["error"]["message"],
        "Invalid requests[0].addSheet: A sheet with the name \"Sheet1\" already exists. Please enter another name."
    );
    let (status, _) = server
        .post(
            ":batchUpdate",
            json!({ "requests": [{ "repeatCell": {} }] }),
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn spreadsheets_are_created_and_described_like_googles() {
    let server = start().await;
    let (status, created) = server
        .call(
            server
                .http
                .post(format!("{}/v4/spreadsheets", server.url))
                .json(&json!({
                    "properties": { "title": "Responses" },
                    "sheets": [{ "properties": { "title": "Form A" } }],
                })),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let id = created["spreadsheetId"].as_str().unwrap();
    assert_eq!(created["properties"]["title"], "Responses");
    assert_eq!(
        created["sheets"][0]["properties"],
        json!({
            "sheetId": 0,
            "title": "Form A",
            "index": 0,
            "sheetType": "GRID",
            "gridProperties": { "rowCount": 1000, "columnCount": 26 },
        })
    );
    assert!(created["spreadsheetUrl"].as_str().unwrap().contains(id));
    let (status, fetched) = server
        .call(
            server
                .http
                .get(format!("{}/v4/spreadsheets/{id}", server.url)),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(fetched, created);
}

#[tokio::test]
async fn sheets_routes_need_a_token() {
    let server = start().await;
    let response = server
        .http
        .get(server.v4("/values/Sheet1!A1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.headers().contains_key("www-authenticate"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], 401);
    assert_eq!(body["error"]["status"], "UNAUTHENTICATED");

    let response = server
        .http
        .get(server.v4("/values/Sheet1!A1"))
        .bearer_auth("ya29.made-up")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(server.emulator.stats().unauthenticated, 2);
}

#[tokio::test]
async fn the_token_endpoint_checks_signature_audience_and_time() {
    let server = start().await;
    let (status, reply) = server.exchange(&server.assertion(&server.claims())).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["token_type"], "Bearer");
    assert_eq!(reply["expires_in"], 3599);
    assert!(reply["access_token"].as_str().unwrap().starts_with("ya29."));

    // A signature over other claims.
    let good = server.assertion(&server.claims());
    let mut parts: Vec<&str> = good.split('.').collect();
    let mut other = server.claims();
    other["scope"] = json!("https://www.googleapis.com/auth/drive");
    let forged_claims = server.assertion(&other);
    parts[1] = forged_claims.split('.').nth(1).unwrap();
    let (status, reply) = server.exchange(&parts.join(".")).await;
    assert_eq!(status, 400);
    assert_eq!(
        reply,
        json!({ "error": "invalid_grant", "error_description": "Invalid JWT Signature." })
    );

    let mut wrong_audience = server.claims();
    wrong_audience["aud"] = json!("https://oauth2.googleapis.com/token");
    let (status, reply) = server.exchange(&server.assertion(&wrong_audience)).await;
    assert_eq!(status, 400);
    assert_eq!(reply["error"], "invalid_grant");
    assert!(
        reply["error_description"]
            .as_str()
            .unwrap()
            .contains("Failed audience check"),
        "{reply}"
    );

    let mut expired = server.claims();
    expired["iat"] = json!(support::now() - 7200);
    expired["exp"] = json!(support::now() - 3600);
    let (status, reply) = server.exchange(&server.assertion(&expired)).await;
    assert_eq!(status, 400);
    assert!(
        reply["error_description"]
            .as_str()
            .unwrap()
            .contains("short-lived"),
        "{reply}"
    );

    let mut too_long = server.claims();
    too_long["exp"] = json!(support::now() + 7200);
    let (status, _) = server.exchange(&server.assertion(&too_long)).await;
    assert_eq!(status, 400);

    let (status, reply) = server.exchange("not.a.jwt").await;
    assert_eq!(status, 400);
    assert_eq!(reply["error"], "invalid_grant");

    // A key the emulator never issued.
    let stranger = sheets_emulator::Emulator::new().issue_key(&format!("{}/token", server.url));
    let mut claims = server.claims();
    claims["iss"] = stranger["client_email"].clone();
    let (status, _) = server.exchange(&support::sign(&stranger, &claims)).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn injected_errors_carry_retry_after() {
    let server = start().await;
    server
        .set_faults(json!({ "error_rate": 1.0, "error_status": 429, "retry_after_seconds": 7 }))
        .await;
    let response = server
        .http
        .get(server.v4("/values/Sheet1!A1"))
        .bearer_auth(&server.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "7");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED");

    // Nothing was applied, and the token endpoint is spared unless asked.
    let (status, _) = server.append("Sheet1", json!([["x"]])).await;
    assert_eq!(status, 429);
    assert_eq!(server.emulator.write_count(), 0);
    let (status, _) = server.exchange(&server.assertion(&server.claims())).await;
    assert_eq!(status, 200);

    server
        .set_faults(json!({ "error_rate": 1.0, "error_status": 503 }))
        .await;
    let (status, body) = server.get("/values/Sheet1!A1").await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["status"], "UNAVAILABLE");
}

#[tokio::test]
async fn writes_per_minute_is_a_quota_like_googles() {
    let server = start().await;
    server.set_faults(json!({ "writes_per_minute": 2 })).await;
    for _ in 0..2 {
        let (status, _) = server.append("Sheet1", json!([["x"]])).await;
        assert_eq!(status, 200);
    }
    let response = server
        .http
        .post(server.v4("/values/Sheet1:append?valueInputOption=RAW"))
        .bearer_auth(&server.token)
        .json(&json!({ "values": [["x"]] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    // As Google: no Retry-After unless the faults ask for one.
    assert!(!response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Quota exceeded for quota metric 'Write requests'"),
        "{body}"
    );
    // Reads have their own quota.
    let (status, _) = server.get("/values/Sheet1").await;
    assert_eq!(status, 200);
    assert_eq!(
        server
            .emulator
            .tab_values(SPREADSHEET, "Sheet1")
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn a_dropped_reply_is_a_transport_error_after_the_write() {
    let server = start().await;
    server.set_faults(json!({ "drop_reply_rate": 1.0 })).await;
    let outcome = server
        .http
        .post(server.v4("/values/Sheet1:append?valueInputOption=RAW"))
        .bearer_auth(&server.token)
        .json(&json!({ "values": [["applied"]] }))
        .send()
        .await;
    let error = outcome.expect_err("the reply should have been dropped");
    assert!(error.status().is_none(), "{error:?}");
    assert_eq!(
        server.emulator.tab_values(SPREADSHEET, "Sheet1").unwrap(),
        vec![vec![json!("applied")]]
    );
    assert_eq!(server.emulator.stats().replies_dropped, 1);
    assert_eq!(server.emulator.write_count(), 1);

    server.set_faults(json!({})).await;
    let (status, _) = server.get("/values/Sheet1").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn the_cell_limit_counts_the_grid() {
    let server = start().await;
    // One tab of 1000 x 26 = 26,000 cells; room for five more rows.
    server
        .set_faults(json!({ "max_cells": 26_000 + 5 * 26 }))
        .await;
    let (status, reply) = server.append("Sheet1", rows(0, 5, 3)).await;
    assert_eq!(status, 200, "{reply}");
    let (status, reply) = server.append("Sheet1", rows(5, 1, 3)).await;
    assert_eq!(status, 400);
    assert_eq!(
        reply["error"]["message"],
        "This action would increase the number of cells in the workbook above the limit of 26130 cells."
    );
    assert_eq!(
        server
            .emulator
            .tab_values(SPREADSHEET, "Sheet1")
            .unwrap()
            .len(),
        5
    );
    // So is a new tab.
    let (status, _) = server
        .post(
            ":batchUpdate",
            json!({ "requests": [{ "addSheet": { "properties": { "title": "More" } } }] }),
        )
        .await;
    assert_eq!(status, 400);

    let long = "x".repeat(50_001);
    let (status, reply) = server
        .put(
            "/values/Sheet1!A1?valueInputOption=RAW",
            json!({ "values": [[long]] }),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        reply["error"]["message"],
        "Your input contains more than the maximum of 50000 characters in a single cell."
    );
}

#[tokio::test]
async fn debug_routes_show_and_shape_the_state() {
    let server = start().await;
    let response = server
        .http
        .put(format!("{}/emulator/spreadsheets/made-here", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert!(
        server
            .emulator
            .spreadsheet_ids()
            .contains(&"made-here".to_owned())
    );

    server
        .put(
            "/values/Sheet1!A1?valueInputOption=RAW",
            json!({ "values": [["a,b", "say \"hi\""], [1, true]] }),
        )
        .await;
    let csv = server
        .http
        .get(format!(
            "{}/emulator/spreadsheets/{SPREADSHEET}/tabs/Sheet1.csv",
            server.url
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(csv, "\"a,b\",\"say \"\"hi\"\"\"\r\n1,TRUE\r\n");

    let key: Value = server
        .http
        .post(format!("{}/emulator/service-accounts", server.url))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(key["type"], "service_account");
    assert_eq!(key["token_uri"], format!("{}/token", server.url));
    for field in [
        "project_id",
        "private_key_id",
        "client_email",
        "client_id",
        "auth_uri",
    ] {
        assert!(key[field].is_string(), "{field}");
    }

    let faults: Value = server
        .http
        .get(format!("{}/emulator/faults", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(faults["error_rate"], 0.0);
    let refused = server
        .http
        .put(format!("{}/emulator/faults", server.url))
        .json(&json!({ "error_rate": 2 }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);

    let health = server
        .http
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn a_key_file_and_its_tokens_survive_a_restart() {
    let dir = std::env::temp_dir().join(format!(
        "sheets-emulator-key-{}-{}",
        std::process::id(),
        support::now()
    ));
    let path = dir.join("key.json");

    // First run: the file is created, and a client gets a token for its key.
    let first = start().await;
    let token_uri = format!("{}/token", first.url);
    first
        .emulator
        .load_or_create_key_file(&path, &token_uri)
        .unwrap();
    let key: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(key["token_uri"], json!(token_uri));
    let mut claims = first.claims();
    claims["iss"] = key["client_email"].clone();
    let (status, reply) = first.exchange(&support::sign(&key, &claims)).await;
    assert_eq!(status, 200, "{reply}");
    let token = reply["access_token"].as_str().unwrap().to_owned();

    // Second run, same file: the key is trusted again and the cached token still works.
    let second = start().await;
    second
        .emulator
        .load_or_create_key_file(&path, "unused")
        .unwrap();
    let response = second
        .http
        .get(second.v4("/values/Sheet1!A1"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut claims = second.claims();
    claims["iss"] = key["client_email"].clone();
    claims["aud"] = json!(format!("{}/token", second.url));
    let (status, reply) = second.exchange(&support::sign(&key, &claims)).await;
    assert_eq!(status, 200, "{reply}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_hung_server_accepts_and_never_answers_until_the_hang_is_lifted() {
    let server = start().await;
    server.set_faults(json!({ "hang": true })).await;
    // A client that gives up: no answer, nothing applied.
    let outcome = server
        .http
        .post(server.v4("/values/Sheet1:append?valueInputOption=RAW"))
        .bearer_auth(&server.token)
        .timeout(std::time::Duration::from_millis(300))
        .json(&json!({ "values": [["late"]] }))
        .send()
        .await;
    assert!(outcome.expect_err("no answer").is_timeout());
    // A client that waits gets its answer once the hang is lifted.
    let waiting = tokio::spawn({
        let http = server.http.clone();
        let url = server.v4("/values/Sheet1!A1");
        let token = server.token.clone();
        async move {
            let response = http.get(url).bearer_auth(token).send().await.unwrap();
            response.status().as_u16()
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "answered while hung");
    server.set_faults(json!({})).await;
    assert_eq!(waiting.await.unwrap(), 200);
    assert_eq!(
        server.emulator.tab_values(SPREADSHEET, "Sheet1").unwrap(),
        Vec::<Vec<Value>>::new(),
        "the abandoned append was not applied"
    );
    assert_eq!(server.emulator.write_count(), 0);
}

#[tokio::test]
async fn a_cell_over_50000_characters_and_a_body_over_10_mib_get_googles_400() {
    let server = start().await;
    let (status, body) = server
        .append("Sheet1", json!([["ok", "x".repeat(50_001)]]))
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
    assert_eq!(
        body["error"]["message"],
        "Your input contains more than the maximum of 50000 characters in a single cell."
    );
    let (status, body) = server.append("Sheet1", json!([["x".repeat(50_000)]])).await;
    assert_eq!(status, 200, "{body}");

    // 11 MB of cells, each within the cell limit: the request as a whole is refused.
    let rows: Vec<Value> = (0..220).map(|_| json!(["y".repeat(50_000)])).collect();
    let (status, body) = server.append("Sheet1", json!(rows)).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
    assert_eq!(
        body["error"]["message"],
        "Request payload size exceeds the limit: 10485760 bytes."
    );
    assert_eq!(
        server
            .emulator
            .tab_values(SPREADSHEET, "Sheet1")
            .unwrap()
            .len(),
        1,
        "only the first good append"
    );
}

#[tokio::test]
async fn refuse_text_refuses_a_write_holding_it_before_applying_anything() {
    let server = start().await;
    server.set_faults(json!({ "refuse_text": "BAD" })).await;
    let (status, body) = server
        .append("Sheet1", json!([["fine"], ["also BAD here"]]))
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
    assert_eq!(
        body["error"]["message"],
        "Invalid value at 'values[1][0]': refused by the emulator (refuse_text)"
    );
    let (status, _) = server.append("Sheet1", json!([["fine"]])).await;
    assert_eq!(status, 200);
    // Reads are not writes: never refused.
    let (status, _) = server.get("/values/Sheet1").await;
    assert_eq!(status, 200);
    assert_eq!(
        server.emulator.tab_values(SPREADSHEET, "Sheet1").unwrap(),
        vec![vec![json!("fine")]]
    );
}
