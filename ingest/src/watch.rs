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

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use collect_shared::amqp::{Broker, Topology};
use collect_shared::messages::{FlagEvent, UserId};
use collect_shared::store::{FlagCursor, Store};

/// Events read from the history at a time.
const PAGE: i64 = 200;

/// After a wake-up that found nothing new (PostgreSQL shows an event to the history only once
/// no older transaction is still open), the watcher reads again this often, for
/// [`FAST_FOR`].
const FAST_POLL: Duration = Duration::from_millis(100);
const FAST_FOR: Duration = Duration::from_secs(2);

/// Who a wake-up is for.
#[derive(Debug, Clone)]
enum Wake {
    Collector(Arc<str>),
    Everyone,
}

/// The hub: one per ingest process, shared by every watcher.
#[derive(Clone)]
pub struct FlagWatch {
    wake: broadcast::Sender<Wake>,
    store: Store,
    poll: Duration,
    stop: CancellationToken,
}

/// What a watcher sends: an event with its place in the history.
pub type Update = (FlagCursor, FlagEvent);

impl FlagWatch {
    /// Starts the hub's consumer of `N.flags`; it runs until `stop`.
    pub fn start(broker: Broker, topology: &Topology, store: Store, poll: Duration) -> Self {
        let (wake, _) = broadcast::channel(4096);
        let stop = CancellationToken::new();
        tokio::spawn(listen(
            broker,
            topology.flags_exchange(),
            wake.clone(),
            stop.clone(),
        ));
        Self {
            wake,
            store,
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
    pub async fn end_of_history(&self, user_id: &UserId) -> Result<FlagCursor, sqlx::Error> {
        let mut cursor = FlagCursor::default();
        loop {
            let page = self.store.flag_history(user_id, cursor, 1000).await?;
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
        let mut fast_until: Option<Instant> = None;
        let mut failing = false;
        loop {
            // Send everything the history holds after the cursor.
            loop {
                let page = match self.store.flag_history(&user_id, cursor, PAGE).await {
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
                let full = page.events.len() as i64 == PAGE;
                for (at, event) in page.events {
                    if sink.send((at, event)).await.is_err() {
                        return;
                    }
                    cursor = at;
                }
                if !full {
                    break;
                }
            }

            let now = Instant::now();
            let wait = match fast_until {
                Some(until) if until > now => FAST_POLL,
                _ => self.poll,
            };
            tokio::select! {
                () = sink.closed() => return,
                () = self.stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
                () = woken(&mut wakes, user_id.as_str()) => {
                    fast_until = Some(Instant::now() + FAST_FOR);
                }
            }
        }
    }
}

/// Resolves at the next wake-up for `user_id` (or for everyone).
async fn woken(wakes: &mut broadcast::Receiver<Wake>, user_id: &str) {
    loop {
        match wakes.recv().await {
            Ok(Wake::Collector(id)) if &*id == user_id => return,
            Ok(Wake::Collector(_)) => {}
            // Missed wake-ups might have been ours.
            Ok(Wake::Everyone) | Err(broadcast::error::RecvError::Lagged(_)) => return,
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
    stop: CancellationToken,
) {
    loop {
        let connection = tokio::select! {
            () = stop.cancelled() => return,
            connection = broker.connection() => connection,
        };
        let Some(connection) = connection else { return };
        let listening = listen_once(&connection, &exchange, &wake, &stop);
        let outcome = tokio::select! {
            outcome = listening => outcome,
            () = broker.replaced(&connection) => Ok(()),
        };
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
    stop: &CancellationToken,
) -> Result<(), lapin::Error> {
    let channel = connection.create_channel().await?;
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let name = queue.name().as_str().to_owned();
    channel
        .queue_bind(
            name.as_str().into(),
            exchange.into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
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
                if let Some(user_id) = key.strip_prefix("collector.") {
                    let _ = wake.send(Wake::Collector(user_id.into()));
                } else {
                    debug!(key, "flag event with an unexpected routing key");
                }
            }
            Some(Err(error)) => return Err(error),
            None => break,
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), channel.close(200, "done".into())).await;
    Ok(())
}
