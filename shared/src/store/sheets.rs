//! What sheets-sync keeps: responses waiting for their sheet (`sheet_outbox`), where each
//! response sits in a sheet (`sheet_rows`), the rows a sheet refused (`sheet_parked`), and the
//! locks that make one instance the writer of a tab.

use crate::store::StoreError;
use chrono::{DateTime, Utc};

use crate::messages::{FormId, ResponseId, StoredResponse};

/// `(form_id, response_id)` of `(response_id, form_id)` pairs, as the outbox is keyed.
pub(crate) fn keys<'a>(responses: &[(&'a ResponseId, &'a FormId)]) -> Vec<(&'a str, &'a str)> {
    responses
        .iter()
        .map(|(response_id, form_id)| (form_id.as_str(), response_id.as_str()))
        .collect()
}

/// A form's tab in a spreadsheet: where sheets-sync writes the form's rows, and what the
/// store records of them.
#[derive(Debug, Clone, Copy)]
pub struct FormTab<'a> {
    pub form_id: &'a FormId,
    pub spreadsheet_id: &'a str,
    pub tab: &'a str,
}

/// What one batch did to a tab, recorded at once by [`SheetStore::record_written`].
#[derive(Debug, Clone, Copy, Default)]
pub struct BatchWritten<'a> {
    /// Where each response was written: `(response_id, row, revision)`.
    pub rows: &'a [(String, i32, i64)],
    /// The responses done with, to take off the outbox unless they were enqueued again after
    /// the time given (a newer revision): `(response_id, enqueued_at)`.
    pub done: &'a [(String, DateTime<Utc>)],
    /// The rows appends inserted, in order: `(first row, count)`. `values.append` with
    /// `INSERT_ROWS` inserts its rows, so every row recorded at or below the first one moved
    /// down (an append lands in a gap a person left in the table).
    pub inserted: &'a [(i32, i32)],
}

/// A response waiting to be written, with its latest stored revision.
#[derive(Debug, Clone)]
pub struct PendingRow {
    pub response: StoredResponse,
    pub force: bool,
    pub enqueued_at: DateTime<Utc>,
    /// Its answers, metadata and flags as JSON, in bytes: about what its row adds to a Sheets
    /// request, and what bounds a batch read from the outbox.
    pub document_bytes: usize,
}

impl PendingRow {
    /// The bytes of `response`'s answers, metadata and flags as JSON, counted without
    /// building the text.
    pub fn document_bytes_of(response: &StoredResponse) -> usize {
        struct Count(usize);
        impl std::io::Write for Count {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0 += bytes.len();
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut count = Count(0);
        // Writing to a counter cannot fail, nor can serialising maps of JSON values.
        let _ = serde_json::to_writer(&mut count, &response.answers);
        let _ = serde_json::to_writer(&mut count, &response.metadata);
        let _ = serde_json::to_writer(&mut count, &response.flags);
        count.0
    }
}

/// A response to park: its sheet refused this revision of it.
#[derive(Debug, Clone)]
pub struct ParkRow {
    pub response_id: String,
    pub revision: i64,
    pub reason: String,
    /// When the refused revision was queued: a newer one queued since is not parked.
    pub enqueued_at: DateTime<Utc>,
}

/// A response its sheet refused, taken off the outbox (see [`SheetStore::park_rows`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedRow {
    pub spreadsheet_id: String,
    pub tab: String,
    /// The revision refused.
    pub revision: i64,
    /// What the Sheets API said.
    pub reason: String,
    pub parked_at: DateTime<Utc>,
}

/// A form with responses waiting, and how long the oldest has waited.
#[derive(Debug, Clone)]
pub struct PendingForm {
    pub form_id: FormId,
    pub waiting: i64,
    pub oldest_age_seconds: f64,
}

/// sheets-sync's outbox, rows and locks.
#[async_trait::async_trait]
pub trait SheetStore {
    /// Queues responses for their sheet (a response seen twice is queued once).
    async fn enqueue_many_for_sheet(
        &self,
        responses: &[(&ResponseId, &FormId)],
    ) -> Result<(), StoreError>;

    /// Marks every stored response of a form for rewriting; returns how many.
    async fn enqueue_form_export(&self, form_id: &FormId) -> Result<u64, StoreError>;

    /// The rows of a tab already written, for these responses of its form: `(response_id,
    /// row, revision)`.
    async fn sheet_rows(
        &self,
        at: FormTab<'_>,
        response_ids: &[String],
    ) -> Result<Vec<(String, i32, i64)>, StoreError>;

    /// Makes `sheet_rows` of a tab say what the sheet holds (`(response_id, row)` as read from
    /// its `response_id` column), in one transaction: a response found keeps its recorded
    /// revision at its new row (or gets revision -1, unknown, when it was not recorded, so the
    /// next batch rewrites it); a response recorded but not found is forgotten (a person deleted
    /// or cleared its row: a new revision or an export appends it again). Returns how many
    /// were forgotten.
    async fn resync_sheet_rows(
        &self,
        at: FormTab<'_>,
        found: &[(String, i32)],
    ) -> Result<u64, StoreError>;

    /// Records what a batch did to a tab, in one transaction: moves the rows appends pushed
    /// down, records where responses were written, and takes the responses done off the
    /// outbox, unless they were enqueued again meanwhile (a newer revision).
    async fn record_written(
        &self,
        at: FormTab<'_>,
        batch: BatchWritten<'_>,
    ) -> Result<(), StoreError>;

    /// Takes responses a sheet permanently refused off the outbox, with the reason, unless a
    /// newer revision was queued meanwhile (that one is tried instead). Returns how many were
    /// parked.
    async fn park_rows(&self, at: FormTab<'_>, parked: &[ParkRow]) -> Result<u64, StoreError>;

    /// A session of its own to hold this instance's tab locks on (see [`TabLocks`]).
    async fn lock_session(&self) -> Result<Box<dyn TabLocks>, StoreError>;
}

/// A database session holding tab locks: they last as long as the session, so a writer that
/// dies (or loses its connection) frees its tabs. One session holds every tab of an instance,
/// so connections do not grow with tabs.
#[async_trait::async_trait]
pub trait TabLocks: Send + Sync {
    /// Takes (or confirms) the lock of a tab: `true` when this session holds it, `false` when
    /// another one does. Call it once per tab, then [`TabLocks::alive`].
    async fn try_lock_tab(&mut self, spreadsheet_id: &str, tab: &str) -> Result<bool, StoreError>;

    /// Whether the session still answers (its locks are then still held).
    async fn alive(&mut self) -> Result<(), StoreError>;

    /// Closes the session (and frees its locks) rather than returning it to the pool.
    fn discard(self: Box<Self>);
}
