//! `GET /v1/collectors/{user_id}/flags:watch`: a collector's flag events as Server-Sent Events.

use super::Collector;
use super::documented::*;
use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use collect_shared::store::FlagCursor;
use futures::{Stream, StreamExt as _};

use super::{AppState, ErrorBody, FlagHistoryEvent};
use crate::error::ApiError;

/// How soon a client should reconnect after the stream ends (the SSE `retry` field).
const RECONNECT: Duration = Duration::from_secs(1);

/// Comments sent while nothing happens, so that proxies keep the connection open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The collector's flag events as they are committed, as Server-Sent Events: each event is
/// `event: flagged` or `event: cleared`, `data:` the event as `N.flags` carries it, and `id:`
/// its cursor in the flag history. The stream first sends the history after the starting
/// point, then each new event within about a second of the validator's commit. A client that
/// reconnects with `Last-Event-ID` (every SSE client does) misses nothing and gets nothing
/// twice.
#[utoipa::path(
    get,
    path = "/v1/collectors/{user_id}/flags:watch",
    tag = "responses",
    params(
        ("user_id" = String, Path, description = "The collector"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event (its `id`); wins over `after`"),
        ("after" = Option<String>, Query, description = "Start after this cursor (an event's `id`, or `next` of `flags:history`), or `now` for new events only; absent: from the start of the history"),
    ),
    responses(
        (status = 200, description = "`text/event-stream` of `flagged` and `cleared` events; `data` is a FlagHistoryEvent, `id` its cursor", content_type = "text/event-stream", body = FlagHistoryEvent),
        (status = 422, description = "`invalid_field`: a bad `user_id`, `after` or `Last-Event-ID`", body = ErrorBody),
        Unauthorized, ForbiddenCollector, StreamsUnavailable,
    ),
    security(("bearer" = ["admin", "reader", "collector"]))
)]
pub async fn watch_flags(
    State(state): State<AppState>,
    Collector(id): Collector,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    // Held by the stream's watcher for as long as the stream is open.
    let admitted = state.watch.admit().ok_or_else(ApiError::too_many_streams)?;
    let last_event_id = headers
        .get("last-event-id")
        .map(|value| {
            value
                .to_str()
                .map_err(|_| ApiError::invalid("Last-Event-ID", "Last-Event-ID must be ASCII"))
        })
        .transpose()?;
    let start = match (last_event_id, query.get("after").map(String::as_str)) {
        (Some(text), _) if !text.trim().is_empty() => cursor(text.trim(), "Last-Event-ID")?,
        (_, Some("now")) => state
            .watch
            .end_of_history(&id)
            .await
            .map_err(ApiError::database)?,
        (_, Some(text)) if !text.is_empty() => cursor(text, "after")?,
        _ => FlagCursor::default(),
    };

    let (sink, mut updates) = tokio::sync::mpsc::channel(32);
    let watch = state.watch.clone();
    tokio::spawn(async move {
        let _admitted = admitted;
        watch.run_watcher(id, start, sink).await;
    });
    let first = futures::stream::once(async { Ok(Event::default().retry(RECONNECT)) });
    let events = futures::stream::poll_fn(move |cx| updates.poll_recv(cx)).map(|(at, event)| {
        let kind = event.kind.as_str();
        let body = FlagHistoryEvent {
            id: at.to_string(),
            event: *event,
        };
        Ok(Event::default()
            .id(at.to_string())
            .event(kind)
            .json_data(&body)
            .unwrap_or_else(|error| {
                tracing::error!(%error, "cannot encode a flag event");
                Event::default().comment("an event could not be encoded")
            }))
    });
    Ok(Sse::new(first.chain(events)).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

fn cursor(text: &str, field: &str) -> Result<FlagCursor, ApiError> {
    FlagCursor::parse(text).ok_or_else(|| {
        ApiError::invalid(
            field.to_owned(),
            format!("{field} must be an event's `id` from this stream or from flags:history"),
        )
    })
}
