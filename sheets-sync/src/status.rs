//! Each form's sheet, reported where people look: the failing forms go to PostgreSQL (for
//! `GET /v1/forms/{form_id}/sheet`) and to a gauge per form, every few seconds. Only a failure
//! to reach Google at all makes the instance unready (see `lib.rs`); a form whose spreadsheet
//! is not shared, gone or full is that form's problem, shown here, while others keep flowing.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use collect_shared::messages::FormId;
use collect_shared::store::{SheetFailure, Store};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::writer::BlockedTabs;

/// How often the failing forms are reported.
pub const REPORT_EVERY: Duration = Duration::from_secs(2);

/// The failing forms now, one per form (its latest target).
pub fn failing(blocked: &Mutex<BlockedTabs>) -> Vec<SheetFailure> {
    let Ok(blocked) = blocked.lock() else {
        return Vec::new();
    };
    let now = Utc::now();
    let mut by_form: HashMap<&FormId, SheetFailure> = HashMap::new();
    for ((_, target), b) in blocked.iter() {
        let since = chrono::Duration::from_std(b.since.elapsed()).unwrap_or_default();
        by_form.insert(
            &b.form_id,
            SheetFailure {
                form_id: b.form_id.clone(),
                spreadsheet_id: target.spreadsheet_id.clone(),
                tab: target.tab.clone(),
                reason: b.reason.clone(),
                about_this_sheet: b.about_this_sheet,
                failing_since: now - since,
            },
        );
    }
    by_form.into_values().collect()
}

/// Reports the failing forms until shutdown: to the database (as `instance`) and as
/// `collect_sheets_form_failing{form_id}` (1 while failing, 0 once it writes again).
pub async fn report(
    store: Store,
    blocked: Arc<Mutex<BlockedTabs>>,
    instance: String,
    shutdown: CancellationToken,
) {
    let mut shown: HashSet<FormId> = HashSet::new();
    loop {
        let failing = failing(&blocked);
        let now: HashSet<FormId> = failing.iter().map(|f| f.form_id.clone()).collect();
        let failing_gauge = |form: &FormId| metrics::gauge!("collect_sheets_form_failing", "form_id" => form.to_string());
        for form in &now {
            failing_gauge(form).set(1.0);
        }
        for form in shown.difference(&now) {
            failing_gauge(form).set(0.0);
        }
        shown = now;
        if let Err(error) = store.report_sheet_failures(&instance, &failing).await {
            warn!(%error, "cannot report the failing sheets to the database");
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(REPORT_EVERY) => {}
        }
    }
    // What this instance reported is no longer watched by it.
    let _ = store.report_sheet_failures(&instance, &[]).await;
}
