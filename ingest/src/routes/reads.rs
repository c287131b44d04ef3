//! `GET /v1/responses/{response_id}` and `GET /v1/collectors/{user_id}/flags`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use collect_shared::forms::Severity;
use collect_shared::messages::{FlagSummary, ResponseId, UserId};

use super::{AppState, CollectorFlags, ErrorBody, FlaggedResponse, ResponseView};
use crate::error::ApiError;

/// Most flagged responses one answer lists.
const FLAGS_LIMIT: i64 = 1000;

/// A stored response (its latest revision), and where it is in its sheet.
#[utoipa::path(
    get,
    path = "/v1/responses/{response_id}",
    tag = "responses",
    params(("response_id" = String, Path, description = "The response")),
    responses(
        (status = 200, description = "The stored response", body = ResponseView),
        (status = 401, description = "`unauthorized`: no or unknown bearer key", body = ErrorBody),
        (status = 404, description = "`unknown_response`: not stored (yet): the validator stores it within moments of its `202`", body = ErrorBody),
        (status = 503, description = "`database_unavailable`: retry", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
    security(("api_key" = []))
)]
pub async fn get_response(
    State(state): State<AppState>,
    Path(response_id): Path<String>,
) -> Result<Json<ResponseView>, ApiError> {
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
    Ok(Json(ResponseView {
        stored,
        sheet: sheet.map(Into::into),
    }))
}

/// The collector's responses that are flagged now (latest revision), with their flags.
#[utoipa::path(
    get,
    path = "/v1/collectors/{user_id}/flags",
    tag = "responses",
    params(("user_id" = String, Path, description = "The collector")),
    responses(
        (status = 200, description = "At most 1000, oldest first", body = CollectorFlags),
        (status = 401, description = "`unauthorized`: no or unknown bearer key", body = ErrorBody),
        (status = 422, description = "`invalid_field`: not a valid user id", body = ErrorBody),
        (status = 503, description = "`database_unavailable`: retry", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
    security(("api_key" = []))
)]
pub async fn collector_flags(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
) -> Result<Json<CollectorFlags>, ApiError> {
    let id = UserId::parse(user_id.as_str())
        .map_err(|error| ApiError::invalid("user_id", error.to_string()))?;
    let flagged = state
        .store
        .flagged_for_collector(&id, FLAGS_LIMIT + 1)
        .await
        .map_err(ApiError::database)?;
    let truncated = flagged.len() as i64 > FLAGS_LIMIT;
    let responses = flagged
        .into_iter()
        .take(FLAGS_LIMIT as usize)
        .map(|stored| FlaggedResponse {
            flags: stored
                .flags
                .iter()
                .filter(|flag| flag.severity == Severity::Error)
                .map(|flag| FlagSummary {
                    rule_id: flag.rule_id.clone(),
                    message: flag.message.clone(),
                })
                .collect(),
            response_id: stored.response_id,
            form_id: stored.form_id,
            revision: stored.revision,
            answers: stored.answers,
            stored_at: stored.stored_at,
        })
        .collect();
    Ok(Json(CollectorFlags {
        user_id: id,
        responses,
        truncated,
    }))
}
