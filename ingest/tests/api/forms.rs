//! `PUT /v1/forms/{id}`: the limits on rules (see `collect_shared::rules::limits`).

use serde_json::{Value, json};

use super::helpers::{KEY, TestApp, spawn_app};

fn form(rules: Vec<Value>) -> Value {
    json!({
        "title": "Limits",
        "questions": [
            {"id": "a", "label": "A", "type": "number"},
            {"id": "region", "label": "Region", "type": "string"}
        ],
        "rules": rules
    })
}

fn with_sheet(sheet: Value) -> Value {
    let mut body = form(vec![]);
    body["sheet"] = sheet;
    body
}

fn rule(id: &str, expression: &str) -> Value {
    json!({"id": id, "expression": expression, "message": "no"})
}

async fn put(app: &TestApp, form_id: &str, body: &Value) -> (u16, Value) {
    let response = app
        .client
        .put(app.url(&format!("/v1/forms/{form_id}")))
        .bearer_auth(KEY)
        .json(body)
        .send()
        .await
        .expect("ingest answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    let response = app
        .client
        .get(app.url(path))
        .bearer_auth(KEY)
        .send()
        .await
        .expect("ingest answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn rules_over_the_limits_get_422_naming_the_rule() {
    let app = spawn_app().await;
    let sum = |terms: usize| format!("{} > 0", vec!["a"; terms].join(" + "));
    let nested = |depth: usize| format!("{}a{} > 0", "(".repeat(depth), ")".repeat(depth));
    let long = |chars: usize| format!("region != '{}'", "x".repeat(chars - 12));
    let fine = rule("fine", "a > 0");

    // At every limit: accepted.
    let mut at_limits: Vec<Value> = (0..196).map(|i| rule(&format!("r{i}"), "a >= 0")).collect();
    at_limits.push(rule("long", &long(4096)));
    at_limits.push(rule("deep", &sum(63)));
    at_limits.push(rule("brackets", &nested(32)));
    at_limits.push(rule("macro", "[1, 2].all(x, x > 0)"));
    assert_eq!(at_limits.len(), 200);
    let (status, body) = put(&app, "at-limits", &form(at_limits.clone())).await;
    assert_eq!(status, 201, "{body}");

    // Over each: 422, naming the rule.
    let mut too_many = at_limits;
    too_many.push(rule("one_more", "a >= 0"));
    let cases = [
        (form(too_many), "rules", "at most 200 rules"),
        (
            form(vec![fine.clone(), rule("long", &long(4097))]),
            "rules[1].expression",
            "rule \"long\": the expression is 4097 characters long; at most 4096 are allowed",
        ),
        (
            form(vec![
                fine.clone(),
                rule("other", "a < 9"),
                rule("deep", &sum(64)),
            ]),
            "rules[2].expression",
            "nested more than 64 deep",
        ),
        (
            form(vec![rule("brackets", &nested(33))]),
            "rules[0].expression",
            "rule \"brackets\" at line 1, column 33: brackets are nested more than 32 deep",
        ),
        (
            form(vec![
                fine.clone(),
                rule("macros", "[1].all(x, [2].exists(y, y > x))"),
            ]),
            "rules[1].expression",
            "macros (all, exists, exists_one, map, filter) are nested more than 1 deep",
        ),
        // The chain that would overflow a thread's stack (a+a+…, 4,096 characters): refused.
        (
            form(vec![rule("chain", &format!("a{}", "+a".repeat(2047)))]),
            "rules[0].expression",
            "nested more than 64 deep",
        ),
    ];
    for (body, field, message) in cases {
        let (status, answer) = put(&app, "over-limits", &body).await;
        assert_eq!(status, 422, "{field}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_field", "{answer}");
        assert_eq!(answer["error"]["field"], field, "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(message)),
            "{answer}"
        );
    }
    let missing = app
        .client
        .get(app.url("/v1/forms/over-limits"))
        .bearer_auth(KEY)
        .send()
        .await
        .expect("ingest answers");
    assert_eq!(missing.status(), 404);
    app.stop().await;
}

/// `sheet.spreadsheet_id` goes into the Sheets API's URL path and `sheet.tab` into ranges:
/// refused before they get there.
#[tokio::test]
async fn spreadsheet_ids_and_tabs_are_checked_before_they_reach_a_url() {
    let app = spawn_app().await;
    for (sheet, field) in [
        (
            json!({"spreadsheet_id": "../../v4/other"}),
            "sheet.spreadsheet_id",
        ),
        (
            json!({"spreadsheet_id": "abc?fields=x"}),
            "sheet.spreadsheet_id",
        ),
        (json!({"spreadsheet_id": ""}), "sheet.spreadsheet_id"),
        (
            json!({"spreadsheet_id": "x".repeat(101)}),
            "sheet.spreadsheet_id",
        ),
        (json!({"tab": "a\u{7}b"}), "sheet.tab"),
        (json!({"tab": " "}), "sheet.tab"),
        (json!({"tab": "Responses "}), "sheet.tab"),
        (json!({"tab": " Responses"}), "sheet.tab"),
    ] {
        let (status, answer) = put(&app, "sheets", &with_sheet(sheet.clone())).await;
        assert_eq!(status, 422, "{sheet}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{sheet}: {answer}");
    }
    let (status, answer) = put(
        &app,
        "sheets",
        &with_sheet(json!({"spreadsheet_id": "1AbC-d_9xYz", "tab": "Q&A #1 / 'quotes'"})),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    app.stop().await;
}

/// A tab is one form's (its header, its rows found by response id), and Google's tab names are
/// unique whatever their case: a form whose tab another form of the same spreadsheet writes to
/// is refused, naming that form.
#[tokio::test]
async fn a_tab_another_form_writes_to_is_refused_whatever_its_case() {
    let app = spawn_app().await;
    // The built-in form writes to its tab `household-finance` of the default spreadsheet.
    for (form_id, body) in [
        ("visits", with_sheet(json!({"tab": "household-finance"}))),
        ("visits", with_sheet(json!({"tab": "Household-FINANCE"}))),
        // No tab: the form's id is its tab.
        ("Household-Finance", form(vec![])),
    ] {
        let (status, answer) = put(&app, form_id, &body).await;
        assert_eq!(status, 409, "{form_id} {body}: {answer}");
        assert_eq!(answer["error"]["code"], "tab_taken", "{answer}");
        assert_eq!(answer["error"]["field"], "sheet.tab", "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("is form household-finance's") && message.contains("default"),
            "{message}"
        );
        let (status, _) = get(&app, &format!("/v1/forms/{form_id}")).await;
        assert_eq!(status, 404, "{form_id} was not stored");
    }
    // A tab of that name in another spreadsheet is another tab.
    let elsewhere = json!({"spreadsheet_id": "other-1", "tab": "household-finance"});
    let (status, answer) = put(&app, "visits", &with_sheet(elsewhere)).await;
    assert_eq!(status, 201, "{answer}");
    let (status, answer) = put(
        &app,
        "stores",
        &with_sheet(json!({"spreadsheet_id": "other-1", "tab": "HOUSEHOLD-finance"})),
    )
    .await;
    assert_eq!(status, 409, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("spreadsheet other-1 is form visits's"),
        "{message}"
    );
    // A form replaced keeps its own tab, in another case too.
    let (status, answer) = put(
        &app,
        "visits",
        &with_sheet(json!({"spreadsheet_id": "other-1", "tab": "Household-Finance"})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["version"], 2, "{answer}");
    app.stop().await;
}
