//! Settings every service reads from its environment (or the same-named flags).
//!
//! Each binary has its own `clap::Parser` that flattens [`CommonConfig`], so `--help` lists every
//! variable a binary honours with its default.

use std::fmt;
use std::str::FromStr;

use clap::{Args, ValueEnum};

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
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

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

/// A URL with its password replaced by `***`, for logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
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
    }
}
