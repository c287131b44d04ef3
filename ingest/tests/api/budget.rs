//! `COLLECT_BODY_BUDGET_BYTES`: the request-body bytes read and handled at once are bounded;
//! requests beyond it wait their turn, then are handled as any other.

use std::collections::BTreeSet;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::helpers::{KEY, Options, envelope, spawn_app_with};

#[tokio::test]
async fn bodies_beyond_the_budget_wait_their_turn_and_are_then_accepted() {
    let stalled_body = envelope("r-stalled", 1).to_string();
    let budget = stalled_body.len();
    let app = spawn_app_with(Options {
        configure: Some(Box::new(move |config| {
            config.body_budget_bytes = budget;
            config.max_body_bytes = 4000;
        })),
        ..Options::default()
    })
    .await;
    let mut probe = app.responses_probe().await;

    // An upload that stops half-way holds the whole budget: it declared its length.
    let mut stalled = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /v1/forms/household-finance/responses HTTP/1.1\r\nHost: ingest\r\n\
         Authorization: Bearer {KEY}\r\nContent-Type: application/json\r\n\
         Content-Length: {budget}\r\n\r\n"
    );
    let (first_half, second_half) = stalled_body.as_bytes().split_at(budget / 2);
    stalled.write_all(head.as_bytes()).await.unwrap();
    stalled.write_all(first_half).await.unwrap();
    app.gauge_reaches("collect_ingest_body_budget_bytes", budget as u64)
        .await;

    // The next submission waits for it.
    let waiting = {
        let request = app
            .client
            .post(app.url("/v1/forms/household-finance/responses"))
            .bearer_auth(KEY)
            .json(&envelope("r-next", 1));
        tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()) })
    };
    app.gauge_reaches("collect_ingest_body_budget_waiting", 1)
        .await;
    assert!(!waiting.is_finished());

    // What has no body to read, or is refused unread, does not wait.
    let form = app.get("/v1/forms/household-finance").await;
    assert_eq!(form.status(), 200);
    let too_large = app
        .post_raw(
            "/v1/forms/household-finance/responses",
            Some("application/json"),
            " ".repeat(5000).into_bytes(),
        )
        .await;
    assert_eq!(too_large.status(), 413);
    // Nor does a request without a key: it is refused before the budget.
    let no_key = app
        .client
        .post(app.url("/v1/forms/household-finance/responses"))
        .json(&envelope("r-no-key", 1))
        .send()
        .await
        .unwrap();
    assert_eq!(no_key.status(), 401);
    assert!(!waiting.is_finished());

    // The upload ends: it is accepted, then the one that waited.
    stalled.write_all(second_half).await.unwrap();
    let mut answer = vec![0u8; 12];
    stalled.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 202");
    assert_eq!(waiting.await.unwrap().unwrap(), 202);
    app.gauge_reaches("collect_ingest_body_budget_bytes", 0)
        .await;
    app.gauge_reaches("collect_ingest_body_budget_waiting", 0)
        .await;
    let mut published = BTreeSet::new();
    for _ in 0..2 {
        let message = probe.next().await;
        published.insert(message.body["response_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        published,
        BTreeSet::from(["r-next".to_owned(), "r-stalled".to_owned()])
    );
    app.stop().await;
}

/// A connection's read buffer stops at `READ_BUFFER_BYTES` (64 KB): a large body is read
/// through it in steps, and arrives whole.
#[tokio::test]
async fn a_body_larger_than_the_read_buffer_arrives_whole() {
    let app = spawn_app_with(Options::default()).await;
    let mut probe = app.responses_probe().await;
    // 900 KB in an answer the form does not know (kept as sent).
    let mut large = envelope("r-large", 1);
    large["answers"]["notes"] = serde_json::json!("n".repeat(900_000));
    let answer = app
        .client
        .post(app.url("/v1/forms/household-finance/responses"))
        .bearer_auth(KEY)
        .json(&large)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    let message = probe.next().await;
    assert_eq!(message.body["answers"]["notes"], large["answers"]["notes"]);
    app.stop().await;
}
