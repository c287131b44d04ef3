//! `/v1/webhooks`: endpoints that receive flag events, and what became of each delivery.

use super::documented::*;
use super::limit_in_query;
use std::collections::HashMap;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use collect_shared::messages::{FormId, UserId};
use collect_shared::store::{
    Delivery, DeliveryCounts, DeliveryCursor, DeliveryQuery, DeliveryState, NewWebhook, Webhook,
    WebhookId,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{AppState, ErrorBody};
use crate::body::{from_value, read_json};
use crate::error::ApiError;

/// Longest webhook URL accepted.
const MAX_URL: usize = 2000;
/// Most collectors one webhook may name.
const MAX_USER_IDS: usize = 1000;

/// A webhook as registered: where to post which flag events.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookDefinition {
    /// `https://` URL the events are posted to (`http://` only with `WEBHOOKS_ALLOW_HTTP=true`).
    pub url: String,
    /// Only events of this form; absent: every form.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub form_id: Option<String>,
    /// Only events of these collectors (a group); absent or empty: every collector.
    #[serde(default)]
    pub user_ids: Vec<String>,
}

/// A webhook, with the state of its deliveries.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    pub webhook_id: String,
    pub url: String,
    pub form_id: Option<String>,
    pub user_ids: Vec<String>,
    /// The signing secret (`whsec_` and base64), set when the webhook is created; an update
    /// keeps it. Absent from the list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deliveries: DeliveryCounts,
}

impl WebhookView {
    fn of(webhook: Webhook, with_secret: bool) -> Self {
        Self {
            webhook_id: webhook.id.as_str().to_owned(),
            url: webhook.url,
            form_id: webhook.form_id.map(|id| id.as_str().to_owned()),
            user_ids: webhook
                .user_ids
                .iter()
                .map(|id| id.as_str().to_owned())
                .collect(),
            secret: with_secret.then_some(webhook.secret),
            created_at: webhook.created_at,
            updated_at: webhook.updated_at,
            deliveries: webhook.deliveries,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    pub webhooks: Vec<WebhookView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    pub webhook_id: String,
    /// Oldest first.
    pub deliveries: Vec<Delivery>,
    /// Ask again with `after=` this for what follows; `null` when nothing does.
    pub next: Option<String>,
}

fn webhook_id(text: &str) -> Result<WebhookId, ApiError> {
    WebhookId::parse(text).map_err(|error| ApiError::invalid("webhook_id", error.to_string()))
}

fn unknown_webhook(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_webhook",
        format!("no webhook {id:?}"),
    )
    .with_field("webhook_id")
}

/// A new signing secret: `whsec_` and 32 random bytes in base64, as Standard Webhooks writes
/// them.
fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// The URL, if it is one events may be posted to.
fn check_url(text: &str, allow_http: bool) -> Result<String, ApiError> {
    let bad = |message: String| ApiError::invalid("url", message);
    if text.len() > MAX_URL {
        return Err(bad(format!("url is longer than {MAX_URL} characters")));
    }
    let url = url::Url::parse(text).map_err(|error| bad(format!("url is not a URL: {error}")))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_http => {}
        "http" => {
            return Err(bad(
                "url must be https:// (WEBHOOKS_ALLOW_HTTP=true allows http:// for local receivers)"
                    .into(),
            ));
        }
        other => return Err(bad(format!("url must be https://, not {other}:"))),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("url has no host".into()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "url must not hold credentials: the signature authenticates each request".into(),
        ));
    }
    if url.fragment().is_some() {
        return Err(bad("url must not have a #fragment".into()));
    }
    Ok(url.to_string())
}

/// Create or replace a webhook. The answer of a creation holds the signing secret; an update
/// keeps it.
#[utoipa::path(
    put,
    path = "/v1/webhooks/{webhook_id}",
    tag = "webhooks",
    params(("webhook_id" = String, Path, description = "1 to 64 letters, digits, `_` or `-`, chosen by the caller")),
    request_body(content = WebhookDefinition, content_type = "application/json"),
    responses(
        (status = 201, description = "Created, with its secret", body = WebhookView),
        (status = 200, description = "Replaced (same secret)", body = WebhookView),
        (status = 422, description = "`invalid_field`: a bad `webhook_id`, `url` (not https, credentials, too long), `form_id` (no such form) or `user_ids[i]`", body = ErrorBody),
        NotJson, Unauthorized, AdminOnly, BodyTooLarge, DatabaseUnavailable,
    ),
    security(("bearer" = ["admin"]))
)]
pub async fn put_webhook(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let id = webhook_id(&id)?;
    let payload = read_json(&headers, body, state.max_body_bytes).await?;
    let definition: WebhookDefinition = from_value(payload)?;
    let url = check_url(&definition.url, state.webhooks_allow_http)?;
    let form_id = match definition.form_id {
        None => None,
        Some(text) => {
            let form_id = FormId::parse(&text)
                .map_err(|error| ApiError::invalid("form_id", error.to_string()))?;
            let known = state
                .store
                .form(&form_id)
                .await
                .map_err(ApiError::database)?
                .is_some();
            if !known {
                return Err(ApiError::invalid(
                    "form_id",
                    format!("no form {text:?}: create it first"),
                ));
            }
            Some(form_id)
        }
    };
    if definition.user_ids.len() > MAX_USER_IDS {
        return Err(ApiError::invalid(
            "user_ids",
            format!("at most {MAX_USER_IDS} collectors"),
        ));
    }
    let mut user_ids = Vec::with_capacity(definition.user_ids.len());
    for (i, text) in definition.user_ids.iter().enumerate() {
        let user_id = UserId::parse(text.as_str())
            .map_err(|error| ApiError::invalid(format!("user_ids[{i}]"), error.to_string()))?;
        if !user_ids.contains(&user_id) {
            user_ids.push(user_id);
        }
    }
    let (webhook, created) = state
        .store
        .put_webhook(&NewWebhook {
            id,
            url,
            form_id,
            user_ids,
            secret: new_secret(),
        })
        .await
        .map_err(ApiError::database)?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(WebhookView::of(webhook, true))).into_response())
}

/// Every webhook, without secrets.
#[utoipa::path(
    get,
    path = "/v1/webhooks",
    tag = "webhooks",
    responses(
        (status = 200, description = "The webhooks, by id", body = WebhookList),
        Unauthorized, AdminOnly, DatabaseUnavailable,
    ),
    security(("bearer" = ["admin"]))
)]
pub async fn list_webhooks(State(state): State<AppState>) -> Result<Json<WebhookList>, ApiError> {
    let webhooks = state
        .store
        .list_webhooks()
        .await
        .map_err(ApiError::database)?;
    Ok(Json(WebhookList {
        webhooks: webhooks
            .into_iter()
            .map(|webhook| WebhookView::of(webhook, false))
            .collect(),
    }))
}

/// A webhook, its secret, and how many of its deliveries are pending, delivered and dead.
#[utoipa::path(
    get,
    path = "/v1/webhooks/{webhook_id}",
    tag = "webhooks",
    params(("webhook_id" = String, Path, description = "The webhook")),
    responses(
        (status = 200, description = "The webhook", body = WebhookView),
        (status = 404, description = "`unknown_webhook`", body = ErrorBody),
        (status = 422, description = "`invalid_field`: a bad `webhook_id`", body = ErrorBody),
        Unauthorized, AdminOnly, DatabaseUnavailable,
    ),
    security(("bearer" = ["admin"]))
)]
pub async fn get_webhook(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<WebhookView>, ApiError> {
    let webhook_id = webhook_id(&id)?;
    let webhook = state
        .store
        .get_webhook(&webhook_id)
        .await
        .map_err(ApiError::database)?
        .ok_or_else(|| unknown_webhook(&id))?;
    Ok(Json(WebhookView::of(webhook, true)))
}

/// Delete a webhook and its deliveries (those in flight may still arrive once).
#[utoipa::path(
    delete,
    path = "/v1/webhooks/{webhook_id}",
    tag = "webhooks",
    params(("webhook_id" = String, Path, description = "The webhook")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`unknown_webhook`", body = ErrorBody),
        (status = 422, description = "`invalid_field`: a bad `webhook_id`", body = ErrorBody),
        Unauthorized, AdminOnly, DatabaseUnavailable,
    ),
    security(("bearer" = ["admin"]))
)]
pub async fn delete_webhook(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let webhook_id = webhook_id(&id)?;
    let deleted = state
        .store
        .delete_webhook(&webhook_id)
        .await
        .map_err(ApiError::database)?;
    if deleted {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(unknown_webhook(&id))
    }
}

/// Most deliveries one page holds, and the default.
const DELIVERIES_MAX: i64 = 1000;
const DELIVERIES_DEFAULT: i64 = 100;

/// A webhook's deliveries, oldest first: each one's state, attempts, last status and error.
#[utoipa::path(
    get,
    path = "/v1/webhooks/{webhook_id}/deliveries",
    tag = "webhooks",
    params(
        ("webhook_id" = String, Path, description = "The webhook"),
        ("state" = Option<String>, Query, description = "`pending`, `delivered` or `dead`; absent: all"),
        ("after" = Option<String>, Query, description = "A cursor (`next` of an earlier page)"),
        ("limit" = Option<u32>, Query, description = "At most this many (1 to 1000, default 100)"),
    ),
    responses(
        (status = 200, description = "The deliveries and `next`", body = DeliveryList),
        (status = 404, description = "`unknown_webhook`", body = ErrorBody),
        (status = 422, description = "`invalid_field`: a bad `webhook_id`, `state`, `after` or `limit`", body = ErrorBody),
        Unauthorized, AdminOnly, DatabaseUnavailable,
    ),
    security(("bearer" = ["admin"]))
)]
pub async fn list_deliveries(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<DeliveryList>, ApiError> {
    let webhook_id = webhook_id(&id)?;
    let wanted = match query.get("state").map(String::as_str) {
        None | Some("") => None,
        Some(text) => Some(DeliveryState::parse(text).ok_or_else(|| {
            ApiError::invalid("state", "state must be pending, delivered or dead")
        })?),
    };
    let after = match query.get("after").map(String::as_str) {
        None | Some("") => None,
        Some(text) => Some(DeliveryCursor::parse(text).ok_or_else(|| {
            ApiError::invalid("after", "after must be a cursor from this route (`next`)")
        })?),
    };
    let limit = limit_in_query(&query, DELIVERIES_DEFAULT, DELIVERIES_MAX)?;
    let known = state
        .store
        .get_webhook(&webhook_id)
        .await
        .map_err(ApiError::database)?
        .is_some();
    if !known {
        return Err(unknown_webhook(&id));
    }
    let page = state
        .store
        .list_deliveries(
            &webhook_id,
            &DeliveryQuery {
                state: wanted,
                after,
                limit,
            },
        )
        .await
        .map_err(ApiError::database)?;
    Ok(Json(DeliveryList {
        webhook_id: id,
        deliveries: page.deliveries,
        next: page.next.map(|cursor| cursor.to_string()),
    }))
}

/// Which delivery to deliver again.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Redelivery {
    pub delivery_id: String,
}

/// Deliver again: a dead (or delivered) delivery becomes pending with no attempts, after the
/// receiver was fixed, say.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{webhook_id}/deliveries:redeliver",
    tag = "webhooks",
    params(("webhook_id" = String, Path, description = "The webhook")),
    request_body(content = Redelivery, content_type = "application/json"),
    responses(
        (status = 202, description = "Pending again"),
        (status = 404, description = "`unknown_delivery`: no such webhook or delivery", body = ErrorBody),
        (status = 422, description = "`invalid_field`: a bad `webhook_id` or body", body = ErrorBody),
        NotJson, Unauthorized, AdminOnly, DatabaseUnavailable,
    ),
    security(("bearer" = ["admin"]))
)]
pub async fn redeliver(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let webhook_id = webhook_id(&id)?;
    let payload = read_json(&headers, body, state.max_body_bytes).await?;
    let Redelivery { delivery_id } = from_value(payload)?;
    let found = state
        .store
        .redeliver(&webhook_id, &delivery_id)
        .await
        .map_err(ApiError::database)?;
    if found {
        Ok(StatusCode::ACCEPTED)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_delivery",
            format!("webhook {id:?} has no delivery {delivery_id:?}"),
        )
        .with_field("delivery_id"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls() {
        for good in ["https://example.com/hook", "https://example.com:8443/a?b=c"] {
            assert!(check_url(good, false).is_ok(), "{good}");
        }
        assert!(check_url("http://127.0.0.1:9/hook", true).is_ok());
        for bad in [
            "http://example.com/hook",
            "ftp://example.com/",
            "https://user:pw@example.com/",
            "https://example.com/#x",
            "not a url",
            "https://",
            "",
        ] {
            let error = check_url(bad, false).expect_err(bad);
            assert_eq!(error.field.as_deref(), Some("url"), "{bad}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL));
        assert!(check_url(&long, false).is_err());
    }

    #[test]
    fn secrets_are_standard_webhooks_secrets() {
        let secret = new_secret();
        assert!(secret.starts_with("whsec_"));
        assert_ne!(secret, new_secret());
        let signer = standardwebhooks::Webhook::new(&secret).expect("a valid secret");
        let signature = signer.sign("msg_1", 1, b"{}").expect("signed");
        assert!(signature.starts_with("v1,"));
    }
}
