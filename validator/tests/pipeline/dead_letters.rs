use std::process::Command;

use collect_testkit::publish_raw;
use serde_json::{Value, json};

use super::helpers::Pipeline;

/// Runs `validator dead-letters ...` on this pipeline's namespace; its stdout lines as JSON.
fn tool(pipeline: &Pipeline, args: &[&str]) -> Vec<Value> {
    let output = Command::new(env!("CARGO_BIN_EXE_validator"))
        .arg("dead-letters")
        .args(args)
        .env("COLLECT_NAMESPACE", pipeline.namespace.as_str())
        .env("AMQP_URL", collect_testkit::amqp_url())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test]
async fn dead_letters_can_be_listed_and_replayed_once_the_cause_is_fixed() {
    let pipeline = Pipeline::start().await;
    let message = json!({"form_id": "later-form", "response_id": "r-dead", "collector": {"user_id": "u"}, "answers": {"x": 1}});
    publish_raw(
        &pipeline.topology.responses_exchange(),
        "later-form",
        message.to_string().as_bytes(),
    )
    .await;
    let listed = collect_testkit::eventually(
        std::time::Duration::from_secs(20),
        "the dead letter",
        || async {
            let listed = tool(&pipeline, &["list"]);
            (!listed.is_empty()).then_some(listed)
        },
    )
    .await;
    assert_eq!(listed.len(), 1);
    assert!(
        listed[0]["reason"]
            .as_str()
            .unwrap()
            .contains("unknown form"),
        "{listed:?}"
    );
    assert_eq!(
        listed[0]["replay_to"],
        json!([pipeline.topology.responses_exchange(), "later-form"])
    );
    assert_eq!(
        serde_json::from_str::<Value>(listed[0]["body"].as_str().unwrap()).unwrap(),
        message
    );
    assert_eq!(
        tool(&pipeline, &["list"]).len(),
        1,
        "listing leaves it there"
    );

    // The cause is fixed: the form exists now. Replayed, it is stored.
    let form =
        json!({"title": "Later", "questions": [{"id": "x", "label": "X", "type": "number"}]});
    assert_eq!(
        pipeline.put("/v1/forms/later-form", &form).await.status(),
        201
    );
    assert_eq!(
        tool(&pipeline, &["replay"]),
        vec![json!({"replayed": 1, "kept": 0})]
    );
    let stored = pipeline.stored("r-dead", 0).await;
    assert_eq!(stored["status"], "valid");
    assert!(tool(&pipeline, &["list"]).is_empty());
    pipeline.stop().await;
}
