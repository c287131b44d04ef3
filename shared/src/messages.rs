//! The wire contract: what `ingest` (or any other backend) publishes to `N.responses`.
//!
//! Types here parse rather than validate: a [`ResponseId`] that exists is a valid one, so code
//! further down the pipeline never checks again.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use crate::domain::{
    Flag, FlagEventKind, FormId, InvalidIdentifier, ResponseId, ResponseStatus, Revision,
    RevisionTooLarge, Severity, UserId,
};

/// Who submitted a response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Collector {
    /// Flags go back to this collector (routing key `collector.<user_id>` on `N.flags`).
    pub user_id: UserId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

/// A response as a client submits it to `POST /v1/forms/{form_id}/responses`.
#[derive(Debug, Clone, PartialEq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResponseEnvelope {
    pub response_id: ResponseId,
    /// A higher revision replaces the stored one, the same one again is a no-op, a lower one
    /// is ignored. Default 0; at most 2^63 - 1.
    #[serde(default)]
    pub revision: Revision,
    pub collector: Collector,
    /// When the collector submitted it (RFC 3339).
    #[serde(default)]
    pub submitted_at: Option<DateTime<Utc>>,
    /// Answers by question id. Not type-checked here: a wrong type is flagged, not refused.
    #[serde(default)]
    pub answers: Map<String, Value>,
    /// Anything else about the response (location, family id, ...), kept as sent.
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// Optional; when present it must name the form of the URL.
    #[serde(default)]
    pub form_id: Option<FormId>,
}

/// The message on `N.responses`: the envelope plus its `form_id`, and when ingest accepted it.
///
/// Unknown fields are ignored when reading, so other backends may add their own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResponseMessage {
    /// The form; also the routing key.
    pub form_id: FormId,
    pub response_id: ResponseId,
    /// Default 0; a higher revision replaces the stored one.
    #[serde(default)]
    pub revision: Revision,
    pub collector: Collector,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_at: Option<DateTime<Utc>>,
    /// Answers by question id.
    #[serde(default)]
    pub answers: Map<String, Value>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// Set by ingest when the broker confirmed the message; absent from other publishers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at: Option<DateTime<Utc>>,
}

impl ResponseMessage {
    pub fn new(form_id: FormId, envelope: ResponseEnvelope, received_at: DateTime<Utc>) -> Self {
        Self {
            form_id,
            response_id: envelope.response_id,
            revision: envelope.revision,
            collector: envelope.collector,
            submitted_at: envelope.submitted_at,
            answers: envelope.answers,
            metadata: envelope.metadata,
            received_at: Some(received_at),
        }
    }
}

/// A value the store cannot hold, and where it is: PostgreSQL's `text` and `jsonb` refuse the
/// character U+0000, and a time outside the years 1000 to 9999 is refused too (what both
/// engines hold: MySQL's `DATETIME` supports the years 1000 to 9999, and sqlx reads an earlier
/// year back as NULL). Ingest answers `422` with `field`, so such a response never reaches a queue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Unstorable {
    /// The path of the value at fault, as a `422` names it (`answers.income`, `metadata.x[2]`).
    pub field: String,
    pub message: String,
}

impl ResponseEnvelope {
    /// Whether every value can be stored as it is (see [`Unstorable`]).
    pub fn check_storable(&self) -> Result<(), Unstorable> {
        if let Some(username) = &self.collector.username {
            check_text_storable(username, "collector.username")?;
        }
        if let Some(submitted_at) = &self.submitted_at {
            check_time_storable(submitted_at, "submitted_at")?;
        }
        check_object_storable(&self.answers, "answers")?;
        check_object_storable(&self.metadata, "metadata")
    }
}

/// A time both engines hold: the years 1000 to 9999.
pub fn check_time_storable(time: &DateTime<Utc>, field: &str) -> Result<(), Unstorable> {
    use chrono::Datelike;
    if (1000..=9999).contains(&time.year()) {
        Ok(())
    } else {
        Err(Unstorable {
            field: field.to_owned(),
            message: format!(
                "{field} must be between the years 1000 and 9999, got the year {}",
                time.year()
            ),
        })
    }
}

/// Text without U+0000, which PostgreSQL's `text` and `jsonb` refuse.
pub fn check_text_storable(text: &str, field: &str) -> Result<(), Unstorable> {
    if text.contains('\0') {
        Err(Unstorable {
            field: field.to_owned(),
            message: format!("{field} contains the character U+0000, which cannot be stored"),
        })
    } else {
        Ok(())
    }
}

/// Every key and string of a JSON object (nested too) without U+0000; `field` is the path of
/// the object, and the error names the key or element at fault. The path is only built for an
/// error: this runs on every key of every request.
pub fn check_object_storable(object: &Map<String, Value>, field: &str) -> Result<(), Unstorable> {
    for (key, value) in object {
        if key.contains('\0') || !storable(value) {
            let key_path = key.escape_default();
            let path = if field.is_empty() {
                key_path.to_string()
            } else {
                format!("{field}.{key_path}")
            };
            check_text_storable(key, &path)?;
            check_value_storable(value, &path)?;
        }
    }
    Ok(())
}

/// Whether `value` holds no U+0000 anywhere (keys included).
fn storable(value: &Value) -> bool {
    match value {
        Value::String(text) => !text.contains('\0'),
        Value::Array(items) => items.iter().all(storable),
        Value::Object(object) => object
            .iter()
            .all(|(key, value)| !key.contains('\0') && storable(value)),
        Value::Null | Value::Bool(_) | Value::Number(_) => true,
    }
}

fn check_value_storable(value: &Value, field: &str) -> Result<(), Unstorable> {
    match value {
        Value::String(text) => check_text_storable(text, field),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, item)| check_value_storable(item, &format!("{field}[{i}]"))),
        Value::Object(object) => check_object_storable(object, field),
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

/// A response as stored: the body of `N.saved` messages and of `GET /v1/responses/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoredResponse {
    pub response_id: ResponseId,
    pub form_id: FormId,
    pub revision: Revision,
    /// The version of the form it was checked against.
    pub form_version: i32,
    pub status: ResponseStatus,
    /// Every flag, warnings included.
    pub flags: Vec<Flag>,
    pub collector: Collector,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_at: Option<DateTime<Utc>>,
    pub answers: Map<String, Value>,
    pub metadata: Map<String, Value>,
    /// When ingest accepted it (absent when another backend published it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at: Option<DateTime<Utc>>,
    /// When the validator stored this revision.
    pub stored_at: DateTime<Utc>,
}

impl StoredResponse {
    /// The flags that send it back to its collector (severity `error`), as the collector's
    /// app sees them.
    pub fn flags_for_collector(&self) -> Vec<FlagSummary> {
        self.flags
            .iter()
            .filter(|flag| flag.severity == Severity::Error)
            .map(|flag| FlagSummary {
                rule_id: flag.rule_id.clone(),
                message: flag.message.clone(),
            })
            .collect()
    }
}

/// A flag as the collector's app sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FlagSummary {
    pub rule_id: String,
    pub message: String,
}

/// The body of `N.flags` messages (routing key `collector.<user_id>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FlagEvent {
    #[serde(rename = "type")]
    pub kind: FlagEventKind,
    pub response_id: ResponseId,
    pub form_id: FormId,
    pub revision: Revision,
    pub collector: Collector,
    /// The flags that go back to the collector (severity `error`); empty when cleared.
    pub flags: Vec<FlagSummary>,
    /// The answers of this revision, by question id.
    pub answers: Map<String, Value>,
    /// When the validator published the event.
    pub at: DateTime<Utc>,
}

impl FlagEvent {
    pub fn new(kind: FlagEventKind, stored: &StoredResponse, at: DateTime<Utc>) -> Self {
        let flags = match kind {
            FlagEventKind::Cleared => Vec::new(),
            FlagEventKind::Flagged => stored.flags_for_collector(),
        };
        Self {
            kind,
            response_id: stored.response_id.clone(),
            form_id: stored.form_id.clone(),
            revision: stored.revision,
            collector: stored.collector.clone(),
            flags,
            answers: stored.answers.clone(),
            at,
        }
    }

    /// `collector.<user_id>`: collectors' apps bind to their own key.
    pub fn routing_key(&self) -> String {
        format!("collector.{}", self.collector.user_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn identifiers_are_visible_ascii_up_to_128_characters() {
        assert!(ResponseId::parse("r-1029").is_ok());
        assert!(ResponseId::parse("x".repeat(128)).is_ok());
        assert!(ResponseId::parse("x".repeat(129)).is_err());
        assert!(ResponseId::parse("").is_err());
        assert!(ResponseId::parse("a b").is_err());
        assert!(ResponseId::parse("a\u{7}").is_err());
        assert!(ResponseId::parse("réponse").is_err());
    }

    #[test]
    fn form_ids_have_no_dots_or_slashes() {
        assert!(FormId::parse("household-finance").is_ok());
        assert!(FormId::parse("a.b").is_err());
        assert!(FormId::parse("a/b").is_err());
        assert!(FormId::parse("x".repeat(65)).is_err());
    }

    #[test]
    fn envelope_defaults_and_strictness() {
        let envelope: ResponseEnvelope =
            serde_json::from_value(json!({"response_id": "r-1", "collector": {"user_id": "u-1"}}))
                .expect("minimal envelope");
        assert_eq!(envelope.revision, Revision::ZERO);
        assert!(envelope.answers.is_empty());
        let typo = serde_json::from_value::<ResponseEnvelope>(
            json!({"response_id": "r-1", "collector": {"user_id": "u"}, "answer": {}}),
        );
        assert!(typo.is_err());
        let negative = serde_json::from_value::<ResponseEnvelope>(
            json!({"response_id": "r-1", "collector": {"user_id": "u"}, "revision": -1}),
        );
        assert!(negative.is_err());
    }

    #[test]
    fn what_the_store_cannot_hold_is_named() {
        let envelope = |extra: Value| {
            let mut body = json!({"response_id": "r-1", "collector": {"user_id": "u-1"}});
            for (key, value) in extra.as_object().expect("an object") {
                body[key] = value.clone();
            }
            serde_json::from_value::<ResponseEnvelope>(body).expect("envelope")
        };
        let field = |extra: Value| envelope(extra).check_storable().map_err(|e| e.field);
        assert_eq!(
            field(json!({"answers": {"a": "fine", "b": [1, {"c": "ok"}]}})),
            Ok(())
        );
        assert_eq!(
            field(json!({"answers": {"b": [1, {"c": "x\u{0}y"}]}})),
            Err("answers.b[1].c".into())
        );
        assert_eq!(
            field(json!({"metadata": {"k\u{0}": 1}})),
            Err("metadata.k\\u{0}".into())
        );
        assert_eq!(
            field(json!({"collector": {"user_id": "u", "username": "\u{0}"}})),
            Err("collector.username".into())
        );
        assert_eq!(
            field(json!({"submitted_at": "-5000-01-01T00:00:00Z"})),
            Err("submitted_at".into())
        );
        assert_eq!(
            field(json!({"submitted_at": "0999-12-31T23:59:59Z"})),
            Err("submitted_at".into())
        );
        assert_eq!(
            field(json!({"submitted_at": "1000-01-01T00:00:00Z"})),
            Ok(())
        );
        assert_eq!(
            field(json!({"submitted_at": "9999-12-31T23:59:59Z"})),
            Ok(())
        );
    }

    #[test]
    fn message_round_trips() {
        let message = ResponseMessage {
            form_id: FormId::parse("f").expect("form id"),
            response_id: ResponseId::parse("r").expect("response id"),
            revision: Revision::saturating_from_i64(3),
            collector: Collector {
                user_id: UserId::parse("u").expect("user id"),
                username: Some("asha".into()),
            },
            submitted_at: None,
            answers: Map::new(),
            metadata: Map::new(),
            received_at: None,
        };
        let text = serde_json::to_string(&message).expect("serialise");
        assert_eq!(
            serde_json::from_str::<ResponseMessage>(&text).expect("parse"),
            message
        );
    }
}
