//! A collector's flag history: every `flagged` and `cleared` event, read with a cursor.

use sqlx::Row;
use sqlx::types::Json;

use super::Store;
use crate::messages::{
    Collector, FlagEvent, FlagEventKind, FlagSummary, FormId, ResponseId, Revision, UserId,
};

/// Where a reader of the history is: after the event `(txid, event_id)`. Written
/// `<txid>.<event_id>`; `0.0` is before the first event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlagCursor {
    txid: u64,
    event_id: i64,
}

impl FlagCursor {
    pub fn parse(text: &str) -> Option<Self> {
        let (txid, event_id) = text.split_once('.')?;
        Some(Self {
            txid: txid.parse().ok()?,
            event_id: event_id.parse().ok().filter(|id: &i64| *id >= 0)?,
        })
    }
}

impl std::fmt::Display for FlagCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.txid, self.event_id)
    }
}

/// Events after a cursor, oldest first, and the cursor to ask from next.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagHistoryPage {
    pub events: Vec<(FlagCursor, FlagEvent)>,
    /// After the last event of the page; the given cursor when the page is empty.
    pub next: FlagCursor,
}

impl Store {
    /// The collector's flag events after `since`, at most `limit`. Only events of transactions
    /// older than every transaction still running are read, so no event can ever appear later
    /// behind a cursor already handed out.
    pub async fn flag_history(
        &self,
        user_id: &UserId,
        since: FlagCursor,
        limit: i64,
    ) -> Result<FlagHistoryPage, sqlx::Error> {
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
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            let decode =
                |error: crate::messages::InvalidIdentifier| sqlx::Error::Decode(Box::new(error));
            let cursor = FlagCursor {
                txid: row
                    .try_get::<String, _>("txid")?
                    .parse()
                    .map_err(|error| sqlx::Error::Decode(Box::new(error)))?,
                event_id: row.try_get("event_id")?,
            };
            let kind = match row.try_get::<&str, _>("kind")? {
                "flagged" => FlagEventKind::Flagged,
                "cleared" => FlagEventKind::Cleared,
                other => {
                    return Err(sqlx::Error::Decode(
                        format!("unknown flag event kind {other:?}").into(),
                    ));
                }
            };
            let Json(flags): Json<Vec<FlagSummary>> = row.try_get("flags")?;
            let Json(answers) = row.try_get("answers")?;
            let event = FlagEvent {
                kind,
                response_id: ResponseId::parse(row.try_get::<String, _>("response_id")?)
                    .map_err(decode)?,
                form_id: FormId::parse(row.try_get::<String, _>("form_id")?).map_err(decode)?,
                revision: Revision(row.try_get::<i64, _>("revision")? as u64),
                collector: Collector {
                    user_id: UserId::parse(row.try_get::<String, _>("user_id")?).map_err(decode)?,
                    username: row.try_get("username")?,
                },
                flags,
                answers,
                at: row.try_get("at")?,
            };
            events.push((cursor, event));
        }
        let next = events.last().map_or(since, |(cursor, _)| *cursor);
        Ok(FlagHistoryPage { events, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_read_back_as_written() {
        let cursor = FlagCursor {
            txid: 7451,
            event_id: 12,
        };
        assert_eq!(cursor.to_string(), "7451.12");
        assert_eq!(FlagCursor::parse("7451.12"), Some(cursor));
        assert_eq!(FlagCursor::parse("0.0"), Some(FlagCursor::default()));
        for bad in ["", "7451", "a.1", "1.-2", "1.2.3", "-1.2"] {
            assert_eq!(FlagCursor::parse(bad), None, "{bad}");
        }
    }
}
