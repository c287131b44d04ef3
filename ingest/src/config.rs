use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use collect_shared::amqp::PublishSettings;
use collect_shared::config::CommonConfig;

/// The HTTP front door of Collect: accepts responses and publishes them to RabbitMQ with
/// publisher confirms.
#[derive(Debug, Clone, Parser)]
#[command(name = "ingest", version, about, args_override_self = true)]
pub struct IngestConfig {
    #[command(flatten)]
    pub common: CommonConfig,

    /// Address the HTTP API listens on.
    #[arg(long, env = "INGEST_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Comma-separated API keys (bearer tokens), each `KEY` (an admin key), `admin:KEY`,
    /// `reader:KEY`, `collector:KEY` or `collector@USER_ID:KEY` (a collector key bound to one
    /// collector); blanks are ignored.
    #[arg(
        long,
        env = "COLLECT_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_keys: Vec<String>,

    /// A file of more API keys, read at start: one entry a line, in the syntax of
    /// `COLLECT_API_KEYS`; blank lines and lines starting with `#` are ignored.
    #[arg(long, env = "COLLECT_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,

    /// `off` runs without authentication (demos and tests only): every request may do
    /// everything.
    #[arg(long, env = "COLLECT_AUTH", value_enum, default_value_t = AuthMode::On)]
    pub auth: AuthMode,

    /// Largest request body accepted, in bytes; larger ones get 413.
    #[arg(long, env = "COLLECT_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Request-body bytes read and handled at once (each request counts its `Content-Length`,
    /// or `COLLECT_MAX_BODY_BYTES` without one); the others wait their turn. Bounds ingest's
    /// memory under large bodies; small ones never wait.
    #[arg(long, env = "COLLECT_BODY_BUDGET_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub body_budget_bytes: usize,

    /// How long a publish may wait for the broker's confirm before the client gets 503.
    #[arg(long, env = "COLLECT_PUBLISH_TIMEOUT_MS", default_value_t = 5000)]
    pub publish_timeout_ms: u64,

    /// Publishes awaiting their confirm at once.
    #[arg(long, env = "COLLECT_PUBLISH_WINDOW", default_value_t = 512)]
    pub publish_window: usize,

    /// Most responses ingest gathers into one message to `N.responses` (those that arrive
    /// while earlier publishes await their confirms); 1: one message per response.
    #[arg(long, env = "COLLECT_PUBLISH_GATHER_MAX", default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..))]
    pub publish_gather_max: u16,

    /// Gathered publishes awaiting their confirm at once: while all are in flight, arriving
    /// responses wait and go together in the next one. Fewer gather more (fewer messages for
    /// the broker) at the cost of a wait of up to one confirm.
    #[arg(long, env = "COLLECT_PUBLISH_GATHER_SLOTS", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub publish_gather_slots: u16,

    /// How long a gathered publish waits, once a slot is free, for more responses to go with
    /// the first (0: it goes at once).
    #[arg(long, env = "COLLECT_PUBLISH_LINGER_US", default_value_t = 250)]
    pub publish_linger_us: u64,

    /// How long a connection may go without a complete request head (before its first
    /// request, between requests, or sending a head slowly) before ingest closes it; 0: never.
    #[arg(long, env = "INGEST_IDLE_TIMEOUT_MS", default_value_t = 75_000)]
    pub idle_timeout_ms: u64,

    /// `TCP_USER_TIMEOUT` of every connection: data ingest sent that the client has not
    /// acknowledged for this long closes the connection (a client that vanished, holding a
    /// flag stream); 0: the kernel's default (~15 minutes of retransmissions).
    #[arg(long, env = "INGEST_TCP_USER_TIMEOUT_MS", default_value_t = 30_000)]
    pub tcp_user_timeout_ms: u64,

    /// On SIGTERM, how long in-flight requests may take to finish before the process exits.
    #[arg(long, env = "COLLECT_SHUTDOWN_TIMEOUT_MS", default_value_t = 9000)]
    pub shutdown_timeout_ms: u64,

    /// How often a `flags:watch` stream reads the flag history when no wake-up came from
    /// `N.flags` (the broker down, say): the most an event can be late by.
    #[arg(long, env = "FLAGS_WATCH_POLL_MS", default_value_t = 1000)]
    pub flags_watch_poll_ms: u64,

    /// `flags:watch` streams this process serves at once; the next is refused with `503
    /// too_many_streams` until one closes. Each holds some memory of its own (the connection,
    /// its task, its buffers), so this keeps many watching collectors from exhausting it.
    #[arg(long, env = "FLAGS_WATCH_MAX_STREAMS", default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..))]
    pub flags_watch_max_streams: u32,

    /// `flags:watch` streams of one collector at once; one more ends the collector's oldest
    /// (an app that vanished without closing its stream left it behind), so a reconnect is
    /// never refused for the collector's own stale streams, and one collector cannot take
    /// every stream of the process.
    #[arg(long, env = "FLAGS_WATCH_MAX_STREAMS_PER_COLLECTOR", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub flags_watch_max_streams_per_collector: u32,

    /// Attempts of one webhook delivery before it is dead.
    #[arg(long, env = "WEBHOOKS_MAX_ATTEMPTS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub webhooks_max_attempts: u32,

    /// The wait after a webhook delivery's first failed attempt; it doubles after each (with
    /// jitter) up to `WEBHOOKS_RETRY_MAX_MS`.
    #[arg(long, env = "WEBHOOKS_RETRY_MIN_MS", default_value_t = 5000)]
    pub webhooks_retry_min_ms: u64,

    #[arg(long, env = "WEBHOOKS_RETRY_MAX_MS", default_value_t = 3_600_000)]
    pub webhooks_retry_max_ms: u64,

    /// Deadline of one webhook attempt, connection included.
    #[arg(long, env = "WEBHOOKS_TIMEOUT_MS", default_value_t = 10_000)]
    pub webhooks_timeout_ms: u64,

    /// How long delivered webhook deliveries are kept (shown by the deliveries route).
    #[arg(long, env = "WEBHOOKS_RETENTION_HOURS", default_value_t = 168)]
    pub webhooks_retention_hours: u64,

    /// Accept `http://` webhook URLs (tests and local receivers only; otherwise `https://`).
    #[arg(long, env = "WEBHOOKS_ALLOW_HTTP", default_value_t = false, action = clap::ArgAction::Set)]
    pub webhooks_allow_http: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    On,
    Off,
}

impl IngestConfig {
    pub fn webhook_settings(&self) -> crate::webhooks::WebhookSettings {
        crate::webhooks::WebhookSettings {
            max_attempts: self.webhooks_max_attempts,
            retry_min: Duration::from_millis(self.webhooks_retry_min_ms.max(1)),
            retry_max: Duration::from_millis(
                self.webhooks_retry_max_ms.max(self.webhooks_retry_min_ms),
            ),
            timeout: Duration::from_millis(self.webhooks_timeout_ms.max(1)),
            retention: Duration::from_secs(self.webhooks_retention_hours.saturating_mul(3600)),
        }
    }

    pub fn gather_settings(&self) -> crate::gather::GatherSettings {
        crate::gather::GatherSettings {
            max_responses: usize::from(self.publish_gather_max),
            max_bytes: crate::gather::MAX_MESSAGE_BYTES,
            slots: usize::from(self.publish_gather_slots),
            linger: std::time::Duration::from_micros(self.publish_linger_us),
        }
    }

    pub fn connections(&self) -> collect_shared::server::Connections {
        let millis = |ms: u64| (ms > 0).then(|| Duration::from_millis(ms));
        collect_shared::server::Connections {
            idle_timeout: millis(self.idle_timeout_ms),
            tcp_user_timeout: millis(self.tcp_user_timeout_ms),
        }
    }

    pub fn publish_settings(&self) -> PublishSettings {
        PublishSettings {
            confirm_timeout: Duration::from_millis(self.publish_timeout_ms),
            window: self.publish_window,
        }
    }
}
