//! The one error shape of the API: `{"error": {"code", "message", "field"}}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use serde::Serialize;
use utoipa::ToSchema;

/// Seconds a client should wait before retrying when the broker cannot take messages.
pub const RETRY_AFTER_SECONDS: u64 = 2;

/// Every error answer: `{"error": {"code", "message", "field"}}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A machine code: `malformed_json`, `unauthorized`, `unknown_form`, `invalid_field`, ...
    pub code: String,
    pub message: String,
    /// What is at fault, when something is: a JSON path (`collector.user_id`, `[3].response_id`),
    /// `""` for the whole body, or a header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// 422 for a value that is structurally wrong, naming it.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message).with_field(field)
    }

    pub fn unknown_form(form_id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "unknown_form",
            format!("there is no form {form_id:?}"),
        )
        .with_field("form_id")
    }

    /// 503: the broker did not confirm, so nothing was accepted; retrying is safe.
    pub fn unavailable(reason: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "broker_unavailable",
            format!("the response was not accepted, retry later: {reason}"),
        )
    }

    /// 503: the database did not answer.
    pub fn database(error: impl std::fmt::Display) -> Self {
        tracing::warn!(%error, "database error");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "the database is not available, retry later",
        )
    }

    /// 503: this process serves as many flag streams as it may (`FLAGS_WATCH_MAX_STREAMS`).
    pub fn too_many_streams() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_streams",
            "this ingest instance serves as many flag streams as it may (FLAGS_WATCH_MAX_STREAMS); retry later, or read flags:history meanwhile",
        )
    }

    /// The `{"code", "message", "field"}` object, also used per item in batch results.
    pub fn body(&self) -> ErrorDetail {
        ErrorDetail {
            code: self.code.to_owned(),
            message: self.message.clone(),
            field: self.field.clone(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: self.body() };
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        match self.status {
            StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
            }
            StatusCode::UNAUTHORIZED => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}
