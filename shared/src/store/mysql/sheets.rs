//! sheets-sync's tables in MySQL, and tab locks as named locks (`GET_LOCK`).
//!
//! Named locks, not a lock table: like PostgreSQL's advisory locks they belong to the session
//! and are freed when it ends, so a writer that dies, or loses its connection, frees its tabs
//! at once with nothing to expire; a lock table would need leases and a clock. Since MySQL 5.7
//! and MariaDB 10.0 a session may hold many. They are server-wide, so the name includes the
//! database's.

use crate::store::StoreError;
use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::pool::PoolConnection;
use sqlx::{Connection, MySql, QueryBuilder, Row};

use super::{MySqlStore, push_list};
use crate::messages::{FormId, ResponseId};
use crate::store::sheets::{BatchWritten, FormTab, ParkRow, SheetStore, TabLocks, keys};

impl MySqlStore {
    /// Queues responses (`(form_id, response_id)`) for their sheet in `tx` (a response seen
    /// twice is queued once). Queuing a response again unparks it: a newer revision may be
    /// accepted.
    pub(super) async fn enqueue_for_sheets(
        &self,
        tx: &mut sqlx::Transaction<'_, MySql>,
        keys: &[(&str, &str)],
    ) -> Result<(), StoreError> {
        // In key order, so that two transactions lock the outbox's rows in the same order.
        let distinct: BTreeSet<(&str, &str)> = keys.iter().copied().collect();
        let keys: Vec<(&str, &str)> = distinct.into_iter().collect();
        for run in self.runs(&keys, 2, |_| 0)? {
            let mut unpark = QueryBuilder::<MySql>::new("DELETE FROM sheet_parked WHERE ");
            push_pairs(&mut unpark, run);
            unpark.build().execute(&mut **tx).await?;
            let mut enqueue =
                QueryBuilder::<MySql>::new("INSERT INTO sheet_outbox (form_id, response_id) ");
            enqueue.push_values(run, |mut row, (form, id)| {
                row.push_bind(*form).push_bind(*id);
            });
            enqueue.push(" ON DUPLICATE KEY UPDATE enqueued_at = SYSDATE(6)");
            enqueue.build().execute(&mut **tx).await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl SheetStore for MySqlStore {
    async fn enqueue_many_for_sheet(
        &self,
        responses: &[(&ResponseId, &FormId)],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        self.enqueue_for_sheets(&mut tx, &keys(responses)).await?;
        Ok(tx.commit().await?)
    }

    async fn enqueue_form_export(&self, form_id: &FormId) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM sheet_parked WHERE form_id = ?")
            .bind(form_id.as_str())
            .execute(&mut *tx)
            .await?;
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM responses WHERE form_id = ?")
            .bind(form_id.as_str())
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO sheet_outbox (form_id, response_id, `force`)
             SELECT form_id, response_id, TRUE FROM responses WHERE form_id = ?
             ON DUPLICATE KEY UPDATE `force` = TRUE, enqueued_at = SYSDATE(6)",
        )
        .bind(form_id.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(count as u64)
    }

    async fn sheet_rows(
        &self,
        at: FormTab<'_>,
        response_ids: &[String],
    ) -> Result<Vec<(String, i32, i64)>, StoreError> {
        let mut found = Vec::new();
        for run in self.runs(response_ids, 1, |_| 0)? {
            let mut query = QueryBuilder::<MySql>::new(
                "SELECT response_id, `row_number`, revision FROM sheet_rows",
            );
            push_tab_rows(&mut query, at, run.iter().map(String::as_str));
            for row in query.build().fetch_all(&self.pool).await? {
                found.push((
                    row.try_get("response_id")?,
                    row.try_get("row_number")?,
                    row.try_get("revision")?,
                ));
            }
        }
        Ok(found)
    }

    /// The recorded rows of the tab are read and compared here, then the ones not found are
    /// deleted and the found ones upserted, by runs of ids.
    async fn resync_sheet_rows(
        &self,
        at: FormTab<'_>,
        found: &[(String, i32)],
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let recorded: Vec<String> = sqlx::query_scalar(
            "SELECT response_id FROM sheet_rows WHERE spreadsheet_id = ? AND tab = ? FOR UPDATE",
        )
        .bind(at.spreadsheet_id)
        .bind(at.tab)
        .fetch_all(&mut *tx)
        .await?;
        let found_ids: HashSet<&str> = found.iter().map(|(id, _)| id.as_str()).collect();
        let gone: Vec<&str> = recorded
            .iter()
            .map(String::as_str)
            .filter(|id| !found_ids.contains(id))
            .collect();
        for run in self.runs(&gone, 1, |_| 0)? {
            let mut query = QueryBuilder::<MySql>::new("DELETE FROM sheet_rows");
            push_tab_rows(&mut query, at, run.iter().copied());
            query.build().execute(&mut *tx).await?;
        }
        for run in self.runs(found, 6, |(id, _)| id.len())? {
            let mut query = QueryBuilder::<MySql>::new(
                "INSERT INTO sheet_rows (spreadsheet_id, tab, form_id, response_id, `row_number`,
                     revision) ",
            );
            query.push_values(run, |mut row, (id, row_number)| {
                row.push_bind(at.spreadsheet_id)
                    .push_bind(at.tab)
                    .push_bind(at.form_id.as_str())
                    .push_bind(id.as_str())
                    .push_bind(*row_number)
                    .push_bind(-1_i64);
            });
            query.push(" ON DUPLICATE KEY UPDATE `row_number` = VALUES(`row_number`)");
            query.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(gone.len() as u64)
    }

    async fn record_written(
        &self,
        at: FormTab<'_>,
        batch: BatchWritten<'_>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for (first, count) in batch.inserted {
            sqlx::query(
                "UPDATE sheet_rows SET `row_number` = `row_number` + ?
                 WHERE spreadsheet_id = ? AND tab = ? AND `row_number` >= ?",
            )
            .bind(count)
            .bind(at.spreadsheet_id)
            .bind(at.tab)
            .bind(first)
            .execute(&mut *tx)
            .await?;
        }
        for run in self.runs(batch.rows, 6, |(id, _, _)| id.len())? {
            let mut query = QueryBuilder::<MySql>::new(
                "INSERT INTO sheet_rows (spreadsheet_id, tab, form_id, response_id, `row_number`,
                     revision) ",
            );
            query.push_values(run, |mut row, (id, row_number, revision)| {
                row.push_bind(at.spreadsheet_id)
                    .push_bind(at.tab)
                    .push_bind(at.form_id.as_str())
                    .push_bind(id.as_str())
                    .push_bind(*row_number)
                    .push_bind(*revision);
            });
            query.push(
                " ON DUPLICATE KEY UPDATE `row_number` = VALUES(`row_number`),
                     revision = VALUES(revision), written_at = CURRENT_TIMESTAMP(6)",
            );
            query.build().execute(&mut *tx).await?;
        }
        self.take_from_outbox(&mut tx, at.form_id, batch.done)
            .await?;
        let ids: Vec<&str> = batch.rows.iter().map(|(id, _, _)| id.as_str()).collect();
        for run in self.runs(&ids, 1, |_| 0)? {
            let mut query = QueryBuilder::<MySql>::new("DELETE FROM sheet_parked WHERE form_id = ");
            query
                .push_bind(at.form_id.as_str())
                .push(" AND response_id IN ");
            push_list(&mut query, run.iter().copied());
            query.build().execute(&mut *tx).await?;
        }
        Ok(tx.commit().await?)
    }

    async fn park_rows(&self, at: FormTab<'_>, parked: &[ParkRow]) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let before: Vec<(String, DateTime<Utc>)> = parked
            .iter()
            .map(|p| (p.response_id.clone(), p.enqueued_at))
            .collect();
        let taken = self.take_from_outbox(&mut tx, at.form_id, &before).await?;
        let taken: Vec<&ParkRow> = parked
            .iter()
            .filter(|p| taken.contains(p.response_id.as_str()))
            .collect();
        for run in self.runs(&taken, 7, |p| p.reason.len() + p.response_id.len())? {
            let mut query = QueryBuilder::<MySql>::new(
                "INSERT INTO sheet_parked (form_id, response_id, spreadsheet_id, tab, revision,
                     reason, parked_at) ",
            );
            query.push_values(run, |mut row, p| {
                row.push_bind(at.form_id.as_str())
                    .push_bind(p.response_id.as_str())
                    .push_bind(at.spreadsheet_id)
                    .push_bind(at.tab)
                    .push_bind(p.revision)
                    .push_bind(p.reason.as_str())
                    .push_bind(Utc::now().naive_utc());
            });
            query.push(
                " ON DUPLICATE KEY UPDATE spreadsheet_id = VALUES(spreadsheet_id),
                     tab = VALUES(tab), revision = VALUES(revision), reason = VALUES(reason),
                     parked_at = VALUES(parked_at)",
            );
            query.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(taken.len() as u64)
    }

    async fn lock_session(&self) -> Result<Box<dyn TabLocks>, StoreError> {
        Ok(Box::new(MySqlTabLocks(self.pool.acquire().await?)))
    }
}

impl MySqlStore {
    /// Takes responses off the outbox unless they were queued again after the given time
    /// (a newer revision, which stays); returns the ids taken.
    async fn take_from_outbox(
        &self,
        tx: &mut sqlx::Transaction<'_, MySql>,
        form_id: &FormId,
        enqueued_before: &[(String, DateTime<Utc>)],
    ) -> Result<HashSet<String>, StoreError> {
        let before: HashMap<&str, DateTime<Utc>> = enqueued_before
            .iter()
            .map(|(id, at)| (id.as_str(), *at))
            .collect();
        let ids: Vec<&str> = before.keys().copied().collect();
        let mut taken = HashSet::new();
        for run in self.runs(&ids, 1, |_| 0)? {
            let mut query = QueryBuilder::<MySql>::new(
                "SELECT response_id, enqueued_at FROM sheet_outbox WHERE form_id = ",
            );
            query
                .push_bind(form_id.as_str())
                .push(" AND response_id IN ");
            push_list(&mut query, run.iter().copied());
            query.push(" FOR UPDATE");
            for row in query.build().fetch_all(&mut **tx).await? {
                let id: String = row.try_get("response_id")?;
                let at: DateTime<Utc> = row.try_get("enqueued_at")?;
                if before.get(id.as_str()).is_some_and(|limit| at <= *limit) {
                    taken.insert(id);
                }
            }
        }
        let taken_ids: Vec<&str> = taken.iter().map(String::as_str).collect();
        for run in self.runs(&taken_ids, 1, |_| 0)? {
            let mut query = QueryBuilder::<MySql>::new("DELETE FROM sheet_outbox WHERE form_id = ");
            query
                .push_bind(form_id.as_str())
                .push(" AND response_id IN ");
            push_list(&mut query, run.iter().copied());
            query.build().execute(&mut **tx).await?;
        }
        Ok(taken)
    }
}

/// `(form_id, response_id)` pairs as `(form_id = ? AND response_id = ?) OR …`.
fn push_pairs(query: &mut QueryBuilder<MySql>, keys: &[(&str, &str)]) {
    query.push("(");
    for (n, (form, id)) in keys.iter().enumerate() {
        if n > 0 {
            query.push(" OR ");
        }
        query
            .push("(form_id = ")
            .push_bind(*form)
            .push(" AND response_id = ")
            .push_bind(*id)
            .push(")");
    }
    query.push(")");
}

/// Tab locks as named locks, on a pooled connection of their own.
struct MySqlTabLocks(PoolConnection<MySql>);

#[async_trait::async_trait]
impl TabLocks for MySqlTabLocks {
    /// The name is a hash of the database, the spreadsheet and the tab (a name may have 64
    /// characters). Taking a lock the session holds again succeeds.
    async fn try_lock_tab(&mut self, spreadsheet_id: &str, tab: &str) -> Result<bool, StoreError> {
        let got: Option<i64> = sqlx::query_scalar(
            "SELECT GET_LOCK(CONCAT('collect-tab:', SHA1(CONCAT_WS(':', DATABASE(),
                 LENGTH(?), ?, ?))), 0)",
        )
        .bind(spreadsheet_id)
        .bind(spreadsheet_id)
        .bind(tab)
        .fetch_one(&mut *self.0)
        .await?;
        Ok(got == Some(1))
    }

    async fn alive(&mut self) -> Result<(), StoreError> {
        Ok(self.0.ping().await?)
    }

    fn discard(mut self: Box<Self>) {
        self.0.close_on_drop();
    }
}

/// ` WHERE` the rows of a tab recorded for these responses of a form.
fn push_tab_rows<'a>(
    query: &mut QueryBuilder<MySql>,
    at: FormTab<'a>,
    response_ids: impl IntoIterator<Item = &'a str>,
) {
    query
        .push(" WHERE spreadsheet_id = ")
        .push_bind(at.spreadsheet_id)
        .push(" AND tab = ")
        .push_bind(at.tab)
        .push(" AND form_id = ")
        .push_bind(at.form_id.as_str())
        .push(" AND response_id IN ");
    push_list(query, response_ids);
}
