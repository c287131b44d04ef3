//! The flag history in MySQL: the cursor's `txid` is the commit sequence the saving
//! transaction took from `flag_event_clock` (see the migration), so rows become visible in
//! cursor order and a reader needs no snapshot horizon.

use sqlx::Row;

use super::MySqlStore;
use super::forms::parse_json;
use crate::messages::{Collector, FlagEvent, FormId, ResponseId, Revision, UserId};
use crate::store::flag_history::{FlagCursor, FlagHistoryPage, FlagHistoryStore};
use crate::store::responses::{decode, parse_event};

#[async_trait::async_trait]
impl FlagHistoryStore for MySqlStore {
    async fn flag_history(
        &self,
        user_id: &UserId,
        since: FlagCursor,
        limit: i64,
    ) -> Result<FlagHistoryPage, sqlx::Error> {
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
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            let cursor = FlagCursor {
                txid: row.try_get("txid")?,
                event_id: row.try_get("event_id")?,
            };
            let kind = parse_event(Some(row.try_get("kind")?))?.ok_or(sqlx::Error::RowNotFound)?;
            let event = FlagEvent {
                kind,
                response_id: decode(ResponseId::parse(row.try_get::<String, _>("response_id")?))?,
                form_id: decode(FormId::parse(row.try_get::<String, _>("form_id")?))?,
                revision: Revision(row.try_get::<i64, _>("revision")? as u64),
                collector: Collector {
                    user_id: decode(UserId::parse(row.try_get::<String, _>("user_id")?))?,
                    username: row.try_get("username")?,
                },
                flags: parse_json(row.try_get("flags")?)?,
                answers: parse_json(row.try_get("answers")?)?,
                at: row.try_get("at")?,
            };
            events.push((cursor, event));
        }
        let next = events.last().map_or(since, |(cursor, _)| *cursor);
        Ok(FlagHistoryPage { events, next })
    }
}
