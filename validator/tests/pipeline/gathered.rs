//! Responses gathered into one message: ingest publishes those that arrive together as a JSON
//! array, and the validator takes arrays from any publisher, setting aside only the parts it
//! cannot process.

use std::collections::BTreeSet;

use collect_testkit::publish_raw;
use lapin::types::AMQPValue;
use serde_json::{Value, json};

use super::helpers::{Pipeline, seed};

fn response(id: &str, answers: Value) -> Value {
    json!({
        "form_id": "household-finance",
        "response_id": id,
        "revision": 1,
        "collector": {"user_id": "u-gathered"},
        "answers": answers,
    })
}

#[tokio::test]
async fn concurrent_requests_share_messages_and_every_response_is_stored_once() {
    let pipeline = Pipeline::start().await;
    let mut published =
        collect_testkit::Probe::bind(&pipeline.topology.responses_exchange(), "household-finance")
            .await;
    let mut saved = collect_testkit::Probe::bind(&pipeline.topology.saved_exchange(), "#").await;
    let ids: Vec<String> = (0..200).map(|i| format!("g-{i}")).collect();
    let payloads: Vec<Value> = ids.iter().map(|id| seed(id, "u", json!({}))).collect();
    let answers = futures::future::join_all(
        payloads
            .iter()
            .map(|payload| pipeline.post("/collect", payload)),
    )
    .await;
    assert!(answers.iter().all(|a| a.status() == 202));

    // What reached N.responses: every response once, in fewer messages than responses.
    let (seen, messages) = gathered_ids(&mut published, ids.len()).await;
    let distinct: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "each response in one message");
    assert_eq!(seen.len(), ids.len(), "and only once");
    assert!(
        messages < ids.len(),
        "{messages} messages for {} responses",
        ids.len()
    );

    for id in &ids {
        let stored = pipeline.stored(id, 1_795_169_700_000).await;
        assert_eq!(stored["status"], "valid", "{id}");
    }

    // N.saved gathers the stored rows of a transaction too (`VALIDATOR_SAVED_GATHER_MAX`).
    let (seen, messages) = gathered_ids(&mut saved, ids.len()).await;
    let distinct: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(distinct, ids.iter().collect(), "every stored row once");
    assert_eq!(seen.len(), ids.len(), "and only once");
    assert!(
        messages < ids.len(),
        "{messages} N.saved messages for {} rows",
        ids.len()
    );
    pipeline.stop().await;
}

/// Reads messages until they carried `count` responses (a message is one, or an array of at
/// least two and at most 100, of one form, its `message_id` the first one's id): the ids
/// seen, in order, and how many messages carried them.
async fn gathered_ids(probe: &mut collect_testkit::Probe, count: usize) -> (Vec<String>, usize) {
    let mut seen = Vec::new();
    let mut messages = 0;
    while seen.len() < count {
        let message = probe.next_raw().await;
        messages += 1;
        let body: Value = serde_json::from_slice(&message.data).unwrap();
        match body {
            Value::Array(parts) => {
                assert!(parts.len() >= 2, "an array gathers several");
                assert!(parts.len() <= 100, "the gathering's maximum");
                assert!(
                    parts
                        .iter()
                        .all(|p| p["form_id"] == message.routing_key.as_str()),
                    "one form a message, its routing key"
                );
                let first = parts[0]["response_id"].as_str().unwrap();
                assert_eq!(
                    message.properties.message_id().as_ref().unwrap().as_str(),
                    first
                );
                seen.extend(
                    parts
                        .iter()
                        .map(|p| p["response_id"].as_str().unwrap().to_owned()),
                );
            }
            one => seen.push(one["response_id"].as_str().unwrap().to_owned()),
        }
    }
    (seen, messages)
}

#[tokio::test]
async fn an_array_from_any_publisher_is_stored_part_by_part_and_bad_parts_set_aside_alone() {
    let pipeline = Pipeline::start().await;
    let mut dead = pipeline.dead_probe().await;
    let exchange = pipeline.topology.responses_exchange();
    let bad_part = json!({"form_id": "household-finance", "collector": {"user_id": "u"}});
    let unknown_form =
        json!({"form_id": "no-such-form", "response_id": "a-x", "collector": {"user_id": "u"}});
    let array = json!([
        response("a-1", json!({"name": "Asha"})),
        bad_part,
        response("a-2", json!({"name": "Ravi"})),
        unknown_form,
        // The same response twice in one message: the later revision wins.
        response("a-1", json!({"name": "Asha Rao"})),
    ]);
    let mut later = array[4].clone();
    later["revision"] = json!(2);
    let mut array = array;
    array[4] = later;
    publish_raw(&exchange, "household-finance", array.to_string().as_bytes()).await;
    publish_raw(&exchange, "household-finance", b"[]").await;
    publish_raw(&exchange, "household-finance", b"[{\"form_id\": ").await;

    let stored = pipeline.stored("a-1", 2).await;
    assert_eq!(stored["answers"]["name"], "Asha Rao");
    let stored = pipeline.stored("a-2", 1).await;
    assert_eq!(stored["answers"]["name"], "Ravi");

    let mut letters = Vec::new();
    for _ in 0..4 {
        let letter = dead.next_raw().await;
        let headers = letter.properties.headers().clone().unwrap_or_default();
        let reason = match headers.inner().get("x-collect-reason") {
            Some(AMQPValue::LongString(reason)) => reason.to_string(),
            other => panic!("no reason: {other:?}"),
        };
        letters.push((String::from_utf8(letter.data).unwrap(), reason));
    }
    letters.sort();
    let bodies: Vec<&str> = letters.iter().map(|(body, _)| body.as_str()).collect();
    assert_eq!(
        bodies,
        [
            "[]",
            "[{\"form_id\": ",
            &serde_json::to_string(&array[1]).unwrap(),
            &serde_json::to_string(&array[3]).unwrap(),
        ],
        "each bad part alone, as it was; a bad array whole"
    );
    assert!(letters[0].1.contains("empty"), "{:?}", letters[0]);
    assert!(
        letters[1]
            .1
            .starts_with("not a response message or an array"),
        "{:?}",
        letters[1]
    );
    assert!(
        letters[2].1.starts_with("not a response message"),
        "{:?}",
        letters[2]
    );
    assert!(letters[3].1.starts_with("unknown form"), "{:?}", letters[3]);
    assert!(
        dead.next_raw_within(std::time::Duration::from_millis(500))
            .await
            .is_none(),
        "each once"
    );
    assert_eq!(
        dead.queue_depth(&pipeline.topology.validator_queue()).await,
        0,
        "every delivery acked"
    );
    pipeline.stop().await;
}

#[tokio::test]
async fn a_message_of_large_responses_is_stored_a_few_at_a_time() {
    // Twelve responses of ~200 KB in one message (another publisher's, or ingest's under an
    // older limit): stored a few per transaction (about 1 MB each), in order, every one.
    let pipeline = Pipeline::start().await;
    let mut dead = pipeline.dead_probe().await;
    let notes = |i: usize| format!("{i}:{}", "x".repeat(200_000));
    let mut parts: Vec<Value> = (0..12)
        .map(|i| response(&format!("big-{i}"), json!({"notes": notes(i)})))
        .collect();
    // The last part is big-0 again, a later revision: it is stored in a later transaction.
    parts[11] = response("big-0", json!({"notes": notes(99)}));
    parts[11]["revision"] = json!(2);
    let body = Value::Array(parts).to_string();
    publish_raw(
        &pipeline.topology.responses_exchange(),
        "household-finance",
        body.as_bytes(),
    )
    .await;

    let stored = pipeline.stored("big-0", 2).await;
    assert_eq!(stored["answers"]["notes"], notes(99));
    for i in 1..11 {
        let stored = pipeline.stored(&format!("big-{i}"), 1).await;
        assert_eq!(stored["answers"]["notes"], notes(i), "big-{i}");
    }
    assert!(
        dead.next_raw_within(std::time::Duration::from_millis(300))
            .await
            .is_none(),
        "nothing set aside"
    );
    assert_eq!(
        dead.queue_depth(&pipeline.topology.validator_queue()).await,
        0,
        "the delivery acked"
    );
    pipeline.stop().await;
}
