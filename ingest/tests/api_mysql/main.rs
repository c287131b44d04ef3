//! `tests/api` on MySQL/MariaDB: the same sources, as a module. The engine comes from this
//! binary's name (`api_mysql`: see `ENGINE` in `tests/api/main.rs`), so no test says
//! which engine it is for, and a test added there runs on both.

#[path = "../api/main.rs"]
mod api;
