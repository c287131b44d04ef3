//! Logs, metrics, and the `/healthz` `/readyz` `/metrics` routes every service mounts.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Serialize;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Log output: human-readable `text` or one JSON object per line (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the global tracing subscriber: `RUST_LOG` filters (default `info`), `LOG_FORMAT`
/// picks text or one JSON object per line. Logs go to stderr. Calling it twice is harmless.
pub fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    // Already installed (several apps in one test process): keep the first.
    let _ = result;
}

/// Counts one thing (or `amount` of something: bytes) in flight on a gauge for as long as it
/// lives: the gauge goes up when it starts and down when it is dropped, whichever way the work
/// ends. The caller names the gauge once, with the `metrics` macro and a literal name
/// (`deploy/check` reads the names from the sources).
#[must_use = "the gauge goes down when the guard is dropped"]
pub struct InFlight(metrics::Gauge, f64);

impl InFlight {
    pub fn start(gauge: metrics::Gauge) -> Self {
        Self::amount(gauge, 1.0)
    }

    pub fn amount(gauge: metrics::Gauge, amount: f64) -> Self {
        gauge.increment(amount);
        Self(gauge, amount)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(self.1);
    }
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Latencies here are milliseconds (a confirm, a request) up to a few seconds.
            const SECONDS: &[f64] = &[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            match builder.install_recorder() {
                Ok(handle) => {
                    // Histogram samples pile up until upkeep folds them into the buckets: left to
                    // scrapes alone, a service nobody scrapes grew by ~30 bytes a request (found
                    // by the benchmark's RSS figure).
                    let upkeep = handle.clone();
                    let _ = std::thread::Builder::new()
                        .name("metrics-upkeep".into())
                        .spawn(move || {
                            loop {
                                std::thread::sleep(std::time::Duration::from_secs(5));
                                upkeep.run_upkeep();
                            }
                        });
                    handle
                }
                // Another recorder is installed already: render an empty page rather than die.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            }
        })
        .clone()
}

/// One named readiness check: `Ok` when the dependency answers, `Err(reason)` otherwise.
pub type Check = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// What `/readyz` asks before it says ready.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<(&'static str, Check)>,
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_check(mut self, name: &'static str, check: Check) -> Self {
        self.checks.push((name, check));
        self
    }

    /// Runs every check; `true` when all pass, with each check's outcome by name.
    pub async fn evaluate(&self) -> (bool, serde_json::Map<String, serde_json::Value>) {
        let mut ready = true;
        let mut outcomes = serde_json::Map::new();
        for (name, check) in &self.checks {
            let outcome = check().await;
            metrics::gauge!("collect_dependency_up", "dependency" => *name).set(match outcome {
                Ok(()) => 1.0,
                Err(_) => 0.0,
            });
            match outcome {
                Ok(()) => outcomes.insert((*name).into(), "ok".into()),
                Err(reason) => {
                    ready = false;
                    outcomes.insert((*name).into(), reason.into())
                }
            };
        }
        (ready, outcomes)
    }
}

/// `/healthz` (the process answers), `/readyz` (every check passes) and `/metrics`.
pub fn ops_router(readiness: Readiness) -> Router {
    ops_api_router(readiness).split_for_parts().0
}

/// [`ops_router`] with its OpenAPI description, for a service that publishes one (ingest).
pub fn ops_api_router(readiness: Readiness) -> OpenApiRouter {
    // Install the recorder now: metrics recorded before it exists are lost.
    metrics_handle();
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .with_state(readiness)
}

/// What `/healthz` answers.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HealthReport {
    pub status: HealthStatus,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Ok,
}

/// What `/readyz` answers: the outcome of every check.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReadinessReport {
    pub status: ReadinessStatus,
    /// Each dependency (`broker`, `database`, ...): `ok`, or why it is not.
    pub checks: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadinessStatus {
    Ready,
    NotReady,
}

/// The process is alive (a liveness probe).
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "The process runs", body = HealthReport))
)]
pub async fn healthz() -> axum::Json<HealthReport> {
    axum::Json(HealthReport {
        status: HealthStatus::Ok,
    })
}

/// Whether the service can do its work: every dependency answers (a readiness probe).
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Every check passes", body = ReadinessReport),
        (status = 503, description = "Some check fails; `checks` says why", body = ReadinessReport)
    )
)]
pub async fn readyz(State(readiness): State<Readiness>) -> Response {
    let (ready, checks) = readiness.evaluate().await;
    let (status, report) = if ready {
        (StatusCode::OK, ReadinessStatus::Ready)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, ReadinessStatus::NotReady)
    };
    let checks = checks
        .into_iter()
        .map(|(name, outcome)| match outcome {
            serde_json::Value::String(text) => (name, text),
            other => (name, other.to_string()),
        })
        .collect();
    let body = ReadinessReport {
        status: report,
        checks,
    };
    (status, axum::Json(body)).into_response()
}

/// Prometheus text format (see the README's metrics table).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain; version=0.0.4"))
)]
pub async fn metrics() -> Response {
    let handle = metrics_handle();
    handle.run_upkeep();
    (
        [("content-type", "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}

/// Middleware counting requests by route and status, with their duration.
pub async fn track_http(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("collect_http_requests_total", "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!("collect_http_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}
