use std::time::Duration;

use serde_json::json;

use super::helpers::{Options, envelope, error_of, spawn_app, spawn_app_with};

const ROUTE: &str = "/v1/forms/household-finance/responses";

#[tokio::test]
async fn malformed_bodies_are_400_and_never_reach_the_queue() {
    let app = spawn_app().await;
    let mut probe = app.responses_probe().await;
    let deeply_nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let bodies: Vec<Vec<u8>> = vec![
        b"{\"response_id\": ".to_vec(),
        b"".to_vec(),
        b"   ".to_vec(),
        b"{'response_id': 'r-1'}".to_vec(),
        b"{\"a\": NaN}".to_vec(),
        b"{\"a\": Infinity}".to_vec(),
        b"{\"a\": 1} trailing".to_vec(),
        vec![b'{', b'"', 0xff, 0xfe, b'"', b':', b'1', b'}'],
        deeply_nested.into_bytes(),
    ];
    for path in [
        ROUTE,
        "/collect",
        "/v1/forms/household-finance/responses:batch",
    ] {
        for body in &bodies {
            let response = app
                .post_raw(path, Some("application/json"), body.clone())
                .await;
            assert_eq!(
                response.status(),
                400,
                "{path} {}",
                String::from_utf8_lossy(body)
            );
            assert_eq!(error_of(response).await.0, "malformed_json");
        }
    }
    assert!(
        probe
            .next_within(Duration::from_millis(300))
            .await
            .is_none()
    );
    app.stop().await;
}

#[tokio::test]
async fn other_content_types_are_415() {
    let app = spawn_app().await;
    let body = envelope("r-1", 1).to_string().into_bytes();
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/json; charset=latin1"),
    ] {
        let response = app.post_raw(ROUTE, content_type, body.clone()).await;
        assert_eq!(response.status(), 415, "{content_type:?}");
        assert_eq!(
            error_of(response).await,
            ("unsupported_media_type".into(), Some("Content-Type".into()))
        );
    }
    for content_type in [
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/vnd.collect+json",
    ] {
        let response = app.post_raw(ROUTE, Some(content_type), body.clone()).await;
        assert_eq!(response.status(), 202, "{content_type}");
    }
    app.stop().await;
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let app = spawn_app_with(Options {
        configure: Some(Box::new(|config| config.max_body_bytes = 2048)),
        ..Options::default()
    })
    .await;
    let mut probe = app.responses_probe().await;
    let mut large = envelope("r-big", 1);
    large["answers"]["notes"] = json!("x".repeat(4096));

    let response = app.post_json(ROUTE, &large).await;
    assert_eq!(response.status(), 413);
    assert_eq!(error_of(response).await.0, "body_too_large");

    // Without a Content-Length (chunked), the limit holds while reading.
    let chunks = vec![Ok::<_, std::io::Error>(large.to_string())];
    let response = app
        .client
        .post(app.url(ROUTE))
        .bearer_auth(super::helpers::KEY)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);

    // A 10 MB body on the default limit.
    let response = app
        .post_raw(
            "/collect",
            Some("application/json"),
            vec![b' '; 10 * 1024 * 1024],
        )
        .await;
    assert_eq!(response.status(), 413);

    // Just under the limit passes.
    assert_eq!(
        app.post_json(ROUTE, &envelope("r-small", 1)).await.status(),
        202
    );
    assert_eq!(probe.next().await.body["response_id"], "r-small");
    assert!(
        probe
            .next_within(Duration::from_millis(300))
            .await
            .is_none()
    );
    app.stop().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let app = spawn_app().await;
    let response = app.post_json("/v2/nothing", &json!({})).await;
    assert_eq!(response.status(), 404);
    assert_eq!(error_of(response).await.0, "not_found");
    let response = app
        .client
        .get(app.url(ROUTE))
        .bearer_auth(super::helpers::KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(error_of(response).await.0, "method_not_allowed");
    app.stop().await;
}

#[tokio::test]
async fn health_and_metrics_answer() {
    let app = spawn_app().await;
    assert_eq!(
        app.post_json(ROUTE, &envelope("r-1", 1)).await.status(),
        202
    );
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(
        ready.json::<serde_json::Value>().await.unwrap(),
        json!({"status": "ready", "checks": {"broker": "ok", "database": "ok"}})
    );
    let metrics = app.metrics().await;
    assert!(metrics.contains(
        "collect_http_requests_total{route=\"/v1/forms/{form_id}/responses\",method=\"POST\",status=\"202\"}"
    ), "{metrics}");
    let exchange = app.topology.responses_exchange();
    assert!(
        metrics.contains(&format!(
            "collect_publish_confirm_seconds_count{{exchange=\"{exchange}\"}} 1"
        )),
        "{metrics}"
    );
    assert!(metrics.contains("collect_publishes_in_flight"), "{metrics}");
    app.stop().await;
}
