use std::process::ExitCode;

use clap::Parser;
use collect_shared::amqp::{Topology, dead_letters};
use collect_shared::{shutdown, telemetry};
use validator::{Command, DeadLetterAction, ValidatorConfig};

/// mimalloc instead of glibc's allocator: every request and message allocates and frees many
/// small buffers across threads, where glibc's arenas spent ~5% of the service's CPU in
/// `malloc_consolidate` and `_int_free` under load (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let mut config = ValidatorConfig::parse();
    telemetry::init_tracing(config.common.log_format);
    let outcome = match config.command.take() {
        None => validator::run(config, shutdown::on_signal()).await,
        Some(Command::DeadLetters { action }) => dead_letter_tool(&config, action).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `validator dead-letters list|replay`: JSON on stdout, one line per dead letter or summary.
#[allow(clippy::print_stdout)]
async fn dead_letter_tool(
    config: &ValidatorConfig,
    action: DeadLetterAction,
) -> anyhow::Result<()> {
    let topology = Topology::new(config.common.namespace.clone());
    let url = &config.common.amqp_url;
    match action {
        DeadLetterAction::List { limit } => {
            for letter in dead_letters::list(url, &topology, limit).await? {
                println!("{}", serde_json::to_string(&letter)?);
            }
        }
        DeadLetterAction::Replay { limit } => {
            let replayed = dead_letters::replay(url, &topology, limit).await?;
            println!("{}", serde_json::to_string(&replayed)?);
        }
    }
    Ok(())
}
