use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use collect_shared::config::Namespace;
use collect_testkit::{ANY_PORT, Api, Running, Services, Site, amqp_url, defaults, eventually};
use serde_json::{Value, json};
use sheets_emulator::Emulator;
use sheets_sync::SheetsSyncConfig;
use tokio_util::sync::CancellationToken;

pub const KEY: &str = "sync-key";
pub const SPREADSHEET: &str = "sheet-1";
/// A second spreadsheet, for moving a form to.
pub const OTHER_SPREADSHEET: &str = "sheet-2";

/// ingest, a validator and (unless asked not to) sheets-sync in process, with the emulator.
/// Derefs to ingest's [`Api`] (`post`, `put`, ... with the key).
pub struct Pipeline {
    pub api: Api,
    pub namespace: Namespace,
    pub database_url: String,
    pub emulator: Emulator,
    pub emulator_url: String,
    pub key_file: PathBuf,
    /// The in-process sheets-sync's health routes, when one runs.
    pub sheets_sync: Option<SocketAddr>,
    services: Services,
}

impl std::ops::Deref for Pipeline {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Pipeline {
    pub async fn start() -> Self {
        Self::start_with(true).await
    }

    /// With or without a sheets-sync running in process.
    pub async fn start_with(sheets_sync: bool) -> Self {
        collect_shared::telemetry::init_tracing(collect_shared::config::LogFormat::Text);
        let site = Site::new(super::ENGINE);

        let emulator = Emulator::new();
        emulator.create_spreadsheet(SPREADSHEET);
        emulator.create_spreadsheet(OTHER_SPREADSHEET);
        let listener = tokio::net::TcpListener::bind(ANY_PORT).await.unwrap();
        let emulator_url = format!("http://{}/", listener.local_addr().unwrap());
        let router = sheets_emulator::router(emulator.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        let key = emulator.issue_key(&format!("{emulator_url}token"));
        let key_file = std::env::temp_dir().join(format!("collect-key-{}.json", site.namespace));
        std::fs::write(&key_file, key.to_string()).unwrap();

        let mut ingest_config: ingest::IngestConfig = defaults();
        ingest_config.common = site.common();
        ingest_config.listen = ANY_PORT;
        ingest_config.api_keys = vec![KEY.to_owned()];
        ingest_config.auth = ingest::AuthMode::On;
        let app = ingest::Application::build(ingest_config).await.unwrap();
        let ingest = app.local_addr();
        let mut services = Services::default();
        services.push(Running::spawn(|shutdown| app.run_until_stopped(shutdown)));

        let mut validator_config: validator::ValidatorConfig = defaults();
        validator_config.common = site.common();
        validator_config.listen = ANY_PORT;
        let app = validator::Application::build(validator_config, &CancellationToken::new())
            .await
            .unwrap();
        services.push(Running::spawn(|shutdown| app.run_until_stopped(shutdown)));

        let mut pipeline = Self {
            api: Api::new(ingest, KEY),
            namespace: site.namespace,
            database_url: site.database_url,
            emulator,
            emulator_url,
            key_file,
            sheets_sync: None,
            services,
        };
        if sheets_sync {
            let (sync, addr) = pipeline.start_sheets_sync().await;
            pipeline.services.push(sync);
            pipeline.sheets_sync = Some(addr);
        }
        pipeline.api.wait_until_ready().await;
        pipeline
    }

    fn site(&self) -> Site {
        Site::at(&self.namespace, &self.database_url, &amqp_url())
    }

    /// A sheets-sync configuration on this pipeline's namespace, database and emulator, with
    /// batches and a budget that suit tests.
    pub fn sheets_sync_config(&self) -> SheetsSyncConfig {
        let mut config: SheetsSyncConfig = defaults();
        config.common = self.site().common();
        config.listen = ANY_PORT;
        config.google_application_credentials = Some(self.key_file.clone());
        config.sheets_api_url = self.emulator_url.clone();
        config.default_spreadsheet_id = Some(SPREADSHEET.to_owned());
        config.batch_rows = 200;
        config.batch_max_wait_ms = 100;
        config.writes_per_minute = 6000;
        config.not_ready_after_ms = 300;
        config
    }

    /// Another sheets-sync instance on the same namespace, database and emulator.
    pub async fn start_sheets_sync(&self) -> (Running, SocketAddr) {
        self.start_sheets_sync_with(|_| {}).await
    }

    /// Like [`Pipeline::start_sheets_sync`], with its configuration changed by `configure`.
    pub async fn start_sheets_sync_with(
        &self,
        configure: impl FnOnce(&mut SheetsSyncConfig),
    ) -> (Running, SocketAddr) {
        let mut config = self.sheets_sync_config();
        configure(&mut config);
        let app = sheets_sync::Application::build(config, &CancellationToken::new())
            .await
            .unwrap();
        let addr = app.local_addr();
        (
            Running::spawn(|shutdown| app.run_until_stopped(shutdown)),
            addr,
        )
    }

    /// The environment of a sheets-sync process on this pipeline.
    pub fn sheets_sync_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SHEETS_SYNC_LISTEN", "127.0.0.1:0".into()),
            ("COLLECT_NAMESPACE", self.namespace.to_string()),
            ("DATABASE_URL", self.database_url.clone()),
            ("AMQP_URL", amqp_url()),
            (
                "GOOGLE_APPLICATION_CREDENTIALS",
                self.key_file.display().to_string(),
            ),
            ("SHEETS_API_URL", self.emulator_url.clone()),
            ("SHEETS_DEFAULT_SPREADSHEET_ID", SPREADSHEET.into()),
            ("SHEETS_BATCH_ROWS", "100".into()),
            ("SHEETS_BATCH_MAX_WAIT_MS", "100".into()),
            ("SHEETS_WRITES_PER_MINUTE", "6000".into()),
        ]
    }

    /// `GET` an ingest route with the API key: the status and the JSON body (`null` if none).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.api.get(path).await;
        (
            response.status().as_u16(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    /// The tab's cells, as stored in the emulator.
    pub fn tab(&self, tab: &str) -> Vec<Vec<Value>> {
        self.emulator
            .tab_values(SPREADSHEET, tab)
            .unwrap_or_default()
    }

    /// Deletes the tab, as a person does in the sheet.
    pub fn delete_tab(&self, tab: &str) {
        let sheet_id = self.emulator.sheet_id(SPREADSHEET, tab).unwrap();
        self.emulator
            .batch_update(
                SPREADSHEET,
                vec![json!({"deleteSheet": {"sheetId": sheet_id}})],
            )
            .unwrap();
        assert!(self.emulator.sheet_id(SPREADSHEET, tab).is_none());
    }

    /// Waits until the tab holds `rows` data rows (besides the header) and nothing waits to be
    /// written; returns the tab.
    pub async fn tab_with_rows(&self, tab: &str, rows: usize) -> Vec<Vec<Value>> {
        eventually_tab(self, tab, |cells| cells.len() == rows + 1).await
    }

    /// sheets-sync's `/readyz`: its status and body.
    pub async fn sheets_sync_readiness(&self) -> (u16, Value) {
        let addr = self.sheets_sync.expect("a sheets-sync in process");
        let response = self
            .client
            .get(format!("http://{addr}/readyz"))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    /// Starts sheets-sync in process, its configuration changed by `configure`, as the one
    /// the `/readyz` helpers talk to.
    pub async fn with_sheets_sync(mut self, configure: impl FnOnce(&mut SheetsSyncConfig)) -> Self {
        let (sync, addr) = self.start_sheets_sync_with(configure).await;
        self.services.push(sync);
        self.sheets_sync = Some(addr);
        self
    }

    /// sheets-sync's `/metrics` text.
    pub async fn sheets_sync_metrics(&self) -> String {
        let addr = self.sheets_sync.expect("a sheets-sync in process");
        self.client
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Defines a form with string questions `(id, label)` writing to `tab`.
    pub async fn put_form(
        &self,
        form_id: &str,
        tab: &str,
        questions: &[(&str, &str)],
        metadata: &[&str],
    ) {
        let questions: Vec<Value> = questions
            .iter()
            .map(|(id, label)| json!({"id": id, "label": label, "type": "string"}))
            .collect();
        let form = json!({
            "title": form_id,
            "questions": questions,
            "rules": [],
            "metadata": metadata,
            "sheet": {"tab": tab},
        });
        let status = self
            .put(&format!("/v1/forms/{form_id}"), &form)
            .await
            .status();
        assert_eq!(status, 201, "PUT form {form_id}");
    }

    pub fn add_service(&mut self, service: Running) {
        self.services.push(service);
    }

    pub async fn stop(self) {
        let site = self.site();
        self.services.stop().await;
        site.remove().await;
        let _ = std::fs::remove_file(&self.key_file);
    }
}

/// A valid household-finance envelope.
pub fn envelope(response_id: &str, revision: u64, savings: i64) -> Value {
    json!({
        "response_id": response_id,
        "revision": revision,
        "collector": {"user_id": "u-1", "username": "asha"},
        "answers": {
            "name": "Asha", "gender": "female", "age": 34,
            "monthly_income": 52000, "monthly_savings": savings, "monthly_expenditure": 30000,
            "food": 12000, "cable": 500, "healthcare": 2000, "fuel": 3000
        },
        "metadata": {"location": "Pune"}
    })
}

/// The data rows of a tab by response id (column A).
pub fn rows_by_id(cells: &[Vec<Value>]) -> std::collections::HashMap<String, Vec<Value>> {
    let mut rows = std::collections::HashMap::new();
    for row in &cells[1..] {
        let id = row[0].as_str().unwrap().to_owned();
        assert!(
            rows.insert(id.clone(), row.clone()).is_none(),
            "{id} is in the sheet twice"
        );
    }
    rows
}

/// Sends `total` valid responses (`r-0`...) through the batch route, 500 a request.
pub async fn send(pipeline: &Pipeline, total: usize) {
    for chunk in (0..total).collect::<Vec<_>>().chunks(500) {
        let batch: Vec<Value> = chunk
            .iter()
            .map(|i| envelope(&format!("r-{i}"), 1, 10))
            .collect();
        let response = pipeline
            .post("/v1/forms/household-finance/responses:batch", &json!(batch))
            .await;
        assert_eq!(response.status(), 202);
    }
}

/// Waits until the tab's cells satisfy `done` and nothing waits to be written; returns them.
pub async fn eventually_tab(
    pipeline: &Pipeline,
    tab: &str,
    done: impl Fn(&[Vec<Value>]) -> bool,
) -> Vec<Vec<Value>> {
    let pool = collect_testkit::database_pool(&pipeline.database_url).await;
    let cells = eventually(Duration::from_secs(60), "the tab as expected", || async {
        let waiting = collect_testkit::count(&pool, "SELECT count(*) FROM sheet_outbox")
            .await
            .ok()?;
        let cells = pipeline.tab(tab);
        (waiting == 0 && done(&cells)).then_some(cells)
    })
    .await;
    pool.close().await;
    cells
}

/// The index of the header cell `name`.
pub fn column(header: &[Value], name: &str) -> usize {
    header
        .iter()
        .position(|cell| cell == name)
        .unwrap_or_else(|| panic!("no column {name} in {header:?}"))
}

/// The value of a metric line without labels, or with exactly these labels.
pub fn metric(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}
