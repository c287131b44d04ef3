//! Settings every service reads from its environment (or the same-named flags).
//!
//! Each binary has its own `clap::Parser` that flattens [`CommonConfig`], so `--help` lists every
//! variable a binary honours with its default.

use std::fmt;
use std::str::FromStr;

use clap::Args;

/// Settings shared by every service.
#[derive(Debug, Clone, Args)]
pub struct CommonConfig {
    /// RabbitMQ connection URL.
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true
    )]
    pub amqp_url: String,

    /// PostgreSQL connection URL (used by the services that keep state).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/collect",
        hide_env_values = true
    )]
    pub database_url: String,

    /// Most connections each service keeps open to PostgreSQL.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 10)]
    pub database_max_connections: u32,

    /// Longest a database statement may run before PostgreSQL cancels it (its
    /// `statement_timeout`): a stuck query or lock wait fails and is retried instead of holding
    /// a worker for ever.
    #[arg(long, env = "DATABASE_STATEMENT_TIMEOUT_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub database_statement_timeout_ms: u64,

    /// Prefix of every exchange and queue name, so that several deployments or test runs can
    /// share one broker.
    #[arg(long, env = "COLLECT_NAMESPACE", default_value = "collect")]
    pub namespace: Namespace,

    /// Log output: human-readable `text` or one JSON object per line.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl CommonConfig {
    pub fn store_settings(&self) -> crate::store::StoreSettings {
        crate::store::StoreSettings {
            url: self.database_url.clone(),
            max_connections: self.database_max_connections,
            statement_timeout: std::time::Duration::from_millis(self.database_statement_timeout_ms),
        }
    }
}

pub use crate::telemetry::LogFormat;

/// The prefix of every AMQP name: letters, digits, `_`, `-` and `.`, at most 100 characters, so
/// that every derived name stays well inside AMQP's 255-byte limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace(String);

impl Namespace {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Namespace {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        if s.is_empty() || s.len() > 100 || !s.chars().all(valid_char) {
            return Err(format!(
                "COLLECT_NAMESPACE must be 1 to 100 characters of letters, digits, '_', '-' or '.', got {s:?}"
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A URL with its password replaced by `***`, for logs: the one in the user information
/// (`user:secret@`) and any query parameter whose name holds `password` (PostgreSQL's
/// `?password=`, `sslpassword=`).
pub fn redact_url(url: &str) -> String {
    let (address, query) = match url.split_once('?') {
        Some((address, query)) => (address, Some(query)),
        None => (url, None),
    };
    let mut redacted = match address.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((credentials, host)) => match credentials.split_once(':') {
                Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
                None => address.to_owned(),
            },
            None => address.to_owned(),
        },
        None => address.to_owned(),
    };
    if let Some(query) = query {
        let parameters: Vec<String> = query
            .split('&')
            .map(|parameter| match parameter.split_once('=') {
                Some((name, _)) if name.to_ascii_lowercase().contains("password") => {
                    format!("{name}=***")
                }
                _ => parameter.to_owned(),
            })
            .collect();
        redacted.push('?');
        redacted.push_str(&parameters.join("&"));
    }
    redacted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_accepts_safe_names_and_refuses_the_rest() {
        assert!("collect".parse::<Namespace>().is_ok());
        assert!("test-1a2b_c.d".parse::<Namespace>().is_ok());
        assert!("".parse::<Namespace>().is_err());
        assert!("has space".parse::<Namespace>().is_err());
        assert!("a/b".parse::<Namespace>().is_err());
        assert!("x".repeat(101).parse::<Namespace>().is_err());
    }

    #[test]
    fn redacts_the_password_only() {
        assert_eq!(
            redact_url("amqp://guest:secret@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            redact_url("postgres://postgres@h/db"),
            "postgres://postgres@h/db"
        );
        assert_eq!(redact_url("amqp://127.0.0.1"), "amqp://127.0.0.1");
        assert_eq!(
            redact_url("postgres://h/db?user=u&password=secret&sslmode=require"),
            "postgres://h/db?user=u&password=***&sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://u:a@b@h/db?sslpassword=x"),
            "postgres://u:***@h/db?sslpassword=***"
        );
    }
}
