//! An emulator on a free port, a service-account key, and a token for it.

#![allow(clippy::unwrap_used, dead_code)]

use aws_lc_rs::rsa::KeyPair;
use aws_lc_rs::signature;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use sheets_emulator::Emulator;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const SPREADSHEET: &str = "sheet-under-test";
pub const SCOPE: &str = "https://www.googleapis.com/auth/spreadsheets";

pub struct Server {
    pub url: String,
    pub emulator: Emulator,
    pub key: Value,
    pub token: String,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn start() -> Server {
    let emulator = Emulator::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    tokio::spawn(sheets_emulator::serve(
        emulator.clone(),
        listener,
        shutdown.clone(),
    ));
    emulator.create_spreadsheet(SPREADSHEET);
    let key = emulator.issue_key(&format!("{url}/token"));
    let http = reqwest::Client::new();
    let mut server = Server {
        url,
        emulator,
        key,
        token: String::new(),
        http,
        shutdown,
    };
    let assertion = server.assertion(&server.claims());
    let reply = server.exchange(&assertion).await;
    assert_eq!(reply.0, 200, "{}", reply.1);
    server.token = reply.1["access_token"].as_str().unwrap().to_owned();
    server
}

impl Server {
    /// Claims as yup-oauth2 makes them.
    pub fn claims(&self) -> Value {
        let now = now();
        json!({
            "iss": self.key["client_email"],
            "aud": self.key["token_uri"],
            "exp": now + 3595,
            "iat": now,
            "sub": null,
            "scope": SCOPE,
        })
    }

    /// An RS256 JWT over `claims`, signed with the key's private key.
    pub fn assertion(&self, claims: &Value) -> String {
        sign(&self.key, claims)
    }

    pub async fn exchange(&self, assertion: &str) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/token", self.url))
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion),
            ])
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    pub fn v4(&self, path: &str) -> String {
        format!("{}/v4/spreadsheets/{SPREADSHEET}{path}", self.url)
    }

    pub async fn call(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = request.bearer_auth(&self.token).send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, body)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(self.http.get(self.v4(path))).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(self.http.put(self.v4(path)).json(&body)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(self.http.post(self.v4(path)).json(&body)).await
    }

    pub async fn append(&self, range: &str, rows: Value) -> (u16, Value) {
        self.post(
            &format!("/values/{range}:append?valueInputOption=RAW&insertDataOption=INSERT_ROWS"),
            json!({ "values": rows }),
        )
        .await
    }

    pub async fn set_faults(&self, faults: Value) {
        let response = self
            .http
            .put(format!("{}/emulator/faults", self.url))
            .json(&faults)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }
}

pub fn sign(key: &Value, claims: &Value) -> String {
    let pem = key["private_key"].as_str().unwrap();
    let der: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let pair = KeyPair::from_pkcs8(&STANDARD.decode(der).unwrap()).unwrap();
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#),
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

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// `n` rows of `width` cells, `r{row}c{col}` offset by `from`.
pub fn rows(from: usize, n: usize, width: usize) -> Value {
    json!(
        (from..from + n)
            .map(|r| (0..width).map(|c| format!("r{r}c{c}")).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    )
}
