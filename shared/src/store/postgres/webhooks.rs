//! Webhooks and their deliveries in PostgreSQL. Claims lock with `FOR UPDATE SKIP LOCKED`, so
//! concurrent claimers pass each other by.

use crate::store::StoreError;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::types::Json;

use super::PgStore;
use crate::store::columns;
use crate::store::webhooks::{
    ClaimedDelivery, NewDelivery, NewWebhook, Webhook, WebhookStore, distinct,
};

/// Delivered deliveries are deleted this many at a time.
const RETENTION_BATCH: i64 = 10_000;

#[async_trait::async_trait]
impl WebhookStore for PgStore {
    async fn put_webhook(&self, webhook: &NewWebhook) -> Result<(Webhook, bool), StoreError> {
        let mut tx = self.pool.begin().await?;
        let created: bool = sqlx::query_scalar(
            "INSERT INTO webhooks (id, url, form_id, user_ids, secret) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (id) DO UPDATE
                SET url = EXCLUDED.url, form_id = EXCLUDED.form_id,
                    user_ids = EXCLUDED.user_ids, updated_at = now()
             RETURNING (xmax = 0) AS created",
        )
        .bind(webhook.id.as_str())
        .bind(&webhook.url)
        .bind(webhook.form_id.as_ref().map(|id| id.as_str()))
        .bind(Json(&webhook.user_ids))
        .bind(&webhook.secret)
        .fetch_one(&mut *tx)
        .await?;
        let row = sqlx::query(crate::store::portable::WEBHOOK_BY_ID.postgres)
            .bind(webhook.id.as_str())
            .fetch_one(&mut *tx)
            .await?;
        let stored = columns::webhook(&row)?;
        tx.commit().await?;
        Ok((stored, created))
    }

    /// The batch's webhooks are locked `FOR KEY SHARE` first: one deleted meanwhile is not
    /// found (and its deliveries skipped), and none can be deleted before this commits. Rows
    /// are inserted in key order, so two batches that share deliveries do not deadlock.
    async fn enqueue_deliveries(&self, deliveries: &[NewDelivery]) -> Result<u64, StoreError> {
        let batch = distinct(deliveries)?;
        if batch.is_empty() {
            return Ok(0);
        }
        let webhook_ids: Vec<&str> = batch.iter().map(|d| d.webhook_id.as_str()).collect();
        let delivery_ids: Vec<&str> = batch.iter().map(|d| d.delivery_id.as_str()).collect();
        let payloads: Vec<Json<&serde_json::Value>> =
            batch.iter().map(|d| Json(&d.payload)).collect();
        let inserted = sqlx::query(
            "WITH live AS (SELECT id FROM webhooks WHERE id = ANY($1::text[]) FOR KEY SHARE)
             INSERT INTO webhook_deliveries (webhook_id, delivery_id, payload)
             SELECT n.webhook_id, n.delivery_id, n.payload
             FROM UNNEST($1::text[], $2::text[], $3::jsonb[]) AS n(webhook_id, delivery_id, payload)
             JOIN live ON live.id = n.webhook_id
             ORDER BY n.webhook_id, n.delivery_id
             ON CONFLICT (webhook_id, delivery_id) DO NOTHING",
        )
        .bind(&webhook_ids)
        .bind(&delivery_ids)
        .bind(&payloads)
        .execute(&self.pool)
        .await?;
        Ok(inserted.rows_affected())
    }

    async fn claim_deliveries(
        &self,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        // One statement, so one transaction: the due rows are locked (skipping those another
        // claimer holds), then made due again after the lease. A row another claimer has just
        // leased is checked again once its lock is free, and is no longer due.
        let rows = sqlx::query(
            "WITH due AS (
                 SELECT webhook_id, delivery_id, next_attempt_at FROM webhook_deliveries
                 WHERE state = 'pending' AND next_attempt_at <= now()
                 ORDER BY next_attempt_at
                 LIMIT $1
                 FOR UPDATE SKIP LOCKED
             )
             UPDATE webhook_deliveries d
                SET next_attempt_at = now() + make_interval(secs => $2)
               FROM due JOIN webhooks w ON w.id = due.webhook_id
              WHERE d.webhook_id = due.webhook_id AND d.delivery_id = due.delivery_id
             RETURNING d.webhook_id, d.delivery_id, d.payload, d.attempts, w.url, w.secret,
                 due.next_attempt_at AS due",
        )
        .bind(i64::from(limit))
        .bind(lease.as_secs_f64())
        .fetch_all(&self.pool)
        .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in &rows {
            let due: DateTime<Utc> = row.try_get("due")?;
            claimed.push((due, columns::claimed(row)?));
        }
        claimed.sort_by(|(a_due, a), (b_due, b)| {
            (a_due, &a.webhook_id, &a.delivery_id).cmp(&(b_due, &b.webhook_id, &b.delivery_id))
        });
        Ok(claimed.into_iter().map(|(_, claimed)| claimed).collect())
    }

    /// In batches of [`RETENTION_BATCH`], each its own transaction. The outer condition is
    /// checked again on each row, so one redelivered meanwhile is kept.
    async fn delete_deliveries_before(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let deleted = sqlx::query(
                "DELETE FROM webhook_deliveries
                 WHERE state = 'delivered' AND delivered_at < $1
                   AND (webhook_id, delivery_id) IN (
                       SELECT webhook_id, delivery_id FROM webhook_deliveries
                       WHERE state = 'delivered' AND delivered_at < $1
                       LIMIT $2)",
            )
            .bind(before)
            .bind(RETENTION_BATCH)
            .execute(&self.pool)
            .await?
            .rows_affected();
            total += deleted;
            if deleted < RETENTION_BATCH as u64 {
                return Ok(total);
            }
        }
    }
}
