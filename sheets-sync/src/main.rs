use std::process::ExitCode;

use clap::Parser;
use collect_shared::{shutdown, telemetry};
use sheets_sync::SheetsSyncConfig;

#[tokio::main]
async fn main() -> ExitCode {
    let config = SheetsSyncConfig::parse();
    telemetry::init_tracing(config.common.log_format);
    match sheets_sync::run(config, shutdown::on_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}
