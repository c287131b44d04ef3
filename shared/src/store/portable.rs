//! The statements both engines run as written, and their plumbing, once.
//!
//! A portable statement is written in MySQL's dialect (`?` placeholders, identifiers quoted
//! with backticks) and [`statement!`] derives PostgreSQL's text from it at compile time: each
//! `?` outside a quoted string becomes `$1`, `$2`, … and each backtick a double quote. Each
//! engine runs a [`Statement`] through [`Run`], in its own pool; the methods of [`Portable`]
//! are written once over it, and every engine that can [`Run`] has them.
//!
//! What each engine writes in its own SQL (multi-row writes, upserts, row comparisons, locks)
//! stays in its module ([`super::postgres`], [`super::mysql`]).

use chrono::{DateTime, Utc};

use crate::messages::{FormId, ResponseId, StoredResponse, UserId};
use crate::store::StoreError;
use crate::store::columns::{self, Columns};
use crate::store::forms::{FormSheet, StoredForm};
use crate::store::responses::{FlaggedCursor, SheetPosition};
use crate::store::sheet_status::{REPORT_FRESH_SECONDS, SheetState};
use crate::store::sheets::{ParkedRow, PendingForm, PendingRow};
use crate::store::webhooks::{
    DeliveryPage, DeliveryQuery, DeliveryState, FailedAttempt, Webhook, WebhookId, is_delivery_id,
    kept_error,
};

/// One statement in each engine's dialect: derived from MySQL's by [`statement!`], or both
/// written out where the dialects differ in more than placeholders and quotes (the binds are
/// the same).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Statement {
    pub(crate) mysql: &'static str,
    pub(crate) postgres: &'static str,
}

/// The [`Statement`] of a text in MySQL's dialect: PostgreSQL's text is derived from it at
/// compile time.
macro_rules! statement {
    ($mysql:expr) => {{
        const MYSQL: &str = $mysql;
        const LEN: usize = $crate::store::portable::postgres_len(MYSQL);
        const BYTES: [u8; LEN] = $crate::store::portable::postgres::<LEN>(MYSQL);
        const STATEMENT: $crate::store::portable::Statement = $crate::store::portable::Statement {
            mysql: MYSQL,
            postgres: match ::core::str::from_utf8(&BYTES) {
                Ok(text) => text,
                Err(_) => panic!("a statement is not UTF-8"),
            },
        };
        STATEMENT
    }};
}

/// The length of `mysql` in PostgreSQL's dialect.
pub(crate) const fn postgres_len(mysql: &str) -> usize {
    let bytes = mysql.as_bytes();
    let (mut i, mut len, mut placeholders, mut quoted) = (0, 0, 0, false);
    while i < bytes.len() {
        if bytes[i] == b'\'' {
            quoted = !quoted;
        }
        if bytes[i] == b'?' && !quoted {
            placeholders += 1;
            len += 1 + digits(placeholders);
        } else {
            len += 1;
        }
        i += 1;
    }
    len
}

/// `mysql` in PostgreSQL's dialect, `LEN` ([`postgres_len`]) bytes long.
pub(crate) const fn postgres<const LEN: usize>(mysql: &str) -> [u8; LEN] {
    let bytes = mysql.as_bytes();
    let mut out = [0u8; LEN];
    let (mut i, mut o, mut placeholders, mut quoted) = (0, 0, 0, false);
    while i < bytes.len() {
        let byte = bytes[i];
        if byte == b'\'' {
            quoted = !quoted;
        }
        if byte == b'?' && !quoted {
            placeholders += 1;
            out[o] = b'$';
            let width = digits(placeholders);
            let (mut rest, mut place) = (placeholders, width);
            while place > 0 {
                out[o + place] = b'0' + (rest % 10) as u8;
                rest /= 10;
                place -= 1;
            }
            o += 1 + width;
        } else {
            out[o] = if byte == b'`' && !quoted { b'"' } else { byte };
            o += 1;
        }
        i += 1;
    }
    assert!(o == LEN, "postgres_len disagrees with postgres");
    out
}

const fn digits(mut n: usize) -> usize {
    let mut width = 1;
    while n >= 10 {
        n /= 10;
        width += 1;
    }
    width
}

/// A value bound to a portable statement.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Arg<'a> {
    Text(&'a str),
    OptionalText(Option<&'a str>),
    Int(i32),
    OptionalInt(Option<i32>),
    BigInt(i64),
    /// Bound as each engine keeps times (PostgreSQL's `timestamptz`, MySQL's UTC `DATETIME`).
    Time(DateTime<Utc>),
    /// Bound as [`Arg::Time`] is.
    OptionalTime(Option<DateTime<Utc>>),
}

/// Runs a [`Statement`] in an engine's pool: the plumbing of the [`Portable`] methods.
#[async_trait::async_trait]
pub(crate) trait Run: Send + Sync {
    type Row: Columns + Send;

    async fn rows(
        &self,
        statement: Statement,
        args: &[Arg<'_>],
    ) -> Result<Vec<Self::Row>, StoreError>;

    /// Reads the statement's rows in order, handing each to `keep`, and stops after the first
    /// for which `keep` answers false: the rows after it are never decoded nor held.
    async fn rows_until(
        &self,
        statement: Statement,
        args: &[Arg<'_>],
        keep: &mut (dyn for<'r> FnMut(&'r Self::Row) -> Result<bool, StoreError> + Send),
    ) -> Result<(), StoreError>;

    /// The first row, for a statement that returns at most one.
    async fn row(
        &self,
        statement: Statement,
        args: &[Arg<'_>],
    ) -> Result<Option<Self::Row>, StoreError> {
        Ok(self.rows(statement, args).await?.into_iter().next())
    }

    /// Returns how many rows the statement changed.
    async fn execute(&self, statement: Statement, args: &[Arg<'_>]) -> Result<u64, StoreError>;
}

/// Implements [`Run`] for an engine's store (with a `pool` field) on the engine `$db`,
/// running each statement in the engine's dialect (`mysql` or `postgres`), with times bound as
/// `$time` makes them.
macro_rules! run_on {
    ($store:ty, $db:ty, $dialect:ident, $time:expr) => {
        const _: () = {
            use $crate::store::StoreError;
            use $crate::store::portable::{Arg, Run, Statement, bind};
            type Row = <$db as sqlx::Database>::Row;
            type Query<'q> = sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments>;

            fn query<'q>(statement: Statement, args: &[Arg<'q>]) -> Query<'q> {
                bind(sqlx::query(statement.$dialect), args, $time)
            }

            #[async_trait::async_trait]
            impl Run for $store {
                type Row = Row;

                async fn rows(
                    &self,
                    sql: Statement,
                    args: &[Arg<'_>],
                ) -> Result<Vec<Row>, StoreError> {
                    Ok(query(sql, args).fetch_all(&self.pool).await?)
                }

                async fn rows_until(
                    &self,
                    sql: Statement,
                    args: &[Arg<'_>],
                    keep: &mut (dyn for<'r> FnMut(&'r Row) -> Result<bool, StoreError> + Send),
                ) -> Result<(), StoreError> {
                    use futures::TryStreamExt;
                    // Dropping the stream early leaves the rest of the result to sqlx, which
                    // discards it before the connection's next statement.
                    let mut rows = query(sql, args).fetch(&self.pool);
                    while let Some(row) = rows.try_next().await? {
                        if !keep(&row)? {
                            break;
                        }
                    }
                    Ok(())
                }

                async fn execute(
                    &self,
                    sql: Statement,
                    args: &[Arg<'_>],
                ) -> Result<u64, StoreError> {
                    Ok(query(sql, args).execute(&self.pool).await?.rows_affected())
                }
            }
        };
    };
}
pub(crate) use run_on;

/// Binds `args` to `query`, in order, each time as `time` makes it.
pub(crate) fn bind<'q, DB, T>(
    mut query: sqlx::query::Query<'q, DB, DB::Arguments>,
    args: &[Arg<'q>],
    time: fn(DateTime<Utc>) -> T,
) -> sqlx::query::Query<'q, DB, DB::Arguments>
where
    DB: sqlx::Database,
    &'q str: for<'e> sqlx::Encode<'e, DB> + sqlx::Type<DB>,
    i32: for<'e> sqlx::Encode<'e, DB> + sqlx::Type<DB>,
    i64: for<'e> sqlx::Encode<'e, DB> + sqlx::Type<DB>,
    Option<&'static str>: for<'e> sqlx::Encode<'e, DB> + sqlx::Type<DB>,
    Option<i32>: for<'e> sqlx::Encode<'e, DB> + sqlx::Type<DB>,
    T: 'q + for<'e> sqlx::Encode<'e, DB> + sqlx::Type<DB>,
    Option<T>: 'q + for<'e> sqlx::Encode<'e, DB> + sqlx::Type<DB>,
{
    for &arg in args {
        query = match arg {
            Arg::Text(text) => query.bind(text),
            Arg::OptionalText(Some(text)) => query.bind(text),
            // `Option<&'q str>` for any `'q` would ask for `'static` (a limit of the trait
            // solver), and a NULL borrows nothing.
            Arg::OptionalText(None) => query.bind(None::<&'static str>),
            Arg::Int(n) => query.bind(n),
            Arg::OptionalInt(n) => query.bind(n),
            Arg::BigInt(n) => query.bind(n),
            Arg::Time(at) => query.bind(time(at)),
            Arg::OptionalTime(at) => query.bind(at.map(time)),
        };
    }
    query
}

/// The webhooks with their delivery counts (`pending`, `delivered`, `dead`), aliased `w`.
macro_rules! select_webhooks {
    () => {
        "SELECT w.id, w.url, w.form_id, w.user_ids, w.secret, w.created_at, w.updated_at,
             (SELECT COUNT(*) FROM webhook_deliveries d
              WHERE d.webhook_id = w.id AND d.state = 'pending') AS pending,
             (SELECT COUNT(*) FROM webhook_deliveries d
              WHERE d.webhook_id = w.id AND d.state = 'delivered') AS delivered,
             (SELECT COUNT(*) FROM webhook_deliveries d
              WHERE d.webhook_id = w.id AND d.state = 'dead') AS dead
         FROM webhooks w"
    };
}

/// The webhook with this id (one `?`), as [`columns::webhook`] reads it.
pub(crate) const WEBHOOK_BY_ID: Statement =
    statement!(concat!(select_webhooks!(), " WHERE w.id = ?"));

/// What the store does the same way on every engine (see the [module](self)).
#[async_trait::async_trait]
pub trait Portable {
    async fn form(&self, form_id: &FormId) -> Result<Option<StoredForm>, StoreError>;

    async fn form_version(&self, form_id: &FormId) -> Result<Option<i32>, StoreError>;

    /// Every form's spreadsheet and tab, the oldest form first (then by id): which form a tab
    /// is, when two name it ([`FormSheet::tab_owners`]).
    async fn form_sheets(&self) -> Result<Vec<FormSheet>, StoreError>;

    /// A form's response, at its latest revision.
    async fn response(
        &self,
        form_id: &FormId,
        response_id: &ResponseId,
    ) -> Result<Option<StoredResponse>, StoreError>;

    /// The responses of any form with this id, at most `limit` (for the route that names no
    /// form), in form order.
    async fn responses_with_id(
        &self,
        response_id: &ResponseId,
        limit: i64,
    ) -> Result<Vec<StoredResponse>, StoreError>;

    /// The collector's responses that are flagged now (latest revision), after `after` in
    /// the order (`stored_at`, `form_id`, `response_id`), at most `limit`.
    async fn flagged_for_collector(
        &self,
        user_id: &UserId,
        after: &FlaggedCursor,
        limit: i64,
    ) -> Result<Vec<StoredResponse>, StoreError>;

    /// Where a form's response was last written in a sheet, if it was.
    async fn sheet_position(
        &self,
        form_id: &FormId,
        response_id: &ResponseId,
    ) -> Result<Option<SheetPosition>, StoreError>;

    /// The forms with responses waiting, the longest-waiting first.
    async fn pending_forms(&self) -> Result<Vec<PendingForm>, StoreError>;

    /// Up to `limit` waiting responses of a form, oldest first, as stored now, ending with
    /// the one that brings their documents to `max_bytes` or more (so at least one): what is
    /// held stays within about `max_bytes` plus one response, however large the responses.
    async fn pending_rows(
        &self,
        form_id: &FormId,
        limit: i64,
        max_bytes: usize,
    ) -> Result<Vec<PendingRow>, StoreError>;

    /// How many rows of a tab `sheet_rows` records.
    async fn sheet_row_count(&self, spreadsheet_id: &str, tab: &str) -> Result<i64, StoreError>;

    /// Forgets every row recorded for a tab (the tab was deleted, renamed or emptied); returns
    /// how many.
    async fn forget_tab(&self, spreadsheet_id: &str, tab: &str) -> Result<u64, StoreError>;

    /// Why the response's row is not in its sheet, when the sheet refused it (`None` when it is
    /// written, waiting, or was never refused).
    async fn sheet_parked(
        &self,
        form_id: &FormId,
        response_id: &ResponseId,
    ) -> Result<Option<ParkedRow>, StoreError>;

    /// How many responses are parked (all forms).
    async fn parked_count(&self) -> Result<i64, StoreError>;

    /// The form's sheet as last reported, with its waiting and parked rows.
    async fn sheet_state(&self, form_id: &FormId) -> Result<SheetState, StoreError>;

    async fn get_webhook(&self, id: &WebhookId) -> Result<Option<Webhook>, StoreError>;

    /// Every webhook, by id.
    async fn list_webhooks(&self) -> Result<Vec<Webhook>, StoreError>;

    /// Deletes the webhook and its deliveries; false when there was none.
    async fn delete_webhook(&self, id: &WebhookId) -> Result<bool, StoreError>;

    /// The webhook's deliveries the query asks for, oldest first (by `created_at`, then
    /// delivery id).
    async fn list_deliveries(
        &self,
        webhook_id: &WebhookId,
        query: &DeliveryQuery,
    ) -> Result<DeliveryPage, StoreError>;

    /// Records a delivery's success (HTTP `status`): delivered, one more attempt. False when
    /// there is no such delivery, or it was delivered already.
    async fn delivery_succeeded(
        &self,
        webhook_id: &WebhookId,
        delivery_id: &str,
        status: u16,
    ) -> Result<bool, StoreError>;

    /// Records a failed attempt (the error is kept to
    /// [`MAX_ERROR_CHARS`](super::MAX_ERROR_CHARS)): pending again at its `retry_at`, or dead
    /// when `None`. False when there is no such delivery, or it is no longer pending (another
    /// attempt delivered it meanwhile).
    async fn delivery_failed(
        &self,
        webhook_id: &WebhookId,
        delivery_id: &str,
        attempt: FailedAttempt<'_>,
    ) -> Result<bool, StoreError>;

    /// A dead or delivered delivery pending again, due now, with no attempts (a replay once
    /// the receiver is fixed); a pending one is left as it is (it may be being delivered).
    /// False when there is no such delivery.
    async fn redeliver(
        &self,
        webhook_id: &WebhookId,
        delivery_id: &str,
    ) -> Result<bool, StoreError>;

    /// A trivial query.
    async fn ping(&self) -> Result<(), StoreError>;
}

#[async_trait::async_trait]
impl<S: Run> Portable for S {
    async fn form(&self, form_id: &FormId) -> Result<Option<StoredForm>, StoreError> {
        let sql = statement!("SELECT version, definition FROM forms WHERE form_id = ?");
        let row = self.row(sql, &[Arg::Text(form_id.as_str())]).await?;
        row.map(|row| columns::stored_form(&row, form_id))
            .transpose()
    }

    async fn form_version(&self, form_id: &FormId) -> Result<Option<i32>, StoreError> {
        let sql = statement!("SELECT version FROM forms WHERE form_id = ?");
        let row = self.row(sql, &[Arg::Text(form_id.as_str())]).await?;
        Ok(row.map(|row| row.int("version")).transpose()?)
    }

    async fn form_sheets(&self) -> Result<Vec<FormSheet>, StoreError> {
        let sql = statement!(
            "SELECT form_id, version, definition, created_at FROM forms
             ORDER BY created_at, form_id"
        );
        let rows = self.rows(sql, &[]).await?;
        rows.iter().map(columns::form_sheet).collect()
    }

    async fn response(
        &self,
        form_id: &FormId,
        response_id: &ResponseId,
    ) -> Result<Option<StoredResponse>, StoreError> {
        let sql = statement!("SELECT * FROM responses WHERE form_id = ? AND response_id = ?");
        let args = [Arg::Text(form_id.as_str()), Arg::Text(response_id.as_str())];
        let row = self.row(sql, &args).await?;
        row.map(|row| columns::response(&row).map(|(stored, _)| stored))
            .transpose()
    }

    async fn responses_with_id(
        &self,
        response_id: &ResponseId,
        limit: i64,
    ) -> Result<Vec<StoredResponse>, StoreError> {
        let sql =
            statement!("SELECT * FROM responses WHERE response_id = ? ORDER BY form_id LIMIT ?");
        let rows = self
            .rows(sql, &[Arg::Text(response_id.as_str()), Arg::BigInt(limit)])
            .await?;
        columns::responses(&rows)
    }

    /// The cursor is compared column by column, the way MySQL uses an index for it, with
    /// `stored_at >= ?` first to bound the range on both engines.
    async fn flagged_for_collector(
        &self,
        user_id: &UserId,
        after: &FlaggedCursor,
        limit: i64,
    ) -> Result<Vec<StoredResponse>, StoreError> {
        let sql = statement!(
            "SELECT * FROM responses
             WHERE user_id = ? AND status = 'flagged' AND stored_at >= ?
               AND (stored_at > ? OR (stored_at = ? AND (form_id > ?
                    OR (form_id = ? AND response_id > ?))))
             ORDER BY stored_at, form_id, response_id
             LIMIT ?"
        );
        let at = Arg::Time(after.stored_at);
        let (form, response) = (Arg::Text(&after.form_id), Arg::Text(&after.response_id));
        let user = Arg::Text(user_id.as_str());
        let args = [user, at, at, at, form, form, response, Arg::BigInt(limit)];
        let rows = self.rows(sql, &args).await?;
        columns::responses(&rows)
    }

    async fn sheet_position(
        &self,
        form_id: &FormId,
        response_id: &ResponseId,
    ) -> Result<Option<SheetPosition>, StoreError> {
        let sql = statement!(
            "SELECT spreadsheet_id, tab, `row_number` FROM sheet_rows
             WHERE form_id = ? AND response_id = ? ORDER BY written_at DESC LIMIT 1"
        );
        let args = [Arg::Text(form_id.as_str()), Arg::Text(response_id.as_str())];
        let row = self.row(sql, &args).await?;
        row.as_ref().map(columns::position).transpose()
    }

    async fn pending_forms(&self) -> Result<Vec<PendingForm>, StoreError> {
        let sql = Statement {
            mysql: "SELECT form_id, COUNT(*) AS waiting,
                        TIMESTAMPDIFF(MICROSECOND, MIN(enqueued_at), SYSDATE(6)) / 1e6 AS oldest_age
                    FROM sheet_outbox GROUP BY form_id ORDER BY MIN(enqueued_at)",
            postgres: "SELECT form_id, count(*) AS waiting,
                        EXTRACT(EPOCH FROM clock_timestamp() - min(enqueued_at))::float8 AS oldest_age
                    FROM sheet_outbox GROUP BY form_id ORDER BY min(enqueued_at)",
        };
        let rows = self.rows(sql, &[]).await?;
        rows.iter().map(columns::pending_form).collect()
    }

    async fn pending_rows(
        &self,
        form_id: &FormId,
        limit: i64,
        max_bytes: usize,
    ) -> Result<Vec<PendingRow>, StoreError> {
        let sql = statement!(
            // The oldest markers first, then their responses by primary key: joined the
            // other way round, PostgreSQL's planner (with statistics behind a fast load) read
            // every response of the form for each batch, which made a backlog quadratic.
            "SELECT r.*, o.`force` AS `force`, o.enqueued_at AS enqueued_at
             FROM (SELECT * FROM sheet_outbox WHERE form_id = ?
                   ORDER BY enqueued_at, response_id LIMIT ?) AS o
             JOIN responses r ON r.form_id = o.form_id AND r.response_id = o.response_id
             ORDER BY o.enqueued_at, o.response_id"
        );
        let (mut rows, mut bytes) = (Vec::new(), 0);
        let args = [Arg::Text(form_id.as_str()), Arg::BigInt(limit)];
        self.rows_until(sql, &args, &mut |row| {
            let pending = columns::pending_row(row)?;
            bytes += pending.document_bytes;
            rows.push(pending);
            Ok(bytes < max_bytes)
        })
        .await?;
        Ok(rows)
    }

    async fn sheet_row_count(&self, spreadsheet_id: &str, tab: &str) -> Result<i64, StoreError> {
        let sql =
            statement!("SELECT COUNT(*) AS n FROM sheet_rows WHERE spreadsheet_id = ? AND tab = ?");
        count(self, sql, &[Arg::Text(spreadsheet_id), Arg::Text(tab)]).await
    }

    async fn forget_tab(&self, spreadsheet_id: &str, tab: &str) -> Result<u64, StoreError> {
        let sql = statement!("DELETE FROM sheet_rows WHERE spreadsheet_id = ? AND tab = ?");
        self.execute(sql, &[Arg::Text(spreadsheet_id), Arg::Text(tab)])
            .await
    }

    async fn sheet_parked(
        &self,
        form_id: &FormId,
        response_id: &ResponseId,
    ) -> Result<Option<ParkedRow>, StoreError> {
        let sql = statement!(
            "SELECT spreadsheet_id, tab, revision, reason, parked_at FROM sheet_parked
             WHERE form_id = ? AND response_id = ?"
        );
        let args = [Arg::Text(form_id.as_str()), Arg::Text(response_id.as_str())];
        let row = self.row(sql, &args).await?;
        row.as_ref().map(columns::parked).transpose()
    }

    async fn parked_count(&self) -> Result<i64, StoreError> {
        count(
            self,
            statement!("SELECT COUNT(*) AS n FROM sheet_parked"),
            &[],
        )
        .await
    }

    async fn sheet_state(&self, form_id: &FormId) -> Result<SheetState, StoreError> {
        let sql = Statement {
            mysql: "SELECT s.spreadsheet_id, s.tab, s.reason, s.about_this_sheet, s.failing_since,
                        (SELECT COUNT(*) FROM sheet_outbox o WHERE o.form_id = ?) AS waiting,
                        (SELECT COUNT(*) FROM sheet_parked p WHERE p.form_id = ?) AS parked
                    FROM (SELECT 1 AS one) AS one
                    LEFT JOIN sheet_status s
                      ON s.form_id = ? AND s.updated_at > CURRENT_TIMESTAMP(6) - INTERVAL ? SECOND",
            postgres:
                "SELECT s.spreadsheet_id, s.tab, s.reason, s.about_this_sheet, s.failing_since,
                        (SELECT count(*) FROM sheet_outbox o WHERE o.form_id = $1) AS waiting,
                        (SELECT count(*) FROM sheet_parked p WHERE p.form_id = $2) AS parked
                    FROM (SELECT 1) AS one
                    LEFT JOIN sheet_status s
                      ON s.form_id = $3 AND s.updated_at > now() - make_interval(secs => $4)",
        };
        let form = Arg::Text(form_id.as_str());
        let args = [form, form, form, Arg::BigInt(REPORT_FRESH_SECONDS)];
        let row = self.row(sql, &args).await?;
        let row = row.ok_or(StoreError::Missing)?;
        Ok(SheetState {
            failure: columns::failure(&row, form_id)?,
            rows_waiting: row.bigint("waiting")?,
            rows_parked: row.bigint("parked")?,
        })
    }

    async fn get_webhook(&self, id: &WebhookId) -> Result<Option<Webhook>, StoreError> {
        let row = self.row(WEBHOOK_BY_ID, &[Arg::Text(id.as_str())]).await?;
        row.as_ref().map(columns::webhook).transpose()
    }

    async fn list_webhooks(&self) -> Result<Vec<Webhook>, StoreError> {
        let sql = statement!(concat!(select_webhooks!(), " ORDER BY w.id"));
        let rows = self.rows(sql, &[]).await?;
        rows.iter().map(columns::webhook).collect()
    }

    async fn delete_webhook(&self, id: &WebhookId) -> Result<bool, StoreError> {
        let sql = statement!("DELETE FROM webhooks WHERE id = ?");
        Ok(self.execute(sql, &[Arg::Text(id.as_str())]).await? > 0)
    }

    /// The cursor is compared as [`Portable::flagged_for_collector`] compares it.
    async fn list_deliveries(
        &self,
        webhook_id: &WebhookId,
        query: &DeliveryQuery,
    ) -> Result<DeliveryPage, StoreError> {
        let sql = statement!(
            "SELECT * FROM webhook_deliveries
             WHERE webhook_id = ? AND (? IS NULL OR state = ?) AND created_at >= ?
               AND (created_at > ? OR (created_at = ? AND delivery_id > ?))
             ORDER BY created_at, delivery_id
             LIMIT ?"
        );
        let limit = query.limit.max(1);
        let after = query.after.clone().unwrap_or_default();
        let state = Arg::OptionalText(query.state.map(DeliveryState::as_str));
        let at = Arg::Time(after.created_at);
        let args = [
            Arg::Text(webhook_id.as_str()),
            state,
            state,
            at,
            at,
            at,
            Arg::Text(&after.delivery_id),
            Arg::BigInt(limit.saturating_add(1)),
        ];
        let rows = self.rows(sql, &args).await?;
        columns::delivery_page(&rows, limit)
    }

    async fn delivery_succeeded(
        &self,
        webhook_id: &WebhookId,
        delivery_id: &str,
        status: u16,
    ) -> Result<bool, StoreError> {
        let sql = statement!(
            "UPDATE webhook_deliveries
                SET state = 'delivered', attempts = attempts + 1,
                    last_attempt_at = CURRENT_TIMESTAMP(6), delivered_at = CURRENT_TIMESTAMP(6),
                    last_status = ?, last_error = NULL
              WHERE webhook_id = ? AND delivery_id = ? AND state <> 'delivered'"
        );
        let set = [Arg::Int(i32::from(status))];
        update_delivery(self, webhook_id, delivery_id, sql, &set).await
    }

    async fn delivery_failed(
        &self,
        webhook_id: &WebhookId,
        delivery_id: &str,
        attempt: FailedAttempt<'_>,
    ) -> Result<bool, StoreError> {
        let sql = statement!(
            "UPDATE webhook_deliveries
                SET attempts = attempts + 1, last_attempt_at = CURRENT_TIMESTAMP(6),
                    last_status = ?, last_error = ?,
                    state = CASE WHEN ? IS NULL THEN 'dead' ELSE 'pending' END,
                    next_attempt_at = COALESCE(?, next_attempt_at)
              WHERE webhook_id = ? AND delivery_id = ? AND state = 'pending'"
        );
        let error = kept_error(attempt.error);
        let set = [
            Arg::OptionalInt(attempt.status.map(i32::from)),
            Arg::Text(&error),
            Arg::OptionalTime(attempt.retry_at),
            Arg::OptionalTime(attempt.retry_at),
        ];
        update_delivery(self, webhook_id, delivery_id, sql, &set).await
    }

    async fn redeliver(
        &self,
        webhook_id: &WebhookId,
        delivery_id: &str,
    ) -> Result<bool, StoreError> {
        let sql = statement!(
            "UPDATE webhook_deliveries
                SET state = 'pending', attempts = 0, next_attempt_at = CURRENT_TIMESTAMP(6),
                    delivered_at = NULL
              WHERE webhook_id = ? AND delivery_id = ? AND state <> 'pending'"
        );
        if !is_delivery_id(delivery_id) {
            return Ok(false);
        }
        if update_delivery(self, webhook_id, delivery_id, sql, &[]).await? {
            return Ok(true);
        }
        let args = [Arg::Text(webhook_id.as_str()), Arg::Text(delivery_id)];
        let sql = statement!(
            "SELECT 1 AS one FROM webhook_deliveries WHERE webhook_id = ? AND delivery_id = ?"
        );
        Ok(self.row(sql, &args).await?.is_some())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.row(statement!("SELECT 1 AS one"), &[])
            .await
            .map(|_| ())
    }
}

/// Runs `sql`, an update of one delivery whose placeholders are the values it sets (`set`),
/// then `webhook_id = ? AND delivery_id = ?`: whether it changed the delivery (false, and
/// nothing run, when the id cannot be a delivery's).
async fn update_delivery<S: Run>(
    store: &S,
    webhook_id: &WebhookId,
    delivery_id: &str,
    sql: Statement,
    set: &[Arg<'_>],
) -> Result<bool, StoreError> {
    if !is_delivery_id(delivery_id) {
        return Ok(false);
    }
    let mut args = set.to_vec();
    args.extend([Arg::Text(webhook_id.as_str()), Arg::Text(delivery_id)]);
    Ok(store.execute(sql, &args).await? > 0)
}

/// The `n` of a `SELECT COUNT(*) AS n`.
async fn count<S: Run>(store: &S, sql: Statement, args: &[Arg<'_>]) -> Result<i64, StoreError> {
    let row = store.row(sql, args).await?;
    Ok(row.map(|row| row.bigint("n")).transpose()?.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    #[test]
    fn postgres_numbers_placeholders_and_quotes_identifiers_outside_strings() {
        let sql = statement!(
            "SELECT `row_number`, '?`' FROM t WHERE a = ? AND b = ? AND c IN (?, ?, ?, ?, ?, ?, ?, ?)"
        );
        assert_eq!(
            sql.postgres,
            "SELECT \"row_number\", '?`' FROM t WHERE a = $1 AND b = $2 AND c IN ($3, $4, $5, $6, $7, $8, $9, $10)"
        );
        assert_eq!(
            sql.mysql,
            "SELECT `row_number`, '?`' FROM t WHERE a = ? AND b = ? AND c IN (?, ?, ?, ?, ?, ?, ?, ?)"
        );
    }
}
