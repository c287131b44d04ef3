use std::process::ExitCode;

use clap::Parser;
use collect_shared::{shutdown, telemetry};
use ingest::IngestConfig;

#[tokio::main]
async fn main() -> ExitCode {
    let config = IngestConfig::parse();
    telemetry::init_tracing(config.common.log_format);
    match ingest::run(config, shutdown::on_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}
