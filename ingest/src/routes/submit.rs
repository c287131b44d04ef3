//! Submitting responses: `POST /collect`, `POST /v1/forms/{form_id}/responses` and
//! `…/responses:batch`.

use super::documented::*;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use collect_shared::forms::{Form, HOUSEHOLD_FINANCE};
use collect_shared::messages::ResponseEnvelope;
use serde_json::Value;

use super::{
    Accepted, AppState, BatchAnswer, BatchResult, ErrorBody, Failed, FailedStatus, Rejected,
    RejectedStatus, SeedPayload,
};
use crate::auth::Principal;
use crate::body::{from_value, read_json};
use crate::error::{ApiError, RETRY_AFTER_SECONDS};
use crate::seed::envelope_from_seed;

/// Most envelopes one batch request may carry.
pub const MAX_BATCH: usize = 1000;

/// Submit a response in the seed system's flat format (form `household-finance`).
///
/// Answered `202` only once RabbitMQ confirmed the persistent message; retrying is always safe.
#[utoipa::path(
    post,
    path = "/collect",
    tag = "responses",
    request_body(content = SeedPayload, content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted: the broker confirmed it", body = Accepted),
        (status = 403, description = "`forbidden`: a key whose role may not submit, or a collector key bound to another collector than the payload's `user_id` (`field: user_id`)", body = ErrorBody),
        (status = 422, description = "`invalid_field`: the payload is structurally wrong; `field` names the value", body = ErrorBody),
        (status = 503, description = "`broker_unavailable` or `database_unavailable`: nothing was accepted, retry", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        NotJson, Unauthorized, Timeout, BodyTooLarge,
    ),
    security(("bearer" = ["admin", "collector"]))
)]
pub async fn collect(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let form = state.form_version(HOUSEHOLD_FINANCE).await?;
    let payload = read_json(&headers, body, state.max_body_bytes).await?;
    let envelope = envelope_from_seed(&form, payload)?;
    // The seed payload names its collector by its top-level `user_id`.
    principal.may_act_for(envelope.collector.user_id.as_str())?;
    let accepted = state.accept(&form.form, envelope).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)).into_response())
}

/// Submit one response envelope to a form.
///
/// Answered `202` only once RabbitMQ confirmed the persistent message; retrying is always safe
/// (the same revision twice is a no-op downstream).
#[utoipa::path(
    post,
    path = "/v1/forms/{form_id}/responses",
    tag = "responses",
    params(("form_id" = String, Path, description = "The form")),
    request_body(content = ResponseEnvelope, content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted: the broker confirmed it", body = Accepted),
        (status = 403, description = "`forbidden`: a key whose role may not submit, or a collector key bound to another collector than the envelope's (`field: collector.user_id`)", body = ErrorBody),
        (status = 422, description = "`invalid_field`: the envelope is structurally wrong; `field` names the value", body = ErrorBody),
        (status = 503, description = "`broker_unavailable` or `database_unavailable`: nothing was accepted, retry", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        NotJson, Unauthorized, UnknownForm, Timeout, BodyTooLarge,
    ),
    security(("bearer" = ["admin", "collector"]))
)]
pub async fn submit(
    State(state): State<AppState>,
    principal: Principal,
    Path(form_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let form = state.form(&form_id).await?;
    let payload = read_json(&headers, body, state.max_body_bytes).await?;
    let envelope = parse_envelope(&form, payload)?;
    principal.may_act_for_field(envelope.collector.user_id.as_str(), "collector.user_id")?;
    let accepted = state.accept(&form, envelope).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)).into_response())
}

/// Submit up to 1000 response envelopes to a form, one result each, in order.
///
/// An item that is structurally wrong is `rejected` (with its error) and the others go ahead.
/// If the broker could not confirm some item, the answer is `503` with `Retry-After`, and those
/// items are `failed`; resubmitting the whole batch is safe, since the same revision of a
/// response twice is a no-op.
#[utoipa::path(
    post,
    path = "/v1/forms/{form_id}/responses:batch",
    tag = "responses",
    params(("form_id" = String, Path, description = "The form")),
    request_body(content = Vec<ResponseEnvelope>, content_type = "application/json",
        description = "A JSON array of at most 1000 envelopes"),
    responses(
        (status = 202, description = "Every item accepted or rejected", body = BatchAnswer),
        (status = 403, description = "`forbidden`: a key whose role may not submit, or a collector key bound to another collector than some item's (`field: [index].collector.user_id`): nothing of the batch is accepted", body = ErrorBody),
        (status = 422, description = "`invalid_field` (not an array) or `batch_too_large` (over 1000 items)", body = ErrorBody),
        (status = 503, description = "Some item was not confirmed (`failed`), with `error`; send the batch again", body = BatchAnswer,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        NotJson, Unauthorized, UnknownForm, Timeout, BodyTooLarge,
    ),
    security(("bearer" = ["admin", "collector"]))
)]
pub async fn submit_batch(
    State(state): State<AppState>,
    principal: Principal,
    Path(form_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let form = state.form(&form_id).await?;
    let _turn = state
        .batches
        .acquire()
        .await
        .map_err(|_| ApiError::unavailable("shutting down"))?;
    let payload = read_json(&headers, body, state.max_body_bytes).await?;
    let Value::Array(items) = payload else {
        return Err(ApiError::invalid(
            "",
            "the body must be a JSON array of response envelopes",
        ));
    };
    if items.len() > MAX_BATCH {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "batch_too_large",
            format!(
                "a batch holds at most {MAX_BATCH} envelopes, this one has {}",
                items.len()
            ),
        ));
    }
    let parsed: Vec<Result<ResponseEnvelope, ApiError>> = items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            parse_envelope(&form, item).map_err(|mut error| {
                error.field = Some(match error.field.take() {
                    Some(field) if !field.is_empty() => format!("[{index}].{field}"),
                    _ => format!("[{index}]"),
                });
                error
            })
        })
        .collect();
    // A collector key bound to one collector submits only that collector's responses: one item
    // of another refuses the whole batch, before anything is published.
    for (index, envelope) in parsed.iter().enumerate() {
        if let Ok(envelope) = envelope
            && let Err(error) = principal
                .may_act_for_field(envelope.collector.user_id.as_str(), "collector.user_id")
        {
            return Err(error.with_field(format!("[{index}].collector.user_id")));
        }
    }
    let outcomes =
        futures::future::join_all(parsed.into_iter().enumerate().map(|(index, parsed)| {
            let state = &state;
            let form = &form;
            async move {
                let envelope = match parsed {
                    Ok(envelope) => envelope,
                    Err(error) => {
                        return BatchResult::Rejected(Rejected {
                            index,
                            status: RejectedStatus::Rejected,
                            error: error.body(),
                        });
                    }
                };
                let response_id = envelope.response_id.clone();
                match state.accept(form, envelope).await {
                    Ok(accepted) => BatchResult::Accepted(accepted),
                    Err(error) => BatchResult::Failed(Failed {
                        response_id,
                        form_id: form.id.clone(),
                        status: FailedStatus::Failed,
                        error: error.body(),
                    }),
                }
            }
        }))
        .await;
    let count = |wanted: fn(&BatchResult) -> bool| outcomes.iter().filter(|r| wanted(r)).count();
    let mut body = BatchAnswer {
        accepted: count(|r| matches!(r, BatchResult::Accepted(_))),
        rejected: count(|r| matches!(r, BatchResult::Rejected(_))),
        failed: count(|r| matches!(r, BatchResult::Failed(_))),
        results: Vec::new(),
        error: None,
    };
    let any_failed = body.failed > 0;
    body.results = outcomes;
    if any_failed {
        let error = ApiError::unavailable("some responses were not confirmed by the broker");
        body.error = Some(error.body());
        let mut response = (error.status, Json(body)).into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        return Ok(response);
    }
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

fn parse_envelope(form: &Form, payload: Value) -> Result<ResponseEnvelope, ApiError> {
    if !payload.is_object() {
        return Err(ApiError::invalid(
            "",
            "a response envelope must be a JSON object",
        ));
    }
    let envelope: ResponseEnvelope = from_value(payload)?;
    envelope
        .check_storable()
        .map_err(|unstorable| ApiError::invalid(unstorable.field, unstorable.message))?;
    if let Some(named) = &envelope.form_id
        && named != &form.id
    {
        return Err(ApiError::invalid(
            "form_id",
            format!(
                "form_id {named:?} does not match the form of the URL, {:?}",
                form.id.as_str()
            ),
        ));
    }
    Ok(envelope)
}
