//! `ingest`: the HTTP API. It checks a response's shape, publishes it to `N.responses`, and
//! answers `202` only once RabbitMQ confirmed the persistent message.

mod auth;
mod body;
mod budget;
pub mod config;
mod error;
mod gather;
mod openapi;
mod routes;
mod seed;
mod watch;
pub mod webhooks;

pub use gather::MAX_MESSAGE_BYTES;

use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Duration;

use axum::Router;
use axum::middleware::{from_fn, from_fn_with_state};
use collect_shared::amqp::{Broker, BrokerSettings, Publisher, Topology};
use collect_shared::config::redact_url;
use collect_shared::server;
use collect_shared::store::{FormCache, Store};
use collect_shared::telemetry::{Readiness, ops_api_router, track_http};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use config::{AuthMode, IngestConfig};

/// How often a cached form is checked against the database: a `PUT` is seen within this.
const FORM_CACHE_TTL: Duration = Duration::from_secs(2);

/// A request, body included, that takes longer than this gets `408`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Database connections that background work (flag streams, the webhook dispatcher) may hold
/// at once: half the pool, so that requests always find a connection.
#[derive(Clone)]
pub struct Background(Arc<tokio::sync::Semaphore>);

impl Background {
    fn new(pool_size: u32) -> Self {
        Self(Arc::new(tokio::sync::Semaphore::new(
            (pool_size as usize / 2).max(1),
        )))
    }

    /// A permit to use one connection; never fails (the semaphore is never closed).
    pub async fn acquire(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.0.acquire().await.ok()
    }
}

/// The ingest service, bound to its port but not yet serving.
pub struct Application {
    listener: TcpListener,
    router: Router,
    broker: Broker,
    watch: watch::FlagWatch,
    dispatcher: webhooks::Dispatcher,
    shutdown_timeout: Duration,
    connections: server::Connections,
}

impl Application {
    /// Binds the listener and starts the broker connection (without waiting for the broker:
    /// until it is reachable, `/readyz` says why and submissions get `503`).
    pub async fn build(config: IngestConfig) -> anyhow::Result<Self> {
        Self::build_until(config, &CancellationToken::new()).await
    }

    /// Like [`Application::build`]; waiting for PostgreSQL stops when `shutdown` fires.
    pub async fn build_until(
        config: IngestConfig,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Self> {
        // The keys and their roles, from COLLECT_API_KEYS and COLLECT_API_KEYS_FILE: a
        // malformed entry, or no key at all, stops the start.
        let keys = match config.auth {
            AuthMode::On => auth::ApiKeys::load(&config.api_keys, config.api_keys_file.as_deref())?,
            AuthMode::Off => auth::ApiKeys::default(),
        };
        let listener = server::bind(config.listen, "INGEST_LISTEN").await?;

        let store = Store::connect_with_retry(&config.common.store_settings(), shutdown).await?;
        let topology = Topology::new(config.common.namespace.clone());
        tracing::info!(
            broker = %redact_url(&config.common.amqp_url),
            namespace = %config.common.namespace,
            "starting"
        );
        let broker = Broker::start(BrokerSettings::new(
            config.common.amqp_url.clone(),
            "ingest",
            topology.clone(),
        ));
        let publisher = Publisher::new(broker.clone(), config.publish_settings(), "collect-ingest");
        let background = Background::new(config.common.database_max_connections);
        let watch = watch::FlagWatch::start(
            broker.clone(),
            &topology,
            store.clone(),
            background.clone(),
            Duration::from_millis(config.flags_watch_poll_ms.max(10)),
            watch::StreamLimits {
                total: config.flags_watch_max_streams as usize,
                per_collector: config.flags_watch_max_streams_per_collector as usize,
            },
        );
        let dispatcher = webhooks::start(
            broker.clone(),
            publisher.clone(),
            topology.clone(),
            store.clone(),
            background,
            config.webhook_settings(),
        )?;
        let state = routes::AppState::new(routes::Shared {
            gatherer: gather::Gatherer::start(
                publisher,
                topology.responses_exchange().into(),
                config.gather_settings(),
            ),
            forms: Arc::new(FormCache::definitions(store.clone(), FORM_CACHE_TTL)),
            store: store.clone(),
            max_body_bytes: config.max_body_bytes,
            batches: Arc::new(tokio::sync::Semaphore::new(routes::BATCHES_AT_ONCE)),
            watch: watch.clone(),
            webhooks_allow_http: config.webhooks_allow_http,
        });

        // Each `routes!` registers a path's handlers and their OpenAPI description together.
        let mut api = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
            .routes(routes!(routes::collect))
            .routes(routes!(routes::put_form, routes::get_form))
            .routes(routes!(routes::export_sheet))
            .routes(routes!(routes::get_sheet))
            .routes(routes!(routes::google_sheet))
            .routes(routes!(routes::get_response))
            .routes(routes!(routes::get_form_response))
            .routes(routes!(routes::collector_flags))
            .routes(routes!(routes::flag_history))
            .routes(routes!(routes::watch_flags))
            .routes(routes!(routes::list_webhooks))
            .routes(routes!(
                routes::put_webhook,
                routes::get_webhook,
                routes::delete_webhook
            ))
            .routes(routes!(routes::list_deliveries))
            .routes(routes!(routes::redeliver))
            .routes(routes!(routes::submit))
            .routes(routes!(routes::submit_batch))
            .with_state(state);
        // Which roles may call each route, read from the `security` of its OpenAPI
        // description: a route without one stops the build (also with COLLECT_AUTH=off).
        let roles = auth::RouteRoles::from_openapi(api.get_openapi())?;
        // Inside the authorisation: a request without a key is refused before it waits.
        api = api.route_layer(from_fn_with_state(
            budget::BodyBudget::new(config.body_budget_bytes, config.max_body_bytes),
            budget::hold,
        ));
        if config.auth == AuthMode::On {
            api = api.route_layer(from_fn_with_state(
                auth::Auth::new(keys, roles),
                auth::authorize,
            ));
        } else {
            tracing::warn!("COLLECT_AUTH=off: the API accepts requests without an API key");
            api = api.route_layer(from_fn(auth::allow_all));
        }
        let readiness = Readiness::new()
            .with_check("broker", broker.readiness_check())
            .with_check("database", store.readiness_check());
        let document = openapi::Document::default();
        let public = OpenApiRouter::new()
            .routes(routes!(openapi::openapi_json))
            .with_state(document.clone())
            .merge(ops_api_router(readiness));
        let (router, description) = api.merge(public).split_for_parts();
        let text = description
            .to_json()
            .map_err(|error| anyhow::anyhow!("cannot render the OpenAPI document: {error}"))?;
        let _ = document.set(text);
        let router: Router = router
            .fallback(routes::not_found)
            .method_not_allowed_fallback(routes::method_not_allowed)
            .layer(from_fn(track_http))
            .layer(TraceLayer::new_for_http())
            .layer(TimeoutLayer::with_status_code(
                axum::http::StatusCode::REQUEST_TIMEOUT,
                REQUEST_TIMEOUT,
            ));

        Ok(Self {
            listener,
            router,
            broker,
            watch,
            dispatcher,
            shutdown_timeout: Duration::from_millis(config.shutdown_timeout_ms),
            connections: config.connections(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// Serves until `shutdown` is cancelled, then stops accepting connections, lets in-flight
    /// requests finish (with their confirms) for up to the shutdown timeout, and closes the
    /// broker connection.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        // Flag streams never end by themselves: end them when shutdown begins, so that the
        // graceful shutdown does not wait for them.
        let watch = self.watch.clone();
        let stopping = shutdown.clone();
        tokio::spawn(async move {
            stopping.cancelled().await;
            watch.stop();
        });
        let served = server::serve_with(
            self.listener,
            self.router,
            shutdown,
            self.shutdown_timeout,
            self.connections,
        )
        .await;
        self.watch.stop();
        // Events being recorded are acked, attempts in flight recorded, before the broker
        // and the store go.
        self.dispatcher.stop().await;
        served?;
        self.broker.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Builds and runs the service until `shutdown` is cancelled.
pub async fn run(config: IngestConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    Application::build_until(config, &shutdown)
        .await?
        .run_until_stopped(shutdown)
        .await
}
