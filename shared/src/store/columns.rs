//! Reading a row's columns the same way on both engines: each engine says how it reads a
//! column of each kind ([`Columns`]), and the rows Collect reads back (a response, a parked
//! row, a flag event, …) are decoded once, here.

use crate::store::StoreError;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;

use super::flag_history::{FlagCursor, FlagHistoryPage};
use super::forms::{FormSheet, StoredForm};
use super::responses::{SheetPosition, decode};
use super::sheet_status::SheetFailure;
use super::sheets::{ParkedRow, PendingForm, PendingRow};
use super::webhooks::{
    ClaimedDelivery, Delivery, DeliveryCounts, DeliveryCursor, DeliveryPage, Webhook, WebhookId,
};
use crate::messages::{
    Collector, FlagEvent, FlagEventKind, FormId, ResponseId, Revision, StoredResponse, UserId,
};

/// A value stored as one word of text (a response's status, a flag event's kind, a delivery's
/// state), which sqlx reads and writes on both engines. A word that is not one of its values
/// does not decode: an error, never a default.
pub(crate) trait Word:
    Sized
    + for<'r> sqlx::Decode<'r, sqlx::Postgres>
    + sqlx::Type<sqlx::Postgres>
    + for<'r> sqlx::Decode<'r, sqlx::MySql>
    + sqlx::Type<sqlx::MySql>
{
}

/// Implements [`Word`] (and sqlx's `Type`, `Decode` and `Encode` on every engine, as text) for
/// a type with `as_str` and `parse`.
macro_rules! word {
    ($type:ty, $what:literal) => {
        impl<DB: sqlx::Database> sqlx::Type<DB> for $type
        where
            str: sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <str as sqlx::Type<DB>>::type_info()
            }

            fn compatible(ty: &DB::TypeInfo) -> bool {
                <str as sqlx::Type<DB>>::compatible(ty)
            }
        }

        impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for $type
        where
            &'r str: sqlx::Decode<'r, DB>,
        {
            fn decode(
                value: <DB as sqlx::Database>::ValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                let text = <&'r str as sqlx::Decode<'r, DB>>::decode(value)?;
                <$type>::parse(text).ok_or_else(|| format!("unknown {} {text:?}", $what).into())
            }
        }

        impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for $type
        where
            &'static str: sqlx::Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as sqlx::Database>::ArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&'static str as sqlx::Encode<'q, DB>>::encode_by_ref(&self.as_str(), buf)
            }
        }

        impl Word for $type {}
    };
}

word!(crate::domain::ResponseStatus, "response status");
word!(crate::domain::FlagEventKind, "flag event kind");
word!(super::webhooks::DeliveryState, "delivery state");

/// A row of either engine, column by column.
pub(crate) trait Columns {
    fn text(&self, column: &str) -> Result<String, sqlx::Error>;
    fn optional_text(&self, column: &str) -> Result<Option<String>, sqlx::Error>;
    fn int(&self, column: &str) -> Result<i32, sqlx::Error>;
    fn optional_int(&self, column: &str) -> Result<Option<i32>, sqlx::Error>;
    fn bigint(&self, column: &str) -> Result<i64, sqlx::Error>;
    fn float(&self, column: &str) -> Result<f64, sqlx::Error>;
    fn boolean(&self, column: &str) -> Result<bool, sqlx::Error>;
    fn time(&self, column: &str) -> Result<DateTime<Utc>, sqlx::Error>;
    fn optional_time(&self, column: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error>;
    /// A JSON column (`jsonb` on PostgreSQL, JSON text on MySQL).
    fn json<T: DeserializeOwned>(&self, column: &str) -> Result<T, sqlx::Error>;
    fn word<T: Word>(&self, column: &str) -> Result<T, sqlx::Error>;
    fn optional_word<T: Word>(&self, column: &str) -> Result<Option<T>, sqlx::Error>;
}

/// The stored responses of rows of `responses`.
pub(crate) fn responses(rows: &[impl Columns]) -> Result<Vec<StoredResponse>, StoreError> {
    rows.iter()
        .map(|row| response(row).map(|(stored, _)| stored))
        .collect()
}

/// A page of a collector's flag history from rows of `flag_events`, each with its cursor
/// (`txid`, which each engine reads its own way, and `event_id`); the next page starts after
/// the last one, or where this one did when it is empty.
pub(crate) fn flag_history_page<R: Columns>(
    rows: &[R],
    since: FlagCursor,
    txid: impl Fn(&R) -> Result<u64, StoreError>,
) -> Result<FlagHistoryPage, StoreError> {
    let mut events = Vec::with_capacity(rows.len());
    for row in rows {
        let cursor = FlagCursor {
            txid: txid(row)?,
            event_id: row.bigint("event_id")?,
        };
        events.push(flag_event(row, cursor)?);
    }
    let next = events.last().map_or(since, |(cursor, _)| *cursor);
    Ok(FlagHistoryPage {
        events,
        next,
        held_back: false,
    })
}

/// A response waiting in the outbox: the response, with the marker's `force` and
/// `enqueued_at`.
pub(crate) fn pending_row(row: &impl Columns) -> Result<PendingRow, StoreError> {
    let response = response(row)?.0;
    Ok(PendingRow {
        document_bytes: PendingRow::document_bytes_of(&response),
        response,
        force: row.boolean("force")?,
        enqueued_at: row.time("enqueued_at")?,
    })
}

/// A form with responses waiting: `form_id`, `waiting` and `oldest_age` (seconds).
pub(crate) fn pending_form(row: &impl Columns) -> Result<PendingForm, StoreError> {
    Ok(PendingForm {
        form_id: decode(FormId::parse(row.text("form_id")?))?,
        waiting: row.bigint("waiting")?,
        oldest_age_seconds: row.float("oldest_age")?,
    })
}

/// A stored response and the flag event its revision caused.
pub(crate) fn response(
    row: &impl Columns,
) -> Result<(StoredResponse, Option<FlagEventKind>), StoreError> {
    let stored = StoredResponse {
        response_id: decode(ResponseId::parse(row.text("response_id")?))?,
        form_id: decode(FormId::parse(row.text("form_id")?))?,
        revision: Revision::saturating_from_i64(row.bigint("revision")?),
        form_version: row.int("form_version")?,
        status: row.word("status")?,
        flags: row.json("flags")?,
        collector: Collector {
            user_id: decode(UserId::parse(row.text("user_id")?))?,
            username: row.optional_text("username")?,
        },
        submitted_at: row.optional_time("submitted_at")?,
        answers: row.json("answers")?,
        metadata: row.json("metadata")?,
        received_at: row.optional_time("received_at")?,
        stored_at: row.time("stored_at")?,
    };
    let event = row.optional_word("flag_event")?;
    Ok((stored, event))
}

/// A flag event of the history, after the cursor its engine read.
pub(crate) fn flag_event(
    row: &impl Columns,
    cursor: FlagCursor,
) -> Result<(FlagCursor, FlagEvent), StoreError> {
    let event = FlagEvent {
        kind: row.word("kind")?,
        response_id: decode(ResponseId::parse(row.text("response_id")?))?,
        form_id: decode(FormId::parse(row.text("form_id")?))?,
        revision: Revision::saturating_from_i64(row.bigint("revision")?),
        collector: Collector {
            user_id: decode(UserId::parse(row.text("user_id")?))?,
            username: row.optional_text("username")?,
        },
        flags: row.json("flags")?,
        answers: row.json("answers")?,
        at: row.time("at")?,
    };
    Ok((cursor, event))
}

/// A form's definition at its version.
pub(crate) fn stored_form(row: &impl Columns, form_id: &FormId) -> Result<StoredForm, StoreError> {
    Ok(StoredForm {
        form: crate::forms::Form {
            id: form_id.clone(),
            definition: row.json("definition")?,
        },
        version: row.int("version")?,
    })
}

/// A form's spreadsheet and tab, from its definition.
pub(crate) fn form_sheet(row: &impl Columns) -> Result<FormSheet, StoreError> {
    let form_id = decode(FormId::parse(row.text("form_id")?))?;
    let form = stored_form(row, &form_id)?.form;
    Ok(FormSheet {
        spreadsheet_id: form.spreadsheet_id().map(str::to_owned),
        tab: form.tab().to_owned(),
        created_at: row.time("created_at")?,
        form_id,
    })
}

pub(crate) fn parked(row: &impl Columns) -> Result<ParkedRow, StoreError> {
    Ok(ParkedRow {
        spreadsheet_id: row.text("spreadsheet_id")?,
        tab: row.text("tab")?,
        revision: row.bigint("revision")?,
        reason: row.text("reason")?,
        parked_at: row.time("parked_at")?,
    })
}

pub(crate) fn position(row: &impl Columns) -> Result<SheetPosition, StoreError> {
    Ok(SheetPosition {
        spreadsheet_id: row.text("spreadsheet_id")?,
        tab: row.text("tab")?,
        row: row.int("row_number")?,
    })
}

/// The failure of a form's sheet, when the row has one (`reason` not null).
pub(crate) fn failure(
    row: &impl Columns,
    form_id: &FormId,
) -> Result<Option<SheetFailure>, StoreError> {
    let Some(reason) = row.optional_text("reason")? else {
        return Ok(None);
    };
    Ok(Some(SheetFailure {
        form_id: form_id.clone(),
        spreadsheet_id: row.text("spreadsheet_id")?,
        tab: row.text("tab")?,
        reason,
        about_this_sheet: row.boolean("about_this_sheet")?,
        failing_since: row.time("failing_since")?,
    }))
}

/// A webhook, with its delivery counts (`pending`, `delivered`, `dead`).
pub(crate) fn webhook(row: &impl Columns) -> Result<Webhook, StoreError> {
    let form_id = row.optional_text("form_id")?;
    Ok(Webhook {
        id: decode(WebhookId::parse(row.text("id")?))?,
        url: row.text("url")?,
        form_id: form_id.map(|id| decode(FormId::parse(id))).transpose()?,
        user_ids: row.json("user_ids")?,
        secret: row.text("secret")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
        deliveries: DeliveryCounts {
            pending: row.bigint("pending")?,
            delivered: row.bigint("delivered")?,
            dead: row.bigint("dead")?,
        },
    })
}

pub(crate) fn delivery(row: &impl Columns) -> Result<Delivery, StoreError> {
    Ok(Delivery {
        webhook_id: decode(WebhookId::parse(row.text("webhook_id")?))?,
        delivery_id: row.text("delivery_id")?,
        payload: row.json("payload")?,
        state: row.word("state")?,
        attempts: row.int("attempts")?,
        next_attempt_at: row.time("next_attempt_at")?,
        last_attempt_at: row.optional_time("last_attempt_at")?,
        last_status: row
            .optional_int("last_status")?
            .map(|status| decode(u16::try_from(status)))
            .transpose()?,
        last_error: row.optional_text("last_error")?,
        created_at: row.time("created_at")?,
        delivered_at: row.optional_time("delivered_at")?,
    })
}

/// A page of deliveries from up to `limit + 1` rows: the one past `limit` says there is more.
pub(crate) fn delivery_page(rows: &[impl Columns], limit: i64) -> Result<DeliveryPage, StoreError> {
    let mut deliveries = rows.iter().map(delivery).collect::<Result<Vec<_>, _>>()?;
    let more = deliveries.len() as i64 > limit;
    deliveries.truncate(limit as usize);
    let next = more
        .then(|| deliveries.last().map(DeliveryCursor::after))
        .flatten();
    Ok(DeliveryPage { deliveries, next })
}

/// A claimed delivery, with its webhook's `url` and `secret`.
pub(crate) fn claimed(row: &impl Columns) -> Result<ClaimedDelivery, StoreError> {
    Ok(ClaimedDelivery {
        webhook_id: decode(WebhookId::parse(row.text("webhook_id")?))?,
        delivery_id: row.text("delivery_id")?,
        payload: row.json("payload")?,
        attempts: row.int("attempts")?,
        url: row.text("url")?,
        secret: row.text("secret")?,
    })
}

/// Implements [`Columns`] for an engine's row type, given how it reads JSON.
macro_rules! columns_for {
    ($row:ty, |$self_:ident, $column:ident| $json:expr) => {
        impl $crate::store::columns::Columns for $row {
            fn text(&self, column: &str) -> Result<String, sqlx::Error> {
                sqlx::Row::try_get(self, column)
            }
            fn optional_text(&self, column: &str) -> Result<Option<String>, sqlx::Error> {
                sqlx::Row::try_get(self, column)
            }
            fn int(&self, column: &str) -> Result<i32, sqlx::Error> {
                sqlx::Row::try_get(self, column)
            }
            fn optional_int(&self, column: &str) -> Result<Option<i32>, sqlx::Error> {
                sqlx::Row::try_get(self, column)
            }
            fn bigint(&self, column: &str) -> Result<i64, sqlx::Error> {
                sqlx::Row::try_get(self, column)
            }
            fn float(&self, column: &str) -> Result<f64, sqlx::Error> {
                sqlx::Row::try_get(self, column)
            }
            fn boolean(&self, column: &str) -> Result<bool, sqlx::Error> {
                sqlx::Row::try_get(self, column)
            }
            fn time(&self, column: &str) -> Result<chrono::DateTime<chrono::Utc>, sqlx::Error> {
                sqlx::Row::try_get(self, column)
            }
            fn optional_time(
                &self,
                column: &str,
            ) -> Result<Option<chrono::DateTime<chrono::Utc>>, sqlx::Error> {
                sqlx::Row::try_get(self, column)
            }
            fn json<T: serde::de::DeserializeOwned>(&$self_, $column: &str) -> Result<T, sqlx::Error> {
                $json
            }
            fn word<T: $crate::store::columns::Word>(&self, column: &str) -> Result<T, sqlx::Error> {
                sqlx::Row::try_get(self, column)
            }
            fn optional_word<T: $crate::store::columns::Word>(
                &self,
                column: &str,
            ) -> Result<Option<T>, sqlx::Error> {
                sqlx::Row::try_get(self, column)
            }
        }
    };
}
pub(crate) use columns_for;
