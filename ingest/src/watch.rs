//! The live flag stream behind `GET /v1/collectors/{user_id}/flags:watch`.
//!
//! The store's flag history is what a watcher reads: every event it sends is an event of the
//! history, with the history's cursor as its SSE id, so a client that reconnects with
//! `Last-Event-ID` gets exactly what it has not seen. `N.flags` only says *when* to read: the
//! hub consumes it on a queue of this process's own (exclusive, deleted with the connection)
//! and wakes the watchers of the collector an event is for, and only them: each collector
//! being watched has a wake-up channel of its own ([`Watchers`]), so an event costs the same
//! whether ten or ten thousand collectors are watching. A wake-up that is lost (the broker
//! restarting, the queue not yet bound) costs latency, not events: every watcher also reads
//! the history every `FLAGS_WATCH_POLL_MS`, and all of them read it again when the hub
//! (re)binds its queue.

use std::collections::{HashMap, VecDeque};
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

/// Announced events a collector's watchers may hold unread before they read the history
/// anyway (a lag is a wake-up too).
const WAKE_CAPACITY: usize = 16;

/// The collectors being watched: a wake-up channel each, carrying the events announced for
/// them. A channel shared by every watcher woke all of them for each event, each to find it
/// was someone else's: with 2,000 streams open, a flagged response cost ingest ~1.4 ms more CPU.
/// A collector has at most `per_collector` streams: one more ends its oldest.
#[derive(Debug)]
struct Watchers {
    by_collector: std::sync::Mutex<HashMap<Arc<str>, Watched>>,
    per_collector: usize,
}

/// A watched collector: its wake-ups and its streams, oldest first.
#[derive(Debug)]
struct Watched {
    wakes: broadcast::Sender<Arc<str>>,
    /// Each stream's number, and what ends it when a newer one replaces it.
    streams: VecDeque<(u64, CancellationToken)>,
    next: u64,
}

impl Watchers {
    fn new(per_collector: usize) -> Self {
        Self {
            by_collector: std::sync::Mutex::default(),
            per_collector: per_collector.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Watched>> {
        self.by_collector
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A watcher of `user_id` starts: its wake-ups, until the subscription is dropped. If the
    /// collector had `per_collector` streams already, the oldest is told to end: an app that
    /// vanished without closing its stream (a phone out of coverage) leaves one behind until
    /// TCP gives up on it, and its reconnect must not be refused for that.
    fn subscribe(self: &Arc<Self>, user_id: &str) -> Subscription {
        let replaced = CancellationToken::new();
        let (number, receiver) = {
            let mut by_collector = self.lock();
            let watched = by_collector
                .entry(Arc::from(user_id))
                .or_insert_with(|| Watched {
                    wakes: broadcast::channel(WAKE_CAPACITY).0,
                    streams: VecDeque::new(),
                    next: 0,
                });
            let number = watched.next;
            watched.next += 1;
            watched.streams.push_back((number, replaced.clone()));
            while watched.streams.len() > self.per_collector {
                if let Some((_, oldest)) = watched.streams.pop_front() {
                    oldest.cancel();
                    metrics::counter!("collect_ingest_flag_streams_replaced_total").increment(1);
                }
            }
            (number, watched.wakes.subscribe())
        };
        Subscription {
            watchers: Arc::clone(self),
            user_id: Arc::from(user_id),
            number,
            replaced,
            receiver: Some(receiver),
            _open: collect_shared::telemetry::InFlight::start(metrics::gauge!(
                "collect_ingest_flag_watchers"
            )),
        }
    }

    /// Wakes the watchers of `user_id`, if any, with the event announced.
    fn wake(&self, user_id: &str, event: Arc<str>) {
        if let Some(watched) = self.lock().get(user_id) {
            let _ = watched.wakes.send(event);
        }
    }

    /// Collectors with a watcher.
    #[cfg(test)]
    fn collectors(&self) -> usize {
        self.lock().len()
    }
}

/// One watcher's wake-ups; the last of a collector's to go removes its channel.
struct Subscription {
    watchers: Arc<Watchers>,
    user_id: Arc<str>,
    number: u64,
    replaced: CancellationToken,
    receiver: Option<broadcast::Receiver<Arc<str>>>,
    _open: collect_shared::telemetry::InFlight,
}

impl Subscription {
    fn receiver(&mut self) -> &mut broadcast::Receiver<Arc<str>> {
        self.receiver
            .as_mut()
            .expect("the receiver lives as long as the subscription")
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // Dropped and counted under the lock a new subscriber takes too: a channel is removed
        // only when no receiver is left, and never from under a new one.
        let mut by_collector = self.watchers.lock();
        self.receiver.take();
        if let Some(watched) = by_collector.get_mut(&self.user_id) {
            watched.streams.retain(|(number, _)| *number != self.number);
            if watched.wakes.receiver_count() == 0 {
                by_collector.remove(&self.user_id);
            }
        }
    }
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
    watchers: Arc<Watchers>,
    /// Bumped when every watcher should read the history (the hub bound its queue again, or
    /// an event it could not read).
    everyone: Arc<tokio::sync::watch::Sender<u64>>,
    /// Whether the hub listens to `N.flags` now.
    listening: tokio::sync::watch::Receiver<bool>,
    store: Store,
    /// Database connections the watchers may use at once (see [`crate::Background`]).
    background: crate::Background,
    poll: Duration,
    /// The streams this process may serve at once (`FLAGS_WATCH_MAX_STREAMS`).
    streams: Arc<tokio::sync::Semaphore>,
    stop: CancellationToken,
}

/// How many streams a process serves.
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    /// At once, in all (`FLAGS_WATCH_MAX_STREAMS`): the next is refused.
    pub total: usize,
    /// Of one collector (`FLAGS_WATCH_MAX_STREAMS_PER_COLLECTOR`): the next ends the oldest.
    pub per_collector: usize,
}

/// What a watcher sends: an event with its place in the history.
pub type Update = (FlagCursor, Box<FlagEvent>);

impl FlagWatch {
    /// Starts the hub's consumer of `N.flags`; it runs until `stop`.
    pub fn start(
        broker: Broker,
        topology: &Topology,
        store: Store,
        background: crate::Background,
        poll: Duration,
        limits: StreamLimits,
    ) -> Self {
        let watchers = Arc::new(Watchers::new(limits.per_collector));
        let everyone = Arc::new(tokio::sync::watch::Sender::new(0));
        let (listening_tx, listening) = tokio::sync::watch::channel(false);
        let stop = CancellationToken::new();
        tokio::spawn(listen(
            broker,
            topology.flags_exchange(),
            Wakes {
                watchers: Arc::clone(&watchers),
                everyone: Arc::clone(&everyone),
            },
            listening_tx,
            stop.clone(),
        ));
        Self {
            watchers,
            everyone,
            listening,
            store,
            background,
            poll,
            streams: Arc::new(tokio::sync::Semaphore::new(limits.total)),
            stop,
        }
    }

    /// A place for one more stream, held for as long as it is open; `None` when this process
    /// serves `FLAGS_WATCH_MAX_STREAMS` already.
    pub fn admit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        Arc::clone(&self.streams).try_acquire_owned().ok()
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
        let mut wakes = self.watchers.subscribe(user_id.as_str());
        // Cancelled when a newer stream of the collector replaces this one.
        let replaced = wakes.replaced.clone();
        let mut everyone = self.everyone.subscribe();
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
                    // A stream whose client stopped reading (gone without a word) fills its
                    // channel: being replaced or stopped must still end it.
                    let sent = tokio::select! {
                        sent = sink.send((at, Box::new(event))) => sent.is_ok(),
                        () = replaced.cancelled() => false,
                        () = self.stop.cancelled() => false,
                    };
                    if !sent {
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
                () = replaced.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
                event = woken(wakes.receiver(), &mut everyone) => {
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

/// Resolves at the next wake-up of a collector's watcher (or of everyone), with the event it
/// announces.
async fn woken(
    mine: &mut broadcast::Receiver<Arc<str>>,
    everyone: &mut tokio::sync::watch::Receiver<u64>,
) -> Option<Arc<str>> {
    tokio::select! {
        event = mine.recv() => match event {
            Ok(event) => Some(event),
            // Missed wake-ups: read the history.
            Err(broadcast::error::RecvError::Lagged(_)) => None,
            Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
        },
        changed = everyone.changed() => {
            if changed.is_err() {
                std::future::pending::<()>().await;
            }
            None
        }
    }
}

/// How the hub wakes watchers.
struct Wakes {
    watchers: Arc<Watchers>,
    everyone: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Wakes {
    fn everyone(&self) {
        self.everyone.send_modify(|generation| *generation += 1);
    }
}

/// Consumes `N.flags` on an exclusive queue of this process, waking the watchers of each
/// event's collector; starts over on each new connection.
async fn listen(
    broker: Broker,
    exchange: String,
    wake: Wakes,
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
    wake: &Wakes,
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
    wake.everyone();
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
                        wake.watchers.wake(user_id, event.into());
                    }
                    // Read the history anyway: it is the truth.
                    (Some(_), Err(_)) => wake.everyone(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use broadcast::error::TryRecvError;

    #[test]
    fn an_event_wakes_only_its_collectors_watchers() {
        let watchers = Arc::new(Watchers::new(8));
        let mut first = watchers.subscribe("u-a");
        let mut second = watchers.subscribe("u-a");
        let mut other = watchers.subscribe("u-b");
        watchers.wake("u-a", Arc::from("event 1"));
        watchers.wake("u-nobody", Arc::from("event 2"));
        assert_eq!(first.receiver().try_recv().as_deref(), Ok("event 1"));
        assert_eq!(second.receiver().try_recv().as_deref(), Ok("event 1"));
        assert_eq!(other.receiver().try_recv(), Err(TryRecvError::Empty));
        assert_eq!(first.receiver().try_recv(), Err(TryRecvError::Empty));
        assert_eq!(watchers.collectors(), 2, "nobody's event opens no channel");
    }

    #[test]
    fn the_last_watcher_of_a_collector_removes_its_channel() {
        let watchers = Arc::new(Watchers::new(8));
        let first = watchers.subscribe("u-a");
        let second = watchers.subscribe("u-a");
        let other = watchers.subscribe("u-b");
        assert_eq!(watchers.collectors(), 2);
        drop(first);
        assert_eq!(watchers.collectors(), 2, "u-a still has a watcher");
        let mut again = watchers.subscribe("u-a");
        drop(second);
        watchers.wake("u-a", Arc::from("event"));
        assert_eq!(again.receiver().try_recv().as_deref(), Ok("event"));
        drop(again);
        drop(other);
        assert_eq!(watchers.collectors(), 0);
    }

    #[test]
    fn a_collectors_stream_beyond_its_cap_ends_its_oldest() {
        let watchers = Arc::new(Watchers::new(2));
        let ended = |subscription: &Subscription| subscription.replaced.is_cancelled();
        let first = watchers.subscribe("u-a");
        let second = watchers.subscribe("u-a");
        let other = watchers.subscribe("u-b");
        assert!(!ended(&first) && !ended(&second));
        let third = watchers.subscribe("u-a");
        assert!(ended(&first), "the oldest of u-a's three");
        assert!(!ended(&second) && !ended(&third) && !ended(&other));
        // The replaced one goes when its stream ends; the next newcomer replaces the oldest
        // left, and a stream that closed by itself makes room without replacing anyone.
        drop(first);
        let fourth = watchers.subscribe("u-a");
        assert!(ended(&second));
        drop((second, third));
        let fifth = watchers.subscribe("u-a");
        assert!(!ended(&fourth) && !ended(&fifth) && !ended(&other));
        drop((fourth, fifth, other));
        assert_eq!(watchers.collectors(), 0);
    }

    #[tokio::test]
    async fn a_watcher_behind_on_its_wake_ups_or_told_everyone_reads_the_history() {
        let watchers = Arc::new(Watchers::new(8));
        let everyone = tokio::sync::watch::Sender::new(0_u64);
        let mut all = everyone.subscribe();
        let mut mine = watchers.subscribe("u-a");
        watchers.wake("u-a", Arc::from("event"));
        assert_eq!(
            woken(mine.receiver(), &mut all).await.as_deref(),
            Some("event")
        );
        for n in 0..=WAKE_CAPACITY {
            watchers.wake("u-a", Arc::from(format!("event {n}")));
        }
        assert_eq!(woken(mine.receiver(), &mut all).await, None, "lagged");

        let mut quiet = watchers.subscribe("u-b");
        everyone.send_modify(|generation| *generation += 1);
        let woke = tokio::time::timeout(Duration::from_secs(5), woken(quiet.receiver(), &mut all))
            .await
            .expect("the call to everyone wakes every watcher");
        assert_eq!(woke, None, "it names no event");
    }

    #[test]
    fn an_update_in_a_watchers_channel_is_small() {
        // tokio's channels allocate their slots 32 at a time, one block per open stream.
        assert!(
            std::mem::size_of::<Update>() <= 32,
            "{}",
            std::mem::size_of::<Update>()
        );
    }
}
