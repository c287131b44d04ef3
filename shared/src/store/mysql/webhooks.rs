//! Webhooks and their deliveries in MySQL. Claims lock with `FOR UPDATE SKIP LOCKED` (MySQL 8,
//! MariaDB 10.6), so concurrent claimers pass each other by.

use crate::store::StoreError;
use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{MySql, QueryBuilder, Row};

use super::{MySqlStore, is_duplicate_key, push_list};
use crate::store::columns;
use crate::store::responses::json;
use crate::store::webhooks::{
    ClaimedDelivery, NewDelivery, NewWebhook, Webhook, WebhookStore, distinct,
};

/// At most this many deliveries named in one statement (each an `OR`ed key: the range
/// optimizer gives up on very long lists).
// The statements here are prepared once per connection and kept (sqlx's statement cache, an
// LRU of `statement_cache_capacity`), not prepared and closed each time (`persistent(false)`):
// sqlx does not set TCP_NODELAY, and a closed statement's COM_STMT_CLOSE (which has no answer)
// followed by the next command stalls on Nagle and the server's delayed ACK, ~40 ms each. A
// claim took ~90 ms that way and takes 1 to 13 ms now.
const KEYS_PER_STATEMENT: usize = 500;

/// At most this many deliveries claimed at once.
const MAX_CLAIM: i64 = 10_000;

/// Delivered deliveries are deleted this many at a time.
const RETENTION_BATCH: u64 = 10_000;

/// `(webhook_id = ? AND delivery_id = ?) OR …`, pushed onto `query`.
fn push_keys<'a>(
    query: &mut QueryBuilder<MySql>,
    keys: impl IntoIterator<Item = (&'a str, &'a str)>,
) {
    query.push("(");
    for (i, (webhook_id, delivery_id)) in keys.into_iter().enumerate() {
        if i > 0 {
            query.push(" OR ");
        }
        query.push("(webhook_id = ");
        query.push_bind(webhook_id);
        query.push(" AND delivery_id = ");
        query.push_bind(delivery_id);
        query.push(")");
    }
    query.push(")");
}

#[async_trait::async_trait]
impl WebhookStore for MySqlStore {
    async fn put_webhook(&self, webhook: &NewWebhook) -> Result<(Webhook, bool), StoreError> {
        let user_ids = json(&webhook.user_ids);
        let form_id = webhook.form_id.as_ref().map(|id| id.as_str());
        // Two first `PUT`s of one webhook at once: the one whose insert loses updates.
        for attempt in 0.. {
            let mut tx = self.pool.begin().await?;
            let stored = sqlx::query("SELECT id FROM webhooks WHERE id = ? FOR UPDATE")
                .bind(webhook.id.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            let created = if stored.is_none() {
                let inserted = sqlx::query(
                    "INSERT INTO webhooks (id, url, form_id, user_ids, secret)
                     VALUES (?, ?, ?, ?, ?)",
                )
                .bind(webhook.id.as_str())
                .bind(&webhook.url)
                .bind(form_id)
                .bind(&user_ids)
                .bind(&webhook.secret)
                .execute(&mut *tx)
                .await;
                match inserted {
                    Err(error) if is_duplicate_key(&error) && attempt < 3 => continue,
                    Err(error) => return Err(error.into()),
                    Ok(_) => true,
                }
            } else {
                sqlx::query(
                    "UPDATE webhooks SET url = ?, form_id = ?, user_ids = ?,
                         updated_at = CURRENT_TIMESTAMP(6)
                     WHERE id = ?",
                )
                .bind(&webhook.url)
                .bind(form_id)
                .bind(&user_ids)
                .bind(webhook.id.as_str())
                .execute(&mut *tx)
                .await?;
                false
            };
            let row = sqlx::query(crate::store::portable::WEBHOOK_BY_ID.mysql)
                .bind(webhook.id.as_str())
                .fetch_one(&mut *tx)
                .await?;
            let stored = columns::webhook(&row)?;
            tx.commit().await?;
            return Ok((stored, created));
        }
        unreachable!("the loop returns")
    }

    /// One transaction: the batch's webhooks are locked in share mode (one deleted meanwhile is
    /// not found, and its deliveries skipped; none can be deleted before this commits), the
    /// deliveries already stored are read, and the others inserted in key order (two batches
    /// that share deliveries do not deadlock). A delivery another batch inserts between that
    /// read and this insert is left as it is (`ON DUPLICATE KEY UPDATE` changes nothing), but
    /// counted by both.
    async fn enqueue_deliveries(&self, deliveries: &[NewDelivery]) -> Result<u64, StoreError> {
        let mut batch = distinct(deliveries)?;
        if batch.is_empty() {
            return Ok(0);
        }
        batch.sort_by(|a, b| {
            (a.webhook_id.as_str(), a.delivery_id.as_str())
                .cmp(&(b.webhook_id.as_str(), b.delivery_id.as_str()))
        });
        let mut webhook_ids: Vec<&str> = batch.iter().map(|d| d.webhook_id.as_str()).collect();
        webhook_ids.dedup();
        let mut tx = self.pool.begin().await?;
        let mut live = HashSet::new();
        for ids in webhook_ids.chunks(KEYS_PER_STATEMENT) {
            let mut query = QueryBuilder::<MySql>::new("SELECT id FROM webhooks WHERE id IN ");
            push_list(&mut query, ids.iter().copied());
            query.push(" LOCK IN SHARE MODE");
            for row in query.build().fetch_all(&mut *tx).await? {
                live.insert(row.try_get::<String, _>("id")?);
            }
        }
        batch.retain(|d| live.contains(d.webhook_id.as_str()));
        let mut stored = HashSet::new();
        for keys in batch.chunks(KEYS_PER_STATEMENT) {
            let mut query = QueryBuilder::<MySql>::new(
                "SELECT webhook_id, delivery_id FROM webhook_deliveries WHERE ",
            );
            push_keys(
                &mut query,
                keys.iter()
                    .map(|d| (d.webhook_id.as_str(), d.delivery_id.as_str())),
            );
            for row in query.build().fetch_all(&mut *tx).await? {
                let key: (String, String) =
                    (row.try_get("webhook_id")?, row.try_get("delivery_id")?);
                stored.insert(key);
            }
        }
        let new: Vec<(&NewDelivery, String)> = batch
            .into_iter()
            .filter(|d| !stored.contains(&(d.webhook_id.to_string(), d.delivery_id.clone())))
            .map(|d| (d, json(&d.payload)))
            .collect();
        for run in self.runs(&new, 3, |(d, payload)| {
            d.webhook_id.as_str().len() + d.delivery_id.len() + payload.len()
        })? {
            let mut query = QueryBuilder::<MySql>::new(
                "INSERT INTO webhook_deliveries (webhook_id, delivery_id, payload) ",
            );
            query.push_values(run, |mut row, (d, payload)| {
                row.push_bind(d.webhook_id.as_str())
                    .push_bind(d.delivery_id.as_str())
                    .push_bind(payload.as_str());
            });
            query.push(" ON DUPLICATE KEY UPDATE delivery_id = delivery_id");
            query.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(new.len() as u64)
    }

    /// One transaction: the due rows are locked (skipping those another claimer holds; a
    /// locking read sees the latest committed row, so one another claimer has just leased is
    /// no longer due), made due again after the lease, and read with their webhook.
    async fn claim_deliveries(
        &self,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let due = sqlx::query(
            "SELECT webhook_id, delivery_id, next_attempt_at FROM webhook_deliveries
             WHERE state = 'pending' AND next_attempt_at <= CURRENT_TIMESTAMP(6)
             ORDER BY next_attempt_at
             LIMIT ?
             FOR UPDATE SKIP LOCKED",
        )
        .bind(i64::from(limit).min(MAX_CLAIM))
        .fetch_all(&mut *tx)
        .await?;
        if due.is_empty() {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        let mut keys: Vec<(DateTime<Utc>, String, String)> = Vec::with_capacity(due.len());
        for row in &due {
            keys.push((
                row.try_get("next_attempt_at")?,
                row.try_get("webhook_id")?,
                row.try_get("delivery_id")?,
            ));
        }
        keys.sort();
        let lease_micros = i64::try_from(lease.as_micros()).unwrap_or(i64::MAX);
        let mut claimed = std::collections::HashMap::with_capacity(keys.len());
        for chunk in keys.chunks(KEYS_PER_STATEMENT) {
            let pairs = || chunk.iter().map(|(_, w, d)| (w.as_str(), d.as_str()));
            let mut update = QueryBuilder::<MySql>::new(
                "UPDATE webhook_deliveries
                 SET next_attempt_at = CURRENT_TIMESTAMP(6) + INTERVAL ",
            );
            update.push_bind(lease_micros);
            update.push(" MICROSECOND WHERE ");
            push_keys(&mut update, pairs());
            update.build().execute(&mut *tx).await?;
            let mut read = QueryBuilder::<MySql>::new(
                "SELECT d.webhook_id, d.delivery_id, d.payload, d.attempts, w.url, w.secret
                 FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
                 WHERE ",
            );
            push_keys(&mut read, pairs());
            for row in read.build().fetch_all(&mut *tx).await? {
                let delivery = columns::claimed(&row)?;
                claimed.insert(
                    (
                        delivery.webhook_id.to_string(),
                        delivery.delivery_id.clone(),
                    ),
                    delivery,
                );
            }
        }
        tx.commit().await?;
        Ok(keys
            .into_iter()
            .filter_map(|(_, w, d)| claimed.remove(&(w, d)))
            .collect())
    }

    /// In batches of [`RETENTION_BATCH`], each its own transaction.
    async fn delete_deliveries_before(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let deleted = sqlx::query(
                "DELETE FROM webhook_deliveries
                 WHERE state = 'delivered' AND delivered_at < ?
                 LIMIT ?",
            )
            .bind(before.naive_utc())
            .bind(RETENTION_BATCH)
            .execute(&self.pool)
            .await?
            .rows_affected();
            total += deleted;
            if deleted < RETENTION_BATCH {
                return Ok(total);
            }
        }
    }
}
