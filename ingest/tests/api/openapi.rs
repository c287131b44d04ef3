use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::helpers::{KEY, envelope, spawn_app};

/// The routes the README's "HTTP API" table lists, as `METHOD /path`.
fn readme_routes() -> BTreeSet<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("the README is readable");
    let section = readme
        .split("\n## HTTP API (ingest)")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("the README has an HTTP API section");
    section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|cell| cell.split('`').next())
        .filter(|route| route.contains(" /"))
        .map(str::to_owned)
        .collect()
}

/// The routes the OpenAPI document describes, as `METHOD /path`.
fn documented_routes(document: &Value) -> BTreeSet<String> {
    let mut routes = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("a path item").keys() {
            routes.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    routes
}

async fn fetch_document(app: &super::helpers::TestApp) -> Value {
    // No API key: the document is public, like /healthz.
    let response = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    response.json().await.unwrap()
}

/// `/openapi.json` describes exactly the routes the README lists, and each of them is served:
/// with its documented method it is routed (never the router's `404 not_found` or a `405`),
/// and with any other method it is a `405`.
#[tokio::test]
async fn the_openapi_document_describes_every_route_and_only_those() {
    let app = spawn_app().await;
    let document = fetch_document(&app).await;
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));

    let documented = documented_routes(&document);
    let listed = readme_routes();
    assert_eq!(
        documented, listed,
        "the document against the README's table"
    );
    assert_eq!(documented.len(), 23, "{documented:?}");

    for route in &documented {
        let (method, template) = route.split_once(' ').unwrap();
        let path = template
            .replace("{form_id}", "household-finance")
            .replace("{response_id}", "r-openapi")
            .replace("{user_id}", "u-openapi");
        let method: reqwest::Method = method.parse().unwrap();
        let mut request = app
            .client
            .request(method.clone(), app.url(&path))
            .bearer_auth(super::helpers::KEY);
        if method == reqwest::Method::POST || method == reqwest::Method::PUT {
            request = request
                .header("content-type", "application/json")
                .body("{}");
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        // A live stream (`flags:watch`) never ends: its status is enough.
        let streams = response
            .headers()
            .get("content-type")
            .is_some_and(|value| value == "text/event-stream");
        let body: Value = if streams {
            Value::Null
        } else {
            response.json().await.unwrap_or(Value::Null)
        };
        assert_ne!(status, 405, "{route} answered 405: {body}");
        assert!(
            !(status == 404 && body["error"]["code"] == "not_found"),
            "{route} is not routed: {body}"
        );

        for other in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
            if documented.contains(&format!("{other} {template}")) {
                continue;
            }
            let response = app
                .client
                .request(other.parse().unwrap(), app.url(&path))
                .bearer_auth(KEY)
                .send()
                .await
                .unwrap();
            assert_eq!(
                response.status(),
                405,
                "{other} {template} is served but not documented"
            );
        }
    }
    app.stop().await;
}

/// Every authenticated route says so, with the roles that may call it (and the public ones do
/// not), every `$ref` resolves, and every operation documents its success status.
#[tokio::test]
async fn the_openapi_document_is_complete() {
    let app = spawn_app().await;
    let document = fetch_document(&app).await;
    let public: BTreeSet<&str> = ["/healthz", "/readyz", "/metrics", "/openapi.json"].into();
    let schemes = document["components"]["securitySchemes"]
        .as_object()
        .unwrap();
    assert_eq!(
        schemes.keys().collect::<Vec<_>>(),
        ["bearer"],
        "one security scheme"
    );
    assert_eq!(schemes["bearer"]["type"], "http");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    let description = schemes["bearer"]["description"].as_str().unwrap();
    for named in ["COLLECT_API_KEYS", "admin", "reader", "collector"] {
        assert!(description.contains(named), "{description}");
    }
    let all_roles: BTreeSet<&str> = ["admin", "reader", "collector"].into();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let security = &operation["security"];
            if public.contains(path.as_str()) {
                assert!(security.is_null(), "{method} {path} is public: {security}");
            } else {
                // Exactly one requirement, of the bearer scheme, its scopes the roles that may
                // call the route: known roles, admin always among them, reader only on reads.
                let requirement = security
                    .as_array()
                    .filter(|requirements| requirements.len() == 1)
                    .and_then(|requirements| requirements[0].as_object())
                    .filter(|requirement| requirement.len() == 1)
                    .unwrap_or_else(|| panic!("{method} {path}: {security}"));
                let scopes = requirement["bearer"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{method} {path}: {security}"));
                let roles: BTreeSet<&str> = scopes.iter().map(|r| r.as_str().unwrap()).collect();
                assert_eq!(roles.len(), scopes.len(), "{method} {path}: {security}");
                assert!(roles.is_subset(&all_roles), "{method} {path}: {security}");
                assert!(roles.contains("admin"), "{method} {path}: {security}");
                assert!(
                    method == "get" || !roles.contains("reader"),
                    "{method} {path}: a reader only reads"
                );
                assert!(
                    operation["responses"].get("401").is_some(),
                    "{method} {path} documents 401"
                );
                assert!(
                    roles == all_roles || operation["responses"].get("403").is_some(),
                    "{method} {path} documents 403 for the roles it refuses"
                );
            }
            let responses = operation["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|status| status.starts_with('2')),
                "{method} {path} documents its success"
            );
        }
    }
    let mut references = Vec::new();
    collect_references(&document, &mut references);
    assert!(references.len() > 20, "{references:?}");
    for reference in references {
        let name = reference
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("an unexpected reference {reference}"));
        assert!(
            document["components"]["schemas"].get(name).is_some(),
            "{reference} does not resolve"
        );
    }
    app.stop().await;
}

fn collect_references(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref") {
                into.push(reference.clone());
            }
            map.values().for_each(|v| collect_references(v, into));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_references(v, into)),
        _ => {}
    }
}

/// What the routes answer has the fields their schemas name: every required one, and no
/// other.
#[tokio::test]
async fn answers_match_their_documented_schemas() {
    let app = spawn_app().await;
    let document = fetch_document(&app).await;
    let check = |schema: &str, body: &Value| {
        let schema = &document["components"]["schemas"][schema];
        let properties: BTreeSet<&str> = schema["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{schema} has properties"))
            .keys()
            .map(String::as_str)
            .collect();
        let required: BTreeSet<&str> = schema["required"]
            .as_array()
            .map(|names| names.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let present: BTreeSet<&str> = body
            .as_object()
            .unwrap_or_else(|| panic!("an object: {body}"))
            .keys()
            .map(String::as_str)
            .collect();
        assert!(
            present.is_subset(&properties),
            "{present:?} not in {properties:?}"
        );
        assert!(
            required.is_subset(&present),
            "{required:?} not in {present:?}"
        );
    };

    let accepted: Value = app
        .post_json(
            "/v1/forms/household-finance/responses",
            &envelope("r-schema", 1),
        )
        .await
        .json()
        .await
        .unwrap();
    check("Accepted", &accepted);

    let batch = app
        .post_json(
            "/v1/forms/household-finance/responses:batch",
            &json!([envelope("r-schema-2", 1), {"response_id": "r-3"}]),
        )
        .await;
    assert_eq!(batch.status(), 202);
    let batch: Value = batch.json().await.unwrap();
    check("BatchAnswer", &batch);
    check("Accepted", &batch["results"][0]);
    check("Rejected", &batch["results"][1]);
    check("ErrorDetail", &batch["results"][1]["error"]);

    let refused = app.post_json("/collect", &json!({"user_id": "u-1"})).await;
    assert_eq!(refused.status(), 422);
    let refused: Value = refused.json().await.unwrap();
    check("ErrorBody", &refused);
    check("ErrorDetail", &refused["error"]);

    let form: Value = app
        .client
        .get(app.url("/v1/forms/household-finance"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    check("StoredForm", &form);

    let export = app
        .post_json("/google-sheet", &json!({"table_name": "household-finance"}))
        .await;
    assert_eq!(export.status(), 202);
    check("ExportQueued", &export.json().await.unwrap());

    let flags: Value = app
        .client
        .get(app.url("/v1/collectors/u-17/flags"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    check("CollectorFlags", &flags);

    for (path, schema) in [("/healthz", "HealthReport"), ("/readyz", "ReadinessReport")] {
        let body: Value = app
            .client
            .get(app.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        check(schema, &body);
    }
    app.stop().await;
}
