use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::helpers::{Pipeline, rule_ids, seed};

#[tokio::test]
async fn the_seed_rules_flag_end_to_end_and_the_flag_goes_to_its_collector() {
    let pipeline = Pipeline::start().await;
    let mut flags = pipeline.flags_probe("u-table").await;
    let mut other_collector = pipeline.flags_probe("u-other").await;
    let income = "what is the monthly income?";
    let savings = "what is the monthly savings?";
    let expenditure = "what is the monthly expenditure?";
    // (response, changes to the valid seed payload, flags expected)
    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        ("r-valid", json!({}), vec![]),
        (
            "r-equal-items",
            json!({expenditure: 17500, savings: 0}),
            vec![],
        ),
        (
            "r-items-over",
            json!({expenditure: 17499.99}),
            vec!["expenditure_covers_items"],
        ),
        ("r-all-surplus-saved", json!({savings: 22000}), vec![]),
        (
            "r-saves-too-much",
            json!({savings: 22000.01}),
            vec!["savings_within_surplus"],
        ),
        ("r-zero-savings", json!({savings: 0}), vec![]),
        (
            "r-negative-savings",
            json!({savings: -1}),
            vec!["savings_within_surplus"],
        ),
        (
            "r-income-below",
            json!({income: 20000}),
            vec!["savings_within_surplus"],
        ),
        (
            "r-strings",
            json!({income: "52000", savings: "8000.0"}),
            vec![],
        ),
        (
            "r-no-income",
            json!({income: null}),
            vec!["required:monthly_income"],
        ),
        (
            "r-bad-income",
            json!({income: "lots"}),
            vec!["type:monthly_income"],
        ),
    ];
    for (response_id, changes, _) in &cases {
        let response = pipeline
            .post("/collect", &seed(response_id, "u-table", changes.clone()))
            .await;
        assert_eq!(response.status(), 202, "{response_id}");
    }

    let mut expected_events = BTreeMap::new();
    for (response_id, _, expected) in &cases {
        let stored = pipeline.stored(response_id, 1_795_169_700_000).await;
        let status = if expected.is_empty() {
            "valid"
        } else {
            "flagged"
        };
        assert_eq!(stored["status"], status, "{response_id}");
        assert_eq!(rule_ids(&stored["flags"]), *expected, "{response_id}");
        assert_eq!(stored["form_id"], "household-finance");
        assert_eq!(stored["collector"]["user_id"], "u-table");
        assert_eq!(stored["sheet"], Value::Null);
        if !expected.is_empty() {
            expected_events.insert(response_id.to_string(), expected.clone());
        }
    }

    let mut events = BTreeMap::new();
    for _ in 0..expected_events.len() {
        let event = flags.next().await;
        assert_eq!(event.routing_key, "collector.u-table");
        assert_eq!(event.body["type"], "flagged");
        assert_eq!(event.body["form_id"], "household-finance");
        assert_eq!(event.body["revision"], 1_795_169_700_000u64);
        assert_eq!(
            event.body["collector"],
            json!({"user_id": "u-table", "username": "asha"})
        );
        assert!(event.body["answers"].is_object());
        assert!(event.body["at"].is_string());
        for flag in event.body["flags"].as_array().unwrap() {
            assert!(!flag["message"].as_str().unwrap().is_empty());
        }
        let id = event.body["response_id"].as_str().unwrap().to_owned();
        events.insert(id, rule_ids(&event.body["flags"]));
    }
    let expected_events: BTreeMap<String, Vec<String>> = expected_events
        .into_iter()
        .map(|(id, rules)| (id, rules.into_iter().map(String::from).collect()))
        .collect();
    assert_eq!(events, expected_events);
    assert!(
        flags
            .next_within(Duration::from_millis(500))
            .await
            .is_none(),
        "one event per flagged response"
    );
    assert!(
        other_collector
            .next_within(Duration::from_millis(100))
            .await
            .is_none(),
        "nothing for other collectors"
    );

    // The collector's list of what to fix.
    let listed: Value = pipeline
        .get("/v1/collectors/u-table/flags")
        .await
        .json()
        .await
        .unwrap();
    let mut listed_ids: Vec<&str> = listed["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["response_id"].as_str().unwrap())
        .collect();
    listed_ids.sort();
    assert_eq!(
        listed_ids,
        events.keys().map(String::as_str).collect::<Vec<_>>()
    );
    assert_eq!(listed["truncated"], false);
    assert_eq!(listed.get("next"), None);
    // The same list page by page: two at a time, in the same order, none twice, no cap.
    let in_order: Vec<&str> = listed["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["response_id"].as_str().unwrap())
        .collect();
    assert!(in_order.len() > 2, "{in_order:?}");
    let mut paged = Vec::new();
    let mut after = String::new();
    loop {
        let page: Value = pipeline
            .get(&format!(
                "/v1/collectors/u-table/flags?limit=2&after={after}"
            ))
            .await
            .json()
            .await
            .unwrap();
        let ids: Vec<String> = page["responses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["response_id"].as_str().unwrap().to_owned())
            .collect();
        assert!(ids.len() <= 2, "{page}");
        paged.extend(ids);
        match page.get("next").and_then(Value::as_str) {
            Some(next) => {
                assert_eq!(page["truncated"], true);
                after = next.to_owned();
            }
            None => {
                assert_eq!(page["truncated"], false);
                break;
            }
        }
    }
    assert_eq!(paged, in_order);
    for (query, field) in [
        ("after=nonsense", "after"),
        ("after=1.no+such+form.x", "after"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
    ] {
        let response = pipeline
            .get(&format!("/v1/collectors/u-table/flags?{query}"))
            .await;
        assert_eq!(response.status(), 422, "{query}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["field"], field, "{query}");
    }
    let empty: Value = pipeline
        .get("/v1/collectors/u-other/flags")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(empty["responses"], json!([]));
    pipeline.stop().await;
}

#[tokio::test]
async fn read_routes_answer_404_until_stored_and_need_a_key() {
    let pipeline = Pipeline::start().await;
    let response = pipeline.get("/v1/responses/r-never").await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unknown_response");
    let response = pipeline
        .client
        .get(pipeline.url("/v1/responses/r-never"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let response = pipeline
        .client
        .get(pipeline.url("/v1/collectors/u/flags"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    pipeline.stop().await;
}

/// The flag history: every `flagged` and `cleared` event once, oldest first, read with a cursor
/// that never skips one; a redelivery adds nothing; other collectors' events are not listed.
#[tokio::test]
async fn the_flag_history_lists_each_event_once_and_pages_with_a_cursor() {
    let pipeline = Pipeline::start().await;
    let savings = "what is the monthly savings?";
    let history = |query: String| {
        let pipeline = &pipeline;
        async move {
            let response = pipeline
                .get(&format!("/v1/collectors/u-h/flags:history{query}"))
                .await;
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let post = |payload: Value| {
        let pipeline = &pipeline;
        async move {
            assert_eq!(pipeline.post("/collect", &payload).await.status(), 202);
        }
    };
    // Flagged at its first revision, cleared by a correction; another response flagged;
    // another collector's flagged response; the correction sent twice (a redelivery).
    post(seed(
        "h-1",
        "u-h",
        json!({savings: -1, "last_modified_time": 1_000}),
    ))
    .await;
    post(seed("h-2", "u-h", json!({savings: -5}))).await;
    post(seed("h-x", "u-other", json!({savings: -1}))).await;
    pipeline.stored("h-1", 1_000_000).await;
    post(seed("h-1", "u-h", json!({"last_modified_time": 2_000}))).await;
    pipeline.stored("h-1", 2_000_000).await;
    post(seed("h-1", "u-h", json!({"last_modified_time": 2_000}))).await;
    pipeline.stored("h-2", 1_795_169_700_000).await;
    pipeline.stored("h-x", 1_795_169_700_000).await;

    let (_, all) = collect_testkit::eventually(
        Duration::from_secs(10),
        "three events in the history",
        || async {
            let (status, body) = history(String::new()).await;
            (status == 200 && body["events"].as_array()?.len() == 3).then_some((status, body))
        },
    )
    .await;
    let events = all["events"].as_array().unwrap();
    let summary: Vec<(String, String, u64)> = events
        .iter()
        .map(|event| {
            (
                event["response_id"].as_str().unwrap().to_owned(),
                event["type"].as_str().unwrap().to_owned(),
                event["revision"].as_u64().unwrap(),
            )
        })
        .collect();
    // h-1 flagged comes before its clearing; h-2 at some place among them.
    let position = |wanted: (&str, &str)| {
        summary
            .iter()
            .position(|(id, kind, _)| (id.as_str(), kind.as_str()) == wanted)
            .unwrap_or_else(|| panic!("{wanted:?} in {summary:?}"))
    };
    assert!(position(("h-1", "flagged")) < position(("h-1", "cleared")));
    assert_eq!(summary[position(("h-1", "cleared"))].2, 2_000_000);
    assert_eq!(summary[position(("h-2", "flagged"))].2, 1_795_169_700_000);
    let flagged = &events[position(("h-1", "flagged"))];
    assert_eq!(flagged["form_id"], "household-finance");
    assert_eq!(
        flagged["collector"],
        json!({"user_id": "u-h", "username": "asha"})
    );
    assert_eq!(rule_ids(&flagged["flags"]), ["savings_within_surplus"]);
    assert_eq!(flagged["answers"]["monthly_savings"], -1);
    assert_eq!(events[position(("h-1", "cleared"))]["flags"], json!([]));
    assert_eq!(all["next"], events[2]["id"]);

    // Page by page, the same events in the same order.
    let mut paged = Vec::new();
    let mut since = String::new();
    for _ in 0..3 {
        let (status, page) = history(format!("?limit=1&since={since}")).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["events"].as_array().unwrap().len(), 1, "{page}");
        paged.push(page["events"][0].clone());
        since = page["next"].as_str().unwrap().to_owned();
    }
    assert_eq!(&paged, events);
    // Nothing after the last; the cursor stays where it is.
    let (_, after) = history(format!("?since={since}")).await;
    assert_eq!(after["events"], json!([]));
    assert_eq!(after["next"], json!(since));

    for (query, field) in [
        ("?since=yesterday", "since"),
        ("?limit=0", "limit"),
        ("?limit=1001", "limit"),
        ("?limit=ten", "limit"),
    ] {
        let (status, body) = history(query.to_owned()).await;
        assert_eq!(
            (status, &body["error"]["field"]),
            (422, &json!(field)),
            "{query}: {body}"
        );
    }
    pipeline.stop().await;
}
