//! The Sheets API v4 routes, under `/v4/spreadsheets`. The paths are matched by hand because
//! Google's are not REST-shaped for a router (`{id}:batchUpdate`, `values/{range}:append`, and a
//! range that may arrive encoded or not, `%2F` included).

use axum::body::{Body, Bytes};
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Emulator;
use crate::cell::{InputOption, RenderOption};
use crate::error::GoogleError;
use crate::faults::Kind;
use crate::store::{Major, invalid_enum};

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Call {
    Create,
    Get(String),
    BatchUpdate(String),
    ValuesGet(String, String),
    ValuesUpdate(String, String),
    ValuesAppend(String, String),
    ValuesClear(String, String),
    ValuesBatchGet(String),
    ValuesBatchUpdate(String),
    ValuesBatchClear(String),
}

impl Call {
    fn kind(&self) -> Kind {
        match self {
            Call::Get(_) | Call::ValuesGet(..) | Call::ValuesBatchGet(_) => Kind::Read,
            _ => Kind::Write,
        }
    }

    fn route(method: &Method, path: &str) -> Option<Call> {
        let rest = path.strip_prefix("/v4/spreadsheets")?;
        if rest.is_empty() || rest == "/" {
            return (method == Method::POST).then_some(Call::Create);
        }
        let rest = rest.strip_prefix('/')?;
        let (id_part, tail) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, ""),
        };
        if tail.is_empty() {
            return match (method, id_part.strip_suffix(":batchUpdate")) {
                (&Method::POST, Some(id)) => Some(Call::BatchUpdate(decode(id)?)),
                (&Method::GET, None) => Some(Call::Get(decode(id_part)?)),
                _ => None,
            };
        }
        let id = decode(id_part)?;
        match (method, tail) {
            (&Method::GET, "/values:batchGet") => return Some(Call::ValuesBatchGet(id)),
            (&Method::POST, "/values:batchUpdate") => return Some(Call::ValuesBatchUpdate(id)),
            (&Method::POST, "/values:batchClear") => return Some(Call::ValuesBatchClear(id)),
            _ => {}
        }
        let range = tail.strip_prefix("/values/")?;
        match *method {
            Method::GET => Some(Call::ValuesGet(id, decode(range)?)),
            Method::PUT => Some(Call::ValuesUpdate(id, decode(range)?)),
            Method::POST => {
                if let Some(range) = range.strip_suffix(":append") {
                    Some(Call::ValuesAppend(id, decode(range)?))
                } else {
                    let range = range.strip_suffix(":clear")?;
                    Some(Call::ValuesClear(id, decode(range)?))
                }
            }
            _ => None,
        }
    }
}

fn decode(part: &str) -> Option<String> {
    percent_decode_str(part)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// Query parameters, repeats kept (`ranges=a&ranges=b`).
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(query: Option<&str>) -> Self {
        Self(
            form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .collect()
    }

    fn flag(&self, name: &str) -> bool {
        self.get(name) == Some("true")
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ValueRangeIn {
    range: Option<String>,
    major_dimension: Option<String>,
    values: Option<Vec<Vec<Value>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BatchUpdateValuesIn {
    value_input_option: Option<String>,
    data: Option<Vec<ValueRangeIn>>,
    include_values_in_response: Option<bool>,
    response_value_render_option: Option<String>,
    // Accepted, not used: dates are not emulated.
    #[allow(dead_code)]
    response_date_time_render_option: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BatchUpdateIn {
    requests: Option<Vec<Value>>,
    include_spreadsheet_in_response: Option<bool>,
    // Accepted, not used: the updated spreadsheet is returned without grid data.
    #[allow(dead_code)]
    response_ranges: Option<Vec<String>>,
    #[allow(dead_code)]
    response_include_grid_data: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BatchClearIn {
    ranges: Option<Vec<String>>,
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, GoogleError> {
    let body: &[u8] = if body.is_empty() { b"{}" } else { body };
    serde_json::from_slice(body)
        .map_err(|e| GoogleError::invalid_argument(format!("Invalid JSON payload received. {e}")))
}

fn input_option(value: Option<&str>) -> Result<InputOption, GoogleError> {
    match value {
        None | Some("") | Some("INPUT_VALUE_OPTION_UNSPECIFIED") => Err(
            GoogleError::invalid_argument("'valueInputOption' is required but not specified"),
        ),
        Some(value) => InputOption::parse(value)
            .ok_or_else(|| invalid_enum("value_input_option", "ValueInputOption", value)),
    }
}

fn render_option(value: Option<&str>, field: &str) -> Result<RenderOption, GoogleError> {
    match value {
        None => Ok(RenderOption::Formatted),
        Some(value) => RenderOption::parse(value)
            .ok_or_else(|| invalid_enum(field, "ValueRenderOption", value)),
    }
}

/// The whole `/v4/...` surface: authentication, faults, then the call itself.
pub async fn dispatch(
    State(emulator): State<Emulator>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    emulator.wait_while_hung().await;
    let latency = emulator.lock_faults().latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    emulator.count(|s| &s.sheets_requests);
    // Google refuses bodies over 10 MiB (its docs set no hard limit and advise 2 MB; this is
    // what its front end answers).
    if body.len() > crate::MAX_PAYLOAD_BYTES {
        return GoogleError::invalid_argument(format!(
            "Request payload size exceeds the limit: {} bytes.",
            crate::MAX_PAYLOAD_BYTES
        ))
        .into_response();
    }
    let query = Query::parse(uri.query());
    let Some(call) = Call::route(&method, uri.path()) else {
        return GoogleError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("Method not found: {method} {}", uri.path()),
        )
        .into_response();
    };
    let kind = call.kind();
    let principal = match authenticate(&emulator, &headers, &query, kind) {
        Ok(principal) => principal,
        Err(error) => {
            emulator.count(|s| &s.unauthenticated);
            return error.into_response();
        }
    };
    let refused = {
        let mut faults = emulator.lock_faults();
        match faults.roll_error() {
            Some(error) => Some((error, false)),
            None => faults
                .check_quota(&principal, kind)
                .err()
                .map(|error| (error, true)),
        }
    };
    let refused = refused.or_else(|| {
        if kind != Kind::Write {
            return None;
        }
        let parsed: Value = serde_json::from_slice(&body).ok()?;
        emulator
            .lock_faults()
            .refusal(&parsed)
            .map(|error| (error, false))
    });
    if let Some((error, quota)) = refused {
        if quota {
            emulator.count(|s| &s.quota_refusals);
        } else {
            emulator.count(|s| &s.errors_injected);
        }
        return error.into_response();
    }
    let result = handle(&emulator, call, &query, &body);
    match result {
        Ok(reply) => {
            match kind {
                Kind::Read => emulator.count(|s| &s.reads),
                Kind::Write => emulator.count(|s| &s.writes),
            }
            if emulator.lock_faults().roll_drop() {
                emulator.count(|s| &s.replies_dropped);
                tracing::debug!(%method, path = uri.path(), "applied; dropping the reply");
                return dropped_reply();
            }
            axum::Json(reply).into_response()
        }
        Err(error) => error.into_response(),
    }
}

/// The service account behind a valid bearer token with a scope that covers `kind`.
fn authenticate(
    emulator: &Emulator,
    headers: &HeaderMap,
    query: &Query,
    kind: Kind,
) -> Result<String, GoogleError> {
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(token) = from_header.or_else(|| query.get("access_token")) else {
        return Err(GoogleError::unauthenticated(true));
    };
    let token = emulator
        .lock_oauth()
        .token(token)
        .ok_or_else(|| GoogleError::unauthenticated(false))?;
    if !token.allows(kind == Kind::Write) {
        return Err(GoogleError::insufficient_scopes());
    }
    Ok(token.principal)
}

/// A call made in-process (the [`Emulator`] methods that act as a person would): exactly what
/// the HTTP route does with it once authenticated and past the fault knobs, which do not apply
/// (nor do the request counters).
pub(crate) fn local(
    emulator: &Emulator,
    call: Call,
    query: &[(&str, &str)],
    body: &Value,
) -> Result<Value, GoogleError> {
    let query = Query(
        query
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect(),
    );
    let body = Bytes::from(body.to_string());
    handle(emulator, call, &query, &body)
}

fn handle(
    emulator: &Emulator,
    call: Call,
    query: &Query,
    body: &Bytes,
) -> Result<Value, GoogleError> {
    let max_cells = emulator.faults().max_cells();
    let mut store = emulator.lock_store();
    match call {
        Call::Create => {
            let body: Value = parse_body(body)?;
            let id = body["spreadsheetId"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(crate::new_spreadsheet_id);
            if store.contains(&id) {
                return Err(GoogleError::new(
                    StatusCode::CONFLICT,
                    "ALREADY_EXISTS",
                    format!("Spreadsheet {id} already exists."),
                ));
            }
            let created = store.create(id, &body, max_cells, crate::new_sheet_id)?;
            Ok(created.to_json())
        }
        Call::Get(id) => Ok(store.get(&id)?.to_json()),
        Call::BatchUpdate(id) => {
            let request: BatchUpdateIn = parse_body(body)?;
            let spreadsheet = store.get_mut(&id)?;
            let requests = request.requests.unwrap_or_default();
            let replies = spreadsheet.batch_update(&requests, max_cells, crate::new_sheet_id)?;
            let mut reply = json!({ "spreadsheetId": id, "replies": replies });
            if request.include_spreadsheet_in_response == Some(true) {
                reply["updatedSpreadsheet"] = spreadsheet.to_json();
            }
            Ok(reply)
        }
        Call::ValuesGet(id, range) => {
            let spreadsheet = store.get(&id)?;
            let major = Major::parse(query.get("majorDimension"))?;
            let render = render_option(query.get("valueRenderOption"), "value_render_option")?;
            spreadsheet.read(&range, major, render)
        }
        Call::ValuesBatchGet(id) => {
            let spreadsheet = store.get(&id)?;
            let major = Major::parse(query.get("majorDimension"))?;
            let render = render_option(query.get("valueRenderOption"), "value_render_option")?;
            let ranges = query
                .all("ranges")
                .into_iter()
                .map(|range| spreadsheet.read(range, major, render))
                .collect::<Result<Vec<_>, _>>()?;
            let mut reply = json!({ "spreadsheetId": id });
            if !ranges.is_empty() {
                reply["valueRanges"] = json!(ranges);
            }
            Ok(reply)
        }
        Call::ValuesUpdate(id, range) => {
            let input = input_option(query.get("valueInputOption"))?;
            let include = response_render(query)?;
            let body: ValueRangeIn = parse_body(body)?;
            let spreadsheet = store.get_mut(&id)?;
            check_body_range(&body, &range)?;
            let major = Major::parse(body.major_dimension.as_deref())?;
            spreadsheet.update(
                &range,
                &body.values.unwrap_or_default(),
                major,
                input,
                include,
                max_cells,
            )
        }
        Call::ValuesAppend(id, range) => {
            let input = input_option(query.get("valueInputOption"))?;
            let include = response_render(query)?;
            let insert_rows = match query.get("insertDataOption") {
                None | Some("OVERWRITE") => false,
                Some("INSERT_ROWS") => true,
                Some(other) => {
                    return Err(invalid_enum(
                        "insert_data_option",
                        "InsertDataOption",
                        other,
                    ));
                }
            };
            let body: ValueRangeIn = parse_body(body)?;
            let spreadsheet = store.get_mut(&id)?;
            check_body_range(&body, &range)?;
            let major = Major::parse(body.major_dimension.as_deref())?;
            spreadsheet.append(
                &range,
                &body.values.unwrap_or_default(),
                major,
                input,
                insert_rows,
                include,
                max_cells,
            )
        }
        Call::ValuesBatchUpdate(id) => {
            let request: BatchUpdateValuesIn = parse_body(body)?;
            let input = input_option(request.value_input_option.as_deref())?;
            let include = if request.include_values_in_response == Some(true) {
                Some(render_option(
                    request.response_value_render_option.as_deref(),
                    "response_value_render_option",
                )?)
            } else {
                None
            };
            let spreadsheet = store.get_mut(&id)?;
            let mut data = Vec::new();
            for (index, range) in request.data.unwrap_or_default().into_iter().enumerate() {
                let Some(name) = range.range else {
                    return Err(GoogleError::invalid_argument(format!(
                        "Invalid data[{index}]: Unable to parse range: "
                    )));
                };
                let major = Major::parse(range.major_dimension.as_deref())?;
                data.push((name, range.values.unwrap_or_default(), major));
            }
            spreadsheet.batch_update_values(&data, input, include, max_cells)
        }
        Call::ValuesClear(id, range) => {
            let spreadsheet = store.get_mut(&id)?;
            let cleared = spreadsheet.clear(&range)?;
            Ok(json!({ "spreadsheetId": id, "clearedRange": cleared }))
        }
        Call::ValuesBatchClear(id) => {
            let request: BatchClearIn = parse_body(body)?;
            let spreadsheet = store.get_mut(&id)?;
            // Validate every range before clearing any.
            let mut draft = spreadsheet.clone();
            let mut cleared = Vec::new();
            for range in request.ranges.unwrap_or_default() {
                cleared.push(draft.clear(&range)?);
            }
            *spreadsheet = draft;
            Ok(json!({ "spreadsheetId": id, "clearedRanges": cleared }))
        }
    }
}

fn response_render(query: &Query) -> Result<Option<RenderOption>, GoogleError> {
    if !query.flag("includeValuesInResponse") {
        return Ok(None);
    }
    render_option(
        query.get("responseValueRenderOption"),
        "response_value_render_option",
    )
    .map(Some)
}

/// A `range` in the body must name the same range as the URL.
fn check_body_range(body: &ValueRangeIn, url_range: &str) -> Result<(), GoogleError> {
    match &body.range {
        Some(range) if range.trim() != url_range.trim() => {
            let same = crate::a1::parse(range).ok() == crate::a1::parse(url_range).ok();
            if same {
                Ok(())
            } else {
                Err(GoogleError::invalid_argument(format!(
                    "Invalid ValueRange range: the range in the body [{range}] does not match the range in the URL [{url_range}]"
                )))
            }
        }
        _ => Ok(()),
    }
}

/// A reply that never arrives: the status line is held back and the body fails at once, so
/// hyper closes the connection without sending a response. The client sees a transport error,
/// not a status, which is what a lost reply from Google looks like.
pub fn dropped_reply() -> Response {
    let failing = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::other("reply dropped by fault injection"))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(failing))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_as_google_sheets4_sends_them() {
        let route = |method: Method, path: &str| Call::route(&method, path);
        assert_eq!(route(Method::POST, "/v4/spreadsheets"), Some(Call::Create));
        assert_eq!(
            route(Method::GET, "/v4/spreadsheets/abc"),
            Some(Call::Get("abc".into()))
        );
        assert_eq!(
            route(Method::POST, "/v4/spreadsheets/abc:batchUpdate"),
            Some(Call::BatchUpdate("abc".into()))
        );
        assert_eq!(
            route(
                Method::POST,
                "/v4/spreadsheets/abc/values/Sheet1!A:T:append"
            ),
            Some(Call::ValuesAppend("abc".into(), "Sheet1!A:T".into()))
        );
        assert_eq!(
            route(
                Method::POST,
                "/v4/spreadsheets/abc/values/%27Q%26A%20%231%20%2F%202%27%21A1:append"
            ),
            Some(Call::ValuesAppend("abc".into(), "'Q&A #1 / 2'!A1".into()))
        );
        assert_eq!(
            route(Method::PUT, "/v4/spreadsheets/abc/values/'My%20tab'!A1:B2"),
            Some(Call::ValuesUpdate("abc".into(), "'My tab'!A1:B2".into()))
        );
        assert_eq!(
            route(Method::GET, "/v4/spreadsheets/abc/values:batchGet"),
            Some(Call::ValuesBatchGet("abc".into()))
        );
        assert_eq!(
            route(Method::POST, "/v4/spreadsheets/abc/values:batchUpdate"),
            Some(Call::ValuesBatchUpdate("abc".into()))
        );
        assert_eq!(route(Method::DELETE, "/v4/spreadsheets/abc"), None);
        assert_eq!(route(Method::POST, "/v4/spreadsheets/abc/values/A1"), None);
    }
}
