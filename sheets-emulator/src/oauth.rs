//! Google's OAuth 2.0 token endpoint for service accounts (the JWT-bearer grant), and the keys
//! it trusts: ones it issued (`POST /emulator/service-accounts`, `make-key`) and the one of
//! `--key-file`.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{self, KeyPair as _, UnparsedPublicKey};
use aws_lc_rs::{digest, hmac};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use crate::Emulator;

const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Google answers `expires_in: 3599` for a fresh one-hour token.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(3599);
/// Clock skew tolerated on `iat`.
const SKEW_SECONDS: i64 = 300;
/// Scopes that allow writing to a spreadsheet; reading also accepts the read-only ones.
const WRITE_SCOPES: &[&str] = &[
    "https://www.googleapis.com/auth/spreadsheets",
    "https://www.googleapis.com/auth/drive",
    "https://www.googleapis.com/auth/drive.file",
];
const READ_ONLY_SCOPES: &[&str] = &[
    "https://www.googleapis.com/auth/spreadsheets.readonly",
    "https://www.googleapis.com/auth/drive.readonly",
];

/// A service account the emulator trusts.
#[derive(Debug, Clone)]
pub struct Account {
    pub client_email: String,
    pub private_key_id: String,
    /// RSAPublicKey (PKCS#1) DER.
    public_key: Vec<u8>,
    /// The key file's `token_uri`, which clients use as the JWT audience.
    token_uri: String,
}

/// What an access token stands for. Tokens carry it themselves, MACed (see [`OAuth`]).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Token {
    #[serde(rename = "p")]
    pub principal: String,
    #[serde(rename = "s")]
    scopes: Vec<String>,
    /// Unix seconds.
    #[serde(rename = "e")]
    expires: i64,
}

impl Token {
    pub fn allows(&self, write: bool) -> bool {
        self.scopes.iter().any(|scope| {
            WRITE_SCOPES.contains(&scope.as_str())
                || (!write && READ_ONLY_SCOPES.contains(&scope.as_str()))
        })
    }
}

/// Trusted accounts, and the secret access tokens are MACed with. A token is
/// `ya29.<claims>.<mac>` rather than a key into a table, so that with `--key-file` (the secret
/// is then derived from that key) a restarted emulator still honours the tokens clients cached,
/// as Google would.
pub struct OAuth {
    accounts: HashMap<String, Account>,
    secret: hmac::Key,
}

impl Default for OAuth {
    fn default() -> Self {
        Self {
            accounts: HashMap::new(),
            secret: hmac::Key::new(hmac::HMAC_SHA256, &random_bytes::<32>()),
        }
    }
}

/// An error of the token endpoint: `{"error": "invalid_grant", "error_description": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantError {
    pub error: &'static str,
    pub description: String,
}

impl GrantError {
    fn invalid_grant(description: impl Into<String>) -> Self {
        Self {
            error: "invalid_grant",
            description: description.into(),
        }
    }
}

impl IntoResponse for GrantError {
    fn into_response(self) -> Response {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "error": self.error, "error_description": self.description })),
        )
            .into_response()
    }
}

impl OAuth {
    pub fn trust(&mut self, account: Account) {
        self.accounts.insert(account.client_email.clone(), account);
    }

    /// Derives the token secret from `material` (a persistent key), instead of a random one.
    pub fn derive_secret(&mut self, material: &[u8]) {
        let mut context = digest::Context::new(&digest::SHA256);
        context.update(b"sheets-emulator access tokens\0");
        context.update(material);
        self.secret = hmac::Key::new(hmac::HMAC_SHA256, context.finish().as_ref());
    }

    /// What `token` stands for, if it is one of ours and still live.
    pub fn token(&self, token: &str) -> Option<Token> {
        let (claims, mac) = token.strip_prefix("ya29.")?.split_once('.')?;
        let mac = URL_SAFE_NO_PAD.decode(mac).ok()?;
        hmac::verify(&self.secret, claims.as_bytes(), &mac).ok()?;
        let token: Token = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()?;
        (token.expires > unix_now()).then_some(token)
    }

    /// Verifies a JWT-bearer assertion and issues an access token for it. `audiences` are the
    /// token URLs the request may have been meant for (besides the key's own `token_uri`).
    pub fn exchange(
        &mut self,
        assertion: &str,
        audiences: &[String],
    ) -> Result<String, GrantError> {
        let malformed = |what: &str| GrantError::invalid_grant(format!("Invalid JWT: {what}"));
        let mut parts = assertion.split('.');
        let (Some(head), Some(body), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed("an assertion has three dot-separated parts"));
        };
        let header: Value = decode_json(head).ok_or_else(|| malformed("unreadable header"))?;
        let claims: Value = decode_json(body).ok_or_else(|| malformed("unreadable claims"))?;
        let signature =
            decode_b64url(signature).ok_or_else(|| malformed("unreadable signature"))?;
        if header["alg"] != "RS256" {
            return Err(malformed("the algorithm must be RS256"));
        }
        let issuer = claims["iss"].as_str().unwrap_or_default();
        let account = match header["kid"].as_str() {
            Some(kid) => self.accounts.values().find(|a| {
                a.private_key_id == kid && (issuer.is_empty() || a.client_email == issuer)
            }),
            None => self.accounts.get(issuer),
        }
        .ok_or_else(|| GrantError::invalid_grant("Invalid grant: account not found"))?;

        // The signature covers the first two parts exactly as sent.
        let signed = &assertion[..head.len() + 1 + body.len()];
        UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &account.public_key)
            .verify(signed.as_bytes(), &signature)
            .map_err(|_| GrantError::invalid_grant("Invalid JWT Signature."))?;

        let audience = claims["aud"].as_str().unwrap_or_default();
        if audience != account.token_uri && !audiences.iter().any(|a| a == audience) {
            return Err(GrantError::invalid_grant(format!(
                "Invalid JWT: Failed audience check. The right audience is {}",
                account.token_uri
            )));
        }

        let now = unix_now();
        let timeframe = || {
            GrantError::invalid_grant(
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
            )
        };
        let (Some(iat), Some(exp)) = (claims["iat"].as_i64(), claims["exp"].as_i64()) else {
            return Err(timeframe());
        };
        if exp <= iat || exp - iat > 3600 || exp <= now || iat > now + SKEW_SECONDS {
            return Err(timeframe());
        }

        let scopes: Vec<String> = claims["scope"]
            .as_str()
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        if scopes.is_empty() {
            return Err(GrantError {
                error: "invalid_scope",
                description: "Empty or missing scope not allowed.".into(),
            });
        }

        let claims = Token {
            principal: account.client_email.clone(),
            scopes,
            expires: unix_now() + TOKEN_LIFETIME.as_secs() as i64,
        };
        let claims = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default());
        let mac = hmac::sign(&self.secret, claims.as_bytes());
        Ok(format!(
            "ya29.{claims}.{}",
            URL_SAFE_NO_PAD.encode(mac.as_ref())
        ))
    }
}

/// A new RSA-2048 service-account key, as Google's key JSON, and the account to trust for it.
pub fn generate_key(token_uri: &str) -> anyhow::Result<(Value, Account)> {
    let key = KeyPair::generate(KeySize::Rsa2048)
        .map_err(|_| anyhow::anyhow!("cannot generate an RSA key"))?;
    let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&key)
        .map_err(|_| anyhow::anyhow!("cannot encode the RSA key"))?;
    let der: &[u8] = pkcs8.as_ref();
    let private_key_id = hex(&random_bytes::<20>());
    let suffix = hex(&random_bytes::<4>());
    let client_email = format!("emulator-{suffix}@sheets-emulator.iam.gserviceaccount.com");
    let client_id: String = random_bytes::<21>()
        .iter()
        .map(|b| char::from(b'0' + b % 10))
        .collect();
    let json = json!({
        "type": "service_account",
        "project_id": "sheets-emulator",
        "private_key_id": private_key_id,
        "private_key": pem("PRIVATE KEY", der),
        "client_email": client_email,
        "client_id": client_id,
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": format!(
            "https://www.googleapis.com/robot/v1/metadata/x509/{}",
            client_email.replace('@', "%40")
        ),
        "universe_domain": "googleapis.com",
    });
    let account = Account {
        client_email,
        private_key_id,
        public_key: key.public_key().as_ref().to_vec(),
        token_uri: token_uri.to_owned(),
    };
    Ok((json, account))
}

/// The account of a service-account key JSON (its private key gives the public one).
pub fn account_from_key(key: &Value) -> anyhow::Result<Account> {
    let field = |name: &str| {
        key[name]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("the key has no {name:?}"))
    };
    let der = pem_decode(&field("private_key")?).context("the private_key is not PEM")?;
    let pair = KeyPair::from_pkcs8(&der)
        .map_err(|e| anyhow::anyhow!("the private_key is not a PKCS#8 RSA key: {e}"))?;
    Ok(Account {
        client_email: field("client_email")?,
        private_key_id: field("private_key_id").unwrap_or_default(),
        public_key: pair.public_key().as_ref().to_vec(),
        token_uri: field("token_uri")?,
    })
}

/// `POST /token`.
pub async fn token(State(emulator): State<Emulator>, headers: HeaderMap, body: Bytes) -> Response {
    let faulty = emulator.faults().include_token;
    if faulty {
        emulator.wait_while_hung().await;
        let latency = emulator.lock_faults().latency();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let injected = emulator.lock_faults().roll_error();
        if let Some(error) = injected {
            emulator.count(|s| &s.errors_injected);
            let mut response = (
                error.code,
                axum::Json(json!({
                    "error": "temporarily_unavailable",
                    "error_description": error.message,
                })),
            )
                .into_response();
            if let Some(seconds) = error.retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, seconds.into());
            }
            return response;
        }
    }
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let grant_type = form.get("grant_type").map(String::as_str).unwrap_or("");
    if grant_type != GRANT_TYPE {
        return GrantError {
            error: "unsupported_grant_type",
            description: format!("Invalid grant_type: {grant_type}"),
        }
        .into_response();
    }
    let Some(assertion) = form.get("assertion") else {
        return GrantError {
            error: "invalid_request",
            description: "Missing required parameter: assertion".into(),
        }
        .into_response();
    };
    let audiences = match headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
        Some(host) => vec![
            format!("http://{host}/token"),
            format!("https://{host}/token"),
        ],
        None => Vec::new(),
    };
    let exchanged = emulator.lock_oauth().exchange(assertion, &audiences);
    match exchanged {
        Ok(token) => {
            emulator.count(|s| &s.tokens_issued);
            let reply = axum::Json(json!({
                "access_token": token,
                "expires_in": TOKEN_LIFETIME.as_secs(),
                "token_type": "Bearer",
            }))
            .into_response();
            if faulty && emulator.lock_faults().roll_drop() {
                emulator.count(|s| &s.replies_dropped);
                return crate::api::dropped_reply();
            }
            reply
        }
        Err(error) => {
            tracing::debug!(error = error.error, description = %error.description, "token refused");
            error.into_response()
        }
    }
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn decode_b64url(part: &str) -> Option<Vec<u8>> {
    // yup-oauth2 pads its base64url; JWTs usually do not. Accept both.
    URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()
}

fn decode_json(part: &str) -> Option<Value> {
    serde_json::from_slice(&decode_b64url(part)?)
        .ok()
        .filter(Value::is_object)
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        // The system RNG failing is not something a test double can recover from sensibly;
        // fall back to the clock so ids stay distinct.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = (nanos >> ((i % 16) * 8)) as u8 ^ i as u8;
        }
    }
    bytes
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn pem(label: &str, der: &[u8]) -> String {
    let encoded = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in encoded.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn pem_decode(text: &str) -> Option<Vec<u8>> {
    let body: String = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with("-----") && !line.is_empty())
        .collect();
    STANDARD.decode(body).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sign(key: &Value, header: &Value, claims: &Value) -> String {
        let der = pem_decode(key["private_key"].as_str().unwrap()).unwrap();
        let pair = KeyPair::from_pkcs8(&der).unwrap();
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; pair.public_modulus_len()];
        pair.sign(
            &signature::RSA_PKCS1_SHA256,
            &aws_lc_rs::rand::SystemRandom::new(),
            message.as_bytes(),
            &mut signature,
        )
        .unwrap();
        format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    #[test]
    fn a_key_round_trips_through_its_json() {
        let (key, account) = generate_key("http://emu/token").unwrap();
        let again = account_from_key(&key).unwrap();
        assert_eq!(again.public_key, account.public_key);
        assert_eq!(again.client_email, account.client_email);
        assert!(
            key["private_key"]
                .as_str()
                .unwrap()
                .starts_with("-----BEGIN PRIVATE KEY-----\n")
        );
    }

    #[test]
    fn exchanges_only_good_assertions() {
        let (key, account) = generate_key("http://emu/token").unwrap();
        let mut oauth = OAuth::default();
        oauth.trust(account);
        let now = unix_now();
        let header = json!({"alg": "RS256", "typ": "JWT"});
        let claims = json!({
            "iss": key["client_email"], "aud": "http://emu/token",
            "scope": "https://www.googleapis.com/auth/spreadsheets",
            "iat": now, "exp": now + 3595, "sub": null,
        });
        let good = sign(&key, &header, &claims);
        let token = oauth.exchange(&good, &[]).unwrap();
        assert!(oauth.token(&token).is_some_and(|t| t.allows(true)));

        let mut wrong_aud = claims.clone();
        wrong_aud["aud"] = json!("https://oauth2.googleapis.com/token");
        let refused = oauth
            .exchange(&sign(&key, &header, &wrong_aud), &[])
            .unwrap_err();
        assert!(refused.description.contains("audience"), "{refused:?}");

        let mut no_scope = claims.clone();
        no_scope["scope"] = json!("");
        let refused = oauth
            .exchange(&sign(&key, &header, &no_scope), &[])
            .unwrap_err();
        assert_eq!(refused.error, "invalid_scope");

        let tampered = good.replacen('.', ".e30", 1);
        assert_eq!(
            oauth.exchange(&tampered, &[]).unwrap_err().error,
            "invalid_grant"
        );
    }
}
