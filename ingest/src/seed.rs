//! The seed system's flat payload (`POST /collect`) as a response envelope.
//!
//! The seed's metadata keys become the envelope's own fields or its `metadata`; every other key
//! is a question, found by its id or its text (the label). Keys that match no question are kept
//! in `answers` under their own name, so nothing a collector sent is dropped.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use collect_shared::forms::SEED_METADATA;
use collect_shared::messages::{
    Collector, ResponseEnvelope, ResponseId, Revision, UserId, check_object_storable,
    check_time_storable,
};
use collect_shared::store::FormVersion;
use serde_json::{Map, Value};

use crate::error::ApiError;

pub fn envelope_from_seed(
    form: &FormVersion,
    payload: Value,
) -> Result<ResponseEnvelope, ApiError> {
    let Value::Object(mut fields) = payload else {
        return Err(ApiError::invalid(
            "",
            "the body must be a JSON object of question texts and metadata",
        ));
    };
    // What PostgreSQL cannot hold is refused here, named by the payload's own key.
    check_object_storable(&fields, "")
        .map_err(|unstorable| ApiError::invalid(unstorable.field, unstorable.message))?;
    let response_id = identifier(fields.remove("response_id"), "response_id")?;
    let response_id = ResponseId::parse(response_id)
        .map_err(|error| ApiError::invalid("response_id", error.to_string()))?;
    let user_id = identifier(fields.remove("user_id"), "user_id")?;
    let user_id =
        UserId::parse(user_id).map_err(|error| ApiError::invalid("user_id", error.to_string()))?;
    let username = match fields.remove("username") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => Some(name),
        Some(Value::Number(number)) => Some(number.to_string()),
        Some(_) => return Err(ApiError::invalid("username", "username must be a string")),
    };
    let revision = match fields.get("last_modified_time") {
        None | Some(Value::Null) => Revision::ZERO,
        Some(value) => {
            let modified = parse_timestamp(value).map_err(|message| {
                ApiError::invalid(
                    "last_modified_time",
                    format!("last_modified_time {message}"),
                )
            })?;
            Revision::saturating_from_i64(modified.timestamp_millis())
        }
    };
    // A `submitted_time` that is not a time stays in `metadata` only (the seed never checked
    // it); one that is a time must be one the store can hold.
    let submitted_at = fields
        .get("submitted_time")
        .and_then(|value| parse_timestamp(value).ok());
    if let Some(time) = &submitted_at {
        check_time_storable(time, "submitted_time")
            .map_err(|unstorable| ApiError::invalid(unstorable.field, unstorable.message))?;
    }

    let mut metadata = Map::new();
    for key in SEED_METADATA {
        if let Some(value) = fields.remove(key) {
            metadata.insert(key.to_owned(), value);
        }
    }
    let mut answers = Map::new();
    for (key, value) in fields {
        let id = form
            .keys
            .question(&form.form.definition, &key)
            .map_or_else(|| key.clone(), |question| question.id.clone());
        if answers.contains_key(&id) {
            return Err(ApiError::invalid(
                id.clone(),
                format!("question {id:?} is answered twice (by its id and by its text, {key:?})"),
            ));
        }
        answers.insert(id, value);
    }
    Ok(ResponseEnvelope {
        response_id,
        revision,
        collector: Collector { user_id, username },
        submitted_at,
        answers,
        metadata,
        form_id: None,
    })
}

/// The seed's ids may be strings or whole numbers.
fn identifier(value: Option<Value>, field: &str) -> Result<String, ApiError> {
    match value {
        Some(Value::String(text)) => Ok(text),
        Some(Value::Number(number)) if number.is_u64() || number.is_i64() => Ok(number.to_string()),
        None | Some(Value::Null) => Err(ApiError::invalid(field, format!("{field} is required"))),
        Some(_) => Err(ApiError::invalid(
            field,
            format!("{field} must be a string or a whole number"),
        )),
    }
}

/// A point in time as the seed's apps send it: ISO-8601 / RFC 3339 (`2026-11-20T10:15:00Z`,
/// with any offset; without one it is UTC; `T` or a space between date and time), or a Unix
/// epoch number, or numeric string, in seconds or milliseconds (values from 10^11 on are
/// milliseconds: 10^11 seconds is the year 5138).
pub fn parse_timestamp(value: &Value) -> Result<DateTime<Utc>, String> {
    match value {
        Value::Number(number) => {
            let epoch = number
                .as_f64()
                .ok_or_else(|| "is not a usable number".to_owned())?;
            from_epoch(epoch)
        }
        Value::String(text) => {
            let text = text.trim();
            if let Ok(epoch) = text.parse::<f64>() {
                return from_epoch(epoch);
            }
            if let Ok(time) = DateTime::parse_from_rfc3339(text) {
                return Ok(time.with_timezone(&Utc));
            }
            for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
                if let Ok(time) = NaiveDateTime::parse_from_str(text, format) {
                    return Ok(Utc.from_utc_datetime(&time));
                }
            }
            Err(format!(
                "{text:?} is not a date-time: use ISO-8601 (2026-11-20T10:15:00Z) or Unix epoch seconds or milliseconds"
            ))
        }
        _ => Err("must be an ISO-8601 string or a Unix epoch number".to_owned()),
    }
}

fn from_epoch(epoch: f64) -> Result<DateTime<Utc>, String> {
    if !epoch.is_finite() || epoch < 0.0 {
        return Err(format!("{epoch} is not a time after 1970"));
    }
    let millis = if epoch >= 1e11 { epoch } else { epoch * 1000.0 };
    if millis > 253_402_300_799_999.0 {
        return Err(format!("{epoch} is after the year 9999"));
    }
    Utc.timestamp_millis_opt(millis.round() as i64)
        .single()
        .ok_or_else(|| format!("{epoch} is not a valid time"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn millis(value: Value) -> Result<i64, String> {
        parse_timestamp(&value).map(|time| time.timestamp_millis())
    }

    #[test]
    fn timestamps_in_every_accepted_form() {
        let expected = 1_763_633_700_000; // 2025-11-20T10:15:00Z
        assert_eq!(millis(json!("2025-11-20T10:15:00Z")), Ok(expected));
        assert_eq!(millis(json!("2025-11-20T15:45:00+05:30")), Ok(expected));
        assert_eq!(millis(json!("2025-11-20 10:15:00")), Ok(expected));
        assert_eq!(millis(json!("2025-11-20T10:15:00")), Ok(expected));
        assert_eq!(millis(json!(1_763_633_700)), Ok(expected));
        assert_eq!(millis(json!(1_763_633_700_000u64)), Ok(expected));
        assert_eq!(millis(json!("1763633700")), Ok(expected));
        assert_eq!(millis(json!(1_763_633_700.25)), Ok(expected + 250));
    }

    #[test]
    fn refuses_what_is_not_a_time() {
        for bad in [
            json!("yesterday"),
            json!("2025-13-01T00:00:00Z"),
            json!(-5),
            json!(true),
            json!({}),
            json!(1e300),
            json!(""),
        ] {
            assert!(parse_timestamp(&bad).is_err(), "{bad} was accepted");
        }
    }
}
