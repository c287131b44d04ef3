//! `validator`: consumes `N.validator`, checks each response against its form's rules, stores
//! it and publishes saved and flag events. So far it holds its broker connection (declaring the
//! topology) and serves its health routes; the work lands with the validator issue.

use std::net::SocketAddr;

use clap::Parser;
use collect_shared::config::CommonConfig;
use collect_shared::server;
use tokio_util::sync::CancellationToken;

/// Checks responses against their form's rules and stores them.
#[derive(Debug, Clone, Parser)]
#[command(name = "validator", version, about)]
pub struct ValidatorConfig {
    #[command(flatten)]
    pub common: CommonConfig,

    /// Address of the health and metrics routes.
    #[arg(long, env = "VALIDATOR_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
}

pub async fn run(config: ValidatorConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listener = server::bind(config.listen, "VALIDATOR_LISTEN").await?;
    server::run_ops_only("validator", listener, &config.common, shutdown).await
}
