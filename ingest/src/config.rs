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

    /// How long a publish may wait for the broker's confirm before the client gets 503.
    #[arg(long, env = "COLLECT_PUBLISH_TIMEOUT_MS", default_value_t = 5000)]
    pub publish_timeout_ms: u64,

    /// Publishes awaiting their confirm at once.
    #[arg(long, env = "COLLECT_PUBLISH_WINDOW", default_value_t = 512)]
    pub publish_window: usize,

    /// On SIGTERM, how long in-flight requests may take to finish before the process exits.
    #[arg(long, env = "COLLECT_SHUTDOWN_TIMEOUT_MS", default_value_t = 9000)]
    pub shutdown_timeout_ms: u64,

    /// How often a `flags:watch` stream reads the flag history when no wake-up came from
    /// `N.flags` (the broker down, say): the most an event can be late by.
    #[arg(long, env = "FLAGS_WATCH_POLL_MS", default_value_t = 1000)]
    pub flags_watch_poll_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    On,
    Off,
}

impl IngestConfig {
    pub fn publish_settings(&self) -> PublishSettings {
        PublishSettings {
            confirm_timeout: Duration::from_millis(self.publish_timeout_ms),
            window: self.publish_window,
        }
    }
}
