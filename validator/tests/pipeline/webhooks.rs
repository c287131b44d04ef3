//! Webhooks: flag events posted to a receiver of the test's own, signed, retried, dead-lettered
//! and redelivered, with the whole pipeline running.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use collect_testkit::eventually;
use serde_json::{Value, json};

use super::helpers::{Pipeline, seed};

const SAVINGS: &str = "what is the monthly savings?";

/// A webhook endpoint: records every request, answers with the scripted statuses in turn, then
/// with `then`.
#[derive(Clone)]
struct Receiver {
    url: String,
    inner: Arc<Mutex<Script>>,
}

struct Script {
    requests: Vec<(HeaderMap, Bytes)>,
    statuses: VecDeque<u16>,
    then: u16,
}

impl Receiver {
    async fn start(statuses: &[u16], then: u16) -> Self {
        let inner = Arc::new(Mutex::new(Script {
            requests: Vec::new(),
            statuses: statuses.iter().copied().collect(),
            then,
        }));
        let app = Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, inner }
    }

    fn answer_from_now(&self, status: u16) {
        self.inner.lock().unwrap().then = status;
    }

    /// Each request's headers, body as sent, and body parsed.
    fn requests(&self) -> Vec<(HeaderMap, Bytes, Value)> {
        self.inner
            .lock()
            .unwrap()
            .requests
            .iter()
            .map(|(headers, body)| {
                (
                    headers.clone(),
                    body.clone(),
                    serde_json::from_slice(body).unwrap(),
                )
            })
            .collect()
    }

    /// The requests once there are `count`.
    async fn wait_for(&self, count: usize) -> Vec<(HeaderMap, Bytes, Value)> {
        eventually(
            Duration::from_secs(30),
            &format!("{count} requests"),
            || async {
                let requests = self.requests();
                (requests.len() >= count).then_some(requests)
            },
        )
        .await
    }
}

/// Status 0 in a script: never answer.
const HANG: u16 = 0;

async fn receive(
    State(script): State<Arc<Mutex<Script>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let status = {
        let mut script = script.lock().unwrap();
        script.requests.push((headers, body));
        script.statuses.pop_front().unwrap_or(script.then)
    };
    if status == HANG {
        std::future::pending::<()>().await;
    }
    StatusCode::from_u16(status).unwrap()
}

async fn register(pipeline: &Pipeline, id: &str, definition: Value) -> Value {
    let response = pipeline
        .put(&format!("/v1/webhooks/{id}"), &definition)
        .await;
    assert_eq!(response.status(), 201, "{id}");
    response.json().await.unwrap()
}

async fn submit_flagged(pipeline: &Pipeline, response_id: &str, user_id: &str) {
    let body = seed(response_id, user_id, json!({SAVINGS: 22000.01}));
    assert_eq!(pipeline.post("/collect", &body).await.status(), 202);
}

/// The webhook's deliveries once `check` holds for them.
async fn deliveries_when(
    pipeline: &Pipeline,
    webhook_id: &str,
    check: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    eventually(Duration::from_secs(30), "the deliveries", || async {
        let response = pipeline
            .get(&format!("/v1/webhooks/{webhook_id}/deliveries"))
            .await;
        let body: Value = response.json().await.ok()?;
        let deliveries = body["deliveries"].as_array()?.clone();
        check(&deliveries).then_some(deliveries)
    })
    .await
}

#[tokio::test]
async fn a_webhook_gets_each_matching_flag_event_signed_and_retried_until_delivered() {
    let pipeline = Pipeline::start().await;
    // Fails twice (a 500, then a 429), then takes it.
    let receiver = Receiver::start(&[500, 429], 200).await;
    let others = Receiver::start(&[], 200).await;
    let hook = register(
        &pipeline,
        "team-pune",
        json!({"url": receiver.url, "form_id": "household-finance", "user_ids": ["u-hook", "u-hook-2"]}),
    )
    .await;
    let secret = hook["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(hook["user_ids"], json!(["u-hook", "u-hook-2"]));
    register(
        &pipeline,
        "someone-else",
        json!({"url": others.url, "user_ids": ["u-nobody"]}),
    )
    .await;

    submit_flagged(&pipeline, "h-1", "u-hook").await;
    // Not for this webhook: another collector; and a valid response causes no event.
    submit_flagged(&pipeline, "h-2", "u-outsider").await;
    let valid = seed("h-3", "u-hook", json!({}));
    assert_eq!(pipeline.post("/collect", &valid).await.status(), 202);
    pipeline.stored("h-2", 1_795_169_700_000).await;
    pipeline.stored("h-3", 1_795_169_700_000).await;

    // Three attempts of the one event, each signed, with the same id.
    let requests = receiver.wait_for(3).await;
    let signer = standardwebhooks::Webhook::new(&secret).unwrap();
    let first_id = requests[0].0["webhook-id"].clone();
    for (headers, raw, body) in &requests {
        assert_eq!(headers["webhook-id"], first_id);
        assert_eq!(headers["content-type"], "application/json");
        signer.verify(raw, headers).expect("a valid signature");
        assert_eq!(body["type"], "flag.flagged");
        assert_eq!(body["data"]["response_id"], "h-1");
        assert_eq!(body["data"]["collector"]["user_id"], "u-hook");
        assert_eq!(
            body["data"]["flags"][0]["rule_id"],
            "savings_within_surplus"
        );
    }
    // A tampered body fails the check.
    let tampered = String::from_utf8(requests[0].1.to_vec())
        .unwrap()
        .replace("h-1", "h-9");
    assert!(signer.verify(tampered.as_bytes(), &requests[0].0).is_err());

    let deliveries = deliveries_when(&pipeline, "team-pune", |deliveries| {
        deliveries.len() == 1 && deliveries[0]["state"] == "delivered"
    })
    .await;
    let delivery = &deliveries[0];
    assert_eq!(delivery["delivery_id"], first_id.to_str().unwrap());
    assert_eq!(delivery["attempts"], 3);
    assert_eq!(delivery["last_status"], 200);
    assert_eq!(delivery["last_error"], Value::Null);
    let webhook: Value = pipeline
        .get("/v1/webhooks/team-pune")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        webhook["deliveries"],
        json!({"pending": 0, "delivered": 1, "dead": 0})
    );

    // The correction clears it: a second event, delivered at once.
    let fixed = seed(
        "h-1",
        "u-hook",
        json!({"last_modified_time": 1_795_169_800}),
    );
    assert_eq!(pipeline.post("/collect", &fixed).await.status(), 202);
    let requests = receiver.wait_for(4).await;
    assert_eq!(requests[3].2["type"], "flag.cleared");
    assert_eq!(requests[3].2["data"]["revision"], 1_795_169_800_000u64);
    assert_ne!(requests[3].0["webhook-id"], first_id);

    // Nothing for the other webhook, nothing more for this one.
    deliveries_when(&pipeline, "team-pune", |deliveries| {
        deliveries.len() == 2 && deliveries.iter().all(|d| d["state"] == "delivered")
    })
    .await;
    assert!(others.requests().is_empty());
    let listed: Value = pipeline
        .get("/v1/webhooks/someone-else/deliveries")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["deliveries"], json!([]));
    assert_eq!(receiver.requests().len(), 4);
    pipeline.stop().await;
}

#[tokio::test]
async fn a_delivery_that_keeps_failing_is_dead_and_can_be_delivered_again() {
    let pipeline = Pipeline::start().await;
    let receiver = Receiver::start(&[], 503).await;
    register(&pipeline, "broken", json!({"url": receiver.url})).await;
    submit_flagged(&pipeline, "d-1", "u-dead").await;

    // WEBHOOKS_MAX_ATTEMPTS is 3 in these tests.
    let deliveries = deliveries_when(&pipeline, "broken", |deliveries| {
        deliveries.len() == 1 && deliveries[0]["state"] == "dead"
    })
    .await;
    assert_eq!(deliveries[0]["attempts"], 3);
    assert_eq!(deliveries[0]["last_status"], 503);
    assert_eq!(deliveries[0]["last_error"], "the endpoint answered 503");
    assert_eq!(receiver.requests().len(), 3);
    let dead: Value = pipeline
        .get("/v1/webhooks/broken/deliveries?state=dead")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(dead["deliveries"].as_array().unwrap().len(), 1);
    let pending: Value = pipeline
        .get("/v1/webhooks/broken/deliveries?state=pending")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(pending["deliveries"], json!([]));

    // The receiver is fixed; the delivery goes again, once.
    receiver.answer_from_now(204);
    let id = deliveries[0]["delivery_id"].as_str().unwrap();
    let response = pipeline
        .post(
            "/v1/webhooks/broken/deliveries:redeliver",
            &json!({"delivery_id": id}),
        )
        .await;
    assert_eq!(response.status(), 202);
    let deliveries = deliveries_when(&pipeline, "broken", |deliveries| {
        deliveries[0]["state"] == "delivered"
    })
    .await;
    assert_eq!(deliveries[0]["attempts"], 1);
    assert_eq!(deliveries[0]["last_status"], 204);
    assert_eq!(receiver.requests().len(), 4);
    let response = pipeline
        .post(
            "/v1/webhooks/broken/deliveries:redeliver",
            &json!({"delivery_id": "msg_nothing"}),
        )
        .await;
    assert_eq!(response.status(), 404);
    pipeline.stop().await;
}

#[tokio::test]
async fn bad_webhook_definitions_are_refused_with_the_field_named() {
    let pipeline = Pipeline::start().await;
    let cases = [
        ("ok", json!({"url": "ftp://example.com/"}), "url"),
        ("ok", json!({"url": "https://u:p@example.com/"}), "url"),
        ("ok", json!({"url": "nothing"}), "url"),
        ("ok", json!({}), "url"),
        (
            "ok",
            json!({"url": "https://example.com/", "form_id": "no-such-form"}),
            "form_id",
        ),
        (
            "ok",
            json!({"url": "https://example.com/", "user_ids": ["u-1", ""]}),
            "user_ids[1]",
        ),
        (
            "ok",
            json!({"url": "https://example.com/", "secret": "mine"}),
            "secret",
        ),
        (
            "not%20an%20id",
            json!({"url": "https://example.com/"}),
            "webhook_id",
        ),
    ];
    for (id, body, field) in cases {
        let response = pipeline.put(&format!("/v1/webhooks/{id}"), &body).await;
        assert_eq!(response.status(), 422, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["field"], field, "{body}");
    }
    assert_eq!(
        pipeline.get("/v1/webhooks/nothing-here").await.status(),
        404
    );
    assert_eq!(
        pipeline
            .get("/v1/webhooks/nothing-here/deliveries")
            .await
            .status(),
        404
    );

    // Created, updated (same secret, new URL), listed without its secret, deleted.
    let created = register(&pipeline, "h", json!({"url": "https://example.com/a"})).await;
    let response = pipeline
        .put("/v1/webhooks/h", &json!({"url": "https://example.com/b"}))
        .await;
    assert_eq!(response.status(), 200);
    let updated: Value = response.json().await.unwrap();
    assert_eq!(updated["secret"], created["secret"]);
    assert_eq!(updated["url"], "https://example.com/b");
    let listed: Value = pipeline.get("/v1/webhooks").await.json().await.unwrap();
    assert_eq!(listed["webhooks"].as_array().unwrap().len(), 1);
    assert_eq!(listed["webhooks"][0]["webhook_id"], "h");
    assert!(listed["webhooks"][0].get("secret").is_none());
    let response = pipeline.get("/v1/webhooks/h/deliveries?state=lost").await;
    assert_eq!(response.status(), 422);
    assert_eq!(pipeline.delete("/v1/webhooks/h").await.status(), 204);
    assert_eq!(pipeline.delete("/v1/webhooks/h").await.status(), 404);
    pipeline.stop().await;
}

#[tokio::test]
async fn an_endpoint_that_hangs_holds_up_only_its_own_deliveries() {
    let pipeline = Pipeline::start().await;
    let hanging = Receiver::start(&[], HANG).await;
    let quick = Receiver::start(&[], 200).await;
    register(
        &pipeline,
        "hangs",
        json!({"url": hanging.url, "user_ids": ["u-slow"]}),
    )
    .await;
    register(
        &pipeline,
        "quick",
        json!({"url": quick.url, "user_ids": ["u-quick"]}),
    )
    .await;
    submit_flagged(&pipeline, "s-1", "u-slow").await;
    hanging.wait_for(1).await;
    // The hanging attempt is in flight (WEBHOOKS_TIMEOUT_MS is 5 s here); an event for the
    // other webhook is delivered meanwhile, not after it.
    submit_flagged(&pipeline, "q-1", "u-quick").await;
    quick.wait_for(1).await;
    let slow: Value = pipeline
        .get("/v1/webhooks/hangs/deliveries")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(slow["deliveries"][0]["attempts"], 0, "{slow}");
    // Then the hanging attempt times out and counts as a failure.
    let deliveries = deliveries_when(&pipeline, "hangs", |deliveries| {
        deliveries[0]["attempts"].as_i64() >= Some(1)
    })
    .await;
    assert_eq!(deliveries[0]["last_status"], Value::Null);
    assert_eq!(deliveries[0]["last_error"], "no answer within 5000 ms");
    pipeline.stop().await;
}

#[tokio::test]
async fn a_burst_of_events_is_delivered_whole() {
    let pipeline = Pipeline::start().await;
    let receiver = Receiver::start(&[], 200).await;
    register(&pipeline, "burst", json!({"url": receiver.url})).await;
    let n = 120;
    let batch: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "response_id": format!("b-{i}"),
                "revision": 1,
                "collector": {"user_id": format!("u-burst-{}", i % 7), "username": "b"},
                "answers": {"monthly_income": 52000, "monthly_savings": 30000,
                            "monthly_expenditure": 30000, "food": 12000, "cable": 500,
                            "healthcare": 2000, "fuel": 3000}
            })
        })
        .collect();
    let response = pipeline
        .post(
            "/v1/forms/household-finance/responses:batch",
            &Value::Array(batch),
        )
        .await;
    assert_eq!(response.status(), 202);
    // Every event once, each delivery recorded: more deliveries in flight than the
    // connections background work may hold.
    let requests = receiver.wait_for(n).await;
    let mut ids: Vec<String> = requests
        .iter()
        .map(|(_, _, body)| body["data"]["response_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n);
    let webhook = eventually(Duration::from_secs(30), "all delivered", || async {
        let webhook: Value = pipeline.get("/v1/webhooks/burst").await.json().await.ok()?;
        (webhook["deliveries"]["delivered"] == json!(n)).then_some(webhook)
    })
    .await;
    assert_eq!(webhook["deliveries"]["pending"], 0);
    pipeline.stop().await;
}
