//! `PUT` and `GET /v1/forms/{form_id}`, and the form's sheet: its state and its export.

use super::documented::*;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use collect_shared::forms::{Form, FormDefinition, same_tab};
use collect_shared::messages::FormId;
use collect_shared::rules::CompiledForm;

use super::{
    AppState, ErrorBody, ExportQueued, GoogleSheetExport, QueuedStatus, SheetFailureView,
    SheetStatus, SheetView, StoredForm,
};
use crate::body::{from_value, read_json};
use crate::error::ApiError;

/// Create or replace a form.
///
/// Rules take effect for responses validated after this, within seconds (services re-read a
/// form at most every 2 s); stored responses are not re-checked. The same definition again is a
/// no-op (`200`, same version).
#[utoipa::path(
    put,
    path = "/v1/forms/{form_id}",
    tag = "forms",
    params(("form_id" = String, Path, description = "1 to 64 letters, digits, `_` or `-`")),
    request_body(content = FormDefinition, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = StoredForm),
        (status = 200, description = "Replaced (or unchanged)", body = StoredForm),
        (status = 403, description = "`forbidden`: the key's role may not call this route (only admin keys may)", body = ErrorBody),
        (status = 409, description = "`tab_taken`: another form writes to this tab of this spreadsheet (`field: sheet.tab`; tab names are compared whatever their case, as Google does); the message names the form", body = ErrorBody),
        (status = 422, description = "`invalid_field`: the definition is wrong (`questions[1].id`, `rules[0].expression` with line and column, ...)", body = ErrorBody),
        NotJson, Unauthorized, BodyTooLarge, DatabaseUnavailable,
    ),
    security(("bearer" = ["admin"]))
)]
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
    // Compiling up to 200 rules of up to 4,096 characters takes a while (milliseconds per
    // rule): not on the async runtime.
    let compiled = {
        let form = Arc::new(form.clone());
        tokio::task::spawn_blocking(move || CompiledForm::compile(form, 0).map(drop))
            .await
            // Only a panic in the CEL compiler on some rule gets here.
            .map_err(|_| ApiError::invalid("rules", "the CEL compiler failed on these rules"))?
    };
    if let Err(errors) = compiled {
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
    // A tab is one form's (its header, its rows found by response id), and Google's tab names
    // are unique whatever their case. Forms of the default spreadsheet (no `spreadsheet_id`)
    // are compared with each other only: which spreadsheet that is, sheets-sync knows, and it
    // writes a tab named twice only for the form that was first (`GET …/sheet` of the other
    // says why).
    let sheets = state
        .store
        .form_sheets()
        .await
        .map_err(ApiError::database)?;
    if let Some(other) = sheets.iter().find(|sheet| {
        sheet.form_id != form.id
            && sheet.spreadsheet_id.as_deref() == form.spreadsheet_id()
            && same_tab(&sheet.tab, form.tab())
    }) {
        let spreadsheet = match form.spreadsheet_id() {
            Some(id) => format!("spreadsheet {id}"),
            None => "the default spreadsheet".to_owned(),
        };
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "tab_taken",
            format!(
                "the tab {:?} of {spreadsheet} is form {}'s ({:?}; tab names are the same whatever their case, as in Google Sheets): give this form another sheet.tab",
                form.tab(),
                other.form_id,
                other.tab,
            ),
        )
        .with_field("sheet.tab"));
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

/// A form's definition, with its version.
#[utoipa::path(
    get,
    path = "/v1/forms/{form_id}",
    tag = "forms",
    params(("form_id" = String, Path, description = "The form")),
    responses(
        (status = 200, description = "The form", body = StoredForm),
        Unauthorized, UnknownForm, DatabaseUnavailable,
    ),
    // Collectors' apps read the form to show it.
    security(("bearer" = ["admin", "reader", "collector"]))
)]
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

/// The form's sheet as sheets-sync last reported it: being written, or failing and why (the
/// spreadsheet not shared, gone or full, or Google out of reach), with the rows that wait and
/// those the sheet refused.
#[utoipa::path(
    get,
    path = "/v1/forms/{form_id}/sheet",
    tag = "forms",
    params(("form_id" = String, Path, description = "The form")),
    responses(
        (status = 200, description = "The form's sheet", body = SheetView),
        (status = 403, description = "`forbidden`: the key's role may not call this route (only admin and reader keys may)", body = ErrorBody),
        Unauthorized, UnknownForm, DatabaseUnavailable,
    ),
    security(("bearer" = ["admin", "reader"]))
)]
pub async fn get_sheet(
    State(state): State<AppState>,
    Path(form_id): Path<String>,
) -> Result<Json<SheetView>, ApiError> {
    let form = state.form(&form_id).await?;
    let sheet = state
        .store
        .sheet_state(&form.id)
        .await
        .map_err(ApiError::database)?;
    let target = form.definition.sheet.clone().unwrap_or_default();
    Ok(Json(SheetView {
        form_id: form.id.clone(),
        spreadsheet_id: target.spreadsheet_id,
        tab: target.tab.unwrap_or_else(|| form.id.to_string()),
        status: if sheet.failure.is_some() {
            SheetStatus::Failing
        } else {
            SheetStatus::Writing
        },
        failure: sheet.failure.map(|failure| SheetFailureView {
            spreadsheet_id: failure.spreadsheet_id,
            tab: failure.tab,
            reason: failure.reason,
            about_this_sheet: failure.about_this_sheet,
            since: failure.failing_since,
        }),
        rows_waiting: sheet.rows_waiting,
        rows_parked: sheet.rows_parked,
    }))
}

fn form_body(form: &Form, version: i32) -> StoredForm {
    StoredForm::new(form, version)
}

/// Rewrite a form's sheet from the database.
///
/// Every stored response of the form is marked for (re)writing; sheets-sync rewrites them in
/// batches within the write budget (existing rows in place, missing ones appended).
#[utoipa::path(
    post,
    path = "/v1/forms/{form_id}/sheet:export",
    tag = "sheets",
    params(("form_id" = String, Path, description = "The form")),
    responses(
        (status = 202, description = "Queued", body = ExportQueued),
        (status = 403, description = "`forbidden`: the key's role may not call this route (only admin keys may)", body = ErrorBody),
        Unauthorized, UnknownForm, DatabaseUnavailable,
    ),
    security(("bearer" = ["admin"]))
)]
pub async fn export_sheet(
    State(state): State<AppState>,
    Path(form_id): Path<String>,
) -> Result<Response, ApiError> {
    let form = state.form(&form_id).await?;
    queue_export(&state, &form.id).await
}

/// Rewrite a form's sheet from the database (the seed system's route).
#[utoipa::path(
    post,
    path = "/google-sheet",
    tag = "sheets",
    request_body(content = GoogleSheetExport, content_type = "application/json"),
    responses(
        (status = 202, description = "Queued", body = ExportQueued),
        (status = 403, description = "`forbidden`: the key's role may not call this route (only admin keys may)", body = ErrorBody),
        (status = 404, description = "`unknown_form`: no such form (`field: table_name`)", body = ErrorBody),
        (status = 422, description = "`invalid_field`: not `{\"table_name\": ...}`", body = ErrorBody),
        NotJson, Unauthorized, DatabaseUnavailable,
    ),
    security(("bearer" = ["admin"]))
)]
pub async fn google_sheet(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let payload = read_json(&headers, body, state.max_body_bytes).await?;
    if !payload.is_object() {
        return Err(ApiError::invalid(
            "",
            "the body must be {\"table_name\": \"<form id>\"}",
        ));
    }
    let export: GoogleSheetExport = from_value(payload)?;
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
    let body = ExportQueued {
        form_id: form_id.clone(),
        responses: queued,
        status: QueuedStatus::Queued,
    };
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}
