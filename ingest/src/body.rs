//! Reading a JSON request body: content type, size limit, syntax, then structure, each with its
//! own status (415, 413, 400, 422) and the field at fault named.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ApiError;

/// Reads and parses the body as JSON, refusing other content types and oversized bodies.
pub async fn read_json(headers: &HeaderMap, body: Body, limit: usize) -> Result<Value, ApiError> {
    check_content_type(headers)?;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is larger than the limit of {limit} bytes"),
        )
    };
    let declared_length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared_length.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    // Copied out frame by frame into one buffer of the declared size: a frame is a slice of the
    // connection's read buffer, which hyper can reuse only once no frame holds it (collecting
    // the frames first kept up to twice hyper's 400 KB buffer alive per connection reading a
    // large body, then copied them all once more).
    let mut bytes = Vec::with_capacity(declared_length.map_or(0, |length| length as usize));
    let mut body = Limited::new(body, limit);
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    bytes.extend_from_slice(data);
                }
            }
            Err(error) if error.is::<LengthLimitError>() => return Err(too_large()),
            Err(error) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "unreadable_body",
                    format!("the body could not be read: {error}"),
                ));
            }
        }
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "the body is empty; send a JSON document",
        ));
    }
    serde_json::from_slice(&bytes).map_err(|error| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not valid JSON: {error}"),
        )
    })
}

fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let unsupported = |message: String| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            message,
        )
        .with_field("Content-Type")
    };
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(unsupported(
            "send the body as JSON with `Content-Type: application/json`".into(),
        ));
    };
    let value = value.to_str().unwrap_or_default().to_ascii_lowercase();
    let mut parts = value.split(';').map(str::trim);
    let essence = parts.next().unwrap_or_default();
    let is_json = essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"));
    let charset_ok = parts
        .filter_map(|parameter| parameter.strip_prefix("charset="))
        .all(|charset| matches!(charset.trim_matches('"'), "utf-8" | "utf8"));
    if is_json && charset_ok {
        Ok(())
    } else {
        Err(unsupported(format!(
            "the body must be JSON in UTF-8 (`Content-Type: application/json`), not {value:?}"
        )))
    }
}

/// Turns a parsed JSON value into `T`, naming the field at fault when it does not fit.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let message = error.inner().to_string();
        ApiError::invalid(field_at_fault(&path, &message), message)
    })
}

/// serde reports a missing or unknown field at its parent; name the field itself.
fn field_at_fault(path: &str, message: &str) -> String {
    let parent = if path == "." { "" } else { path };
    let named = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next());
    match named {
        Some(name) if parent.is_empty() => name.to_owned(),
        Some(name) if !parent.ends_with(name) => format!("{parent}.{name}"),
        _ => parent.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use collect_shared::messages::ResponseEnvelope;
    use serde_json::json;

    fn field_of(value: Value) -> Option<String> {
        from_value::<ResponseEnvelope>(value)
            .err()
            .and_then(|error| error.field)
    }

    #[test]
    fn names_the_field_at_fault() {
        assert_eq!(
            field_of(json!({"collector": {"user_id": "u"}})).as_deref(),
            Some("response_id")
        );
        assert_eq!(
            field_of(json!({"response_id": "r", "collector": {}})).as_deref(),
            Some("collector.user_id")
        );
        assert_eq!(
            field_of(json!({"response_id": "r", "collector": {"user_id": "u"}, "revision": "2"}))
                .as_deref(),
            Some("revision")
        );
        assert_eq!(
            field_of(json!({"response_id": "r", "collector": {"user_id": "u"}, "answer": {}}))
                .as_deref(),
            Some("answer")
        );
        assert_eq!(
            field_of(json!({"response_id": "", "collector": {"user_id": "u"}})).as_deref(),
            Some("response_id")
        );
        assert_eq!(
            field_of(json!({"response_id": "r", "collector": {"user_id": "u", "name": 1}}))
                .as_deref(),
            Some("collector.name")
        );
    }
}
