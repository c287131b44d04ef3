//! Responses in PostgreSQL: multi-row statements over `UNNEST`ed arrays, one per step.

use crate::store::StoreError;
use crate::store::columns;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row, Transaction};

use std::collections::HashMap;

use super::PgStore;
use crate::messages::{FlagEventKind, FormId, ResponseId, ResponseStatus, StoredResponse};
use crate::store::responses::{NewResponse, ResponseStore, SaveOutcome, json};
use crate::store::save::{Held, Key, Prepared, SaveDecision, key, written_at, written_events};

#[async_trait::async_trait]
impl ResponseStore for PgStore {
    /// One multi-row insert of them all (`ON CONFLICT DO NOTHING`), one locking read of those
    /// already stored, one multi-row update of the newer ones; what to write is the
    /// [`SaveDecision`]'s.
    async fn save_responses(
        &self,
        batch: &[NewResponse<'_>],
    ) -> Result<Vec<SaveOutcome>, StoreError> {
        let prepared = Prepared::new(batch)?;
        let mut tx = self.pool.begin().await?;

        // As if every response were new: a response stored already is not inserted.
        let as_new = prepared.decide(batch, |_| None);
        let mut stored_at =
            upsert_many(&mut tx, batch, &as_new.inserts(), &as_new, INSERT_MANY).await?;
        let rest: Vec<Key<'_>> = prepared
            .order()
            .iter()
            .map(|&i| key(batch[i].message))
            .filter(|&(form, id)| !stored_at.contains_key(&(form.to_owned(), id.to_owned())))
            .collect();
        let held = lock_held(&mut tx, &rest).await?;
        let decision = prepared.decide(batch, |(form, id)| {
            held.get(&(form.to_owned(), id.to_owned())).copied()
        });
        let updated =
            upsert_many(&mut tx, batch, &decision.updates(), &decision, UPDATE_MANY).await?;
        stored_at.extend(updated);
        let mut duplicates = HashMap::new();
        for i in decision.duplicates() {
            let message = batch[i].message;
            if let Some(stored) =
                read_response(&mut tx, &message.form_id, &message.response_id).await?
            {
                duplicates.insert(i, stored);
            }
        }
        let outcomes = decision.outcomes(batch, written_at(batch, &stored_at), |i| {
            duplicates.remove(&i)
        })?;
        // The transactional outbox: a written revision waits for its sheet from the moment it
        // is committed.
        super::sheets::enqueue(&mut tx, &decision.written_keys(batch)).await?;
        record_flag_events(&mut tx, &outcomes).await?;
        tx.commit().await?;
        Ok(outcomes)
    }
}

/// Adds the flag event of each revision written now to `flag_events` (the collector's
/// history), in the transaction that stores it: one row per event, whatever redeliveries do.
async fn record_flag_events(
    tx: &mut Transaction<'_, Postgres>,
    outcomes: &[SaveOutcome],
) -> Result<(), StoreError> {
    let events = written_events(outcomes);
    if events.is_empty() {
        return Ok(());
    }
    let mut user_ids = Vec::new();
    let mut usernames = Vec::new();
    let mut form_ids = Vec::new();
    let mut response_ids = Vec::new();
    let mut revisions = Vec::new();
    let mut kinds = Vec::new();
    let mut flags = Vec::new();
    let mut answers = Vec::new();
    for event in &events {
        user_ids.push(event.collector.user_id.as_str());
        usernames.push(event.collector.username.as_deref());
        form_ids.push(event.form_id.as_str());
        response_ids.push(event.response_id.as_str());
        revisions.push(event.revision.as_i64());
        kinds.push(event.kind.as_str());
        flags.push(json(&event.flags));
        answers.push(json(&event.answers));
    }
    sqlx::query(
        "INSERT INTO flag_events (user_id, form_id, response_id, revision, kind, flags, answers,
             username)
         SELECT u.user_id, u.form_id, u.response_id, u.revision, u.kind, u.flags::jsonb,
             u.answers::jsonb, u.username
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[],
             $7::text[], $8::text[])
             AS u(user_id, form_id, response_id, revision, kind, flags, answers, username)",
    )
    .bind(&user_ids)
    .bind(&form_ids)
    .bind(&response_ids)
    .bind(&revisions)
    .bind(&kinds)
    .bind(&flags)
    .bind(&answers)
    .bind(&usernames)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// What the store holds of these responses (revision, flagged), their rows locked in key
/// order (`keys` is in it).
async fn lock_held(
    tx: &mut Transaction<'_, Postgres>,
    keys: &[Key<'_>],
) -> Result<HashMap<(String, String), Held>, StoreError> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let (forms, ids): (Vec<&str>, Vec<&str>) = keys.iter().copied().unzip();
    let rows = sqlx::query(
        "SELECT r.form_id, r.response_id, r.revision, r.status
         FROM responses r
         JOIN UNNEST($1::text[], $2::text[]) AS k(form_id, response_id)
           ON r.form_id = k.form_id AND r.response_id = k.response_id
         ORDER BY r.form_id, r.response_id FOR UPDATE OF r",
    )
    .bind(&forms)
    .bind(&ids)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|row| {
            let flagged = row.try_get::<ResponseStatus, _>("status")? == ResponseStatus::Flagged;
            Ok((
                (row.try_get("form_id")?, row.try_get("response_id")?),
                (row.try_get("revision")?, flagged),
            ))
        })
        .collect()
}

/// The rows of a batch as a table: an `UNNEST` of one array per column, aliased `u`, in the
/// order [`upsert_many`] binds them.
macro_rules! unnest_rows {
    () => {
        "UNNEST($1::text[], $2::text[], $3::bigint[], $4::int[], $5::text[], $6::text[],
                $7::timestamptz[], $8::text[], $9::text[], $10::text[], $11::text[],
                $12::text[], $13::timestamptz[])
         AS u(response_id, form_id, revision, form_version, user_id, username, submitted_at,
              answers, metadata, status, flags, flag_event, received_at)"
    };
}

/// Inserts the rows that are new; returns those it inserted.
const INSERT_MANY: &str = concat!(
    "INSERT INTO responses (response_id, form_id, revision, form_version, user_id,
         username, submitted_at, answers, metadata, status, flags, flag_event, received_at)
     SELECT u.response_id, u.form_id, u.revision, u.form_version, u.user_id,
         u.username, u.submitted_at, u.answers::jsonb, u.metadata::jsonb, u.status,
         u.flags::jsonb, u.flag_event, u.received_at
     FROM ",
    unnest_rows!(),
    "
     ON CONFLICT (form_id, response_id) DO NOTHING
     RETURNING form_id, response_id, stored_at"
);

/// Replaces stored rows with newer revisions.
const UPDATE_MANY: &str = concat!(
    "UPDATE responses SET form_id = u.form_id, revision = u.revision,
         form_version = u.form_version, user_id = u.user_id,
         username = u.username, submitted_at = u.submitted_at,
         answers = u.answers::jsonb, metadata = u.metadata::jsonb,
         status = u.status, flags = u.flags::jsonb, flag_event = u.flag_event,
         received_at = u.received_at, stored_at = now()
     FROM ",
    unnest_rows!(),
    "
     WHERE responses.form_id = u.form_id AND responses.response_id = u.response_id
     RETURNING responses.form_id, responses.response_id, responses.stored_at"
);

/// Runs `statement` ([`INSERT_MANY`] or [`UPDATE_MANY`]) on the rows `indexes` of `batch`,
/// with the status and flag event `decision` gives each; returns `stored_at` by
/// `(form_id, response_id)`.
async fn upsert_many(
    tx: &mut Transaction<'_, Postgres>,
    batch: &[NewResponse<'_>],
    indexes: &[usize],
    decision: &SaveDecision,
    statement: &'static str,
) -> Result<HashMap<(String, String), DateTime<Utc>>, StoreError> {
    if indexes.is_empty() {
        return Ok(HashMap::new());
    }
    let mut ids = Vec::new();
    let mut form_ids = Vec::new();
    let mut revisions = Vec::new();
    let mut form_versions = Vec::new();
    let mut user_ids = Vec::new();
    let mut usernames = Vec::new();
    let mut submitted = Vec::new();
    let mut answers = Vec::new();
    let mut metadata = Vec::new();
    let mut statuses = Vec::new();
    let mut flags = Vec::new();
    let mut flag_events = Vec::new();
    let mut received = Vec::new();
    for &i in indexes {
        let new = &batch[i];
        let message = new.message;
        ids.push(message.response_id.as_str());
        form_ids.push(message.form_id.as_str());
        revisions.push(message.revision.as_i64());
        form_versions.push(new.form_version);
        user_ids.push(message.collector.user_id.as_str());
        usernames.push(message.collector.username.as_deref());
        submitted.push(message.submitted_at);
        answers.push(json(&message.answers));
        metadata.push(json(&message.metadata));
        statuses.push(decision.status(i).as_str());
        flags.push(json(&new.flags));
        flag_events.push(decision.event(i).map(FlagEventKind::as_str));
        received.push(message.received_at);
    }
    let returned = sqlx::query(statement)
        .bind(&ids)
        .bind(&form_ids)
        .bind(&revisions)
        .bind(&form_versions)
        .bind(&user_ids)
        .bind(&usernames)
        .bind(&submitted)
        .bind(&answers)
        .bind(&metadata)
        .bind(&statuses)
        .bind(&flags)
        .bind(&flag_events)
        .bind(&received)
        .fetch_all(&mut **tx)
        .await?;
    returned
        .iter()
        .map(|row| {
            Ok((
                (row.try_get::<String, _>(0)?, row.try_get::<String, _>(1)?),
                row.try_get(2)?,
            ))
        })
        .collect()
}

async fn read_response(
    tx: &mut Transaction<'_, Postgres>,
    form_id: &FormId,
    response_id: &ResponseId,
) -> Result<Option<(StoredResponse, Option<FlagEventKind>)>, StoreError> {
    let row = sqlx::query("SELECT * FROM responses WHERE form_id = $1 AND response_id = $2")
        .bind(form_id.as_str())
        .bind(response_id.as_str())
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|row| from_row(&row)).transpose()
}

pub(super) fn from_row(row: &PgRow) -> Result<(StoredResponse, Option<FlagEventKind>), StoreError> {
    columns::response(row)
}
