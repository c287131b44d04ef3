use std::process::ExitCode;

use clap::Parser;
use collect_shared::{shutdown, telemetry};
use sheets_sync::SheetsSyncConfig;

/// mimalloc instead of glibc's allocator: every request and message allocates and frees many
/// small buffers across threads, where glibc's arenas spent ~5% of the service's CPU in
/// `malloc_consolidate` and `_int_free` under load (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One thread: sheets-sync waits on Google and the database, and its CPU (building a batch's
/// request) is a few percent of a core. On a multi-threaded runtime the writer moved between
/// workers, and memory one freed (a batch's cells, the client's copy of them, the request
/// body: a few MB every second under load) was held by its heap while another allocated the
/// next batch afresh: under wrk the peak RSS was 51-65 MB with batches of ~5,000 rows, and on
/// one thread 41-44 MB, with less CPU per response (BENCHMARKS.md). Blocking work (compiling a
/// form's rules) still goes to tokio's blocking pool.
#[tokio::main(flavor = "current_thread")]
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
