//! The database engines the tests run against, a database of a test's own on either, and the
//! few raw queries tests make (counts), the same on both.
//!
//! A test binary knows its engine from its own crate name: the store-touching integration
//! tests are compiled twice, once as `<name>` (PostgreSQL) and once as `<name>_mysql`
//! (MySQL/MariaDB), from the same sources (see [`Engine::of_test_binary`]).

use std::net::{SocketAddr, ToSocketAddrs};

/// A database engine the store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Engine {
    Postgres,
    MySql,
}

impl Engine {
    /// Both engines, PostgreSQL first.
    pub const ALL: [Engine; 2] = [Engine::Postgres, Engine::MySql];

    /// The engine of a test binary, from its crate name (pass `env!("CARGO_CRATE_NAME")`):
    /// MySQL/MariaDB for a name ending in `_mysql` (`pipeline_mysql`, the twin target of
    /// `pipeline`), PostgreSQL otherwise.
    pub const fn of_test_binary(crate_name: &str) -> Self {
        let name = crate_name.as_bytes();
        let suffix = b"_mysql";
        if name.len() < suffix.len() {
            return Engine::Postgres;
        }
        let start = name.len() - suffix.len();
        let mut i = 0;
        while i < suffix.len() {
            if name[start + i] != suffix[i] {
                return Engine::Postgres;
            }
            i += 1;
        }
        Engine::MySql
    }

    /// The engine a `DATABASE_URL` names, by its scheme.
    pub fn of_url(url: &str) -> Option<Self> {
        match url.split_once("://")?.0 {
            "postgres" | "postgresql" => Some(Engine::Postgres),
            "mysql" => Some(Engine::MySql),
            _ => None,
        }
    }

    /// Its name, as the store's messages give it (`PostgreSQL refused it (…)`).
    pub fn name(self) -> &'static str {
        match self {
            Engine::Postgres => "PostgreSQL",
            Engine::MySql => "MySQL",
        }
    }

    /// The server the tests use, without a database: `TEST_DATABASE_SERVER` (default
    /// `postgres://postgres@127.0.0.1:5432`) or `TEST_MYSQL_SERVER` (default
    /// `mysql://root@127.0.0.1:3306`).
    pub fn server(self) -> String {
        let (variable, default) = match self {
            Engine::Postgres => ("TEST_DATABASE_SERVER", "postgres://postgres@127.0.0.1:5432"),
            Engine::MySql => ("TEST_MYSQL_SERVER", "mysql://root@127.0.0.1:3306"),
        };
        std::env::var(variable)
            .unwrap_or_else(|_| default.into())
            .trim_end_matches('/')
            .to_owned()
    }

    /// The address of [`Engine::server`], for a [`crate::FaultProxy`] in front of it.
    pub fn server_addr(self) -> SocketAddr {
        let server = self.server();
        let (_, authority, _) = split_url(&server);
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let default_port = match self {
            Engine::Postgres => 5432,
            Engine::MySql => 3306,
        };
        let with_port = if host_port
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            host_port.to_owned()
        } else {
            format!("{host_port}:{default_port}")
        };
        with_port
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .unwrap_or_else(|| panic!("cannot resolve the {} server {with_port}", self.name()))
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Engine {
    type Err = String;

    /// `postgres` (or `postgresql`, `pg`) and `mysql` (or `mariadb`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" | "pg" => Ok(Engine::Postgres),
            "mysql" | "mariadb" => Ok(Engine::MySql),
            other => Err(format!("unknown engine {other:?}: postgres or mysql")),
        }
    }
}

/// The URL of a database of this test's own (`collect_test_<random>`) on `engine`'s server;
/// the service under test creates it. Drop it with [`drop_database`].
pub fn database_url(engine: Engine) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{}/collect_test_{}", engine.server(), &id[..12])
}

/// `url` with its host and port replaced by `addr` (user, password, database and options
/// kept): the same database reached through a [`crate::FaultProxy`].
pub fn url_via(url: &str, addr: &str) -> String {
    let (scheme, authority, rest) = split_url(url);
    let user = authority
        .rsplit_once('@')
        .map(|(user, _)| format!("{user}@"))
        .unwrap_or_default();
    format!("{scheme}://{user}{addr}{rest}")
}

/// `scheme://authority/rest` as (`scheme`, `authority`, `/rest`).
fn split_url(url: &str) -> (&str, &str, &str) {
    let (scheme, after) = url.split_once("://").unwrap_or(("", url));
    let end = after.find(['/', '?']).unwrap_or(after.len());
    (scheme, &after[..end], &after[end..])
}

/// The database of `url` and the URL of its server without it.
fn database_of(url: &str) -> Option<(String, String)> {
    let (scheme, authority, rest) = split_url(url);
    let name = rest
        .trim_start_matches('/')
        .split('?')
        .next()
        .filter(|name| !name.is_empty())?;
    Some((format!("{scheme}://{authority}"), name.to_owned()))
}

/// Drops a test database (on the engine its URL names), closing whatever connections remain.
pub async fn drop_database(url: &str) {
    use sqlx::Connection;
    let Some((server, name)) = database_of(url) else {
        return;
    };
    match Engine::of_url(url) {
        Some(Engine::Postgres) => {
            let Ok(mut admin) = sqlx::PgConnection::connect(&format!("{server}/postgres")).await
            else {
                return;
            };
            let statement = format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                name.replace('"', "\"\"")
            );
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
                .execute(&mut admin)
                .await;
            let _ = admin.close().await;
        }
        Some(Engine::MySql) => {
            let Ok(mut admin) = sqlx::MySqlConnection::connect(&server).await else {
                return;
            };
            // MySQL has no `WITH (FORCE)`: end the database's other sessions first, so none
            // holds a lock the drop would wait for.
            let sessions: Vec<i64> = sqlx::query_scalar(
                "SELECT CAST(id AS SIGNED) FROM information_schema.processlist
                 WHERE db = ? AND id <> CONNECTION_ID()",
            )
            .bind(&name)
            .fetch_all(&mut admin)
            .await
            .unwrap_or_default();
            for id in sessions {
                let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("KILL CONNECTION {id}")))
                    .execute(&mut admin)
                    .await;
            }
            let statement = format!("DROP DATABASE IF EXISTS `{}`", name.replace('`', "``"));
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
                .execute(&mut admin)
                .await;
            let _ = admin.close().await;
        }
        None => {}
    }
}

/// A small pool on the database of `url`, whichever engine it names, for the raw queries a
/// test makes (`SELECT count(*) FROM sheet_outbox`): write SQL both engines take, and read
/// `i64`, `f64`, `String` or `bool` columns.
pub async fn database_pool(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::pool::PoolOptions::<sqlx::Any>::new()
        .max_connections(2)
        .connect(url)
        .await
        .unwrap_or_else(|error| panic!("the test database at {url}: {error}"))
}

/// The single `i64` a counting query returns (`SELECT count(*) FROM responses`).
pub async fn count(pool: &sqlx::AnyPool, sql: &'static str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(sql).fetch_one(pool).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_of_a_test_binary_is_in_its_name() {
        assert_eq!(Engine::of_test_binary("pipeline"), Engine::Postgres);
        assert_eq!(Engine::of_test_binary("pipeline_mysql"), Engine::MySql);
        assert_eq!(Engine::of_test_binary("sync_mysql"), Engine::MySql);
        assert_eq!(Engine::of_test_binary("mysql"), Engine::Postgres);
        assert_eq!(Engine::of_test_binary(""), Engine::Postgres);
    }

    #[test]
    fn urls_are_taken_apart_and_rewritten() {
        assert_eq!(
            url_via(
                "postgres://postgres@127.0.0.1:5432/collect_test_1",
                "127.0.0.1:4000"
            ),
            "postgres://postgres@127.0.0.1:4000/collect_test_1"
        );
        assert_eq!(
            url_via(
                "mysql://root:secret@db:3306/collect?ssl-mode=disabled",
                "127.0.0.1:1"
            ),
            "mysql://root:secret@127.0.0.1:1/collect?ssl-mode=disabled"
        );
        assert_eq!(
            url_via("mysql://127.0.0.1:3306/x", "127.0.0.1:1"),
            "mysql://127.0.0.1:1/x"
        );
        assert_eq!(
            database_of("mysql://root@127.0.0.1:3306/collect_test_1"),
            Some((
                "mysql://root@127.0.0.1:3306".to_owned(),
                "collect_test_1".to_owned()
            ))
        );
        assert_eq!(database_of("mysql://root@127.0.0.1:3306"), None);
        assert_eq!(Engine::of_url("mysql://root@h/x"), Some(Engine::MySql));
        assert_eq!(Engine::of_url("postgresql://h/x"), Some(Engine::Postgres));
        assert_eq!("mysql".parse::<Engine>(), Ok(Engine::MySql));
    }

    /// Against the local servers (`TEST_DATABASE_SERVER`, `TEST_MYSQL_SERVER`): a database is
    /// made, counted in with the engine-neutral pool, and dropped while a session still holds
    /// it.
    #[tokio::test]
    async fn a_test_database_is_counted_in_and_dropped_on_both_engines() {
        for engine in Engine::ALL {
            let url = database_url(engine);
            let (server, name) = database_of(&url).unwrap();
            let create = match engine {
                Engine::Postgres => format!("CREATE DATABASE \"{name}\""),
                Engine::MySql => format!("CREATE DATABASE `{name}`"),
            };
            let admin = database_pool(&match engine {
                Engine::Postgres => format!("{server}/postgres"),
                Engine::MySql => server.clone(),
            })
            .await;
            sqlx::raw_sql(sqlx::AssertSqlSafe(create))
                .execute(&admin)
                .await
                .unwrap();
            let pool = database_pool(&url).await;
            sqlx::raw_sql("CREATE TABLE t (id integer); INSERT INTO t VALUES (1), (2)")
                .execute(&pool)
                .await
                .unwrap();
            assert_eq!(
                count(&pool, "SELECT count(*) FROM t").await.unwrap(),
                2,
                "{engine}"
            );
            // A session still open on the database does not stop the drop.
            let held = pool.acquire().await.unwrap();
            drop_database(&url).await;
            drop(held);
            pool.close().await;
            let exists = match engine {
                Engine::Postgres => "SELECT count(*) FROM pg_database WHERE datname = $1",
                Engine::MySql => {
                    "SELECT count(*) FROM information_schema.schemata WHERE schema_name = ?"
                }
            };
            let left: i64 = sqlx::query_scalar(exists)
                .bind(&name)
                .fetch_one(&admin)
                .await
                .unwrap();
            assert_eq!(left, 0, "{engine}: {name} dropped");
            admin.close().await;
        }
    }
}
