//! The store: every response, form and sheet position Collect keeps, behind one interface
//! ([`Engine`]) with two implementations, chosen by the scheme of `DATABASE_URL`:
//! [`postgres`] (`postgres://`) and [`mysql`] (`mysql://`, MySQL 8 or MariaDB 10.6 and later).
//! What both share (the types, the revision rules, the cursor) lives here, and so do the
//! statements both run alike ([`Portable`]); the rest of each engine's SQL lives in its own
//! module, with its own migrations.

mod columns;
mod error;
mod flag_history;
mod forms;
pub mod mysql;
mod portable;
pub mod postgres;
mod responses;
mod save;
mod sheet_status;
mod sheets;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use crate::telemetry::Check;

pub use error::StoreError;
pub use flag_history::{FlagCursor, FlagHistoryPage, FlagHistoryStore};
pub use forms::{
    FormCache, FormLookupError, FormSheet, FormStore, FormVersion, PutForm, StoredForm, TabOwner,
};
pub use portable::Portable;
pub use responses::{FlaggedCursor, NewResponse, ResponseStore, SaveOutcome, SheetPosition};
pub use sheet_status::{SheetFailure, SheetState, SheetStatusStore};
pub use sheets::{
    BatchWritten, FormTab, ParkRow, ParkedRow, PendingForm, PendingRow, SheetStore, TabLocks,
};
pub use webhooks::{
    ClaimedDelivery, Delivery, DeliveryCounts, DeliveryCursor, DeliveryPage, DeliveryQuery,
    DeliveryState, FailedAttempt, InvalidWebhookId, MAX_ERROR_CHARS, NewDelivery, NewWebhook,
    Webhook, WebhookId, WebhookStore, is_delivery_id,
};

/// Creates the database `url` names unless it exists (`engine` names the server in errors).
/// Another service creating it at the same moment is fine.
async fn ensure_database<DB: sqlx::migrate::MigrateDatabase>(
    url: &str,
    engine: &str,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let shown = crate::config::redact_url(url);
    let exists = DB::database_exists(url)
        .await
        .with_context(|| format!("cannot reach {engine} at {shown}"))?;
    if !exists {
        if let Err(error) = DB::create_database(url).await
            && !DB::database_exists(url).await.unwrap_or(false)
        {
            return Err(error).with_context(|| format!("cannot create the database {shown}"));
        }
        tracing::info!(database = %shown, "created the database");
    }
    Ok(())
}

/// One database engine: everything the services ask of the store.
pub trait Engine:
    FormStore
    + ResponseStore
    + SheetStore
    + SheetStatusStore
    + FlagHistoryStore
    + WebhookStore
    + Portable
    + Send
    + Sync
    + std::fmt::Debug
{
    /// The engine's name, for logs.
    fn name(&self) -> &'static str;
}

#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// `postgres://…` or `mysql://…`.
    pub url: String,
    pub max_connections: u32,
    /// The longest a statement may run (PostgreSQL's `statement_timeout`; MariaDB's
    /// `max_statement_time` or MySQL's `max_execution_time`, and the lock wait timeouts).
    pub statement_timeout: Duration,
}

/// The store, on the engine `DATABASE_URL` names. Cheap to clone; every method of [`Engine`]
/// is called on it directly (`store.save_responses(..)`).
#[derive(Clone, Debug)]
pub struct Store {
    engine: Arc<dyn Engine>,
}

impl std::ops::Deref for Store {
    type Target = dyn Engine;

    fn deref(&self) -> &Self::Target {
        &*self.engine
    }
}

impl Store {
    /// Connects to the engine the URL's scheme names: creates the database if it is missing,
    /// runs the migrations, and makes sure the built-in forms exist.
    pub async fn connect(settings: &StoreSettings) -> anyhow::Result<Self> {
        let engine: Arc<dyn Engine> = match scheme(&settings.url) {
            Some("postgres" | "postgresql") => {
                Arc::new(postgres::PgStore::connect(settings).await?)
            }
            Some("mysql") => Arc::new(mysql::MySqlStore::connect(settings).await?),
            _ => anyhow::bail!(
                "DATABASE_URL must start with postgres:// or mysql://, not {}",
                crate::config::redact_url(&settings.url)
            ),
        };
        let store = Self { engine };
        for form in crate::forms::builtin() {
            store.ensure_form(&form).await?;
        }
        Ok(store)
    }

    /// Like [`Store::connect`], retried with backoff until it works or `shutdown` fires.
    pub async fn connect_with_retry(
        settings: &StoreSettings,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> anyhow::Result<Self> {
        let mut delays = crate::retry::Policy::DATABASE_CONNECT.delays();
        loop {
            match Self::connect(settings).await {
                Ok(store) => return Ok(store),
                Err(error) => {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "the database is not usable yet; retrying"
                    );
                    let delay = delays.next_delay();
                    tokio::select! {
                        _ = shutdown.cancelled() => return Err(error.context("stopped while waiting for the database")),
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// A `/readyz` check: ok while a trivial query answers within 2 s.
    pub fn readiness_check(&self) -> Check {
        let engine = self.engine.clone();
        Arc::new(move || {
            let engine = engine.clone();
            Box::pin(async move {
                match tokio::time::timeout(Duration::from_secs(2), engine.ping()).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(error)) => Err(format!("database error: {error}")),
                    Err(_) => Err("the database did not answer within 2 s".into()),
                }
            })
        })
    }
}

/// The scheme of a URL, if it has one.
fn scheme(url: &str) -> Option<&str> {
    url.split_once("://").map(|(scheme, _)| scheme)
}
