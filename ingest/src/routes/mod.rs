//! The HTTP API's handlers, and the state they share.

mod bodies;
mod documented;
mod forms;
mod reads;
mod submit;
mod watch;
mod webhooks;

use std::sync::Arc;

use axum::http::StatusCode;
use chrono::Utc;
use collect_shared::forms::Form;
use collect_shared::messages::{FormId, ResponseEnvelope, ResponseMessage};
use collect_shared::store::{FormCache, FormLookupError, FormVersion, Store};

use crate::error::ApiError;

pub use bodies::*;
pub use forms::{export_sheet, get_form, get_sheet, google_sheet, put_form};
pub use reads::{collector_flags, flag_history, get_form_response, get_response};
pub use submit::{collect, submit, submit_batch};
pub use watch::{__path_watch_flags, watch_flags};
pub use webhooks::{
    __path_delete_webhook, __path_get_webhook, __path_list_deliveries, __path_list_webhooks,
    __path_put_webhook, __path_redeliver, delete_webhook, get_webhook, list_deliveries,
    list_webhooks, put_webhook, redeliver,
};

// The handlers' OpenAPI descriptions (generated next to each handler by `utoipa::path`).
pub use forms::{
    __path_export_sheet, __path_get_form, __path_get_sheet, __path_google_sheet, __path_put_form,
};
pub use reads::{
    __path_collector_flags, __path_flag_history, __path_get_form_response, __path_get_response,
};
pub use submit::{__path_collect, __path_submit, __path_submit_batch};

/// What every route shares, behind one `Arc`: axum clones the state for each request, and
/// cloning (and dropping) the fields one by one (the store's pool, the gatherer, the flag
/// hub…) was 4% of ingest's samples in a `perf` profile under load (too little to show in the
/// closed loop's figures, which vary more than that).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    /// Publishes to `N.responses`, gathering responses that arrive together.
    pub gatherer: crate::gather::Gatherer,
    pub forms: Arc<FormCache>,
    pub store: Store,
    pub max_body_bytes: usize,
    /// Batch requests being read and published at once ([`BATCHES_AT_ONCE`]): the rest wait
    /// their turn, which bounds the memory a burst of large batches takes.
    pub batches: Arc<tokio::sync::Semaphore>,
    /// The live flag stream's hub.
    pub watch: crate::watch::FlagWatch,
    /// `WEBHOOKS_ALLOW_HTTP`: webhook URLs may be `http://`.
    pub webhooks_allow_http: bool,
}

/// How many batch requests are read and published at once. Eight batches of 100 keep more
/// publishes in flight than the confirm window, so the wait costs no throughput.
pub const BATCHES_AT_ONCE: usize = 8;

impl Shared {
    /// The form of a URL: `404` when there is none, `503` when the database cannot say.
    async fn form(&self, form_id: &str) -> Result<Arc<Form>, ApiError> {
        Ok(self.form_version(form_id).await?.form.clone())
    }

    /// The form of a URL at its current version, with its questions by payload key, as
    /// [`Shared::form`] finds it.
    async fn form_version(&self, form_id: &str) -> Result<Arc<FormVersion>, ApiError> {
        let id = FormId::parse(form_id).map_err(|_| ApiError::unknown_form(form_id))?;
        match self.forms.get(&id).await {
            Ok(Some(kept)) => Ok(kept),
            Ok(None) => Err(ApiError::unknown_form(form_id)),
            Err(FormLookupError::Database(error)) => Err(ApiError::database(error)),
            // Ingest keeps definitions only (no rules compiled), so this cannot come: kept
            // for a cache that prepares more.
            Err(invalid) => Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "invalid_form",
                invalid.to_string(),
            )),
        }
    }

    /// Publishes the response and waits for the broker's confirm: only then is it accepted.
    async fn accept(&self, form: &Form, envelope: ResponseEnvelope) -> Result<Accepted, ApiError> {
        let message = ResponseMessage::new(form.id.clone(), envelope, Utc::now());
        let body = serde_json::to_vec(&message).map_err(|error| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("cannot encode the message: {error}"),
            )
        })?;
        let published = self
            .gatherer
            .publish(form.id.as_str(), message.response_id.as_str(), body)
            .await;
        if let Err(error) = published {
            tracing::warn!(response_id = %message.response_id, %error, "response not accepted");
            return Err(ApiError::unavailable(error));
        }
        Ok(Accepted {
            response_id: message.response_id,
            form_id: form.id.clone(),
            revision: message.revision,
            status: AcceptedStatus::Accepted,
        })
    }
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}

/// The collector a route is about (`…/collectors/{user_id}/…`): the caller's key may act for
/// it (else `403`), and `user_id` is a user id (else `422`, `field: user_id`).
pub(crate) struct Collector(pub collect_shared::messages::UserId);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Collector {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        let principal = crate::auth::Principal::from_request_parts(parts, state).await?;
        let axum::extract::Path(user_id) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|rejection| ApiError::invalid("user_id", rejection.body_text()))?;
        principal.may_act_for(&user_id)?;
        collect_shared::messages::UserId::parse(&user_id)
            .map(Self)
            .map_err(|error| ApiError::invalid("user_id", error.to_string()))
    }
}

/// The cursor in the query parameter `name` as `parse` reads it: the start (`C::default()`)
/// when absent or empty; `422` with `refused` (`field: name`) when it does not parse.
fn cursor_in_query<C: Default>(
    query: &std::collections::HashMap<String, String>,
    name: &'static str,
    parse: impl Fn(&str) -> Option<C>,
    refused: &str,
) -> Result<C, ApiError> {
    match query.get(name).map(String::as_str) {
        None | Some("") => Ok(C::default()),
        Some(text) => parse(text).ok_or_else(|| ApiError::invalid(name, refused)),
    }
}

/// `limit` from a query: `default` when absent, else 1 to `max`.
fn limit_in_query(
    query: &std::collections::HashMap<String, String>,
    default: i64,
    max: i64,
) -> Result<i64, ApiError> {
    match query.get("limit") {
        None => Ok(default),
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|limit| (1..=max).contains(limit))
            .ok_or_else(|| ApiError::invalid("limit", format!("limit must be 1 to {max}"))),
    }
}
