//! The validator as an operator runs it: it starts, declares the topology, answers its health
//! routes and stops on SIGTERM.

#[tokio::test]
async fn starts_declares_the_topology_and_stops_on_sigterm() {
    collect_testkit::check_lifecycle(env!("CARGO_BIN_EXE_validator"), "VALIDATOR_LISTEN", true)
        .await;
}
