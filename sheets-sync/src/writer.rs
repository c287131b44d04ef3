//! Writes waiting responses to their sheets: one batch per tab at a time, within the budget,
//! each response in exactly one row.
//!
//! Exactly once: `values.append` is not idempotent. Row numbers are recorded in `sheet_rows`
//! in the same transaction that takes the responses off the outbox. When an append's outcome is
//! unknown (a transport error or a 5xx after sending it), or when this writer takes a tab over
//! (at start, or from an instance that died), the tab is *unclean*: before appending again the
//! writer reads the tab's `response_id` column and records every row it finds, so a response
//! already in the sheet is updated in place, never appended twice.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use collect_shared::forms::Form;
use collect_shared::messages::FormId;
use collect_shared::store::{FormCache, PendingRow, Store};
use serde_json::Value;
use sqlx::Postgres;
use sqlx::pool::PoolConnection;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::google::{ApiFailure, SheetsApi, a1};
use crate::sheet_row;

/// Where a form's rows go.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub spreadsheet_id: String,
    pub tab: String,
}

impl Target {
    /// The advisory-lock key of this tab: one writer per tab across instances.
    fn lock_key(&self) -> i64 {
        let mut hasher = DefaultHasher::new();
        "collect-sheet-tab".hash(&mut hasher);
        self.spreadsheet_id.hash(&mut hasher);
        self.tab.hash(&mut hasher);
        hasher.finish() as i64
    }
}

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
    tabs: HashMap<Target, TabState>,
    locks: HashMap<Target, PoolConnection<Postgres>>,
}

impl Writer {
    pub fn new(
        store: Store,
        forms: Arc<FormCache>,
        api: Option<SheetsApi>,
        settings: WriterSettings,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            store,
            forms,
            api,
            settings,
            shutdown,
            blocked: Arc::new(Mutex::new(HashMap::new())),
            tabs: HashMap::new(),
            locks: HashMap::new(),
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
        let mut more = false;
        for form in pending {
            if self.shutdown.is_cancelled() {
                return Ok(false);
            }
            let due = form.waiting >= self.settings.batch_rows as i64
                || form.oldest_age_seconds >= self.settings.max_wait.as_secs_f64();
            if due && self.write_form(&form.form_id).await? >= self.settings.batch_rows {
                more = true;
            }
        }
        Ok(more)
    }

    /// Writes one batch of the form's waiting rows; how many rows were written.
    async fn write_form(&mut self, form_id: &FormId) -> Result<usize, sqlx::Error> {
        let compiled = match self.forms.get(form_id).await {
            Ok(Some(compiled)) => compiled,
            Ok(None) => {
                warn!(form = %form_id, "responses wait for a form that does not exist");
                return Ok(0);
            }
            Err(error) => {
                warn!(form = %form_id, %error, "cannot load the form; its rows wait");
                return Ok(0);
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
                    outcome_unknown: false,
                },
            );
            return Ok(0);
        };
        let target = Target {
            spreadsheet_id,
            tab: sheet.tab.clone().unwrap_or_else(|| form.id.to_string()),
        };
        if self.waiting_out(&target) {
            return Ok(0);
        }
        let Some(api) = self.api.clone() else {
            self.fail(
                form_id,
                &target,
                ApiFailure {
                    reason: "no Google credentials: set GOOGLE_APPLICATION_CREDENTIALS".into(),
                    retry_after: Some(Duration::from_secs(30)),
                    outcome_unknown: false,
                },
            );
            return Ok(0);
        };
        if !self.hold_lock(&target).await? {
            return Ok(0); // another instance writes this tab
        }
        let rows = self
            .store
            .pending_rows(form_id, self.settings.batch_rows as i64)
            .await?;
        if rows.is_empty() {
            return Ok(0);
        }
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
            Ok(written) => {
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
                return Ok(written);
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
        Ok(0)
    }

    /// Takes, or confirms, this instance's lock on the tab.
    async fn hold_lock(&mut self, target: &Target) -> Result<bool, sqlx::Error> {
        if let Some(session) = self.locks.get_mut(target) {
            match Store::try_lock(session, target.lock_key()).await {
                Ok(true) => return Ok(true),
                Ok(false) | Err(_) => {
                    // The session was lost (and the lock with it): start over.
                    self.locks.remove(target);
                    self.tabs.remove(target);
                }
            }
        }
        let mut session = self.store.lock_session().await?;
        if Store::try_lock(&mut session, target.lock_key()).await? {
            info!(spreadsheet = %target.spreadsheet_id, tab = %target.tab, "writing this tab");
            self.locks.insert(target.clone(), session);
            // Whoever wrote it before may have died mid-append.
            self.tabs.remove(target);
            Ok(true)
        } else {
            Ok(false)
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
        let delay = failure.retry_after.unwrap_or(next);
        entry.retry_at = now + delay;
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
    ) -> Result<usize, BatchError> {
        if !self.tabs.contains_key(target) {
            let state = prepare_tab(api, target, form).await?;
            self.tabs.insert(target.clone(), state);
        }
        let wanted = sheet_row::wanted_columns(form);
        let Some(tab) = self.tabs.get_mut(target) else {
            return Ok(0);
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
        let mut done = Vec::new();
        let mut seen = HashSet::new();
        for pending in &rows {
            let response = &pending.response;
            let id = response.response_id.to_string();
            if !seen.insert(id.clone()) {
                continue;
            }
            done.push((id.clone(), pending.enqueued_at));
            let revision = response.revision.0 as i64;
            let cells = sheet_row::row(form, &header, response);
            match known.get(&id) {
                Some((_, written)) if *written == revision && !pending.force => {}
                Some((row, _)) => updates.push((id, *row, revision, cells)),
                None => appends.push((id, revision, cells)),
            }
        }

        let mut written = Vec::new();
        if !updates.is_empty() {
            let data = updates
                .iter()
                .map(|(_, row, _, cells)| {
                    (a1(&target.tab, &format!("A{row}")), vec![cells.clone()])
                })
                .collect();
            api.write_ranges(&target.spreadsheet_id, data).await?;
            metrics::counter!("collect_sheets_rows_written_total", "kind" => "update")
                .increment(updates.len() as u64);
            written.extend(
                updates
                    .into_iter()
                    .map(|(id, row, revision, _)| (id, row, revision)),
            );
        }
        if !appends.is_empty() {
            let values = appends.iter().map(|(_, _, cells)| cells.clone()).collect();
            let first = api
                .append(&target.spreadsheet_id, &a1(&target.tab, "A1"), values)
                .await?;
            metrics::counter!("collect_sheets_rows_written_total", "kind" => "append")
                .increment(appends.len() as u64);
            written.extend(
                appends
                    .into_iter()
                    .enumerate()
                    .map(|(i, (id, revision, _))| (id, first as i32 + i as i32, revision)),
            );
        }
        let count = written.len();
        self.store
            .record_written(
                &form.id,
                &target.spreadsheet_id,
                &target.tab,
                &written,
                &done,
            )
            .await?;
        let exported = rows.iter().filter(|row| row.force).count();
        if exported > 0 {
            // An export's progress, batch by batch.
            info!(form = %form.id, spreadsheet = %target.spreadsheet_id, tab = %target.tab, rows = exported, "export: rewrote a batch");
        }
        Ok(count)
    }
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
    use super::column_letters;

    #[test]
    fn column_letters_past_z() {
        assert_eq!(column_letters(0), "A");
        assert_eq!(column_letters(25), "Z");
        assert_eq!(column_letters(26), "AA");
        assert_eq!(column_letters(701), "ZZ");
        assert_eq!(column_letters(702), "AAA");
    }
}
