//! Every SQL statement of Collect, against PostgreSQL. Migrations live in `shared/migrations/`,
//! are embedded in the binaries and run at start.

mod flag_history;
mod forms;
mod responses;
mod sheet_status;
mod sheets;

use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::telemetry::Check;

pub use flag_history::{FlagCursor, FlagHistoryPage};
pub use forms::{FormCache, FormLookupError, PutForm, StoredForm};
pub use responses::{NewResponse, SaveOutcome, SheetPosition};
pub use sheet_status::{SheetFailure, SheetState};
pub use sheets::{ParkRow, ParkedRow, PendingForm, PendingRow};

/// Whether a failed statement would fail again for the same input however often it is
/// retried: a data exception (SQLSTATE class 22: U+0000 in text or `jsonb`, a time out of
/// range, ...), a broken constraint (23), a value over a limit (54), or a value the driver
/// cannot encode. A lost connection, a timeout, a restart or a full disk (08, 57, 53, ...)
/// may pass, and is retried.
pub fn is_permanent(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(database) => database.code().is_some_and(|code| {
            ["22", "23", "54"]
                .iter()
                .any(|class| code.starts_with(class))
        }),
        sqlx::Error::Encode(_) => true,
        _ => false,
    }
}

/// A failed statement for a log line or a dead letter: the SQLSTATE with PostgreSQL's message.
pub fn describe(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(database) => match database.code() {
            Some(code) => format!("PostgreSQL refused it ({code}): {}", database.message()),
            None => format!("PostgreSQL refused it: {}", database.message()),
        },
        other => other.to_string(),
    }
}

#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub url: String,
    pub max_connections: u32,
    /// PostgreSQL's `statement_timeout` on every connection.
    pub statement_timeout: Duration,
}

/// The database, through a connection pool. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    /// Creates the database if it is missing, connects, runs the migrations, and makes sure the
    /// built-in forms exist.
    pub async fn connect(settings: &StoreSettings) -> anyhow::Result<Self> {
        use anyhow::Context;
        let url = crate::config::redact_url(&settings.url);
        if !sqlx::Postgres::database_exists(&settings.url)
            .await
            .with_context(|| format!("cannot reach PostgreSQL at {url}"))?
        {
            // Another service may be creating it at the same moment: that is fine.
            if let Err(error) = sqlx::Postgres::create_database(&settings.url).await
                && !sqlx::Postgres::database_exists(&settings.url)
                    .await
                    .unwrap_or(false)
            {
                return Err(error).with_context(|| format!("cannot create the database {url}"));
            }
            tracing::info!(database = %url, "created the database");
        }
        let options: PgConnectOptions = settings
            .url
            .parse()
            .with_context(|| format!("DATABASE_URL is not a PostgreSQL URL: {url}"))?;
        // Every statement has a deadline: a stuck query or lock wait fails (SQLSTATE 57014,
        // retried) rather than holding a worker for ever.
        // Migrations run on a connection of their own without that deadline: building an
        // index over millions of responses may take longer than any statement should.
        {
            use sqlx::Connection;
            let mut migrating = sqlx::PgConnection::connect_with(&options)
                .await
                .with_context(|| format!("cannot connect to {url}"))?;
            sqlx::migrate!("./migrations")
                .run(&mut migrating)
                .await
                .context("cannot run the database migrations")?;
            let _ = migrating.close().await;
        }
        let options = options.options([(
            "statement_timeout",
            settings.statement_timeout.as_millis().to_string(),
        )]);
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .with_context(|| format!("cannot connect to {url}"))?;
        let store = Self { pool };
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
        use backon::BackoffBuilder;
        let mut delays = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(5))
            .with_jitter()
            .without_max_times()
            .build();
        loop {
            match Self::connect(settings).await {
                Ok(store) => return Ok(store),
                Err(error) => {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "PostgreSQL is not usable yet; retrying"
                    );
                    let delay = delays.next().unwrap_or(Duration::from_secs(5));
                    tokio::select! {
                        _ = shutdown.cancelled() => return Err(error.context("stopped while waiting for PostgreSQL")),
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A `/readyz` check: ok while a trivial query answers within 2 s.
    pub fn readiness_check(&self) -> Check {
        let pool = self.pool.clone();
        Arc::new(move || {
            let pool = pool.clone();
            Box::pin(async move {
                let query = sqlx::query("SELECT 1").execute(&pool);
                match tokio::time::timeout(Duration::from_secs(2), query).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(error)) => Err(format!("database error: {error}")),
                    Err(_) => Err("the database did not answer within 2 s".into()),
                }
            })
        })
    }
}
