//! Submitting responses: `POST /collect`, `POST /v1/forms/{form_id}/responses` and
//! `…/responses:batch`.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use collect_shared::forms::{Form, HOUSEHOLD_FINANCE};
use collect_shared::messages::ResponseEnvelope;
use serde_json::{Value, json};

use super::AppState;
use crate::body::{from_value, read_json};
use crate::error::{ApiError, RETRY_AFTER_SECONDS};
use crate::seed::envelope_from_seed;

/// Most envelopes one batch request may carry.
pub const MAX_BATCH: usize = 1000;

/// `POST /collect`: the seed system's flat payload, for the built-in form.
pub async fn collect(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let form = state.form(HOUSEHOLD_FINANCE).await?;
    let payload = read_json(&headers, body, state.max_body_bytes).await?;
    let envelope = envelope_from_seed(&form, payload)?;
    let accepted = state.accept(&form, envelope).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)).into_response())
}

/// `POST /v1/forms/{form_id}/responses`: one envelope.
pub async fn submit(
    State(state): State<AppState>,
    Path(form_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let form = state.form(&form_id).await?;
    let payload = read_json(&headers, body, state.max_body_bytes).await?;
    let envelope = parse_envelope(&form, payload)?;
    let accepted = state.accept(&form, envelope).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)).into_response())
}

/// `POST /v1/forms/{form_id}/responses:batch`: up to [`MAX_BATCH`] envelopes, one result each,
/// in order. An item that is structurally wrong is `rejected` (with its error) and the others
/// go ahead. If the broker could not confirm some item, the answer is `503` with
/// `Retry-After`, and those items are `failed`; resubmitting the whole batch is safe, since the
/// same revision of a response twice is a no-op.
pub async fn submit_batch(
    State(state): State<AppState>,
    Path(form_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let form = state.form(&form_id).await?;
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
    let outcomes = futures::future::join_all(items.into_iter().enumerate().map(|(index, item)| {
        let state = &state;
        let form = &form;
        async move {
            let envelope = match parse_envelope(form, item) {
                Ok(envelope) => envelope,
                Err(error) => {
                    let mut error = error;
                    error.field = Some(match error.field.take() {
                        Some(field) if !field.is_empty() => format!("[{index}].{field}"),
                        _ => format!("[{index}]"),
                    });
                    return (
                        false,
                        json!({"index": index, "status": "rejected", "error": error.body()}),
                    );
                }
            };
            let response_id = envelope.response_id.clone();
            match state.accept(form, envelope).await {
                Ok(accepted) => (false, accepted),
                Err(error) => (
                    true,
                    json!({"response_id": response_id, "form_id": form.id, "status": "failed", "error": error.body()}),
                ),
            }
        }
    }))
    .await;
    let any_failed = outcomes.iter().any(|(failed, _)| *failed);
    let results: Vec<Value> = outcomes.into_iter().map(|(_, result)| result).collect();
    let count = |status: &str| results.iter().filter(|r| r["status"] == status).count();
    let mut body = json!({
        "accepted": count("accepted"),
        "rejected": count("rejected"),
        "failed": count("failed"),
        "results": results,
    });
    if any_failed {
        let error = ApiError::unavailable("some responses were not confirmed by the broker");
        body["error"] = error.body();
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
    if i64::try_from(envelope.revision.0).is_err() {
        return Err(ApiError::invalid(
            "revision",
            "revision must be at most 9223372036854775807",
        ));
    }
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
