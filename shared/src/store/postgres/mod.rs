//! The SQL of Collect that is PostgreSQL's own (what both engines run alike is in `portable.rs`,
//! run here through `Run`). Migrations live in `shared/migrations/`,
//! are embedded in the binaries and run at start.

mod flag_history;
mod forms;
mod responses;
mod sheet_status;
mod sheets;
mod webhooks;

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::columns::columns_for;
use super::{Engine, StoreSettings};

columns_for!(sqlx::postgres::PgRow, |self, column| {
    sqlx::Row::try_get::<sqlx::types::Json<T>, _>(self, column).map(|json| json.0)
});

/// The store on PostgreSQL, through a connection pool.
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Creates the database if it is missing, connects and runs the migrations.
    pub async fn connect(settings: &StoreSettings) -> anyhow::Result<Self> {
        use anyhow::Context;
        let url = crate::config::redact_url(&settings.url);
        super::ensure_database::<sqlx::Postgres>(&settings.url, "PostgreSQL").await?;
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
        Ok(Self { pool })
    }
}

super::portable::run_on!(PgStore, sqlx::Postgres, postgres, |at| at);

impl Engine for PgStore {
    fn name(&self) -> &'static str {
        "PostgreSQL"
    }
}
