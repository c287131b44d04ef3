//! Responses in MySQL. Saving a batch: one locking read of the rows already stored (in key
//! order), one multi-row insert of the new ones, one multi-row upsert of the newer revisions,
//! and the flag events. MySQL has no `INSERT … RETURNING`, so the rows are read first: when
//! another transaction inserts one of the new responses in between, the insert fails on its
//! key and the whole batch is tried again (its read then waits for, and sees, that row).

use crate::store::StoreError;
use crate::store::columns;
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::mysql::MySqlRow;
use sqlx::{MySql, QueryBuilder, Transaction};

use super::{MySqlStore, is_duplicate_key, push_list};
use crate::messages::{FlagEventKind, ResponseMessage, ResponseStatus, StoredResponse};
use crate::store::responses::{NewResponse, ResponseStore, SaveOutcome, json};
use crate::store::save::{Key, Prepared, SaveDecision, key, owned_key, written_events};

/// The columns written for a response, in the order [`push_response`] binds them.
const COLUMNS: &str = "response_id, form_id, revision, form_version, user_id, username, \
     submitted_at, answers, metadata, status, flags, flag_event, received_at, stored_at";
const COLUMN_COUNT: usize = 14;

#[async_trait::async_trait]
impl ResponseStore for MySqlStore {
    async fn save_responses(
        &self,
        batch: &[NewResponse<'_>],
    ) -> Result<Vec<SaveOutcome>, StoreError> {
        let prepared = Prepared::new(batch)?;
        for new in batch {
            check_times(new.message)?;
        }
        let mut attempt = 0;
        loop {
            match self.try_save(batch, &prepared).await {
                Err(StoreError::Database(error)) if is_duplicate_key(&error) && attempt < 3 => {
                    attempt += 1
                }
                result => return result,
            }
        }
    }
}

impl MySqlStore {
    async fn try_save(
        &self,
        batch: &[NewResponse<'_>],
        prepared: &Prepared,
    ) -> Result<Vec<SaveOutcome>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let now: DateTime<Utc> = sqlx::query_scalar("SELECT CURRENT_TIMESTAMP(6)")
            .fetch_one(&mut *tx)
            .await?;

        // The rows stored already, locked in key order.
        let keys: Vec<Key<'_>> = prepared
            .order()
            .iter()
            .map(|&i| key(batch[i].message))
            .collect();
        let mut current = HashMap::new();
        for run in self.runs(&keys, 2, |_| 0)? {
            let mut query = QueryBuilder::<MySql>::new("SELECT * FROM responses WHERE ");
            push_keys(&mut query, run);
            query.push(" ORDER BY form_id, response_id FOR UPDATE");
            for row in query.build().fetch_all(&mut *tx).await? {
                let (stored, event) = from_row(&row)?;
                current.insert(
                    (stored.form_id.to_string(), stored.response_id.to_string()),
                    (stored, event),
                );
            }
        }
        let decision = prepared.decide(batch, |(form, id)| {
            current
                .get(&(form.to_owned(), id.to_owned()))
                .map(|(stored, _)| {
                    (
                        stored.revision.as_i64(),
                        stored.status == ResponseStatus::Flagged,
                    )
                })
        });

        let size = |&i: &usize| response_size(&batch[i]);
        for run in self.runs(&decision.inserts(), COLUMN_COUNT, size)? {
            let mut query =
                QueryBuilder::<MySql>::new(format!("INSERT INTO responses ({COLUMNS}) "));
            push_responses(&mut query, batch, run, &decision, now);
            query.build().execute(&mut *tx).await?;
        }
        // The rows are locked and exist: the upsert only ever updates.
        for run in self.runs(&decision.updates(), COLUMN_COUNT, size)? {
            let mut query =
                QueryBuilder::<MySql>::new(format!("INSERT INTO responses ({COLUMNS}) "));
            push_responses(&mut query, batch, run, &decision, now);
            query.push(
                " ON DUPLICATE KEY UPDATE revision = VALUES(revision),
                     form_version = VALUES(form_version), user_id = VALUES(user_id),
                     username = VALUES(username), submitted_at = VALUES(submitted_at),
                     answers = VALUES(answers), metadata = VALUES(metadata),
                     status = VALUES(status), flags = VALUES(flags),
                     flag_event = VALUES(flag_event), received_at = VALUES(received_at),
                     stored_at = VALUES(stored_at)",
            );
            query.build().execute(&mut *tx).await?;
        }
        let outcomes = decision.outcomes(
            batch,
            |_| Some(now),
            |i| current.get(&owned_key(batch[i].message)).cloned(),
        )?;
        // The transactional outbox: a written revision waits for its sheet from the moment it
        // is committed.
        self.enqueue_for_sheets(&mut tx, &decision.written_keys(batch))
            .await?;
        self.record_flag_events(&mut tx, &outcomes).await?;
        tx.commit().await?;
        Ok(outcomes)
    }

    /// Adds the flag event of each revision written now to `flag_events`, numbered with the
    /// next commit sequence (taken last: its row lock is held until the commit).
    async fn record_flag_events(
        &self,
        tx: &mut Transaction<'_, MySql>,
        outcomes: &[SaveOutcome],
    ) -> Result<(), StoreError> {
        let events = written_events(outcomes);
        if events.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "UPDATE flag_event_clock SET last_txid = LAST_INSERT_ID(last_txid + 1) WHERE id = 1",
        )
        .execute(&mut **tx)
        .await?;
        let txid: u64 = sqlx::query_scalar("SELECT LAST_INSERT_ID()")
            .fetch_one(&mut **tx)
            .await?;
        let size = |event: &crate::messages::FlagEvent| {
            json(&event.flags).len() + json(&event.answers).len()
        };
        for run in self.runs(&events, 10, size)? {
            let mut query = QueryBuilder::<MySql>::new(
                "INSERT INTO flag_events (txid, user_id, username, form_id, response_id, revision,
                     kind, flags, answers, at) ",
            );
            query.push_values(run, |mut row, event| {
                row.push_bind(txid)
                    .push_bind(event.collector.user_id.as_str())
                    .push_bind(event.collector.username.as_deref())
                    .push_bind(event.form_id.as_str())
                    .push_bind(event.response_id.as_str())
                    .push_bind(event.revision.as_i64())
                    .push_bind(event.kind.as_str())
                    .push_bind(json(&event.flags))
                    .push_bind(json(&event.answers))
                    .push_bind(event.at.naive_utc());
            });
            query.build().execute(&mut **tx).await?;
        }
        Ok(())
    }
}

/// `(form_id = ? AND response_id IN (…)) OR …`, one group per form: a range on the primary
/// key that MySQL and MariaDB both use.
fn push_keys(query: &mut QueryBuilder<MySql>, keys: &[(&str, &str)]) {
    let mut by_form: Vec<(&str, Vec<&str>)> = Vec::new();
    for &(form, id) in keys {
        match by_form.last_mut() {
            Some((last, ids)) if *last == form => ids.push(id),
            _ => by_form.push((form, vec![id])),
        }
    }
    query.push("(");
    for (n, (form, ids)) in by_form.into_iter().enumerate() {
        if n > 0 {
            query.push(" OR ");
        }
        query
            .push("(form_id = ")
            .push_bind(form)
            .push(" AND response_id IN ");
        push_list(query, ids);
        query.push(")");
    }
    query.push(")");
}

/// `VALUES (…), (…)` for the responses `indexes` of `batch`, in [`COLUMNS`] order.
fn push_responses(
    query: &mut QueryBuilder<MySql>,
    batch: &[NewResponse<'_>],
    indexes: &[usize],
    decision: &SaveDecision,
    now: DateTime<Utc>,
) {
    query.push_values(indexes, |mut row, &i| {
        let new = &batch[i];
        let message = new.message;
        row.push_bind(message.response_id.as_str())
            .push_bind(message.form_id.as_str())
            .push_bind(message.revision.as_i64())
            .push_bind(new.form_version)
            .push_bind(message.collector.user_id.as_str())
            .push_bind(message.collector.username.as_deref())
            .push_bind(message.submitted_at.map(|t| t.naive_utc()))
            .push_bind(json(&message.answers))
            .push_bind(json(&message.metadata))
            .push_bind(decision.status(i).as_str())
            .push_bind(json(&new.flags))
            .push_bind(decision.event(i).map(FlagEventKind::as_str))
            .push_bind(message.received_at.map(|t| t.naive_utc()))
            .push_bind(now.naive_utc());
    });
}

/// Refuses a time `DATETIME` cannot hold (it supports the years 1000 to 9999, and sqlx reads an
/// earlier year back as NULL; ingest refuses others, but
/// another publisher may send one) as a permanent error, before a statement is built: the
/// query builder would panic on it.
fn check_times(message: &ResponseMessage) -> Result<(), StoreError> {
    use chrono::Datelike;
    for (field, time) in [
        ("submitted_at", message.submitted_at),
        ("received_at", message.received_at),
    ] {
        if let Some(time) = time
            && !(1000..=9999).contains(&time.year())
        {
            return Err(StoreError::Unstorable(format!(
                "{field} {time} of response {} is out of range for MySQL (the years 1000 to 9999)",
                message.response_id
            )));
        }
    }
    Ok(())
}

/// About how many bytes a response's values take in a statement.
fn response_size(new: &NewResponse<'_>) -> usize {
    let message = new.message;
    json(&message.answers).len()
        + json(&message.metadata).len()
        + json(&new.flags).len()
        + message.collector.username.as_ref().map_or(0, String::len)
        + 512
}

pub(super) fn from_row(
    row: &MySqlRow,
) -> Result<(StoredResponse, Option<FlagEventKind>), StoreError> {
    columns::response(row)
}
