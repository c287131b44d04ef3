//! `sheets-emulator`: an in-memory stand-in for the part of the Google Sheets API v4 that Collect
//! uses, and for Google's OAuth 2.0 token endpoint for service accounts. Clients talk to it with
//! the real `google-sheets4` and `yup-oauth2` crates; request and reply bodies follow Google's
//! reference (camelCase fields, Google's error body, Google's messages where known).
//!
//! Modules: [`a1`] parses ranges, [`store`] holds the spreadsheets and does what the API does to
//! them, [`api`] maps Google's paths onto that, [`oauth`] issues keys and tokens, [`faults`]
//! injects trouble, [`debug`] is the emulator's own surface.

pub mod a1;
mod api;
pub mod cell;
mod debug;
mod edits;
mod error;
pub mod faults;
mod oauth;
pub mod store;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::routing::{any, get, post, put};
use clap::{Parser, Subcommand};
use collect_shared::config::LogFormat;
use serde::Serialize;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use cell::Cell;
pub use faults::Faults;

use faults::FaultState;
use oauth::OAuth;
use store::Store;

/// An in-memory Google Sheets API v4 and OAuth token endpoint, for tests, demos and benchmarks.
#[derive(Debug, Clone, Parser)]
#[command(name = "sheets-emulator", version, about, args_override_self = true)]
pub struct EmulatorConfig {
    /// Address to listen on.
    #[arg(long, env = "SHEETS_EMULATOR_LISTEN", default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,

    /// Comma-separated spreadsheet ids to create at start, each empty with one tab `Sheet1`.
    #[arg(long, env = "SHEETS_EMULATOR_SPREADSHEETS", value_delimiter = ',')]
    pub spreadsheets: Vec<String>,

    /// A service-account key file to trust; created (with a new key) when missing, so that a
    /// restarted emulator accepts the same key.
    #[arg(long, env = "SHEETS_EMULATOR_KEY_FILE")]
    pub key_file: Option<PathBuf>,

    /// The URL clients reach this server at, used for the `token_uri` of a created key file.
    /// Defaults to `http://<listen>`.
    #[arg(long, env = "SHEETS_EMULATOR_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Log output: human-readable `text` or one JSON object per line.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Asks a running emulator for a new service-account key and writes its JSON.
    MakeKey {
        /// The running emulator.
        #[arg(long, default_value = "http://127.0.0.1:8090")]
        url: String,
        /// Where to write the key (stdout when absent).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Request counters, for tests and `GET /emulator/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Requests to `/v4/...`, whatever became of them.
    pub sheets_requests: u64,
    /// Reads that succeeded.
    pub reads: u64,
    /// Writes applied (including those whose reply was then dropped).
    pub writes: u64,
    pub tokens_issued: u64,
    pub unauthenticated: u64,
    pub errors_injected: u64,
    pub quota_refusals: u64,
    pub replies_dropped: u64,
}

#[derive(Default)]
struct Counters {
    sheets_requests: AtomicU64,
    reads: AtomicU64,
    writes: AtomicU64,
    tokens_issued: AtomicU64,
    unauthenticated: AtomicU64,
    errors_injected: AtomicU64,
    quota_refusals: AtomicU64,
    replies_dropped: AtomicU64,
}

/// The emulator's state; clones share it. Locks are never held across an `.await`.
#[derive(Clone, Default)]
pub struct Emulator {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    store: Mutex<Store>,
    oauth: Mutex<OAuth>,
    faults: Mutex<FaultState>,
    counters: Counters,
}

/// A poisoned lock only means a handler panicked; the data is still usable for a test double.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Emulator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates an empty spreadsheet (one tab, `Sheet1`) with this id; `false` if it existed.
    pub fn create_spreadsheet(&self, id: &str) -> bool {
        let mut store = lock(&self.inner.store);
        if store.contains(id) {
            return false;
        }
        store
            .create(id.to_owned(), &Value::Null, u64::MAX, new_sheet_id)
            .is_ok()
    }

    /// The ids of all spreadsheets.
    pub fn spreadsheet_ids(&self) -> Vec<String> {
        lock(&self.inner.store).ids()
    }

    /// A new service-account key whose `token_uri` is `token_uri`, trusted from now on.
    ///
    /// # Panics
    /// If the system cannot generate an RSA key (see [`Emulator::try_issue_key`]).
    pub fn issue_key(&self, token_uri: &str) -> Value {
        match self.try_issue_key(token_uri) {
            Ok(key) => key,
            Err(error) => panic!("cannot issue a service-account key: {error:#}"),
        }
    }

    pub fn try_issue_key(&self, token_uri: &str) -> anyhow::Result<Value> {
        let (key, account) = oauth::generate_key(token_uri)?;
        tracing::info!(client_email = %account.client_email, "service-account key issued");
        self.lock_oauth().trust(account);
        Ok(key)
    }

    /// Trusts an existing service-account key (its JSON, as Google issues it).
    pub fn trust_key(&self, key: &Value) -> anyhow::Result<()> {
        let account = oauth::account_from_key(key)?;
        self.lock_oauth().trust(account);
        Ok(())
    }

    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.inner.faults) = FaultState::new(faults);
    }

    pub fn faults(&self) -> Faults {
        lock(&self.inner.faults).faults.clone()
    }

    /// A tab's cells as stored (numbers and booleans typed, formulas as their `=` text),
    /// trailing empty rows and cells left out. `None` if there is no such spreadsheet or tab.
    pub fn tab_values(&self, spreadsheet: &str, tab: &str) -> Option<Vec<Vec<Value>>> {
        self.tab_cells(spreadsheet, tab).map(|rows| {
            rows.iter()
                .map(|row| row.iter().map(Cell::stored).collect())
                .collect()
        })
    }

    /// Like [`Emulator::tab_values`], as [`Cell`]s: tells a formula from text starting with `=`.
    pub fn tab_cells(&self, spreadsheet: &str, tab: &str) -> Option<Vec<Vec<Cell>>> {
        let store = lock(&self.inner.store);
        let spreadsheet = store.get(spreadsheet).ok()?;
        let index = spreadsheet.sheet_index(tab)?;
        Some(spreadsheet.sheets[index].stored_rows())
    }

    /// The titles of a spreadsheet's tabs, in order.
    pub fn tab_titles(&self, spreadsheet: &str) -> Option<Vec<String>> {
        let store = lock(&self.inner.store);
        let spreadsheet = store.get(spreadsheet).ok()?;
        Some(spreadsheet.sheets.iter().map(|s| s.title.clone()).collect())
    }

    /// `spreadsheets.batchUpdate` in-process, as a person editing the sheet: `requests` as in
    /// Google's API (`json!({"sortRange": {...}})`); the replies, in order. `Err` is Google's
    /// error message. Same code as the HTTP route; faults and counters do not apply.
    pub fn batch_update(
        &self,
        spreadsheet: &str,
        requests: Vec<Value>,
    ) -> Result<Vec<Value>, String> {
        let reply = api::local(
            self,
            api::Call::BatchUpdate(spreadsheet.to_owned()),
            &[],
            &serde_json::json!({ "requests": requests }),
        )
        .map_err(|error| error.message)?;
        Ok(match reply.get("replies") {
            Some(Value::Array(replies)) => replies.clone(),
            _ => Vec::new(),
        })
    }

    /// `values.update` with `valueInputOption=RAW`, in-process: `range` in A1 (`'My tab'!B2`,
    /// `Tab!A1:C3`). `Err` is Google's error message.
    pub fn update_values(
        &self,
        spreadsheet: &str,
        range: &str,
        rows: Vec<Vec<Value>>,
    ) -> Result<(), String> {
        api::local(
            self,
            api::Call::ValuesUpdate(spreadsheet.to_owned(), range.to_owned()),
            &[("valueInputOption", "RAW")],
            &serde_json::json!({ "values": rows }),
        )
        .map(drop)
        .map_err(|error| error.message)
    }

    /// `values.clear`, in-process. `Err` is Google's error message.
    pub fn clear_values(&self, spreadsheet: &str, range: &str) -> Result<(), String> {
        api::local(
            self,
            api::Call::ValuesClear(spreadsheet.to_owned(), range.to_owned()),
            &[],
            &serde_json::json!({}),
        )
        .map(drop)
        .map_err(|error| error.message)
    }

    /// A tab's `sheetId` (what `GridRange` and `DimensionRange` name it by).
    pub fn sheet_id(&self, spreadsheet: &str, tab: &str) -> Option<i64> {
        let store = lock(&self.inner.store);
        let spreadsheet = store.get(spreadsheet).ok()?;
        let index = spreadsheet.sheet_index(tab)?;
        Some(spreadsheet.sheets[index].id)
    }

    /// A tab's grid: `(rowCount, columnCount)`.
    pub fn grid_size(&self, spreadsheet: &str, tab: &str) -> Option<(u64, u64)> {
        let store = lock(&self.inner.store);
        let spreadsheet = store.get(spreadsheet).ok()?;
        let sheet = &spreadsheet.sheets[spreadsheet.sheet_index(tab)?];
        Some((u64::from(sheet.row_count), u64::from(sheet.column_count)))
    }

    pub fn stats(&self) -> Stats {
        let c = &self.inner.counters;
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Stats {
            sheets_requests: read(&c.sheets_requests),
            reads: read(&c.reads),
            writes: read(&c.writes),
            tokens_issued: read(&c.tokens_issued),
            unauthenticated: read(&c.unauthenticated),
            errors_injected: read(&c.errors_injected),
            quota_refusals: read(&c.quota_refusals),
            replies_dropped: read(&c.replies_dropped),
        }
    }

    /// Returns once the `hang` fault is lifted (at once when it is not set).
    pub async fn wait_while_hung(&self) {
        while self.lock_faults().faults.hang {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Write requests applied so far.
    pub fn write_count(&self) -> u64 {
        self.stats().writes
    }

    fn lock_store(&self) -> MutexGuard<'_, Store> {
        lock(&self.inner.store)
    }

    fn lock_oauth(&self) -> MutexGuard<'_, OAuth> {
        lock(&self.inner.oauth)
    }

    fn lock_faults(&self) -> MutexGuard<'_, FaultState> {
        lock(&self.inner.faults)
    }

    fn count(&self, counter: impl Fn(&Counters) -> &AtomicU64) {
        counter(&self.inner.counters).fetch_add(1, Ordering::Relaxed);
    }

    /// Loads `path` (a service-account key JSON) and trusts it; when the file does not exist,
    /// issues a key with `token_uri` and writes it there first. Access tokens are then MACed
    /// with a secret derived from that key, so they outlive a restart.
    pub fn load_or_create_key_file(&self, path: &Path, token_uri: &str) -> anyhow::Result<()> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let key: Value = serde_json::from_slice(&bytes)
                    .with_context(|| format!("{} is not JSON", path.display()))?;
                self.trust_key(&key)
                    .with_context(|| format!("cannot use the key in {}", path.display()))?;
                self.lock_oauth()
                    .derive_secret(key["private_key"].as_str().unwrap_or("").as_bytes());
                tracing::info!(path = %path.display(), client_email = key["client_email"].as_str(), "trusting the key file");
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let key = self.try_issue_key(token_uri)?;
                self.lock_oauth()
                    .derive_secret(key["private_key"].as_str().unwrap_or("").as_bytes());
                write_private(path, &serde_json::to_vec_pretty(&key)?, false)
                    .with_context(|| format!("cannot write the key file {}", path.display()))?;
                tracing::info!(path = %path.display(), "created the key file");
            }
            Err(error) => {
                return Err(error).with_context(|| format!("cannot read {}", path.display()));
            }
        }
        Ok(())
    }
}

/// Writes a file only its owner can read (it holds a private key).
fn write_private(path: &Path, bytes: &[u8], overwrite: bool) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    if overwrite {
        options.write(true).create(true).truncate(true);
    } else {
        options.write(true).create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    use std::io::Write;
    options.open(path)?.write_all(bytes)
}

/// Google-looking spreadsheet ids: 44 characters of base64url.
pub(crate) fn new_spreadsheet_id() -> String {
    use base64::Engine as _;
    let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(oauth::random_bytes::<33>());
    format!("1{}", &id[1..])
}

/// Tab ids as Sheets makes them: positive 31-bit numbers.
pub(crate) fn new_sheet_id() -> i64 {
    let bytes = oauth::random_bytes::<4>();
    i64::from(u32::from_le_bytes(bytes) & 0x7fff_ffff).max(1)
}

/// The largest request body Google's front end takes: it answers 400 "Request payload size
/// exceeds the limit: 10485760 bytes." above it.
pub const MAX_PAYLOAD_BYTES: usize = 10 * 1024 * 1024;

/// All routes: Google's under `/v4` and `/token`, the emulator's under `/emulator`, `/healthz`.
pub fn router(emulator: Emulator) -> Router {
    Router::new()
        .route("/token", post(oauth::token))
        .route(
            "/v4/{*path}",
            // Bodies over Google's limit reach the handler, which answers them as Google does;
            // only absurd ones (over 64 MiB) are cut off by the server (413).
            any(api::dispatch).layer(axum::extract::DefaultBodyLimit::max(64 * 1024 * 1024)),
        )
        .route("/healthz", get(debug::healthz))
        .route(
            "/emulator/faults",
            get(debug::get_faults).put(debug::put_faults),
        )
        .route("/emulator/spreadsheets/{id}", put(debug::put_spreadsheet))
        .route(
            "/emulator/spreadsheets/{id}/tabs/{tab}",
            get(debug::tab_csv),
        )
        .route("/emulator/service-accounts", post(debug::issue_key))
        .route("/emulator/stats", get(debug::stats))
        .with_state(emulator)
}

/// Serves `emulator` on `listener` until `shutdown` fires.
pub async fn serve(
    emulator: Emulator,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    collect_shared::server::serve(listener, router(emulator), shutdown, Duration::from_secs(5))
        .await
}

/// The process: sets up what `config` asks for, binds, serves until `shutdown`.
pub async fn run(config: EmulatorConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let emulator = Emulator::new();
    for id in config
        .spreadsheets
        .iter()
        .map(|id| id.trim())
        .filter(|id| !id.is_empty())
    {
        emulator.create_spreadsheet(id);
        tracing::info!(spreadsheet = id, "spreadsheet created");
    }
    if let Some(path) = &config.key_file {
        let base = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", config.listen));
        let token_uri = format!("{}/token", base.trim_end_matches('/'));
        emulator.load_or_create_key_file(path, &token_uri)?;
    }
    let listener = collect_shared::server::bind(config.listen, "SHEETS_EMULATOR_LISTEN").await?;
    serve(emulator, listener, shutdown).await
}

/// `make-key`: asks the emulator at `url` for a key; writes it to `out`, or returns it for
/// stdout.
pub async fn make_key(url: &str, out: Option<&Path>) -> anyhow::Result<Option<String>> {
    let base = url.trim_end_matches('/');
    let response = reqwest::Client::new()
        .post(format!("{base}/emulator/service-accounts"))
        .json(&serde_json::json!({ "token_uri": format!("{base}/token") }))
        .send()
        .await
        .with_context(|| format!("cannot reach the emulator at {base}"))?;
    let status = response.status();
    let body = response.text().await.context("no reply body")?;
    if !status.is_success() {
        anyhow::bail!("the emulator answered {status}: {body}");
    }
    let key: Value = serde_json::from_str(&body).context("the reply is not JSON")?;
    let pretty = serde_json::to_string_pretty(&key)? + "\n";
    match out {
        Some(path) => {
            write_private(path, pretty.as_bytes(), true)
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(None)
        }
        None => Ok(Some(pretty)),
    }
}
