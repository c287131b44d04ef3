//! `tests/pipeline` on MySQL/MariaDB: the same sources, as a module. The engine comes from this
//! binary's name (`pipeline_mysql`: see `ENGINE` in `tests/pipeline/main.rs`), so no test says
//! which engine it is for, and a test added there runs on both.

#[path = "../pipeline/main.rs"]
mod pipeline;
