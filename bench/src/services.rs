//! The services under measurement: release binaries beside this one, in a namespace and a
//! database of their own, with the Sheets emulator in this process (`collect_testkit::Stack`).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use collect_shared::config::Namespace;
use collect_testkit::{Engine, ServiceProcess, Stack};

pub const KEY: &str = "bench-key";
pub const SPREADSHEET: &str = "bench-sheet";

/// The highest peak RSS seen per service, in bytes.
#[derive(Default)]
pub struct Peaks(pub BTreeMap<&'static str, u64>);

impl Peaks {
    pub fn record(&mut self, service: &'static str, process: &ServiceProcess) {
        if let Some(bytes) = process.peak_rss_bytes() {
            let peak = self.0.entry(service).or_insert(0);
            *peak = (*peak).max(bytes);
        }
    }
}

/// A namespace, a database on `engine` and the emulator for one part of the benchmark; the
/// services are the release binaries beside this one (`scripts/bench.sh` builds them all).
pub async fn stack(engine: Engine) -> anyhow::Result<Stack> {
    let exe = std::env::current_exe()?;
    let binaries = exe.parent().context("no directory")?.to_path_buf();
    let namespace: Namespace = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
        .parse()
        .map_err(|e: String| anyhow::anyhow!(e))?;
    let mut stack = Stack::new(
        engine,
        binaries,
        namespace,
        SPREADSHEET,
        collect_testkit::amqp_url(),
        None,
    )
    .await;
    stack.api_key = KEY.to_owned();
    // Warnings only, and the line that says where a service listens.
    stack
        .env
        .push(("RUST_LOG", "warn,collect_shared::server=info".to_owned()));
    Ok(stack)
}

/// Waits until `service` is ready.
pub async fn ready(stack: &Stack, service: ServiceProcess) -> ServiceProcess {
    stack.wait_ready(&service.addr).await;
    service
}

/// SIGTERM, then waits for the exit.
pub async fn stop(mut service: ServiceProcess) {
    service.signal(nix::sys::signal::Signal::SIGTERM);
    service.wait(Duration::from_secs(15)).await;
}

/// Records the peak RSS of the three services (ingest, validator, sheets-sync), stops them and
/// removes the stack's namespace and database.
pub async fn wind_down(setup: Stack, services: [ServiceProcess; 3], peaks: &mut Peaks) {
    for (name, service) in ["ingest", "validator", "sheets-sync"]
        .into_iter()
        .zip(&services)
    {
        peaks.record(name, service);
    }
    for service in services {
        stop(service).await;
    }
    setup.remove().await;
}
