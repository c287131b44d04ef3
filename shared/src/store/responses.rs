//! Responses: one row per response of a form (`(form_id, response_id)`), latest revision wins.
//! What both engines share: the types, the interface, and the revision rules as pure functions
//! (each engine only reads and writes rows).

use crate::store::StoreError;
use chrono::{DateTime, Utc};

use crate::messages::{
    Flag, FlagEventKind, FormId, ResponseId, ResponseMessage, Revision, StoredResponse,
};

/// A response's row in a sheet.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SheetPosition {
    pub spreadsheet_id: String,
    pub tab: String,
    pub row: i32,
}

/// A checked response, ready to store.
pub struct NewResponse<'a> {
    pub message: &'a ResponseMessage,
    pub form_version: i32,
    /// What checking it found.
    pub flags: &'a [Flag],
}

/// What saving did.
#[derive(Debug, Clone, PartialEq)]
pub enum SaveOutcome {
    /// A response seen for the first time, or a newer revision that replaced the stored one.
    Written {
        stored: StoredResponse,
        event: Option<FlagEventKind>,
    },
    /// This revision was stored before (a redelivery): nothing changed. `stored` and `event`
    /// are what the first time stored, so its events can be published again.
    Duplicate {
        stored: StoredResponse,
        event: Option<FlagEventKind>,
    },
    /// Older than the stored revision: ignored.
    Stale { stored_revision: Revision },
}

/// Responses as the services read and write them.
#[async_trait::async_trait]
pub trait ResponseStore {
    /// Stores responses with the revision rules, many in one transaction: a higher revision
    /// replaces the stored one, the same one is a no-op (`Duplicate`, with what was stored, so
    /// its events can be published again), a lower one is ignored (`Stale`). Rows are locked
    /// in key order, so concurrent batches of two validators serialise on them and never
    /// deadlock. Each revision written with a flag event adds it to the collector's flag
    /// history in the same transaction, and each revision written is queued for its sheet
    /// (`sheet_outbox`, as [`super::SheetStore::enqueue_many_for_sheet`] does) in it too: a
    /// transactional outbox, so no message has to carry it to sheets-sync. The outcomes are in the order of `batch`; a response
    /// may appear once per call.
    async fn save_responses(
        &self,
        batch: &[NewResponse<'_>],
    ) -> Result<Vec<SaveOutcome>, StoreError>;
}

/// Where a reader of a collector's flagged responses is: after the response stored at
/// `stored_at` with this key. Written `<stored_at in microseconds>.<form_id>.<response_id>`
/// (a form id has no `.`; the response id is the rest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlaggedCursor {
    pub(crate) stored_at: DateTime<Utc>,
    pub(crate) form_id: String,
    pub(crate) response_id: String,
}

impl Default for FlaggedCursor {
    /// Before every response (`stored_at` is the database's clock, after 1970).
    fn default() -> Self {
        Self {
            stored_at: DateTime::<Utc>::UNIX_EPOCH,
            form_id: String::new(),
            response_id: String::new(),
        }
    }
}

impl FlaggedCursor {
    /// After this response.
    pub fn after(response: &StoredResponse) -> Self {
        Self {
            stored_at: response.stored_at,
            form_id: response.form_id.to_string(),
            response_id: response.response_id.to_string(),
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.splitn(3, '.');
        let micros: i64 = parts.next()?.parse().ok()?;
        let form_id = FormId::parse(parts.next()?).ok()?;
        let response_id = ResponseId::parse(parts.next()?).ok()?;
        Some(Self {
            stored_at: DateTime::<Utc>::from_timestamp_micros(micros)
                .filter(|at| (1..=9999).contains(&chrono::Datelike::year(at)))?,
            form_id: form_id.to_string(),
            response_id: response_id.to_string(),
        })
    }
}

impl std::fmt::Display for FlaggedCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}.{}.{}",
            self.stored_at.timestamp_micros(),
            self.form_id,
            self.response_id
        )
    }
}

/// JSON text for a column (these values always serialise).
pub(crate) fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

/// An identifier read back from the store.
pub(crate) fn decode<T, E: std::fmt::Display>(result: Result<T, E>) -> Result<T, StoreError> {
    result.map_err(StoreError::corrupt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flagged_cursors_read_back_as_written() {
        let cursor = FlaggedCursor {
            stored_at: DateTime::<Utc>::from_timestamp_micros(1_795_169_700_123_456)
                .expect("a time"),
            form_id: "household-finance".into(),
            response_id: "r.1.x".into(),
        };
        assert_eq!(
            cursor.to_string(),
            "1795169700123456.household-finance.r.1.x"
        );
        assert_eq!(FlaggedCursor::parse(&cursor.to_string()), Some(cursor));
        for bad in [
            "",
            "1",
            "1.f",
            "x.f.r",
            "1.f.",
            "1.f g.r",
            "-99999999999999999.f.r",
        ] {
            assert_eq!(FlaggedCursor::parse(bad), None, "{bad}");
        }
    }
}
