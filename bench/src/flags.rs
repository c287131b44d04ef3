//! Flags to collectors' apps: how soon after the validator's commit a flag event reaches an
//! app that speaks only HTTP, by the live stream (`…/flags:watch`, one SSE connection per
//! collector) and by a webhook (a receiver in this process), with the three services running
//! and flagged responses arriving at a steady rate below capacity.
//!
//! The latency of each event is its arrival minus its `at` (set by the validator after the
//! commit, before publishing), on this machine's one clock.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use chrono::{DateTime, Utc};
use collect_testkit::{Engine, ServiceProcess};
use futures::StreamExt;
use hdrhistogram::Histogram;
use reqwest_eventsource::{Event, EventSource};
use serde_json::{Value, json};

use crate::services::{KEY, Peaks, ready, wind_down};
use crate::{Args, ms};

/// Collectors watching, one SSE connection each.
const COLLECTORS: usize = 100;

/// Latencies in microseconds, and the events seen (to count repeats).
#[derive(Default)]
struct Seen {
    latencies: Vec<u64>,
    ids: std::collections::HashSet<String>,
    repeats: usize,
}

impl Seen {
    fn record(&mut self, id: String, at: &str) {
        let Ok(at) = at.parse::<DateTime<Utc>>() else {
            return;
        };
        if !self.ids.insert(id) {
            self.repeats += 1;
            return;
        }
        let latency = (Utc::now() - at).num_microseconds().unwrap_or(0).max(0);
        self.latencies.push(latency as u64);
    }
}

pub async fn run(args: &Args, engine: Engine, peaks: &mut Peaks) -> anyhow::Result<()> {
    let n = args.flags;
    let rate = args.flags_rate;
    println!(
        "\n## 5. Flags to apps on {engine}: {n} flagged responses at {rate}/s, {COLLECTORS} SSE watchers and one webhook"
    );
    let mut setup = crate::services::stack(engine).await?;
    setup.env.push(("WEBHOOKS_ALLOW_HTTP", "true".to_owned()));
    let ingest = ready(&setup, setup.start_ingest().await).await;
    let validator = ready(&setup, setup.start_validator().await).await;
    let sync = ready(&setup, setup.start_sheets_sync().await).await;
    // Whatever happens, the services stop and the namespace and database go.
    let done = measure(args, &ingest).await;
    wind_down(setup, [ingest, validator, sync], peaks).await;
    done
}

/// The webhook receiver, the watchers and the flagged responses, and what reached them.
async fn measure(args: &Args, ingest: &ServiceProcess) -> anyhow::Result<()> {
    let n = args.flags;
    let rate = args.flags_rate;
    let client = reqwest::Client::new();

    // The webhook receiver.
    let hooked = Arc::new(Mutex::new(Seen::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook_url = format!("http://{}/hook", listener.local_addr()?);
    let receiver = hooked.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: Bytes| {
            let receiver = receiver.clone();
            async move {
                if let Ok(body) = serde_json::from_slice::<Value>(&body) {
                    let id = headers
                        .get("webhook-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    let at = body["data"]["at"].as_str().unwrap_or_default().to_owned();
                    if let Ok(mut seen) = receiver.lock() {
                        seen.record(id, &at);
                    }
                }
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let response = client
        .put(ingest.url("/v1/webhooks/bench"))
        .bearer_auth(KEY)
        .json(&json!({"url": hook_url}))
        .send()
        .await?;
    anyhow::ensure!(
        response.status().is_success(),
        "webhook not registered: {}",
        response.status()
    );

    // The watchers.
    let watched = Arc::new(Mutex::new(Seen::default()));
    let mut opened = Vec::new();
    for i in 0..COLLECTORS {
        let request = client
            .get(ingest.url(&format!("/v1/collectors/u-bench-{i}/flags:watch")))
            .bearer_auth(KEY);
        let mut source = EventSource::new(request)?;
        let seen = watched.clone();
        let (open_tx, open_rx) = tokio::sync::oneshot::channel();
        let mut open_tx = Some(open_tx);
        tokio::spawn(async move {
            while let Some(item) = source.next().await {
                match item {
                    Ok(Event::Open) => {
                        if let Some(tx) = open_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Message(message)) if !message.data.is_empty() => {
                        if let Ok(data) = serde_json::from_str::<Value>(&message.data)
                            && let Ok(mut seen) = seen.lock()
                        {
                            seen.record(message.id, data["at"].as_str().unwrap_or_default());
                        }
                    }
                    _ => {}
                }
            }
        });
        opened.push(open_rx);
    }
    for open in opened {
        let _ = open.await;
    }

    // Flagged responses at a steady rate.
    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut ticks = tokio::time::interval(interval);
    let mut sending = Vec::with_capacity(n);
    for i in 0..n {
        ticks.tick().await;
        let client = client.clone();
        let url = ingest.url("/v1/forms/household-finance/responses");
        sending.push(tokio::spawn(async move {
            let body = json!({
                "response_id": format!("flag-{i}"),
                "revision": 1,
                "collector": {"user_id": format!("u-bench-{}", i % COLLECTORS), "username": "bench"},
                "answers": {
                    "name": "Asha Rao", "gender": "female", "age": 34,
                    "monthly_income": 52000, "monthly_savings": 30000, "monthly_expenditure": 30000,
                    "food": 12000, "cable": 500, "healthcare": 2000, "fuel": 3000
                }
            });
            client
                .post(url)
                .bearer_auth(KEY)
                .json(&body)
                .send()
                .await
                .map(|response| response.status().as_u16())
                .unwrap_or(0)
        }));
    }
    let mut accepted = 0;
    let mut statuses = std::collections::BTreeMap::new();
    for sent in sending {
        let status = sent.await.unwrap_or(0);
        *statuses.entry(status).or_insert(0usize) += 1;
        if status == 202 {
            accepted += 1;
        }
    }
    if statuses.len() > 1 {
        println!("answers by status (0: no answer): {statuses:?}");
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let watched_count = watched.lock().map_or(0, |s| s.latencies.len());
        let hooked_count = hooked.lock().map_or(0, |s| s.latencies.len());
        if (watched_count >= accepted && hooked_count >= accepted) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed();
    for (what, seen) in [("SSE (flags:watch)", &watched), ("webhook", &hooked)] {
        let seen = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        let mut histogram = Histogram::<u64>::new(3)?;
        for latency in &seen.latencies {
            histogram.record(*latency)?;
        }
        println!(
            "{what:<18} {} of {accepted} events, {} repeats; commit → app p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            seen.latencies.len(),
            seen.repeats,
            ms(&histogram, 0.5),
            ms(&histogram, 0.99),
            histogram.max() as f64 / 1000.0,
        );
    }
    println!("({accepted} flagged responses accepted in {elapsed:.1?})");
    Ok(())
}
