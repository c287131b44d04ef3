//! The services as separate processes, as an operator runs them, with the Sheets emulator in
//! this process: what the fault suite and the benchmark start. A namespace and a database of
//! their own; `remove` cleans both up.

use std::path::PathBuf;
use std::time::Duration;

use collect_shared::amqp::Topology;
use collect_shared::config::Namespace;
use sheets_emulator::Emulator;

use crate::{Engine, ServiceProcess};

pub struct Stack {
    pub engine: Engine,
    pub namespace: Namespace,
    pub topology: Topology,
    /// The database, as the test reaches it.
    pub database_url: String,
    /// The URLs the services use: the real ones, or fault proxies in front of them.
    pub amqp_url: String,
    pub services_database_url: String,
    pub emulator: Emulator,
    /// The spreadsheet sheets-sync writes to (`SHEETS_DEFAULT_SPREADSHEET_ID`).
    pub spreadsheet: String,
    /// The API key ingest accepts.
    pub api_key: String,
    /// Added to every service's environment.
    pub env: Vec<(&'static str, String)>,
    /// Added to sheets-sync's environment.
    pub sheets_sync_env: Vec<(&'static str, String)>,
    pub client: reqwest::Client,
    emulator_url: String,
    key_file: PathBuf,
    binaries: PathBuf,
}

impl Stack {
    /// A fresh namespace and a database on `engine`, and the emulator with `spreadsheet` and a
    /// service account key for sheets-sync. The services are the binaries in `binaries`; they
    /// reach RabbitMQ at `amqp_url` and the database server at `database` (host:port, e.g. a
    /// [`crate::FaultProxy`]; the real one if `None`).
    pub async fn new(
        engine: Engine,
        binaries: PathBuf,
        namespace: Namespace,
        spreadsheet: &str,
        amqp_url: String,
        database: Option<String>,
    ) -> Self {
        let topology = Topology::new(namespace.clone());
        let database_url = crate::database_url(engine);
        let services_database_url = match database {
            Some(host) => crate::url_via(&database_url, &host),
            None => database_url.clone(),
        };
        let emulator = Emulator::new();
        emulator.create_spreadsheet(spreadsheet);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let emulator_url = format!("http://{}/", listener.local_addr().unwrap());
        let router = sheets_emulator::router(emulator.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        let key = emulator.issue_key(&format!("{emulator_url}token"));
        let key_file = std::env::temp_dir().join(format!("collect-key-{namespace}.json"));
        std::fs::write(&key_file, key.to_string()).unwrap();
        Self {
            engine,
            namespace,
            topology,
            database_url,
            amqp_url,
            services_database_url,
            emulator,
            spreadsheet: spreadsheet.to_owned(),
            api_key: "stack-key".to_owned(),
            env: Vec::new(),
            sheets_sync_env: Vec::new(),
            client: reqwest::Client::new(),
            emulator_url,
            key_file,
            binaries,
        }
    }

    fn binary(&self, name: &str) -> String {
        let path = self.binaries.join(name);
        assert!(
            path.exists(),
            "{} is missing: build the workspace's binaries first",
            path.display()
        );
        path.display().to_string()
    }

    fn service_env(&self, listen: &'static str) -> Vec<(&'static str, String)> {
        let mut env = vec![
            (listen, "127.0.0.1:0".to_owned()),
            ("COLLECT_NAMESPACE", self.namespace.to_string()),
            ("DATABASE_URL", self.services_database_url.clone()),
            ("AMQP_URL", self.amqp_url.clone()),
        ];
        env.extend(self.env.iter().cloned());
        env
    }

    pub async fn start_ingest(&self) -> ServiceProcess {
        let mut env = self.service_env("INGEST_LISTEN");
        env.push(("COLLECT_API_KEYS", self.api_key.clone()));
        ServiceProcess::start(&self.binary("ingest"), &env).await
    }

    pub async fn start_validator(&self) -> ServiceProcess {
        let env = self.service_env("VALIDATOR_LISTEN");
        ServiceProcess::start(&self.binary("validator"), &env).await
    }

    /// Against the emulator, with a write budget well above Google's (the emulator is not
    /// what is measured), then `sheets_sync_env`.
    pub async fn start_sheets_sync(&self) -> ServiceProcess {
        let mut env = self.service_env("SHEETS_SYNC_LISTEN");
        env.extend([
            (
                "GOOGLE_APPLICATION_CREDENTIALS",
                self.key_file.display().to_string(),
            ),
            ("SHEETS_API_URL", self.emulator_url.clone()),
            ("SHEETS_DEFAULT_SPREADSHEET_ID", self.spreadsheet.clone()),
            ("SHEETS_WRITES_PER_MINUTE", "6000".to_owned()),
        ]);
        env.extend(self.sheets_sync_env.iter().cloned());
        ServiceProcess::start(&self.binary("sheets-sync"), &env).await
    }

    /// Waits until the service at `addr` answers `/readyz` with 200.
    pub async fn wait_ready(&self, addr: &str) {
        crate::wait_until_ready(&self.client, addr, Duration::from_secs(60)).await;
    }

    /// Removes the namespace's exchanges and queues, the database and the key file.
    pub async fn remove(self) {
        crate::remove_namespace(&self.namespace).await;
        crate::drop_database(&self.database_url).await;
        let _ = std::fs::remove_file(&self.key_file);
    }
}
