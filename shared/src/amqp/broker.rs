//! One supervised connection to RabbitMQ.
//!
//! When the connection is lost, the supervisor here builds a new one from scratch, forever,
//! with jittered backoff (from 100 ms), declares the topology again and consumers start over
//! on it; deliveries unacked on the old one come again. lapin's own auto-recovery is off (see
//! `connect`). Nothing waits on the broker without a deadline (lapin has known hangs on
//! connect and publish).

use std::sync::Arc;
use std::time::Duration;

use crate::retry::Policy;
use futures::StreamExt;
use lapin::options::ConfirmSelectOptions;
use lapin::{Channel, Connection, ConnectionProperties, Event};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Topology;
use crate::config::redact_url;
use crate::telemetry::Check;

/// How to reach the broker and what to declare on it.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    pub url: String,
    /// Shown in the RabbitMQ management UI.
    pub connection_name: String,
    pub topology: Topology,
    /// Deadline for connecting, declaring the topology and opening the channel.
    pub connect_timeout: Duration,
}

impl BrokerSettings {
    pub fn new(url: impl Into<String>, service: &str, topology: Topology) -> Self {
        Self {
            url: url.into(),
            connection_name: format!("collect-{service}"),
            topology,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// What the broker looks like from here right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerStatus {
    Up,
    /// Connected, but RabbitMQ blocked publishing (a memory or disk alarm).
    Blocked,
    Down(String),
}

#[derive(Clone)]
enum State {
    Connecting,
    Up {
        connection: Arc<Connection>,
        /// A confirm-mode channel for publishing, shared by every publish.
        channel: Channel,
    },
    Down(String),
    Closed,
}

/// A handle on the supervised connection; cheap to clone.
#[derive(Clone)]
pub struct Broker {
    state: watch::Receiver<State>,
    close: CancellationToken,
    supervisor: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl Broker {
    /// Starts the supervisor. It does not wait for the broker: until it is reachable,
    /// [`Broker::status`] says why not and publishing fails fast.
    pub fn start(settings: BrokerSettings) -> Self {
        let (sender, state) = watch::channel(State::Connecting);
        let close = CancellationToken::new();
        let supervisor = tokio::spawn(supervise(settings, sender, close.clone()));
        Self {
            state,
            close,
            supervisor: Arc::new(Mutex::new(Some(supervisor))),
        }
    }

    pub fn status(&self) -> BrokerStatus {
        match &*self.state.borrow() {
            State::Connecting => BrokerStatus::Down("connecting".into()),
            State::Down(reason) => BrokerStatus::Down(reason.clone()),
            State::Closed => BrokerStatus::Down("closed".into()),
            State::Up {
                connection,
                channel,
            } => {
                let connection_status = connection.status();
                if !connection_status.connected() {
                    BrokerStatus::Down("connection lost; reconnecting".into())
                } else if connection_status.blocked() {
                    BrokerStatus::Blocked
                } else if !channel.status().connected() {
                    BrokerStatus::Down("channel recovering".into())
                } else {
                    BrokerStatus::Up
                }
            }
        }
    }

    /// The confirm-mode publishing channel, if publishing can work right now.
    pub fn publish_channel(&self) -> Result<Channel, String> {
        match self.status() {
            BrokerStatus::Up => match &*self.state.borrow() {
                State::Up { channel, .. } => Ok(channel.clone()),
                _ => Err("connection lost; reconnecting".into()),
            },
            BrokerStatus::Blocked => {
                Err("the broker is blocking publishers (resource alarm)".into())
            }
            BrokerStatus::Down(reason) => Err(reason),
        }
    }

    /// Waits until a connection is up; `None` once the broker handle is closed.
    pub async fn connection(&self) -> Option<Arc<Connection>> {
        let mut state = self.state.clone();
        let state = state
            .wait_for(|s| matches!(s, State::Up { .. } | State::Closed))
            .await
            .ok()?;
        match &*state {
            State::Up { connection, .. } => Some(connection.clone()),
            _ => None,
        }
    }

    /// Resolves once `connection` is no longer the broker's current one (replaced after a
    /// failed recovery, or closed): a consumer on it should start over.
    pub async fn replaced(&self, connection: &Arc<Connection>) {
        let mut state = self.state.clone();
        let _ = state
            .wait_for(|s| match s {
                State::Up {
                    connection: current,
                    ..
                } => !Arc::ptr_eq(current, connection),
                State::Connecting | State::Down(_) | State::Closed => true,
            })
            .await;
    }

    /// Closes the connection cleanly and stops the supervisor. Call it after the work that
    /// needs the broker (in-flight publishes, acks) has drained.
    pub async fn close(&self) {
        self.close.cancel();
        let handle = self.supervisor.lock().await.take();
        if let Some(handle) = handle {
            let _ = handle.await;
        }
    }

    /// A `/readyz` check: ok while publishing can work.
    pub fn readiness_check(&self) -> Check {
        let broker = self.clone();
        Arc::new(move || {
            let status = broker.status();
            Box::pin(async move {
                match status {
                    BrokerStatus::Up => Ok(()),
                    BrokerStatus::Blocked => Err("blocked by a resource alarm".into()),
                    BrokerStatus::Down(reason) => Err(reason),
                }
            })
        })
    }
}

async fn supervise(
    settings: BrokerSettings,
    state: watch::Sender<State>,
    close: CancellationToken,
) {
    let url = redact_url(&settings.url);
    let mut delays = Policy::BROKER_RECONNECT.delays();
    loop {
        let attempt = tokio::select! {
            _ = close.cancelled() => break,
            attempt = tokio::time::timeout(settings.connect_timeout, connect(&settings)) => attempt,
        };
        match attempt {
            Ok(Ok((connection, channel))) => {
                info!(broker = %url, "connected to RabbitMQ; topology declared");
                delays = Policy::BROKER_RECONNECT.delays();
                state.send_replace(State::Up {
                    connection: connection.clone(),
                    channel: channel.clone(),
                });
                match watch_connection(connection, channel, &settings.topology, &state, &close)
                    .await
                {
                    Ending::Closed => break,
                    Ending::Lost(reason) => {
                        warn!(broker = %url, %reason, "RabbitMQ connection lost; reconnecting");
                        state.send_replace(State::Down(reason));
                    }
                }
            }
            Ok(Err(reason)) => {
                warn!(broker = %url, %reason, "cannot use RabbitMQ; will retry");
                state.send_replace(State::Down(reason));
            }
            Err(_) => {
                let reason = format!(
                    "no answer from RabbitMQ within {:?}",
                    settings.connect_timeout
                );
                warn!(broker = %url, %reason, "cannot use RabbitMQ; will retry");
                state.send_replace(State::Down(reason));
            }
        }
        let delay = delays.next_delay();
        tokio::select! {
            _ = close.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    state.send_replace(State::Closed);
}

/// The largest AMQP frame this client takes and sends, unless `AMQP_URL` says
/// (`?frame_max=`). lapin keeps a send and a receive buffer of 32 frames for each connection:
/// 4 MB each at RabbitMQ's 128 KB, filled as messages stream through. At 32 KB, ingest's peak
/// RSS under wrk fell from 35 to 28 MB and the validator's from 46-47 to 40-43 MB, at the same
/// CPU (BENCHMARKS.md); a larger message simply goes in more frames.
const FRAME_MAX: u32 = 32 * 1024;

async fn connect(settings: &BrokerSettings) -> Result<(Arc<Connection>, Channel), String> {
    // No lapin auto-recovery: a recovered connection brings its consumers back on its own,
    // and one recovered after the supervisor had given up on it (recovery can hang part-way)
    // held deliveries nobody read. One owner of reconnection: the supervisor, which builds a
    // fresh connection, and the consumers start over on it (`Broker::replaced`).
    let properties = ConnectionProperties::default()
        .with_connection_name(settings.connection_name.clone().into());
    let mut uri: lapin::uri::AMQPUri = settings
        .url
        .parse()
        .map_err(|e| format!("cannot connect: {e}"))?;
    uri.query.frame_max = uri.query.frame_max.or(Some(FRAME_MAX));
    let connection = Connection::connect_uri(uri, properties)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    match open_publish_channel(&connection, &settings.topology).await {
        Ok(channel) => Ok((Arc::new(connection), channel)),
        Err(reason) => {
            // Do not leave a half-set-up connection (and its recovery) behind.
            let closing = connection.close(200, "setup failed".into());
            let _ = tokio::time::timeout(Duration::from_secs(2), closing).await;
            Err(reason)
        }
    }
}

async fn open_publish_channel(
    connection: &Connection,
    topology: &Topology,
) -> Result<Channel, String> {
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| format!("cannot open a channel: {e}"))?;
    topology
        .declare(&channel)
        .await
        .map_err(|e| e.to_string())?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| format!("cannot enable publisher confirms: {e}"))?;
    Ok(channel)
}

enum Ending {
    Closed,
    Lost(String),
}

/// Gives up on a connection for good: closes it (if it still can be) so that nothing of it
/// lives on beside its replacement.
async fn lost(connection: &Connection, reason: &str) -> Ending {
    let closing = connection.close(320, "replaced".into());
    let _ = tokio::time::timeout(Duration::from_secs(1), closing).await;
    Ending::Lost(reason.into())
}

/// Follows a live connection until it is lost for good or the handle is closed. Replaces the
/// publishing channel if the broker closed it (a channel-level error) while the connection
/// lives on.
async fn watch_connection(
    connection: Arc<Connection>,
    mut channel: Channel,
    topology: &Topology,
    state: &watch::Sender<State>,
    close: &CancellationToken,
) -> Ending {
    let mut events = connection.events_listener();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = close.cancelled() => {
                let closing = connection.close(200, "shutting down".into());
                if tokio::time::timeout(Duration::from_secs(2), closing).await.is_err() {
                    warn!("RabbitMQ did not acknowledge the close within 2 s");
                }
                return Ending::Closed;
            }
            event = events.next() => match event {
                Some(Event::Connected) => info!("RabbitMQ connection established"),
                Some(Event::ConnectionBlocked(reason)) => warn!(%reason, "RabbitMQ blocked publishing"),
                Some(Event::ConnectionUnblocked) => info!("RabbitMQ unblocked publishing"),
                // A channel's own error (a passive declare of a missing queue, say) is the
                // caller's to report: only the connection's are worth a warning here.
                Some(Event::Error(error)) if is_channel_error(&error) => {
                    debug!(%error, "RabbitMQ closed a channel");
                }
                Some(Event::Error(error)) => warn!(%error, "RabbitMQ connection error"),
                Some(_) => {}
                None => return lost(&connection, "connection dropped").await,
            },
            _ = tick.tick() => {}
        }
        let status = connection.status();
        if !status.connected() {
            return lost(&connection, "connection lost").await;
        }
        let channel_status = channel.status();
        if !channel_status.connected() && !channel_status.reconnecting() {
            let topology_channel = tokio::time::timeout(
                Duration::from_secs(10),
                open_publish_channel(&connection, topology),
            )
            .await;
            match topology_channel {
                Ok(Ok(fresh)) => {
                    info!("publishing channel reopened");
                    channel = fresh;
                    state.send_replace(State::Up {
                        connection: connection.clone(),
                        channel: channel.clone(),
                    });
                }
                Ok(Err(reason)) => warn!(%reason, "cannot reopen the publishing channel"),
                Err(_) => warn!("reopening the publishing channel timed out"),
            }
        }
    }
}

/// Whether the broker closed only a channel (a soft AMQP error), not the connection.
fn is_channel_error(error: &lapin::Error) -> bool {
    matches!(
        error.kind(),
        lapin::ErrorKind::ProtocolError(amqp)
            if matches!(amqp.kind(), lapin::protocol::AMQPErrorKind::Soft(_))
    )
}
