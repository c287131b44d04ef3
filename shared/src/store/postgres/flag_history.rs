//! The flag history in PostgreSQL: the cursor's `txid` is the writing transaction's id.

use crate::store::StoreError;
use crate::store::columns;
use sqlx::Row;

use super::PgStore;
use crate::messages::UserId;
use crate::store::flag_history::{FlagCursor, FlagHistoryPage, FlagHistoryStore};

#[async_trait::async_trait]
impl FlagHistoryStore for PgStore {
    /// Only events of transactions older than every transaction still running
    /// (`pg_snapshot_xmin`) are read: ids are taken before commit and transactions commit in
    /// any order, so a bigserial alone could let an event appear behind a cursor. A page that
    /// is not full says whether later events are committed but held back that way.
    async fn flag_history(
        &self,
        user_id: &UserId,
        since: FlagCursor,
        limit: i64,
    ) -> Result<FlagHistoryPage, StoreError> {
        let rows = sqlx::query(
            "SELECT txid::text AS txid, event_id, user_id, username, form_id, response_id,
                 revision, kind, flags, answers, at
             FROM flag_events
             WHERE user_id = $1
               AND txid < pg_snapshot_xmin(pg_current_snapshot())
               AND (txid, event_id) > ($2::text::xid8, $3)
             ORDER BY txid, event_id
             LIMIT $4",
        )
        .bind(user_id.as_str())
        .bind(since.txid.to_string())
        .bind(since.event_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut page = columns::flag_history_page(&rows, since, |row| {
            row.try_get::<String, _>("txid")?
                .parse()
                .map_err(StoreError::corrupt)
        })?;
        if (page.events.len() as i64) < limit {
            page.held_back = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM flag_events
                     WHERE user_id = $1
                       AND txid >= pg_snapshot_xmin(pg_current_snapshot())
                       AND (txid, event_id) > ($2::text::xid8, $3))",
            )
            .bind(user_id.as_str())
            .bind(page.next.txid.to_string())
            .bind(page.next.event_id)
            .fetch_one(&self.pool)
            .await?;
        }
        Ok(page)
    }
}
