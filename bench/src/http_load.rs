//! Ingest under HTTP load: keep-alive connections, each a worker sending one request after
//! another (closed loop) to find the full rate; then the seed route at half that rate on a
//! fixed schedule (open loop: latency counts from when a request was due, so a slow answer
//! cannot hide the requests queued behind it).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use lapin::options::QueuePurgeOptions;
use serde_json::{Value, json};

use collect_testkit::Stack;

use crate::services::{KEY, Peaks, ready, stop};
use crate::{Args, ms};

pub struct IngestFigures {
    pub seed_rate: f64,
    pub batch_rate: f64,
    pub half_rate: f64,
    pub half_p99_ms: f64,
}

/// One load phase's outcome.
struct Phase {
    /// Responses accepted per second.
    rate: f64,
    latency: Histogram<u64>,
    errors: u64,
}

#[derive(Clone, Copy)]
enum Route {
    Seed,
    Batch(usize),
}

pub async fn run(args: &Args, peaks: &mut Peaks) -> anyhow::Result<IngestFigures> {
    println!(
        "\n## 2. Ingest over HTTP keep-alive ({} connections, {} s per phase)",
        args.connections, args.seconds
    );
    let setup = crate::services::stack(args.engines.first()).await?;
    let ingest = ready(&setup, setup.start_ingest().await).await;
    let base = ingest.url("");
    // Whatever happens, ingest stops and the namespace and database go.
    let figures: anyhow::Result<IngestFigures> = async {
        let purge = Purger::new(&setup).await?;

        // The full rate first, briefly (a short backlog to purge), for the half-rate phase; then
        // the half-rate phase on a near-empty queue; then the full-rate phases proper.
        let probe = phase(&base, args, Route::Seed, None, Duration::from_secs(5)).await;
        purge.purge().await;
        let half_rate = probe.rate / 2.0;
        // At half the rate the queue is drained as it fills, as the validator would: a quorum
        // queue growing by hundreds of thousands of messages with no consumer is not the steady
        // state being measured (it added confirm stalls of 200 ms to the p99).
        let (stop_draining, draining_stopped) = tokio::sync::oneshot::channel();
        let draining = tokio::spawn(drain(setup.topology.validator_queue(), draining_stopped));
        let half = phase(&base, args, Route::Seed, Some(half_rate), args.duration()).await;
        let _ = stop_draining.send(());
        draining.await??;
        purge.purge().await;
        let seed = phase(&base, args, Route::Seed, None, args.duration()).await;
        report(
            "POST /collect (seed payloads), full rate",
            &seed,
            "requests",
        );
        report(
            &format!(
                "POST /collect at half the full rate (5 s probe: {:.0}/s; half: {half_rate:.0}/s)",
                probe.rate
            ),
            &half,
            "requests",
        );
        purge.purge().await;
        let batch = phase(
            &base,
            args,
            Route::Batch(args.batch_size),
            None,
            args.duration(),
        )
        .await;
        report(
            &format!(
                "POST …/responses:batch ({} per request), full rate",
                args.batch_size
            ),
            &batch,
            "responses",
        );
        purge.purge().await;
        Ok(IngestFigures {
            seed_rate: seed.rate,
            batch_rate: batch.rate,
            half_rate,
            half_p99_ms: ms(&half.latency, 0.99),
        })
    }
    .await;
    peaks.record("ingest", &ingest);
    stop(ingest).await;
    setup.remove().await;
    figures
}

fn report(what: &str, phase: &Phase, unit: &str) {
    println!(
        "{what}: {:.0} {unit} accepted/s, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {} errors",
        phase.rate,
        ms(&phase.latency, 0.5),
        ms(&phase.latency, 0.99),
        phase.latency.max() as f64 / 1000.0,
        phase.errors
    );
}

/// Runs `args.connections` workers for `args.seconds`; with `rate`, on a fixed schedule.
async fn phase(
    base: &str,
    args: &Args,
    route: Route,
    rate: Option<f64>,
    length: Duration,
) -> Phase {
    let accepted = Arc::new(AtomicU64::new(0));
    let bar = crate::progress(length.as_secs(), "seconds");
    let ticker = {
        let bar = bar.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                bar.inc(1);
            }
        })
    };
    let started = Instant::now();
    let deadline = started + length;
    let period = rate.map(|r| Duration::from_secs_f64(args.connections as f64 / r));
    let workers: Vec<_> = (0..args.connections)
        .map(|worker| {
            let base = base.to_owned();
            let accepted = accepted.clone();
            tokio::spawn(async move {
                worker_loop(base, worker, route, deadline, period, accepted).await
            })
        })
        .collect();
    let mut latency = Histogram::<u64>::new(3).unwrap_or_else(|_| unreachable!());
    let mut errors = 0;
    for worker in workers {
        if let Ok((histogram, failed)) = worker.await {
            let _ = latency.add(histogram);
            errors += failed;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    ticker.abort();
    bar.finish_and_clear();
    Phase {
        rate: accepted.load(Ordering::Relaxed) as f64 / elapsed,
        latency,
        errors,
    }
}

async fn worker_loop(
    base: String,
    worker: usize,
    route: Route,
    deadline: Instant,
    period: Option<Duration>,
    accepted: Arc<AtomicU64>,
) -> (Histogram<u64>, u64) {
    // One client per worker, one connection each (keep-alive).
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap_or_default();
    let (url, per_request) = match route {
        Route::Seed => (format!("{base}/collect"), 1),
        Route::Batch(n) => (
            format!("{base}/v1/forms/household-finance/responses:batch"),
            n,
        ),
    };
    let mut histogram = Histogram::<u64>::new(3).unwrap_or_else(|_| unreachable!());
    let mut errors = 0;
    let run = uuid::Uuid::new_v4().simple().to_string();
    // Spread the open-loop workers over one period, so they do not fire together.
    let mut due = period.map(|p| Instant::now() + p.mul_f64(worker as f64 / 64.0));
    let mut seq = 0u64;
    while Instant::now() < deadline {
        if let Some(at) = due {
            tokio::time::sleep_until(at.into()).await;
        }
        let body = match route {
            Route::Seed => collect_testkit::seed_payload(&format!("{}-{worker}-{seq}", &run[..6])),
            Route::Batch(n) => Value::Array(
                (0..n)
                    .map(|i| envelope(&format!("{}-{worker}-{seq}-{i}", &run[..6])))
                    .collect(),
            ),
        };
        seq += 1;
        let sent = due.unwrap_or_else(Instant::now);
        let response = client.post(&url).bearer_auth(KEY).json(&body).send().await;
        let accepted_now = match response {
            Ok(response) if response.status() == 202 => match route {
                Route::Seed => 1,
                Route::Batch(_) => response
                    .json::<Value>()
                    .await
                    .ok()
                    .and_then(|body| body["accepted"].as_u64())
                    .unwrap_or(0),
            },
            _ => 0,
        };
        let _ = histogram.record(sent.elapsed().as_micros() as u64);
        accepted.fetch_add(accepted_now, Ordering::Relaxed);
        if accepted_now < per_request as u64 {
            errors += 1;
        }
        if let (Some(at), Some(period)) = (due.as_mut(), period) {
            *at += period;
        }
    }
    (histogram, errors)
}

/// A v1 envelope for the household-finance form.
pub fn envelope(response_id: &str) -> Value {
    json!({
        "response_id": response_id,
        "revision": 1,
        "collector": {"user_id": "u-17", "username": "asha"},
        "answers": {
            "name": "Asha Rao", "gender": "female", "age": 34,
            "monthly_income": 52000, "monthly_savings": 8000, "monthly_expenditure": 30000,
            "food": 12000, "cable": 500, "healthcare": 2000.5, "fuel": 3000
        }
    })
}

/// Consumes and acks `queue` until `stop`.
async fn drain(queue: String, stop: tokio::sync::oneshot::Receiver<()>) -> anyhow::Result<()> {
    use futures::StreamExt;
    let connection = lapin::Connection::connect(
        &collect_testkit::amqp_url(),
        lapin::ConnectionProperties::default(),
    )
    .await?;
    let channel = connection.create_channel().await?;
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            lapin::options::BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await?
        .take_until(stop);
    while let Some(delivery) = consumer.next().await {
        delivery?;
    }
    connection.close(200, "done".into()).await?;
    Ok(())
}

/// Empties `N.validator` between phases (nothing consumes it while ingest alone is measured).
struct Purger {
    channel: lapin::Channel,
    queue: String,
    _connection: lapin::Connection,
}

impl Purger {
    async fn new(setup: &Stack) -> anyhow::Result<Self> {
        let connection = lapin::Connection::connect(
            &collect_testkit::amqp_url(),
            lapin::ConnectionProperties::default(),
        )
        .await?;
        let channel = connection.create_channel().await?;
        Ok(Self {
            channel,
            queue: setup.topology.validator_queue(),
            _connection: connection,
        })
    }

    /// Purges, then lets the broker settle (a quorum queue compacts its log after a purge of
    /// hundreds of thousands of messages) so that the next phase does not measure that.
    async fn purge(&self) {
        let _ = self
            .channel
            .queue_purge(self.queue.as_str().into(), QueuePurgeOptions::default())
            .await;
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}
