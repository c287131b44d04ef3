//! Google Sheets through the real `google-sheets4` and `yup-oauth2` clients: a service account,
//! `Scope::Spreadsheet` on every call (so one token serves reads and writes), a client-side
//! request budget, and errors sorted into what to do about them.

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use collect_shared::forms::same_tab;
use google_sheets4::FieldMask;
use google_sheets4::api::Scope;
use google_sheets4::api::{
    AddSheetRequest, AppendDimensionRequest, BatchUpdateSpreadsheetRequest,
    BatchUpdateSpreadsheetResponse, BatchUpdateValuesRequest, CellData, DimensionRange,
    ExtendedValue, GridCoordinate, GridProperties, InsertDimensionRequest, Request, RowData,
    SheetProperties, UpdateCellsRequest, ValueRange,
};
use google_sheets4::common::{Delegate, Response, Retry};
use google_sheets4::{Error, Sheets};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::Value;

type Hub = Sheets<HttpsConnector<HttpConnector>>;

/// A tab of a spreadsheet.
#[derive(Debug, Clone)]
pub struct TabInfo {
    pub title: String,
    pub sheet_id: i32,
    pub column_count: i32,
    pub row_count: i32,
}

impl TabInfo {
    /// The tab named `title` among `tabs`. Google's tab names are unique whatever their case
    /// (`west` cannot be added beside `West`), so a person who renames `west` to `West` has not
    /// made a new tab: an exact match first, then one that differs only in case. Ranges then
    /// name the tab as the spreadsheet has it (`TabState::range`).
    pub fn find<'a>(tabs: &'a [TabInfo], title: &str) -> Option<&'a TabInfo> {
        tabs.iter()
            .find(|tab| tab.title == title)
            .or_else(|| tabs.iter().find(|tab| same_tab(&tab.title, title)))
    }
}

/// A tab to add, with its header.
pub struct NewTab<'a> {
    pub title: &'a str,
    /// Chosen by the caller: `updateCells` in the same request names the tab by it.
    pub sheet_id: i32,
    pub header: &'a [String],
}

/// Why a call failed, and what that means for the rows.
#[derive(Debug, Clone, Default)]
pub struct ApiFailure {
    pub reason: String,
    /// A 400 (or 413) that may be about some row of the request rather than the tab or the
    /// spreadsheet: splitting the batch finds the row; a row refused alone is parked.
    pub refuses_content: bool,
    /// From `Retry-After`, when the server said.
    pub retry_after: Option<Duration>,
    /// About this form's sheet, not about reaching Google: Google answered with a 4xx (the
    /// spreadsheet not shared or gone, full, over quota, the data), or the form names no
    /// spreadsheet; other forms' sheets may be fine. `false` for no answer, a timeout, a 5xx,
    /// no token or no credentials: Google is not usable from this instance (`/readyz`).
    pub about_this_sheet: bool,
    /// The request may have been applied (a transport error or a 5xx): an append must be
    /// reconciled before it is tried again.
    pub outcome_unknown: bool,
}

/// Spaces requests out to stay within a per-minute budget (Google: 60 a minute per user for
/// writes, the same for reads): evenly, one every `60 s / requests`, no bursts.
struct Budget(governor::DefaultDirectRateLimiter);

impl Budget {
    fn per_minute(requests: u32) -> Self {
        let requests = NonZeroU32::new(requests).unwrap_or(NonZeroU32::MIN);
        let quota = governor::Quota::per_minute(requests).allow_burst(NonZeroU32::MIN);
        Self(governor::RateLimiter::direct(quota))
    }

    async fn acquire(&self) {
        self.0.until_ready().await;
    }
}

/// Keeps the `Retry-After` of a failed response (the client does not surface headers); shared
/// with the caller, which reads it even when the call was cut off.
#[derive(Default)]
struct RetryAfter(Arc<std::sync::Mutex<Option<Duration>>>);

impl RetryAfter {
    fn seen(&self) -> Arc<std::sync::Mutex<Option<Duration>>> {
        self.0.clone()
    }
}

impl Delegate for RetryAfter {
    fn http_failure(&mut self, response: &Response, _: Option<&Value>) -> Retry {
        let seen = response
            .headers()
            .get("retry-after")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        if let Ok(mut slot) = self.0.lock() {
            *slot = seen;
        }
        Retry::Abort
    }
}

/// When the writer last got anywhere: an answer (or a timeout) from the API, or a pass over
/// the outbox. `/readyz` fails when it is too old (a hung call or database), and
/// `collect_sheets_writer_last_progress_timestamp_seconds` exports it for the alerts.
pub struct Heartbeat(std::sync::Mutex<Instant>);

impl Default for Heartbeat {
    fn default() -> Self {
        Self(std::sync::Mutex::new(Instant::now()))
    }
}

impl Heartbeat {
    pub fn touch(&self) {
        if let Ok(mut last) = self.0.lock() {
            *last = Instant::now();
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        metrics::gauge!("collect_sheets_writer_last_progress_timestamp_seconds").set(now);
    }

    /// How long since the last progress (`None` if the lock was poisoned: a writer panicked).
    pub fn age(&self) -> Option<Duration> {
        self.0.lock().ok().map(|last| last.elapsed())
    }
}

/// google-sheets4's request futures are large (about 60 KB); each call is boxed so that the
/// futures of its callers stay small. Every call, its token fetch included, has a deadline.
#[derive(Clone)]
pub struct SheetsApi {
    hub: Arc<Hub>,
    writes: Arc<Budget>,
    reads: Arc<Budget>,
    timeout: Duration,
    heartbeat: Arc<Heartbeat>,
}

/// Sends one call of `$builder` (a google-sheets4 call builder) with the Spreadsheets scope,
/// within [`SheetsApi::within`]'s deadline, reading its `Retry-After`.
macro_rules! send {
    ($api:expr, $name:literal, $builder:expr) => {{
        let mut retry_after = RetryAfter::default();
        let seen = retry_after.seen();
        let call = Box::pin(
            $builder
                .add_scope(Scope::Spreadsheet)
                .delegate(&mut retry_after)
                .doit(),
        );
        $api.within($name, call, &seen).await
    }};
}

impl SheetsApi {
    /// A client for the service account in `credentials`, talking to `api_url` (Google's
    /// `https://sheets.googleapis.com/`, or the emulator).
    pub async fn connect(
        credentials: &Path,
        api_url: &str,
        requests_per_minute: u32,
        timeout: Duration,
        heartbeat: Arc<Heartbeat>,
    ) -> anyhow::Result<Self> {
        let key = yup_oauth2::read_service_account_key(credentials)
            .await
            .with_context(|| {
                format!(
                    "cannot read the service-account key {} (GOOGLE_APPLICATION_CREDENTIALS)",
                    credentials.display()
                )
            })?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .context("cannot load the system's root certificates")?
            .https_or_http()
            .enable_http1()
            .build();
        let executor = hyper_util::rt::TokioExecutor::new();
        let auth_client =
            hyper_util::client::legacy::Client::builder(executor.clone()).build(connector.clone());
        let auth = yup_oauth2::ServiceAccountAuthenticator::with_client(
            key,
            yup_oauth2::client::CustomHyperClientBuilder::from(auth_client),
        )
        .build()
        .await
        .context("cannot set up the service-account authenticator")?;
        let client = hyper_util::client::legacy::Client::builder(executor).build(connector);
        let mut hub = Sheets::new(client, auth);
        let root = if api_url.ends_with('/') {
            api_url.to_owned()
        } else {
            format!("{api_url}/")
        };
        hub.base_url(root.clone());
        hub.root_url(root);
        Ok(Self {
            hub: Arc::new(hub),
            writes: Arc::new(Budget::per_minute(requests_per_minute)),
            reads: Arc::new(Budget::per_minute(requests_per_minute)),
            timeout,
            heartbeat,
        })
    }

    /// Runs a call within the deadline, then counts it and sorts its error. A call that times
    /// out may have been applied: its outcome is unknown.
    async fn within<T>(
        &self,
        method: &'static str,
        call: impl std::future::Future<Output = Result<(Response, T), Error>>,
        retry_after: &std::sync::Mutex<Option<Duration>>,
    ) -> Result<(Response, T), ApiFailure> {
        let result = tokio::time::timeout(self.timeout, call).await;
        self.heartbeat.touch();
        let retry_after = retry_after.lock().ok().and_then(|r| *r);
        match result {
            Ok(result) => settle(method, result, retry_after),
            Err(_) => {
                count_call(method, "timeout");
                Err(ApiFailure {
                    reason: format!(
                        "{method}: {TIMED_OUT} {} ms (SHEETS_REQUEST_TIMEOUT_MS)",
                        self.timeout.as_millis()
                    ),
                    outcome_unknown: true,
                    ..ApiFailure::default()
                })
            }
        }
    }

    /// A spreadsheet's tabs. Also sets `collect_sheets_spreadsheet_cells` (the cells of its
    /// grids, against Google's 10 million a spreadsheet).
    pub async fn tabs(&self, spreadsheet: &str) -> Result<Vec<TabInfo>, ApiFailure> {
        let mut attempt = 1;
        loop {
            match self.tabs_once(spreadsheet).await {
                Err(failure) if attempt < READ_ATTEMPTS && read_again(&failure) => attempt += 1,
                other => return other,
            }
        }
    }

    async fn tabs_once(&self, spreadsheet: &str) -> Result<Vec<TabInfo>, ApiFailure> {
        self.reads.acquire().await;
        let (_, found) = send!(
            self,
            "spreadsheets.get",
            self.hub.spreadsheets().get(spreadsheet)
        )?;
        let tabs: Vec<TabInfo> = found
            .sheets
            .unwrap_or_default()
            .into_iter()
            .filter_map(|sheet| {
                let properties = sheet.properties?;
                let grid = properties.grid_properties.unwrap_or_default();
                Some(TabInfo {
                    title: properties.title?,
                    sheet_id: properties.sheet_id.unwrap_or_default(),
                    column_count: grid.column_count.unwrap_or(26),
                    row_count: grid.row_count.unwrap_or(1000),
                })
            })
            .collect();
        let cells: f64 = tabs
            .iter()
            .map(|tab| f64::from(tab.row_count.max(0)) * f64::from(tab.column_count.max(0)))
            .sum();
        metrics::gauge!("collect_sheets_spreadsheet_cells", "spreadsheet_id" => spreadsheet.to_owned())
            .set(cells);
        Ok(tabs)
    }

    /// Adds tabs, each with its header in row 1, in one write: for each an `addSheet` with the
    /// id the caller chose (not one of the spreadsheet's), then `updateCells` into it, all in
    /// one `spreadsheets.batchUpdate` (Google applies its requests in order, all or none). A
    /// tab is as wide as its header and `rows` high (not Google's 1,000 × 26: the cells of
    /// every tab count against the spreadsheet's 10 million). Returns them, in order.
    pub async fn add_tabs(
        &self,
        spreadsheet: &str,
        tabs: &[NewTab<'_>],
        rows: i32,
    ) -> Result<Vec<TabInfo>, ApiFailure> {
        let rows = rows.max(2);
        let mut requests = Vec::with_capacity(2 * tabs.len());
        for tab in tabs {
            let columns = (tab.header.len() as i32).max(1);
            let properties = SheetProperties {
                sheet_id: Some(tab.sheet_id),
                title: Some(tab.title.to_owned()),
                grid_properties: Some(GridProperties {
                    column_count: Some(columns),
                    row_count: Some(rows),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let cells = tab
                .header
                .iter()
                .map(|name| CellData {
                    user_entered_value: Some(ExtendedValue {
                        string_value: Some(name.clone()),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect();
            requests.push(Request {
                add_sheet: Some(AddSheetRequest {
                    properties: Some(properties),
                }),
                ..Default::default()
            });
            requests.push(Request {
                update_cells: Some(UpdateCellsRequest {
                    fields: Some(FieldMask::new(&["userEnteredValue"])),
                    rows: Some(vec![RowData {
                        values: Some(cells),
                    }]),
                    start: Some(GridCoordinate {
                        sheet_id: Some(tab.sheet_id),
                        row_index: Some(0),
                        column_index: Some(0),
                    }),
                    range: None,
                }),
                ..Default::default()
            });
        }
        let reply = self.sheet_request(spreadsheet, requests).await?;
        let mut added = reply
            .replies
            .unwrap_or_default()
            .into_iter()
            .filter_map(|reply| reply.add_sheet?.properties);
        Ok(tabs
            .iter()
            .map(|tab| {
                let properties = added.next().unwrap_or_default();
                let grid = properties.grid_properties.unwrap_or_default();
                TabInfo {
                    title: tab.title.to_owned(),
                    sheet_id: properties.sheet_id.unwrap_or(tab.sheet_id),
                    column_count: grid
                        .column_count
                        .unwrap_or((tab.header.len() as i32).max(1)),
                    row_count: grid.row_count.unwrap_or(rows),
                }
            })
            .collect())
    }

    /// Adds `count` empty columns at the right of a tab (`appendDimension`): values past the
    /// grid are refused. Only ever grows the grid, however stale what the caller knows of it.
    pub async fn append_columns(
        &self,
        spreadsheet: &str,
        sheet_id: i32,
        count: i32,
    ) -> Result<(), ApiFailure> {
        let requests = vec![Request {
            append_dimension: Some(AppendDimensionRequest {
                dimension: Some("COLUMNS".into()),
                length: Some(count),
                sheet_id: Some(sheet_id),
            }),
            ..Default::default()
        }];
        self.sheet_request(spreadsheet, requests).await.map(|_| ())
    }

    /// Inserts `count` empty rows before row index `start` (0 is row 1) of a tab
    /// (`insertDimension`).
    pub async fn insert_rows(
        &self,
        spreadsheet: &str,
        sheet_id: i32,
        start: i32,
        count: i32,
    ) -> Result<(), ApiFailure> {
        let requests = vec![Request {
            insert_dimension: Some(InsertDimensionRequest {
                inherit_from_before: Some(false),
                range: Some(DimensionRange {
                    dimension: Some("ROWS".into()),
                    sheet_id: Some(sheet_id),
                    start_index: Some(start),
                    end_index: Some(start + count),
                }),
            }),
            ..Default::default()
        }];
        self.sheet_request(spreadsheet, requests).await.map(|_| ())
    }

    /// `Request` is a large struct: it travels in a `Vec`, on the heap, not in the future.
    async fn sheet_request(
        &self,
        spreadsheet: &str,
        requests: Vec<Request>,
    ) -> Result<BatchUpdateSpreadsheetResponse, ApiFailure> {
        self.writes.acquire().await;
        let request = BatchUpdateSpreadsheetRequest {
            requests: Some(requests),
            ..Default::default()
        };
        send!(
            self,
            "spreadsheets.batchUpdate",
            self.hub.spreadsheets().batch_update(request, spreadsheet)
        )
        .map(|(_, reply)| reply)
    }

    /// Cells of a range, unformatted (numbers stay numbers).
    pub async fn read(
        &self,
        spreadsheet: &str,
        range: &str,
    ) -> Result<Vec<Vec<Value>>, ApiFailure> {
        with_read_retries(|| self.read_once(spreadsheet, range)).await
    }

    async fn read_once(
        &self,
        spreadsheet: &str,
        range: &str,
    ) -> Result<Vec<Vec<Value>>, ApiFailure> {
        self.reads.acquire().await;
        let (_, values) = send!(
            self,
            "values.get",
            self.hub
                .spreadsheets()
                .values_get(spreadsheet, &encode_range(range))
                .value_render_option("UNFORMATTED_VALUE")
        )?;
        Ok(values.values.unwrap_or_default())
    }

    /// Cells of several ranges in one request (`values.batchGet`), unformatted, in the order
    /// asked.
    pub async fn read_ranges(
        &self,
        spreadsheet: &str,
        ranges: &[String],
    ) -> Result<Vec<Vec<Vec<Value>>>, ApiFailure> {
        with_read_retries(|| self.read_ranges_once(spreadsheet, ranges)).await
    }

    async fn read_ranges_once(
        &self,
        spreadsheet: &str,
        ranges: &[String],
    ) -> Result<Vec<Vec<Vec<Value>>>, ApiFailure> {
        self.reads.acquire().await;
        let mut call = self
            .hub
            .spreadsheets()
            .values_batch_get(spreadsheet)
            .value_render_option("UNFORMATTED_VALUE")
            .major_dimension("ROWS");
        for range in ranges {
            call = call.add_ranges(range);
        }
        let (_, values) = send!(self, "values.batchGet", call)?;
        let mut found: Vec<Vec<Vec<Value>>> = values
            .value_ranges
            .unwrap_or_default()
            .into_iter()
            .map(|range| range.values.unwrap_or_default())
            .collect();
        found.resize_with(ranges.len(), Vec::new);
        Ok(found)
    }

    /// Writes ranges (`RAW`: a value like `=IMPORTXML(...)` stays text) in one request. A
    /// `null` cell is skipped (keeps what the sheet has), as the API documents.
    pub async fn write_ranges(
        &self,
        spreadsheet: &str,
        data: Vec<(String, Vec<Vec<Value>>)>,
    ) -> Result<(), ApiFailure> {
        self.writes.acquire().await;
        let request = BatchUpdateValuesRequest {
            value_input_option: Some("RAW".into()),
            data: Some(
                data.into_iter()
                    .map(|(range, values)| ValueRange {
                        range: Some(range),
                        values: Some(values),
                        major_dimension: Some("ROWS".into()),
                    })
                    .collect(),
            ),
            ..Default::default()
        };
        send!(
            self,
            "values.batchUpdate",
            self.hub
                .spreadsheets()
                .values_batch_update(request, spreadsheet)
        )
        .map(|_| ())
    }

    /// Appends rows after the table of `range` (`RAW`, `INSERT_ROWS`); returns the first row
    /// number written.
    pub async fn append(
        &self,
        spreadsheet: &str,
        range: &str,
        rows: Vec<Vec<Value>>,
    ) -> Result<u32, ApiFailure> {
        self.writes.acquire().await;
        let request = ValueRange {
            range: None,
            values: Some(rows),
            major_dimension: Some("ROWS".into()),
        };
        let (_, appended) = send!(
            self,
            "values.append",
            self.hub
                .spreadsheets()
                .values_append(request, spreadsheet, &encode_range(range))
                .value_input_option("RAW")
                .insert_data_option("INSERT_ROWS")
        )?;
        let updated = appended
            .updates
            .and_then(|updates| updates.updated_range)
            .unwrap_or_default();
        first_row(&updated).ok_or_else(|| ApiFailure {
            reason: format!("values.append answered no usable updatedRange ({updated:?})"),
            outcome_unknown: true,
            ..ApiFailure::default()
        })
    }
}

/// How often a read is tried: reads change nothing, so one that failed for a moment (a 5xx, a
/// dropped connection) is tried again at once (within the read budget) rather than backing
/// the tab off; each batch makes one, and under a flaky API the backoff would otherwise
/// compound.
const READ_ATTEMPTS: u32 = 3;

/// How a call past its deadline is reported.
const TIMED_OUT: &str = "no answer within";

/// Whether a failed read is tried again at once: not a refusal (Google answered), nor a
/// timeout (it already waited its deadline).
fn read_again(failure: &ApiFailure) -> bool {
    failure.outcome_unknown && !failure.reason.contains(TIMED_OUT)
}

/// Runs a read up to `READ_ATTEMPTS` times while it fails in a way that may pass at once.
async fn with_read_retries<T, F, Fut>(mut read: F) -> Result<T, ApiFailure>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiFailure>>,
{
    let mut attempt = 1;
    loop {
        match read().await {
            Err(failure) if attempt < READ_ATTEMPTS && read_again(&failure) => attempt += 1,
            other => return other,
        }
    }
}

/// Counts the call and sorts its error.
fn settle<T>(
    method: &'static str,
    result: Result<(Response, T), Error>,
    retry_after: Option<Duration>,
) -> Result<(Response, T), ApiFailure> {
    let error = match result {
        Ok(ok) => {
            count_call(method, "200");
            return Ok(ok);
        }
        Err(error) => error,
    };
    let status = match &error {
        Error::BadRequest(body) => body["error"]["code"].as_u64().map(|code| code as u16),
        Error::Failure(response) => Some(response.status().as_u16()),
        _ => None,
    };
    let label = status.map_or_else(|| "transport".to_owned(), |code| code.to_string());
    count_call(method, label);
    let outcome_unknown = match status {
        // Refused before it was applied.
        Some(400..=499) => false,
        // A 5xx, a transport error, an unreadable answer: it may have been applied.
        _ => !matches!(error, Error::MissingToken(_)),
    };
    let reason = match &error {
        Error::BadRequest(body) => format!(
            "{method}: {} {}",
            body["error"]["code"],
            body["error"]["message"].as_str().unwrap_or_default()
        ),
        Error::MissingToken(cause) => format!("{method}: no access token: {cause}"),
        other => format!("{method}: {other}"),
    };
    let message = match &error {
        Error::BadRequest(body) => body["error"]["message"].as_str().unwrap_or_default(),
        _ => "",
    };
    Err(ApiFailure {
        reason,
        refuses_content: refuses_content(status, message),
        retry_after,
        outcome_unknown,
        about_this_sheet: matches!(status, Some(400..=499))
            && !matches!(error, Error::MissingToken(_)),
    })
}

/// Whether a refusal may be about a row of the request (a cell Google will not take, a body
/// too large): a 400 or 413, unless its message names something about the tab or the
/// spreadsheet (the spreadsheet's cell limit, the grid, the range), which splitting the batch
/// cannot cure and which must never park rows.
fn refuses_content(status: Option<u16>, message: &str) -> bool {
    const ABOUT_THE_TAB: [&str; 6] = [
        "above the limit of",
        "exceeds grid limits",
        "Unable to parse range",
        "No grid with id",
        "already exists",
        "Requested entity was not found",
    ];
    matches!(status, Some(400 | 413)) && !ABOUT_THE_TAB.iter().any(|m| message.contains(m))
}

/// Counts a call to the API by its method and outcome (`collect_sheets_api_calls_total`).
fn count_call(method: &'static str, status: impl Into<metrics::SharedString>) {
    metrics::counter!("collect_sheets_api_calls_total", "method" => method, "status" => status.into())
        .increment(1);
}

/// `'Tab name'!A1` for a tab, with `'` doubled as A1 notation wants.
pub fn a1(tab: &str, cells: &str) -> String {
    format!("'{}'!{cells}", tab.replace('\'', "''"))
}

/// google-sheets4 puts the range into the URL path as it is: encode everything but the
/// unreserved characters (RFC 3986), so a tab named `Q&A #1 / 2024?` survives.
fn encode_range(range: &str) -> String {
    const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(range, UNRESERVED).to_string()
}

/// The first row of an A1 range such as `'Tab'!A11:T60`.
fn first_row(range: &str) -> Option<u32> {
    let cells = range.rsplit_once('!').map_or(range, |(_, cells)| cells);
    let start = cells.split(':').next()?;
    start
        .trim_start_matches(|c: char| c.is_ascii_alphabetic() || c == '$')
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_refusals_about_content_split_a_batch() {
        let cell =
            "Your input contains more than the maximum of 50000 characters in a single cell.";
        assert!(refuses_content(Some(400), cell));
        assert!(refuses_content(
            Some(400),
            "Request payload size exceeds the limit: 10485760 bytes."
        ));
        assert!(!refuses_content(
            Some(400),
            "This action would increase the number of cells in the workbook above the limit of 10000000 cells."
        ));
        assert!(!refuses_content(
            Some(403),
            "The caller does not have permission"
        ));
        assert!(!refuses_content(Some(429), "Quota exceeded"));
        assert!(!refuses_content(None, ""));
    }

    #[test]
    fn a_tab_is_found_by_its_exact_name_then_whatever_its_case() {
        let tab = |title: &str, sheet_id| TabInfo {
            title: title.into(),
            sheet_id,
            column_count: 26,
            row_count: 1000,
        };
        let tabs = [tab("West", 1), tab("west", 2), tab("ÉTÉ", 3)];
        let found = |title| TabInfo::find(&tabs, title).map(|tab| tab.sheet_id);
        assert_eq!(found("west"), Some(2));
        assert_eq!(found("West"), Some(1));
        assert_eq!(found("WEST"), Some(1), "the first in another case");
        assert_eq!(found("été"), Some(3));
        assert_eq!(found("east"), None);
    }

    #[test]
    fn ranges_survive_the_url() {
        assert_eq!(encode_range("'Q&A #1'!A1"), "%27Q%26A%20%231%27%21A1");
        assert_eq!(encode_range("a-b.c_d~e/f?"), "a-b.c_d~e%2Ff%3F");
        assert_eq!(encode_range("Été"), "%C3%89t%C3%A9");
        assert_eq!(a1("It's", "A:A"), "'It''s'!A:A");
    }

    /// The budget spaces requests out evenly: no burst, even after an idle spell.
    #[tokio::test]
    async fn the_budget_spaces_requests_evenly() {
        let budget = Budget::per_minute(6000); // one every 10 ms
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        for _ in 0..4 {
            budget.acquire().await;
        }
        // The first goes at once, each next one 10 ms after the one before.
        assert!(
            started.elapsed() >= Duration::from_millis(30),
            "{:?}",
            started.elapsed()
        );
        // A zero budget is read as one a minute, never as no limit.
        let zero = Budget::per_minute(0);
        zero.acquire().await;
        let next = tokio::time::timeout(Duration::from_millis(50), zero.acquire()).await;
        assert!(
            next.is_err(),
            "a second request within the minute went at once"
        );
    }

    #[test]
    fn reads_the_first_row_of_an_updated_range() {
        assert_eq!(first_row("Sheet1!A11:T60"), Some(11));
        assert_eq!(first_row("'My tab'!A2:C2"), Some(2));
        assert_eq!(first_row("'a!b'!B7"), Some(7));
        assert_eq!(first_row(""), None);
    }
}
