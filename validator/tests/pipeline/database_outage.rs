use std::time::Duration;

use collect_testkit::{Engine, FaultProxy, eventually};
use serde_json::json;

use super::ENGINE;
use super::helpers::{Pipeline, seed, start_validator, validator_config};

/// The database going away: messages wait and are retried, never dead-lettered, and the
/// validator carries on by itself when it is back.
#[tokio::test]
async fn while_the_database_is_down_messages_wait_then_are_stored() {
    let pipeline = Pipeline::start_with(0).await;
    let proxy = FaultProxy::for_database(ENGINE).await;
    let through_proxy = proxy.database_url(&pipeline.database_url);
    let validator = start_validator(validator_config(
        &pipeline.namespace,
        &through_proxy,
        &collect_testkit::amqp_url(),
    ))
    .await;
    let mut dead = pipeline.dead_probe().await;
    assert_eq!(
        pipeline
            .post("/collect", &seed("r-before", "u", json!({})))
            .await
            .status(),
        202
    );
    pipeline.stored("r-before", 1_795_169_700_000).await;

    proxy.cut();
    assert_eq!(
        pipeline
            .post("/collect", &seed("r-during", "u", json!({})))
            .await
            .status(),
        202
    );
    // It is tried and fails, more than once...
    eventually(
        Duration::from_secs(20),
        "retries against the database",
        || async {
            (collect_testkit::counter_total("collect_retries_total", "") >= 2.0).then_some(())
        },
    )
    .await;
    // ...and is neither stored nor set aside.
    assert_eq!(pipeline.get("/v1/responses/r-during").await.status(), 404);
    assert!(
        dead.next_raw_within(Duration::from_millis(100))
            .await
            .is_none()
    );

    proxy.restore();
    pipeline.stored("r-during", 1_795_169_700_000).await;
    eventually(
        Duration::from_secs(10),
        "the validator queue drained",
        || async {
            (dead.queue_depth(&pipeline.topology.validator_queue()).await == 0).then_some(())
        },
    )
    .await;
    assert!(
        dead.next_raw_within(Duration::from_millis(300))
            .await
            .is_none()
    );
    validator.stop().await;
    pipeline.stop().await;
}

/// A statement that hangs (here behind a person's session that locks the table) is
/// cancelled by `DATABASE_STATEMENT_TIMEOUT_MS` and retried, rather than holding the batch
/// for ever; once the lock is gone the response is stored.
#[tokio::test]
async fn a_statement_stuck_behind_a_lock_times_out_and_is_retried() {
    // The lock every write to `responses` waits behind, and how the person lets it go.
    let (lock, unlock): (&[&'static str], &'static str) = match ENGINE {
        Engine::Postgres => (
            &["BEGIN", "LOCK TABLE responses IN ACCESS EXCLUSIVE MODE"],
            "ROLLBACK",
        ),
        Engine::MySql => (&["LOCK TABLES responses WRITE"], "UNLOCK TABLES"),
    };
    let pipeline = Pipeline::start_with(0).await;
    let mut config = validator_config(
        &pipeline.namespace,
        &pipeline.database_url,
        &collect_testkit::amqp_url(),
    );
    config.common.database_statement_timeout_ms = 300;
    let validator = start_validator(config).await;
    assert_eq!(
        pipeline
            .post("/collect", &seed("r-before", "u", json!({})))
            .await
            .status(),
        202
    );
    pipeline.stored("r-before", 1_795_169_700_000).await;

    let pool = collect_testkit::database_pool(&pipeline.database_url).await;
    let mut person = pool.acquire().await.unwrap();
    for statement in lock {
        sqlx::raw_sql(*statement)
            .execute(&mut *person)
            .await
            .unwrap();
    }
    assert_eq!(
        pipeline
            .post("/collect", &seed("r-during", "u", json!({})))
            .await
            .status(),
        202
    );
    eventually(
        Duration::from_secs(20),
        "the stuck statement cancelled and retried",
        || async {
            (collect_testkit::counter_total("collect_retries_total", "storing responses") >= 2.0)
                .then_some(())
        },
    )
    .await;
    sqlx::raw_sql(unlock).execute(&mut *person).await.unwrap();
    drop(person);
    pool.close().await;
    pipeline.stored("r-during", 1_795_169_700_000).await;
    validator.stop().await;
    pipeline.stop().await;
}
