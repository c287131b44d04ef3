//! `GET /v1/collectors/{user_id}/flags:watch`, read by a real SSE client (reqwest-eventsource,
//! which reconnects with `Last-Event-ID` as a browser's `EventSource` does).

use std::time::{Duration, Instant};

use collect_testkit::{FaultProxy, eventually};
use futures::StreamExt;
use reqwest_eventsource::{Event, EventSource};
use serde_json::{Value, json};

use super::ENGINE;
use super::helpers::{KEY, Pipeline, seed};
use collect_testkit::Engine;

const SAVINGS: &str = "what is the monthly savings?";

/// A flagged seed response: it saves more than its surplus.
fn flagged(response_id: &str, user_id: &str) -> Value {
    seed(response_id, user_id, json!({SAVINGS: 22000.01}))
}

/// The SSE client, and every message it received, with when.
struct Watcher {
    source: EventSource,
    opened: usize,
}

impl Watcher {
    fn open(pipeline: &Pipeline, user_id: &str, query: &str) -> Self {
        let request = pipeline
            .client
            .get(pipeline.url(&format!("/v1/collectors/{user_id}/flags:watch{query}")))
            .bearer_auth(KEY);
        Self {
            source: EventSource::new(request).unwrap(),
            opened: 0,
        }
    }

    /// The next event (`type`, `response_id`, `revision`, SSE id), skipping opens and the
    /// transport errors of a reconnect.
    async fn next(&mut self, within: Duration) -> Option<(String, String, u64, String)> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let item = tokio::time::timeout_at(deadline, self.source.next())
                .await
                .ok()??;
            match item {
                Ok(Event::Open) => self.opened += 1,
                Ok(Event::Message(message)) if message.data.is_empty() => {}
                Ok(Event::Message(message)) => {
                    let data: Value = serde_json::from_str(&message.data).unwrap();
                    assert_eq!(message.event, data["type"].as_str().unwrap());
                    assert_eq!(message.id, data["id"].as_str().unwrap());
                    return Some((
                        message.event,
                        data["response_id"].as_str().unwrap().to_owned(),
                        data["revision"].as_u64().unwrap(),
                        message.id,
                    ));
                }
                // ingest restarting: the client retries by itself.
                Err(reqwest_eventsource::Error::Transport(_))
                | Err(reqwest_eventsource::Error::StreamEnded) => {}
                Err(error) => panic!("the stream failed: {error}"),
            }
        }
    }

    async fn expect(&mut self, kind: &str, response_id: &str, revision: u64) -> String {
        let (got_kind, got_id, got_revision, id) = self
            .next(Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("no event for {response_id} within 20 s"));
        assert_eq!(
            (got_kind.as_str(), got_id.as_str(), got_revision),
            (kind, response_id, revision)
        );
        id
    }

    async fn expect_nothing(&mut self) {
        if let Some(event) = self.next(Duration::from_millis(700)).await {
            panic!("unexpected event {event:?}");
        }
    }
}

async fn accept(pipeline: &Pipeline, body: &Value) {
    eventually(Duration::from_secs(30), "the response accepted", || async {
        let response = pipeline
            .client
            .post(pipeline.url("/collect"))
            .bearer_auth(KEY)
            .json(body)
            .send()
            .await
            .ok()?;
        (response.status() == 202).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_watcher_sees_each_flag_once_across_an_ingest_restart_and_a_broker_outage() {
    let broker = FaultProxy::for_broker().await;
    let mut pipeline = Pipeline::start_on(1, broker.amqp_url()).await;
    // An event from before the watcher connects comes from the history.
    accept(&pipeline, &flagged("w-before", "u-watch")).await;
    pipeline.stored("w-before", 1_795_169_700_000).await;

    let mut watcher = Watcher::open(&pipeline, "u-watch", "");
    watcher
        .expect("flagged", "w-before", 1_795_169_700_000)
        .await;

    // A new flag arrives live, soon after its commit; another collector's does not.
    accept(&pipeline, &flagged("w-other", "u-someone-else")).await;
    let sent = Instant::now();
    accept(&pipeline, &flagged("w-live", "u-watch")).await;
    watcher.expect("flagged", "w-live", 1_795_169_700_000).await;
    tracing::info!(latency = ?sent.elapsed(), "submit to SSE event");

    // ingest restarts; a flag committed meanwhile (published straight to the broker) is sent
    // on reconnection, after the last id the client saw and nothing before it.
    pipeline.stop_ingest().await;
    let message = json!({
        "form_id": "household-finance",
        "response_id": "w-while-down",
        "revision": 1,
        "collector": {"user_id": "u-watch", "username": "watcher"},
        "submitted_at": "2026-11-20T10:15:00Z",
        "answers": {"monthly_income": 52000, "monthly_savings": 22000.01,
                    "monthly_expenditure": 30000, "food": 12000, "cable": 500,
                    "healthcare": 2000, "fuel": 3000},
        "metadata": {},
        "received_at": "2026-11-20T10:15:01Z",
    });
    collect_testkit::publish_raw(
        &pipeline.topology.responses_exchange(),
        "household-finance",
        message.to_string().as_bytes(),
    )
    .await;
    pipeline.start_ingest_again().await;
    watcher.expect("flagged", "w-while-down", 1).await;
    assert!(watcher.opened >= 2, "the client reconnected");

    // RabbitMQ goes away and comes back: the watcher keeps its stream, and a flag committed
    // after the broker is back reaches it.
    broker.cut();
    eventually(
        Duration::from_secs(20),
        "ingest sees the broker gone",
        || async {
            let response = pipeline
                .client
                .get(pipeline.url("/readyz"))
                .send()
                .await
                .ok()?;
            (response.status() == 503).then_some(())
        },
    )
    .await;
    broker.restore();
    accept(&pipeline, &flagged("w-after-broker", "u-watch")).await;
    watcher
        .expect("flagged", "w-after-broker", 1_795_169_700_000)
        .await;

    // A correction clears the flag.
    accept(
        &pipeline,
        &seed(
            "w-live",
            "u-watch",
            json!({"last_modified_time": 1_795_169_800}),
        ),
    )
    .await;
    watcher.expect("cleared", "w-live", 1_795_169_800_000).await;
    watcher.expect_nothing().await;
    pipeline.stop().await;
}

/// On PostgreSQL a flag event is listed only once every older transaction on the server has
/// ended: one held back by a long transaction elsewhere (longer than a watcher's quick retries
/// after a wake-up) reaches the watcher soon after that transaction ends, not at its next
/// 30 s poll.
#[tokio::test]
async fn a_flag_held_back_by_a_long_transaction_elsewhere_arrives_soon_after_it_ends() {
    let pipeline = Pipeline::start().await;
    let older = match ENGINE {
        Engine::Postgres => {
            use sqlx::Connection;
            let mut older = sqlx::PgConnection::connect(&pipeline.database_url)
                .await
                .unwrap();
            sqlx::query("BEGIN").execute(&mut older).await.unwrap();
            sqlx::query("SELECT pg_current_xact_id()")
                .execute(&mut older)
                .await
                .unwrap();
            Some(older)
        }
        Engine::MySql => None,
    };
    accept(&pipeline, &flagged("h-held", "u-held")).await;
    pipeline.stored("h-held", 1_795_169_700_000).await;
    let mut watcher = Watcher::open(&pipeline, "u-held", "");
    if let Some(mut older) = older {
        // Held back for longer than the quick retries after the wake-up (2 s).
        assert!(watcher.next(Duration::from_secs(3)).await.is_none());
        sqlx::query("ROLLBACK").execute(&mut older).await.unwrap();
    }
    let ended = Instant::now();
    watcher.expect("flagged", "h-held", 1_795_169_700_000).await;
    assert!(
        ended.elapsed() < Duration::from_secs(10),
        "arrived {:?} after the transaction ended",
        ended.elapsed()
    );
    drop(watcher);
    pipeline.stop().await;
}

#[tokio::test]
async fn a_watcher_starts_where_it_is_told_and_bad_starting_points_are_refused() {
    let pipeline = Pipeline::start().await;
    accept(&pipeline, &flagged("s-old", "u-start")).await;
    pipeline.stored("s-old", 1_795_169_700_000).await;

    // `after=now`: only what comes next.
    let mut from_now = Watcher::open(&pipeline, "u-start", "?after=now");
    // Without a starting point: the whole history first.
    let mut from_start = Watcher::open(&pipeline, "u-start", "");
    let first = from_start
        .expect("flagged", "s-old", 1_795_169_700_000)
        .await;
    // Given the first event's id, the next watcher starts after it.
    let mut after_first = Watcher::open(&pipeline, "u-start", &format!("?after={first}"));
    // An open stream is a sign the `now` watcher has its starting point.
    let deadline = Instant::now() + Duration::from_secs(20);
    while from_now.opened == 0 {
        assert!(Instant::now() < deadline, "the `now` watcher did not open");
        assert_eq!(from_now.next(Duration::from_millis(100)).await, None);
    }
    accept(&pipeline, &flagged("s-new", "u-start")).await;
    for watcher in [&mut from_now, &mut from_start, &mut after_first] {
        watcher.expect("flagged", "s-new", 1_795_169_700_000).await;
        watcher.expect_nothing().await;
    }

    let url = pipeline.url("/v1/collectors/u-start/flags:watch");
    for (query, last_event_id, field) in [
        ("?after=12", None, "after"),
        ("?after=1.-1", None, "after"),
        ("", Some("tomorrow"), "Last-Event-ID"),
        ("?after=now", Some("1.2.3"), "Last-Event-ID"),
    ] {
        let mut request = pipeline
            .client
            .get(format!("{url}{query}"))
            .bearer_auth(KEY);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 422, "{query} {last_event_id:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["field"], field, "{query} {last_event_id:?}");
    }
    let response = pipeline
        .client
        .get(pipeline.url("/v1/collectors/no%20spaces/flags:watch"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    pipeline.stop().await;
}
