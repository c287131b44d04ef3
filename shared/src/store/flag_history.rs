//! A collector's flag history: every `flagged` and `cleared` event, read with a cursor.

use crate::messages::{FlagEvent, UserId};
use crate::store::StoreError;

/// Where a reader of the history is: after the event `(txid, event_id)`, where `txid` orders
/// the transactions that wrote events (each engine says how) and `event_id` the events of one.
/// Written `<txid>.<event_id>`; `0.0` is before the first event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlagCursor {
    pub(crate) txid: u64,
    pub(crate) event_id: i64,
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
    /// Events after `next` are committed but not shown yet (on PostgreSQL, until every older
    /// transaction has ended): read again soon.
    pub held_back: bool,
}

/// The flag history.
#[async_trait::async_trait]
pub trait FlagHistoryStore {
    /// The collector's flag events after `since`, at most `limit`, oldest first. An event can
    /// never appear later behind a cursor already handed out: each engine reads only events
    /// whose place in the order is final.
    async fn flag_history(
        &self,
        user_id: &UserId,
        since: FlagCursor,
        limit: i64,
    ) -> Result<FlagHistoryPage, StoreError>;
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
