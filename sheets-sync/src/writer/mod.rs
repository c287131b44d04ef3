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
//! People work in the sheet: they sort it, filter it, insert and delete rows and columns, clear
//! rows, delete or rename the tab. So a row number in `sheet_rows` is only where a response was
//! written. Before updating, each batch reads (one `values.batchGet`) row 1 and the
//! `response_id` cells of the rows it would update; when a row no longer holds its response,
//! the tab is reconciled (its `response_id` column read, `sheet_rows` made to say what the
//! sheet holds) and the rows are updated where they are now; a row that holds another
//! response is never written. Only the form's own columns are written (other cells are sent
//! as `null`, which the API skips), so a person's columns keep their values. A tab deleted,
//! renamed or emptied is created again, with its header, and refilled from PostgreSQL.
//!
//! A request is capped by rows (`batch_rows`) and by bytes (`batch_max_bytes`), and so is what
//! a batch reads from the outbox (the rows are read one by one and the reading stops at the
//! bytes), so memory does not grow with `batch_rows` nor with the size of responses. A request the
//! API refuses for its content (a 400 not about the tab) is split in halves until the refused
//! rows are alone; those are *parked* (taken off the outbox with the reason) and the others
//! written, so one bad row never blocks its tab.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use collect_shared::forms::Form;
use collect_shared::messages::FormId;
use collect_shared::retry::{Delays, Policy};
use collect_shared::store::{
    BatchWritten, FormCache, FormTab, ParkRow, PendingRow, Store, StoreError, TabLocks,
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::google::{ApiFailure, Heartbeat, SheetsApi, TabInfo, a1};
use crate::sheet_row;

mod batch;
mod new_tabs;
mod owners;
mod plan;
mod reconcile;
mod tab;

use batch::*;
use plan::*;
use reconcile::*;
use tab::*;

/// Where a form's rows go.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub spreadsheet_id: String,
    pub tab: String,
}

impl Target {
    /// This tab, as the store knows it: a form's.
    pub fn of<'a>(&'a self, form_id: &'a FormId) -> FormTab<'a> {
        FormTab {
            form_id,
            spreadsheet_id: &self.spreadsheet_id,
            tab: &self.tab,
        }
    }
}

/// The longest a tab backs off, whatever `Retry-After` says (a larger one would overflow the
/// clock, and is likelier a broken proxy than Google's advice).
pub const MAX_BACKOFF: Duration = Duration::from_secs(600);

struct TabState {
    /// The tab's name as the spreadsheet has it: the form's `sheet.tab`, or that in another
    /// case after a person renamed it. Ranges name the tab by it.
    title: String,
    header: Vec<String>,
    sheet_id: i32,
    column_count: i32,
    row_count: i32,
    response_id_column: usize,
    /// Every row in the sheet is known to `sheet_rows`.
    clean: bool,
    /// When `spreadsheets.get` last showed the tab (it may have been deleted or renamed).
    checked_at: Instant,
    /// Created with its header by this instance (its batch, or new tabs made together) and
    /// not read since: its first batch need not read the header back.
    created: bool,
}

/// How many rows a form's first batch reads to learn their size (see `Writer::row_limit`).
const PROBE_ROWS: usize = 50;

/// Empty rows a new tab gets below its header (appends insert their own rows).
const NEW_TAB_SPARE_ROWS: i32 = 20;

/// The forms whose writes are failing, each by its tab.
pub type BlockedTabs = HashMap<(FormId, Target), Blocked>;

/// Why a form's tab is not being written, since when.
#[derive(Debug)]
pub struct Blocked {
    pub form_id: FormId,
    pub reason: String,
    pub since: Instant,
    /// The last failure was about this form's sheet (see [`ApiFailure::about_this_sheet`]):
    /// it is reported per form, and does not make the instance unready.
    pub about_this_sheet: bool,
    failures: u32,
    retry_at: Instant,
    delays: Delays,
}

#[derive(Clone)]
pub struct WriterSettings {
    pub default_spreadsheet_id: Option<String>,
    /// A form's rows are due when this many wait (or the oldest has waited `max_wait`).
    pub batch_rows: usize,
    /// The most rows one batch carries when more than `batch_rows` wait.
    pub batch_max_rows: usize,
    /// The most bytes of rows one request carries (at least one row is always sent).
    pub batch_max_bytes: usize,
    pub max_wait: Duration,
    /// How often a tab being written is looked up again (`spreadsheets.get`, one read, which
    /// brings every tab of its spreadsheet this writer knows up to date): a tab a person
    /// deleted or renamed is recreated, and `collect_sheets_spreadsheet_cells` stays fresh.
    pub tab_check_interval: Duration,
}

pub struct Writer {
    pub store: Store,
    pub forms: Arc<FormCache>,
    pub api: Option<SheetsApi>,
    pub settings: WriterSettings,
    pub shutdown: CancellationToken,
    /// Forms whose writes to a tab are failing, for `/readyz` and the log.
    pub blocked: Arc<Mutex<BlockedTabs>>,
    /// Touched on every pass and every API answer, for `/readyz`.
    pub heartbeat: Arc<Heartbeat>,
    tabs: HashMap<Target, TabState>,
    /// One session holds the advisory locks of every tab this instance writes, so the
    /// connections do not grow with the tabs; losing it loses them all.
    lock_session: Option<Box<dyn TabLocks>>,
    held: HashSet<Target>,
    /// Forms whose last batch was full, or left rows for the next request (the byte cap): due
    /// at once.
    backlogged: HashSet<FormId>,
    /// The mean document bytes of each form's last batch (see [`Writer::row_limit`]).
    row_bytes: HashMap<FormId, usize>,
    /// Every form's tab, to write a tab only for one form (see [`owners`]).
    form_sheets: Option<owners::FormSheets>,
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
            row_bytes: HashMap::new(),
            form_sheets: None,
        }
    }

    /// Writes due batches until shutdown. A batch is due when it has `batch_rows` rows or its
    /// oldest row has waited `max_wait`. After a full batch the next is written at once (a
    /// backlog drains at the pace of the API and the budget, not of the tick).
    pub async fn run(mut self) {
        let tick = (self.settings.max_wait / 4)
            .clamp(Duration::from_millis(20), Duration::from_millis(250));
        let mut more = false;
        let mut scanned = Instant::now();
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
            // Between two looks at the whole outbox (at most a tick apart), only the forms
            // with more waiting are written: the look costs a pass over every waiting marker,
            // and once per batch it was a backlog's largest cost after the writes themselves.
            let written = if more && scanned.elapsed() < tick {
                self.write_backlogged().await
            } else {
                scanned = Instant::now();
                self.write_due().await
            };
            more = match written {
                Ok(more) => more,
                Err(error) => {
                    warn!(%error, "cannot read the sheet outbox; retrying");
                    false
                }
            };
        }
    }

    /// Writes a batch of each form whose last batch was full or cut short; `true` when one
    /// of them was again.
    async fn write_backlogged(&mut self) -> Result<bool, StoreError> {
        let mut forms: Vec<FormId> = self.backlogged.drain().collect();
        forms.sort();
        let mut more = false;
        for form_id in forms {
            if self.shutdown.is_cancelled() {
                return Ok(false);
            }
            more |= self.write_form(&form_id).await?;
        }
        Ok(more)
    }

    /// Writes a batch of each form that has one due; `true` when a full batch was written
    /// (more are likely waiting).
    async fn write_due(&mut self) -> Result<bool, StoreError> {
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
        // Every form with rows waiting, due or not, so that new forms' tabs are made together.
        let waiting_forms: Vec<FormId> = pending.iter().map(|form| form.form_id.clone()).collect();
        self.create_tabs(&waiting_forms).await?;
        let due: Vec<FormId> = pending
            .into_iter()
            .filter(|form| {
                form.waiting >= self.settings.batch_rows as i64
                    || form.oldest_age_seconds >= self.settings.max_wait.as_secs_f64()
                    || self.backlogged.remove(&form.form_id)
            })
            .map(|form| form.form_id)
            .collect();
        let mut more = false;
        for form_id in due {
            if self.shutdown.is_cancelled() {
                return Ok(false);
            }
            if self.write_form(&form_id).await? {
                more = true;
            }
        }
        Ok(more)
    }

    /// Writes one batch of the form's waiting rows; `true` when more are likely waiting (a
    /// full batch, or rows left for the next request by the byte cap).
    async fn write_form(&mut self, form_id: &FormId) -> Result<bool, StoreError> {
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
        let Some(target) = self.target_of(&form) else {
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
                    about_this_sheet: true,
                    ..ApiFailure::default()
                },
            );
            return Ok(false);
        };
        if self.waiting_out(form_id, &target) || !self.may_write(form_id, &target).await? {
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
        let max_bytes = self.settings.batch_max_bytes;
        let mut limit = self.row_limit(form_id);
        let mut rows = self
            .store
            .pending_rows(form_id, limit as i64, max_bytes)
            .await?;
        if rows.is_empty() {
            return Ok(false);
        }
        let mut bytes: usize = rows.iter().map(|row| row.document_bytes).sum();
        let probed = !self.row_bytes.contains_key(form_id);
        self.row_bytes.insert(form_id.clone(), bytes / rows.len());
        if probed && rows.len() >= limit && bytes < max_bytes {
            // The form's first batch read a few rows to learn their size; now that it is
            // known, as many as fit.
            limit = self.row_limit(form_id);
            rows = self
                .store
                .pending_rows(form_id, limit as i64, max_bytes)
                .await?;
            bytes = rows.iter().map(|row| row.document_bytes).sum();
            if !rows.is_empty() {
                self.row_bytes.insert(form_id.clone(), bytes / rows.len());
            }
        }
        // Cut short by the count or by the bytes: more may be waiting.
        let full = rows.len() >= limit || bytes >= max_bytes;
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
                if full || left {
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

    /// The form's tab: its spreadsheet (or `SHEETS_DEFAULT_SPREADSHEET_ID`) and its tab (or the
    /// form's id); `None` when it names no spreadsheet and there is no default.
    fn target_of(&self, form: &Form) -> Option<Target> {
        let sheet = form.definition.sheet.as_ref();
        let spreadsheet_id = sheet
            .and_then(|sheet| sheet.spreadsheet_id.clone())
            .or_else(|| self.settings.default_spreadsheet_id.clone())?;
        Some(Target {
            spreadsheet_id,
            tab: sheet
                .and_then(|sheet| sheet.tab.clone())
                .unwrap_or_else(|| form.id.to_string()),
        })
    }

    /// How many waiting rows of the form to ask the database for: all that wait, up to
    /// `batch_max_rows`, or fewer when the form's last batch says that many would be far over
    /// `batch_max_bytes` (the reading stops at the bytes anyway; this keeps the database from
    /// sending rows that are then thrown away).
    fn row_limit(&self, form_id: &FormId) -> usize {
        let most = self.settings.batch_max_rows.max(1);
        match self.row_bytes.get(form_id) {
            Some(&mean) if mean > 0 => most.min(self.settings.batch_max_bytes / mean + 1),
            Some(_) => most,
            // Their size unknown (the form's first batch since this instance started): a few
            // rows first, so that a form of large responses does not have the database send
            // thousands of them only for the reading to stop at the bytes.
            None => most.min(PROBE_ROWS),
        }
    }

    /// Takes, or confirms, this instance's lock on the tab.
    async fn hold_lock(&mut self, target: &Target) -> Result<bool, StoreError> {
        if self.held.contains(target) {
            if let Some(session) = self.lock_session.as_mut()
                && session.alive().await.is_ok()
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
        match session
            .try_lock_tab(&target.spreadsheet_id, &target.tab)
            .await
        {
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
        if let Some(session) = self.lock_session.take() {
            session.discard();
        }
        for target in self.held.drain() {
            self.tabs.remove(&target);
        }
    }

    fn waiting_out(&self, form_id: &FormId, target: &Target) -> bool {
        self.blocked
            .lock()
            .ok()
            .and_then(|blocked| {
                let key = (form_id.clone(), target.clone());
                blocked.get(&key).map(|b| b.retry_at > Instant::now())
            })
            .unwrap_or(false)
    }

    /// Backs the tab off: `Retry-After` when the server gave one, else the next of its
    /// exponential delays. Rows stay in the outbox meanwhile.
    fn fail(&self, form_id: &FormId, target: &Target, failure: ApiFailure) {
        let Ok(mut blocked) = self.blocked.lock() else {
            return;
        };
        let now = Instant::now();
        let key = (form_id.clone(), target.clone());
        let entry = blocked.entry(key).or_insert(Blocked {
            form_id: form_id.clone(),
            reason: String::new(),
            since: now,
            about_this_sheet: false,
            failures: 0,
            retry_at: now,
            delays: Policy::SHEETS.delays(),
        });
        entry.failures += 1;
        entry.reason = failure.reason.clone();
        entry.about_this_sheet = failure.about_this_sheet;
        let next = entry.delays.next_delay();
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
        // The state leaves the map while the batch runs, and goes back unless the failure may
        // be about the tab itself (then the next batch reads the tab again).
        let cached = match self.tabs.remove(target) {
            Some(mut tab) if tab.checked_at.elapsed() >= self.settings.tab_check_interval => {
                match self.refresh_spreadsheet(api, target, &mut tab).await {
                    Ok(true) => Some(tab),
                    Ok(false) => None, // deleted or renamed since: prepared (recreated) below
                    Err(failure) => {
                        self.tabs.insert(target.clone(), tab);
                        return Err(failure);
                    }
                }
            }
            other => other,
        };
        let mut tab = match cached {
            Some(tab) => tab,
            None => {
                let (tab, state) = prepare_tab(api, &self.store, target, form).await?;
                if state == HeaderState::Rebuilt {
                    self.tabs.insert(target.clone(), tab);
                    return Ok(Written {
                        rows: 0,
                        left: true,
                    });
                }
                tab
            }
        };
        let written = self.write_rows(api, target, form, &mut tab, rows).await;
        match &written {
            Ok(_) => {
                self.tabs.insert(target.clone(), tab);
            }
            // Google failed or did not answer: the tab is as it was, but an append may have
            // landed (reconciled before the next).
            Err(BatchError::Api(failure))
                if failure.outcome_unknown
                    || (!about_the_grid(failure) && !failure.about_this_sheet) =>
            {
                if failure.outcome_unknown {
                    tab.clean = false;
                }
                self.tabs.insert(target.clone(), tab);
            }
            // The tab or its header may be what is wrong (or the database failed after an
            // append): read them again next time.
            Err(_) => {}
        }
        written
    }

    /// Looks the target's spreadsheet up (`spreadsheets.get`, one read) and brings every tab of
    /// it this writer knows up to date, `tab` (the target's, out of the map while its batch
    /// runs) among them: one read per spreadsheet and interval, however many forms write to
    /// it (Google's read quota is 60 a minute). A known tab that is gone is forgotten, so its
    /// next batch prepares (recreates and refills) it. False when the target's own tab is gone.
    async fn refresh_spreadsheet(
        &mut self,
        api: &SheetsApi,
        target: &Target,
        tab: &mut TabState,
    ) -> Result<bool, BatchError> {
        let found = api.tabs(&target.spreadsheet_id).await?;
        let info = |title: &str| TabInfo::find(&found, title);
        self.tabs.retain(|known, state| {
            if known.spreadsheet_id != target.spreadsheet_id {
                return true;
            }
            info(&known.tab).is_some_and(|info| {
                state.update(info);
                true
            })
        });
        Ok(info(&target.tab).is_some_and(|info| {
            tab.update(info);
            true
        }))
    }

    /// Writes a batch to a prepared tab: verifies (and if need be finds again) the rows it
    /// updates, then updates them, then appends the new ones.
    async fn write_rows(
        &mut self,
        api: &SheetsApi,
        target: &Target,
        form: &Form,
        tab: &mut TabState,
        rows: Vec<PendingRow>,
    ) -> Result<Written, BatchError> {
        let ids: Vec<String> = rows
            .iter()
            .map(|row| row.response.response_id.to_string())
            .collect();
        let mut known = self.known_rows(&form.id, target, &ids).await?;

        // One read per batch: the header row, and the response_id cells of the rows this
        // batch would update. Someone may have sorted, inserted, deleted or cleared rows, moved
        // or inserted columns, or cleared the tab since the last batch.
        // A tab this batch created holds its header and nothing else: nothing to read back.
        let mut verified =
            std::mem::take(&mut tab.created) && rows_to_verify(&rows, &known).is_empty();
        let attempts = if verified { 0 } else { 3 };
        for _ in 0..attempts {
            let ranges = id_ranges(&rows_to_verify(&rows, &known), tab.row_count);
            let mut asked = vec![tab.range("1:1")];
            asked.extend(ranges.iter().map(|(first, last)| {
                let column = column_letters(tab.response_id_column);
                tab.range(&format!("{column}{first}:{column}{last}"))
            }));
            let read = match api.read_ranges(&target.spreadsheet_id, &asked).await {
                Ok(read) => read,
                Err(failure) if about_the_grid(&failure) => {
                    // Rows or the tab itself deleted since: look at the tab again.
                    if !refresh_tab(api, target, tab).await? {
                        let (fresh, state) = prepare_tab(api, &self.store, target, form).await?;
                        *tab = fresh;
                        tab.created = false; // read below
                        if state == HeaderState::Rebuilt {
                            return Ok(Written {
                                rows: 0,
                                left: true,
                            });
                        }
                        known = self.known_rows(&form.id, target, &ids).await?;
                    }
                    continue;
                }
                Err(failure) => return Err(failure.into()),
            };
            let mut read = read.into_iter();
            let first_row = read.next().unwrap_or_default().into_iter().next();
            match check_header(
                api,
                &self.store,
                target,
                form,
                tab,
                first_row.unwrap_or_default(),
            )
            .await?
            {
                HeaderState::Rebuilt => {
                    return Ok(Written {
                        rows: 0,
                        left: true,
                    });
                }
                HeaderState::Moved => continue, // the ids were read in the wrong column
                HeaderState::Restored => {
                    verified = true;
                    break; // unclean: reconciled below
                }
                HeaderState::Same => {}
            }
            let mut holds: HashMap<i32, String> = HashMap::new();
            for ((first, _), cells) in ranges.iter().zip(read) {
                for (offset, cells) in cells.iter().enumerate() {
                    if let Some(id) = cells.first().and_then(id_text) {
                        holds.insert(first + offset as i32, id);
                    }
                }
            }
            if moved(&rows, &known, &holds) {
                info!(
                    spreadsheet = %target.spreadsheet_id,
                    tab = %target.tab,
                    "rows are not where they were written (sorted, inserted, deleted or cleared in the sheet); finding them by response_id"
                );
                tab.clean = false;
            }
            verified = true;
            break;
        }
        if !verified {
            return Err(BatchError::Api(ApiFailure {
                reason: format!(
                    "the tab {} keeps changing under the writer (columns moved); trying again",
                    target.tab
                ),
                ..ApiFailure::default()
            }));
        }
        if !tab.clean {
            if reconcile(api, &self.store, &form.id, target, tab).await? == Reconciled::Emptied {
                rebuild(&self.store, form, target).await?;
                tab.clean = true;
                return Ok(Written {
                    rows: 0,
                    left: true,
                });
            }
            tab.clean = true;
            known = self.known_rows(&form.id, target, &ids).await?;
        }
        let header = tab.header.clone();

        let RowPlan {
            updates,
            appends,
            done,
            left,
        } = RowPlan::new(
            &rows,
            &known,
            &target.tab,
            self.settings.batch_max_bytes,
            |response| sheet_row::row(form, &header, response),
        );
        // The rows are in the plan now: the responses go before the requests are built.
        let exported = rows.iter().filter(|row| row.force).count();
        drop(rows);
        let mut progress = Progress {
            done,
            ..Progress::default()
        };

        // Updates, then appends; a request refused for its content is split until the refused
        // rows are alone. What was written is recorded even when a later request fails.
        let mut failure = None;
        let mut inserted: Vec<(i32, i32)> = Vec::new();
        if !updates.is_empty() {
            let mut groups = VecDeque::from([updates]);
            while let Some(group) = groups.pop_front() {
                // Only the form's columns: one range per run of them (a person's column between
                // two of Collect's splits the row). The client drops `null`s from the body, so
                // skipping a cell means leaving it out of every range.
                let data = group
                    .iter()
                    .flat_map(|item| {
                        owned_runs(&item.cells()).into_iter().map(|(start, cells)| {
                            let column = column_letters(start);
                            (tab.range(&format!("{column}{}", item.row)), vec![cells])
                        })
                    })
                    .collect();
                match api.write_ranges(&target.spreadsheet_id, data).await {
                    Ok(()) => {
                        count_written("update", group.len());
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
                // A new row: a person's columns in it are empty (`""`, not `null`, which the
                // client drops from the body, moving the cells after it).
                let values = group
                    .iter()
                    .map(|item| {
                        item.cells()
                            .into_iter()
                            .map(|cell| match cell {
                                Value::Null => Value::String(String::new()),
                                other => other,
                            })
                            .collect()
                    })
                    .collect();
                let count = group.len() as i32;
                match api
                    .append(&target.spreadsheet_id, &tab.range("A1"), values)
                    .await
                {
                    Ok(first) => {
                        count_written("append", group.len());
                        // INSERT_ROWS: rows at or below the first moved down (an append into a
                        // gap a person left in the table).
                        let first = first as i32;
                        for (_, row, _) in &mut progress.written {
                            if *row >= first {
                                *row += count;
                            }
                        }
                        inserted.push((first, count));
                        tab.row_count += count;
                        for (i, item) in group.into_iter().enumerate() {
                            progress.wrote(first + i as i32, item);
                        }
                    }
                    Err(refusal) => {
                        if refusal.outcome_unknown {
                            tab.clean = false;
                        }
                        if let Err(other) = split(&mut groups, &mut progress, group, refusal) {
                            failure = Some(other);
                            break;
                        }
                    }
                }
            }
        }

        let count = progress.written.len();
        if !progress.written.is_empty() || !progress.done.is_empty() || !inserted.is_empty() {
            self.store
                .record_written(
                    target.of(&form.id),
                    BatchWritten {
                        rows: &progress.written,
                        done: &progress.done,
                        inserted: &inserted,
                    },
                )
                .await?;
        }
        if !progress.parked.is_empty() {
            let parked = self
                .store
                .park_rows(target.of(&form.id), &progress.parked)
                .await?;
            RowsParked {
                target,
                rows: &progress.parked,
                parked,
            }
            .record();
        }
        if let Some(failure) = failure {
            return Err(BatchError::Api(failure));
        }
        if exported > 0 {
            // An export's progress, batch by batch.
            info!(form = %form.id, spreadsheet = %target.spreadsheet_id, tab = %target.tab, rows = exported, "export: rewrote a batch");
        }
        Ok(Written { rows: count, left })
    }

    /// Where `sheet_rows` says these responses are: `response_id → (row, revision)`.
    async fn known_rows(
        &self,
        form_id: &FormId,
        target: &Target,
        ids: &[String],
    ) -> Result<Known, StoreError> {
        Ok(self
            .store
            .sheet_rows(target.of(form_id), ids)
            .await?
            .into_iter()
            .map(|(id, row, revision)| (id, (row, revision)))
            .collect())
    }
}

/// A batch's outcome: rows written, and whether some were left for the next (byte cap).
struct Written {
    rows: usize,
    left: bool,
}

#[derive(Debug)]
enum BatchError {
    Api(ApiFailure),
    Database(StoreError),
}

impl From<ApiFailure> for BatchError {
    fn from(failure: ApiFailure) -> Self {
        Self::Api(failure)
    }
}

impl From<StoreError> for BatchError {
    fn from(error: StoreError) -> Self {
        Self::Database(error)
    }
}

/// Rows the sheet refused for their content, parked (`parked` of them were still waiting):
/// counted, and each logged with the reason.
struct RowsParked<'a> {
    target: &'a Target,
    rows: &'a [ParkRow],
    parked: u64,
}

impl RowsParked<'_> {
    fn record(&self) {
        metrics::counter!("collect_sheets_rows_parked_total").increment(self.parked);
        for row in self.rows {
            warn!(
                spreadsheet = %self.target.spreadsheet_id,
                tab = %self.target.tab,
                response = %row.response_id,
                revision = row.revision,
                reason = %row.reason,
                "the sheet refused this response's row; parked it (a newer revision or an export tries again)"
            );
        }
    }
}

/// Counts rows written to sheets by how (`collect_sheets_rows_written_total`).
fn count_written(kind: &'static str, rows: usize) {
    metrics::counter!("collect_sheets_rows_written_total", "kind" => kind).increment(rows as u64);
}

/// The delay before a tab is tried again: the server's `Retry-After` when it gave one, else
/// the next exponential delay, never more than [`MAX_BACKOFF`].
fn backoff(retry_after: Option<Duration>, next: Duration) -> Duration {
    retry_after.unwrap_or(next).min(MAX_BACKOFF)
}

/// Whether a refusal says the tab or its grid is not what the writer thinks.
fn about_the_grid(failure: &ApiFailure) -> bool {
    !failure.outcome_unknown
        && [
            "exceeds grid limits",
            "Unable to parse range",
            "No grid with id",
        ]
        .iter()
        .any(|m| failure.reason.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_name_the_tab_as_the_spreadsheet_has_it_now() {
        let info = |title: &str| TabInfo {
            title: title.into(),
            sheet_id: 7,
            column_count: 3,
            row_count: 21,
        };
        let mut tab = TabState::created(&info("west"), vec!["response_id".into()]);
        assert_eq!(tab.range("1:1"), "'west'!1:1");
        tab.update(&info("West"));
        assert_eq!(tab.range("A:A"), "'West'!A:A");
        tab.update(&info("It's west"));
        assert_eq!(tab.range("A1"), "'It''s west'!A1");
    }

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
    fn only_the_forms_cells_are_written() {
        let cells = [
            Value::from("r-1"),
            Value::from(2),
            Value::Null,
            Value::from("valid"),
            Value::Null,
            Value::Null,
        ];
        assert_eq!(
            owned_runs(&cells),
            vec![
                (0, vec![Value::from("r-1"), Value::from(2)]),
                (3, vec![Value::from("valid")])
            ]
        );
        assert!(owned_runs(&[Value::Null]).is_empty());
    }

    #[test]
    fn id_ranges_share_reads_and_stay_in_the_grid() {
        assert_eq!(id_ranges(&[5, 2, 30, 31, 100], 60), vec![(2, 5), (30, 31)]);
        let many: Vec<i32> = (0..100).map(|i| 2 + i * 50).collect();
        assert_eq!(id_ranges(&many, 10_000), vec![(2, 4952)]);
        assert!(id_ranges(&[1], 10).is_empty());
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
