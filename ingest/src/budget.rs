//! A budget of request-body bytes in flight: each request with a body takes its declared
//! length (or `COLLECT_MAX_BODY_BYTES` when it declares none) from the budget before its body
//! is read, and gives it back once answered. A request that finds the budget spent waits its
//! turn (first come, first served) within the request timeout.
//!
//! Why: a request holds its body several times over while it is handled (the bytes, the parsed
//! JSON, the message it is published in, until the broker confirms), so ingest's memory grew
//! with connections × body size: 64 connections posting responses of 1 MB took it to 320 MB.
//! Small bodies never wait: the default, 4 MiB, is ~6,000 of the seed's responses at once.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use collect_shared::telemetry::InFlight;
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// Request-body bytes in flight (see the [module](self)).
#[derive(Clone)]
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
    /// The whole budget: no request takes more (one larger than it goes alone).
    total: u32,
    max_body_bytes: usize,
}

impl BodyBudget {
    pub fn new(total_bytes: usize, max_body_bytes: usize) -> Self {
        // A semaphore counts in u32; a budget beyond 4 GiB is no budget.
        let total = u32::try_from(total_bytes.max(1)).unwrap_or(u32::MAX);
        Self {
            bytes: Arc::new(Semaphore::new(total as usize)),
            total,
            max_body_bytes,
        }
    }

    /// The bytes a request takes: its declared length, or the largest body when it declares
    /// none; nothing for a request without a body, or one refused unread (declared too large).
    fn wanted(&self, request: &Request) -> u32 {
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        let bytes = match declared {
            Some(length) if length > self.max_body_bytes as u64 => 0,
            Some(length) => length,
            None if matches!(
                *request.method(),
                Method::POST | Method::PUT | Method::PATCH
            ) =>
            {
                self.max_body_bytes as u64
            }
            None => 0,
        };
        u32::try_from(bytes).unwrap_or(u32::MAX).min(self.total)
    }
}

/// Holds the request's share of the [`BodyBudget`] while it is read and handled.
pub async fn hold(State(budget): State<BodyBudget>, request: Request, next: Next) -> Response {
    let wanted = budget.wanted(&request);
    if wanted == 0 {
        return next.run(request).await;
    }
    let taken = {
        let _waiting = InFlight::start(metrics::gauge!("collect_ingest_body_budget_waiting"));
        budget.bytes.acquire_many(wanted).await
    };
    let Ok(_taken) = taken else {
        return ApiError::unavailable("shutting down").into_response();
    };
    let _held = InFlight::amount(
        metrics::gauge!("collect_ingest_body_budget_bytes"),
        f64::from(wanted),
    );
    next.run(request).await
}
