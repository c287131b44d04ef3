//! What the three Collect services share.
//!
//! The data's path, as modules: [`messages`] is the wire contract that `ingest` publishes and
//! the workers consume; [`forms`] describes what a response must look like; [`amqp`] is the
//! broker (topology, supervised connection, confirmed publishing); [`config`], [`telemetry`]
//! and [`shutdown`] are what every process needs around that.

pub mod amqp;
pub mod config;
pub mod domain;
pub mod forms;
pub mod messages;
pub mod retry;
pub mod rules;
pub mod server;
pub mod shutdown;
pub mod store;
pub mod telemetry;
