//! The services under measurement: release binaries beside this one, in a namespace and a
//! database of their own, with the Sheets emulator in this process.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use collect_shared::amqp::Topology;
use collect_shared::config::Namespace;
use collect_testkit::ServiceProcess;
use sheets_emulator::Emulator;

pub const KEY: &str = "bench-key";
pub const SPREADSHEET: &str = "bench-sheet";

/// The highest peak RSS seen per service, in bytes.
#[derive(Default)]
pub struct Peaks(pub BTreeMap<&'static str, u64>);

impl Peaks {
    pub fn record(&mut self, service: &'static str, process: &ServiceProcess) {
        if let Some(bytes) = process.peak_rss_bytes() {
            let peak = self.0.entry(service).or_insert(0);
            *peak = (*peak).max(bytes);
        }
    }
}

pub struct Setup {
    pub namespace: Namespace,
    pub topology: Topology,
    pub database_url: String,
    pub emulator: Emulator,
    emulator_url: String,
    key_file: PathBuf,
    pub client: reqwest::Client,
}

fn binary(name: &str) -> anyhow::Result<String> {
    let exe = std::env::current_exe()?;
    let path = exe.parent().context("no directory")?.join(name);
    anyhow::ensure!(
        path.exists(),
        "{} is missing: run the benchmark with scripts/bench.sh (it builds every binary)",
        path.display()
    );
    Ok(path.display().to_string())
}

impl Setup {
    pub async fn new() -> anyhow::Result<Self> {
        let namespace: Namespace =
            format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
                .parse()
                .map_err(|e: String| anyhow::anyhow!(e))?;
        let topology = Topology::new(namespace.clone());
        let database_url = collect_testkit::database_url();
        let emulator = Emulator::new();
        emulator.create_spreadsheet(SPREADSHEET);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let emulator_url = format!("http://{}/", listener.local_addr()?);
        let router = sheets_emulator::router(emulator.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        let key = emulator.issue_key(&format!("{emulator_url}token"));
        let key_file = std::env::temp_dir().join(format!("collect-bench-key-{namespace}.json"));
        std::fs::write(&key_file, key.to_string())?;
        Ok(Self {
            namespace,
            topology,
            database_url,
            emulator,
            emulator_url,
            key_file,
            client: reqwest::Client::new(),
        })
    }

    fn common_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("COLLECT_NAMESPACE", self.namespace.to_string()),
            ("DATABASE_URL", self.database_url.clone()),
            ("AMQP_URL", collect_testkit::amqp_url()),
            // Warnings only, and the line that says where it listens.
            ("RUST_LOG", "warn,collect_shared::server=info".to_owned()),
        ]
    }

    pub async fn start_ingest(&self) -> anyhow::Result<ServiceProcess> {
        let mut env = self.common_env();
        env.extend([
            ("INGEST_LISTEN", "127.0.0.1:0".to_owned()),
            ("COLLECT_API_KEYS", KEY.to_owned()),
        ]);
        self.start(&binary("ingest")?, &env).await
    }

    pub async fn start_validator(&self) -> anyhow::Result<ServiceProcess> {
        let mut env = self.common_env();
        env.push(("VALIDATOR_LISTEN", "127.0.0.1:0".to_owned()));
        self.start(&binary("validator")?, &env).await
    }

    /// With the emulator, a write budget well above Google's (the emulator is not the subject).
    pub async fn start_sheets_sync(&self) -> anyhow::Result<ServiceProcess> {
        let mut env = self.common_env();
        env.extend([
            ("SHEETS_SYNC_LISTEN", "127.0.0.1:0".to_owned()),
            (
                "GOOGLE_APPLICATION_CREDENTIALS",
                self.key_file.display().to_string(),
            ),
            ("SHEETS_API_URL", self.emulator_url.clone()),
            ("SHEETS_DEFAULT_SPREADSHEET_ID", SPREADSHEET.to_owned()),
            ("SHEETS_WRITES_PER_MINUTE", "6000".to_owned()),
        ]);
        self.start(&binary("sheets-sync")?, &env).await
    }

    async fn start(
        &self,
        binary: &str,
        env: &[(&'static str, String)],
    ) -> anyhow::Result<ServiceProcess> {
        let service = ServiceProcess::start(binary, env).await;
        collect_testkit::eventually(Duration::from_secs(60), "the service ready", || async {
            let response = self.client.get(service.url("/readyz")).send().await.ok()?;
            (response.status() == 200).then_some(())
        })
        .await;
        Ok(service)
    }

    /// Removes the namespace's exchanges and queues, the database and the key file.
    pub async fn remove(self) {
        collect_testkit::remove_namespace(&self.namespace).await;
        collect_testkit::drop_database(&self.database_url).await;
        let _ = std::fs::remove_file(&self.key_file);
    }
}

/// SIGTERM, then waits for the exit.
pub async fn stop(mut service: ServiceProcess) {
    service.signal(nix::sys::signal::Signal::SIGTERM);
    service.wait(Duration::from_secs(15)).await;
}
