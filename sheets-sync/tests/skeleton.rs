//! sheets-sync (without Google credentials: rows wait) as an operator runs it: it starts (with
//! the database alone: it does not use RabbitMQ), answers its health routes and stops on
//! SIGTERM.

#[tokio::test]
async fn starts_and_stops_on_sigterm() {
    collect_testkit::check_lifecycle(
        env!("CARGO_BIN_EXE_sheets-sync"),
        "SHEETS_SYNC_LISTEN",
        false,
    )
    .await;
}
