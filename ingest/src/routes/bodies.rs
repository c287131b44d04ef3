//! The JSON bodies the API takes and answers with, as types: each answer is serialised from the
//! type that `/openapi.json` describes, so the document cannot drift from what is sent.

use chrono::{DateTime, Utc};
use collect_shared::forms::{Form, FormDefinition, Question, Rule, SheetTarget};
use collect_shared::messages::{
    FlagEvent, FlagSummary, FormId, ResponseId, Revision, StoredResponse, UserId,
};
use collect_shared::store::{ParkedRow, SheetPosition};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{RefOr, schema};

/// `202`: the broker confirmed the persistent message; the response is accepted.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Accepted {
    pub response_id: ResponseId,
    pub form_id: FormId,
    pub revision: Revision,
    pub status: AcceptedStatus,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AcceptedStatus {
    Accepted,
}

/// The answer to a batch: counts, and one result per item in the order of the request.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchAnswer {
    pub accepted: usize,
    pub rejected: usize,
    pub failed: usize,
    pub results: Vec<BatchResult>,
    /// Present (with status 503) when the broker did not confirm some item.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

/// One item's outcome: `accepted`, `rejected` (structurally wrong, with the error naming the
/// field as `[index].field`) or `failed` (not confirmed by the broker: send it again).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum BatchResult {
    Accepted(Accepted),
    Rejected(Rejected),
    Failed(Failed),
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Rejected {
    pub index: usize,
    pub status: RejectedStatus,
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RejectedStatus {
    Rejected,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Failed {
    pub response_id: ResponseId,
    pub form_id: FormId,
    pub status: FailedStatus,
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FailedStatus {
    Failed,
}

pub use crate::error::{ErrorBody, ErrorDetail};

/// A form as stored: its definition with its id and version.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StoredForm {
    pub form_id: FormId,
    /// Bumped by every change; each stored response records the version it was checked against.
    pub version: i32,
    pub title: String,
    pub questions: Vec<Question>,
    pub rules: Vec<Rule>,
    pub metadata: Vec<String>,
    pub sheet: Option<SheetTarget>,
}

impl StoredForm {
    pub fn new(form: &Form, version: i32) -> Self {
        // Every field by name: a field added to the definition must be added here too.
        let FormDefinition {
            title,
            questions,
            rules,
            metadata,
            sheet,
        } = form.definition.clone();
        Self {
            form_id: form.id.clone(),
            version,
            title,
            questions,
            rules,
            metadata,
            sheet,
        }
    }
}

/// `POST /google-sheet`: the seed system's export request.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GoogleSheetExport {
    /// The form id (the seed called forms tables).
    pub table_name: String,
}

/// `202`: every stored response of the form is marked for (re)writing to its sheet.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExportQueued {
    pub form_id: FormId,
    /// How many responses were queued.
    pub responses: u64,
    pub status: QueuedStatus,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum QueuedStatus {
    Queued,
}

/// A form's sheet, as sheets-sync last reported it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SheetView {
    pub form_id: FormId,
    /// The form's `sheet.spreadsheet_id`; `null` when it names none (sheets-sync then uses
    /// `SHEETS_DEFAULT_SPREADSHEET_ID`).
    pub spreadsheet_id: Option<String>,
    pub tab: String,
    /// `writing`: no failure reported; `failing`: see `failure`.
    pub status: SheetStatus,
    pub failure: Option<SheetFailureView>,
    /// Responses waiting to be written to the sheet.
    pub rows_waiting: i64,
    /// Responses whose row the sheet refused (see each response's `sheet_parked`).
    pub rows_parked: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SheetStatus {
    Writing,
    Failing,
}

/// Why a form's sheet is not being written.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SheetFailureView {
    pub spreadsheet_id: String,
    pub tab: String,
    /// The last failure, as the Sheets API or sheets-sync said it.
    pub reason: String,
    /// About this form's sheet (not shared, gone, full, over quota, none configured): fix
    /// the form or the spreadsheet. `false`: Google is out of reach from sheets-sync.
    pub about_this_sheet: bool,
    pub since: DateTime<Utc>,
}

/// A page of a collector's flag history.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FlagHistory {
    pub user_id: UserId,
    /// Oldest first.
    pub events: Vec<FlagHistoryEvent>,
    /// Ask again with `since=` this to get what comes after (also when `events` is empty).
    pub next: String,
}

/// One `flagged` or `cleared` event, as `N.flags` carried it, with its place in the history.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FlagHistoryEvent {
    /// The cursor just after this event.
    pub id: String,
    #[serde(flatten)]
    pub event: FlagEvent,
}

/// A stored response, and where it is in its sheet.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ResponseView {
    #[serde(flatten)]
    pub stored: StoredResponse,
    /// Where sheets-sync wrote it; `null` until it has.
    pub sheet: Option<SheetLocation>,
    /// Set when the sheet refused this response's row (it is not written, and waits for a
    /// newer revision or an export); `null` otherwise.
    pub sheet_parked: Option<SheetParked>,
}

/// A row the Sheets API refused for its content, and why.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SheetParked {
    pub spreadsheet_id: String,
    pub tab: String,
    /// The revision whose row was refused.
    pub revision: i64,
    /// The API's answer.
    pub reason: String,
    pub parked_at: DateTime<Utc>,
}

impl From<ParkedRow> for SheetParked {
    fn from(parked: ParkedRow) -> Self {
        Self {
            spreadsheet_id: parked.spreadsheet_id,
            tab: parked.tab,
            revision: parked.revision,
            reason: parked.reason,
            parked_at: parked.parked_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SheetLocation {
    pub spreadsheet_id: String,
    pub tab: String,
    /// 1-based; row 1 is the header.
    pub row: i32,
}

impl From<SheetPosition> for SheetLocation {
    fn from(position: SheetPosition) -> Self {
        Self {
            spreadsheet_id: position.spreadsheet_id,
            tab: position.tab,
            row: position.row,
        }
    }
}

/// A collector's responses that are flagged now (latest revision), oldest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CollectorFlags {
    pub user_id: UserId,
    pub responses: Vec<FlaggedResponse>,
    /// More are flagged than this page lists: ask again with `after=next`.
    pub truncated: bool,
    /// The cursor of the next page (`?after=`); absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FlaggedResponse {
    pub response_id: ResponseId,
    pub form_id: FormId,
    pub revision: Revision,
    /// The flags of severity `error`.
    pub flags: Vec<FlagSummary>,
    pub answers: Map<String, Value>,
    pub stored_at: DateTime<Utc>,
}

/// `POST /collect`: the seed system's flat payload, always for the form `household-finance`.
/// The keys below are the seed's own; every other key is an answer, found by question id or
/// question text (compared without regard to case or extra spaces).
pub struct SeedPayload;

impl utoipa::PartialSchema for SeedPayload {
    fn schema() -> RefOr<Schema> {
        let text = || ObjectBuilder::new().schema_type(Type::String);
        let text_or_integer = |description: &str| {
            ObjectBuilder::new()
                .schema_type(SchemaType::from_iter([Type::String, Type::Integer]))
                .description(Some(description))
        };
        let any = |description: &str| schema::Object::builder().description(Some(description));
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "The seed system's flat payload. Every key but the seed's own is an answer, \
                 by question id or question text; a key that matches no question is kept \
                 under its own name.",
            ))
            .property(
                "response_id",
                text_or_integer("Required; a string or a whole number."),
            )
            .required("response_id")
            .property(
                "user_id",
                text_or_integer("Required; a string or a whole number."),
            )
            .required("user_id")
            .property("username", text())
            .property(
                "last_modified_time",
                any(
                    "The revision: RFC 3339 / ISO 8601, or epoch seconds or milliseconds \
                     (a number or a numeric string). Missing or null: revision 0.",
                ),
            )
            .property(
                "submitted_time",
                any("Kept in metadata; also submitted_at when it parses as a time."),
            )
            .property("synced_time", any("Kept in metadata."))
            .property("location", any("Kept in metadata."))
            .property("response_family_id", any("Kept in metadata."))
            .additional_properties(Some(AdditionalProperties::FreeForm(true)))
            .into()
    }
}

impl ToSchema for SeedPayload {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("SeedPayload")
    }
}
