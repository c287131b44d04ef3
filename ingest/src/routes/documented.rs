//! The error answers many routes share, documented once for `/openapi.json`: a route lists
//! the types whose answers it can give (`responses(..., Unauthorized, DatabaseUnavailable)`).

#![allow(dead_code)] // Only their documentation is used: no value of these is ever built.

use utoipa::IntoResponses;

use super::ErrorBody;

/// `401`: every route that takes a key.
#[derive(IntoResponses)]
#[response(status = 401, description = "`unauthorized`: no or unknown bearer key")]
pub struct Unauthorized(ErrorBody);

/// `403`: routes for admin keys only.
#[derive(IntoResponses)]
#[response(status = 403, description = "`forbidden`: only admin keys may")]
pub struct AdminOnly(ErrorBody);

/// `404`: routes under a form.
#[derive(IntoResponses)]
#[response(status = 404, description = "`unknown_form`: no such form")]
pub struct UnknownForm(ErrorBody);

/// `408`: routes that read a body.
#[derive(IntoResponses)]
#[response(status = 408, description = "The request took over 30 s")]
pub struct Timeout;

/// `400` and `415`: routes that read a JSON body.
#[derive(IntoResponses)]
pub enum NotJson {
    #[response(status = 400, description = "`malformed_json`: not JSON")]
    Malformed(ErrorBody),
    #[response(
        status = 415,
        description = "`unsupported_media_type`: not `application/json`"
    )]
    NotJsonMediaType(ErrorBody),
}

/// `413`: routes that read a body of any size.
#[derive(IntoResponses)]
#[response(
    status = 413,
    description = "`body_too_large`: over `COLLECT_MAX_BODY_BYTES`"
)]
pub struct BodyTooLarge(ErrorBody);

/// `503`: routes that read or write the database.
#[derive(IntoResponses)]
#[response(
    status = 503,
    description = "`database_unavailable`: retry",
    headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))
)]
pub struct DatabaseUnavailable(ErrorBody);

/// `503`: the live flag stream.
#[derive(IntoResponses)]
#[response(
    status = 503,
    description = "`database_unavailable`, or `too_many_streams`: this instance serves `FLAGS_WATCH_MAX_STREAMS` streams already; retry",
    headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))
)]
pub struct StreamsUnavailable(ErrorBody);

/// `403`: routes about one collector.
#[derive(IntoResponses)]
#[response(
    status = 403,
    description = "`forbidden`: the key's role may not call this route, or a collector key bound to another collector (`field: user_id`)"
)]
pub struct ForbiddenCollector(ErrorBody);
