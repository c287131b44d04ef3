//! ingest's integration tests, in one binary, against the real RabbitMQ. Each test runs its own
//! ingest in its own namespace, so they run in parallel.

#![allow(clippy::unwrap_used)]

mod auth;
mod batch;
mod envelope;
mod errors;
mod forms;
mod helpers;
mod openapi;
mod outage;
mod seed;
mod shutdown;
mod topology;
