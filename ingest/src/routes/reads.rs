//! `GET /v1/forms/{form_id}/responses/{response_id}`, `GET /v1/responses/{response_id}`,
//! `GET /v1/collectors/{user_id}/flags` and `…/flags:history`.

use super::documented::*;
use super::{Collector, cursor_in_query, limit_in_query};
use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use collect_shared::messages::{ResponseId, StoredResponse};
use collect_shared::store::{FlagCursor, FlaggedCursor};

use super::{
    AppState, CollectorFlags, ErrorBody, FlagHistory, FlagHistoryEvent, FlaggedResponse,
    ResponseView,
};
use crate::auth::Principal;
use crate::error::ApiError;

/// Most flagged responses one answer lists.
const FLAGS_LIMIT: i64 = 1000;

/// A form's stored response (its latest revision), and where it is in its sheet.
#[utoipa::path(
    get,
    path = "/v1/forms/{form_id}/responses/{response_id}",
    tag = "responses",
    params(
        ("form_id" = String, Path, description = "The form"),
        ("response_id" = String, Path, description = "The response, within its form"),
    ),
    responses(
        (status = 200, description = "The stored response", body = ResponseView),
        (status = 403, description = "`forbidden`: the key's role may not call this route, or a collector key bound to another collector than the response's (`field: collector.user_id`)", body = ErrorBody),
        (status = 404, description = "`unknown_form`: no such form; `unknown_response`: not stored (yet): the validator stores it within moments of its `202`", body = ErrorBody),
        Unauthorized, DatabaseUnavailable,
    ),
    security(("bearer" = ["admin", "reader", "collector"]))
)]
pub async fn get_form_response(
    State(state): State<AppState>,
    principal: Principal,
    Path((form_id, response_id)): Path<(String, String)>,
) -> Result<Json<ResponseView>, ApiError> {
    let form = state.form(&form_id).await?;
    let id = ResponseId::parse(response_id.as_str()).map_err(|_| unknown_response(&response_id))?;
    let stored = state
        .store
        .response(&form.id, &id)
        .await
        .map_err(ApiError::database)?
        .ok_or_else(|| unknown_response(&response_id))?;
    view(&state, &principal, stored).await.map(Json)
}

/// A stored response found by its id alone: the form's route without the form, kept for
/// clients of the first API. Response ids are unique within a form, not across forms.
#[utoipa::path(
    get,
    path = "/v1/responses/{response_id}",
    tag = "responses",
    params(("response_id" = String, Path, description = "The response")),
    responses(
        (status = 200, description = "The stored response (one form has this id)", body = ResponseView),
        (status = 403, description = "`forbidden`: the key's role may not call this route, or a collector key bound to another collector than the response's (`field: collector.user_id`)", body = ErrorBody),
        (status = 404, description = "`unknown_response`: not stored (yet): the validator stores it within moments of its `202`", body = ErrorBody),
        (status = 409, description = "`ambiguous_response`: responses of several forms have this id; the message names them: use `/v1/forms/{form_id}/responses/{response_id}`", body = ErrorBody),
        Unauthorized, DatabaseUnavailable,
    ),
    security(("bearer" = ["admin", "reader", "collector"]))
)]
pub async fn get_response(
    State(state): State<AppState>,
    principal: Principal,
    Path(response_id): Path<String>,
) -> Result<Json<ResponseView>, ApiError> {
    let id = ResponseId::parse(response_id.as_str()).map_err(|_| unknown_response(&response_id))?;
    let mut found = state
        .store
        .responses_with_id(&id, 10)
        .await
        .map_err(ApiError::database)?;
    if found.len() > 1 {
        let forms: Vec<&str> = found.iter().map(|stored| stored.form_id.as_str()).collect();
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "ambiguous_response",
            format!(
                "responses of several forms have the id {response_id:?} ({}): ask for one with /v1/forms/{{form_id}}/responses/{response_id}",
                forms.join(", ")
            ),
        )
        .with_field("response_id"));
    }
    let stored = found.pop().ok_or_else(|| unknown_response(&response_id))?;
    view(&state, &principal, stored).await.map(Json)
}

fn unknown_response(response_id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_response",
        format!("no response {response_id:?} is stored (yet)"),
    )
    .with_field("response_id")
}

/// The stored response with where it is in its sheet, if the key may read it: a collector key
/// bound to one collector reads only that collector's responses.
async fn view(
    state: &AppState,
    principal: &Principal,
    stored: StoredResponse,
) -> Result<ResponseView, ApiError> {
    principal.may_act_for_field(stored.collector.user_id.as_str(), "collector.user_id")?;
    let sheet = state
        .store
        .sheet_position(&stored.form_id, &stored.response_id)
        .await
        .map_err(ApiError::database)?;
    let parked = state
        .store
        .sheet_parked(&stored.form_id, &stored.response_id)
        .await
        .map_err(ApiError::database)?;
    Ok(ResponseView {
        stored,
        sheet: sheet.map(Into::into),
        sheet_parked: parked.map(Into::into),
    })
}

/// Most events one page of the flag history holds, and the default.
const HISTORY_MAX: i64 = 1000;
const HISTORY_DEFAULT: i64 = 100;

/// The collector's flag history: every `flagged` and `cleared` event the validator committed,
/// oldest first, after the cursor `since` (none: from the start), `limit` at a time.
#[utoipa::path(
    get,
    path = "/v1/collectors/{user_id}/flags:history",
    tag = "responses",
    params(
        ("user_id" = String, Path, description = "The collector"),
        ("since" = Option<String>, Query, description = "A cursor (`next` of an earlier page, or an event's `id`); absent: from the start"),
        ("limit" = Option<u32>, Query, description = "At most this many events (1 to 1000, default 100)"),
    ),
    responses(
        (status = 200, description = "Events after `since`, oldest first, and `next`", body = FlagHistory),
        (status = 422, description = "`invalid_field`: a bad `user_id`, `since` or `limit`", body = ErrorBody),
        Unauthorized, ForbiddenCollector, DatabaseUnavailable,
    ),
    security(("bearer" = ["admin", "reader", "collector"]))
)]
pub async fn flag_history(
    State(state): State<AppState>,
    Collector(id): Collector,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<FlagHistory>, ApiError> {
    let since = cursor_in_query(
        &query,
        "since",
        FlagCursor::parse,
        "since must be a cursor from this route (`next`, or an event's `id`)",
    )?;
    let limit = limit_in_query(&query, HISTORY_DEFAULT, HISTORY_MAX)?;
    let page = state
        .store
        .flag_history(&id, since, limit)
        .await
        .map_err(ApiError::database)?;
    Ok(Json(FlagHistory {
        user_id: id,
        events: page
            .events
            .into_iter()
            .map(|(cursor, event)| FlagHistoryEvent {
                id: cursor.to_string(),
                event,
            })
            .collect(),
        next: page.next.to_string(),
    }))
}

/// The collector's responses that are flagged now (latest revision), with their flags, oldest
/// first, `limit` at a time after the cursor `after`.
#[utoipa::path(
    get,
    path = "/v1/collectors/{user_id}/flags",
    tag = "responses",
    params(
        ("user_id" = String, Path, description = "The collector"),
        ("after" = Option<String>, Query, description = "A cursor (`next` of an earlier page); absent: from the oldest"),
        ("limit" = Option<u32>, Query, description = "At most this many responses (1 to 1000, default 1000)"),
    ),
    responses(
        (status = 200, description = "Oldest first; `next` when more follow", body = CollectorFlags),
        (status = 422, description = "`invalid_field`: a bad `user_id`, `after` or `limit`", body = ErrorBody),
        Unauthorized, ForbiddenCollector, DatabaseUnavailable,
    ),
    security(("bearer" = ["admin", "reader", "collector"]))
)]
pub async fn collector_flags(
    State(state): State<AppState>,
    Collector(id): Collector,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<CollectorFlags>, ApiError> {
    let after = cursor_in_query(
        &query,
        "after",
        FlaggedCursor::parse,
        "after must be a cursor from this route (`next`)",
    )?;
    let limit = limit_in_query(&query, FLAGS_LIMIT, FLAGS_LIMIT)?;
    let mut flagged = state
        .store
        .flagged_for_collector(&id, &after, limit + 1)
        .await
        .map_err(ApiError::database)?;
    let more = flagged.len() as i64 > limit;
    flagged.truncate(limit as usize);
    let next = more
        .then(|| {
            flagged
                .last()
                .map(|last| FlaggedCursor::after(last).to_string())
        })
        .flatten();
    let responses = flagged
        .into_iter()
        .map(|stored| FlaggedResponse {
            flags: stored.flags_for_collector(),
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
        truncated: more,
        next,
    }))
}
