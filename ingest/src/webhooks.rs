//! The webhook dispatcher: flag events to the HTTPS endpoints that registered for them.
//!
//! Two loops, both in every ingest process:
//! - the **recorder** consumes `N.webhooks` (every flag event), writes one delivery per webhook
//!   whose form and collectors match into the store's outbox, and acks once that committed;
//! - the **sender** claims due deliveries (`FOR UPDATE SKIP LOCKED` with a lease, so several
//!   ingest processes share the work and a crashed one's deliveries are taken again), posts
//!   each, signed the Standard Webhooks way, and records the outcome: delivered on a 2xx,
//!   otherwise another attempt after an exponential backoff, and `dead` after the last one.
//!
//! At least once: a delivery is recorded before its event is acked, and marked delivered only
//! after the endpoint answered 2xx. The `webhook-id` header is the same on every attempt, so a
//! receiver can drop repeats.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Request, header};
use bytes::Bytes;
use chrono::Utc;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use lapin::message::Delivery;
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use collect_shared::amqp::{Batching, Broker};
use collect_shared::amqp::{Publisher, Settled, Topology, consume_batches, dead_letter};
use collect_shared::messages::FlagEvent;
use collect_shared::retry::{Policy, Retried, retry_transient, retry_until_shutdown};
use collect_shared::store::{
    ClaimedDelivery, FailedAttempt, NewDelivery, Store, StoreError, Webhook,
};

/// How the dispatcher delivers.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Attempts of one delivery before it is dead.
    pub max_attempts: u32,
    /// The wait after the first failed attempt; it doubles after each (with jitter) up to
    /// `retry_max`.
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// Deadline of one attempt, connection included.
    pub timeout: Duration,
    /// How long delivered deliveries are kept (dead and pending ones are kept until handled).
    pub retention: Duration,
}

impl WebhookSettings {
    /// When the attempt after `attempts` failed ones is due; `None` when none is left.
    pub fn next_attempt(&self, attempts: u32) -> Option<Duration> {
        if attempts >= self.max_attempts {
            return None;
        }
        Some(Policy::new(self.retry_min, self.retry_max).delay_after(attempts))
    }
}

/// One attempt to deliver to a webhook: counted by its outcome (`delivered`, `retried`,
/// `dead`: `collect_webhook_deliveries_total`); a failed one is logged with why.
struct DeliveryAttempt<'a> {
    claimed: &'a ClaimedDelivery,
    attempts: u32,
    outcome: &'static str,
    error: Option<&'a str>,
}

impl DeliveryAttempt<'_> {
    fn record(&self) {
        metrics::counter!("collect_webhook_deliveries_total", "outcome" => self.outcome)
            .increment(1);
        if let Some(error) = self.error {
            warn!(
                webhook_id = %self.claimed.webhook_id,
                delivery_id = %self.claimed.delivery_id,
                attempts = self.attempts,
                %error,
                outcome = self.outcome,
                "webhook delivery failed"
            );
        }
    }
}

/// Attempts in flight at once (per ingest process).
const IN_FLIGHT: usize = 32;

/// Webhooks are re-read from the store at most this often (a new or changed webhook takes
/// effect for events recorded after that).
const WEBHOOKS_TTL: Duration = Duration::from_secs(2);

/// The sender looks for due deliveries at least this often (retries come due by the clock).
const IDLE_POLL: Duration = Duration::from_millis(500);

/// How often delivered deliveries past the retention are deleted.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The webhooks, read from the store at most every [`WEBHOOKS_TTL`].
struct WebhookCache {
    store: Store,
    background: crate::Background,
    cached: Mutex<Option<(Instant, Arc<Vec<Webhook>>)>>,
}

impl WebhookCache {
    async fn get(&self) -> Result<Arc<Vec<Webhook>>, StoreError> {
        let mut cached = self.cached.lock().await;
        if let Some((at, webhooks)) = &*cached
            && at.elapsed() < WEBHOOKS_TTL
        {
            return Ok(webhooks.clone());
        }
        let webhooks = {
            let _connection = self.background.acquire().await;
            Arc::new(self.store.list_webhooks().await?)
        };
        *cached = Some((Instant::now(), webhooks.clone()));
        Ok(webhooks)
    }
}

/// The running dispatcher.
pub struct Dispatcher {
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Dispatcher {
    /// Stops consuming and sending, and waits for the work in hand (events being recorded and
    /// acked, attempts in flight) to finish.
    pub async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Starts the recorder and the sender.
pub fn start(
    broker: Broker,
    publisher: Publisher,
    topology: Topology,
    store: Store,
    background: crate::Background,
    settings: WebhookSettings,
) -> anyhow::Result<Dispatcher> {
    let stop = CancellationToken::new();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|error| anyhow::anyhow!("cannot load the system's root certificates: {error}"))?
        .https_or_http()
        .enable_http1()
        .build();
    let client: HttpsClient = Client::builder(TokioExecutor::new()).build(connector);
    let wake = Arc::new(Notify::new());
    let recorder = Arc::new(Recorder {
        cache: WebhookCache {
            store: store.clone(),
            background: background.clone(),
            cached: Mutex::new(None),
        },
        store: store.clone(),
        background: background.clone(),
        publisher,
        topology: topology.clone(),
        wake: wake.clone(),
        stop: stop.clone(),
    });
    let queue = topology.webhooks_queue();
    let consuming = stop.clone();
    let recording = tokio::spawn(async move {
        // No linger: flag events are few, and each is awaited by an app.
        let batching = Batching {
            prefetch: 64,
            batch: 32,
            linger: Duration::ZERO,
        };
        consume_batches(broker, queue, batching, consuming, move |deliveries| {
            let recorder = recorder.clone();
            async move { recorder.record(deliveries).await }
        })
        .await;
    });
    let sender = Sender {
        store,
        background,
        client,
        settings,
        wake,
        stop: stop.clone(),
    };
    let sending = tokio::spawn(async move { Arc::new(sender).run().await });
    Ok(Dispatcher {
        stop,
        tasks: vec![recording, sending],
    })
}

struct Recorder {
    cache: WebhookCache,
    store: Store,
    background: crate::Background,
    publisher: Publisher,
    topology: Topology,
    wake: Arc<Notify>,
    stop: CancellationToken,
}

impl Recorder {
    /// Publishes a delivery of `N.webhooks` to `N.dead` with `reason`; `false` when shutdown
    /// came first.
    async fn set_aside(&self, delivery: &Delivery, reason: &str) -> bool {
        dead_letter(
            &self.publisher,
            &self.topology.dead_exchange(),
            &self.topology.webhooks_queue(),
            delivery,
            reason,
            &self.stop,
        )
        .await
    }

    /// Records the deliveries of the events that arrived together, then has them acked.
    async fn record(&self, deliveries: Vec<Delivery>) -> Vec<Settled> {
        let webhooks =
            match retry_until_shutdown("reading webhooks", &self.stop, || self.cache.get()).await {
                Some(webhooks) => webhooks,
                // Shutting down: the events come again.
                None => return requeue(&deliveries),
            };
        let mut outbox = Vec::new();
        let mut events = Vec::with_capacity(deliveries.len());
        for delivery in &deliveries {
            match serde_json::from_slice::<FlagEvent>(&delivery.data) {
                Ok(event) => {
                    outbox.extend(deliveries_of(&event, &webhooks));
                    events.push(Some(()));
                }
                Err(error) => {
                    let reason = format!("not a flag event: {error}");
                    warn!(%reason, "flag event set aside");
                    if !self.set_aside(delivery, &reason).await {
                        return requeue(&deliveries);
                    }
                    events.push(None);
                }
            }
        }
        if !outbox.is_empty() {
            match retry_transient("recording webhook deliveries", &self.stop, || async {
                let _connection = self.background.acquire().await;
                self.store.enqueue_deliveries(&outbox).await
            })
            .await
            {
                Retried::Done(recorded) => {
                    debug!(recorded, "webhook deliveries recorded");
                    self.wake.notify_one();
                }
                Retried::Permanent(error) => {
                    // Only a delivery the store cannot hold gets here (the ids are ours, the
                    // payload is an event that parsed): set the events aside with why.
                    let reason = format!("cannot record webhook deliveries: {error}");
                    warn!(%reason, "flag events set aside");
                    for (delivery, event) in deliveries.iter().zip(&events) {
                        if event.is_some() && !self.set_aside(delivery, &reason).await {
                            return requeue(&deliveries);
                        }
                    }
                }
                Retried::Shutdown => return requeue(&deliveries),
            }
        }
        vec![Settled::Ack; deliveries.len()]
    }
}

/// Shutting down: the events go back to the queue.
fn requeue(deliveries: &[Delivery]) -> Vec<Settled> {
    vec![Settled::Requeue; deliveries.len()]
}

/// The deliveries an event causes: one per webhook that wants it.
pub fn deliveries_of(event: &FlagEvent, webhooks: &[Webhook]) -> Vec<NewDelivery> {
    let wanted: Vec<&Webhook> = webhooks
        .iter()
        .filter(|webhook| webhook.wants(&event.form_id, &event.collector.user_id))
        .collect();
    if wanted.is_empty() {
        return Vec::new();
    }
    let id = delivery_id(event);
    let payload = payload(event);
    wanted
        .into_iter()
        .map(|webhook| NewDelivery {
            webhook_id: webhook.id.clone(),
            delivery_id: id.clone(),
            payload: payload.clone(),
        })
        .collect()
}

/// The event's id, the same however often the validator publishes it: `msg_` and 32 hex
/// digits of SHA-256 of (form, response, revision, type).
pub fn delivery_id(event: &FlagEvent) -> String {
    let mut hash = Sha256::new();
    for part in [
        event.form_id.as_str(),
        event.response_id.as_str(),
        &event.revision.to_string(),
        event.kind.as_str(),
    ] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let digest = hash.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("msg_{hex}")
}

/// The body a webhook receives: Standard Webhooks' `{type, timestamp, data}`.
pub fn payload(event: &FlagEvent) -> serde_json::Value {
    serde_json::json!({
        "type": format!("flag.{}", event.kind.as_str()),
        "timestamp": event.at,
        "data": event,
    })
}

struct Sender {
    store: Store,
    background: crate::Background,
    client: HttpsClient,
    settings: WebhookSettings,
    wake: Arc<Notify>,
    stop: CancellationToken,
}

impl Sender {
    /// Keeps up to [`IN_FLIGHT`] attempts going: claims more as attempts finish, so a slow
    /// endpoint holds only its own attempts, not the others'.
    async fn run(self: Arc<Self>) {
        let lease = self.settings.timeout + Duration::from_secs(30);
        let mut next_cleanup = Instant::now();
        let mut failing = false;
        // Attempts run as tasks of their own, so that they progress (and give back their
        // database connection) while this loop waits for a claim.
        let mut in_flight = tokio::task::JoinSet::new();
        loop {
            // Every attempt that has finished makes room (not only the one that woke us).
            while in_flight.try_join_next().is_some() {}
            if Instant::now() >= next_cleanup {
                next_cleanup = Instant::now() + RETENTION_EVERY;
                self.clean_up().await;
            }
            let room = IN_FLIGHT - in_flight.len();
            let mut claimed_any = false;
            if room > 0 && !self.stop.is_cancelled() {
                let claimed = {
                    let _connection = self.background.acquire().await;
                    self.store.claim_deliveries(room as u32, lease).await
                };
                match claimed {
                    Ok(claimed) => {
                        failing = false;
                        claimed_any = !claimed.is_empty();
                        for claimed in claimed {
                            let sender = self.clone();
                            in_flight.spawn(async move { sender.attempt(claimed).await });
                        }
                    }
                    Err(error) => {
                        if !failing {
                            warn!(%error, "cannot claim webhook deliveries; retrying");
                        }
                        failing = true;
                    }
                }
            }
            if self.stop.is_cancelled() {
                // Attempts in flight finish (each within the timeout) and are recorded; the
                // rest are taken again after their lease.
                while in_flight.join_next().await.is_some() {}
                return;
            }
            if claimed_any && in_flight.len() < IN_FLIGHT {
                // More may be due right away.
                continue;
            }
            tokio::select! {
                () = self.stop.cancelled() => {}
                () = self.wake.notified() => {}
                () = tokio::time::sleep(IDLE_POLL) => {}
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            }
        }
    }

    async fn clean_up(&self) {
        let Ok(retention) = chrono::Duration::from_std(self.settings.retention) else {
            return;
        };
        let _connection = self.background.acquire().await;
        match self
            .store
            .delete_deliveries_before(Utc::now() - retention)
            .await
        {
            Ok(0) => {}
            Ok(deleted) => info!(
                deleted,
                "delivered webhook deliveries past retention deleted"
            ),
            Err(error) => warn!(%error, "cannot delete old webhook deliveries"),
        }
    }

    async fn attempt(&self, claimed: ClaimedDelivery) {
        let outcome = self.post(&claimed).await;
        let attempts = u32::try_from(claimed.attempts).unwrap_or(0) + 1;
        let recorded = match outcome {
            Ok(status) if (200..300).contains(&status) => {
                DeliveryAttempt {
                    claimed: &claimed,
                    attempts,
                    outcome: "delivered",
                    error: None,
                }
                .record();
                let _connection = self.background.acquire().await;
                self.store
                    .delivery_succeeded(&claimed.webhook_id, &claimed.delivery_id, status)
                    .await
            }
            failed => {
                let (status, error) = match failed {
                    Ok(status) => (Some(status), format!("the endpoint answered {status}")),
                    Err(error) => (None, error),
                };
                let retry_at = self
                    .settings
                    .next_attempt(attempts)
                    .and_then(|wait| chrono::Duration::from_std(wait).ok())
                    .map(|wait| Utc::now() + wait);
                let outcome = if retry_at.is_some() {
                    "retried"
                } else {
                    "dead"
                };
                DeliveryAttempt {
                    claimed: &claimed,
                    attempts,
                    outcome,
                    error: Some(&error),
                }
                .record();
                let _connection = self.background.acquire().await;
                self.store
                    .delivery_failed(
                        &claimed.webhook_id,
                        &claimed.delivery_id,
                        FailedAttempt {
                            status,
                            error: &error,
                            retry_at,
                        },
                    )
                    .await
            }
        };
        if let Err(error) = recorded {
            // The lease runs out and the delivery is attempted again: at least once.
            warn!(%error, delivery_id = %claimed.delivery_id, "cannot record a webhook delivery's outcome");
        }
    }

    /// Posts the delivery; the status of the answer, or why there was none.
    async fn post(&self, claimed: &ClaimedDelivery) -> Result<u16, String> {
        let body = serde_json::to_vec(&claimed.payload)
            .map_err(|error| format!("cannot encode the payload: {error}"))?;
        let timestamp = Utc::now().timestamp();
        let signature = standardwebhooks::Webhook::new(&claimed.secret)
            .and_then(|signer| signer.sign(&claimed.delivery_id, timestamp, &body))
            .map_err(|error| format!("cannot sign: {error}"))?;
        let request = Request::post(claimed.url.as_str())
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::USER_AGENT,
                concat!("Collect-Webhooks/", env!("CARGO_PKG_VERSION")),
            )
            .header("webhook-id", claimed.delivery_id.as_str())
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(Full::new(Bytes::from(body)))
            .map_err(|error| format!("cannot build the request: {error}"))?;
        match tokio::time::timeout(self.settings.timeout, self.client.request(request)).await {
            Ok(Ok(response)) => Ok(response.status().as_u16()),
            Ok(Err(error)) => Err(format!("no answer: {error}")),
            Err(_) => Err(format!(
                "no answer within {} ms",
                self.settings.timeout.as_millis()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> WebhookSettings {
        WebhookSettings {
            max_attempts: 4,
            retry_min: Duration::from_secs(5),
            retry_max: Duration::from_secs(12),
            timeout: Duration::from_secs(10),
            retention: Duration::from_secs(86_400),
        }
    }

    #[test]
    fn attempts_back_off_up_to_the_limit() {
        let settings = settings();
        let waits: Vec<Option<Duration>> = (1..=4).map(|n| settings.next_attempt(n)).collect();
        // With jitter, each wait is between the delay and twice it.
        let within = |wait: Option<Duration>, low: u64, high: u64| {
            let wait = wait.expect("another attempt");
            wait >= Duration::from_secs(low) && wait <= Duration::from_secs(high)
        };
        assert!(within(waits[0], 5, 10), "{waits:?}");
        assert!(within(waits[1], 10, 20), "{waits:?}");
        assert!(within(waits[2], 12, 24), "{waits:?}");
        assert_eq!(waits[3], None, "the fourth failure is the last");
    }
}
