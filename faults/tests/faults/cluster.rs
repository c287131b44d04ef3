use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use collect_testkit::{Probe, ServiceProcess, Stack};

use serde_json::{Value, json};

pub const KEY: &str = "fault-key";
pub const SPREADSHEET: &str = "fault-sheet";
pub const TAB: &str = "household-finance";

/// Where the service binaries are: beside this test's directory (`target/debug`), built by
/// `cargo nextest run --workspace`.
fn binaries() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

pub fn responses() -> usize {
    std::env::var("FAULT_RESPONSES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000)
}

pub struct Cluster {
    pub setup: Stack,
    pub ingest: ServiceProcess,
    pub validators: Vec<ServiceProcess>,
    pub syncs: Vec<ServiceProcess>,
    flags: Probe,
    /// Every response accepted so far (ids), for [`Cluster::unstored`].
    accepted: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl std::ops::Deref for Cluster {
    type Target = Stack;
    fn deref(&self) -> &Stack {
        &self.setup
    }
}

impl Cluster {
    pub async fn start(validators: usize, syncs: usize) -> Self {
        Self::start_via(validators, syncs, collect_testkit::amqp_url(), None).await
    }

    /// With the services reaching RabbitMQ at `amqp_url` and the database server through
    /// `database` (host:port), e.g. fault proxies.
    pub async fn start_via(
        validators: usize,
        syncs: usize,
        amqp_url: String,
        database: Option<String>,
    ) -> Self {
        let mut setup = Stack::new(
            super::ENGINE,
            binaries(),
            collect_testkit::namespace(),
            SPREADSHEET,
            amqp_url,
            database,
        )
        .await;
        setup.api_key = KEY.to_owned();
        setup.sheets_sync_env = vec![
            ("SHEETS_BATCH_ROWS", "250".to_owned()),
            ("SHEETS_BATCH_MAX_WAIT_MS", "200".to_owned()),
        ];
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
            accepted: Default::default(),
        }
    }

    /// How many responses accepted so far are not stored yet: the validators' backlog, in
    /// their hands or in `N.validator`.
    pub async fn unstored(&self) -> i64 {
        let accepted = self.accepted.lock().unwrap().len() as i64;
        accepted - self.stored().await
    }

    /// Responses in the database.
    pub async fn stored(&self) -> i64 {
        let pool = collect_testkit::database_pool(&self.database_url).await;
        let stored = collect_testkit::count(&pool, "SELECT count(*) FROM responses")
            .await
            .unwrap();
        pool.close().await;
        stored
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
                    self.accepted.lock().unwrap().insert(id.to_owned());
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
        let pool = collect_testkit::database_pool(&self.database_url).await;
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
            let waiting = collect_testkit::count(&pool, "SELECT count(*) FROM sheet_outbox")
                .await
                .unwrap_or(-1);
            let queued = self
                .flags
                .queue_depth(&self.topology.validator_queue())
                .await;
            let cells = self.emulator.tab_values(SPREADSHEET, TAB);
            let rows = cells.as_ref().map_or(0, Vec::len);
            // Rows not yet at their stored revision: the outbox is written with the response,
            // but a row taken off it may still be on its way into the sheet (a write whose
            // outcome a restart left unknown is reconciled first), so an empty outbox alone
            // is not quiet.
            let behind = cells.as_ref().map_or(usize::MAX, |cells| {
                cells
                    .iter()
                    .skip(1)
                    .filter(|row| {
                        let id = row.first().and_then(Value::as_str).unwrap_or_default();
                        stored
                            .get(id)
                            .is_none_or(|revision| row.get(1) != Some(&json!(*revision)))
                    })
                    .count()
            });
            if missing == 0
                && unsettled == 0
                && waiting == 0
                && queued == 0
                && rows == stored.len() + 1
                && behind == 0
            {
                break;
            }
            assert!(
                started.elapsed() < deadline,
                "not quiet after {deadline:?}: {} accepted ({} sent), {} stored, {missing} accepted but not stored, {unsettled} not at an expected revision, {queued} ready in N.validator, {waiting} waiting for the sheet, {} sheet rows ({behind} behind their stored revision)",
                accepted.len(),
                sent.attempted.len(),
                stored.len(),
                rows.saturating_sub(1)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // The database: once each, at the accepted revision (or a later one sent), the status the
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
        // A flag event for every flagged response (at its latest revision). "Quiet" above sees
        // no ready messages, but a validator may still hold deliveries whose flag event it is
        // publishing again after the broker came back: wait for the events, with a deadline.
        let mut events = HashSet::new();
        let events_deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !flagged.is_subset(&events) && std::time::Instant::now() < events_deadline {
            if let Some(event) = self.flags.next_within(Duration::from_millis(500)).await
                && event.body["type"] == "flagged"
            {
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
        setup.remove().await;
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
