use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use collect_shared::amqp::Topology;
use collect_shared::config::Namespace;
use collect_testkit::{Probe, ServiceProcess, eventually};

use serde_json::{Value, json};
use sheets_emulator::Emulator;

pub const KEY: &str = "fault-key";
pub const SPREADSHEET: &str = "fault-sheet";
pub const TAB: &str = "household-finance";

/// A service binary of the workspace (built beside this test by `cargo nextest run --workspace`).
fn binary(name: &str) -> String {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path: PathBuf = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace (cargo nextest run --workspace)",
        path.display()
    );
    path.display().to_string()
}

pub fn responses() -> usize {
    std::env::var("FAULT_RESPONSES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000)
}

/// What the services of one scenario share: namespace, database, emulator, key.
pub struct Setup {
    pub namespace: Namespace,
    pub topology: Topology,
    pub database_url: String,
    /// The URLs the services use: the real ones, or fault proxies in front of them.
    pub amqp_url: String,
    pub services_database_url: String,
    pub emulator: Emulator,
    emulator_url: String,
    key_file: PathBuf,
    pub client: reqwest::Client,
}

pub struct Cluster {
    pub setup: Setup,
    pub ingest: ServiceProcess,
    pub validators: Vec<ServiceProcess>,
    pub syncs: Vec<ServiceProcess>,
    flags: Probe,
}

impl std::ops::Deref for Cluster {
    type Target = Setup;
    fn deref(&self) -> &Setup {
        &self.setup
    }
}

impl Cluster {
    pub async fn start(validators: usize, syncs: usize) -> Self {
        Self::start_via(validators, syncs, collect_testkit::amqp_url(), None).await
    }

    /// With the services reaching RabbitMQ at `amqp_url` and PostgreSQL through `database`
    /// (host:port), e.g. fault proxies.
    pub async fn start_via(
        validators: usize,
        syncs: usize,
        amqp_url: String,
        database: Option<String>,
    ) -> Self {
        let namespace = collect_testkit::namespace();
        let topology = Topology::new(namespace.clone());
        let database_url = collect_testkit::database_url();
        let services_database_url = match database {
            Some(host) => {
                let (_, name) = database_url.rsplit_once('/').unwrap();
                format!("postgres://postgres@{host}/{name}")
            }
            None => database_url.clone(),
        };
        let emulator = Emulator::new();
        emulator.create_spreadsheet(SPREADSHEET);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let emulator_url = format!("http://{}/", listener.local_addr().unwrap());
        let router = sheets_emulator::router(emulator.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        let key = emulator.issue_key(&format!("{emulator_url}token"));
        let key_file = std::env::temp_dir().join(format!("collect-fault-key-{namespace}.json"));
        std::fs::write(&key_file, key.to_string()).unwrap();

        let setup = Setup {
            namespace,
            topology,
            database_url,
            amqp_url,
            services_database_url,
            emulator,
            emulator_url,
            key_file,
            client: reqwest::Client::new(),
        };
        let ingest = setup.start_ingest().await;
        setup.wait_ready(&ingest.addr).await;
        let flags = Probe::bind(&setup.topology.flags_exchange(), "#").await;
        let mut started = Vec::new();
        for _ in 0..validators {
            started.push(setup.start_validator().await);
        }
        let mut sheets = Vec::new();
        for _ in 0..syncs {
            sheets.push(setup.start_sheets_sync().await);
        }
        Self {
            setup,
            ingest,
            validators: started,
            syncs: sheets,
            flags,
        }
    }
}

impl Setup {
    fn common_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("COLLECT_NAMESPACE", self.namespace.to_string()),
            ("DATABASE_URL", self.services_database_url.clone()),
            ("AMQP_URL", self.amqp_url.clone()),
        ]
    }

    pub async fn start_ingest(&self) -> ServiceProcess {
        let mut env = self.common_env();
        env.extend([
            ("INGEST_LISTEN", "127.0.0.1:0".to_owned()),
            ("COLLECT_API_KEYS", KEY.to_owned()),
        ]);
        ServiceProcess::start(&binary("ingest"), &env).await
    }

    pub async fn start_validator(&self) -> ServiceProcess {
        let mut env = self.common_env();
        env.push(("VALIDATOR_LISTEN", "127.0.0.1:0".to_owned()));
        ServiceProcess::start(&binary("validator"), &env).await
    }

    pub async fn start_sheets_sync(&self) -> ServiceProcess {
        let mut env = self.common_env();
        env.extend([
            ("SHEETS_SYNC_LISTEN", "127.0.0.1:0".to_owned()),
            (
                "GOOGLE_APPLICATION_CREDENTIALS",
                self.key_file.display().to_string(),
            ),
            ("SHEETS_API_URL", self.emulator_url.clone()),
            ("SHEETS_DEFAULT_SPREADSHEET_ID", SPREADSHEET.to_owned()),
            ("SHEETS_BATCH_ROWS", "250".to_owned()),
            ("SHEETS_BATCH_MAX_WAIT_MS", "200".to_owned()),
            ("SHEETS_WRITES_PER_MINUTE", "6000".to_owned()),
        ]);
        ServiceProcess::start(&binary("sheets-sync"), &env).await
    }

    pub async fn wait_ready(&self, addr: &str) {
        eventually(Duration::from_secs(60), "a service ready", || async {
            let response = self
                .client
                .get(format!("http://{addr}/readyz"))
                .send()
                .await
                .ok()?;
            (response.status() == 200).then_some(())
        })
        .await;
    }
}

/// What a load run sent: the latest revision that got `accepted` per response, and the latest
/// revision sent at all (a request that failed may still have landed: ingest may have
/// published it before the reply was lost).
#[derive(Debug, Default)]
pub struct Sent {
    pub accepted: BTreeMap<String, u64>,
    pub attempted: BTreeMap<String, u64>,
}

impl Sent {
    fn record(map: &mut BTreeMap<String, u64>, id: &str, revision: u64) {
        let entry = map.entry(id.to_owned()).or_insert(revision);
        *entry = (*entry).max(revision);
    }

    /// Whether `revision` of `id` is what the pipeline should end with: at least the accepted
    /// revision, at most the latest one sent.
    fn settled(&self, id: &str, revision: u64) -> bool {
        let Some(&sent) = self.attempted.get(id) else {
            return false;
        };
        revision <= sent && self.accepted.get(id).is_none_or(|&a| revision >= a)
    }
}

impl Cluster {
    /// Sends `FAULT_RESPONSES` responses while `fault` happens.
    pub async fn send_during(&self, fault: impl std::future::Future<Output = ()>) -> Sent {
        let ingest = self.ingest.addr.clone();
        let (sent, ()) = tokio::join!(self.send(responses(), &ingest), fault);
        sent
    }

    /// Sends `total` responses in batches, corrections mixed in: every fourth response gets a
    /// second revision two batches later. Like a collector's app, it sends again what was not
    /// accepted (a 503, or no answer), a few times, then moves on.
    pub async fn send(&self, total: usize, ingest: &str) -> Sent {
        let mut sent = Sent::default();
        let mut pending_corrections: Vec<usize> = Vec::new();
        for chunk in (0..total).collect::<Vec<_>>().chunks(250) {
            let mut batch: Vec<Value> = chunk.iter().map(|i| envelope(*i, 1)).collect();
            batch.extend(pending_corrections.drain(..).map(|i| envelope(i, 2)));
            pending_corrections.extend(chunk.iter().filter(|i| *i % 4 == 0));
            self.post_batch(ingest, batch, &mut sent).await;
        }
        let last: Vec<Value> = pending_corrections
            .drain(..)
            .map(|i| envelope(i, 2))
            .collect();
        self.post_batch(ingest, last, &mut sent).await;
        sent
    }

    async fn post_batch(&self, ingest: &str, mut batch: Vec<Value>, sent: &mut Sent) {
        for envelope in &batch {
            let id = envelope["response_id"].as_str().unwrap();
            Sent::record(
                &mut sent.attempted,
                id,
                envelope["revision"].as_u64().unwrap(),
            );
        }
        for attempt in 0..10 {
            if batch.is_empty() {
                return;
            }
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            let response = self
                .client
                .post(format!(
                    "http://{ingest}/v1/forms/household-finance/responses:batch"
                ))
                .bearer_auth(KEY)
                .json(&json!(batch))
                .send()
                .await;
            let Ok(response) = response else { continue };
            let Ok(body) = response.json::<Value>().await else {
                continue;
            };
            let results = body["results"].as_array().cloned().unwrap_or_default();
            let mut refused = Vec::new();
            for (envelope, result) in batch.into_iter().zip(results) {
                if result["status"] == "accepted" {
                    let id = result["response_id"].as_str().unwrap();
                    Sent::record(&mut sent.accepted, id, result["revision"].as_u64().unwrap());
                } else {
                    refused.push(envelope);
                }
            }
            batch = refused;
        }
    }

    /// Waits until every accepted response is stored at its revision and in the sheet, then
    /// checks every guarantee.
    pub async fn verify(&mut self, sent: &Sent) {
        let accepted = &sent.accepted;
        assert!(!accepted.is_empty(), "something was accepted");
        let pool = sqlx::PgPool::connect(&self.database_url).await.unwrap();
        let deadline = Duration::from_secs(120);
        let started = std::time::Instant::now();
        loop {
            let stored: Vec<(String, i64)> =
                sqlx::query_as("SELECT response_id, revision FROM responses")
                    .fetch_all(&pool)
                    .await
                    .unwrap_or_default();
            let stored: HashMap<String, u64> = stored
                .into_iter()
                .map(|(id, revision)| (id, revision as u64))
                .collect();
            let missing = accepted
                .keys()
                .filter(|id| !stored.contains_key(*id))
                .count();
            let unsettled = stored
                .iter()
                .filter(|(id, revision)| !sent.settled(id, **revision))
                .count();
            let waiting: i64 = sqlx::query_scalar("SELECT count(*) FROM sheet_outbox")
                .fetch_one(&pool)
                .await
                .unwrap_or(-1);
            let queued = self
                .flags
                .queue_depth(&self.topology.validator_queue())
                .await;
            let rows = self
                .emulator
                .tab_values(SPREADSHEET, TAB)
                .map_or(0, |t| t.len());
            if missing == 0
                && unsettled == 0
                && waiting == 0
                && queued == 0
                && rows == stored.len() + 1
            {
                break;
            }
            assert!(
                started.elapsed() < deadline,
                "not quiet after {deadline:?}: {} accepted ({} sent), {} stored, {missing} accepted but not stored, {unsettled} not at an expected revision, {queued} ready in N.validator, {waiting} waiting for the sheet, {} sheet rows",
                accepted.len(),
                sent.attempted.len(),
                stored.len(),
                rows.saturating_sub(1)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // PostgreSQL: once each, at the accepted revision (or a later one sent), the status the
        // rules give. Responses never accepted may be there too, if their request landed.
        let stored: Vec<(String, i64, String)> =
            sqlx::query_as("SELECT response_id, revision, status FROM responses")
                .fetch_all(&pool)
                .await
                .unwrap();
        pool.close().await;
        let mut flagged = HashSet::new();
        for (id, revision, status) in &stored {
            assert!(
                sent.settled(id, *revision as u64),
                "{id} at revision {revision}: accepted {:?}, sent {:?}",
                accepted.get(id),
                sent.attempted.get(id)
            );
            assert_eq!(status, expected_status(id, *revision as u64), "{id}");
            if status == "flagged" {
                flagged.insert((id.clone(), *revision as u64));
            }
        }
        assert!(
            accepted
                .keys()
                .all(|id| stored.iter().any(|(s, ..)| s == id))
        );
        // The sheet: once each, with its revision and status.
        let cells = self.emulator.tab_values(SPREADSHEET, TAB).unwrap();
        let mut rows: HashMap<String, &Vec<Value>> = HashMap::new();
        for row in &cells[1..] {
            let id = row[0].as_str().unwrap().to_owned();
            assert!(
                rows.insert(id.clone(), row).is_none(),
                "{id} is in the sheet twice"
            );
        }
        assert_eq!(rows.len(), stored.len());
        for (id, revision, status) in &stored {
            let row = rows[id];
            assert_eq!(row[1], json!(*revision), "{id}: revision cell");
            assert_eq!(row[2], json!(status), "{id}: status cell");
        }
        // A flag event for every flagged response (at its latest revision).
        let mut events = HashSet::new();
        while let Some(event) = self.flags.next_within(Duration::from_millis(500)).await {
            if event.body["type"] == "flagged" {
                let id = event.body["response_id"].as_str().unwrap().to_owned();
                events.insert((id, event.body["revision"].as_u64().unwrap()));
            }
        }
        let missing: Vec<_> = flagged.difference(&events).take(5).collect();
        assert!(missing.is_empty(), "flag events missing, e.g. {missing:?}");
        // Nothing set aside.
        assert_eq!(
            self.flags.queue_depth(&self.topology.dead_queue()).await,
            0,
            "N.dead is empty"
        );
        // Every service ready.
        let addrs: Vec<String> = std::iter::once(self.ingest.addr.clone())
            .chain(self.validators.iter().map(|s| s.addr.clone()))
            .chain(self.syncs.iter().map(|s| s.addr.clone()))
            .collect();
        for addr in addrs {
            self.wait_ready(&addr).await;
        }
    }

    pub async fn stop(mut self) {
        use nix::sys::signal::Signal;
        let mut all: Vec<ServiceProcess> = Vec::new();
        all.push(self.ingest);
        all.append(&mut self.validators);
        all.append(&mut self.syncs);
        let setup = self.setup;
        for service in &all {
            service.signal(Signal::SIGTERM);
        }
        for mut service in all {
            assert!(
                service.wait(Duration::from_secs(10)).await.success(),
                "stops within 10 s"
            );
        }
        collect_testkit::remove_namespace(&setup.namespace).await;
        collect_testkit::drop_database(&setup.database_url).await;
        let _ = std::fs::remove_file(&setup.key_file);
    }
}

/// Revision 1 of every third response breaks the savings rule; every correction fixes it.
fn savings(i: usize, revision: u64) -> i64 {
    if revision == 1 && i % 3 == 0 { -1 } else { 100 }
}

fn expected_status(id: &str, revision: u64) -> &'static str {
    let i: usize = id.trim_start_matches("r-").parse().unwrap();
    if savings(i, revision) < 0 {
        "flagged"
    } else {
        "valid"
    }
}

pub fn envelope(i: usize, revision: u64) -> Value {
    json!({
        "response_id": format!("r-{i}"),
        "revision": revision,
        "collector": {"user_id": format!("u-{}", i % 13)},
        "answers": {
            "name": "Asha", "gender": "female", "age": 34,
            "monthly_income": 52000, "monthly_savings": savings(i, revision),
            "monthly_expenditure": 30000, "food": 12000, "cable": 500, "healthcare": 2000,
            "fuel": 3000
        }
    })
}
