//! The bad-input corpus (`testdata/bad-input/`): every case gets its clean 4xx, or is accepted
//! and judged as the corpus says; the services never crash or hang on any of it.

use std::path::PathBuf;

use serde_json::Value;

use super::helpers::{KEY, Pipeline, rule_ids};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/bad-input")
}

fn body_of(case: &Value) -> Vec<u8> {
    if let Some(file) = case["body_file"].as_str() {
        return std::fs::read(corpus_dir().join(file)).unwrap();
    }
    if let Some(generate) = case["generate"].as_str() {
        let (kind, size) = generate.split_once(':').unwrap();
        let size: usize = size.parse().unwrap();
        return match kind {
            "nested" => format!("{}{}", "[".repeat(size), "]".repeat(size)).into_bytes(),
            "spaces" => vec![b' '; size],
            other => panic!("unknown generator {other}"),
        };
    }
    let mut text = case["body"].to_string();
    // `"expand": {"marker", "text", "times"}`: the marker in the body becomes `text` repeated.
    if let Some(expand) = case.get("expand") {
        let times = expand["times"].as_u64().unwrap() as usize;
        text = text.replace(
            expand["marker"].as_str().unwrap(),
            &expand["text"].as_str().unwrap().repeat(times),
        );
    }
    text.into_bytes()
}

#[tokio::test]
async fn every_bad_input_gets_its_expected_outcome() {
    let pipeline = Pipeline::start().await;
    let cases: Vec<Value> =
        serde_json::from_slice(&std::fs::read(corpus_dir().join("cases.json")).unwrap()).unwrap();
    assert!(cases.len() >= 20);
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let method = match case["method"].as_str().unwrap_or("POST") {
            "POST" => reqwest::Method::POST,
            "PUT" => reqwest::Method::PUT,
            other => panic!("{name}: unknown method {other}"),
        };
        let mut request = pipeline
            .client
            .request(method, pipeline.url(case["route"].as_str().unwrap()))
            .bearer_auth(KEY)
            .body(body_of(case));
        if let Some(content_type) = case["content_type"].as_str() {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(
            status,
            case["status"].as_u64().unwrap() as u16,
            "{name}: {body}"
        );
        if let Some(code) = case["code"].as_str() {
            assert_eq!(body["error"]["code"], code, "{name}: {body}");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty()),
                "{name}"
            );
        }
        if let Some(field) = case["field"].as_str() {
            assert_eq!(body["error"]["field"], field, "{name}: {body}");
        }
    }
    // The accepted ones are judged as expected.
    for case in cases
        .iter()
        .filter(|case| case["stored_status"].is_string())
    {
        let name = case["name"].as_str().unwrap();
        let id = case["response_id"].as_str().unwrap();
        let revision = 0;
        let form = case["form_id"].as_str().unwrap_or("household-finance");
        let stored = pipeline.stored_in(form, id, revision).await;
        assert_eq!(stored["status"], case["stored_status"], "{name}");
        let expected: Vec<String> = case["flags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|flag| flag.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(rule_ids(&stored["flags"]), expected, "{name}");
    }
    // The extra key and the text are kept as sent.
    let extra = pipeline.stored_in("household-finance", "c-extra", 0).await;
    assert_eq!(extra["answers"]["favourite colour"], "teal");
    let unicode = pipeline
        .stored_in("household-finance", "c-unicode", 0)
        .await;
    assert_eq!(unicode["answers"]["name"], "अनिता शर्मा 李娜 Zoë");
    assert_eq!(unicode["collector"]["username"], "अनिता");
    // A 60,000-character answer is kept whole (the sheet cuts its cell, not the store).
    let long = pipeline.stored_in("household-finance", "c-long", 0).await;
    assert_eq!(long["answers"]["name"].as_str().map(str::len), Some(60_000));
    // The same id in another form is another response.
    let other = pipeline.stored_in("corpus-visits", "c-extra", 0).await;
    assert_eq!(other["answers"], serde_json::json!({"visits": 2}));
    assert_eq!(
        pipeline.get("/v1/responses/c-extra").await.status(),
        409,
        "ambiguous without the form"
    );
    // Still alive and ready.
    assert_eq!(
        pipeline
            .client
            .get(pipeline.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    pipeline.stop().await;
}
