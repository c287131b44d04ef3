//! Responses: one row per response id, latest revision wins.

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::{Map, Value};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{Postgres, Row, Transaction};

use super::Store;
use crate::messages::{
    Collector, Flag, FlagEventKind, FormId, ResponseId, ResponseMessage, ResponseStatus, Revision,
    StoredResponse, UserId,
};
use crate::rules::Evaluation;

/// A response's row in a sheet.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SheetPosition {
    pub spreadsheet_id: String,
    pub tab: String,
    pub row: i32,
}

/// A checked response, ready to store.
pub struct NewResponse<'a> {
    pub message: &'a ResponseMessage,
    pub form_version: i32,
    pub evaluation: &'a Evaluation,
}

/// What saving did.
#[derive(Debug, Clone, PartialEq)]
pub enum SaveOutcome {
    /// A response seen for the first time, or a newer revision that replaced the stored one.
    Written {
        stored: StoredResponse,
        event: Option<FlagEventKind>,
    },
    /// This revision was stored before (a redelivery): nothing changed. `stored` and `event`
    /// are what the first time stored, so its events can be published again.
    Duplicate {
        stored: StoredResponse,
        event: Option<FlagEventKind>,
    },
    /// Older than the stored revision: ignored.
    Stale { stored_revision: Revision },
}

impl Store {
    /// Stores a response with the revision rules: a higher revision replaces the stored one,
    /// the same one is a no-op, a lower one is ignored. Concurrent saves of one response (two
    /// validators, a redelivery) serialise on its row.
    pub async fn save_response(&self, new: NewResponse<'_>) -> Result<SaveOutcome, sqlx::Error> {
        let message = new.message;
        let revision = i64::try_from(message.revision.0)
            .map_err(|_| sqlx::Error::Protocol("revision is larger than 2^63 - 1".into()))?;
        let status = if new.evaluation.is_flagged() {
            ResponseStatus::Flagged
        } else {
            ResponseStatus::Valid
        };
        let mut tx = self.pool.begin().await?;

        let inserted_event = (status == ResponseStatus::Flagged).then_some(FlagEventKind::Flagged);
        let inserted = bind_row(
            sqlx::query(
                "INSERT INTO responses (response_id, form_id, revision, form_version, user_id,
                     username, submitted_at, answers, metadata, status, flags, flag_event,
                     received_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                 ON CONFLICT (response_id) DO NOTHING
                 RETURNING stored_at",
            ),
            &new,
            revision,
            status,
            inserted_event,
        )
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = inserted {
            tx.commit().await?;
            let stored = stored_response(&new, status, row.try_get("stored_at")?);
            return Ok(SaveOutcome::Written {
                stored,
                event: inserted_event,
            });
        }

        let current = sqlx::query(
            "SELECT revision, status, flag_event FROM responses WHERE response_id = $1 FOR UPDATE",
        )
        .bind(message.response_id.as_str())
        .fetch_one(&mut *tx)
        .await?;
        let stored_revision: i64 = current.try_get("revision")?;
        match stored_revision.cmp(&revision) {
            std::cmp::Ordering::Less => {
                let was_flagged = current.try_get::<String, _>("status")? == "flagged";
                let event = match (status, was_flagged) {
                    (ResponseStatus::Flagged, _) => Some(FlagEventKind::Flagged),
                    (ResponseStatus::Valid, true) => Some(FlagEventKind::Cleared),
                    (ResponseStatus::Valid, false) => None,
                };
                let row = bind_row(
                    sqlx::query(
                        "UPDATE responses SET form_id = $2, revision = $3, form_version = $4,
                             user_id = $5, username = $6, submitted_at = $7, answers = $8,
                             metadata = $9, status = $10, flags = $11, flag_event = $12,
                             received_at = $13, stored_at = now()
                         WHERE response_id = $1
                         RETURNING stored_at",
                    ),
                    &new,
                    revision,
                    status,
                    event,
                )
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                let stored = stored_response(&new, status, row.try_get("stored_at")?);
                Ok(SaveOutcome::Written { stored, event })
            }
            std::cmp::Ordering::Equal => {
                let (stored, event) = read_response(&mut tx, &message.response_id)
                    .await?
                    .ok_or(sqlx::Error::RowNotFound)?;
                tx.commit().await?;
                Ok(SaveOutcome::Duplicate { stored, event })
            }
            std::cmp::Ordering::Greater => {
                tx.commit().await?;
                Ok(SaveOutcome::Stale {
                    stored_revision: Revision(stored_revision as u64),
                })
            }
        }
    }

    pub async fn response(
        &self,
        response_id: &ResponseId,
    ) -> Result<Option<StoredResponse>, sqlx::Error> {
        let row = sqlx::query("SELECT * FROM responses WHERE response_id = $1")
            .bind(response_id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| from_row(&row).map(|(stored, _)| stored))
            .transpose()
    }

    /// Where the response was last written in a sheet, if it was.
    pub async fn sheet_position(
        &self,
        response_id: &ResponseId,
    ) -> Result<Option<SheetPosition>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT spreadsheet_id, tab, row_number FROM sheet_rows
             WHERE response_id = $1 ORDER BY written_at DESC LIMIT 1",
        )
        .bind(response_id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(SheetPosition {
                spreadsheet_id: row.try_get("spreadsheet_id")?,
                tab: row.try_get("tab")?,
                row: row.try_get("row_number")?,
            })
        })
        .transpose()
    }

    /// The collector's responses that are flagged now (latest revision), oldest first, at most
    /// `limit`.
    pub async fn flagged_for_collector(
        &self,
        user_id: &UserId,
        limit: i64,
    ) -> Result<Vec<StoredResponse>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT * FROM responses
             WHERE user_id = $1 AND status = 'flagged'
             ORDER BY stored_at, response_id
             LIMIT $2",
        )
        .bind(user_id.as_str())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| from_row(row).map(|(stored, _)| stored))
            .collect()
    }
}

fn bind_row<'q>(
    query: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    new: &'q NewResponse<'_>,
    revision: i64,
    status: ResponseStatus,
    event: Option<FlagEventKind>,
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    let message = new.message;
    query
        .bind(message.response_id.as_str())
        .bind(message.form_id.as_str())
        .bind(revision)
        .bind(new.form_version)
        .bind(message.collector.user_id.as_str())
        .bind(message.collector.username.as_deref())
        .bind(message.submitted_at)
        .bind(Json(&message.answers))
        .bind(Json(&message.metadata))
        .bind(status.as_str())
        .bind(Json(&new.evaluation.flags))
        .bind(event.map(FlagEventKind::as_str))
        .bind(message.received_at)
}

fn stored_response(
    new: &NewResponse<'_>,
    status: ResponseStatus,
    stored_at: DateTime<Utc>,
) -> StoredResponse {
    let message = new.message;
    StoredResponse {
        response_id: message.response_id.clone(),
        form_id: message.form_id.clone(),
        revision: message.revision,
        form_version: new.form_version,
        status,
        flags: new.evaluation.flags.clone(),
        collector: message.collector.clone(),
        // PostgreSQL keeps microseconds: say what a later read will say.
        submitted_at: message.submitted_at.map(|t| t.trunc_subsecs(6)),
        answers: message.answers.clone(),
        metadata: message.metadata.clone(),
        received_at: message.received_at.map(|t| t.trunc_subsecs(6)),
        stored_at,
    }
}

async fn read_response(
    tx: &mut Transaction<'_, Postgres>,
    response_id: &ResponseId,
) -> Result<Option<(StoredResponse, Option<FlagEventKind>)>, sqlx::Error> {
    let row = sqlx::query("SELECT * FROM responses WHERE response_id = $1")
        .bind(response_id.as_str())
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|row| from_row(&row)).transpose()
}

fn decode<T, E: std::error::Error + Send + Sync + 'static>(
    result: Result<T, E>,
) -> Result<T, sqlx::Error> {
    result.map_err(|error| sqlx::Error::Decode(Box::new(error)))
}

pub(super) fn from_row(
    row: &PgRow,
) -> Result<(StoredResponse, Option<FlagEventKind>), sqlx::Error> {
    let status = match row.try_get::<&str, _>("status")? {
        "flagged" => ResponseStatus::Flagged,
        _ => ResponseStatus::Valid,
    };
    let event = match row.try_get::<Option<&str>, _>("flag_event")? {
        Some("flagged") => Some(FlagEventKind::Flagged),
        Some("cleared") => Some(FlagEventKind::Cleared),
        _ => None,
    };
    let Json(answers): Json<Map<String, Value>> = row.try_get("answers")?;
    let Json(metadata): Json<Map<String, Value>> = row.try_get("metadata")?;
    let Json(flags): Json<Vec<Flag>> = row.try_get("flags")?;
    let revision: i64 = row.try_get("revision")?;
    let stored = StoredResponse {
        response_id: decode(ResponseId::parse(row.try_get::<String, _>("response_id")?))?,
        form_id: decode(FormId::parse(row.try_get::<String, _>("form_id")?))?,
        revision: Revision(revision as u64),
        form_version: row.try_get("form_version")?,
        status,
        flags,
        collector: Collector {
            user_id: decode(UserId::parse(row.try_get::<String, _>("user_id")?))?,
            username: row.try_get("username")?,
        },
        submitted_at: row.try_get("submitted_at")?,
        answers,
        metadata,
        received_at: row.try_get("received_at")?,
        stored_at: row.try_get("stored_at")?,
    };
    Ok((stored, event))
}
