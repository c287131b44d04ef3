use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use collect_testkit::{Engine, publish_raw};
use lapin::types::AMQPValue;
use serde_json::{Value, json};

use super::ENGINE;
use super::helpers::{Pipeline, seed};

/// On MySQL, makes the database refuse the responses `ids` as it refuses data it cannot hold: a
/// data exception (SQLSTATE 22000) on their insert, from a trigger of the test's own.
///
/// The responses these tests send are ones PostgreSQL refuses by itself (U+0000 in `jsonb`:
/// 22P05), and MySQL/MariaDB takes (its JSON holds `\u0000`); on PostgreSQL nothing is added.
async fn refuse_on_mysql(database_url: &str, ids: &[&str]) {
    if ENGINE != Engine::MySql {
        return;
    }
    let ids: Vec<String> = ids.iter().map(|id| format!("'{id}'")).collect();
    let trigger = format!(
        "CREATE TRIGGER the_test_refuses_these BEFORE INSERT ON responses FOR EACH ROW
         IF NEW.response_id IN ({}) THEN
             SIGNAL SQLSTATE '22000' SET MESSAGE_TEXT = 'the test refuses this response';
         END IF",
        ids.join(", ")
    );
    let pool = collect_testkit::database_pool(database_url).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(trigger))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

/// A dead letter's `x-collect-reason`.
fn reason(headers: &lapin::types::FieldTable) -> String {
    match headers.inner().get("x-collect-reason") {
        Some(AMQPValue::LongString(reason)) => reason.to_string(),
        other => panic!("no reason header: {other:?}"),
    }
}

#[tokio::test]
async fn poison_messages_land_in_dead_with_their_reason_and_never_loop() {
    let pipeline = Pipeline::start().await;
    refuse_on_mysql(&pipeline.database_url, &["r-nul"]).await;
    let mut dead = pipeline.dead_probe().await;
    let exchange = pipeline.topology.responses_exchange();
    let garbage: Vec<Vec<u8>> = vec![
        b"not json at all".to_vec(),
        vec![0xff, 0xfe, 0x00],
        json!({"form_id": "household-finance", "collector": {"user_id": "u"}}).to_string().into_bytes(),
        json!({"form_id": "no-such-form", "response_id": "r-x", "collector": {"user_id": "u"}}).to_string().into_bytes(),
        json!({"form_id": "household-finance", "response_id": "r-y", "collector": {"user_id": "u"}, "revision": u64::MAX}).to_string().into_bytes(),
        // What ingest refuses, but another backend may publish: PostgreSQL cannot store them
        // (on MySQL, the first is refused by the test's trigger).
        json!({"form_id": "household-finance", "response_id": "r-nul", "collector": {"user_id": "u"}, "answers": {"name": "a\u{0}b"}}).to_string().into_bytes(),
        json!({"form_id": "household-finance", "response_id": "r-old", "collector": {"user_id": "u"}, "submitted_at": "-5000-01-01T00:00:00Z"}).to_string().into_bytes(),
    ];
    for body in &garbage {
        publish_raw(&exchange, "household-finance", body).await;
    }

    let mut reasons = BTreeSet::new();
    let mut reason_of = HashMap::new();
    let mut bodies = Vec::new();
    for _ in 0..garbage.len() {
        let message = dead.next_raw().await;
        let headers = message.properties.headers().clone().unwrap_or_default();
        let reason = reason(&headers);
        assert!(matches!(
            headers.inner().get("x-collect-queue"),
            Some(AMQPValue::LongString(queue)) if queue.to_string() == pipeline.topology.validator_queue()
        ));
        reasons.insert(reason.split(':').next().unwrap().to_owned());
        if let Some(id) = serde_json::from_slice::<Value>(&message.data)
            .ok()
            .and_then(|body| Some(body["response_id"].as_str()?.to_owned()))
        {
            reason_of.insert(id, reason);
        }
        bodies.push(message.data);
    }
    bodies.sort();
    let mut sent = garbage.clone();
    sent.sort();
    assert_eq!(bodies, sent, "each poison message is kept as it was");
    assert!(reasons.contains("not a response message"), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.starts_with("unknown form")),
        "{reasons:?}"
    );
    assert!(
        reason_of["r-y"].contains("revision must be at most 9223372036854775807"),
        "{}",
        reason_of["r-y"]
    );
    let (nul, old) = (&reason_of["r-nul"], &reason_of["r-old"]);
    match ENGINE {
        Engine::Postgres => {
            assert!(
                nul.starts_with("PostgreSQL refused it (22P05)"),
                "U+0000 in jsonb: {nul}"
            );
            assert!(
                old.starts_with("PostgreSQL refused it (22008)"),
                "a time out of range: {old}"
            );
        }
        Engine::MySql => {
            assert!(
                nul.starts_with("MySQL refused it (22000)"),
                "refused by the trigger: {nul}"
            );
            // DATETIME holds the years 1000 to 9999: the engine refuses the year -5000 before
            // any statement is built (a permanent encode error).
            assert!(
                old.contains("submitted_at -5000-01-01 00:00:00 UTC of response r-old is out of range for MySQL"),
                "a time out of range: {old}"
            );
        }
    }
    assert!(
        dead.next_raw_within(Duration::from_millis(500))
            .await
            .is_none(),
        "each once"
    );

    // The validator lives on and its queue is empty.
    assert_eq!(
        pipeline
            .post("/collect", &seed("r-after", "u", json!({})))
            .await
            .status(),
        202
    );
    pipeline.stored("r-after", 1_795_169_700_000).await;
    assert_eq!(
        dead.queue_depth(&pipeline.topology.validator_queue()).await,
        0
    );
    pipeline.stop().await;
}

/// A message as another backend would publish it to `N.responses`.
fn message(response_id: &str, answers: serde_json::Value) -> Vec<u8> {
    json!({
        "form_id": "household-finance",
        "response_id": response_id,
        "revision": 1,
        "collector": {"user_id": "u-mixed"},
        "answers": answers,
    })
    .to_string()
    .into_bytes()
}

/// One delivery the database refuses for its data (U+0000 in an answer: `jsonb` cannot hold
/// it; on MySQL, the test's trigger refuses it) among ten good ones, all handed to the worker
/// as one batch: the ten are stored, the bad one goes to `N.dead` with the engine's reason, and
/// nothing is left unacked.
#[tokio::test]
async fn a_response_the_database_refuses_is_set_aside_and_the_rest_of_its_batch_is_stored() {
    use collect_shared::amqp::{Broker, BrokerSettings, PublishSettings, Publisher};
    use collect_shared::store::{FormCache, Store, StoreSettings};
    use lapin::options::BasicGetOptions;

    let pipeline = Pipeline::start_with(0).await;
    refuse_on_mysql(&pipeline.database_url, &["r-mix-5"]).await;
    let mut dead = pipeline.dead_probe().await;
    let exchange = pipeline.topology.responses_exchange();
    let queue = pipeline.topology.validator_queue();
    for i in 0..11 {
        let answers = if i == 5 {
            json!({"name": "Asha\u{0}Rao", "age": 34})
        } else {
            json!({"name": "Asha Rao", "age": 34})
        };
        publish_raw(
            &exchange,
            "household-finance",
            &message(&format!("r-mix-{i}"), answers),
        )
        .await;
    }

    // The eleven as one batch, as the consumer would hand them over when they arrive together.
    let connection = lapin::Connection::connect(
        &collect_testkit::amqp_url(),
        lapin::ConnectionProperties::default(),
    )
    .await
    .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let mut deliveries = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while deliveries.len() < 11 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "eleven deliveries within 10 s"
        );
        match channel
            .basic_get(queue.as_str().into(), BasicGetOptions::default())
            .await
            .unwrap()
        {
            Some(got) => deliveries.push(got.delivery),
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }

    let shutdown = tokio_util::sync::CancellationToken::new();
    let store = Store::connect(&StoreSettings {
        url: pipeline.database_url.clone(),
        max_connections: 4,
        statement_timeout: Duration::from_secs(30),
    })
    .await
    .unwrap();
    let broker = Broker::start(BrokerSettings::new(
        collect_testkit::amqp_url(),
        "validator",
        pipeline.topology.clone(),
    ));
    let worker = validator::worker::Worker {
        forms: FormCache::new(
            store.clone(),
            Duration::from_secs(2),
            collect_shared::rules::CompiledForm::compile_for_cache,
        ),
        store,
        publisher: Publisher::new(broker.clone(), PublishSettings::default(), "test"),
        topology: pipeline.topology.clone(),
        shutdown: shutdown.clone(),
        saved_gather_max: 100,
    };
    let acks: Vec<lapin::Acker> = deliveries.iter().map(|d| d.acker.clone()).collect();
    let settled = tokio::time::timeout(Duration::from_secs(30), worker.handle_batch(deliveries))
        .await
        .expect("the batch is handled, not retried for ever");
    // Every delivery is to be acked (the bad one once it is in `N.dead`); the consumer would.
    assert_eq!(settled, vec![collect_shared::amqp::Settled::Ack; 11]);
    for acker in acks {
        acker
            .ack(lapin::options::BasicAckOptions::default())
            .await
            .unwrap();
    }

    for i in (0..11).filter(|&i| i != 5) {
        let stored = pipeline.stored(&format!("r-mix-{i}"), 1).await;
        assert_eq!(stored["answers"]["name"], "Asha Rao");
    }
    assert_eq!(
        pipeline.get("/v1/responses/r-mix-5").await.status(),
        404,
        "the refused one is not stored"
    );
    let letter = dead.next_raw().await;
    assert_eq!(
        letter.data,
        message("r-mix-5", json!({"name": "Asha\u{0}Rao", "age": 34}))
    );
    let reason = reason(&letter.properties.headers().clone().unwrap_or_default());
    let expected = match ENGINE {
        Engine::Postgres => "PostgreSQL refused it (22P05)",
        Engine::MySql => "MySQL refused it (22000)",
    };
    assert!(reason.starts_with(expected), "{reason}");
    assert!(
        dead.next_raw_within(Duration::from_millis(500))
            .await
            .is_none(),
        "only the refused one is dead-lettered"
    );
    // Every delivery was acked: with the channel closed, none goes back to the queue.
    channel.close(200, "done".into()).await.unwrap();
    assert_eq!(dead.queue_depth(&queue).await, 0);
    broker.close().await;
    pipeline.stop().await;
}
