//! `tests/faults` on MySQL/MariaDB: the same sources, as a module. The engine comes from this
//! binary's name (`faults_mysql`: see `ENGINE` in `tests/faults/main.rs`), so no test says
//! which engine it is for, and a test added there runs on both.

#[path = "../faults/main.rs"]
mod faults;
