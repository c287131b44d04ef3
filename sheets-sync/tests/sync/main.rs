//! The whole pipeline into the Sheets emulator, through the real google-sheets4 and yup-oauth2
//! clients: ingest, validator and sheets-sync in process, each test with its own namespace,
//! database (on `ENGINE`) and emulator.

#![allow(clippy::unwrap_used)]

/// The engine this binary runs on: PostgreSQL as `sync`, MySQL/MariaDB as `sync_mysql`,
/// which compiles these same sources (`tests/sync_mysql/main.rs`).
const ENGINE: collect_testkit::Engine =
    collect_testkit::Engine::of_test_binary(env!("CARGO_CRATE_NAME"));

mod faults;
mod form_status;
mod forms_share_ids;
mod helpers;
mod people;
mod reliability;
mod rows;
mod scaling;
