//! The emulator's own routes (not Google's): faults, spreadsheets by id, service-account keys,
//! a tab as CSV, counters, health.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::Emulator;
use crate::faults::Faults;

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn get_faults(State(emulator): State<Emulator>) -> Json<Faults> {
    Json(emulator.faults())
}

pub async fn put_faults(State(emulator): State<Emulator>, body: Bytes) -> Response {
    let faults: Faults = match serde_json::from_slice(&body) {
        Ok(faults) => faults,
        Err(error) => return bad_request(format!("invalid faults: {error}")),
    };
    if let Err(message) = faults.validate() {
        return bad_request(message);
    }
    tracing::info!(?faults, "faults set");
    emulator.set_faults(faults.clone());
    Json(faults).into_response()
}

/// `PUT /emulator/spreadsheets/{id}`: an empty spreadsheet with that id (one tab, `Sheet1`);
/// `201` when created, `200` when it already existed (left as it was).
pub async fn put_spreadsheet(State(emulator): State<Emulator>, Path(id): Path<String>) -> Response {
    let created = emulator.create_spreadsheet(&id);
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let body = emulator
        .lock_store()
        .get(&id)
        .map(|s| s.to_json())
        .unwrap_or(Value::Null);
    (status, Json(body)).into_response()
}

/// `GET /emulator/spreadsheets/{id}/tabs/{tab}.csv`: the stored values (formulas as their text).
pub async fn tab_csv(
    State(emulator): State<Emulator>,
    Path((id, tab)): Path<(String, String)>,
) -> Response {
    let Some(tab) = tab.strip_suffix(".csv") else {
        return bad_request("ask for {tab}.csv".into());
    };
    let Some(rows) = emulator.tab_cells(&id, tab) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("no tab {tab:?} in spreadsheet {id:?}") })),
        )
            .into_response();
    };
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut csv = String::new();
    for row in &rows {
        let fields: Vec<String> = (0..width)
            .map(|i| {
                csv_field(
                    &row.get(i)
                        .map(crate::cell::Cell::stored_text)
                        .unwrap_or_default(),
                )
            })
            .collect();
        csv.push_str(&fields.join(","));
        csv.push_str("\r\n");
    }
    ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], csv).into_response()
}

/// `POST /emulator/service-accounts` with `{"token_uri": "..."}` (optional; defaults to this
/// server's `/token`): a new key, trusted from now on, as Google's key JSON.
pub async fn issue_key(
    State(emulator): State<Emulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(value) => value,
            Err(error) => return bad_request(format!("invalid body: {error}")),
        }
    };
    let token_uri = match request["token_uri"].as_str() {
        Some(uri) => uri.to_owned(),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("127.0.0.1:8090");
            format!("http://{host}/token")
        }
    };
    match emulator.try_issue_key(&token_uri) {
        Ok(key) => (StatusCode::CREATED, Json(key)).into_response(),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "error": format!("{error:#}") })),
        )
            .into_response(),
    }
}

pub async fn stats(State(emulator): State<Emulator>) -> Json<crate::Stats> {
    Json(emulator.stats())
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
}

fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}
