use std::process::ExitCode;

use clap::Parser;
use collect_shared::{shutdown, telemetry};
use sheets_emulator::{Command, EmulatorConfig};

#[tokio::main]
async fn main() -> ExitCode {
    let config = EmulatorConfig::parse();
    telemetry::init_tracing(config.log_format);
    let result = match &config.command {
        Some(Command::MakeKey { url, out }) => make_key(url, out.as_deref()).await,
        None => sheets_emulator::run(config.clone(), shutdown::on_signal()).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

#[allow(clippy::print_stdout)] // The key goes to stdout when no --out is given.
async fn make_key(url: &str, out: Option<&std::path::Path>) -> anyhow::Result<()> {
    if let Some(key) = sheets_emulator::make_key(url, out).await? {
        print!("{key}");
    }
    Ok(())
}
