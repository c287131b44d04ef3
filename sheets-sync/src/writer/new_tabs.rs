//! New forms' tabs, several in one request: under Google's quota (60 writes a minute) a
//! request a tab was a fifth of the writes of 200 new forms.

use super::*;
use crate::google::NewTab;

impl Writer {
    /// Creates the tabs that forms with rows waiting (`forms`) need and do not have yet, in one
    /// `spreadsheets.batchUpdate` (and one `spreadsheets.get`) a spreadsheet, each with its
    /// header. Only where two or more
    /// are new in one spreadsheet: one is created by its batch as before. Only tabs this
    /// instance holds the lock of, and of which `sheet_rows` records nothing (a tab a person
    /// deleted is recreated and refilled by its batch). A failure leaves each tab to its batch,
    /// which looks again: nothing is lost but the saved request.
    pub(super) async fn create_tabs(&mut self, forms: &[FormId]) -> Result<(), StoreError> {
        let Some(api) = self.api.clone() else {
            return Ok(());
        };
        let mut by_spreadsheet: HashMap<String, Vec<(Target, Vec<String>)>> = HashMap::new();
        for form_id in forms {
            let Ok(Some(compiled)) = self.forms.get(form_id).await else {
                continue; // its batch says why
            };
            let Some(target) = self.target_of(&compiled.form) else {
                continue;
            };
            if self.tabs.contains_key(&target)
                || self.waiting_out(form_id, &target)
                || self.owner(form_id, &target).await? != owners::Owner::This
            {
                continue;
            }
            let header = sheet_row::wanted_columns(&compiled.form);
            by_spreadsheet
                .entry(target.spreadsheet_id.clone())
                .or_default()
                .push((target, header));
        }
        for (spreadsheet, candidates) in by_spreadsheet {
            if candidates.len() < 2 || self.shutdown.is_cancelled() {
                continue;
            }
            let mut new = Vec::with_capacity(candidates.len());
            for (target, header) in candidates {
                if new.iter().any(|(known, _): &(Target, _)| known == &target) {
                    continue; // two forms writing to one tab
                }
                if self.hold_lock(&target).await?
                    && !self.tabs.contains_key(&target)
                    && self
                        .store
                        .sheet_row_count(&target.spreadsheet_id, &target.tab)
                        .await?
                        == 0
                {
                    new.push((target, header));
                }
            }
            if new.len() < 2 {
                continue;
            }
            let existing = match api.tabs(&spreadsheet).await {
                Ok(existing) => existing,
                Err(failure) => {
                    info!(%spreadsheet, reason = %failure.reason, "cannot look the spreadsheet up; each new tab is made by its batch");
                    continue;
                }
            };
            // A tab that is there, perhaps in another case, is prepared by its batch.
            new.retain(|(target, _)| TabInfo::find(&existing, &target.tab).is_none());
            if new.len() < 2 {
                continue;
            }
            let mut ids = Vec::with_capacity(new.len());
            for _ in &new {
                ids.push(unused_sheet_id(&existing, &ids));
            }
            let tabs: Vec<NewTab<'_>> = new
                .iter()
                .zip(&ids)
                .map(|((target, header), &sheet_id)| NewTab {
                    title: &target.tab,
                    sheet_id,
                    header,
                })
                .collect();
            match api
                .add_tabs(&spreadsheet, &tabs, 1 + NEW_TAB_SPARE_ROWS)
                .await
            {
                Ok(added) => {
                    info!(%spreadsheet, tabs = added.len(), "created the tabs of new forms");
                    for ((target, header), info) in new.into_iter().zip(added) {
                        self.tabs.insert(target, TabState::created(&info, header));
                    }
                }
                Err(failure) => {
                    info!(%spreadsheet, reason = %failure.reason, "cannot create the new tabs together; each is made by its batch");
                }
            }
        }
        Ok(())
    }
}
