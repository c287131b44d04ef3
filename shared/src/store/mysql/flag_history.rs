//! The flag history in MySQL: the cursor's `txid` is the commit sequence the saving
//! transaction took from `flag_event_clock` (see the migration), so rows become visible in
//! cursor order and a reader needs no snapshot horizon.

use crate::store::StoreError;
use crate::store::columns;
use sqlx::Row;

use super::MySqlStore;
use crate::messages::UserId;
use crate::store::flag_history::{FlagCursor, FlagHistoryPage, FlagHistoryStore};

#[async_trait::async_trait]
impl FlagHistoryStore for MySqlStore {
    async fn flag_history(
        &self,
        user_id: &UserId,
        since: FlagCursor,
        limit: i64,
    ) -> Result<FlagHistoryPage, StoreError> {
        let rows = sqlx::query(
            "SELECT txid, event_id, user_id, username, form_id, response_id, revision, kind,
                 flags, answers, at
             FROM flag_events
             WHERE user_id = ? AND (txid > ? OR (txid = ? AND event_id > ?))
             ORDER BY txid, event_id
             LIMIT ?",
        )
        .bind(user_id.as_str())
        .bind(since.txid)
        .bind(since.txid)
        .bind(since.event_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        columns::flag_history_page(&rows, since, |row| Ok(row.try_get("txid")?))
    }
}
