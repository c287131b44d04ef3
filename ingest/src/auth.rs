//! Bearer-token authentication against `COLLECT_API_KEYS`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// The accepted keys, kept as SHA-256 digests so that comparing takes the same time whatever
/// the presented token's length or content.
#[derive(Clone)]
pub struct ApiKeys(Arc<Vec<[u8; 32]>>);

impl ApiKeys {
    pub fn new<'a>(keys: impl IntoIterator<Item = &'a str>) -> Self {
        Self(Arc::new(keys.into_iter().map(digest).collect()))
    }

    fn accepts(&self, token: &str) -> bool {
        let presented = digest(token);
        // Compare with every key, without stopping early.
        let mut matched = subtle::Choice::from(0);
        for key in self.0.iter() {
            matched |= key.ct_eq(&presented);
        }
        matched.into()
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

pub async fn require_api_key(
    State(keys): State<ApiKeys>,
    request: Request,
    next: Next,
) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    match token {
        Some(token) if keys.accepts(token) => next.run(request).await,
        Some(_) => unauthorized("the bearer token is not a valid API key"),
        None => unauthorized("send an API key as `Authorization: Bearer <key>`"),
    }
}

fn unauthorized(message: &str) -> Response {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
        .with_field("Authorization")
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_configured_keys() {
        let keys = ApiKeys::new(["alpha", "beta"]);
        assert!(keys.accepts("alpha"));
        assert!(keys.accepts("beta"));
        assert!(!keys.accepts("alph"));
        assert!(!keys.accepts(""));
        assert!(!ApiKeys::new([]).accepts("alpha"));
    }
}
