//! A service binary running as a child process, as an operator runs it.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub struct ServiceProcess {
    /// The address its HTTP listener bound (it is started on port 0).
    pub addr: String,
    child: Child,
}

impl ServiceProcess {
    /// Starts `binary` with `env` (plus `LOG_FORMAT=json`) and waits until it logs `listening`.
    /// Its listen variable should be set to `127.0.0.1:0`.
    pub async fn start(binary: &str, env: &[(&str, String)]) -> Self {
        let mut command = Command::new(binary);
        command
            .env("LOG_FORMAT", "json")
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("the service binary starts");
        let mut logs = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = logs.next_line().await.unwrap() {
                let Ok(entry) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if entry["message"] == "listening" {
                    return entry["addr"].as_str().unwrap().to_owned();
                }
            }
            panic!("{binary} exited before listening");
        })
        .await
        .expect("the service listens within 20 s");
        // Keep draining its logs so it never blocks on a full pipe; `TEST_SERVICE_LOGS=1` shows
        // them (in a failing test's output).
        let show = std::env::var_os("TEST_SERVICE_LOGS").is_some();
        let name = binary.rsplit('/').next().unwrap_or(binary).to_owned();
        tokio::spawn(async move {
            while let Ok(Some(line)) = logs.next_line().await {
                if show {
                    eprintln!("[{name}] {line}");
                }
            }
        });
        Self { addr, child }
    }

    /// Its peak resident set size so far, in bytes (`VmHWM` in `/proc/<pid>/status`).
    pub fn peak_rss_bytes(&self) -> Option<u64> {
        let pid = self.child.id()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn signal(&self, signal: Signal) {
        let pid = self.child.id().expect("the process is running");
        kill(Pid::from_raw(pid as i32), signal).expect("the signal is delivered");
    }

    /// Waits for the process to exit, at most `deadline`.
    pub async fn wait(&mut self, deadline: Duration) -> ExitStatus {
        tokio::time::timeout(deadline, self.child.wait())
            .await
            .expect("the service exits in time")
            .expect("the exit status is readable")
    }
}

/// A service as an operator runs it: it starts in its own namespace and database (on
/// PostgreSQL), answers `/healthz`, becomes ready (a service that uses RabbitMQ, `broker`,
/// with its topology declared: the work queues exist), serves `/metrics`, and stops on
/// SIGTERM with status 0 within 10 s.
pub async fn check_lifecycle(binary: &str, listen_variable: &'static str, broker: bool) {
    use collect_shared::amqp::Topology;
    use nix::sys::signal::Signal;

    let namespace = crate::namespace();
    let database_url = crate::database_url(crate::Engine::Postgres);
    let mut service = ServiceProcess::start(
        binary,
        &[
            (listen_variable, "127.0.0.1:0".into()),
            ("COLLECT_NAMESPACE", namespace.to_string()),
            ("AMQP_URL", crate::amqp_url()),
            ("DATABASE_URL", database_url.clone()),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let health = client.get(service.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    crate::eventually(Duration::from_secs(20), "the service ready", || async {
        let response = client.get(service.url("/readyz")).send().await.ok()?;
        (response.status() == 200).then_some(())
    })
    .await;
    let metrics = client.get(service.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);

    if broker {
        // Its queues exist (a passive declare fails on a missing queue).
        let topology = Topology::new(namespace.clone());
        let probe = crate::Probe::bind(&topology.responses_exchange(), "#").await;
        assert_eq!(probe.queue_depth(&topology.validator_queue()).await, 0);
        assert_eq!(probe.queue_depth(&topology.webhooks_queue()).await, 0);
        assert_eq!(probe.queue_depth(&topology.dead_queue()).await, 0);
    }

    service.signal(Signal::SIGTERM);
    assert!(service.wait(Duration::from_secs(10)).await.success());
    crate::remove_namespace(&namespace).await;
    crate::drop_database(&database_url).await;
}
