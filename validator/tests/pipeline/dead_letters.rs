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

/// The dead letters, once there is one.
async fn first_dead_letters(pipeline: &Pipeline) -> Vec<Value> {
    collect_testkit::eventually(
        std::time::Duration::from_secs(20),
        "the dead letter",
        || async {
            let listed = tool(pipeline, &["list"]);
            (!listed.is_empty()).then_some(listed)
        },
    )
    .await
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
    let listed = first_dead_letters(&pipeline).await;
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

/// A stored form whose rules no longer compile. `PUT` refuses such rules, but a newer CEL
/// engine could refuse what an older one took. Ingest reads only the form's definition and
/// accepts its responses; the validator sets each aside in `N.dead` with the compile errors;
/// once a `PUT` fixes the form, a replay stores it.
#[tokio::test]
async fn a_stored_form_whose_rules_no_longer_compile_sets_its_responses_aside() {
    use collect_shared::forms::Form;
    use collect_shared::messages::FormId;
    use collect_shared::store::{Store, StoreSettings};

    let pipeline = Pipeline::start().await;
    let store = Store::connect(&StoreSettings {
        url: pipeline.database_url.clone(),
        max_connections: 2,
        statement_timeout: std::time::Duration::from_secs(30),
    })
    .await
    .unwrap();
    let definition = |expression: &str| {
        json!({"title": "Broken", "questions": [{"id": "x", "label": "X", "type": "number"}],
               "rules": [{"id": "x_small", "expression": expression, "message": "x is big"}]})
    };
    let broken = Form {
        id: FormId::parse("broken-rules").unwrap(),
        definition: serde_json::from_value(definition("x <")).unwrap(),
    };
    store.put_form(&broken).await.unwrap();

    let submit =
        json!({"response_id": "r-broken", "collector": {"user_id": "u-5"}, "answers": {"x": 1}});
    let accepted = pipeline
        .post("/v1/forms/broken-rules/responses", &submit)
        .await;
    assert_eq!(accepted.status(), 202);
    let listed = first_dead_letters(&pipeline).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let reason = listed[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("form broken-rules version 1 does not compile: ")
            && reason.contains("x_small"),
        "{reason}"
    );

    let fixed = pipeline
        .put("/v1/forms/broken-rules", &definition("x < 10"))
        .await;
    assert_eq!(fixed.status(), 200);
    assert_eq!(
        tool(&pipeline, &["replay"]),
        vec![json!({"replayed": 1, "kept": 0})]
    );
    let stored = pipeline.stored_in("broken-rules", "r-broken", 0).await;
    assert_eq!(stored["status"], "valid");
    assert_eq!(stored["form_version"], 2);
    pipeline.stop().await;
}
