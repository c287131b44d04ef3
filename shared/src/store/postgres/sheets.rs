//! sheets-sync's tables in PostgreSQL, and tab locks as advisory locks.

use crate::store::StoreError;
use chrono::{DateTime, Utc};
use sqlx::pool::PoolConnection;
use sqlx::{Connection, Postgres, Row};

use super::PgStore;
use crate::messages::{FormId, ResponseId};
use crate::store::sheets::{BatchWritten, FormTab, ParkRow, SheetStore, TabLocks, keys};

#[async_trait::async_trait]
impl SheetStore for PgStore {
    async fn enqueue_many_for_sheet(
        &self,
        responses: &[(&ResponseId, &FormId)],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        enqueue(&mut tx, &keys(responses)).await?;
        Ok(tx.commit().await?)
    }

    async fn enqueue_form_export(&self, form_id: &FormId) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "WITH unparked AS (DELETE FROM sheet_parked WHERE form_id = $1)
             INSERT INTO sheet_outbox (response_id, form_id, force)
             SELECT response_id, form_id, true FROM responses WHERE form_id = $1
             ON CONFLICT (form_id, response_id) DO UPDATE
                SET force = true, enqueued_at = clock_timestamp()",
        )
        .bind(form_id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn sheet_rows(
        &self,
        at: FormTab<'_>,
        response_ids: &[String],
    ) -> Result<Vec<(String, i32, i64)>, StoreError> {
        let rows = sqlx::query(
            // One lookup by (form, response) per id, whatever the statistics say. Behind a
            // fast load (no statistics yet: the planner believes a tab holds a couple of
            // rows), `response_id = ANY($3)`, a plain join, and even a lookup by the primary
            // key all read every row of the tab for each batch, through the index on (tab,
            // row): 65 ms to 9 s for 500 ids in a tab of 80,000 to 150,000 rows, by far the
            // heaviest statement of the pipeline (issue 15). Inside the subquery only
            // `sheet_rows_by_response` fits the condition, and the `OFFSET 0` keeps the
            // planner from pulling the subquery up or pushing the tab's condition into it.
            "SELECT s.response_id, s.row_number, s.revision
             FROM UNNEST($3::text[]) AS wanted(response_id)
             CROSS JOIN LATERAL (
                 SELECT * FROM sheet_rows s
                 WHERE s.form_id = $4 AND s.response_id = wanted.response_id
                 OFFSET 0) AS s
             WHERE s.spreadsheet_id = $1 AND s.tab = $2",
        )
        .bind(at.spreadsheet_id)
        .bind(at.tab)
        .bind(response_ids)
        .bind(at.form_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("response_id")?,
                    row.try_get("row_number")?,
                    row.try_get("revision")?,
                ))
            })
            .collect()
    }

    async fn resync_sheet_rows(
        &self,
        at: FormTab<'_>,
        found: &[(String, i32)],
    ) -> Result<u64, StoreError> {
        let ids: Vec<&str> = found.iter().map(|(id, _)| id.as_str()).collect();
        let rows: Vec<i32> = found.iter().map(|(_, row)| *row).collect();
        let mut tx = self.pool.begin().await?;
        let forgotten = sqlx::query(
            "DELETE FROM sheet_rows s WHERE s.spreadsheet_id = $1 AND s.tab = $2
               AND NOT EXISTS (SELECT 1 FROM UNNEST($3::text[]) AS f(id) WHERE f.id = s.response_id)",
        )
        .bind(at.spreadsheet_id)
        .bind(at.tab)
        .bind(&ids)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query(
            "INSERT INTO sheet_rows (spreadsheet_id, tab, form_id, response_id, row_number,
                 revision)
             SELECT $1, $2, $5, f.id, f.row_number, -1
             FROM UNNEST($3::text[], $4::int[]) AS f(id, row_number)
             ON CONFLICT (spreadsheet_id, tab, response_id) DO UPDATE
                SET row_number = EXCLUDED.row_number",
        )
        .bind(at.spreadsheet_id)
        .bind(at.tab)
        .bind(&ids)
        .bind(&rows)
        .bind(at.form_id.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(forgotten)
    }

    async fn record_written(
        &self,
        at: FormTab<'_>,
        batch: BatchWritten<'_>,
    ) -> Result<(), StoreError> {
        let written = batch.rows;
        let ids: Vec<&str> = written.iter().map(|(id, _, _)| id.as_str()).collect();
        let rows: Vec<i32> = written.iter().map(|(_, row, _)| *row).collect();
        let revisions: Vec<i64> = written.iter().map(|(_, _, revision)| *revision).collect();
        let done_ids: Vec<&str> = batch.done.iter().map(|(id, _)| id.as_str()).collect();
        let done_at: Vec<DateTime<Utc>> = batch.done.iter().map(|(_, at)| *at).collect();
        let mut tx = self.pool.begin().await?;
        for (first, count) in batch.inserted {
            sqlx::query(
                "UPDATE sheet_rows SET row_number = row_number + $4
                 WHERE spreadsheet_id = $1 AND tab = $2 AND row_number >= $3",
            )
            .bind(at.spreadsheet_id)
            .bind(at.tab)
            .bind(first)
            .bind(count)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO sheet_rows (spreadsheet_id, tab, form_id, response_id, row_number,
                 revision)
             SELECT $1, $2, $6, * FROM UNNEST($3::text[], $4::int[], $5::bigint[])
             ON CONFLICT (spreadsheet_id, tab, response_id) DO UPDATE
                SET row_number = EXCLUDED.row_number, revision = EXCLUDED.revision,
                    written_at = now()",
        )
        .bind(at.spreadsheet_id)
        .bind(at.tab)
        .bind(&ids)
        .bind(&rows)
        .bind(&revisions)
        .bind(at.form_id.as_str())
        .execute(&mut *tx)
        .await?;
        // Each marker found by its primary key (see `sheet_rows`: joined plainly, this read
        // every marker of the form for each batch, 22 ms against 2 ms in a backlog of 60,000),
        // then deleted where it is, unless it was queued again since it was read. A marker
        // queued again while this runs is a new version of the row: `enqueued_at <= d.at` is
        // checked again on it, and it stays.
        sqlx::query(
            "DELETE FROM sheet_outbox o
             USING UNNEST($1::text[], $2::timestamptz[]) AS d(id, at)
             CROSS JOIN LATERAL (
                 SELECT s.ctid AS tid FROM sheet_outbox s
                 WHERE s.form_id = $3 AND s.response_id = d.id LIMIT 1) AS found
             WHERE o.ctid = found.tid AND o.enqueued_at <= d.at",
        )
        .bind(&done_ids)
        .bind(&done_at)
        .bind(at.form_id.as_str())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM sheet_parked WHERE form_id = $2 AND response_id = ANY($1::text[])",
        )
        .bind(&ids)
        .bind(at.form_id.as_str())
        .execute(&mut *tx)
        .await?;
        Ok(tx.commit().await?)
    }

    async fn park_rows(&self, at: FormTab<'_>, parked: &[ParkRow]) -> Result<u64, StoreError> {
        let ids: Vec<&str> = parked.iter().map(|p| p.response_id.as_str()).collect();
        let revisions: Vec<i64> = parked.iter().map(|p| p.revision).collect();
        let reasons: Vec<&str> = parked.iter().map(|p| p.reason.as_str()).collect();
        let enqueued: Vec<DateTime<Utc>> = parked.iter().map(|p| p.enqueued_at).collect();
        let done = sqlx::query(
            "WITH refused AS (
                 SELECT * FROM UNNEST($3::text[], $4::bigint[], $5::text[], $6::timestamptz[])
                     AS p(response_id, revision, reason, enqueued_at)
             ), taken AS (
                 DELETE FROM sheet_outbox o USING refused p
                 WHERE o.form_id = $7 AND o.response_id = p.response_id
                   AND o.enqueued_at <= p.enqueued_at
                 RETURNING o.response_id, o.form_id
             )
             INSERT INTO sheet_parked (response_id, form_id, spreadsheet_id, tab, revision, reason)
             SELECT t.response_id, t.form_id, $1, $2, p.revision, p.reason
             FROM taken t JOIN refused p ON p.response_id = t.response_id
             ON CONFLICT (form_id, response_id) DO UPDATE
                SET spreadsheet_id = EXCLUDED.spreadsheet_id,
                    tab = EXCLUDED.tab, revision = EXCLUDED.revision,
                    reason = EXCLUDED.reason, parked_at = clock_timestamp()",
        )
        .bind(at.spreadsheet_id)
        .bind(at.tab)
        .bind(&ids)
        .bind(&revisions)
        .bind(&reasons)
        .bind(&enqueued)
        .bind(at.form_id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn lock_session(&self) -> Result<Box<dyn TabLocks>, StoreError> {
        Ok(Box::new(PgTabLocks(self.pool.acquire().await?)))
    }
}

/// Tab locks as session advisory locks, on a pooled connection of their own.
struct PgTabLocks(PoolConnection<Postgres>);

#[async_trait::async_trait]
impl TabLocks for PgTabLocks {
    /// The key is PostgreSQL's `hashtextextended`, which is stable across releases (hash
    /// partitioning relies on it), so instances of different builds agree on it. Advisory
    /// locks belong to the database, so two databases on one server never share one. Taking
    /// a lock the session already holds stacks it: call this once per tab.
    async fn try_lock_tab(&mut self, spreadsheet_id: &str, tab: &str) -> Result<bool, StoreError> {
        sqlx::query_scalar(
            "SELECT pg_try_advisory_lock(hashtextextended(
                 'collect-sheet-tab:' || length($1) || ':' || $1 || ':' || $2, 0))",
        )
        .bind(spreadsheet_id)
        .bind(tab)
        .fetch_one(&mut *self.0)
        .await
        .map_err(StoreError::from)
    }

    async fn alive(&mut self) -> Result<(), StoreError> {
        Ok(self.0.ping().await?)
    }

    fn discard(mut self: Box<Self>) {
        self.0.close_on_drop();
    }
}

/// Queues responses (`(form_id, response_id)`) for their sheet in `tx` (a response seen twice
/// is queued once). Queuing a response again unparks it: a newer revision may be accepted.
pub(super) async fn enqueue(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    keys: &[(&str, &str)],
) -> Result<(), StoreError> {
    if keys.is_empty() {
        return Ok(());
    }
    // In key order, so that two transactions lock the outbox's rows in the same order.
    let distinct: std::collections::BTreeSet<(&str, &str)> = keys.iter().copied().collect();
    let (forms, ids): (Vec<&str>, Vec<&str>) = distinct.into_iter().unzip();
    sqlx::query(
        "WITH unparked AS (
             DELETE FROM sheet_parked p USING UNNEST($1::text[], $2::text[]) AS k(form, id)
             WHERE p.response_id = k.id AND p.form_id = k.form)
         INSERT INTO sheet_outbox (form_id, response_id)
         SELECT * FROM UNNEST($1::text[], $2::text[])
         ON CONFLICT (form_id, response_id) DO UPDATE
            SET enqueued_at = clock_timestamp()",
    )
    .bind(&forms)
    .bind(&ids)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
