//! Per-form sheet status in PostgreSQL.

use crate::store::StoreError;
use chrono::{DateTime, Utc};

use super::PgStore;
use crate::store::sheet_status::{SheetFailure, SheetStatusStore};

#[async_trait::async_trait]
impl SheetStatusStore for PgStore {
    async fn report_sheet_failures(
        &self,
        instance: &str,
        failing: &[SheetFailure],
    ) -> Result<(), StoreError> {
        let forms: Vec<&str> = failing.iter().map(|f| f.form_id.as_str()).collect();
        let spreadsheets: Vec<&str> = failing.iter().map(|f| f.spreadsheet_id.as_str()).collect();
        let tabs: Vec<&str> = failing.iter().map(|f| f.tab.as_str()).collect();
        let reasons: Vec<&str> = failing.iter().map(|f| f.reason.as_str()).collect();
        let about: Vec<bool> = failing.iter().map(|f| f.about_this_sheet).collect();
        let since: Vec<DateTime<Utc>> = failing.iter().map(|f| f.failing_since).collect();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "DELETE FROM sheet_status WHERE instance = $1 AND NOT (form_id = ANY($2::text[]))",
        )
        .bind(instance)
        .bind(&forms)
        .execute(&mut *tx)
        .await?;
        if !failing.is_empty() {
            sqlx::query(
                "INSERT INTO sheet_status (form_id, spreadsheet_id, tab, reason, about_this_sheet,
                     failing_since, instance)
                 SELECT f.*, $7 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[],
                     $5::boolean[], $6::timestamptz[]) AS f
                 ON CONFLICT (form_id) DO UPDATE
                    SET spreadsheet_id = EXCLUDED.spreadsheet_id, tab = EXCLUDED.tab,
                        reason = EXCLUDED.reason, about_this_sheet = EXCLUDED.about_this_sheet,
                        failing_since = EXCLUDED.failing_since, instance = EXCLUDED.instance,
                        updated_at = now()",
            )
            .bind(&forms)
            .bind(&spreadsheets)
            .bind(&tabs)
            .bind(&reasons)
            .bind(&about)
            .bind(&since)
            .bind(instance)
            .execute(&mut *tx)
            .await?;
        }
        Ok(tx.commit().await?)
    }
}
