//! The whole pipeline into the Sheets emulator, through the real google-sheets4 and yup-oauth2
//! clients: ingest, validator and sheets-sync in process, each test with its own namespace,
//! database and emulator.

#![allow(clippy::unwrap_used)]

mod faults;
mod form_status;
mod forms_share_ids;
mod helpers;
mod people;
mod reliability;
mod rows;
mod scaling;
