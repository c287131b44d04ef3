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

#[tokio::test]
async fn a_collectors_newest_stream_replaces_its_oldest_beyond_its_cap() {
    let app = spawn_app_with(Options {
        configure: Some(Box::new(|config| {
            config.flags_watch_max_streams_per_collector = 2;
        })),
        ..Options::default()
    })
    .await;

    // One after the other, so that which is the oldest is known.
    let first = open(&app, "u-1").await;
    app.gauge_reaches("collect_ingest_flag_watchers", 1).await;
    let second = open(&app, "u-1").await;
    app.gauge_reaches("collect_ingest_flag_watchers", 2).await;
    let other = open(&app, "u-2").await;
    app.gauge_reaches("collect_ingest_flag_watchers", 3).await;

    // A third of u-1 (its app reconnecting, say, the first left behind by a phone that lost
    // its network) is served, and u-1's oldest ends: its body closes after the stream's
    // opening `retry`.
    let third = open(&app, "u-1").await;
    assert_eq!(third.status(), 200);
    let ended = tokio::time::timeout(Duration::from_secs(30), first.text())
        .await
        .expect("the replaced stream ends")
        .expect("cleanly");
    assert_eq!(ended.trim(), "retry: 1000", "{ended:?}");
    app.gauge_reaches("collect_ingest_flag_watchers", 3).await;
    app.gauge_reaches("collect_ingest_flag_streams_replaced_total", 1)
        .await;
    drop((second, third, other));
    app.gauge_reaches("collect_ingest_flag_watchers", 0).await;
    app.stop().await;
}

#[tokio::test]
async fn a_quiet_connection_is_closed_and_a_flag_stream_is_not() {
    use tokio::io::AsyncReadExt;
    let app = spawn_app_with(Options {
        configure: Some(Box::new(|config| config.idle_timeout_ms = 1000)),
        ..Options::default()
    })
    .await;

    // A client that connects and sends nothing (or vanished before its first request).
    let mut quiet = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let started = std::time::Instant::now();
    let mut read = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), quiet.read_to_end(&mut read))
        .await
        .expect("ingest closes a quiet connection")
        .unwrap();
    assert!(read.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(900));

    // A stream sends nothing for 15 s at a time: the idle timeout is not about it.
    let mut stream = open(&app, "u-1").await;
    assert_eq!(stream.status(), 200);
    let opening = stream.chunk().await.unwrap().expect("the stream's `retry`");
    assert_eq!(String::from_utf8_lossy(&opening).trim(), "retry: 1000");
    let more = tokio::time::timeout(Duration::from_secs(3), stream.chunk()).await;
    assert!(more.is_err(), "the stream is still open: {more:?}");
    app.gauge_reaches("collect_ingest_flag_watchers", 1).await;
    drop(stream);
    app.stop().await;
}
