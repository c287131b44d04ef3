//! `sheets-sync`: keeps each form's Google Sheet up to date. It reads the outbox the validator
//! writes with each stored revision (`sheet_outbox`) and writes waiting rows to their sheets in
//! batches, each response in exactly one row. It needs the database and Google, not RabbitMQ.

mod google;
mod sheet_row;
mod status;
mod writer;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use collect_shared::config::CommonConfig;
use collect_shared::server::{self, Bound, Service};
use collect_shared::store::{FormCache, StoreSettings};
use collect_shared::telemetry::{Readiness, ops_router, track_http};
use tokio_util::sync::CancellationToken;

/// Writes stored responses to Google Sheets.
#[derive(Debug, Clone, Parser)]
#[command(name = "sheets-sync", version, about, args_override_self = true)]
pub struct SheetsSyncConfig {
    #[command(flatten)]
    pub common: CommonConfig,

    /// Address of the health and metrics routes.
    #[arg(long, env = "SHEETS_SYNC_LISTEN", default_value = "127.0.0.1:8082")]
    pub listen: SocketAddr,

    /// Path of a Google service-account key (JSON); its `token_uri` is honoured.
    #[arg(long, env = "GOOGLE_APPLICATION_CREDENTIALS")]
    pub google_application_credentials: Option<PathBuf>,

    /// Root of the Sheets API (point it at the emulator for tests and demos).
    #[arg(
        long,
        env = "SHEETS_API_URL",
        default_value = "https://sheets.googleapis.com/"
    )]
    pub sheets_api_url: String,

    /// Spreadsheet for forms that name none.
    #[arg(long, env = "SHEETS_DEFAULT_SPREADSHEET_ID")]
    pub default_spreadsheet_id: Option<String>,

    /// A form's waiting rows are written when this many wait...
    #[arg(long, env = "SHEETS_BATCH_ROWS", default_value_t = 2000)]
    pub batch_rows: usize,

    /// The most rows one batch carries when more wait (a backlog: Google's quota, an export,
    /// an outage over); it also stops at `SHEETS_BATCH_MAX_BYTES`, whichever comes first.
    /// Under Google's quota of 60 writes a minute, fewer and fuller requests are what empties
    /// a backlog sooner. Never below `SHEETS_BATCH_ROWS`.
    #[arg(long, env = "SHEETS_BATCH_MAX_ROWS", default_value_t = 10_000)]
    pub batch_max_rows: usize,

    /// ...or when its oldest row has waited this long.
    #[arg(long, env = "SHEETS_BATCH_MAX_WAIT_MS", default_value_t = 1000)]
    pub batch_max_wait_ms: u64,

    /// How often a tab being written is looked up again (`spreadsheets.get`: one read, which
    /// refreshes every tab of that spreadsheet being written), to recreate a tab a person
    /// deleted or renamed and keep the cells gauge fresh.
    #[arg(long, env = "SHEETS_TAB_CHECK_MS", default_value_t = 60_000)]
    pub tab_check_ms: u64,

    /// Client-side write budget per credential (Google's per-user quota is 60 a minute); reads
    /// get the same budget of their own.
    #[arg(long, env = "SHEETS_WRITES_PER_MINUTE", default_value_t = 60)]
    pub writes_per_minute: u32,

    /// The most bytes of rows one Sheets request carries (besides `SHEETS_BATCH_ROWS`): Google
    /// advises at most 2 MB a request and refuses bodies over 10 MiB. A batch's reading from
    /// the database stops at about as many bytes of responses, so memory does not grow with
    /// `SHEETS_BATCH_ROWS`.
    #[arg(long, env = "SHEETS_BATCH_MAX_BYTES", default_value_t = 2_000_000)]
    pub batch_max_bytes: usize,

    /// Deadline of every Sheets API call, its token fetch included; a write that times out
    /// has an unknown outcome (its tab is reconciled before the next append).
    #[arg(long, env = "SHEETS_REQUEST_TIMEOUT_MS", default_value_t = 30_000)]
    pub request_timeout_ms: u64,

    /// A tab whose writes have failed for this long makes `/readyz` answer 503; so does a
    /// writer that has not progressed for this long plus twice `SHEETS_REQUEST_TIMEOUT_MS`.
    #[arg(long, env = "SHEETS_NOT_READY_AFTER_MS", default_value_t = 60_000)]
    pub not_ready_after_ms: u64,
}

/// sheets-sync, bound to its port, its database ready.
pub type Application = collect_shared::server::Application<SheetsSyncConfig>;

impl Service for SheetsSyncConfig {
    const LISTEN_VARIABLE: &'static str = "SHEETS_SYNC_LISTEN";

    fn listen(&self) -> SocketAddr {
        self.listen
    }

    fn store_settings(&self) -> StoreSettings {
        self.common.store_settings()
    }

    async fn run(bound: Bound<Self>, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Bound {
            listener,
            config,
            store,
        } = bound;
        let heartbeat = Arc::new(google::Heartbeat::default());
        heartbeat.touch();
        let request_timeout = Duration::from_millis(config.request_timeout_ms.max(1));
        let api = match &config.google_application_credentials {
            Some(path) => Some(
                google::SheetsApi::connect(
                    path,
                    &config.sheets_api_url,
                    config.writes_per_minute,
                    request_timeout,
                    heartbeat.clone(),
                )
                .await?,
            ),
            None => {
                tracing::warn!(
                    "GOOGLE_APPLICATION_CREDENTIALS is not set: rows wait in the database until it is"
                );
                None
            }
        };
        let writer = writer::Writer::new(
            store.clone(),
            Arc::new(FormCache::definitions(
                store.clone(),
                Duration::from_secs(2),
            )),
            api,
            writer::WriterSettings {
                default_spreadsheet_id: config.default_spreadsheet_id.clone(),
                batch_rows: config.batch_rows.max(1),
                batch_max_rows: config.batch_max_rows.max(config.batch_rows).max(1),
                batch_max_bytes: config.batch_max_bytes.max(1),
                max_wait: Duration::from_millis(config.batch_max_wait_ms),
                tab_check_interval: Duration::from_millis(config.tab_check_ms),
            },
            heartbeat.clone(),
            shutdown.clone(),
        );
        let blocked = writer.blocked.clone();
        let not_ready_after = Duration::from_millis(config.not_ready_after_ms);
        // A pass waits at most for one call (its deadline) and its budget slot between two
        // heartbeats; twice the deadline leaves room for both.
        let stalled_after = not_ready_after + 2 * request_timeout;
        let writing = tokio::spawn(writer.run());
        let reporting = tokio::spawn(status::report(
            store.clone(),
            blocked.clone(),
            format!("sheets-sync-{}", uuid::Uuid::new_v4()),
            shutdown.clone(),
        ));

        let sheets_check: collect_shared::telemetry::Check = Arc::new(move || {
            let mut stuck: Vec<String> = match blocked.lock() {
                // Only Google out of reach makes the instance unready: a form whose sheet is
                // not shared, gone or full is reported per form (`GET /v1/forms/{id}/sheet`).
                Ok(blocked) => blocked
                    .iter()
                    .filter(|(_, b)| !b.about_this_sheet && b.since.elapsed() >= not_ready_after)
                    .map(|((_, target), b)| {
                        format!(
                            "{}/{}: {} (for {} s)",
                            target.spreadsheet_id,
                            target.tab,
                            b.reason,
                            b.since.elapsed().as_secs()
                        )
                    })
                    .collect(),
                Err(_) => vec!["the sheet writer failed (see the log)".to_owned()],
            };
            match heartbeat.age() {
                Some(age) if age >= stalled_after => stuck.push(format!(
                    "the sheet writer has made no progress for {} s (a Sheets call or the database hangs)",
                    age.as_secs()
                )),
                Some(_) => {}
                None => stuck.push("the sheet writer failed (see the log)".to_owned()),
            }
            Box::pin(async move {
                if stuck.is_empty() {
                    Ok(())
                } else {
                    Err(stuck.join("; "))
                }
            })
        });
        let readiness = Readiness::new()
            .with_check("database", store.readiness_check())
            .with_check("sheets", sheets_check);
        let router = ops_router(readiness).layer(axum::middleware::from_fn(track_http));
        server::serve(listener, router, shutdown, Duration::from_secs(5)).await?;
        let _ = tokio::time::timeout(Duration::from_secs(8), async {
            let _ = writing.await;
            let _ = reporting.await;
        })
        .await;
        tracing::info!("stopped");
        Ok(())
    }
}

pub async fn run(config: SheetsSyncConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    Application::run(config, shutdown).await
}
