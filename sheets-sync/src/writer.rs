//! Writes waiting responses to their sheets: one batch per tab at a time, within the budget,
//! each response in exactly one row.
//!
//! Exactly once: `values.append` is not idempotent. Row numbers are recorded in `sheet_rows`
//! in the same transaction that takes the responses off the outbox. When an append's outcome is
//! unknown (a transport error or a 5xx after sending it), or when this writer takes a tab over
//! (at start, or from an instance that died), the tab is *unclean*: before appending again the
//! writer reads the tab's `response_id` column and records every row it finds, so a response
//! already in the sheet is updated in place, never appended twice.
//!
//! A request is capped by rows (`batch_rows`) and by bytes (`batch_max_bytes`). A request the
//! API refuses for its content (a 400 not about the tab) is split in halves until the refused
//! rows are alone; those are *parked* (taken off the outbox with the reason) and the others
//! written, so one bad row never blocks its tab.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use collect_shared::forms::Form;
use collect_shared::messages::FormId;
use collect_shared::store::{FormCache, ParkRow, PendingRow, Store};
use serde_json::Value;
use sqlx::Postgres;
use sqlx::pool::PoolConnection;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::google::{ApiFailure, Heartbeat, SheetsApi, a1};
use crate::sheet_row;

/// Where a form's rows go.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub spreadsheet_id: String,
    pub tab: String,
}

/// The longest a tab backs off, whatever `Retry-After` says (a larger one would overflow the
/// clock, and is likelier a broken proxy than Google's advice).
pub const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// What a request adds to its body besides the rows' JSON, counted generously.
const REQUEST_OVERHEAD_BYTES: usize = 1024;

struct TabState {
    header: Vec<String>,
    sheet_id: i32,
    column_count: i32,
    response_id_column: usize,
    /// Every row in the sheet is known to `sheet_rows`.
    clean: bool,
}

/// Why a tab is not being written, since when.
#[derive(Debug)]
pub struct Blocked {
    pub form_id: FormId,
    pub reason: String,
    pub since: Instant,
    failures: u32,
    retry_at: Instant,
    delays: backon::ExponentialBackoff,
}

/// Truncated exponential backoff with jitter, up to a minute (Google advises 32 to 64 s).
fn delays() -> backon::ExponentialBackoff {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(60))
        .with_jitter()
        .without_max_times()
        .build()
}

#[derive(Clone)]
pub struct WriterSettings {
    pub default_spreadsheet_id: Option<String>,
    pub batch_rows: usize,
    /// The most bytes of rows one request carries (at least one row is always sent).
    pub batch_max_bytes: usize,
    pub max_wait: Duration,
}

pub struct Writer {
    pub store: Store,
    pub forms: Arc<FormCache>,
    pub api: Option<SheetsApi>,
    pub settings: WriterSettings,
    pub shutdown: CancellationToken,
    /// Tabs whose writes are failing, for `/readyz` and the log.
    pub blocked: Arc<Mutex<HashMap<Target, Blocked>>>,
    /// Touched on every pass and every API answer, for `/readyz`.
    pub heartbeat: Arc<Heartbeat>,
    tabs: HashMap<Target, TabState>,
    /// One session holds the advisory locks of every tab this instance writes, so the
    /// connections do not grow with the tabs; losing it loses them all.
    lock_session: Option<PoolConnection<Postgres>>,
    held: HashSet<Target>,
    /// Forms whose last batch left rows for the next request (the byte cap): due at once.
    backlogged: HashSet<FormId>,
}

impl Writer {
    pub fn new(
        store: Store,
        forms: Arc<FormCache>,
        api: Option<SheetsApi>,
        settings: WriterSettings,
        heartbeat: Arc<Heartbeat>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            store,
            forms,
            api,
            settings,
            shutdown,
            blocked: Arc::new(Mutex::new(HashMap::new())),
            heartbeat,
            tabs: HashMap::new(),
            lock_session: None,
            held: HashSet::new(),
            backlogged: HashSet::new(),
        }
    }

    /// Writes due batches until shutdown. A batch is due when it has `batch_rows` rows or its
    /// oldest row has waited `max_wait`. After a full batch the next is written at once (a
    /// backlog drains at the pace of the API and the budget, not of the tick).
    pub async fn run(mut self) {
        let tick = (self.settings.max_wait / 4)
            .clamp(Duration::from_millis(20), Duration::from_millis(250));
        let mut more = false;
        loop {
            self.heartbeat.touch();
            if !more {
                tokio::select! {
                    _ = self.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(tick) => {}
                }
            } else if self.shutdown.is_cancelled() {
                return;
            }
            more = match self.write_due().await {
                Ok(more) => more,
                Err(error) => {
                    warn!(%error, "cannot read the sheet outbox; retrying");
                    false
                }
            };
        }
    }

    /// Writes a batch of each form that has one due; `true` when a full batch was written
    /// (more are likely waiting).
    async fn write_due(&mut self) -> Result<bool, sqlx::Error> {
        let pending = self.store.pending_forms().await?;
        let waiting: i64 = pending.iter().map(|form| form.waiting).sum();
        let oldest = pending
            .iter()
            .map(|form| form.oldest_age_seconds)
            .fold(0.0, f64::max);
        metrics::gauge!("collect_sheets_rows_waiting").set(waiting as f64);
        metrics::gauge!("collect_sheets_oldest_waiting_seconds").set(oldest);
        let parked = self.store.parked_count().await?;
        metrics::gauge!("collect_sheets_rows_parked").set(parked as f64);
        let mut more = false;
        for form in pending {
            if self.shutdown.is_cancelled() {
                return Ok(false);
            }
            let due = form.waiting >= self.settings.batch_rows as i64
                || form.oldest_age_seconds >= self.settings.max_wait.as_secs_f64()
                || self.backlogged.remove(&form.form_id);
            if due && self.write_form(&form.form_id).await? {
                more = true;
            }
        }
        Ok(more)
    }

    /// Writes one batch of the form's waiting rows; `true` when more are likely waiting (a
    /// full batch, or rows left for the next request by the byte cap).
    async fn write_form(&mut self, form_id: &FormId) -> Result<bool, sqlx::Error> {
        let compiled = match self.forms.get(form_id).await {
            Ok(Some(compiled)) => compiled,
            Ok(None) => {
                warn!(form = %form_id, "responses wait for a form that does not exist");
                return Ok(false);
            }
            Err(error) => {
                warn!(form = %form_id, %error, "cannot load the form; its rows wait");
                return Ok(false);
            }
        };
        let form = compiled.form.clone();
        let sheet = form
            .definition
            .sheet
            .clone()
            .unwrap_or(collect_shared::forms::SheetTarget {
                spreadsheet_id: None,
                tab: None,
            });
        let Some(spreadsheet_id) = sheet
            .spreadsheet_id
            .clone()
            .or_else(|| self.settings.default_spreadsheet_id.clone())
        else {
            let target = Target {
                spreadsheet_id: String::new(),
                tab: form.id.to_string(),
            };
            self.fail(
                form_id,
                &target,
                ApiFailure {
                    reason: format!(
                        "form {} names no spreadsheet and SHEETS_DEFAULT_SPREADSHEET_ID is not set",
                        form.id
                    ),
                    retry_after: Some(Duration::from_secs(30)),
                    ..ApiFailure::default()
                },
            );
            return Ok(false);
        };
        let target = Target {
            spreadsheet_id,
            tab: sheet.tab.clone().unwrap_or_else(|| form.id.to_string()),
        };
        if self.waiting_out(&target) {
            return Ok(false);
        }
        let Some(api) = self.api.clone() else {
            self.fail(
                form_id,
                &target,
                ApiFailure {
                    reason: "no Google credentials: set GOOGLE_APPLICATION_CREDENTIALS".into(),
                    retry_after: Some(Duration::from_secs(30)),
                    ..ApiFailure::default()
                },
            );
            return Ok(false);
        };
        if !self.hold_lock(&target).await? {
            return Ok(false); // another instance writes this tab
        }
        let rows = self
            .store
            .pending_rows(form_id, self.settings.batch_rows as i64)
            .await?;
        if rows.is_empty() {
            return Ok(false);
        }
        let full = rows.len() >= self.settings.batch_rows;
        // A response checked against a newer version than cached: its columns must be there.
        let mut form = form;
        if rows
            .iter()
            .any(|row| row.response.form_version > compiled.version)
            && let Ok(Some(fresh)) = self.forms.get_fresh(form_id).await
        {
            form = fresh.form.clone();
        }
        match self.write_batch(&api, &target, &form, rows).await {
            Ok(Written {
                rows: written,
                left,
            }) => {
                // Clears this tab, and any earlier target of the form (a full spreadsheet the
                // form has moved away from).
                if let Ok(mut blocked) = self.blocked.lock() {
                    let before = blocked.len();
                    blocked.retain(|_, b| &b.form_id != form_id);
                    if blocked.len() < before {
                        info!(spreadsheet = %target.spreadsheet_id, tab = %target.tab, "writing again");
                    }
                }
                metrics::histogram!("collect_sheets_batch_rows").record(written as f64);
                if left {
                    self.backlogged.insert(form_id.clone());
                }
                return Ok(full || left);
            }
            Err(BatchError::Database(error)) => {
                // An append may have landed without being recorded: reconcile before the next.
                self.tabs.remove(&target);
                return Err(error);
            }
            Err(BatchError::Api(failure)) => {
                if failure.outcome_unknown {
                    if let Some(tab) = self.tabs.get_mut(&target) {
                        tab.clean = false;
                    }
                } else {
                    // The header or the tab may be what is wrong: read them again next time.
                    self.tabs.remove(&target);
                }
                self.fail(form_id, &target, failure);
            }
        }
        Ok(false)
    }

    /// Takes, or confirms, this instance's lock on the tab.
    async fn hold_lock(&mut self, target: &Target) -> Result<bool, sqlx::Error> {
        if self.held.contains(target) {
            if let Some(session) = self.lock_session.as_mut()
                && Store::session_alive(session).await.is_ok()
            {
                return Ok(true);
            }
            // The session was lost, and every lock with it: start over.
            warn!("lost the database session holding the tab locks; taking them again");
            self.lose_locks();
        }
        let session = match self.lock_session.as_mut() {
            Some(session) => session,
            None => self.lock_session.insert(self.store.lock_session().await?),
        };
        match Store::try_lock_tab(session, &target.spreadsheet_id, &target.tab).await {
            Ok(true) => {
                info!(spreadsheet = %target.spreadsheet_id, tab = %target.tab, "writing this tab");
                self.held.insert(target.clone());
                // Whoever wrote it before may have died mid-append.
                self.tabs.remove(target);
                Ok(true)
            }
            Ok(false) => Ok(false),
            Err(error) => {
                self.lose_locks();
                Err(error)
            }
        }
    }

    /// Forgets the lock session and its locks; their tabs are reconciled when taken again.
    fn lose_locks(&mut self) {
        if let Some(mut session) = self.lock_session.take() {
            session.close_on_drop();
        }
        for target in self.held.drain() {
            self.tabs.remove(&target);
        }
    }

    fn waiting_out(&self, target: &Target) -> bool {
        self.blocked
            .lock()
            .ok()
            .and_then(|blocked| blocked.get(target).map(|b| b.retry_at > Instant::now()))
            .unwrap_or(false)
    }

    /// Backs the tab off: `Retry-After` when the server gave one, else the next of its
    /// exponential delays. Rows stay in the outbox meanwhile.
    fn fail(&self, form_id: &FormId, target: &Target, failure: ApiFailure) {
        let Ok(mut blocked) = self.blocked.lock() else {
            return;
        };
        let now = Instant::now();
        let entry = blocked.entry(target.clone()).or_insert(Blocked {
            form_id: form_id.clone(),
            reason: String::new(),
            since: now,
            failures: 0,
            retry_at: now,
            delays: delays(),
        });
        entry.failures += 1;
        entry.reason = failure.reason.clone();
        let next = entry.delays.next().unwrap_or(Duration::from_secs(60));
        let delay = backoff(failure.retry_after, next);
        entry.retry_at = now.checked_add(delay).unwrap_or(now + MAX_BACKOFF);
        warn!(
            spreadsheet = %target.spreadsheet_id,
            tab = %target.tab,
            reason = %failure.reason,
            failures = entry.failures,
            retry_in = ?delay,
            "cannot write to the sheet; its rows wait"
        );
    }

    async fn write_batch(
        &mut self,
        api: &SheetsApi,
        target: &Target,
        form: &Form,
        rows: Vec<PendingRow>,
    ) -> Result<Written, BatchError> {
        if !self.tabs.contains_key(target) {
            let state = prepare_tab(api, target, form).await?;
            self.tabs.insert(target.clone(), state);
        }
        let wanted = sheet_row::wanted_columns(form);
        let Some(tab) = self.tabs.get_mut(target) else {
            return Ok(Written {
                rows: 0,
                left: false,
            });
        };
        // A question added since: widen the header first.
        let header = sheet_row::merged_header(&tab.header, &wanted);
        if header != tab.header {
            widen(api, target, tab, header.len()).await?;
            api.write_ranges(
                &target.spreadsheet_id,
                vec![(a1(&target.tab, "A1"), vec![header_cells(&header)])],
            )
            .await?;
            tab.header = header;
        }
        if !tab.clean {
            reconcile(api, &self.store, &form.id, target, tab).await?;
            tab.clean = true;
        }
        let header = tab.header.clone();

        let ids: Vec<String> = rows
            .iter()
            .map(|row| row.response.response_id.to_string())
            .collect();
        let known: HashMap<String, (i32, i64)> = self
            .store
            .sheet_rows(&target.spreadsheet_id, &target.tab, &ids)
            .await?
            .into_iter()
            .map(|(id, row, revision)| (id, (row, revision)))
            .collect();
        let mut updates = Vec::new();
        let mut appends = Vec::new();
        let mut progress = Progress::default();
        let mut seen = HashSet::new();
        let (mut update_bytes, mut append_bytes) = (0, 0);
        let mut left = false;
        for pending in &rows {
            let response = &pending.response;
            let id = response.response_id.to_string();
            if !seen.insert(id.clone()) {
                continue;
            }
            let revision = response.revision.0 as i64;
            let cells = sheet_row::row(form, &header, response);
            let item = Item {
                id,
                revision,
                enqueued_at: pending.enqueued_at,
                bytes: json_len(&cells),
                cells,
                row: 0,
            };
            // Each request within the byte cap; what does not fit waits for the next batch.
            let fits = |used: usize, item: &Item| {
                used == 0
                    || used + item.bytes + REQUEST_OVERHEAD_BYTES <= self.settings.batch_max_bytes
            };
            match known.get(&item.id) {
                Some((_, written)) if *written == revision && !pending.force => {
                    progress.done.push((item.id, item.enqueued_at));
                }
                Some((row, _)) => {
                    let item = Item { row: *row, ..item };
                    // The range and its wrapper travel with each update.
                    let bytes = item.bytes + target.tab.len() + 64;
                    if fits(update_bytes, &item) {
                        update_bytes += bytes;
                        updates.push(item);
                    } else {
                        left = true;
                    }
                }
                None => {
                    if fits(append_bytes, &item) {
                        append_bytes += item.bytes + 1;
                        appends.push(item);
                    } else {
                        left = true;
                    }
                }
            }
        }

        // Updates, then appends; a request refused for its content is split until the refused
        // rows are alone. What was written is recorded even when a later request fails.
        let mut failure = None;
        if !updates.is_empty() {
            let mut groups = VecDeque::from([updates]);
            while let Some(group) = groups.pop_front() {
                let data = group
                    .iter()
                    .map(|item| {
                        (
                            a1(&target.tab, &format!("A{}", item.row)),
                            vec![item.cells.clone()],
                        )
                    })
                    .collect();
                match api.write_ranges(&target.spreadsheet_id, data).await {
                    Ok(()) => {
                        metrics::counter!("collect_sheets_rows_written_total", "kind" => "update")
                            .increment(group.len() as u64);
                        for item in group {
                            progress.wrote(item.row, item);
                        }
                    }
                    Err(refusal) => {
                        if let Err(other) = split(&mut groups, &mut progress, group, refusal) {
                            failure = Some(other);
                            break;
                        }
                    }
                }
            }
        }
        if failure.is_none() && !appends.is_empty() {
            let mut groups = VecDeque::from([appends]);
            while let Some(group) = groups.pop_front() {
                let values = group.iter().map(|item| item.cells.clone()).collect();
                match api
                    .append(&target.spreadsheet_id, &a1(&target.tab, "A1"), values)
                    .await
                {
                    Ok(first) => {
                        metrics::counter!("collect_sheets_rows_written_total", "kind" => "append")
                            .increment(group.len() as u64);
                        for (i, item) in group.into_iter().enumerate() {
                            progress.wrote(first as i32 + i as i32, item);
                        }
                    }
                    Err(refusal) => {
                        if let Err(other) = split(&mut groups, &mut progress, group, refusal) {
                            failure = Some(other);
                            break;
                        }
                    }
                }
            }
        }

        let count = progress.written.len();
        if !progress.written.is_empty() || !progress.done.is_empty() {
            self.store
                .record_written(
                    &form.id,
                    &target.spreadsheet_id,
                    &target.tab,
                    &progress.written,
                    &progress.done,
                )
                .await?;
        }
        if !progress.parked.is_empty() {
            let parked = self
                .store
                .park_rows(
                    &form.id,
                    &target.spreadsheet_id,
                    &target.tab,
                    &progress.parked,
                )
                .await?;
            metrics::counter!("collect_sheets_rows_parked_total").increment(parked);
            for row in &progress.parked {
                warn!(
                    spreadsheet = %target.spreadsheet_id,
                    tab = %target.tab,
                    response = %row.response_id,
                    revision = row.revision,
                    reason = %row.reason,
                    "the sheet refused this response's row; parked it (a newer revision or an export tries again)"
                );
            }
        }
        if let Some(failure) = failure {
            return Err(BatchError::Api(failure));
        }
        let exported = rows.iter().filter(|row| row.force).count();
        if exported > 0 {
            // An export's progress, batch by batch.
            info!(form = %form.id, spreadsheet = %target.spreadsheet_id, tab = %target.tab, rows = exported, "export: rewrote a batch");
        }
        Ok(Written { rows: count, left })
    }
}

/// A batch's outcome: rows written, and whether some were left for the next (byte cap).
struct Written {
    rows: usize,
    left: bool,
}

/// A row on its way to the sheet.
struct Item {
    id: String,
    revision: i64,
    enqueued_at: DateTime<Utc>,
    cells: Vec<Value>,
    bytes: usize,
    /// Its row, for an update.
    row: i32,
}

/// What a batch achieved so far, recorded even when a later request fails.
#[derive(Default)]
struct Progress {
    written: Vec<(String, i32, i64)>,
    done: Vec<(String, DateTime<Utc>)>,
    parked: Vec<ParkRow>,
}

impl Progress {
    fn wrote(&mut self, row: i32, item: Item) {
        self.done.push((item.id.clone(), item.enqueued_at));
        self.written.push((item.id, row, item.revision));
    }
}

/// After a refusal: a request refused for its content is split in halves (queued first, in
/// order), a row refused alone is parked; any other failure is returned.
fn split(
    groups: &mut VecDeque<Vec<Item>>,
    progress: &mut Progress,
    mut group: Vec<Item>,
    refusal: ApiFailure,
) -> Result<(), ApiFailure> {
    if !refusal.refuses_content {
        return Err(refusal);
    }
    if group.len() > 1 {
        let second = group.split_off(group.len() / 2);
        groups.push_front(second);
        groups.push_front(group);
        return Ok(());
    }
    for item in group {
        progress.parked.push(ParkRow {
            response_id: item.id,
            revision: item.revision,
            reason: refusal.reason.clone(),
            enqueued_at: item.enqueued_at,
        });
    }
    Ok(())
}

/// The delay before a tab is tried again: the server's `Retry-After` when it gave one, else
/// the next exponential delay, never more than [`MAX_BACKOFF`].
fn backoff(retry_after: Option<Duration>, next: Duration) -> Duration {
    retry_after.unwrap_or(next).min(MAX_BACKOFF)
}

/// The length of a row as JSON, as it travels in the request body.
fn json_len(cells: &[Value]) -> usize {
    serde_json::to_vec(cells).map_or(0, |bytes| bytes.len())
}

#[derive(Debug)]
enum BatchError {
    Api(ApiFailure),
    Database(sqlx::Error),
}

impl From<ApiFailure> for BatchError {
    fn from(failure: ApiFailure) -> Self {
        Self::Api(failure)
    }
}

impl From<sqlx::Error> for BatchError {
    fn from(error: sqlx::Error) -> Self {
        Self::Database(error)
    }
}

fn header_cells(header: &[String]) -> Vec<Value> {
    header
        .iter()
        .map(|name| Value::String(name.clone()))
        .collect()
}

/// Makes sure the tab exists and reads its header (row 1). An unknown tab starts unclean only
/// if it already had rows.
async fn prepare_tab(
    api: &SheetsApi,
    target: &Target,
    form: &Form,
) -> Result<TabState, BatchError> {
    let wanted = sheet_row::wanted_columns(form);
    let tabs = api.tabs(&target.spreadsheet_id).await?;
    let info = match tabs.into_iter().find(|tab| tab.title == target.tab) {
        Some(info) => info,
        None => {
            let info = api
                .add_tab(&target.spreadsheet_id, &target.tab, wanted.len() as i32)
                .await?;
            info!(spreadsheet = %target.spreadsheet_id, tab = %target.tab, "created the tab");
            info
        }
    };
    let first_row = api
        .read(&target.spreadsheet_id, &a1(&target.tab, "1:1"))
        .await?
        .into_iter()
        .next()
        .unwrap_or_default();
    let existing: Vec<String> = first_row
        .iter()
        .map(|cell| match cell {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        })
        .collect();
    let header = sheet_row::merged_header(&existing, &wanted);
    let mut state = TabState {
        header: existing.clone(),
        sheet_id: info.sheet_id,
        column_count: info.column_count,
        response_id_column: 0,
        clean: false,
    };
    if header != existing {
        widen(api, target, &mut state, header.len()).await?;
        api.write_ranges(
            &target.spreadsheet_id,
            vec![(a1(&target.tab, "A1"), vec![header_cells(&header)])],
        )
        .await?;
    }
    state.response_id_column = header
        .iter()
        .position(|name| name == "response_id")
        .unwrap_or(0);
    state.header = header;
    Ok(state)
}

/// Makes room for `columns` columns: Sheets refuses values past the grid.
async fn widen(
    api: &SheetsApi,
    target: &Target,
    tab: &mut TabState,
    columns: usize,
) -> Result<(), BatchError> {
    let columns = columns as i32;
    if columns > tab.column_count {
        api.set_column_count(&target.spreadsheet_id, tab.sheet_id, columns)
            .await?;
        tab.column_count = columns;
    }
    Ok(())
}

/// Reads the tab's `response_id` column and records every response found there, so it is
/// updated in place and never appended again. Its revision is recorded as unknown (-1), so the
/// next batch rewrites the row with the latest one.
async fn reconcile(
    api: &SheetsApi,
    store: &Store,
    form_id: &FormId,
    target: &Target,
    tab: &TabState,
) -> Result<(), BatchError> {
    let column = column_letters(tab.response_id_column);
    let cells = api
        .read(
            &target.spreadsheet_id,
            &a1(&target.tab, &format!("{column}:{column}")),
        )
        .await?;
    let found: Vec<String> = cells
        .iter()
        .skip(1)
        .filter_map(|row| match row.first() {
            Some(Value::String(id)) if !id.is_empty() => Some(id.clone()),
            Some(Value::Number(id)) => Some(id.to_string()),
            _ => None,
        })
        .collect();
    let known: HashSet<String> = store
        .sheet_rows(&target.spreadsheet_id, &target.tab, &found)
        .await?
        .into_iter()
        .map(|(id, _, _)| id)
        .collect();
    let mut recovered = Vec::new();
    let mut seen = HashSet::new();
    for (index, row) in cells.iter().enumerate().skip(1) {
        let id = match row.first() {
            Some(Value::String(id)) if !id.is_empty() => id.clone(),
            Some(Value::Number(id)) => id.to_string(),
            _ => continue,
        };
        if !known.contains(&id) && seen.insert(id.clone()) {
            recovered.push((id, index as i32 + 1, -1));
        }
    }
    if !recovered.is_empty() {
        warn!(
            spreadsheet = %target.spreadsheet_id,
            tab = %target.tab,
            rows = recovered.len(),
            "found rows written but not recorded (an append whose reply was lost); recorded them"
        );
        store
            .record_written(
                form_id,
                &target.spreadsheet_id,
                &target.tab,
                &recovered,
                &[],
            )
            .await?;
    }
    Ok(())
}

/// `0` → `A`, `25` → `Z`, `26` → `AA`.
fn column_letters(index: usize) -> String {
    let mut index = index + 1;
    let mut letters = Vec::new();
    while index > 0 {
        let rest = (index - 1) % 26;
        letters.push(b'A' + rest as u8);
        index = (index - 1) / 26;
    }
    letters.reverse();
    String::from_utf8(letters).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_retry_after_is_clamped() {
        let huge = Duration::from_secs(99_999_999_999);
        assert_eq!(backoff(Some(huge), Duration::from_secs(1)), MAX_BACKOFF);
        assert_eq!(
            backoff(Some(Duration::from_secs(3)), Duration::from_secs(1)),
            Duration::from_secs(3)
        );
        assert_eq!(
            backoff(None, Duration::from_secs(2)),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn column_letters_past_z() {
        assert_eq!(column_letters(0), "A");
        assert_eq!(column_letters(25), "Z");
        assert_eq!(column_letters(26), "AA");
        assert_eq!(column_letters(701), "ZZ");
        assert_eq!(column_letters(702), "AAA");
    }
}
