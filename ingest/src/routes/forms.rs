//! `PUT` and `GET /v1/forms/{form_id}`.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use collect_shared::forms::{Form, FormDefinition};
use collect_shared::messages::FormId;
use collect_shared::rules::CompiledForm;
use serde_json::{Value, json};

use super::AppState;
use crate::body::{from_value, read_json};
use crate::error::ApiError;

/// Creates (`201`) or replaces (`200`) a form. Rules take effect for responses validated
/// after this, within the form cache's refresh time; stored responses are not re-checked.
pub async fn put_form(
    State(state): State<AppState>,
    Path(form_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let id =
        FormId::parse(&form_id).map_err(|error| ApiError::invalid("form_id", error.to_string()))?;
    let payload = read_json(&headers, body, state.max_body_bytes).await?;
    if !payload.is_object() {
        return Err(ApiError::invalid(
            "",
            "a form definition must be a JSON object",
        ));
    }
    let definition: FormDefinition = from_value(payload)?;
    definition
        .check()
        .map_err(|error| ApiError::invalid(error.field, error.message))?;
    let form = Form { id, definition };
    if let Err(errors) = CompiledForm::compile(Arc::new(form.clone()), 0) {
        let first = &errors[0];
        let message = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        return Err(ApiError::invalid(
            format!("rules[{}].expression", first.index),
            message,
        ));
    }
    let put = state
        .store
        .put_form(&form)
        .await
        .map_err(ApiError::database)?;
    let status = if put.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(form_body(&form, put.version))).into_response())
}

pub async fn get_form(
    State(state): State<AppState>,
    Path(form_id): Path<String>,
) -> Result<Response, ApiError> {
    let id = FormId::parse(&form_id).map_err(|_| ApiError::unknown_form(&form_id))?;
    let stored = state
        .store
        .form(&id)
        .await
        .map_err(ApiError::database)?
        .ok_or_else(|| ApiError::unknown_form(&form_id))?;
    Ok(Json(form_body(&stored.form, stored.version)).into_response())
}

fn form_body(form: &Form, version: i32) -> Value {
    let mut body = json!({"form_id": form.id, "version": version});
    if let (Some(body), Ok(Value::Object(definition))) =
        (body.as_object_mut(), serde_json::to_value(&form.definition))
    {
        body.extend(definition);
    }
    body
}

/// `POST /v1/forms/{form_id}/sheet:export`: every stored response of the form is (re)written
/// to its sheet by sheets-sync, in batches within the write budget.
pub async fn export_sheet(
    State(state): State<AppState>,
    Path(form_id): Path<String>,
) -> Result<Response, ApiError> {
    let form = state.form(&form_id).await?;
    queue_export(&state, &form.id).await
}

/// `POST /google-sheet {"table_name": "<form id>"}`: the seed system's export route.
pub async fn google_sheet(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Export {
        table_name: String,
    }
    let payload = read_json(&headers, body, state.max_body_bytes).await?;
    if !payload.is_object() {
        return Err(ApiError::invalid(
            "",
            "the body must be {\"table_name\": \"<form id>\"}",
        ));
    }
    let export: Export = from_value(payload)?;
    let form = state
        .form(&export.table_name)
        .await
        .map_err(|error| match error.code {
            "unknown_form" => error.with_field("table_name"),
            _ => error,
        })?;
    queue_export(&state, &form.id).await
}

async fn queue_export(state: &AppState, form_id: &FormId) -> Result<Response, ApiError> {
    let queued = state
        .store
        .enqueue_form_export(form_id)
        .await
        .map_err(ApiError::database)?;
    tracing::info!(form = %form_id, responses = queued, "sheet export queued");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"form_id": form_id, "responses": queued, "status": "queued"})),
    )
        .into_response())
}
