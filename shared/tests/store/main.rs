//! The store's interface, the same on both engines: each check runs on PostgreSQL and on
//! MySQL/MariaDB, each in a fresh database of its own (`TEST_DATABASE_SERVER`,
//! `TEST_MYSQL_SERVER`, or the local servers).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use chrono::{TimeZone, Utc};
use collect_shared::forms::Severity;
use collect_shared::forms::{Form, FormDefinition};
use collect_shared::messages::{
    Collector, Flag, FlagEventKind, FormId, ResponseId, ResponseMessage, ResponseStatus, Revision,
    UserId,
};
use collect_shared::rules::Evaluation;
use collect_shared::store::{
    BatchWritten, FlagCursor, FlaggedCursor, FormTab, NewResponse, SaveOutcome, Store, StoreError,
    StoreSettings,
};
use serde_json::json;

/// A database of the test's own on one engine, dropped at the end.
struct Database {
    url: String,
    server: String,
    name: String,
}

impl Database {
    fn new(engine: &str) -> Self {
        let server = match engine {
            "postgres" => std::env::var("TEST_DATABASE_SERVER")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into()),
            _ => std::env::var("TEST_MYSQL_SERVER")
                .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into()),
        };
        let id = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("collect_test_{}", &id[..12]);
        Self {
            url: format!("{server}/{name}"),
            server,
            name,
        }
    }

    async fn store(&self) -> Store {
        Store::connect(&StoreSettings {
            url: self.url.clone(),
            max_connections: 5,
            statement_timeout: Duration::from_secs(30),
        })
        .await
        .unwrap()
    }

    /// Ends every session on the database from outside, as a server restart would.
    async fn end_sessions(&self) {
        use sqlx::Connection;
        if self.server.starts_with("postgres") {
            let mut admin = sqlx::PgConnection::connect(&format!("{}/postgres", self.server))
                .await
                .unwrap();
            sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
            )
            .bind(&self.name)
            .execute(&mut admin)
            .await
            .unwrap();
        } else {
            let mut admin = sqlx::MySqlConnection::connect(&self.server).await.unwrap();
            let sessions: Vec<i64> = sqlx::query_scalar(
                "SELECT CAST(id AS SIGNED) FROM information_schema.processlist
                 WHERE db = ? AND id <> CONNECTION_ID()",
            )
            .bind(&self.name)
            .fetch_all(&mut admin)
            .await
            .unwrap();
            assert!(!sessions.is_empty(), "the store has sessions open");
            for id in sessions {
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("KILL CONNECTION {id}")))
                    .execute(&mut admin)
                    .await
                    .unwrap();
            }
        }
    }

    async fn drop(self) {
        use sqlx::Connection;
        if self.server.starts_with("postgres") {
            let mut admin = sqlx::PgConnection::connect(&format!("{}/postgres", self.server))
                .await
                .unwrap();
            let statement = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
            sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
                .execute(&mut admin)
                .await
                .unwrap();
        } else {
            let mut admin = sqlx::MySqlConnection::connect(&self.server).await.unwrap();
            let statement = format!("DROP DATABASE IF EXISTS `{}`", self.name);
            sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
                .execute(&mut admin)
                .await
                .unwrap();
        }
    }
}

/// Services that start at once on a new database: each store is usable as soon as its connect
/// returns (the database created once, the migrations run once, under the migrator's lock).
async fn first_starts_at_once(engine: &str) {
    let database = Database::new(engine);
    let stores = futures::future::join_all((0..3).map(|_| database.store())).await;
    for store in &stores {
        let state = store
            .sheet_state(&FormId::parse("household_finance").unwrap())
            .await
            .unwrap();
        assert_eq!(
            (state.rows_waiting, state.rows_parked, state.failure),
            (0, 0, None)
        );
        store.report_sheet_failures("i", &[]).await.unwrap();
    }
    database.drop().await;
}

#[tokio::test]
async fn first_starts_at_once_postgres() {
    first_starts_at_once("postgres").await;
}

#[tokio::test]
async fn first_starts_at_once_mysql() {
    first_starts_at_once("mysql").await;
}

/// Ids compare byte by byte on both engines, as MySQL's `ascii_bin` columns do, whatever the
/// database's own collation: on PostgreSQL the database here sorts words as a person reads
/// them (ICU's root locale: `alpha` before `Zeta`, `a_1` before `a1`), and the responses of
/// one id still come in their forms' byte order.
async fn ids_sort_byte_by_byte(engine: &str) {
    let database = Database::new(engine);
    if engine == "postgres" {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&format!("{}/postgres", database.server))
            .await
            .unwrap();
        let statement = format!(
            "CREATE DATABASE \"{}\" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'und'
             LOCALE 'C.UTF-8'",
            database.name
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&mut admin)
            .await
            .unwrap();
    }
    let store = database.store().await;
    let forms = ["alpha", "a_1", "Zeta", "a1"];
    let messages: Vec<ResponseMessage> = forms
        .iter()
        .map(|form| message(form, "same", 1, "u-2"))
        .collect();
    let valid = [valid()];
    store
        .save_responses(&batch_of(&messages, valid.iter().cycle()))
        .await
        .unwrap();
    let same = store
        .responses_with_id(&ResponseId::parse("same").unwrap(), 10)
        .await
        .unwrap();
    let order: Vec<&str> = same.iter().map(|r| r.form_id.as_str()).collect();
    assert_eq!(order, ["Zeta", "a1", "a_1", "alpha"]);
    database.drop().await;
}

#[tokio::test]
async fn ids_sort_byte_by_byte_postgres() {
    ids_sort_byte_by_byte("postgres").await;
}

#[tokio::test]
async fn ids_sort_byte_by_byte_mysql() {
    ids_sort_byte_by_byte("mysql").await;
}

/// On PostgreSQL, a flag event committed while an older transaction is still open somewhere on
/// the server is not listed yet (a cursor could otherwise pass it), and the page says that it
/// holds events back, so that a watcher reads again soon instead of at its next poll.
#[tokio::test]
async fn a_page_says_when_an_open_transaction_holds_events_back_postgres() {
    use sqlx::Connection;
    let database = Database::new("postgres");
    let store = database.store().await;
    let user = UserId::parse("u-held").unwrap();
    let mut older = sqlx::PgConnection::connect(&database.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut older).await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut older)
        .await
        .unwrap();
    save(
        &store,
        &message("household_finance", "held", 1, "u-held"),
        &flagged(),
    )
    .await;
    let page = store
        .flag_history(&user, FlagCursor::default(), 10)
        .await
        .unwrap();
    assert!(page.events.is_empty(), "{page:?}");
    assert!(page.held_back);
    assert_eq!(page.next, FlagCursor::default());

    sqlx::query("ROLLBACK").execute(&mut older).await.unwrap();
    // Other tests' transactions may hold it back a moment longer.
    let started = std::time::Instant::now();
    let page = loop {
        let page = store
            .flag_history(&user, FlagCursor::default(), 10)
            .await
            .unwrap();
        if (page.events.len() == 1 && !page.held_back)
            || started.elapsed() > Duration::from_secs(20)
        {
            break page;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(page.events.len(), 1, "{page:?}");
    assert_eq!(page.events[0].1.response_id.as_str(), "held");
    assert!(!page.held_back);
    drop(store);
    database.drop().await;
}

/// A stored word (a response's status, a flag event's kind, a delivery's state) reads back only
/// as one of its type's values: another word is a decode error, never a default.
async fn words_read_back_only_as_written(engine: &str) {
    use collect_shared::messages::{FlagEventKind, ResponseStatus};
    use collect_shared::store::DeliveryState;
    use sqlx::Connection;

    async fn read<T>(engine: &str, server: &str, word: &str) -> Result<T, sqlx::Error>
    where
        T: Send + Unpin,
        T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
        T: for<'r> sqlx::Decode<'r, sqlx::MySql> + sqlx::Type<sqlx::MySql>,
    {
        let sql = sqlx::AssertSqlSafe(format!("SELECT '{word}'"));
        if engine == "postgres" {
            let mut connection = sqlx::PgConnection::connect(&format!("{server}/postgres"))
                .await
                .unwrap();
            sqlx::query_scalar(sql).fetch_one(&mut connection).await
        } else {
            let mut connection = sqlx::MySqlConnection::connect(server).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&mut connection).await
        }
    }

    let server = Database::new(engine).server;
    assert_eq!(
        read::<ResponseStatus>(engine, &server, "flagged")
            .await
            .unwrap(),
        ResponseStatus::Flagged
    );
    assert_eq!(
        read::<FlagEventKind>(engine, &server, "cleared")
            .await
            .unwrap(),
        FlagEventKind::Cleared
    );
    assert_eq!(
        read::<DeliveryState>(engine, &server, "dead")
            .await
            .unwrap(),
        DeliveryState::Dead
    );
    for (word, error) in [
        (
            "VALID",
            read::<ResponseStatus>(engine, &server, "VALID").await,
        ),
        ("", read::<ResponseStatus>(engine, &server, "").await),
    ] {
        let error = error.expect_err(word).to_string();
        assert!(
            error.contains("unknown response status"),
            "{word:?}: {error}"
        );
    }
    let error = read::<FlagEventKind>(engine, &server, "other")
        .await
        .expect_err("not a kind")
        .to_string();
    assert!(error.contains("unknown flag event kind"), "{error}");
    let error = read::<DeliveryState>(engine, &server, "lost")
        .await
        .expect_err("not a state")
        .to_string();
    assert!(error.contains("unknown delivery state"), "{error}");
}

#[tokio::test]
async fn words_read_back_only_as_written_postgres() {
    words_read_back_only_as_written("postgres").await;
}

#[tokio::test]
async fn words_read_back_only_as_written_mysql() {
    words_read_back_only_as_written("mysql").await;
}

/// Runs a check on both engines, as `<check>::postgres` and `<check>::mysql`.
macro_rules! on_both_engines {
    ($($check:ident),* $(,)?) => {$(
        mod $check {
            #[tokio::test]
            async fn postgres() {
                let database = super::Database::new("postgres");
                super::$check(database.store().await).await;
                database.drop().await;
            }

            #[tokio::test]
            async fn mysql() {
                let database = super::Database::new("mysql");
                super::$check(database.store().await).await;
                database.drop().await;
            }
        }
    )*};
}

mod webhooks;

on_both_engines!(
    revisions,
    batches_and_forms_sharing_ids,
    flag_history,
    forms_versions,
    outbox_rows_and_parking,
    pending_rows_stop_at_their_bytes,
    saving_queues_written_revisions,
    tab_locks,
    sheet_status,
);

fn form_id(id: &str) -> FormId {
    FormId::parse(id).unwrap()
}

fn message(form: &str, id: &str, revision: u64, user: &str) -> ResponseMessage {
    ResponseMessage {
        form_id: form_id(form),
        response_id: ResponseId::parse(id).unwrap(),
        revision: Revision::new(revision).unwrap(),
        collector: Collector {
            user_id: UserId::parse(user).unwrap(),
            username: Some("Ádá \u{1F600}".into()),
        },
        submitted_at: Some(Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap()),
        answers: json!({"name": "Zoë", "income": 1200.5, "nested": {"b": [1, null], "a": true}})
            .as_object()
            .unwrap()
            .clone(),
        metadata: json!({"device": "x"}).as_object().unwrap().clone(),
        received_at: Some(Utc.timestamp_micros(1_795_169_700_123_456).unwrap()),
    }
}

fn flagged() -> Evaluation {
    Evaluation {
        flags: vec![Flag {
            rule_id: "savings_not_negative".into(),
            message: "savings must be >= 0".into(),
            severity: Severity::Error,
        }],
    }
}

fn valid() -> Evaluation {
    Evaluation { flags: vec![] }
}

/// A batch of `messages`, each with the flags of its evaluation in `evaluations`.
fn batch_of<'a>(
    messages: &'a [ResponseMessage],
    evaluations: impl IntoIterator<Item = &'a Evaluation>,
) -> Vec<NewResponse<'a>> {
    messages
        .iter()
        .zip(evaluations)
        .map(|(message, evaluation)| NewResponse {
            message,
            form_version: 1,
            flags: &evaluation.flags,
        })
        .collect()
}

async fn save(store: &Store, message: &ResponseMessage, evaluation: &Evaluation) -> SaveOutcome {
    let mut outcomes = store
        .save_responses(&[NewResponse {
            message,
            form_version: 1,
            flags: &evaluation.flags,
        }])
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 1);
    outcomes.remove(0)
}

async fn revisions(store: Store) {
    let first = message("household_finance", "r-1", 2, "u-1");
    let SaveOutcome::Written { stored, event } = save(&store, &first, &flagged()).await else {
        panic!("the first revision is written");
    };
    assert_eq!(event, Some(FlagEventKind::Flagged));
    assert_eq!(stored.status, ResponseStatus::Flagged);
    let read = store
        .response(&first.form_id, &first.response_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read, stored, "what saving says is what a read says");
    assert_eq!(read.answers, first.answers);
    assert_eq!(read.collector.username.as_deref(), Some("Ádá \u{1F600}"));

    // A redelivery: the same revision, nothing changes, the first event again.
    let SaveOutcome::Duplicate {
        stored: again,
        event,
    } = save(&store, &first, &valid()).await
    else {
        panic!("the same revision is a duplicate");
    };
    assert_eq!((again, event), (read.clone(), Some(FlagEventKind::Flagged)));

    // An older revision is ignored.
    let older = message("household_finance", "r-1", 1, "u-1");
    assert_eq!(
        save(&store, &older, &valid()).await,
        SaveOutcome::Stale {
            stored_revision: Revision::saturating_from_i64(2)
        }
    );

    // A newer valid one clears the flag.
    let newer = message("household_finance", "r-1", 3, "u-1");
    let SaveOutcome::Written { stored, event } = save(&store, &newer, &valid()).await else {
        panic!("a newer revision is written");
    };
    assert_eq!(event, Some(FlagEventKind::Cleared));
    assert_eq!(stored.revision.get(), 3);
    assert_eq!(
        store
            .response(&newer.form_id, &newer.response_id)
            .await
            .unwrap()
            .unwrap(),
        stored
    );
    assert!(
        store
            .flagged_for_collector(&newer.collector.user_id, &FlaggedCursor::default(), 10)
            .await
            .unwrap()
            .is_empty()
    );

    // A revision over what the store holds cannot be made; the highest one is stored and
    // read back as it was.
    assert!(Revision::new(u64::MAX).is_err());
    assert!(Revision::new(1 << 63).is_err());
    let highest = message("household_finance", "r-2", i64::MAX as u64, "u-1");
    let SaveOutcome::Written { stored, .. } = save(&store, &highest, &valid()).await else {
        panic!("the highest revision is written");
    };
    assert_eq!(stored.revision, Revision::MAX);
    let read = store
        .response(&highest.form_id, &highest.response_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.revision.get(), 9_223_372_036_854_775_807);

    // The edges of the years ingest accepts (1000 to 9999) read back as written.
    // (2040 is past MySQL's TIMESTAMP: bound as one, MariaDB stored it as NULL.)
    for (id, year) in [
        ("r-year-1000", 1000),
        ("r-year-2040", 2040),
        ("r-year-9999", 9999),
    ] {
        let mut edge = message("household_finance", id, 1, "u-1");
        edge.submitted_at = Some(Utc.with_ymd_and_hms(year, 6, 15, 12, 30, 1).unwrap());
        let SaveOutcome::Written { stored, .. } = save(&store, &edge, &valid()).await else {
            panic!("{id} is written");
        };
        let read = store
            .response(&edge.form_id, &edge.response_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(read.submitted_at, edge.submitted_at, "{id}");
        assert_eq!(read, stored, "{id}");
    }

    // A time the store cannot hold (ingest refuses it; another publisher may not) is a
    // permanent error on both engines, never a panic.
    let mut ancient = message("household_finance", "r-3", 1, "u-1");
    ancient.submitted_at = Some(Utc.with_ymd_and_hms(-5000, 1, 1, 0, 0, 0).unwrap());
    if store.name() == "MySQL" {
        // On MySQL every year before 1000 is refused (sqlx would read it back as NULL).
        ancient.submitted_at = Some(Utc.with_ymd_and_hms(999, 12, 31, 23, 59, 59).unwrap());
    }
    let refused = store
        .save_responses(&[NewResponse {
            message: &ancient,
            form_version: 1,
            flags: &valid().flags,
        }])
        .await
        .unwrap_err();
    assert!(refused.is_permanent(), "{refused}");
    assert!(
        store
            .response(&ancient.form_id, &ancient.response_id)
            .await
            .unwrap()
            .is_none()
    );
}

async fn batches_and_forms_sharing_ids(store: Store) {
    let form = |id: &str| Form {
        id: form_id(id),
        definition: FormDefinition {
            title: id.into(),
            questions: vec![],
            rules: vec![],
            metadata: vec![],
            sheet: None,
        },
    };
    store.put_form(&form("a")).await.unwrap();
    store.put_form(&form("b")).await.unwrap();
    // One batch: new responses of two forms with the same id, in no particular order.
    let messages = [
        message("b", "same", 1, "u-2"),
        message("a", "same", 1, "u-2"),
        message("a", "other", 4, "u-2"),
    ];
    let evaluations = [flagged(), valid(), flagged()];
    let batch = batch_of(&messages, &evaluations);
    let outcomes = store.save_responses(&batch).await.unwrap();
    for (outcome, message) in outcomes.iter().zip(&messages) {
        let SaveOutcome::Written { stored, .. } = outcome else {
            panic!("{outcome:?}");
        };
        assert_eq!(
            (&stored.form_id, &stored.response_id),
            (&message.form_id, &message.response_id)
        );
    }
    // The same batch again, with one newer revision: the rest are duplicates.
    let messages2 = [
        message("b", "same", 2, "u-2"),
        message("a", "same", 1, "u-2"),
        message("a", "other", 4, "u-2"),
    ];
    let batch = batch_of(&messages2, &evaluations);
    let outcomes = store.save_responses(&batch).await.unwrap();
    assert!(matches!(
        outcomes[0],
        SaveOutcome::Written {
            event: Some(FlagEventKind::Flagged),
            ..
        }
    ));
    assert!(matches!(
        outcomes[1],
        SaveOutcome::Duplicate { event: None, .. }
    ));
    assert!(matches!(
        outcomes[2],
        SaveOutcome::Duplicate {
            event: Some(FlagEventKind::Flagged),
            ..
        }
    ));
    let same = store
        .responses_with_id(&ResponseId::parse("same").unwrap(), 10)
        .await
        .unwrap();
    let forms: Vec<(&str, u64)> = same
        .iter()
        .map(|r| (r.form_id.as_str(), r.revision.get()))
        .collect();
    assert_eq!(forms, [("a", 1), ("b", 2)]);
    // A response twice in one batch is refused.
    let twice = [message("a", "x", 1, "u"), message("a", "x", 2, "u")];
    let valid = [valid()];
    let batch = batch_of(&twice, valid.iter().cycle());
    let refused = store.save_responses(&batch).await.unwrap_err();
    assert!(
        matches!(
            &refused,
            StoreError::TwiceInBatch { form_id, response_id } if form_id == "a" && response_id == "x"
        ),
        "{refused}"
    );
    assert!(refused.is_permanent(), "retrying cannot cure it");
    let u2 = UserId::parse("u-2").unwrap();
    let flagged_now = store
        .flagged_for_collector(&u2, &FlaggedCursor::default(), 10)
        .await
        .unwrap();
    // One at a time after a cursor: the same two, in the same order.
    let first = store
        .flagged_for_collector(&u2, &FlaggedCursor::default(), 1)
        .await
        .unwrap();
    let cursor = FlaggedCursor::parse(&FlaggedCursor::after(&first[0]).to_string()).unwrap();
    let second = store.flagged_for_collector(&u2, &cursor, 1).await.unwrap();
    let last = FlaggedCursor::after(&second[0]);
    assert!(
        store
            .flagged_for_collector(&u2, &last, 1)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!([&first[0], &second[0]], [&flagged_now[0], &flagged_now[1]]);
    let ids: Vec<(&str, &str)> = flagged_now
        .iter()
        .map(|r| (r.form_id.as_str(), r.response_id.as_str()))
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&("a", "other")) && ids.contains(&("b", "same")));
}

async fn flag_history(store: Store) {
    let user = UserId::parse("u-3").unwrap();
    for (n, evaluation) in [flagged(), valid(), flagged()].iter().enumerate() {
        save(
            &store,
            &message("household_finance", "h", n as u64 + 1, "u-3"),
            evaluation,
        )
        .await;
    }
    // A redelivery adds no event.
    save(
        &store,
        &message("household_finance", "h", 3, "u-3"),
        &flagged(),
    )
    .await;
    // On PostgreSQL an event is listed once every older transaction of the server has ended
    // (other tests' included), so it may take a moment.
    let started = std::time::Instant::now();
    let all = loop {
        let page = store
            .flag_history(&user, FlagCursor::default(), 10)
            .await
            .unwrap();
        if page.events.len() >= 3 || started.elapsed() > Duration::from_secs(20) {
            break page;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let kinds: Vec<(FlagEventKind, u64)> = all
        .events
        .iter()
        .map(|(_, event)| (event.kind, event.revision.get()))
        .collect();
    assert_eq!(
        kinds,
        [
            (FlagEventKind::Flagged, 1),
            (FlagEventKind::Cleared, 2),
            (FlagEventKind::Flagged, 3)
        ]
    );
    assert_eq!(all.events[0].1.answers, message("f", "h", 1, "u").answers);
    // Paged: two, then one, then none; the cursor reads back as written.
    let first = store
        .flag_history(&user, FlagCursor::default(), 2)
        .await
        .unwrap();
    assert_eq!(first.events.len(), 2);
    let cursor = FlagCursor::parse(&first.next.to_string()).unwrap();
    let second = store.flag_history(&user, cursor, 2).await.unwrap();
    assert_eq!(second.events.len(), 1);
    assert_eq!(second.events[0].1.revision.get(), 3);
    let third = store.flag_history(&user, second.next, 2).await.unwrap();
    assert!(third.events.is_empty());
    assert_eq!(third.next, second.next);
    // Another collector's events are not in it.
    assert!(
        store
            .flag_history(
                &UserId::parse("someone-else").unwrap(),
                FlagCursor::default(),
                10
            )
            .await
            .unwrap()
            .events
            .is_empty()
    );
}

async fn forms_versions(store: Store) {
    let mut form = collect_shared::forms::builtin().remove(0);
    let stored = store.form(&form.id).await.unwrap().unwrap();
    assert_eq!(stored.version, 1);
    assert_eq!(stored.form, form);
    // The same definition again is a no-op; a changed one is the next version.
    let put = store.put_form(&form).await.unwrap();
    assert_eq!((put.version, put.created), (1, false));
    form.definition.title = "Changed".into();
    let put = store.put_form(&form).await.unwrap();
    assert_eq!((put.version, put.created), (2, false));
    assert_eq!(store.form_version(&form.id).await.unwrap(), Some(2));
    let new = Form {
        id: form_id("brand-new"),
        definition: form.definition.clone(),
    };
    let put = store.put_form(&new).await.unwrap();
    assert_eq!((put.version, put.created), (1, true));
    assert_eq!(
        store
            .form(&form_id("nope"))
            .await
            .unwrap()
            .map(|f| f.version),
        None
    );
}

async fn outbox_rows_and_parking(store: Store) {
    let form = form_id("household_finance");
    for id in ["o-1", "o-2", "o-3"] {
        save(&store, &message("household_finance", id, 1, "u"), &valid()).await;
    }
    let ids: Vec<ResponseId> = ["o-1", "o-2", "o-3"]
        .iter()
        .map(|id| ResponseId::parse(*id).unwrap())
        .collect();
    let queued: Vec<(&ResponseId, &FormId)> = ids.iter().map(|id| (id, &form)).collect();
    store.enqueue_many_for_sheet(&queued).await.unwrap();
    store.enqueue_many_for_sheet(&queued[..1]).await.unwrap();
    let pending = store.pending_forms().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (pending[0].form_id.as_str(), pending[0].waiting),
        ("household_finance", 3)
    );
    let rows = store.pending_rows(&form, 10, usize::MAX).await.unwrap();
    let order: Vec<&str> = rows
        .iter()
        .map(|r| r.response.response_id.as_str())
        .collect();
    assert_eq!(order, ["o-2", "o-3", "o-1"], "oldest marker first");
    assert!(rows.iter().all(|r| !r.force));

    // o-2 and o-3 written at rows 2 and 3; o-1 queued again meanwhile stays queued.
    let (sheet, tab) = ("sheet-1", "Responses ü");
    let before: Vec<(String, chrono::DateTime<Utc>)> = rows
        .iter()
        .map(|r| (r.response.response_id.to_string(), r.enqueued_at))
        .collect();
    store.enqueue_many_for_sheet(&queued[..1]).await.unwrap();
    store
        .record_written(
            at(&form, sheet, tab),
            BatchWritten {
                rows: &[
                    ("o-2".into(), 2, 1),
                    ("o-3".into(), 3, 1),
                    ("o-1".into(), 4, 1),
                ],
                done: &before,
                inserted: &[],
            },
        )
        .await
        .unwrap();
    let left = store.pending_rows(&form, 10, usize::MAX).await.unwrap();
    let left: Vec<&str> = left
        .iter()
        .map(|r| r.response.response_id.as_str())
        .collect();
    assert_eq!(left, ["o-1"]);
    let found = rows_of(&store, &form, sheet, tab, &["o-1", "o-2", "o-3", "zz"]).await;
    assert_eq!(
        found,
        [
            ("o-1".into(), 4, 1),
            ("o-2".into(), 2, 1),
            ("o-3".into(), 3, 1)
        ]
    );
    // Another tab, and another form's responses of the same ids, have no rows there.
    let other_form = FormId::parse("another-form").unwrap();
    assert_eq!(
        rows_of(&store, &other_form, sheet, tab, &["o-1", "o-2"]).await,
        []
    );
    assert_eq!(
        rows_of(&store, &form, sheet, "Responses u", &["o-1", "o-2"]).await,
        []
    );
    assert_eq!(store.sheet_row_count(sheet, tab).await.unwrap(), 3);
    assert_eq!(
        store.sheet_row_count(sheet, "Responses u").await.unwrap(),
        0
    );
    let position = store
        .sheet_position(&form, &ResponseId::parse("o-3").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((position.tab.as_str(), position.row), (tab, 3));

    // An append that inserted 2 rows at row 3 moved o-3 and o-1 down.
    store
        .record_written(
            at(&form, sheet, tab),
            BatchWritten {
                inserted: &[(3, 2)],
                ..BatchWritten::default()
            },
        )
        .await
        .unwrap();
    let found = rows_of(&store, &form, sheet, tab, &["o-1", "o-2", "o-3"]).await;
    assert_eq!(
        found,
        [
            ("o-1".into(), 6, 1),
            ("o-2".into(), 2, 1),
            ("o-3".into(), 5, 1)
        ]
    );

    // A person sorted the sheet and deleted o-2's row: resync says what the sheet holds.
    let forgotten = store
        .resync_sheet_rows(
            at(&form, sheet, tab),
            &[("o-1".into(), 2), ("o-3".into(), 3), ("new".into(), 4)],
        )
        .await
        .unwrap();
    assert_eq!(forgotten, 1);
    let found = rows_of(&store, &form, sheet, tab, &["o-1", "o-2", "o-3", "new"]).await;
    assert_eq!(
        found,
        [
            ("new".into(), 4, -1),
            ("o-1".into(), 2, 1),
            ("o-3".into(), 3, 1)
        ]
    );

    // o-1 refused by its sheet: parked with the reason, off the outbox.
    let waiting = store.pending_rows(&form, 10, usize::MAX).await.unwrap();
    let parked = store
        .park_rows(
            at(&form, sheet, tab),
            &[collect_shared::store::ParkRow {
                response_id: "o-1".into(),
                revision: 1,
                reason: "too big ✂".into(),
                enqueued_at: waiting[0].enqueued_at,
            }],
        )
        .await
        .unwrap();
    assert_eq!(parked, 1);
    assert_eq!(store.parked_count().await.unwrap(), 1);
    let row = store
        .sheet_parked(&form, &ResponseId::parse("o-1").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (row.reason.as_str(), row.revision, row.tab.as_str()),
        ("too big ✂", 1, tab)
    );
    assert!(store.pending_forms().await.unwrap().is_empty());
    let state = store.sheet_state(&form).await.unwrap();
    assert_eq!((state.rows_waiting, state.rows_parked), (0, 1));

    // An export queues every response again, forced, and unparks.
    assert_eq!(store.enqueue_form_export(&form).await.unwrap(), 3);
    assert_eq!(store.parked_count().await.unwrap(), 0);
    let rows = store.pending_rows(&form, 10, usize::MAX).await.unwrap();
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r.force));
    assert_eq!(store.forget_tab(sheet, tab).await.unwrap(), 3);
}

/// A batch read from the outbox holds about `max_bytes` of documents, however many rows the
/// limit allows: the reading stops after the row that reaches it, and the connection goes on
/// serving statements after the rows it left unread.
async fn pending_rows_stop_at_their_bytes(store: Store) {
    let form = form_id("household_finance");
    let ids = ["b-1", "b-2", "b-3", "b-4"];
    for id in ids {
        let mut big = message("household_finance", id, 1, "u");
        big.answers
            .insert("notes".into(), json!("x".repeat(10_000)));
        // Stored with its outbox marker, in one transaction.
        save(&store, &big, &valid()).await;
    }
    let all = store.pending_rows(&form, 10, usize::MAX).await.unwrap();
    assert_eq!(all.len(), 4);
    let one = &all[0];
    let expected = serde_json::to_vec(&one.response.answers).unwrap().len()
        + serde_json::to_vec(&one.response.metadata).unwrap().len()
        + serde_json::to_vec(&one.response.flags).unwrap().len();
    assert_eq!(one.document_bytes, expected);
    assert!(one.document_bytes > 10_000 && one.document_bytes < 11_000);

    // Each document is ~10 KB: the first two stay under 25,000 bytes, the third reaches it.
    for _ in 0..3 {
        let rows = store.pending_rows(&form, 10, 25_000).await.unwrap();
        let read: Vec<&str> = rows
            .iter()
            .map(|r| r.response.response_id.as_str())
            .collect();
        assert_eq!(read, ["b-1", "b-2", "b-3"]);
    }
    // At least one, however small the bound; and the limit still counts.
    let rows = store.pending_rows(&form, 10, 1).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].response.response_id.as_str(), "b-1");
    assert_eq!(
        store
            .pending_rows(&form, 2, usize::MAX)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(store.pending_forms().await.unwrap()[0].waiting, 4);
}

/// The waiting rows of a form: `(response_id, revision as stored)`, oldest first.
async fn waiting(store: &Store, form: &FormId) -> Vec<(String, u64)> {
    let rows = store.pending_rows(form, 100, usize::MAX).await.unwrap();
    rows.iter()
        .map(|r| {
            (
                r.response.response_id.to_string(),
                r.response.revision.get(),
            )
        })
        .collect()
}

async fn saving_queues_written_revisions(store: Store) {
    let form = form_id("household_finance");
    let other = form_id("other_form");
    // A batch: two new responses of two forms sharing an id, and one flagged.
    let (a, b) = (
        message("household_finance", "q-1", 1, "u"),
        message("other_form", "q-1", 1, "u"),
    );
    let outcomes = store
        .save_responses(&[
            NewResponse {
                message: &a,
                form_version: 1,
                flags: &valid().flags,
            },
            NewResponse {
                message: &b,
                form_version: 1,
                flags: &flagged().flags,
            },
        ])
        .await
        .unwrap();
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, SaveOutcome::Written { .. }))
    );
    assert_eq!(waiting(&store, &form).await, [("q-1".to_owned(), 1)]);
    assert_eq!(waiting(&store, &other).await, [("q-1".to_owned(), 1)]);

    // Written to the sheet: off the outbox. The same revision again (a redelivery) and an
    // older one do not queue it again; a newer one does.
    let pending = store.pending_rows(&form, 10, usize::MAX).await.unwrap();
    let before = [("q-1".to_owned(), pending[0].enqueued_at)];
    store
        .record_written(
            at(&form, "s", "t"),
            BatchWritten {
                rows: &[("q-1".into(), 2, 1)],
                done: &before,
                inserted: &[],
            },
        )
        .await
        .unwrap();
    assert_eq!(waiting(&store, &form).await, []);
    assert!(matches!(
        save(&store, &a, &valid()).await,
        SaveOutcome::Duplicate { .. }
    ));
    assert_eq!(waiting(&store, &form).await, []);
    let newer = message("household_finance", "q-1", 3, "u");
    save(&store, &newer, &flagged()).await;
    assert!(matches!(
        save(
            &store,
            &message("household_finance", "q-1", 2, "u"),
            &valid()
        )
        .await,
        SaveOutcome::Stale { .. }
    ));
    assert_eq!(waiting(&store, &form).await, [("q-1".to_owned(), 3)]);

    // Parked (the sheet refused revision 3), then revision 4 stored: unparked and queued.
    let pending = store.pending_rows(&form, 10, usize::MAX).await.unwrap();
    store
        .park_rows(
            at(&form, "s", "t"),
            &[collect_shared::store::ParkRow {
                response_id: "q-1".into(),
                revision: 3,
                reason: "refused".into(),
                enqueued_at: pending[0].enqueued_at,
            }],
        )
        .await
        .unwrap();
    assert_eq!(waiting(&store, &form).await, []);
    let id = ResponseId::parse("q-1").unwrap();
    assert!(store.sheet_parked(&form, &id).await.unwrap().is_some());
    save(
        &store,
        &message("household_finance", "q-1", 4, "u"),
        &valid(),
    )
    .await;
    assert_eq!(store.sheet_parked(&form, &id).await.unwrap(), None);
    assert_eq!(waiting(&store, &form).await, [("q-1".to_owned(), 4)]);
    // The other form's row was never touched.
    assert_eq!(waiting(&store, &other).await, [("q-1".to_owned(), 1)]);
}

/// A form's tab.
fn at<'a>(form_id: &'a FormId, spreadsheet_id: &'a str, tab: &'a str) -> FormTab<'a> {
    FormTab {
        form_id,
        spreadsheet_id,
        tab,
    }
}

/// The recorded rows of these responses in a tab, sorted.
async fn rows_of(
    store: &Store,
    form: &FormId,
    sheet: &str,
    tab: &str,
    ids: &[&str],
) -> Vec<(String, i32, i64)> {
    let ids: Vec<String> = ids.iter().map(|id| (*id).to_owned()).collect();
    let mut found = store.sheet_rows(at(form, sheet, tab), &ids).await.unwrap();
    found.sort();
    found
}

async fn tab_locks(store: Store) {
    let mut mine = store.lock_session().await.unwrap();
    let mut theirs = store.lock_session().await.unwrap();
    assert!(mine.try_lock_tab("s", "Tab").await.unwrap());
    assert!(
        mine.try_lock_tab("s", "Tab").await.unwrap(),
        "taken again by its holder"
    );
    assert!(!theirs.try_lock_tab("s", "Tab").await.unwrap());
    assert!(theirs.try_lock_tab("s", "Tab 2").await.unwrap());
    assert!(theirs.try_lock_tab("s2", "Tab").await.unwrap());
    mine.alive().await.unwrap();
    // A session that goes away frees its locks.
    mine.discard();
    let taken = lock_frees(&store).await;
    assert!(taken, "the lock of a closed session is free");
}

mod a_lock_session_whose_connection_ended {
    #[tokio::test]
    async fn postgres() {
        super::a_lock_session_whose_connection_ended("postgres").await;
    }

    #[tokio::test]
    async fn mysql() {
        super::a_lock_session_whose_connection_ended("mysql").await;
    }
}

/// A lock session whose connection the server ended (a restart, a failover, an
/// administrator) says it is not alive, and its locks are free for another session.
async fn a_lock_session_whose_connection_ended(engine: &str) {
    let database = Database::new(engine);
    let store = database.store().await;
    let mut session = store.lock_session().await.unwrap();
    assert!(session.try_lock_tab("s", "Tab").await.unwrap());
    session.alive().await.unwrap();
    database.end_sessions().await;
    assert!(
        session.alive().await.is_err(),
        "a session whose connection ended is not alive"
    );
    let taken = lock_frees(&store).await;
    assert!(taken, "the lock of an ended session is free");
    session.discard();
    database.drop().await;
}

/// Whether another session takes the lock of `s`/`Tab` within 5 s.
async fn lock_frees(store: &Store) -> bool {
    collect_testkit_free_eventually(|| {
        let store = store.clone();
        async move {
            let mut other = store.lock_session().await.unwrap();
            let got = other.try_lock_tab("s", "Tab").await.unwrap();
            other.discard();
            got
        }
    })
    .await
}

/// Polls for up to 5 s (a closed connection's locks go when the server notices).
async fn collect_testkit_free_eventually<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = std::time::Instant::now();
    loop {
        if check().await {
            return true;
        }
        if started.elapsed() > Duration::from_secs(5) {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn sheet_status(store: Store) {
    use collect_shared::store::SheetFailure;
    let failure = SheetFailure {
        form_id: form_id("household_finance"),
        spreadsheet_id: "gone".into(),
        tab: "Responses".into(),
        reason: "404: Requested entity was not found.".into(),
        about_this_sheet: true,
        failing_since: Utc.timestamp_micros(1_795_169_700_000_001).unwrap(),
    };
    store
        .report_sheet_failures("i-1", std::slice::from_ref(&failure))
        .await
        .unwrap();
    let state = store.sheet_state(&failure.form_id).await.unwrap();
    assert_eq!(state.failure, Some(failure.clone()));
    // Reported again with nothing failing: gone.
    store.report_sheet_failures("i-1", &[]).await.unwrap();
    assert_eq!(
        store.sheet_state(&failure.form_id).await.unwrap().failure,
        None
    );
}
