//! Per-form sheet status in MySQL.

use crate::store::StoreError;
use crate::store::columns;
use sqlx::{MySql, QueryBuilder, Row};

use super::{MySqlStore, push_list};
use crate::messages::FormId;
use crate::store::sheet_status::{
    REPORT_FRESH_SECONDS, SheetFailure, SheetState, SheetStatusStore,
};

#[async_trait::async_trait]
impl SheetStatusStore for MySqlStore {
    async fn report_sheet_failures(
        &self,
        instance: &str,
        failing: &[SheetFailure],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut forget = QueryBuilder::<MySql>::new("DELETE FROM sheet_status WHERE instance = ");
        forget.push_bind(instance);
        if !failing.is_empty() {
            forget.push(" AND form_id NOT IN ");
            push_list(&mut forget, failing.iter().map(|f| f.form_id.as_str()));
        }
        // Not kept prepared: its shape follows the number of failing forms, and it runs
        // every few seconds at most (see `runs` on why the hot statements are kept).
        forget.build().persistent(false).execute(&mut *tx).await?;
        if !failing.is_empty() {
            let mut query = QueryBuilder::<MySql>::new(
                "INSERT INTO sheet_status (form_id, spreadsheet_id, tab, reason, about_this_sheet,
                     failing_since, instance) ",
            );
            query.push_values(failing, |mut row, f| {
                row.push_bind(f.form_id.as_str())
                    .push_bind(f.spreadsheet_id.as_str())
                    .push_bind(f.tab.as_str())
                    .push_bind(f.reason.as_str())
                    .push_bind(f.about_this_sheet)
                    .push_bind(f.failing_since.naive_utc())
                    .push_bind(instance);
            });
            query.push(
                " ON DUPLICATE KEY UPDATE spreadsheet_id = VALUES(spreadsheet_id),
                     tab = VALUES(tab), reason = VALUES(reason),
                     about_this_sheet = VALUES(about_this_sheet),
                     failing_since = VALUES(failing_since), instance = VALUES(instance),
                     updated_at = CURRENT_TIMESTAMP(6)",
            );
            query.build().persistent(false).execute(&mut *tx).await?;
        }
        Ok(tx.commit().await?)
    }

    async fn sheet_state(&self, form_id: &FormId) -> Result<SheetState, StoreError> {
        let row = sqlx::query(
            "SELECT s.spreadsheet_id, s.tab, s.reason, s.about_this_sheet, s.failing_since,
                 (SELECT COUNT(*) FROM sheet_outbox o WHERE o.form_id = ?) AS waiting,
                 (SELECT COUNT(*) FROM sheet_parked p WHERE p.form_id = ?) AS parked
             FROM (SELECT 1 AS one) AS one
             LEFT JOIN sheet_status s
               ON s.form_id = ? AND s.updated_at > CURRENT_TIMESTAMP(6) - INTERVAL ? SECOND",
        )
        .bind(form_id.as_str())
        .bind(form_id.as_str())
        .bind(form_id.as_str())
        .bind(REPORT_FRESH_SECONDS as i64)
        .fetch_one(&self.pool)
        .await?;
        let failure = columns::failure(&row, form_id)?;
        Ok(SheetState {
            failure,
            rows_waiting: row.try_get("waiting")?,
            rows_parked: row.try_get("parked")?,
        })
    }
}
