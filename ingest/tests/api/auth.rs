use collect_shared::config::Namespace;
use ingest::Application;

use super::helpers::{KEY, OTHER_KEY, Options, config, envelope, error_of, spawn_app};

const ROUTE: &str = "/v1/forms/household-finance/responses";

#[tokio::test]
async fn submissions_need_a_configured_bearer_key() {
    let app = spawn_app().await;
    let mut probe = app.responses_probe().await;
    let body = envelope("r-1", 1).to_string();
    let send = |authorization: Option<String>| {
        let mut request = app
            .client
            .post(app.url(ROUTE))
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        request.send()
    };

    for authorization in [
        None,
        Some("Bearer wrong-key".to_owned()),
        Some(format!("Basic {KEY}")),
        Some(format!("Bearer {KEY}x")),
        Some("Bearer".to_owned()),
        Some(String::new()),
    ] {
        let response = send(authorization.clone()).await.unwrap();
        assert_eq!(response.status(), 401, "{authorization:?}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        assert_eq!(error_of(response).await.0, "unauthorized");
    }
    // Both keys work, the scheme in any case.
    for authorization in [format!("Bearer {KEY}"), format!("bearer {OTHER_KEY}")] {
        assert_eq!(send(Some(authorization)).await.unwrap().status(), 202);
    }
    // /collect too; the health routes need no key.
    let response = app
        .client
        .post(app.url("/collect"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(
            app.client.get(app.url(path)).send().await.unwrap().status(),
            200,
            "{path}"
        );
    }
    for _ in 0..2 {
        probe.next().await;
    }
    assert!(
        probe
            .next_within(std::time::Duration::from_millis(300))
            .await
            .is_none()
    );
    app.stop().await;
}

#[tokio::test]
async fn ingest_refuses_to_start_without_keys_unless_auth_is_off() {
    let namespace: Namespace = collect_testkit::namespace();
    let database_url = collect_testkit::database_url(super::ENGINE);
    let mut without_keys = config(&namespace, &database_url, &Options::default());
    without_keys.api_keys = vec![" ".into(), String::new()];
    let error = Application::build(without_keys.clone())
        .await
        .err()
        .expect("no keys, no start");
    assert!(error.to_string().contains("COLLECT_API_KEYS"), "{error}");

    without_keys.auth = ingest::AuthMode::Off;
    let app = Application::build(without_keys)
        .await
        .expect("auth off starts");
    let addr = app.local_addr();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let client = reqwest::Client::new();
    let url = format!("http://{addr}{ROUTE}");
    let status = collect_testkit::eventually(
        std::time::Duration::from_secs(20),
        "a 202 without a key",
        || async {
            let response = client
                .post(&url)
                .header("content-type", "application/json")
                .body(envelope("r-1", 1).to_string())
                .send()
                .await
                .ok()?;
            (response.status() != 503).then_some(response.status())
        },
    )
    .await;
    assert_eq!(status, 202);
    shutdown.cancel();
    server.await.unwrap().unwrap();
    collect_testkit::remove_namespace(&namespace).await;
    collect_testkit::drop_database(&database_url).await;
}
