//! The pipeline from ingest through the validator, in process, against the real RabbitMQ and
//! PostgreSQL or MySQL/MariaDB (`ENGINE`). Each test has its own namespace and database.

#![allow(clippy::unwrap_used)]

/// The engine this binary runs on: PostgreSQL as `pipeline`, MySQL/MariaDB as `pipeline_mysql`,
/// which compiles these same sources (`tests/pipeline_mysql/main.rs`).
const ENGINE: collect_testkit::Engine =
    collect_testkit::Engine::of_test_binary(env!("CARGO_CRATE_NAME"));

mod corpus;
mod database_outage;
mod dead_letters;
mod flags;
mod forms;
mod gathered;
mod helpers;
mod poison;
mod retired;
mod revisions;
mod scaling;
mod watch;
mod webhooks;
