//! The fault-injection suite: ingest, validator and sheets-sync as separate processes, as an
//! operator runs them, against the real RabbitMQ and PostgreSQL and the Sheets emulator, with
//! one fault per scenario. Each scenario sends responses with corrections mixed in, waits until
//! the pipeline is quiet, and checks every guarantee: each accepted response stored once at
//! its latest revision, in the sheet once with the right cells, a flag event for each flagged
//! one, nothing in `N.dead`, every surviving service ready again.
//!
//! `FAULT_RESPONSES` sets how many responses each scenario sends (default 2000).

#![allow(clippy::unwrap_used)]

mod cluster;
mod scenarios;
