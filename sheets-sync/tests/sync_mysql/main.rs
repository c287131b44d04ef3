//! `tests/sync` on MySQL/MariaDB: the same sources, as a module. The engine comes from this
//! binary's name (`sync_mysql`: see `ENGINE` in `tests/sync/main.rs`), so no test says
//! which engine it is for, and a test added there runs on both.

#[path = "../sync/main.rs"]
mod sync;
