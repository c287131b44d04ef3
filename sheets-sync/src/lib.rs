//! `sheets-sync`: consumes `N.sheets` and keeps each form's Google Sheet up to date. So far it
//! holds its broker connection (declaring the topology) and serves its health routes; the
//! work lands with the sheets-sync issue.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use collect_shared::config::CommonConfig;
use collect_shared::server;
use tokio_util::sync::CancellationToken;

/// Writes stored responses to Google Sheets.
#[derive(Debug, Clone, Parser)]
#[command(name = "sheets-sync", version, about)]
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

    /// A batch is written when it holds this many rows...
    #[arg(long, env = "SHEETS_BATCH_ROWS", default_value_t = 500)]
    pub batch_rows: usize,

    /// ...or when its oldest row has waited this long.
    #[arg(long, env = "SHEETS_BATCH_MAX_WAIT_MS", default_value_t = 1000)]
    pub batch_max_wait_ms: u64,

    /// Client-side write budget per credential (Google's per-user quota is 60 a minute).
    #[arg(long, env = "SHEETS_WRITES_PER_MINUTE", default_value_t = 60)]
    pub writes_per_minute: u32,
}

pub async fn run(config: SheetsSyncConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listener = server::bind(config.listen, "SHEETS_SYNC_LISTEN").await?;
    server::run_ops_only("sheets-sync", listener, &config.common, shutdown).await
}
