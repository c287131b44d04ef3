//! The OpenAPI document of the HTTP API, served at `GET /openapi.json`. The routes describe
//! themselves (`utoipa::path` on each handler, registered with the router by
//! `utoipa_axum::routes!`), so a route cannot be served without being documented.

use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa::Modify;
use utoipa::openapi::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

/// The document's fixed parts; the paths and schemas come from the routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Collect ingest API",
        description = "Survey responses in; every 202 means RabbitMQ confirmed the persistent \
                       message. Every route but /healthz, /readyz, /metrics and /openapi.json \
                       needs `Authorization: Bearer <key>` with one of COLLECT_API_KEYS (or \
                       COLLECT_API_KEYS_FILE): 401 without a known key. Each key has a role, \
                       `admin`, `reader` or `collector` (a collector key may be bound to one \
                       user_id); an operation's `bearer` scopes are the roles that may call it, \
                       and any other key gets 403 `forbidden`. \
                       Errors are `{\"error\": {\"code\", \"message\", \"field\"}}`.",
        license(name = "MIT")
    ),
    modifiers(&BearerKey),
    tags(
        (name = "responses", description = "Submitting and reading responses"),
        (name = "forms", description = "Form definitions: questions and rules"),
        (name = "sheets", description = "Rewriting a form's Google Sheet"),
        (name = "webhooks", description = "Flag events posted to HTTPS endpoints, signed (Standard Webhooks)"),
        (name = "operations", description = "Health, readiness, metrics, this document")
    )
)]
pub struct ApiDoc;

/// The `bearer` security scheme the authenticated routes name, with the roles that may call
/// each as its scopes (`security(("bearer" = ["admin", "collector"]))`): the API key check
/// reads them from the document (`auth::RouteRoles`).
struct BearerKey;

impl Modify for BearerKey {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.description = Some(
            "One of the keys in COLLECT_API_KEYS or COLLECT_API_KEYS_FILE. The scopes of an \
             operation's requirement are the roles that may call it: admin, reader, collector"
                .to_owned(),
        );
        components.add_security_scheme(crate::auth::SCHEME, SecurityScheme::Http(scheme));
    }
}

/// The document as served, set once the router is assembled.
pub type Document = Arc<OnceLock<String>>;

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "This OpenAPI document", content_type = "application/json"))
)]
pub async fn openapi_json(State(document): State<Document>) -> Response {
    match document.get() {
        Some(text) => ([(header::CONTENT_TYPE, "application/json")], text.clone()).into_response(),
        None => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}
