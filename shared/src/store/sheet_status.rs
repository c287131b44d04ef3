//! Each form's sheet as sheets-sync sees it: why it is not being written, if it is not, and how
//! many of its rows wait or were refused. sheets-sync reports; `GET /v1/forms/{id}/sheet` reads.

use crate::store::StoreError;
use chrono::{DateTime, Utc};

use crate::messages::FormId;

/// A form whose sheet cannot be written now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SheetFailure {
    pub form_id: FormId,
    pub spreadsheet_id: String,
    pub tab: String,
    pub reason: String,
    /// About this form's sheet (not shared, gone, full, none configured), not about reaching
    /// Google.
    pub about_this_sheet: bool,
    pub failing_since: DateTime<Utc>,
}

/// A form's sheet: its failure, if any, and its rows that wait or were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SheetState {
    pub failure: Option<SheetFailure>,
    pub rows_waiting: i64,
    pub rows_parked: i64,
}

/// A reported failure older than this is not believed: its instance stopped reporting.
pub(crate) const REPORT_FRESH_SECONDS: i64 = 60;

/// Per-form sheet status.
#[async_trait::async_trait]
pub trait SheetStatusStore {
    /// Reports this instance's failing forms: each upserted (refreshing it), and this
    /// instance's earlier reports of other forms removed (they write again).
    async fn report_sheet_failures(
        &self,
        instance: &str,
        failing: &[SheetFailure],
    ) -> Result<(), StoreError>;
}
