use std::time::Duration;

use collect_testkit::{FaultProxy, eventually};
use nix::sys::signal::Signal;
use sheets_emulator::Faults;

use super::ENGINE;
use super::cluster::{Cluster, SPREADSHEET, TAB, responses};

/// Waits until the sheet has some rows: the pipeline is mid-load.
async fn mid_load(cluster: &Cluster) {
    eventually(
        Duration::from_secs(60),
        "rows flowing into the sheet",
        || async {
            let rows = cluster
                .emulator
                .tab_values(SPREADSHEET, TAB)
                .map_or(0, |t| t.len());
            (rows > 100).then_some(())
        },
    )
    .await;
}

/// Waits until the validators have a backlog: at least 20 accepted responses not stored yet
/// (ingest gathers responses into messages, so the validator's prefetch holds thousands and
/// the depth of `N.validator` in messages says little).
async fn busy(cluster: &Cluster) {
    eventually(
        Duration::from_secs(60),
        "a backlog for the validators",
        || async { (cluster.unstored().await >= 20).then_some(()) },
    )
    .await;
}

/// F2: the validator is SIGKILLed under load, then started again.
#[tokio::test]
async fn f2_validator_killed_and_restarted() {
    let mut cluster = Cluster::start(1, 1).await;
    let accepted = cluster
        .send_during(async {
            busy(&cluster).await;
            cluster.validators[0].signal(Signal::SIGKILL);
        })
        .await;
    let mut killed = cluster.validators.remove(0);
    assert!(!killed.wait(Duration::from_secs(10)).await.success());
    let restarted = cluster.start_validator().await;
    cluster.validators.push(restarted);
    cluster.verify(&accepted).await;
    cluster.stop().await;
}

/// F3: sheets-sync is SIGKILLed under load, then started again.
#[tokio::test]
async fn f3_sheets_sync_killed_and_restarted() {
    let mut cluster = Cluster::start(1, 1).await;
    cluster.emulator.set_faults(Faults {
        latency_ms: 30,
        ..Faults::default()
    });
    let ingest = cluster.ingest.addr.clone();
    let accepted = cluster.send(responses(), &ingest).await;
    mid_load(&cluster).await;
    cluster.syncs[0].signal(Signal::SIGKILL);
    let mut killed = cluster.syncs.remove(0);
    assert!(!killed.wait(Duration::from_secs(10)).await.success());
    cluster.emulator.set_faults(Faults::default());
    let restarted = cluster.start_sheets_sync().await;
    cluster.syncs.push(restarted);
    cluster.verify(&accepted).await;
    cluster.stop().await;
}

/// F5: the emulator refuses 30% of calls with 429 or 500, with `Retry-After`.
#[tokio::test]
async fn f5_sheets_refusing_30_percent() {
    let mut cluster = Cluster::start(1, 1).await;
    cluster.emulator.set_faults(Faults {
        error_rate: 0.3,
        error_status: 429,
        retry_after_seconds: Some(1),
        seed: Some(5),
        ..Faults::default()
    });
    let ingest = cluster.ingest.addr.clone();
    let accepted = cluster.send(responses() / 2, &ingest).await;
    cluster.emulator.set_faults(Faults {
        error_rate: 0.3,
        error_status: 500,
        retry_after_seconds: Some(1),
        seed: Some(6),
        ..Faults::default()
    });
    cluster.verify(&accepted).await;
    cluster.stop().await;
}

/// F6: ingest gets SIGTERM under load: every response that got 202 arrives.
#[tokio::test]
async fn f6_ingest_terminated_under_load() {
    let mut cluster = Cluster::start(1, 1).await;
    let accepted = cluster
        .send_during(async {
            mid_load(&cluster).await;
            cluster.ingest.signal(Signal::SIGTERM);
        })
        .await;
    assert!(
        cluster.ingest.wait(Duration::from_secs(10)).await.success(),
        "drains and exits 0"
    );
    cluster.ingest = cluster.start_ingest().await;
    cluster.verify(&accepted).await;
    cluster.stop().await;
}

/// F7: the emulator applies a quarter of the writes but drops the replies.
#[tokio::test]
async fn f7_sheets_replies_lost() {
    let mut cluster = Cluster::start(1, 1).await;
    cluster.emulator.set_faults(Faults {
        drop_reply_rate: 0.25,
        seed: Some(11),
        ..Faults::default()
    });
    let ingest = cluster.ingest.addr.clone();
    let accepted = cluster.send(responses(), &ingest).await;
    cluster.verify(&accepted).await;
    cluster.stop().await;
}

/// F1 and F4: RabbitMQ, then the database, cut off from every service under load and back
/// (through fault proxies, so the shared servers stay up for the tests beside this one).
#[tokio::test]
async fn f1_f4_broker_then_database_cut_off_under_load() {
    let broker = FaultProxy::for_broker().await;
    let database = FaultProxy::for_database(ENGINE).await;
    let mut cluster =
        Cluster::start_via(1, 1, broker.amqp_url(), Some(database.addr().to_string())).await;
    let accepted = cluster
        .send_during(async {
            mid_load(&cluster).await;
            broker.cut();
            tokio::time::sleep(Duration::from_secs(3)).await; // the length of the outage
            broker.restore();
            database.cut();
            tokio::time::sleep(Duration::from_secs(3)).await; // the length of the outage
            database.restore();
        })
        .await;
    cluster.verify(&accepted).await;
    cluster.stop().await;
}

/// F8: two validators and two sheets-syncs, with the Sheets faults and a validator killed.
#[tokio::test]
async fn f8_scaled_out_with_faults() {
    let mut cluster = Cluster::start(2, 2).await;
    cluster.emulator.set_faults(Faults {
        error_rate: 0.2,
        error_status: 503,
        drop_reply_rate: 0.15,
        seed: Some(3),
        ..Faults::default()
    });
    let accepted = cluster
        .send_during(async {
            mid_load(&cluster).await;
            cluster.validators[0].signal(Signal::SIGKILL);
        })
        .await;
    let mut killed = cluster.validators.remove(0);
    assert!(!killed.wait(Duration::from_secs(10)).await.success());
    cluster.verify(&accepted).await;
    cluster.stop().await;
}

/// Shutdown while stuck: the database is cut off under load, so the validator and sheets-sync
/// are mid-retry when they get SIGTERM. Each stops within 10 s (exit 0), leaving what it held
/// unacked; their successors finish the work once the database is back.
#[tokio::test]
async fn shutdown_while_waiting_for_the_database() {
    let database = FaultProxy::for_database(ENGINE).await;
    let mut cluster = Cluster::start_via(
        1,
        1,
        collect_testkit::amqp_url(),
        Some(database.addr().to_string()),
    )
    .await;
    // Cut once the first responses are stored, not once the sheet shows them: on a busy
    // machine the sheet can lag until every response is sent and stored, leaving no backlog.
    let accepted = cluster
        .send_during(async {
            eventually(
                Duration::from_secs(60),
                "responses being stored",
                || async { (cluster.stored().await >= 100).then_some(()) },
            )
            .await;
            database.cut();
        })
        .await;
    busy(&cluster).await;
    let mut stuck: Vec<_> = cluster.validators.drain(..).collect();
    stuck.append(&mut cluster.syncs);
    for service in &stuck {
        service.signal(Signal::SIGTERM);
    }
    for mut service in stuck {
        assert!(
            service.wait(Duration::from_secs(10)).await.success(),
            "stops within 10 s while the database is away"
        );
    }
    database.restore();
    let validator = cluster.start_validator().await;
    cluster.validators.push(validator);
    let sync = cluster.start_sheets_sync().await;
    cluster.syncs.push(sync);
    cluster.verify(&accepted).await;
    cluster.stop().await;
}
