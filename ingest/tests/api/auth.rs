use std::collections::BTreeSet;
use std::time::Duration;

use chrono::Utc;
use collect_shared::config::Namespace;
use collect_shared::messages::{FormId, ResponseEnvelope, ResponseMessage};
use collect_shared::rules::Evaluation;
use collect_shared::store::{NewResponse, Store, StoreSettings};
use ingest::Application;
use serde_json::{Value, json};

use super::helpers::{
    BOUND_KEY, BOUND_USER, COLLECTOR_KEY, KEY, OTHER_KEY, Options, READER_KEY, TestApp, config,
    envelope, envelope_of, error_of, spawn_app, spawn_app_with,
};

const ROUTE: &str = "/v1/forms/household-finance/responses";
const BATCH: &str = "/v1/forms/household-finance/responses:batch";

/// Each role's key: `(what it is, role, key)`.
const ROLE_KEYS: [(&str, &str, &str); 4] = [
    ("admin", "admin", KEY),
    ("reader", "reader", READER_KEY),
    ("unbound collector", "collector", COLLECTOR_KEY),
    ("collector bound to u-1", "collector", BOUND_KEY),
];

/// What an OpenAPI path item may hold besides its operations.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

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
        Some(format!("Bearer collector:{COLLECTOR_KEY}")),
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
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
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
            .next_within(Duration::from_millis(300))
            .await
            .is_none()
    );
    app.stop().await;
}

/// A path of the document with its parameters filled in: the collector the bound key is bound
/// to, the built-in form, and an id that exists nowhere for anything else. Only whether the
/// key check lets the request through matters, not what the route then answers.
fn fill(template: &str) -> String {
    let mut path = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        path.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("a closed parameter") + start;
        path.push_str(match &rest[start + 1..end] {
            "user_id" => BOUND_USER,
            "form_id" => "household-finance",
            _ => "x-auth-matrix",
        });
        rest = &rest[end + 1..];
    }
    path.push_str(rest);
    path
}

async fn call(app: &TestApp, method: &str, path: &str, key: Option<&str>) -> reqwest::Response {
    let method: reqwest::Method = method.to_uppercase().parse().unwrap();
    let mut request = app
        .client
        .request(method.clone(), app.url(path))
        .timeout(Duration::from_secs(20));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if [
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::PATCH,
    ]
    .contains(&method)
    {
        // Not a valid body for any route: the key check comes before the body is read.
        request = request
            .header("content-type", "application/json")
            .body("{}");
    }
    request.send().await.unwrap()
}

/// Every operation of the served document, routes added later included: without a key `401`;
/// with each role's key `403 forbidden` exactly when the role is not among the operation's
/// `bearer` scopes, and otherwise neither `401` nor `403`. Routes without `security` are the
/// public ones, served without a key.
#[tokio::test]
async fn every_operation_answers_each_role_as_its_security_says() {
    let app = spawn_app().await;
    let document: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut checked = 0;
    let mut public = BTreeSet::new();
    for (template, item) in document["paths"].as_object().unwrap() {
        for method in METHODS {
            let Some(operation) = item.get(method) else {
                continue;
            };
            let route = format!("{} {template}", method.to_uppercase());
            let path = fill(template);
            let Some(security) = operation.get("security") else {
                let response = call(&app, method, &path, None).await;
                assert_ne!(response.status(), 401, "{route} is public");
                public.insert(template.clone());
                continue;
            };
            let roles: BTreeSet<&str> = security[0]["bearer"]
                .as_array()
                .unwrap_or_else(|| panic!("{route}: {security}"))
                .iter()
                .map(|role| role.as_str().unwrap())
                .collect();

            let response = call(&app, method, &path, None).await;
            assert_eq!(response.status(), 401, "{route} without a key");
            assert_eq!(response.headers()["www-authenticate"], "Bearer", "{route}");
            assert_eq!(error_of(response).await.0, "unauthorized", "{route}");

            for (who, role, key) in ROLE_KEYS {
                let response = call(&app, method, &path, Some(key)).await;
                let status = response.status().as_u16();
                if roles.contains(role) {
                    assert!(
                        status != 401 && status != 403,
                        "{route} ({path}) refused a {who} key ({status}): {}",
                        response.text().await.unwrap_or_default()
                    );
                } else {
                    assert_eq!(status, 403, "{route} with a {who} key");
                    let body: Value = response.json().await.unwrap();
                    assert_eq!(body["error"]["code"], "forbidden", "{route}: {body}");
                    assert_eq!(body["error"]["field"], "Authorization", "{route}: {body}");
                    let message = body["error"]["message"].as_str().unwrap();
                    assert!(
                        message.contains(role) && message.contains(template.as_str()),
                        "{route}: the message names the role and the route: {message}"
                    );
                }
                // A stream (`flags:watch`) is dropped here, unread.
            }
            checked += 1;
        }
    }
    assert!(checked >= 12, "only {checked} operations with security");
    assert_eq!(
        public,
        ["/healthz", "/metrics", "/openapi.json", "/readyz"]
            .map(String::from)
            .into(),
    );
    app.stop().await;
}

/// The roles of the routes of this change, as designed (routes added later are checked by
/// the test above and by `openapi.rs`).
#[tokio::test]
async fn the_routes_have_their_designed_roles() {
    let app = spawn_app().await;
    let document: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let all = ["admin", "reader", "collector"];
    for (route, roles) in [
        ("post /collect", &["admin", "collector"][..]),
        (
            "post /v1/forms/{form_id}/responses",
            &["admin", "collector"],
        ),
        (
            "post /v1/forms/{form_id}/responses:batch",
            &["admin", "collector"],
        ),
        ("put /v1/forms/{form_id}", &["admin"]),
        ("get /v1/forms/{form_id}", &all),
        ("get /v1/forms/{form_id}/sheet", &["admin", "reader"]),
        ("post /v1/forms/{form_id}/sheet:export", &["admin"]),
        ("post /google-sheet", &["admin"]),
        ("get /v1/forms/{form_id}/responses/{response_id}", &all),
        ("get /v1/responses/{response_id}", &all),
        ("get /v1/collectors/{user_id}/flags", &all),
        ("get /v1/collectors/{user_id}/flags:history", &all),
    ] {
        let (method, path) = route.split_once(' ').unwrap();
        assert_eq!(
            document["paths"][path][method]["security"],
            json!([{"bearer": roles}]),
            "{route}"
        );
    }
    app.stop().await;
}

async fn post(app: &TestApp, key: &str, path: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn get(app: &TestApp, key: &str, path: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

async fn forbidden_field(response: reqwest::Response) -> String {
    assert_eq!(response.status(), 403);
    let (code, field) = error_of(response).await;
    assert_eq!(code, "forbidden");
    field.expect("a 403 names its field")
}

/// A collector key bound to `u-1` submits and reads flags for `u-1` only; a batch with one
/// item of another collector is refused whole. Nothing refused is published.
#[tokio::test]
async fn a_bound_collector_key_acts_for_its_collector_only() {
    let app = spawn_app().await;
    let mut probe = app.responses_probe().await;

    let response = post(&app, BOUND_KEY, ROUTE, &envelope_of("u-17", "r-1", 1)).await;
    assert_eq!(forbidden_field(response).await, "collector.user_id");
    let batch = json!([
        envelope_of(BOUND_USER, "r-2", 1),
        envelope_of(BOUND_USER, "r-3", 1),
        {"response_id": "r-bad"},
        envelope_of("u-17", "r-4", 1),
        envelope_of("u-18", "r-5", 1),
    ]);
    let response = post(&app, BOUND_KEY, BATCH, &batch).await;
    assert_eq!(forbidden_field(response).await, "[3].collector.user_id");
    // The seed payload names its collector by `user_id` (u-17 here).
    let response = post(&app, BOUND_KEY, "/collect", &super::helpers::seed_payload()).await;
    assert_eq!(forbidden_field(response).await, "user_id");
    assert!(
        probe
            .next_within(Duration::from_millis(500))
            .await
            .is_none(),
        "nothing refused is published"
    );

    let response = post(&app, BOUND_KEY, ROUTE, &envelope_of(BOUND_USER, "r-1", 1)).await;
    assert_eq!(response.status(), 202);
    let batch = json!([
        envelope_of(BOUND_USER, "r-2", 1),
        {"response_id": "r-bad"},
        envelope_of(BOUND_USER, "r-3", 1),
    ]);
    let response = post(&app, BOUND_KEY, BATCH, &batch).await;
    assert_eq!(response.status(), 202);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(
        (answer["accepted"].clone(), answer["rejected"].clone()),
        (json!(2), json!(1))
    );
    let mut seed = super::helpers::seed_payload();
    seed["user_id"] = json!(BOUND_USER);
    assert_eq!(post(&app, BOUND_KEY, "/collect", &seed).await.status(), 202);
    let mut published = BTreeSet::new();
    for _ in 0..4 {
        let message = probe.next().await;
        assert_eq!(message.body["collector"]["user_id"], BOUND_USER);
        published.insert(message.body["response_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        published,
        ["r-1", "r-2", "r-3", "r-1029"].map(String::from).into()
    );
    assert!(
        probe
            .next_within(Duration::from_millis(300))
            .await
            .is_none()
    );

    for route in ["flags", "flags:history"] {
        let other = get(&app, BOUND_KEY, &format!("/v1/collectors/u-17/{route}")).await;
        assert_eq!(forbidden_field(other).await, "user_id", "{route}");
        let own = get(
            &app,
            BOUND_KEY,
            &format!("/v1/collectors/{BOUND_USER}/{route}"),
        )
        .await;
        assert_eq!(own.status(), 200, "{route}");
        assert_eq!(own.json::<Value>().await.unwrap()["user_id"], BOUND_USER);
        // Other keys read any collector's flags.
        for key in [KEY, READER_KEY, COLLECTOR_KEY] {
            let response = get(&app, key, &format!("/v1/collectors/u-17/{route}")).await;
            assert_eq!(response.status(), 200, "{route}");
        }
    }
    // The live stream too: refused for another collector, an event stream for its own.
    let other = get(&app, BOUND_KEY, "/v1/collectors/u-17/flags:watch").await;
    assert_eq!(forbidden_field(other).await, "user_id");
    let own = get(
        &app,
        BOUND_KEY,
        &format!("/v1/collectors/{BOUND_USER}/flags:watch"),
    )
    .await;
    assert_eq!(own.status(), 200);
    assert_eq!(own.headers()["content-type"], "text/event-stream");
    drop(own);

    // An unbound collector key submits for anyone; a reader key submits nothing.
    let response = post(&app, COLLECTOR_KEY, ROUTE, &envelope_of("u-17", "r-9", 1)).await;
    assert_eq!(response.status(), 202);
    assert_eq!(probe.next().await.body["response_id"], "r-9");
    let response = post(&app, READER_KEY, ROUTE, &envelope_of("u-17", "r-10", 1)).await;
    assert_eq!(forbidden_field(response).await, "Authorization");
    assert!(
        probe
            .next_within(Duration::from_millis(300))
            .await
            .is_none()
    );
    app.stop().await;
}

/// A bound collector key reads only the stored responses whose collector is its own.
#[tokio::test]
async fn a_bound_collector_key_reads_its_collectors_responses_only() {
    let app = spawn_app().await;
    let store = Store::connect(&StoreSettings {
        url: app.database_url.clone(),
        max_connections: 2,
        statement_timeout: Duration::from_secs(10),
    })
    .await
    .unwrap();
    let form = FormId::parse("household-finance").unwrap();
    let messages: Vec<ResponseMessage> = [("r-mine", BOUND_USER), ("r-theirs", "u-17")]
        .into_iter()
        .map(|(response_id, user_id)| {
            let envelope: ResponseEnvelope =
                serde_json::from_value(envelope_of(user_id, response_id, 1)).unwrap();
            ResponseMessage::new(form.clone(), envelope, Utc::now())
        })
        .collect();
    let evaluation = Evaluation { flags: Vec::new() };
    let batch: Vec<NewResponse> = messages
        .iter()
        .map(|message| NewResponse {
            message,
            form_version: 1,
            flags: &evaluation.flags,
        })
        .collect();
    store.save_responses(&batch).await.unwrap();
    drop(store);

    for prefix in ["/v1/responses", "/v1/forms/household-finance/responses"] {
        let mine = get(&app, BOUND_KEY, &format!("{prefix}/r-mine")).await;
        assert_eq!(mine.status(), 200, "{prefix}");
        assert_eq!(
            mine.json::<Value>().await.unwrap()["collector"]["user_id"],
            BOUND_USER
        );
        let theirs = get(&app, BOUND_KEY, &format!("{prefix}/r-theirs")).await;
        assert_eq!(
            forbidden_field(theirs).await,
            "collector.user_id",
            "{prefix}"
        );
        let missing = get(&app, BOUND_KEY, &format!("{prefix}/r-none")).await;
        assert_eq!(missing.status(), 404, "{prefix}");
        for key in [KEY, READER_KEY, COLLECTOR_KEY] {
            let theirs = get(&app, key, &format!("{prefix}/r-theirs")).await;
            assert_eq!(theirs.status(), 200, "{prefix}");
        }
    }
    app.stop().await;
}

/// Keys from `COLLECT_API_KEYS_FILE` work beside those of `COLLECT_API_KEYS`.
#[tokio::test]
async fn keys_from_a_file_have_their_roles() {
    let path = std::env::temp_dir().join(format!("collect-keys-{}", uuid::Uuid::new_v4()));
    std::fs::write(
        &path,
        "# the field team\nreader:file-reader-key\n\ncollector@u-5:file-u-5-key\n",
    )
    .unwrap();
    let app = spawn_app_with(Options {
        configure: Some(Box::new({
            let path = path.clone();
            move |config| config.api_keys_file = Some(path)
        })),
        ..Options::default()
    })
    .await;
    std::fs::remove_file(&path).unwrap();
    let flags = |key: &'static str, user: &'static str| {
        let app = &app;
        async move {
            get(app, key, &format!("/v1/collectors/{user}/flags"))
                .await
                .status()
        }
    };
    assert_eq!(flags("file-reader-key", "u-17").await, 200);
    assert_eq!(flags("file-u-5-key", "u-5").await, 200);
    assert_eq!(flags("file-u-5-key", "u-17").await, 403);
    // The environment's keys still work.
    assert_eq!(flags(KEY, "u-17").await, 200);
    let response = post(&app, "file-reader-key", ROUTE, &envelope("r-1", 1)).await;
    assert_eq!(forbidden_field(response).await, "Authorization");
    app.stop().await;
}

#[tokio::test]
async fn ingest_refuses_to_start_with_a_malformed_key_without_showing_it() {
    let namespace: Namespace = collect_testkit::namespace();
    let database_url = collect_testkit::database_url(super::ENGINE);
    let mut malformed = config(&namespace, &database_url, &collect_testkit::amqp_url());
    malformed.api_keys = vec![
        "good-key".into(),
        "reader:another-good-key".into(),
        "raeder:sup3r-secret".into(),
    ];
    let error = Application::build(malformed)
        .await
        .err()
        .expect("a malformed key, no start");
    let error = format!("{error:#}");
    assert!(
        error.contains("COLLECT_API_KEYS entry 3: unknown role"),
        "{error}"
    );
    assert!(
        !error.contains("sup3r-secret") && !error.contains("good-key"),
        "{error}"
    );
    // Refused before anything was created.
    collect_testkit::drop_database(&database_url).await;
}

#[tokio::test]
async fn ingest_refuses_to_start_without_keys_unless_auth_is_off() {
    let namespace: Namespace = collect_testkit::namespace();
    let database_url = collect_testkit::database_url(super::ENGINE);
    let mut without_keys = config(&namespace, &database_url, &collect_testkit::amqp_url());
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
    let status =
        collect_testkit::eventually(Duration::from_secs(20), "a 202 without a key", || async {
            let response = client
                .post(&url)
                .header("content-type", "application/json")
                .body(envelope("r-1", 1).to_string())
                .send()
                .await
                .ok()?;
            (response.status() != 503).then_some(response.status())
        })
        .await;
    assert_eq!(status, 202);
    // Every route, without a key: the admin's routes, and any collector's flags.
    let response = client
        .put(format!("http://{addr}/v1/forms/household-finance"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let response = client
        .get(format!("http://{addr}/v1/collectors/u-17/flags"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    shutdown.cancel();
    server.await.unwrap().unwrap();
    collect_testkit::remove_namespace(&namespace).await;
    collect_testkit::drop_database(&database_url).await;
}
