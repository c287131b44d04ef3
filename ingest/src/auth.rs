//! API keys and their roles.
//!
//! Each key of `COLLECT_API_KEYS` and `COLLECT_API_KEYS_FILE` has a role: `admin` (every
//! route), `reader` (the routes that read) or `collector` (submitting, its form, its flags and
//! its responses), and a collector key may be bound to one `user_id`. Which roles may call a
//! route is written once, on the route's `#[utoipa::path(security(("bearer" = [...])))]`: the
//! table the middleware checks ([`RouteRoles`]) is read from the OpenAPI document when the app
//! is built, and a route without it stops the build. The key's [`Principal`] goes into the
//! request's extensions; handlers take it as an extractor for the `user_id` checks.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use collect_shared::messages::UserId;
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::error::ApiError;

/// The security scheme of the OpenAPI document whose scopes are the roles that may call an
/// operation.
pub const SCHEME: &str = "bearer";

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Every route.
    Admin,
    /// The routes that read: forms, responses, sheet status, any collector's flags.
    Reader,
    /// Submitting responses, reading a form, flags and responses (of its own collector when
    /// bound to one).
    Collector,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::Reader, Role::Collector];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Reader => "reader",
            Role::Collector => "collector",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|role| role.as_str() == name)
    }

    fn bit(self) -> u8 {
        match self {
            Role::Admin => 1,
            Role::Reader => 2,
            Role::Collector => 4,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of roles: those that may call a route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Roles(u8);

impl Roles {
    fn insert(&mut self, role: Role) {
        self.0 |= role.bit();
    }

    pub fn contains(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }

    fn names(self) -> String {
        Role::ALL
            .into_iter()
            .filter(|role| self.contains(*role))
            .map(Role::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Who sent a request: the role of its key and, for a bound collector key, the one collector
/// it acts for. Handlers take it as an extractor (every route of the API has one, also with
/// `COLLECT_AUTH=off`, where it is an unbound admin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    role: Role,
    user_id: Option<UserId>,
}

impl Principal {
    fn new(role: Role, user_id: Option<UserId>) -> Self {
        Self { role, user_id }
    }

    /// Who every request is with `COLLECT_AUTH=off`.
    fn unrestricted() -> Self {
        Self::new(Role::Admin, None)
    }

    /// `Ok` when this key may act for the collector `user_id` (read their flags, submit or read
    /// their responses): every key but a collector key bound to another user. Otherwise `403
    /// forbidden` naming the field `user_id`.
    pub fn may_act_for(&self, user_id: &str) -> Result<(), ApiError> {
        self.may_act_for_field(user_id, "user_id")
    }

    /// [`Principal::may_act_for`], the `403` naming `field` (`collector.user_id`,
    /// `[3].collector.user_id`, ...).
    pub fn may_act_for_field(&self, user_id: &str, field: &str) -> Result<(), ApiError> {
        match &self.user_id {
            Some(bound) if bound.as_str() != user_id => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "this collector key is bound to user_id {:?}: it may not act for another collector",
                    bound.as_str()
                ),
            )
            .with_field(field)),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.user_id {
            Some(user_id) => write!(
                f,
                "{} key bound to user_id {:?}",
                self.role,
                user_id.as_str()
            ),
            None => write!(f, "{} key", self.role),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Principal>().cloned().ok_or_else(|| {
            tracing::error!(path = %parts.uri.path(), "a handler asks for the principal of a route outside the API key check");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "this route is not behind the API key check",
            )
        })
    }
}

/// The accepted keys with who presents them, kept as SHA-256 digests so that comparing takes
/// the same time whatever the presented token's length or content.
#[derive(Clone, Default)]
pub struct ApiKeys(Arc<Vec<([u8; 32], Principal)>>);

impl ApiKeys {
    /// The keys of `COLLECT_API_KEYS` (its comma-separated entries; blanks are ignored) and of
    /// the file `COLLECT_API_KEYS_FILE` names (one entry a line; blank lines and lines starting
    /// with `#` are ignored). An entry is `KEY` (an admin key), `admin:KEY`, `reader:KEY`,
    /// `collector:KEY` or `collector@USER_ID:KEY`. A malformed entry, or none at all, is an
    /// error naming the entry or line, never the key.
    pub fn load(entries: &[String], file: Option<&Path>) -> anyhow::Result<Self> {
        let mut parsed = Vec::new();
        let mut errors = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            let origin = format!("COLLECT_API_KEYS entry {}", index + 1);
            match parse_entry(entry) {
                Ok(key) => parsed.push((origin, key)),
                Err(error) => errors.push(format!("{origin}: {error}")),
            }
        }
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|error| {
                anyhow::anyhow!(
                    "COLLECT_API_KEYS_FILE {}: cannot read it: {error}",
                    path.display()
                )
            })?;
            for (number, line) in text.lines().enumerate() {
                let line = line.trim_start_matches('\u{feff}').trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let origin = format!(
                    "COLLECT_API_KEYS_FILE {} line {}",
                    path.display(),
                    number + 1
                );
                match parse_entry(line) {
                    Ok(key) => parsed.push((origin, key)),
                    Err(error) => errors.push(format!("{origin}: {error}")),
                }
            }
        }
        // The same key twice is fine when it means the same; with two roles it is a mistake.
        let mut keys: Vec<(String, [u8; 32], Principal)> = Vec::new();
        for (origin, (digest, principal)) in parsed {
            match keys.iter().find(|(_, known, _)| *known == digest) {
                Some((first, _, known)) if *known != principal => errors.push(format!(
                    "{origin}: the same key as {first}, with another role or user_id"
                )),
                Some(_) => {}
                None => keys.push((origin, digest, principal)),
            }
        }
        if !errors.is_empty() {
            anyhow::bail!("invalid API keys: {}", errors.join("; "));
        }
        if keys.is_empty() {
            anyhow::bail!(
                "COLLECT_API_KEYS and COLLECT_API_KEYS_FILE hold no key: set at least one API key, or COLLECT_AUTH=off to run without authentication"
            );
        }
        let count = |role: Role| keys.iter().filter(|(_, _, p)| p.role == role).count();
        tracing::info!(
            admin = count(Role::Admin),
            reader = count(Role::Reader),
            collector = count(Role::Collector),
            "API keys loaded"
        );
        Ok(Self(Arc::new(
            keys.into_iter()
                .map(|(_, digest, principal)| (digest, principal))
                .collect(),
        )))
    }

    /// Who presents `token`, if anyone. Compared with every key, without stopping early.
    fn find(&self, token: &str) -> Option<&Principal> {
        let presented = digest(token);
        let mut found = u64::MAX;
        for (index, (key, _)) in self.0.iter().enumerate() {
            found.conditional_assign(&(index as u64), key.ct_eq(&presented));
        }
        usize::try_from(found)
            .ok()
            .and_then(|index| self.0.get(index))
            .map(|(_, principal)| principal)
    }
}

/// One entry: `KEY`, `ROLE:KEY` or `collector@USER_ID:KEY`. The error never holds the key
/// (nor what precedes the first `:`, which may be part of a key).
fn parse_entry(entry: &str) -> Result<([u8; 32], Principal), String> {
    let Some((spec, key)) = entry.split_once(':') else {
        return Ok((digest(entry), Principal::new(Role::Admin, None)));
    };
    let key = key.trim();
    let (role, user_id) = match spec.trim().split_once('@') {
        None => (spec.trim(), None),
        Some((role, user_id)) => (role, Some(user_id)),
    };
    let Some(role) = Role::parse(role) else {
        return Err(
            "unknown role before the first `:` (use admin, reader, collector or collector@USER_ID; a key that contains `:` needs its role in front, as in admin:KEY)"
                .to_owned(),
        );
    };
    let user_id = match user_id {
        None => None,
        Some(_) if role != Role::Collector => {
            return Err(format!(
                "only a collector key can be bound to a user_id, not a {role} key"
            ));
        }
        Some(user_id) => Some(
            UserId::parse(user_id)
                .map_err(|error| format!("the bound user_id is not valid: {error}"))?,
        ),
    };
    if key.is_empty() {
        return Err(format!("the key after `{role}:` is empty"));
    }
    Ok((digest(key), Principal::new(role, user_id)))
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The roles that may call each route of the API (by method and path template, as axum's
/// [`MatchedPath`] gives it), read from the operations' `security` in the OpenAPI document.
#[derive(Debug, Default)]
pub struct RouteRoles(HashMap<String, Vec<(Method, Roles)>>);

/// The methods an OpenAPI path item may describe.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

impl RouteRoles {
    /// Every operation of `document` must have `security: [{"bearer": [roles]}]`, with known
    /// roles, `admin` among them; otherwise the error names each operation at fault.
    pub fn from_openapi(document: &utoipa::openapi::OpenApi) -> anyhow::Result<Self> {
        let document = serde_json::to_value(document)?;
        Self::from_document(&document).map_err(|errors| {
            anyhow::anyhow!(
                "routes without the roles that may call them: {}",
                errors.join("; ")
            )
        })
    }

    fn from_document(document: &Value) -> Result<Self, Vec<String>> {
        let mut table = Self::default();
        let mut errors = Vec::new();
        let paths = document["paths"].as_object().cloned().unwrap_or_default();
        for (path, item) in &paths {
            for name in METHODS {
                let Some(operation) = item.get(name) else {
                    continue;
                };
                let method = Method::from_bytes(name.to_ascii_uppercase().as_bytes())
                    .expect("an HTTP method");
                match roles_of(operation) {
                    Ok(roles) => table
                        .0
                        .entry(path.clone())
                        .or_default()
                        .push((method, roles)),
                    Err(error) => errors.push(format!("{method} {path} {error}")),
                }
            }
        }
        if errors.is_empty() {
            Ok(table)
        } else {
            Err(errors)
        }
    }

    /// The roles that may call `method` on the route `path` (a `HEAD` is its `GET`).
    pub fn roles(&self, method: &Method, path: &str) -> Option<Roles> {
        let operations = self.0.get(path)?;
        let find = |wanted: &Method| {
            operations
                .iter()
                .find(|(method, _)| method == wanted)
                .map(|(_, roles)| *roles)
        };
        find(method).or_else(|| {
            (method == Method::HEAD)
                .then(|| find(&Method::GET))
                .flatten()
        })
    }
}

fn roles_of(operation: &Value) -> Result<Roles, String> {
    let example = "security((\"bearer\" = [\"admin\", ...])) in its #[utoipa::path], listing the roles that may call it";
    let requirements = match operation.get("security").and_then(Value::as_array) {
        Some(requirements) if !requirements.is_empty() => requirements,
        _ => return Err(format!("has no security requirement: add {example}")),
    };
    let [requirement] = requirements.as_slice() else {
        return Err(format!(
            "has {} security requirements: give it exactly one, {example}",
            requirements.len()
        ));
    };
    let scopes = requirement
        .as_object()
        .filter(|requirement| requirement.len() == 1)
        .and_then(|requirement| requirement.get(SCHEME))
        .and_then(Value::as_array)
        .ok_or_else(|| format!("does not use the `{SCHEME}` scheme alone: {example}"))?;
    let mut roles = Roles::default();
    for scope in scopes {
        let role = scope.as_str().and_then(Role::parse).ok_or_else(|| {
            format!("names an unknown role {scope} (the roles are admin, reader and collector)")
        })?;
        roles.insert(role);
    }
    if !roles.contains(Role::Admin) {
        return Err("does not list `admin`: admin keys may call every route".to_owned());
    }
    Ok(roles)
}

/// The API key check: `401` without a known key, `403` when the key's role may not call the
/// route; otherwise the request goes on with the key's [`Principal`] in its extensions.
#[derive(Clone)]
pub struct Auth {
    keys: ApiKeys,
    routes: Arc<RouteRoles>,
}

impl Auth {
    pub fn new(keys: ApiKeys, routes: RouteRoles) -> Self {
        Self {
            keys,
            routes: Arc::new(routes),
        }
    }
}

pub async fn authorize(State(auth): State<Auth>, mut request: Request, next: Next) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let principal = match token {
        None => return unauthorized("send an API key as `Authorization: Bearer <key>`"),
        Some(token) => match auth.keys.find(token) {
            Some(principal) => principal.clone(),
            None => return unauthorized("the bearer token is not a valid API key"),
        },
    };
    let method = request.method().clone();
    let Some(path) = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
    else {
        return forbidden(format!(
            "no role may call {method} {}",
            request.uri().path()
        ));
    };
    match auth.routes.roles(&method, &path) {
        Some(roles) if roles.contains(principal.role) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Some(roles) => forbidden(format!(
            "a {principal} may not call {method} {path}: only {} keys may",
            roles.names()
        )),
        None => {
            // Every documented route is in the table (the build checks it): this one was
            // added without its `utoipa::path`.
            tracing::error!(%method, %path, "a route with no roles in the OpenAPI document");
            forbidden(format!("no role may call {method} {path}"))
        }
    }
}

/// With `COLLECT_AUTH=off`: every request is an unbound admin's.
pub async fn allow_all(mut request: Request, next: Next) -> Response {
    request.extensions_mut().insert(Principal::unrestricted());
    next.run(request).await
}

fn unauthorized(message: &str) -> Response {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
        .with_field("Authorization")
        .into_response()
}

fn forbidden(message: String) -> Response {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
        .with_field("Authorization")
        .into_response()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keys(entries: &[&str]) -> anyhow::Result<ApiKeys> {
        let entries: Vec<String> = entries.iter().map(|entry| (*entry).to_owned()).collect();
        ApiKeys::load(&entries, None)
    }

    fn principal(role: Role, user_id: Option<&str>) -> Principal {
        Principal::new(role, user_id.map(|id| UserId::parse(id).unwrap()))
    }

    /// The error of a configuration, checked not to contain any of `secrets`.
    fn error_without(result: anyhow::Result<ApiKeys>, secrets: &[&str]) -> String {
        let error = format!("{:#}", result.err().expect("refused"));
        for secret in secrets {
            assert!(!error.contains(secret), "{secret:?} is in {error:?}");
        }
        error
    }

    #[test]
    fn accepts_only_configured_keys() {
        let keys = keys(&["alpha", "beta"]).unwrap();
        assert!(keys.find("alpha").is_some());
        assert!(keys.find("beta").is_some());
        assert!(keys.find("alph").is_none());
        assert!(keys.find("").is_none());
        assert!(ApiKeys::default().find("alpha").is_none());
    }

    #[test]
    fn entries_give_roles_and_bound_collectors() {
        let keys = keys(&[
            "bare-key",
            " admin:admin-key ",
            "reader:reader-key",
            "collector:collector-key",
            "collector@u-1:bound-key",
            "",
            "  ",
            "admin:with:colons",
        ])
        .unwrap();
        let cases = [
            ("bare-key", principal(Role::Admin, None)),
            ("admin-key", principal(Role::Admin, None)),
            ("reader-key", principal(Role::Reader, None)),
            ("collector-key", principal(Role::Collector, None)),
            ("bound-key", principal(Role::Collector, Some("u-1"))),
            ("with:colons", principal(Role::Admin, None)),
        ];
        for (key, expected) in cases {
            assert_eq!(keys.find(key), Some(&expected), "{key}");
        }
        // The role is not part of the key.
        assert!(keys.find("reader:reader-key").is_none());
        assert!(keys.find("collector@u-1:bound-key").is_none());
    }

    #[test]
    fn malformed_entries_are_named_without_their_key() {
        for (entries, secrets, expected) in [
            (
                vec!["ok-key", "reeder:s3cret"],
                vec!["s3cret", "reeder"],
                "COLLECT_API_KEYS entry 2: unknown role",
            ),
            (
                vec!["a:b:c"],
                vec!["b:c"],
                "COLLECT_API_KEYS entry 1: unknown role",
            ),
            (
                vec!["reader:"],
                vec![],
                "COLLECT_API_KEYS entry 1: the key after `reader:` is empty",
            ),
            (
                vec!["collector@u-1:  "],
                vec![],
                "entry 1: the key after `collector:` is empty",
            ),
            (
                vec!["collector@:s3cret"],
                vec!["s3cret"],
                "entry 1: the bound user_id is not valid: user_id must be 1 to 128",
            ),
            (
                vec!["collector@u 1:s3cret"],
                vec!["s3cret"],
                "entry 1: the bound user_id is not valid",
            ),
            (
                vec!["admin@u-1:s3cret"],
                vec!["s3cret"],
                "only a collector key can be bound",
            ),
            (
                vec!["ok", "", "Admin:s3cret"],
                vec!["s3cret"],
                "COLLECT_API_KEYS entry 3: unknown role",
            ),
            (
                vec!["reader:s3cret", "collector:s3cret"],
                vec!["s3cret"],
                "COLLECT_API_KEYS entry 2: the same key as COLLECT_API_KEYS entry 1",
            ),
        ] {
            let error = error_without(keys(&entries), &secrets);
            assert!(error.contains(expected), "{entries:?}: {error}");
        }
        // Every malformed entry is named at once.
        let error = error_without(keys(&["x:1", "reader:2", "y:3"]), &[]);
        assert!(
            error.contains("entry 1") && error.contains("entry 3") && !error.contains("entry 2"),
            "{error}"
        );
        // The same key twice with the same role is fine.
        assert!(keys(&["reader:k", "reader:k"]).is_ok());
    }

    #[test]
    fn no_key_at_all_is_refused() {
        let error = error_without(keys(&["", " "]), &[]);
        assert!(error.contains("COLLECT_API_KEYS"), "{error}");
    }

    fn write_file(text: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("collect-keys-{}", uuid::Uuid::new_v4()));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn the_file_adds_its_keys_to_the_environments() {
        let path = write_file(
            "\u{feff}# Collect's keys\n\n  reader:file-reader  \r\ncollector@u-9:file,bound\n   # indented comment\nfile-admin\n",
        );
        let keys = ApiKeys::load(&["env-key".to_owned()], Some(&path)).unwrap();
        assert_eq!(keys.find("env-key"), Some(&principal(Role::Admin, None)));
        assert_eq!(
            keys.find("file-reader"),
            Some(&principal(Role::Reader, None))
        );
        // A line is one entry: commas are part of the key.
        assert_eq!(
            keys.find("file,bound"),
            Some(&principal(Role::Collector, Some("u-9")))
        );
        assert_eq!(keys.find("file-admin"), Some(&principal(Role::Admin, None)));
        assert!(keys.find("# Collect's keys").is_none());
        // The file alone is enough.
        assert!(ApiKeys::load(&[], Some(&path)).is_ok());
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_malformed_line_is_named_by_its_number() {
        let path = write_file("# keys\nreader:fine\n\nwriter:t0p-secret\ncollector@:an0ther\n");
        let error = error_without(
            ApiKeys::load(&[], Some(&path)),
            &["t0p-secret", "an0ther", "writer"],
        );
        let at = |line: usize| format!("COLLECT_API_KEYS_FILE {} line {line}: ", path.display());
        assert!(error.contains(&format!("{}unknown role", at(4))), "{error}");
        assert!(
            error.contains(&format!("{}the bound user_id", at(5))),
            "{error}"
        );
        // Against the environment's keys too.
        std::fs::remove_file(&path).unwrap();
        let path = write_file("reader:fine\n");
        let error = error_without(
            ApiKeys::load(&["admin:fine".to_owned()], Some(&path)),
            &["fine"],
        );
        assert!(
            error.contains("line 1: the same key as COLLECT_API_KEYS entry 1"),
            "{error}"
        );
        std::fs::remove_file(&path).unwrap();

        let missing = std::env::temp_dir().join("collect-keys-that-do-not-exist");
        let error = error_without(ApiKeys::load(&[], Some(&missing)), &[]);
        assert!(
            error.contains("COLLECT_API_KEYS_FILE") && error.contains("cannot read"),
            "{error}"
        );
    }

    #[test]
    fn bound_collectors_act_for_their_user_only() {
        let bound = principal(Role::Collector, Some("u-1"));
        assert!(bound.may_act_for("u-1").is_ok());
        let error = bound.may_act_for("u-2").unwrap_err();
        assert_eq!(error.status, StatusCode::FORBIDDEN);
        assert_eq!(error.code, "forbidden");
        assert_eq!(error.field.as_deref(), Some("user_id"));
        let error = bound
            .may_act_for_field("u-1x", "[3].collector.user_id")
            .unwrap_err();
        assert_eq!(error.field.as_deref(), Some("[3].collector.user_id"));
        for free in [
            principal(Role::Collector, None),
            principal(Role::Reader, None),
            principal(Role::Admin, None),
            Principal::unrestricted(),
        ] {
            assert!(free.may_act_for("anyone").is_ok(), "{free}");
        }
    }

    fn document(security: Value) -> Value {
        json!({"paths": {
            "/ok": {"get": {"security": [{"bearer": ["admin", "reader"]}]}},
            "/v1/x/{id}": {"post": {"security": security}, "parameters": []}
        }})
    }

    #[test]
    fn the_route_table_comes_from_the_document() {
        let table =
            RouteRoles::from_document(&document(json!([{"bearer": ["admin", "collector"]}])))
                .unwrap();
        let roles = table.roles(&Method::POST, "/v1/x/{id}").unwrap();
        assert!(roles.contains(Role::Admin) && roles.contains(Role::Collector));
        assert!(!roles.contains(Role::Reader));
        assert_eq!(
            table.roles(&Method::HEAD, "/ok"),
            table.roles(&Method::GET, "/ok")
        );
        assert!(table.roles(&Method::GET, "/v1/x/{id}").is_none());
        assert!(table.roles(&Method::GET, "/other").is_none());
    }

    #[test]
    fn a_route_without_its_roles_is_refused() {
        for (security, expected) in [
            (Value::Null, "has no security requirement"),
            (json!([]), "has no security requirement"),
            (json!([{"api_key": []}]), "does not use the `bearer` scheme"),
            (
                json!([{"bearer": ["admin"], "api_key": []}]),
                "does not use the `bearer` scheme",
            ),
            (
                json!([{"bearer": ["admin"]}, {}]),
                "has 2 security requirements",
            ),
            (
                json!([{"bearer": ["admin", "writer"]}]),
                "unknown role \"writer\"",
            ),
            (json!([{"bearer": ["reader"]}]), "does not list `admin`"),
            (json!([{"bearer": []}]), "does not list `admin`"),
        ] {
            let errors = RouteRoles::from_document(&document(security.clone())).unwrap_err();
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(errors[0].starts_with("POST /v1/x/{id} "), "{errors:?}");
            assert!(errors[0].contains(expected), "{security}: {errors:?}");
        }
    }
}
