//! What can go wrong in the store, as the services need to tell it apart: the caller's
//! mistake or a value the engine cannot hold (permanent: set the input aside), a stored value
//! that does not read back (never read as a default), a row the save counted on that is
//! gone, or the database itself (refused the data, or may pass: a lost connection, a timeout).

/// An error of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A response appears twice in one batch given to `save_responses`.
    #[error("response {response_id} of form {form_id} appears twice in one batch")]
    TwiceInBatch {
        form_id: String,
        response_id: String,
    },
    /// A value this engine cannot hold (a time outside MySQL's years, a row over its packet
    /// size, a delivery id that is not one): refused before a statement is sent.
    #[error("{0}")]
    Unstorable(String),
    /// A stored value that does not read back as Collect wrote it (an unknown status, an id
    /// that does not parse, JSON that does not decode).
    #[error("a stored value does not read back: {0}")]
    Corrupt(String),
    /// A row the save found (or wrote) a moment ago is not there.
    #[error("a row this transaction counted on is missing")]
    Missing,
    /// The database refused the statement or could not be reached.
    #[error("{}", describe(.0))]
    Database(sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    /// A column that does not decode is a stored value that does not read back
    /// ([`StoreError::Corrupt`]); anything else is the database's.
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::Decode(_) | sqlx::Error::ColumnDecode { .. } => {
                Self::Corrupt(error.to_string())
            }
            other => Self::Database(other),
        }
    }
}

impl StoreError {
    /// Whether the same call would fail again however often it is retried: the caller's
    /// mistake, a value the engine cannot hold or a stored value that does not read back,
    /// or a statement the database refused for its data ([`is_permanent`]). Anything else
    /// (a lost connection, a timeout, a deadlock, a restart) may pass.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::TwiceInBatch { .. } | Self::Unstorable(_) | Self::Corrupt(_) => true,
            Self::Missing => false,
            Self::Database(error) => is_permanent(error),
        }
    }

    /// A stored value that does not read back, with why.
    pub(crate) fn corrupt(error: impl std::fmt::Display) -> Self {
        Self::Corrupt(error.to_string())
    }
}

/// Whether a failed statement would fail again for the same input however often it is
/// retried: a data exception (SQLSTATE class 22: U+0000 in text or `jsonb`, a time out of
/// range, a value too long ...), a broken constraint (23), a value over a limit (54), or a
/// value the driver cannot encode. A lost connection, a timeout, a deadlock, a restart or a
/// full disk (08, 40, 57, 53, HY000 ...) may pass, and is retried. Both engines report
/// SQLSTATEs.
fn is_permanent(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(database) => database.code().is_some_and(|code| {
            ["22", "23", "54"]
                .iter()
                .any(|class| code.starts_with(class))
        }),
        sqlx::Error::Encode(_) => true,
        _ => false,
    }
}

/// A failed statement for a log line or a dead letter: the engine and the SQLSTATE with the
/// engine's message.
fn describe(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(database) => {
            let engine = if database
                .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                .is_some()
            {
                "MySQL"
            } else {
                "PostgreSQL"
            };
            match database.code() {
                Some(code) => format!("{engine} refused it ({code}): {}", database.message()),
                None => format!("{engine} refused it: {}", database.message()),
            }
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_retrying_cannot_cure() {
        let twice = StoreError::TwiceInBatch {
            form_id: "f".into(),
            response_id: "r".into(),
        };
        assert!(twice.is_permanent());
        assert_eq!(
            twice.to_string(),
            "response r of form f appears twice in one batch"
        );
        assert!(StoreError::Unstorable("too big".into()).is_permanent());
        assert!(StoreError::corrupt("unknown status \"x\"").is_permanent());
        assert!(!StoreError::Missing.is_permanent());
        assert!(!StoreError::from(sqlx::Error::PoolTimedOut).is_permanent());
        assert!(StoreError::from(sqlx::Error::Encode("no".into())).is_permanent());
        let undecodable = StoreError::from(sqlx::Error::ColumnDecode {
            index: "\"status\"".into(),
            source: "unknown response status \"x\"".into(),
        });
        assert!(
            matches!(&undecodable, StoreError::Corrupt(why) if why.contains("unknown response status")),
            "{undecodable}"
        );
        assert!(undecodable.is_permanent());
    }
}
