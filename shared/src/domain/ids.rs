//! Identifiers that parse rather than validate: a [`ResponseId`] that exists is a valid one,
//! so code further down the pipeline never checks again.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// Why an identifier was refused; the text is meant for the API client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidIdentifier(String);

/// `1..=128` visible ASCII characters (RFC 5234 `VCHAR`, `!` to `~`): what `response_id` and
/// `collector.user_id` must be. They travel as AMQP `message_id` and routing keys, which are
/// limited to 255 bytes, and end up in URLs and sheet cells.
fn check_visible(kind: &str, value: &str) -> Result<(), InvalidIdentifier> {
    let length = value.chars().count();
    if length == 0 || length > 128 {
        return Err(InvalidIdentifier(format!(
            "{kind} must be 1 to 128 characters long, got {length}"
        )));
    }
    if let Some(bad) = value.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(InvalidIdentifier(format!(
            "{kind} must be visible ASCII characters (no spaces or control characters), found {bad:?}"
        )));
    }
    Ok(())
}

macro_rules! identifier {
    (
        $(#[$doc:meta])* $name:ident, $kind:literal, $check:path,
        schema: $max:literal characters matching $pattern:literal, $description:literal
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        // By hand: the derive cannot put length and pattern on a newtype.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .description(Some($description))
                    .min_length(Some(1))
                    .max_length(Some($max))
                    .pattern(Some($pattern))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {
            fn name() -> std::borrow::Cow<'static, str> {
                std::borrow::Cow::Borrowed(stringify!($name))
            }
        }

        impl $name {
            pub fn parse(value: impl Into<String>) -> Result<Self, InvalidIdentifier> {
                let value = value.into();
                $check($kind, &value)?;
                Ok(Self(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = String::deserialize(deserializer)?;
                Self::parse(value).map_err(serde::de::Error::custom)
            }
        }
    };
}

identifier!(
    /// Identifies a response across its revisions.
    ResponseId,
    "response_id",
    check_visible,
    schema: 128 characters matching "^[!-~]+$",
    "Identifies a response across its revisions: 1 to 128 visible ASCII characters."
);
identifier!(
    /// The field collector who submitted a response; flags go back to them.
    UserId,
    "user_id",
    check_visible,
    schema: 128 characters matching "^[!-~]+$",
    "The field collector who submitted a response: 1 to 128 visible ASCII characters."
);
identifier!(
    /// A form: `1..=64` letters, digits, `_` or `-`. It is the routing key on `N.responses`,
    /// so it has no `.` (a topic-exchange word separator).
    FormId,
    "form_id",
    check_form_id,
    schema: 64 characters matching "^[A-Za-z0-9_-]+$",
    "A form: 1 to 64 letters, digits, `_` or `-` (the routing key on `N.responses` and `N.saved`)."
);

fn check_form_id(kind: &str, value: &str) -> Result<(), InvalidIdentifier> {
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-');
    if value.is_empty() || value.len() > 64 || !value.chars().all(valid_char) {
        return Err(InvalidIdentifier(format!(
            "{kind} must be 1 to 64 letters, digits, '_' or '-'"
        )));
    }
    Ok(())
}
