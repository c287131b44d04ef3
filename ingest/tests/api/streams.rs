//! `FLAGS_WATCH_MAX_STREAMS`: the live flag streams one ingest serves are bounded; the next is
//! refused with a clear `503` until one closes.

use std::time::Duration;

use collect_testkit::eventually;
use serde_json::Value;

use super::helpers::{Options, TestApp, spawn_app_with};

async fn open(app: &TestApp, user_id: &str) -> reqwest::Response {
    app.get(&format!("/v1/collectors/{user_id}/flags:watch"))
        .await
}

#[tokio::test]
async fn streams_beyond_the_cap_are_refused_until_one_closes() {
    let app = spawn_app_with(Options {
        configure: Some(Box::new(|config| config.flags_watch_max_streams = 2)),
        ..Options::default()
    })
    .await;

    let first = open(&app, "u-1").await;
    let second = open(&app, "u-2").await;
    assert_eq!(first.status(), 200);
    assert_eq!(second.status(), 200);
    assert_eq!(second.headers()["content-type"], "text/event-stream");
    app.gauge_reaches("collect_ingest_flag_watchers", 2).await;

    let refused = open(&app, "u-3").await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "2");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_streams", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("FLAGS_WATCH_MAX_STREAMS"),
        "{body}"
    );
    // Other routes are not held back by the streams.
    let history = app.get("/v1/collectors/u-3/flags:history").await;
    assert_eq!(history.status(), 200);

    // A stream that closes makes room for the next.
    drop(first);
    let third = eventually(
        Duration::from_secs(30),
        "a stream once one closed",
        || async {
            let response = open(&app, "u-3").await;
            (response.status() == 200).then_some(response)
        },
    )
    .await;
    assert_eq!(third.headers()["content-type"], "text/event-stream");
    app.gauge_reaches("collect_ingest_flag_watchers", 2).await;
    drop((second, third));
    app.gauge_reaches("collect_ingest_flag_watchers", 0).await;
    app.stop().await;
}
