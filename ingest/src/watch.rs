//! The live flag stream behind `GET /v1/collectors/{user_id}/flags:watch`.
//!
//! The store's flag history is what a watcher reads: every event it sends is an event of the
//! history, with the history's cursor as its SSE id, so a client that reconnects with
//! `Last-Event-ID` gets exactly what it has not seen. `N.flags` only says *when* to read: the
//! hub consumes it on a queue of this process's own (exclusive, deleted with the connection)
//! and wakes the watchers of the collector an event is for. A wake-up that is lost (the broker
//! restarting, the queue not yet bound) costs latency, not events: every watcher also reads
//! the history every `FLAGS_WATCH_POLL_MS`, and all of them read it again when the hub
//! (re)binds its queue.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lapin::options::BasicConsumeOptions;
use lapin::types::FieldTable;
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use collect_shared::amqp::{Broker, Topology};
use collect_shared::messages::{FlagEvent, UserId};
use collect_shared::store::{FlagCursor, Store, StoreError};

/// Events read from the history at a time.
const PAGE: i64 = 200;

/// After a wake-up whose read found nothing new (PostgreSQL shows an event to the history only
/// once no older transaction is still open), the watcher reads again after this, doubling,
/// for at most [`RETRY_FOR`].
const RETRY_FIRST: Duration = Duration::from_millis(25);
const RETRY_FOR: Duration = Duration::from_secs(2);

/// While the hub listens to `N.flags`, every event wakes its watchers, and this read is only a
/// safety net.
const LISTENING_POLL: Duration = Duration::from_secs(30);

/// Who a wake-up is for, and which event it announces.
#[derive(Debug, Clone)]
enum Wake {
    Collector { user_id: Arc<str>, event: Arc<str> },
    Everyone,
}

/// What tells one event from another: form, response, revision and type.
fn event_key(form_id: &str, response_id: &str, revision: &str, kind: &str) -> String {
    format!("{form_id}\u{0}{response_id}\u{0}{revision}\u{0}{kind}")
}

/// The fields of a flag event that name it.
#[derive(serde::Deserialize)]
struct Announced {
    form_id: String,
    response_id: String,
    revision: serde_json::Value,
    #[serde(rename = "type")]
    kind: String,
}

/// The hub: one per ingest process, shared by every watcher.
#[derive(Clone)]
pub struct FlagWatch {
    wake: broadcast::Sender<Wake>,
    /// Whether the hub listens to `N.flags` now.
    listening: tokio::sync::watch::Receiver<bool>,
    store: Store,
    /// Database connections the watchers may use at once (see [`crate::Background`]).
    background: crate::Background,
    poll: Duration,
    stop: CancellationToken,
}

/// What a watcher sends: an event with its place in the history.
pub type Update = (FlagCursor, FlagEvent);

impl FlagWatch {
    /// Starts the hub's consumer of `N.flags`; it runs until `stop`.
    pub fn start(
        broker: Broker,
        topology: &Topology,
        store: Store,
        background: crate::Background,
        poll: Duration,
    ) -> Self {
        let (wake, _) = broadcast::channel(4096);
        let (listening_tx, listening) = tokio::sync::watch::channel(false);
        let stop = CancellationToken::new();
        tokio::spawn(listen(
            broker,
            topology.flags_exchange(),
            wake.clone(),
            listening_tx,
            stop.clone(),
        ));
        Self {
            wake,
            listening,
            store,
            background,
            poll,
            stop,
        }
    }

    /// Ends every watcher and the hub (their streams end, so a graceful shutdown does not wait
    /// for them).
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// The cursor at the end of the collector's history: where a watcher that asked for `now`
    /// starts.
    pub async fn end_of_history(&self, user_id: &UserId) -> Result<FlagCursor, StoreError> {
        let mut cursor = FlagCursor::default();
        loop {
            let page = {
                let _connection = self.background.acquire().await;
                self.store.flag_history(user_id, cursor, 1000).await?
            };
            let done = page.events.len() < 1000;
            cursor = page.next;
            if done {
                return Ok(cursor);
            }
        }
    }

    /// Streams the collector's events after `cursor` into `sink` until the receiver is
    /// dropped or the hub stops: first what the history holds, then each new event as it is
    /// committed.
    pub async fn run_watcher(
        &self,
        user_id: UserId,
        mut cursor: FlagCursor,
        sink: tokio::sync::mpsc::Sender<Update>,
    ) {
        let mut wakes = self.wake.subscribe();
        let mut listening = self.listening.clone();
        // Events announced on `N.flags` and not read from the history yet, with when.
        let mut expected: HashMap<Arc<str>, Instant> = HashMap::new();
        let mut retry = RETRY_FIRST;
        let mut failing = false;
        // The history holds events it does not show yet.
        let mut held_back = false;
        loop {
            // Send everything the history holds after the cursor.
            loop {
                let read = {
                    let _connection = self.background.acquire().await;
                    self.store.flag_history(&user_id, cursor, PAGE).await
                };
                let page = match read {
                    Ok(page) => page,
                    Err(error) => {
                        if !failing {
                            warn!(%error, user_id = %user_id, "cannot read the flag history; retrying");
                        }
                        failing = true;
                        break;
                    }
                };
                failing = false;
                held_back = page.held_back;
                let full = page.events.len() as i64 == PAGE;
                for (at, event) in page.events {
                    if !expected.is_empty() {
                        let key = event_key(
                            event.form_id.as_str(),
                            event.response_id.as_str(),
                            &event.revision.to_string(),
                            event.kind.as_str(),
                        );
                        expected.remove(key.as_str());
                    }
                    if sink.send((at, event)).await.is_err() {
                        return;
                    }
                    cursor = at;
                }
                if !full {
                    break;
                }
            }

            // An announced event the history does not show yet (PostgreSQL shows it once every
            // older transaction has ended; a repeat announces one already sent): read again
            // soon, backing off, for a while; for as long as the history says it holds
            // events back (a long transaction anywhere on the server holds them all back).
            expected.retain(|_, at| at.elapsed() < RETRY_FOR);
            let wait = if !expected.is_empty() || held_back {
                retry = (retry * 2).min(RETRY_FOR);
                retry / 2
            } else if *listening.borrow() {
                LISTENING_POLL
            } else {
                self.poll
            };
            tokio::select! {
                () = sink.closed() => return,
                () = self.stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
                event = woken(&mut wakes, user_id.as_str()) => {
                    if let Some(event) = event {
                        expected.insert(event, Instant::now());
                    }
                    retry = RETRY_FIRST;
                }
                // Polling starts at once when the hub stops listening.
                changed = listening.changed() => {
                    if changed.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
            }
        }
    }
}

/// Resolves at the next wake-up for `user_id` (or for everyone), with the event it announces.
async fn woken(wakes: &mut broadcast::Receiver<Wake>, user_id: &str) -> Option<Arc<str>> {
    loop {
        match wakes.recv().await {
            Ok(Wake::Collector { user_id: id, event }) if &*id == user_id => return Some(event),
            Ok(Wake::Collector { .. }) => {}
            // Missed wake-ups might have been ours.
            Ok(Wake::Everyone) | Err(broadcast::error::RecvError::Lagged(_)) => return None,
            Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
        }
    }
}

/// Consumes `N.flags` on an exclusive queue of this process, waking the watchers of each
/// event's collector; starts over on each new connection.
async fn listen(
    broker: Broker,
    exchange: String,
    wake: broadcast::Sender<Wake>,
    listening: tokio::sync::watch::Sender<bool>,
    stop: CancellationToken,
) {
    loop {
        let connection = tokio::select! {
            () = stop.cancelled() => return,
            connection = broker.connection() => connection,
        };
        let Some(connection) = connection else { return };
        let once = listen_once(&connection, &exchange, &wake, &listening, &stop);
        let outcome = tokio::select! {
            outcome = once => outcome,
            () = broker.replaced(&connection) => Ok(()),
        };
        listening.send_replace(false);
        if stop.is_cancelled() {
            return;
        }
        if let Err(error) = outcome {
            warn!(%error, "cannot listen to flag events; retrying");
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

async fn listen_once(
    connection: &lapin::Connection,
    exchange: &str,
    wake: &broadcast::Sender<Wake>,
    listening: &tokio::sync::watch::Sender<bool>,
    stop: &CancellationToken,
) -> Result<(), lapin::Error> {
    let channel = connection.create_channel().await?;
    let name = collect_shared::amqp::bind_exclusive_queue(&channel, exchange, "#")
        .await?
        .to_string();
    let mut consumer = channel
        .basic_consume(
            name.as_str().into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    info!(queue = %name, "listening to flag events");
    listening.send_replace(true);
    // Events committed while nothing was bound are in the history: every watcher reads it.
    let _ = wake.send(Wake::Everyone);
    loop {
        let delivery = tokio::select! {
            () = stop.cancelled() => break,
            delivery = consumer.next() => delivery,
        };
        match delivery {
            Some(Ok(delivery)) => {
                let key = delivery.routing_key.as_str();
                let announced = serde_json::from_slice::<Announced>(&delivery.data);
                match (key.strip_prefix("collector."), announced) {
                    (Some(user_id), Ok(event)) => {
                        let revision = match &event.revision {
                            serde_json::Value::String(text) => text.clone(),
                            other => other.to_string(),
                        };
                        let event =
                            event_key(&event.form_id, &event.response_id, &revision, &event.kind);
                        let _ = wake.send(Wake::Collector {
                            user_id: user_id.into(),
                            event: event.into(),
                        });
                    }
                    // Read the history anyway: it is the truth.
                    (Some(_), Err(_)) => {
                        let _ = wake.send(Wake::Everyone);
                    }
                    (None, _) => debug!(key, "flag event with an unexpected routing key"),
                }
            }
            Some(Err(error)) => return Err(error),
            None => break,
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), channel.close(200, "done".into())).await;
    Ok(())
}
