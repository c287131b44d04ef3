//! `GET /v1/responses/{response_id}` and `GET /v1/collectors/{user_id}/flags`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use collect_shared::forms::Severity;
use collect_shared::messages::{ResponseId, UserId};
use serde_json::{Value, json};

use super::AppState;
use crate::error::ApiError;

/// Most flagged responses one answer lists.
const FLAGS_LIMIT: i64 = 1000;

/// A stored response: `404` until the validator has stored it.
pub async fn get_response(
    State(state): State<AppState>,
    Path(response_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_response",
            format!("no response {response_id:?} is stored (yet)"),
        )
        .with_field("response_id")
    };
    let id = ResponseId::parse(response_id.as_str()).map_err(|_| not_found())?;
    let stored = state
        .store
        .response(&id)
        .await
        .map_err(ApiError::database)?
        .ok_or_else(not_found)?;
    let sheet = state
        .store
        .sheet_position(&id)
        .await
        .map_err(ApiError::database)?;
    let mut body = serde_json::to_value(&stored).unwrap_or_default();
    body["sheet"] = serde_json::to_value(sheet).unwrap_or_default();
    Ok(Json(body))
}

/// The collector's responses that are flagged now (latest revision), with their flags.
pub async fn collector_flags(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = UserId::parse(user_id.as_str())
        .map_err(|error| ApiError::invalid("user_id", error.to_string()))?;
    let flagged = state
        .store
        .flagged_for_collector(&id, FLAGS_LIMIT + 1)
        .await
        .map_err(ApiError::database)?;
    let truncated = flagged.len() as i64 > FLAGS_LIMIT;
    let responses: Vec<Value> = flagged
        .iter()
        .take(FLAGS_LIMIT as usize)
        .map(|stored| {
            let flags: Vec<Value> = stored
                .flags
                .iter()
                .filter(|flag| flag.severity == Severity::Error)
                .map(|flag| json!({"rule_id": flag.rule_id, "message": flag.message}))
                .collect();
            json!({
                "response_id": stored.response_id,
                "form_id": stored.form_id,
                "revision": stored.revision,
                "flags": flags,
                "answers": stored.answers,
                "stored_at": stored.stored_at,
            })
        })
        .collect();
    Ok(Json(json!({
        "user_id": id,
        "responses": responses,
        "truncated": truncated,
    })))
}
