//! ingest's integration tests, in one binary, against the real RabbitMQ and a database of their
//! own on `ENGINE` (ingest reads and writes forms, and reads responses). Each test runs its own
//! ingest in its own namespace, so they run in parallel.

#![allow(clippy::unwrap_used)]

/// The engine this binary runs on: PostgreSQL as `api`, MySQL/MariaDB as `api_mysql`,
/// which compiles these same sources (`tests/api_mysql/main.rs`).
const ENGINE: collect_testkit::Engine =
    collect_testkit::Engine::of_test_binary(env!("CARGO_CRATE_NAME"));

mod auth;
mod batch;
mod budget;
mod envelope;
mod errors;
mod forms;
mod helpers;
mod linger;
mod openapi;
mod outage;
mod seed;
mod shutdown;
mod streams;
mod topology;
