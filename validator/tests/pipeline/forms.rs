use std::time::Duration;

use serde_json::{Value, json};

use super::helpers::{Pipeline, rule_ids};

fn store_visit_form() -> Value {
    json!({
        "title": "Store visits",
        "questions": [
            {"id": "visits", "label": "How many visits?", "type": "integer", "required": true},
            {"id": "spend", "label": "How much was spent?", "type": "number", "required": true},
            {"id": "region", "label": "Region", "type": "choice", "choices": ["north", "south"]},
            {"id": "contact", "label": "E-mail", "type": "email"}
        ],
        "rules": [
            {"id": "spend_per_visit", "expression": "spend <= visits * 1000",
             "message": "At most 1000 per visit"},
            {"id": "big_spender", "expression": "spend < 5000",
             "message": "Unusually high spend", "severity": "warning"}
        ],
        "sheet": {"tab": "Store visits"}
    })
}

#[tokio::test]
async fn a_form_registered_by_put_flags_what_it_should() {
    let pipeline = Pipeline::start().await;
    let mut flags = pipeline.flags_probe("u-9").await;

    let response = pipeline
        .put("/v1/forms/store-visits", &store_visit_form())
        .await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["form_id"], "store-visits");
    assert_eq!(created["version"], 1);
    let fetched: Value = pipeline
        .get("/v1/forms/store-visits")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(fetched, created);
    assert_eq!(fetched["questions"][0]["label"], "How many visits?");
    // The same definition again changes nothing.
    let response = pipeline
        .put("/v1/forms/store-visits", &store_visit_form())
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["version"], 1);

    let submit = |id: &str, answers: Value| json!({"response_id": id, "collector": {"user_id": "u-9"}, "answers": answers});
    let route = "/v1/forms/store-visits/responses";
    let cases = [
        (
            "v-ok",
            json!({"visits": 3, "spend": 2999.5, "region": "north"}),
            "valid",
            vec![],
        ),
        (
            "v-over",
            json!({"visits": 2, "spend": 2000.01}),
            "flagged",
            vec!["spend_per_visit"],
        ),
        (
            "v-warn",
            json!({"visits": 9, "spend": 6000}),
            "valid",
            vec!["big_spender"],
        ),
        (
            "v-choice",
            json!({"visits": 1, "spend": 10, "region": "east"}),
            "flagged",
            vec!["type:region"],
        ),
        (
            "v-email",
            json!({"visits": 1, "spend": 10, "contact": "x@"}),
            "flagged",
            vec!["type:contact"],
        ),
        (
            "v-missing",
            json!({"spend": 10}),
            "flagged",
            vec!["required:visits"],
        ),
    ];
    for (id, answers, _, _) in &cases {
        assert_eq!(
            pipeline
                .post(route, &submit(id, answers.clone()))
                .await
                .status(),
            202
        );
    }
    for (id, _, status, expected) in &cases {
        let stored = pipeline.stored(id, 0).await;
        assert_eq!(stored["status"], *status, "{id}");
        assert_eq!(rule_ids(&stored["flags"]), *expected, "{id}");
        assert_eq!(stored["form_version"], 1);
    }
    let warning = pipeline.stored("v-warn", 0).await;
    assert_eq!(warning["flags"][0]["severity"], "warning");
    // Warnings do not go back to the collector.
    let mut flagged = Vec::new();
    for _ in 0..4 {
        flagged.push(
            flags.next().await.body["response_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    flagged.sort();
    assert_eq!(flagged, ["v-choice", "v-email", "v-missing", "v-over"]);
    assert!(
        flags
            .next_within(Duration::from_millis(300))
            .await
            .is_none()
    );

    // A changed rule takes effect for responses validated after the PUT (within the cache's
    // refresh time): poll with fresh responses until one is checked against version 2.
    let mut changed = store_visit_form();
    changed["rules"][0]["expression"] = json!("spend <= visits * 500");
    let response = pipeline.put("/v1/forms/store-visits", &changed).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["version"], 2);
    let mut attempt = 0;
    let stored = collect_testkit::eventually(Duration::from_secs(20), "version 2 in use", || {
        attempt += 1;
        let id = format!("v-after-{attempt}");
        let pipeline = &pipeline;
        async move {
            let body = submit(&id, json!({"visits": 2, "spend": 1500}));
            assert_eq!(pipeline.post(route, &body).await.status(), 202);
            let stored = pipeline.stored(&id, 0).await;
            (stored["form_version"] == 2).then_some(stored)
        }
    })
    .await;
    assert_eq!(rule_ids(&stored["flags"]), ["spend_per_visit"]);
    pipeline.stop().await;
}

#[tokio::test]
async fn bad_form_definitions_get_422_with_the_field_and_position() {
    let pipeline = Pipeline::start().await;
    let with = |path: &[&str], value: Value| {
        let mut form = store_visit_form();
        let mut target = &mut form;
        for key in &path[..path.len() - 1] {
            target = match key.parse::<usize>() {
                Ok(index) => &mut target[index],
                Err(_) => &mut target[*key],
            };
        }
        target[path[path.len() - 1]] = value;
        form
    };
    let cases = [
        (
            with(&["rules", "1", "expression"], json!("spend <")),
            "rules[1].expression",
            "at line 1, column 8",
        ),
        (
            with(&["rules", "0", "expression"], json!("income > 0")),
            "rules[0].expression",
            "not a question",
        ),
        (
            with(&["questions", "1", "id"], json!("visits")),
            "questions[1].id",
            "used twice",
        ),
        (
            with(&["questions", "0", "id"], json!("2fast")),
            "questions[0].id",
            "not usable",
        ),
        (
            with(&["questions", "2", "choices"], json!([])),
            "questions[2].choices",
            "needs choices",
        ),
        (
            with(&["questions", "0", "type"], json!("decimal")),
            "questions[0].type",
            "unknown variant",
        ),
        (with(&["title"], json!("")), "title", "empty"),
        (with(&["colour"], json!("red")), "colour", "unknown field"),
        (
            with(&["rules", "0", "severity"], json!("fatal")),
            "rules[0].severity",
            "unknown variant",
        ),
    ];
    for (body, field, message) in cases {
        let response = pipeline.put("/v1/forms/bad-form", &body).await;
        assert_eq!(response.status(), 422, "{field}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["field"], field, "{error}");
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap()
                .contains(message),
            "{error}"
        );
    }
    assert_eq!(pipeline.get("/v1/forms/bad-form").await.status(), 404);
    let response = pipeline
        .put("/v1/forms/bad.form", &store_visit_form())
        .await;
    assert_eq!(response.status(), 422);
    // The built-in form is there from the start.
    let builtin: Value = pipeline
        .get("/v1/forms/household-finance")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(builtin["rules"][1]["id"], "savings_within_surplus");
    pipeline.stop().await;
}

/// A form at every limit on rules (200 rules; one of 4,096 characters, one 64 deep, one with
/// brackets 32 deep, one macro) is accepted, and its responses are judged as its rules say,
/// within the evaluation budget.
#[tokio::test]
async fn a_form_at_the_rule_limits_checks_responses_correctly() {
    let pipeline = Pipeline::start().await;
    let long_text = "x".repeat(4096 - "region != ''".len());
    let mut rules: Vec<Value> = (0..196)
        .map(|i| json!({"id": format!("r{i}"), "expression": "a < 1000000", "message": "too big"}))
        .collect();
    rules.extend([
        json!({"id": "long", "expression": format!("region != '{long_text}'"), "message": "long"}),
        json!({"id": "deep", "expression": format!("{} > 0", vec!["a"; 63].join(" + ")),
               "message": "deep"}),
        json!({"id": "brackets", "expression": format!("{}a{} < 100", "(".repeat(32), ")".repeat(32)),
               "message": "brackets"}),
        json!({"id": "macro", "expression": "[10, 20].all(limit, a < limit)", "message": "macro",
               "severity": "warning"}),
    ]);
    assert_eq!(
        rules[196]["expression"].as_str().unwrap().chars().count(),
        4096
    );
    let form = json!({
        "title": "At the limits",
        "questions": [
            {"id": "a", "label": "A", "type": "number", "required": true},
            {"id": "region", "label": "Region", "type": "string"}
        ],
        "rules": rules
    });
    let response = pipeline.put("/v1/forms/at-limits", &form).await;
    assert_eq!(response.status(), 201);

    let ids = |ids: &[&str]| ids.iter().map(|id| (*id).to_owned()).collect::<Vec<_>>();
    let every_filler_rule = (0..196)
        .map(|i| format!("r{i}"))
        .chain(ids(&["brackets", "macro"]))
        .collect();
    let cases = [
        (
            "l-ok",
            json!({"a": 5, "region": "south"}),
            "valid",
            ids(&[]),
        ),
        ("l-deep", json!({"a": -1}), "flagged", ids(&["deep"])),
        (
            "l-brackets",
            json!({"a": 150}),
            "flagged",
            ids(&["brackets", "macro"]),
        ),
        ("l-macro", json!({"a": 15}), "valid", ids(&["macro"])),
        (
            "l-long",
            json!({"a": 5, "region": long_text}),
            "flagged",
            ids(&["long"]),
        ),
        (
            "l-missing",
            json!({"region": long_text}),
            "flagged",
            ids(&["required:a", "long"]),
        ),
        (
            "l-big",
            json!({"a": 2_000_000}),
            "flagged",
            every_filler_rule,
        ),
    ];
    let route = "/v1/forms/at-limits/responses";
    for (id, answers, _, _) in &cases {
        let body =
            json!({"response_id": id, "collector": {"user_id": "u-lim"}, "answers": answers});
        assert_eq!(pipeline.post(route, &body).await.status(), 202);
    }
    for (id, _, status, expected) in &cases {
        let stored = pipeline.stored(id, 0).await;
        assert_eq!(stored["status"], *status, "{id}");
        assert_eq!(rule_ids(&stored["flags"]), *expected, "{id}");
        assert!(
            stored["flags"]
                .as_array()
                .unwrap()
                .iter()
                .all(|flag| !flag["message"].as_str().unwrap().contains("budget")),
            "{id}: {}",
            stored["flags"]
        );
    }
    pipeline.stop().await;
}
