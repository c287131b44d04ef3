//! The SQL of Collect that is MySQL's own (8.0.16 and later) or MariaDB's (10.6 and later); what
//! both engines run alike is in `portable.rs`, run here through `Run`.
//! Migrations live in `shared/migrations-mysql/`, are embedded in the binaries and run at
//! start.
//!
//! Each session runs at READ COMMITTED (as PostgreSQL does by default: a locking read takes no
//! gap locks, so two validators' batches only meet on the rows they share), in strict mode (a
//! value that does not fit is an error, never truncated), in UTC, with the statement and lock
//! wait deadlines of `DATABASE_STATEMENT_TIMEOUT_MS`. Multi-row statements are cut to stay
//! under the server's `max_allowed_packet` and the protocol's 65,535 placeholders.
//!
//! Times are bound as `NaiveDateTime` in UTC, never as `DateTime<Utc>`: sqlx sends the latter
//! typed as `TIMESTAMP`, whose range ends in 2038, and MariaDB stores such a value outside it
//! as NULL, without an error.

mod flag_history;
mod forms;
mod responses;
mod sheet_status;
mod sheets;
mod webhooks;

use crate::store::StoreError;
use std::time::Duration;

use sqlx::QueryBuilder;
use sqlx::mysql::{MySql, MySqlConnectOptions, MySqlPool, MySqlPoolOptions};

use super::columns::columns_for;
use super::{Engine, StoreSettings};

// JSON is text Collect wrote.
columns_for!(sqlx::mysql::MySqlRow, |self, column| {
    let text: &str = sqlx::Row::try_get(self, column)?;
    serde_json::from_str(text).map_err(|error| sqlx::Error::Decode(Box::new(error)))
});

/// The store on MySQL or MariaDB, through a connection pool.
#[derive(Clone, Debug)]
pub struct MySqlStore {
    pool: MySqlPool,
    /// How many bytes of values one statement may carry (under `max_allowed_packet`).
    max_statement_bytes: usize,
}

impl MySqlStore {
    /// Creates the database if it is missing, connects and runs the migrations.
    pub async fn connect(settings: &StoreSettings) -> anyhow::Result<Self> {
        use anyhow::Context;
        let url = crate::config::redact_url(&settings.url);
        super::ensure_database::<MySql>(&settings.url, "MySQL").await?;
        let options: MySqlConnectOptions = settings
            .url
            .parse()
            .with_context(|| format!("DATABASE_URL is not a MySQL URL: {url}"))?;
        let options = options.charset("utf8mb4").timezone(Some("+00:00".into()));
        // Migrations run on a connection of their own, without the statement deadline.
        {
            use sqlx::Connection;
            let mut migrating = sqlx::MySqlConnection::connect_with(&options)
                .await
                .with_context(|| format!("cannot connect to {url}"))?;
            // sqlx's migrator locks with `GET_LOCK(…, -1)`, which MariaDB answers at once with
            // NULL (a negative timeout is not "for ever" there), so two services starting on a
            // new database would both apply a migration. This lock, with a timeout MariaDB and
            // MySQL both take, makes them wait for each other.
            let locked: Option<i64> = sqlx::query_scalar(
                "SELECT GET_LOCK(CONCAT('collect-migrate:', SHA1(DATABASE())), ?)",
            )
            .bind(MIGRATION_LOCK_WAIT.as_secs())
            .fetch_one(&mut migrating)
            .await
            .context("cannot take the migration lock")?;
            anyhow::ensure!(
                locked == Some(1),
                "another service held the migration lock of {url} for {:?}",
                MIGRATION_LOCK_WAIT
            );
            sqlx::migrate!("./migrations-mysql")
                .run(&mut migrating)
                .await
                .context("cannot run the database migrations")?;
            let _ = migrating.close().await;
        }
        let timeout = settings.statement_timeout;
        let pool = MySqlPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |connection, _| {
                Box::pin(async move { configure_session(connection, timeout).await })
            })
            .connect_with(options)
            .await
            .with_context(|| format!("cannot connect to {url}"))?;
        let max_packet: u64 = sqlx::query_scalar("SELECT @@max_allowed_packet")
            .fetch_one(&pool)
            .await
            .context("cannot read max_allowed_packet")?;
        Ok(Self {
            pool,
            // A quarter of the packet is left for the statement's text and the protocol.
            max_statement_bytes: usize::try_from(max_packet / 4 * 3).unwrap_or(usize::MAX),
        })
    }
}

/// Each new session: READ COMMITTED, strict, and deadlines. MariaDB bounds a statement with
/// `max_statement_time` (seconds); MySQL bounds reads with `max_execution_time` (ms). Both
/// bound lock waits: row locks (`innodb_lock_wait_timeout`) and table locks
/// (`lock_wait_timeout`), in whole seconds.
async fn configure_session(
    connection: &mut sqlx::MySqlConnection,
    timeout: Duration,
) -> Result<(), sqlx::Error> {
    let seconds = timeout.as_secs_f64();
    let whole_seconds = timeout.as_secs().max(1);
    // Numbers only: nothing here comes from outside.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED;
         SET SESSION sql_mode = CONCAT(@@sql_mode, ',STRICT_ALL_TABLES');
         SET SESSION innodb_lock_wait_timeout = {whole_seconds};
         SET SESSION lock_wait_timeout = {whole_seconds};"
    )))
    .execute(&mut *connection)
    .await?;
    let mariadb = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET SESSION max_statement_time = {seconds}"
    )))
    .execute(&mut *connection)
    .await;
    if mariadb.is_err() {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "SET SESSION max_execution_time = {}",
            timeout.as_millis()
        )))
        .execute(&mut *connection)
        .await?;
    }
    Ok(())
}

super::portable::run_on!(MySqlStore, sqlx::MySql, mysql, |at| at.naive_utc());

impl Engine for MySqlStore {
    fn name(&self) -> &'static str {
        "MySQL"
    }
}

/// How long a service waits for another one's migrations.
const MIGRATION_LOCK_WAIT: Duration = Duration::from_secs(600);

/// At most this many placeholders in one statement (the protocol allows 65,535).
const MAX_PLACEHOLDERS: usize = 60_000;

impl MySqlStore {
    /// [`runs`] under this server's `max_allowed_packet`.
    fn runs<'a, T>(
        &self,
        items: &'a [T],
        columns: usize,
        size: impl Fn(&T) -> usize,
    ) -> Result<Vec<&'a [T]>, StoreError> {
        runs(items, columns, size, self.max_statement_bytes)
    }
}

/// Cuts `items` into runs that one multi-row statement can carry: at most
/// [`MAX_PLACEHOLDERS`] values (`columns` per item) and `max_bytes` of them (`size` estimates an
/// item's), each run as long as a power of two (a run of 300 goes as 256, 32, 8 and 4). An
/// item that alone is over the limit is refused: it can never be sent, however often it is
/// retried.
///
/// Why powers of two: a statement's text depends on its number of rows, so that each
/// statement has a few shapes, and they stay prepared on the connection (sqlx's statement
/// cache, 100 a connection) instead of being prepared and closed each time
/// (`persistent(false)`). A closed statement's `COM_STMT_CLOSE` has no answer, and sqlx sets no
/// `TCP_NODELAY`: the next command waited on Nagle and the server's delayed ACK, ~40 ms each,
/// which held MariaDB to ~3,500 responses a second with the machine half idle (BENCHMARKS.md).
fn runs<T>(
    items: &[T],
    columns: usize,
    size: impl Fn(&T) -> usize,
    max_bytes: usize,
) -> Result<Vec<&[T]>, StoreError> {
    let max_items = (MAX_PLACEHOLDERS / columns.max(1)).max(1);
    let mut cut = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, item) in items.iter().enumerate() {
        let item_bytes = size(item) + 16 * columns;
        if item_bytes > max_bytes {
            return Err(StoreError::Unstorable(format!(
                "a row of {item_bytes} bytes is over what one statement may carry \
                     ({max_bytes} bytes, from the server's max_allowed_packet)"
            )));
        }
        if i > start && (i - start == max_items || bytes + item_bytes > max_bytes) {
            cut.push(&items[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += item_bytes;
    }
    if start < items.len() {
        cut.push(&items[start..]);
    }
    let mut runs = Vec::new();
    for mut run in cut {
        while !run.is_empty() {
            let length = 1 << run.len().ilog2();
            let (head, rest) = run.split_at(length);
            runs.push(head);
            run = rest;
        }
    }
    Ok(runs)
}

/// `(?, ?, …)` for a list of values, pushed onto `query`.
fn push_list<T>(query: &mut QueryBuilder<MySql>, values: impl IntoIterator<Item = T>)
where
    T: for<'t> sqlx::Encode<'t, MySql> + sqlx::Type<MySql>,
{
    query.push("(");
    let mut separated = query.separated(", ");
    for value in values {
        separated.push_bind(value);
    }
    separated.push_unseparated(")");
}

/// Whether an error is a duplicate key (MySQL's 1062): another transaction inserted the row
/// between this one's read and its insert.
fn is_duplicate_key(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(database) => database
            .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
            .is_some_and(|e| e.number() == 1062),
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{MAX_PLACEHOLDERS, runs};

    fn lengths(runs: &[&[u32]]) -> Vec<usize> {
        runs.iter().map(|run| run.len()).collect()
    }

    #[test]
    fn runs_are_powers_of_two_in_order_within_the_limits() {
        let items: Vec<u32> = (0..300).collect();
        let cut = runs(&items, 2, |_| 0, usize::MAX).unwrap();
        assert_eq!(lengths(&cut), [256, 32, 8, 4]);
        assert_eq!(cut.concat(), items, "every item once, in order");
        assert!(runs(&items[..0], 2, |_| 0, usize::MAX).unwrap().is_empty());
        assert_eq!(
            lengths(&runs(&items[..1], 2, |_| 0, usize::MAX).unwrap()),
            [1]
        );

        // The byte limit cuts first (7 items of 16 + 4 bytes fit in 140), then each run is cut
        // into powers of two.
        let cut = runs(&items[..20], 1, |_| 4, 140).unwrap();
        assert_eq!(lengths(&cut), [4, 2, 1, 4, 2, 1, 4, 2]);
        assert_eq!(cut.concat(), &items[..20]);

        // The placeholder limit: 60,000 / 13 columns = 4,615 rows a statement at most.
        let many: Vec<u32> = (0..5_000).collect();
        let cut = runs(&many, 13, |_| 0, usize::MAX).unwrap();
        assert!(cut.iter().all(|run| run.len() * 13 <= MAX_PLACEHOLDERS));
        assert_eq!(lengths(&cut)[..2], [4096, 512]);
        assert_eq!(cut.concat(), many);

        // An item over the limit alone is refused.
        let error = runs(&items[..3], 1, |&i| if i == 1 { 200 } else { 0 }, 140).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("over what one statement may carry")
        );
    }
}
