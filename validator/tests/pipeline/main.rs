//! The pipeline from ingest through the validator, in process, against the real RabbitMQ and
//! PostgreSQL. Each test has its own namespace and database.

#![allow(clippy::unwrap_used)]

mod corpus;
mod database_outage;
mod dead_letters;
mod flags;
mod forms;
mod helpers;
mod poison;
mod revisions;
mod scaling;
