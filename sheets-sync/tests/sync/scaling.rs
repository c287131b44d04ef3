use std::time::Duration;

use collect_testkit::{ServiceProcess, eventually};
use nix::sys::signal::Signal;
use sheets_emulator::Faults;

use super::helpers::{Pipeline, rows_by_id, send};

const TAB: &str = "household-finance";

#[tokio::test]
async fn two_instances_at_once_write_every_row_once() {
    let mut pipeline = Pipeline::start().await;
    let (second, _) = pipeline.start_sheets_sync().await;
    pipeline.add_service(second);
    // Slow writes, so both instances are at work at once.
    pipeline.emulator.set_faults(Faults {
        latency_ms: 20,
        ..Faults::default()
    });
    send(&pipeline, 2000).await;
    let cells = pipeline.tab_with_rows(TAB, 2000).await;
    assert_eq!(rows_by_id(&cells).len(), 2000);
    pipeline.stop().await;
}

#[tokio::test]
async fn sigkill_mid_batch_loses_and_duplicates_nothing() {
    let pipeline = Pipeline::start_with(false).await;
    pipeline.emulator.set_faults(Faults {
        latency_ms: 150,
        ..Faults::default()
    });
    let binary = env!("CARGO_BIN_EXE_sheets-sync");
    let env = pipeline.sheets_sync_env();
    let mut sync = ServiceProcess::start(binary, &env).await;
    send(&pipeline, 1000).await;

    // Killed while it writes: some rows are in, others not yet.
    eventually(Duration::from_secs(60), "a few batches written", || async {
        (pipeline.tab(TAB).len() > 150).then_some(())
    })
    .await;
    sync.signal(Signal::SIGKILL);
    let status = sync.wait(Duration::from_secs(10)).await;
    assert!(!status.success());
    let written_before = pipeline.tab(TAB).len() - 1;
    assert!(
        written_before < 1000,
        "killed before the end ({written_before} rows)"
    );

    // Its successor finishes the work, without duplicates.
    pipeline.emulator.set_faults(Faults::default());
    let mut successor = ServiceProcess::start(binary, &env).await;
    let cells = pipeline.tab_with_rows(TAB, 1000).await;
    assert_eq!(rows_by_id(&cells).len(), 1000);
    successor.signal(Signal::SIGTERM);
    assert!(successor.wait(Duration::from_secs(15)).await.success());
    pipeline.stop().await;
}
