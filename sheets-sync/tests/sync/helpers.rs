use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use collect_shared::config::Namespace;
use collect_testkit::{amqp_url, eventually, remove_namespace};
use serde_json::{Value, json};
use sheets_emulator::Emulator;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const KEY: &str = "sync-key";
pub const SPREADSHEET: &str = "sheet-1";
/// A second spreadsheet, for moving a form to.
pub const OTHER_SPREADSHEET: &str = "sheet-2";

type Running = (CancellationToken, JoinHandle<anyhow::Result<()>>);

pub struct Pipeline {
    pub ingest: SocketAddr,
    pub namespace: Namespace,
    pub database_url: String,
    pub emulator: Emulator,
    pub emulator_url: String,
    pub key_file: PathBuf,
    pub client: reqwest::Client,
    /// The in-process sheets-sync's health routes, when one runs.
    pub sheets_sync: Option<SocketAddr>,
    services: Vec<Running>,
}

impl Pipeline {
    pub async fn start() -> Self {
        Self::start_with(true).await
    }

    /// With or without a sheets-sync running in process.
    pub async fn start_with(sheets_sync: bool) -> Self {
        collect_shared::telemetry::init_tracing(collect_shared::config::LogFormat::Text);
        let namespace = collect_testkit::namespace();
        let database_url = collect_testkit::database_url(super::ENGINE);

        let emulator = Emulator::new();
        emulator.create_spreadsheet(SPREADSHEET);
        emulator.create_spreadsheet(OTHER_SPREADSHEET);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let emulator_url = format!("http://{}/", listener.local_addr().unwrap());
        let router = sheets_emulator::router(emulator.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        let key = emulator.issue_key(&format!("{emulator_url}token"));
        let key_file = std::env::temp_dir().join(format!("collect-key-{namespace}.json"));
        std::fs::write(&key_file, key.to_string()).unwrap();

        let ingest_config = ingest::IngestConfig::try_parse_from([
            "ingest",
            "--listen",
            "127.0.0.1:0",
            "--namespace",
            namespace.as_str(),
            "--database-url",
            &database_url,
            "--amqp-url",
            &amqp_url(),
            "--api-keys",
            KEY,
            "--auth",
            "on",
        ])
        .unwrap();
        let app = ingest::Application::build(ingest_config).await.unwrap();
        let ingest = app.local_addr();
        let shutdown = CancellationToken::new();
        let mut services = vec![(
            shutdown.clone(),
            tokio::spawn(app.run_until_stopped(shutdown)),
        )];

        let validator_config = validator::ValidatorConfig::try_parse_from([
            "validator",
            "--listen",
            "127.0.0.1:0",
            "--namespace",
            namespace.as_str(),
            "--database-url",
            &database_url,
            "--amqp-url",
            &amqp_url(),
        ])
        .unwrap();
        let shutdown = CancellationToken::new();
        let app = validator::Application::build(validator_config, &shutdown)
            .await
            .unwrap();
        services.push((
            shutdown.clone(),
            tokio::spawn(app.run_until_stopped(shutdown)),
        ));

        let pipeline = Self {
            ingest,
            namespace,
            database_url,
            emulator,
            emulator_url,
            key_file,
            client: reqwest::Client::new(),
            sheets_sync: None,
            services,
        };
        let mut pipeline = pipeline;
        if sheets_sync {
            let (sync, addr) = pipeline.start_sheets_sync().await;
            pipeline.services.push(sync);
            pipeline.sheets_sync = Some(addr);
        }
        eventually(Duration::from_secs(20), "ingest ready", || async {
            let response = pipeline
                .client
                .get(pipeline.url("/readyz"))
                .send()
                .await
                .ok()?;
            (response.status() == 200).then_some(())
        })
        .await;
        pipeline
    }

    /// Another sheets-sync instance on the same namespace, database and emulator.
    pub async fn start_sheets_sync(&self) -> (Running, SocketAddr) {
        self.start_sheets_sync_with(&[]).await
    }

    /// Like [`Pipeline::start_sheets_sync`], with more flags (later ones win).
    pub async fn start_sheets_sync_with(&self, extra: &[&str]) -> (Running, SocketAddr) {
        let base = [
            "sheets-sync",
            "--listen",
            "127.0.0.1:0",
            "--namespace",
            self.namespace.as_str(),
            "--database-url",
            &self.database_url,
            "--amqp-url",
            &amqp_url(),
            "--google-application-credentials",
            self.key_file.to_str().unwrap(),
            "--sheets-api-url",
            &self.emulator_url,
            "--default-spreadsheet-id",
            SPREADSHEET,
            "--batch-rows",
            "200",
            "--batch-max-wait-ms",
            "100",
            "--writes-per-minute",
            "6000",
            "--not-ready-after-ms",
            "300",
        ];
        let config =
            sheets_sync::SheetsSyncConfig::try_parse_from(base.iter().chain(extra.iter())).unwrap();
        let shutdown = CancellationToken::new();
        let app = sheets_sync::Application::build(config, &shutdown)
            .await
            .unwrap();
        let addr = app.local_addr();
        (
            (
                shutdown.clone(),
                tokio::spawn(app.run_until_stopped(shutdown)),
            ),
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

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.ingest)
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(KEY)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn put(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .put(self.url(path))
            .bearer_auth(KEY)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// `GET` an ingest route with the API key: the status and the JSON body (`null` if none).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(self.url(path))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
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

    /// Starts sheets-sync in process with more flags, as the one `/readyz` helpers talk to.
    pub async fn with_sheets_sync(mut self, extra: &[&str]) -> Self {
        let (sync, addr) = self.start_sheets_sync_with(extra).await;
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
        for (shutdown, _) in &self.services {
            shutdown.cancel();
        }
        for (_, task) in self.services {
            tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .expect("a service stops within 20 s")
                .unwrap()
                .unwrap();
        }
        remove_namespace(&self.namespace).await;
        collect_testkit::drop_database(&self.database_url).await;
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
