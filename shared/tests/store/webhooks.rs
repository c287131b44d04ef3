//! Webhooks and their deliveries, the same on both engines.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use collect_shared::messages::{FormId, UserId};
use collect_shared::store::{
    DeliveryCounts, DeliveryCursor, DeliveryQuery, DeliveryState, FailedAttempt, MAX_ERROR_CHARS,
    NewDelivery, NewWebhook, Store, WebhookId,
};
use serde_json::json;

use super::Database;

on_both_engines!(
    webhooks_created_updated_listed_deleted,
    deliveries_enqueued_once,
    claims_due_oldest_first_with_a_lease,
    concurrent_claimers_never_share,
    delivery_outcomes,
    deliveries_listed_with_a_cursor,
    redelivery_and_retention,
);

fn id(id: &str) -> WebhookId {
    WebhookId::parse(id).unwrap()
}

fn new_webhook(webhook: &str, secret: &str) -> NewWebhook {
    NewWebhook {
        id: id(webhook),
        url: format!("https://example.com/hooks/{webhook}?ü=1"),
        form_id: None,
        user_ids: vec![],
        secret: secret.into(),
    }
}

fn delivery(webhook: &str, delivery_id: &str) -> NewDelivery {
    NewDelivery {
        webhook_id: id(webhook),
        delivery_id: delivery_id.into(),
        payload: json!({"type": "response.flagged", "id": delivery_id, "nested": {"b": [1, null], "a": "Zoë"}}),
    }
}

/// Creates the webhooks and enqueues `n` deliveries `d-00`, `d-01`, … to the first.
async fn with_deliveries(store: &Store, webhooks: &[&str], n: usize) -> Vec<String> {
    for webhook in webhooks {
        store
            .put_webhook(&new_webhook(webhook, "whsec_x"))
            .await
            .unwrap();
    }
    let ids: Vec<String> = (0..n).map(|i| format!("d-{i:02}")).collect();
    let batch: Vec<NewDelivery> = ids.iter().map(|d| delivery(webhooks[0], d)).collect();
    assert_eq!(store.enqueue_deliveries(&batch).await.unwrap(), n as u64);
    ids
}

/// A time with microseconds (what both engines keep).
fn at(micros: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(micros).unwrap()
}

async fn all_deliveries(store: &Store, webhook: &str) -> Vec<collect_shared::store::Delivery> {
    let page = store
        .list_deliveries(&id(webhook), &query(None, None, 1000))
        .await
        .unwrap();
    assert_eq!(page.next, None);
    page.deliveries
}

async fn one_delivery(
    store: &Store,
    webhook: &str,
    delivery_id: &str,
) -> collect_shared::store::Delivery {
    all_deliveries(store, webhook)
        .await
        .into_iter()
        .find(|d| d.delivery_id == delivery_id)
        .unwrap()
}

async fn webhooks_created_updated_listed_deleted(store: Store) {
    let mut first = new_webhook("b-hook", "whsec_first");
    first.form_id = Some(FormId::parse("household_finance").unwrap());
    first.user_ids = vec![UserId::parse("u-1").unwrap(), UserId::parse("u-2").unwrap()];
    let (created, was_created) = store.put_webhook(&first).await.unwrap();
    assert!(was_created);
    assert_eq!(
        (
            &created.id,
            &created.url,
            &created.form_id,
            &created.user_ids,
            created.secret.as_str(),
            created.deliveries
        ),
        (
            &first.id,
            &first.url,
            &first.form_id,
            &first.user_ids,
            "whsec_first",
            DeliveryCounts::default()
        )
    );
    assert_eq!(created.created_at, created.updated_at);
    assert_eq!(
        store.get_webhook(&first.id).await.unwrap(),
        Some(created.clone())
    );

    // An update: url, form and collectors replaced, the stored secret kept.
    let update = NewWebhook {
        url: "https://example.org/other".into(),
        form_id: None,
        user_ids: vec![],
        secret: "whsec_second".into(),
        ..first.clone()
    };
    let (updated, was_created) = store.put_webhook(&update).await.unwrap();
    assert!(!was_created);
    assert_eq!(
        (
            updated.url.as_str(),
            updated.form_id.as_ref(),
            updated.user_ids.len(),
            updated.secret.as_str(),
            updated.created_at
        ),
        (
            "https://example.org/other",
            None,
            0,
            "whsec_first",
            created.created_at
        )
    );
    assert!(updated.updated_at >= created.updated_at);
    assert_eq!(store.get_webhook(&first.id).await.unwrap(), Some(updated));

    store
        .put_webhook(&new_webhook("a-hook", "whsec_a"))
        .await
        .unwrap();
    let listed: Vec<String> = store
        .list_webhooks()
        .await
        .unwrap()
        .iter()
        .map(|w| w.id.to_string())
        .collect();
    assert_eq!(listed, ["a-hook", "b-hook"]);

    // Deleting a webhook deletes its deliveries.
    store
        .enqueue_deliveries(&[delivery("b-hook", "m-1"), delivery("b-hook", "m-2")])
        .await
        .unwrap();
    assert_eq!(
        store
            .get_webhook(&first.id)
            .await
            .unwrap()
            .unwrap()
            .deliveries,
        DeliveryCounts {
            pending: 2,
            delivered: 0,
            dead: 0
        }
    );
    assert!(store.delete_webhook(&first.id).await.unwrap());
    assert!(!store.delete_webhook(&first.id).await.unwrap());
    assert_eq!(store.get_webhook(&first.id).await.unwrap(), None);
    let (again, was_created) = store.put_webhook(&first).await.unwrap();
    assert!(was_created);
    assert_eq!(again.deliveries, DeliveryCounts::default());
    assert!(all_deliveries(&store, "b-hook").await.is_empty());
    assert!(
        store
            .claim_deliveries(10, Duration::from_secs(60))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.get_webhook(&id("nope")).await.unwrap(), None);
}

async fn deliveries_enqueued_once(store: Store) {
    for webhook in ["w-1", "w-2", "gone"] {
        store
            .put_webhook(&new_webhook(webhook, "whsec_x"))
            .await
            .unwrap();
    }
    assert_eq!(store.enqueue_deliveries(&[]).await.unwrap(), 0);
    // A repeat within the batch counts once.
    let mut first_a = delivery("w-1", "msg_a");
    first_a.payload = json!({"first": true});
    let inserted = store
        .enqueue_deliveries(&[
            first_a.clone(),
            delivery("w-1", "msg_a"),
            delivery("w-1", "msg_b"),
        ])
        .await
        .unwrap();
    assert_eq!(inserted, 2);
    // Again, with one new and the same event for another webhook: only those are new; the
    // stored one is left as it is.
    let inserted = store
        .enqueue_deliveries(&[
            delivery("w-1", "msg_a"),
            delivery("w-1", "msg_b"),
            delivery("w-1", "msg_c"),
            delivery("w-2", "msg_a"),
        ])
        .await
        .unwrap();
    assert_eq!(inserted, 2);
    let stored = all_deliveries(&store, "w-1").await;
    let ids: Vec<&str> = stored.iter().map(|d| d.delivery_id.as_str()).collect();
    assert_eq!(ids, ["msg_a", "msg_b", "msg_c"]);
    assert_eq!(stored[0].payload, json!({"first": true}));
    assert_eq!(stored[1].payload, delivery("w-1", "msg_b").payload);
    for d in &stored {
        assert_eq!(
            (
                d.state,
                d.attempts,
                d.last_attempt_at,
                d.last_status,
                d.last_error.as_deref(),
                d.delivered_at
            ),
            (DeliveryState::Pending, 0, None, None, None, None)
        );
        assert_eq!(d.next_attempt_at, d.created_at, "due when enqueued");
    }

    // A webhook deleted meanwhile: its deliveries are skipped, the rest stored.
    assert!(store.delete_webhook(&id("gone")).await.unwrap());
    let inserted = store
        .enqueue_deliveries(&[delivery("gone", "msg_d"), delivery("w-2", "msg_d")])
        .await
        .unwrap();
    assert_eq!(inserted, 1);
    assert!(all_deliveries(&store, "gone").await.is_empty());
    assert_eq!(all_deliveries(&store, "w-2").await.len(), 2);

    // An id that is not a delivery id refuses the batch, permanently.
    for bad in ["", "has space", "ü", &"x".repeat(65)] {
        let error = store
            .enqueue_deliveries(&[delivery("w-1", "msg_e"), delivery("w-1", bad)])
            .await
            .unwrap_err();
        assert!(error.is_permanent(), "{bad:?}: {error}");
    }
    assert_eq!(all_deliveries(&store, "w-1").await.len(), 3);
    assert!(!store.redeliver(&id("w-1"), "has space").await.unwrap());
}

async fn claims_due_oldest_first_with_a_lease(store: Store) {
    let ids = with_deliveries(&store, &["w"], 4).await;
    let long = Duration::from_secs(600);
    let claimed = store.claim_deliveries(10, long).await.unwrap();
    let mut got: Vec<&str> = claimed.iter().map(|c| c.delivery_id.as_str()).collect();
    got.sort();
    assert_eq!(got, ids);
    let first = claimed.iter().find(|c| c.delivery_id == "d-00").unwrap();
    assert_eq!(
        (
            first.webhook_id.as_str(),
            first.attempts,
            first.url.as_str(),
            first.secret.as_str(),
            &first.payload
        ),
        (
            "w",
            0,
            "https://example.com/hooks/w?ü=1",
            "whsec_x",
            &delivery("w", "d-00").payload
        )
    );
    // Leased: a claim right after gets nothing.
    assert!(store.claim_deliveries(10, long).await.unwrap().is_empty());

    // Each failed, due again at a time of its own: d-03 first, then d-01, d-00; d-02 in 2040.
    for (delivery_id, retry_at) in [
        ("d-00", at(1_600_000_000_000_003)),
        ("d-01", at(1_600_000_000_000_002)),
        ("d-02", Utc.with_ymd_and_hms(2040, 1, 1, 0, 0, 0).unwrap()),
        ("d-03", at(1_600_000_000_000_001)),
    ] {
        assert!(
            store
                .delivery_failed(
                    &id("w"),
                    delivery_id,
                    failed(Some(500), "boom", Some(retry_at))
                )
                .await
                .unwrap()
        );
    }
    assert_eq!(
        one_delivery(&store, "w", "d-02").await.next_attempt_at,
        Utc.with_ymd_and_hms(2040, 1, 1, 0, 0, 0).unwrap()
    );
    let claimed = store.claim_deliveries(2, long).await.unwrap();
    let got: Vec<(&str, i32)> = claimed
        .iter()
        .map(|c| (c.delivery_id.as_str(), c.attempts))
        .collect();
    assert_eq!(
        got,
        [("d-03", 1), ("d-01", 1)],
        "oldest due first, at most 2"
    );
    let claimed = store.claim_deliveries(10, long).await.unwrap();
    let got: Vec<&str> = claimed.iter().map(|c| c.delivery_id.as_str()).collect();
    assert_eq!(got, ["d-00"], "d-02 is not due");
    assert!(store.claim_deliveries(0, long).await.unwrap().is_empty());

    // A claimer that dies: after its lease the delivery is claimed again.
    assert!(
        store
            .delivery_failed(&id("w"), "d-00", failed(None, "timeout", Some(at(1))))
            .await
            .unwrap()
    );
    let lease = Duration::from_secs(1);
    let claimed = store.claim_deliveries(10, lease).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(store.claim_deliveries(10, lease).await.unwrap().is_empty());
    let leased = one_delivery(&store, "w", "d-00").await;
    assert!(leased.next_attempt_at > at(1), "the lease moved it");
    assert_eq!((leased.state, leased.attempts), (DeliveryState::Pending, 2));
    let started = Instant::now();
    let again = loop {
        let claimed = store.claim_deliveries(10, long).await.unwrap();
        if !claimed.is_empty() || started.elapsed() > Duration::from_secs(10) {
            break claimed;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let got: Vec<(&str, i32)> = again
        .iter()
        .map(|c| (c.delivery_id.as_str(), c.attempts))
        .collect();
    assert_eq!(got, [("d-00", 2)], "claimed again after the lease");
}

async fn concurrent_claimers_never_share(store: Store) {
    let ids = with_deliveries(&store, &["w"], 60).await;
    let long = Duration::from_secs(600);
    let mut seen = HashSet::new();
    let started = Instant::now();
    while seen.len() < ids.len() {
        assert!(started.elapsed() < Duration::from_secs(30), "{seen:?}");
        // Two claims at once, on two connections of the pool.
        let (a, b) = tokio::join!(
            store.claim_deliveries(7, long),
            store.claim_deliveries(7, long)
        );
        for claimed in a.unwrap().into_iter().chain(b.unwrap()) {
            assert!(
                seen.insert(claimed.delivery_id.clone()),
                "{} claimed twice",
                claimed.delivery_id
            );
        }
    }
    let mut all: Vec<String> = seen.into_iter().collect();
    all.sort();
    assert_eq!(all, ids);
    assert!(store.claim_deliveries(100, long).await.unwrap().is_empty());
}

async fn delivery_outcomes(store: Store) {
    with_deliveries(&store, &["w"], 3).await;
    let w = id("w");
    let before = Utc::now() - chrono::Duration::seconds(60);
    store
        .claim_deliveries(10, Duration::from_secs(600))
        .await
        .unwrap();

    // Delivered.
    assert!(store.delivery_succeeded(&w, "d-00", 204).await.unwrap());
    let d = one_delivery(&store, "w", "d-00").await;
    assert_eq!(
        (d.state, d.attempts, d.last_status, d.last_error.as_deref()),
        (DeliveryState::Delivered, 1, Some(204), None)
    );
    assert_eq!(d.delivered_at, d.last_attempt_at);
    assert!(d.delivered_at.unwrap() >= d.created_at && d.created_at > before);
    // Delivered already: a late success or failure of another attempt changes nothing.
    assert!(!store.delivery_succeeded(&w, "d-00", 200).await.unwrap());
    assert!(
        !store
            .delivery_failed(&w, "d-00", failed(Some(500), "late", None))
            .await
            .unwrap()
    );
    assert_eq!(one_delivery(&store, "w", "d-00").await, d);

    // Failed, to be retried (nanoseconds are cut to microseconds), then dead.
    let retry_at = Utc.timestamp_nanos(1_795_169_700_123_456_789);
    assert!(
        store
            .delivery_failed(
                &w,
                "d-01",
                failed(Some(503), "503 Service Unavailable", Some(retry_at))
            )
            .await
            .unwrap()
    );
    let d = one_delivery(&store, "w", "d-01").await;
    assert_eq!(
        (
            d.state,
            d.attempts,
            d.next_attempt_at,
            d.last_status,
            d.last_error.as_deref(),
            d.delivered_at
        ),
        (
            DeliveryState::Pending,
            1,
            at(1_795_169_700_123_456),
            Some(503),
            Some("503 Service Unavailable"),
            None
        )
    );
    let first_attempt = d.last_attempt_at.unwrap();
    assert!(first_attempt >= d.created_at);
    let long_error = format!("connection reset\0{}", "é".repeat(2000));
    assert!(
        store
            .delivery_failed(&w, "d-01", failed(None, &long_error, None))
            .await
            .unwrap()
    );
    let d = one_delivery(&store, "w", "d-01").await;
    let kept: String = long_error
        .replace('\0', "\u{FFFD}")
        .chars()
        .take(MAX_ERROR_CHARS)
        .collect();
    assert_eq!(
        (
            d.state,
            d.attempts,
            d.next_attempt_at,
            d.last_status,
            d.last_error.as_deref(),
            d.delivered_at
        ),
        (
            DeliveryState::Dead,
            2,
            at(1_795_169_700_123_456),
            None,
            Some(kept.as_str()),
            None
        )
    );
    assert!(d.last_attempt_at.unwrap() >= first_attempt);
    // Dead: no more failures recorded, and never claimed.
    assert!(
        !store
            .delivery_failed(&w, "d-01", failed(Some(500), "again", Some(at(1))))
            .await
            .unwrap()
    );
    assert!(
        store
            .claim_deliveries(10, Duration::from_secs(600))
            .await
            .unwrap()
            .is_empty()
    );
    // No such delivery.
    assert!(!store.delivery_succeeded(&w, "nope", 200).await.unwrap());
    assert!(
        !store
            .delivery_failed(&id("other"), "d-02", failed(None, "x", None))
            .await
            .unwrap()
    );
    assert_eq!(
        store.get_webhook(&w).await.unwrap().unwrap().deliveries,
        DeliveryCounts {
            pending: 1,
            delivered: 1,
            dead: 1
        }
    );
}

async fn deliveries_listed_with_a_cursor(store: Store) {
    // Five in one batch (one creation time: ordered by id), then two more.
    with_deliveries(&store, &["w", "other"], 5).await;
    store
        .enqueue_deliveries(&[delivery("w", "a-late"), delivery("w", "b-late")])
        .await
        .unwrap();
    store
        .enqueue_deliveries(&[delivery("other", "x")])
        .await
        .unwrap();
    let w = id("w");
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_deliveries(&w, &query(None, after.clone(), 2))
            .await
            .unwrap();
        pages.push(
            page.deliveries
                .iter()
                .map(|d| d.delivery_id.clone())
                .collect::<Vec<_>>(),
        );
        let Some(next) = page.next else { break };
        assert_eq!(next, DeliveryCursor::after(page.deliveries.last().unwrap()));
        // The cursor travels as text.
        after = Some(DeliveryCursor::parse(&next.to_string()).unwrap());
    }
    assert_eq!(
        pages,
        [
            vec!["d-00", "d-01"],
            vec!["d-02", "d-03"],
            vec!["d-04", "a-late"],
            vec!["b-late"]
        ]
    );
    // A last page exactly full says no more.
    let page = store
        .list_deliveries(&w, &query(None, None, 7))
        .await
        .unwrap();
    assert_eq!((page.deliveries.len(), page.next), (7, None));

    // By state.
    store
        .claim_deliveries(100, Duration::from_secs(600))
        .await
        .unwrap();
    for dead in ["d-01", "d-03", "a-late"] {
        store
            .delivery_failed(&w, dead, failed(Some(410), "gone", None))
            .await
            .unwrap();
    }
    store.delivery_succeeded(&w, "d-02", 200).await.unwrap();
    let page = store
        .list_deliveries(&w, &query(Some(DeliveryState::Dead), None, 2))
        .await
        .unwrap();
    let got: Vec<&str> = page
        .deliveries
        .iter()
        .map(|d| d.delivery_id.as_str())
        .collect();
    assert_eq!(got, ["d-01", "d-03"]);
    let page = store
        .list_deliveries(&w, &query(Some(DeliveryState::Dead), page.next, 2))
        .await
        .unwrap();
    let got: Vec<&str> = page
        .deliveries
        .iter()
        .map(|d| d.delivery_id.as_str())
        .collect();
    assert_eq!((got, page.next), (vec!["a-late"], None));
    for (state, expected) in [
        (DeliveryState::Delivered, vec!["d-02"]),
        (DeliveryState::Pending, vec!["d-00", "d-04", "b-late"]),
    ] {
        let page = store
            .list_deliveries(&w, &query(Some(state), None, 10))
            .await
            .unwrap();
        let got: Vec<&str> = page
            .deliveries
            .iter()
            .map(|d| d.delivery_id.as_str())
            .collect();
        assert_eq!(got, expected, "{state}");
    }
    let page = store
        .list_deliveries(&id("nope"), &query(None, None, 10))
        .await
        .unwrap();
    assert_eq!((page.deliveries.len(), page.next), (0, None));
}

async fn redelivery_and_retention(store: Store) {
    with_deliveries(&store, &["w"], 4).await;
    let w = id("w");
    let long = Duration::from_secs(600);
    store.claim_deliveries(10, long).await.unwrap();
    store
        .delivery_failed(&w, "d-00", failed(Some(500), "boom", None))
        .await
        .unwrap();
    store.delivery_succeeded(&w, "d-01", 200).await.unwrap();
    store.delivery_succeeded(&w, "d-02", 201).await.unwrap();

    // Dead, back to pending: due now, no attempts, the last error kept.
    assert!(store.redeliver(&w, "d-00").await.unwrap());
    let d = one_delivery(&store, "w", "d-00").await;
    assert_eq!(
        (
            d.state,
            d.attempts,
            d.last_status,
            d.last_error.as_deref(),
            d.delivered_at
        ),
        (DeliveryState::Pending, 0, Some(500), Some("boom"), None)
    );
    let claimed = store.claim_deliveries(10, long).await.unwrap();
    let got: Vec<(&str, i32)> = claimed
        .iter()
        .map(|c| (c.delivery_id.as_str(), c.attempts))
        .collect();
    assert_eq!(got, [("d-00", 0)]);
    // Pending (d-03, leased): left as it is.
    let leased = one_delivery(&store, "w", "d-03").await;
    assert!(store.redeliver(&w, "d-03").await.unwrap());
    assert_eq!(one_delivery(&store, "w", "d-03").await, leased);
    assert!(!store.redeliver(&w, "nope").await.unwrap());
    assert!(!store.redeliver(&id("other"), "d-00").await.unwrap());

    // Retention: only delivered ones, strictly older than the cutoff.
    let delivered: Vec<DateTime<Utc>> = [
        one_delivery(&store, "w", "d-01").await,
        one_delivery(&store, "w", "d-02").await,
    ]
    .iter()
    .map(|d| d.delivered_at.unwrap())
    .collect();
    let oldest = *delivered.iter().min().unwrap();
    let newest = *delivered.iter().max().unwrap();
    assert_eq!(store.delete_deliveries_before(oldest).await.unwrap(), 0);
    assert_eq!(
        store
            .delete_deliveries_before(newest + chrono::Duration::microseconds(1))
            .await
            .unwrap(),
        2
    );
    let left: Vec<String> = all_deliveries(&store, "w")
        .await
        .into_iter()
        .map(|d| d.delivery_id)
        .collect();
    assert_eq!(left, ["d-00", "d-03"]);

    // Delivered, then replayed: pending again, out of the retention's reach.
    store.delivery_succeeded(&w, "d-03", 200).await.unwrap();
    assert!(store.redeliver(&w, "d-03").await.unwrap());
    let d = one_delivery(&store, "w", "d-03").await;
    assert_eq!(
        (d.state, d.attempts, d.delivered_at, d.last_status),
        (DeliveryState::Pending, 0, None, Some(200))
    );
    assert_eq!(
        store
            .delete_deliveries_before(Utc::now() + chrono::Duration::days(1))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store.get_webhook(&w).await.unwrap().unwrap().deliveries,
        DeliveryCounts {
            pending: 2,
            delivered: 0,
            dead: 0
        }
    );
}

fn query(state: Option<DeliveryState>, after: Option<DeliveryCursor>, limit: i64) -> DeliveryQuery {
    DeliveryQuery {
        state,
        after,
        limit,
    }
}

fn failed(status: Option<u16>, error: &str, retry_at: Option<DateTime<Utc>>) -> FailedAttempt<'_> {
    FailedAttempt {
        status,
        error,
        retry_at,
    }
}
