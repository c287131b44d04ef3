//! Per-form sheet status in MySQL.

use crate::store::StoreError;
use sqlx::{MySql, QueryBuilder};

use super::{MySqlStore, push_list};
use crate::store::sheet_status::{SheetFailure, SheetStatusStore};

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
}
