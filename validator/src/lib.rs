//! `validator`: consumes `N.validator`, checks each response against its form's rules, stores
//! it, and publishes the stored row to `N.saved` and `flagged` / `cleared` events to `N.flags`;
//! it acks only after all of that is committed and confirmed. Each revision it writes is queued
//! for its sheet in the transaction that stores it (sheets-sync reads that outbox).

pub mod retired;
pub mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use collect_shared::amqp::{
    Batching, Broker, BrokerSettings, PublishSettings, Publisher, Topology,
};
use collect_shared::config::CommonConfig;
use collect_shared::rules::CompiledForm;
use collect_shared::server::{self, Bound, Service};
use collect_shared::store::{FormCache, StoreSettings};
use collect_shared::telemetry::{Readiness, ops_router, track_http};
use tokio_util::sync::CancellationToken;

/// How often a cached form is checked against the database.
pub const FORM_CACHE_TTL: Duration = Duration::from_secs(2);

/// Checks responses against their form's rules and stores them.
#[derive(Debug, Clone, Parser)]
#[command(name = "validator", version, about, args_override_self = true)]
pub struct ValidatorConfig {
    #[command(flatten)]
    pub common: CommonConfig,

    /// Address of the health and metrics routes.
    #[arg(long, env = "VALIDATOR_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,

    /// Deliveries in hand at once (at least 1: AMQP's prefetch 0 would mean unlimited). A
    /// delivery from ingest may carry up to `COLLECT_PUBLISH_GATHER_MAX` responses, so this
    /// bounds the memory: 60 × 100 responses at most.
    #[arg(long, env = "VALIDATOR_PREFETCH", default_value_t = 60, value_parser = clap::value_parser!(u16).range(1..))]
    pub prefetch: u16,

    /// Deliveries stored in one transaction at most: those ready together, and those that
    /// arrive within `VALIDATOR_LINGER_MS` of the first. `VALIDATOR_PREFETCH / VALIDATOR_BATCH`
    /// batches are processed at once.
    #[arg(long, env = "VALIDATOR_BATCH", default_value_t = 30, value_parser = clap::value_parser!(u16).range(1..))]
    pub batch: u16,

    /// How long a batch may wait for more deliveries after its first, in milliseconds (0:
    /// never waits). A steady, moderate flow then shares transactions and acks instead of
    /// committing one or two responses at a time.
    #[arg(long, env = "VALIDATOR_LINGER_MS", default_value_t = 20)]
    pub linger_ms: u64,

    /// Most stored rows published together in one `N.saved` message: the rows of one form
    /// stored in one transaction, as a JSON array (1: one message per row, each the row
    /// itself, as the spec has it). The broker's work is per message.
    #[arg(long, env = "VALIDATOR_SAVED_GATHER_MAX", default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..))]
    pub saved_gather_max: u16,

    /// Without a command, the validator runs as a service.
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Look at or replay the dead letters in `N.dead`.
    DeadLetters {
        #[command(subcommand)]
        action: DeadLetterAction,
    },
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum DeadLetterAction {
    /// Print dead letters as JSON lines (they stay in `N.dead`).
    List {
        #[arg(long, default_value_t = 100)]
        limit: u16,
    },
    /// Send dead letters back where they came from, after fixing what made them fail.
    Replay {
        #[arg(long, default_value_t = 1000)]
        limit: u16,
    },
}

/// The validator, bound to its port, its database ready.
pub type Application = collect_shared::server::Application<ValidatorConfig>;

impl Service for ValidatorConfig {
    const LISTEN_VARIABLE: &'static str = "VALIDATOR_LISTEN";

    fn listen(&self) -> SocketAddr {
        self.listen
    }

    fn store_settings(&self) -> StoreSettings {
        self.common.store_settings()
    }

    /// Consumes and serves health routes until `shutdown`; then finishes in-flight deliveries.
    async fn run(bound: Bound<Self>, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Bound {
            listener,
            config,
            store,
        } = bound;
        let topology = Topology::new(config.common.namespace.clone());
        let broker = Broker::start(BrokerSettings::new(
            config.common.amqp_url.clone(),
            "validator",
            topology.clone(),
        ));
        let publisher = Publisher::new(
            broker.clone(),
            PublishSettings::default(),
            "collect-validator",
        );
        let retiring = tokio::spawn(
            retired::Retired {
                broker: broker.clone(),
                store: store.clone(),
                publisher: publisher.clone(),
                topology: topology.clone(),
                shutdown: shutdown.clone(),
            }
            .run(),
        );
        let worker = Arc::new(worker::Worker {
            forms: FormCache::new(
                store.clone(),
                FORM_CACHE_TTL,
                CompiledForm::compile_for_cache,
            ),
            store: store.clone(),
            publisher,
            topology,
            shutdown: shutdown.clone(),
            saved_gather_max: usize::from(config.saved_gather_max),
        });
        let consuming = tokio::spawn(worker::run(
            worker,
            broker.clone(),
            Batching {
                prefetch: config.prefetch,
                batch: usize::from(config.batch),
                linger: Duration::from_millis(config.linger_ms),
            },
        ));

        let readiness = Readiness::new()
            .with_check("broker", broker.readiness_check())
            .with_check("database", store.readiness_check());
        let router = ops_router(readiness).layer(axum::middleware::from_fn(track_http));
        server::serve(listener, router, shutdown, Duration::from_secs(5)).await?;
        if tokio::time::timeout(Duration::from_secs(8), consuming)
            .await
            .is_err()
        {
            tracing::warn!(
                "in-flight deliveries did not finish within 8 s; they will be redelivered"
            );
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), retiring).await;
        broker.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

pub async fn run(config: ValidatorConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    Application::run(config, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefetch_zero_is_refused_since_amqp_reads_it_as_unlimited() {
        let parse = |prefetch: &str| {
            ValidatorConfig::try_parse_from(["validator", "--prefetch", prefetch])
                .map(|config| config.prefetch)
                .map_err(|error| error.to_string())
        };
        assert_eq!(parse("1"), Ok(1));
        let refused = parse("0").expect_err("prefetch 0 is refused");
        assert!(refused.contains("--prefetch"), "{refused}");
    }
}
