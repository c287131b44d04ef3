//! The fault-injection suite: ingest, validator and sheets-sync as separate processes, as an
//! operator runs them, against the real RabbitMQ, PostgreSQL or MySQL/MariaDB (`ENGINE`) and
//! the Sheets emulator, with one fault per scenario. Each scenario sends responses with
//! corrections mixed in, waits until the pipeline is quiet, and checks every guarantee: each
//! accepted response stored once at its latest revision, in the sheet once with the right
//! cells, a flag event for each flagged one, nothing in `N.dead`, every surviving service ready
//! again.
//!
//! `FAULT_RESPONSES` sets how many responses each scenario sends (default 2000).

#![allow(clippy::unwrap_used)]

/// The engine this binary runs on: PostgreSQL as `faults`, MySQL/MariaDB as `faults_mysql`,
/// which compiles these same sources (`tests/faults_mysql/main.rs`).
const ENGINE: collect_testkit::Engine =
    collect_testkit::Engine::of_test_binary(env!("CARGO_CRATE_NAME"));

mod cluster;
mod scenarios;
