use std::process::ExitCode;

use clap::Parser;
use collect_shared::{shutdown, telemetry};
use sheets_sync::SheetsSyncConfig;

/// mimalloc instead of glibc's allocator: every request and message allocates and frees many
/// small buffers across threads, where glibc's arenas spent ~5% of the service's CPU in
/// `malloc_consolidate` and `_int_free` under load (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
