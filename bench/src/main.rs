//! The Collect benchmark: one run, on one machine, printing figures.
//!
//! 1. the broker's own capacity (the yardstick): confirmed publishes and publish-to-consume of
//!    persistent 1 KB messages on a quorum queue, with a pipelined confirm window;
//! 2. ingest over HTTP keep-alive: the seed route and the batch route at full speed, then the
//!    seed route at half the full rate (open loop) for its latency;
//! 3. end to end: N responses through ingest → validator → the database → sheets-sync →
//!    emulator, once per engine asked for (`--engine postgres,mysql`);
//! 4. the peak RSS of each service, and the ratios against the targets;
//! 5. (`--parts flags`) flagged responses at a steady rate: how soon after the commit each flag
//!    event reaches an app by the live stream (SSE) and by a webhook;
//! 6. (`--parts load`) the whole pipeline under `wrk` on `POST /collect`, every service
//!    running: closed loop, then a fixed rate at half of it, with CPU per process;
//! 7. (`--parts scale`) many responses across many forms end to end: how long until every
//!    sheet is complete, and what grows.
//!
//! The services run as the release binaries beside this one (`scripts/bench.sh` builds them),
//! against the local RabbitMQ and PostgreSQL or MySQL/MariaDB, in a namespace and a database of
//! their own.
#![allow(clippy::print_stdout)]

mod broker;
mod cpu;
mod disk;
mod flags;
mod http_load;
mod load;
mod pipeline;
mod scale;
mod services;

use std::time::Duration;

use clap::Parser;
use collect_testkit::Engine;

#[derive(Parser, Debug, Clone)]
#[command(about = "Collect's benchmark: prints figures and the ratios against the targets")]
pub struct Args {
    /// Responses sent end to end.
    #[arg(long, default_value_t = 100_000)]
    pub responses: usize,
    /// Messages for each broker yardstick measurement.
    #[arg(long, default_value_t = 100_000)]
    pub broker_messages: usize,
    /// Times the yardstick is measured, one after another; the ratios use the median (the
    /// broker alone moves by a quarter from one measurement to the next on a shared machine).
    #[arg(long, default_value_t = 3)]
    pub broker_repeats: usize,
    /// Length of each ingest load phase, in seconds.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Concurrent HTTP keep-alive connections.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Envelopes per request on the batch route.
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// Flagged responses sent in the `flags` part.
    #[arg(long, default_value_t = 5000)]
    pub flags: usize,
    /// Their rate, per second (steady, below capacity).
    #[arg(long, default_value_t = 250)]
    pub flags_rate: u64,
    /// Responses in the `scale` part.
    #[arg(long, default_value_t = 1_000_000)]
    pub scale_responses: usize,
    /// Forms they are spread over in the `scale` part, each with a tab of its own.
    #[arg(long, default_value_t = 200)]
    pub scale_forms: usize,
    /// sheets-sync's `SHEETS_WRITES_PER_MINUTE` in the `scale` part (Google's quota is 60).
    #[arg(long, default_value_t = 6000)]
    pub sheets_writes_per_minute: u32,
    /// Which parts to run (`broker`, `ingest`, `e2e`, `load`, `flags`, `scale`).
    #[arg(long, value_delimiter = ',', default_value = "broker,ingest,e2e,load")]
    pub parts: Vec<String>,
    /// The database engines, comma-separated (`postgres`, `mysql`): the end-to-end part runs
    /// once on each, in order; the ingest part on the first. Servers: `TEST_DATABASE_SERVER`
    /// and `TEST_MYSQL_SERVER`, as for the tests (default the local ones). Given twice, the
    /// last one counts.
    #[arg(
        long = "engine",
        default_value = "postgres",
        overrides_with = "engines"
    )]
    pub engines: Engines,
}

/// One or more engines, e.g. `postgres,mysql`.
#[derive(Debug, Clone)]
pub struct Engines(Vec<Engine>);

impl Engines {
    pub fn first(&self) -> Engine {
        self.0[0]
    }
}

impl std::str::FromStr for Engines {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let engines = text
            .split(',')
            .map(str::parse)
            .collect::<Result<Vec<Engine>, _>>()?;
        if engines.is_empty() {
            return Err("name at least one engine".into());
        }
        Ok(Self(engines))
    }
}

impl Args {
    fn runs(&self, part: &str) -> bool {
        self.parts.iter().any(|p| p == part)
    }

    pub fn duration(&self) -> Duration {
        Duration::from_secs(self.seconds)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    println!("# Collect benchmark");
    let databases: Vec<String> = args
        .engines
        .0
        .iter()
        .map(|engine| {
            format!(
                "{engine} at {}",
                collect_shared::config::redact_url(&engine.server())
            )
        })
        .collect();
    println!(
        "machine: {} cores, {}; RabbitMQ {}, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        memory(),
        collect_testkit::amqp_url().replace("guest:guest@", ""),
        databases.join(", "),
    );
    if let Some(write_back) = disk::write_back() {
        println!("{write_back}");
    }
    let mut peaks = services::Peaks::default();

    let yardstick = if args.runs("broker") {
        Some(broker::run(&args).await?)
    } else {
        None
    };
    let ingest = if args.runs("ingest") {
        Some(http_load::run(&args, &mut peaks).await?)
    } else {
        None
    };
    let mut e2e = Vec::new();
    if args.runs("e2e") {
        for &engine in &args.engines.0 {
            e2e.push((engine, pipeline::run(&args, engine, &mut peaks).await?));
        }
    }

    let load = if args.runs("load") {
        Some(load::run(&args, args.engines.first(), &mut peaks).await?)
    } else {
        None
    };

    if args.runs("flags") {
        flags::run(&args, args.engines.first(), &mut peaks).await?;
    }
    if args.runs("scale") {
        scale::run(&args, args.engines.first(), &mut peaks).await?;
    }

    if !peaks.0.is_empty() {
        println!("\n## Peak RSS (VmHWM)");
    }
    for (service, bytes) in &peaks.0 {
        let mb = *bytes as f64 / 1_048_576.0;
        println!(
            "{service:<12} {mb:>7.1} MB   target ≤ 64 MB: {}",
            verdict(mb <= 64.0)
        );
    }

    println!("\n## Ratios against the targets");
    if let (Some(y), Some(i)) = (&yardstick, &ingest) {
        let ratio = i.seed_rate / y.publish_rate;
        println!(
            "ingest (seed route) ÷ broker confirmed publishes: {:.0} / {:.0} = {ratio:.3}   target ≥ 0.80: {}",
            i.seed_rate,
            y.publish_rate,
            verdict(ratio >= 0.8)
        );
        let ratio = i.batch_rate / y.publish_rate;
        println!(
            "ingest (batch route) ÷ broker confirmed publishes: {:.0} / {:.0} = {ratio:.3}   target ≥ 0.80: {}",
            i.batch_rate,
            y.publish_rate,
            verdict(ratio >= 0.8)
        );
    }
    if let Some(i) = &ingest {
        println!(
            "ingest p99 at half the full rate ({:.0}/s): {:.1} ms   target ≤ 20 ms: {}",
            i.half_rate,
            i.half_p99_ms,
            verdict(i.half_p99_ms <= 20.0)
        );
    }
    for (engine, e) in &e2e {
        let Some(y) = &yardstick else { break };
        let ratio = e.rate / y.end_to_end_rate;
        println!(
            "end to end on {engine} ÷ broker publish-to-consume: {:.0} / {:.0} = {ratio:.3}   target ≥ 0.40: {}",
            e.rate,
            y.end_to_end_rate,
            verdict(ratio >= 0.4)
        );
    }
    if let Some(l) = &load {
        if let Some(y) = &yardstick {
            let ratio = l.accepted_rate / y.publish_rate;
            println!(
                "all services, wrk: /collect accepted ÷ broker confirmed publishes: {:.0} / {:.0} = {ratio:.3}   target ≥ 0.60: {}",
                l.accepted_rate,
                y.publish_rate,
                verdict(ratio >= 0.6)
            );
            let ratio = l.committed_rate / y.end_to_end_rate;
            println!(
                "all services, wrk: committed ÷ broker publish-to-consume: {:.0} / {:.0} = {ratio:.3}   target ≥ 0.40: {}",
                l.committed_rate,
                y.end_to_end_rate,
                verdict(ratio >= 0.4)
            );
        }
        println!(
            "all services, wrk at half load ({:.0}/s): ingest p99 {:.1} ms   target ≤ 20 ms: {}{}",
            l.half_rate,
            l.half_p99_ms,
            verdict(l.half_p99_ms <= 20.0),
            match l.half_disk_max_ms {
                Some(max) if max > disk::STALL.as_secs_f64() * 1000.0 =>
                    format!(" (the disk's slowest flush in that phase: {max:.0} ms)"),
                _ => String::new(),
            }
        );
        println!(
            "all services, wrk at half load ({:.0}/s): received → committed p99 {:.0} ms   target ≤ 250 ms: {}",
            l.half_rate,
            l.half_commit_p99_ms,
            verdict(l.half_commit_p99_ms <= 250.0)
        );
    }
    Ok(())
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

fn memory() -> String {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let line = m.lines().find(|l| l.starts_with("MemTotal:"))?.to_owned();
            let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(format!("{:.0} GiB RAM", kib / 1_048_576.0))
        })
        .unwrap_or_else(|| "unknown RAM".into())
}

/// Milliseconds, from a histogram of microseconds.
pub fn ms(histogram: &hdrhistogram::Histogram<u64>, quantile: f64) -> f64 {
    histogram.value_at_quantile(quantile) as f64 / 1000.0
}

/// The `p` percentile of `values`, interpolated between the two nearest (as PostgreSQL's
/// `percentile_cont`); NaN for none.
fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let at = p * (values.len() - 1) as f64;
    let (low, high) = (at.floor() as usize, at.ceil() as usize);
    values[low] + (values[high] - values[low]) * (at - low as f64)
}

/// The median and the 99th percentile of `values`.
pub fn p50_p99(values: &mut [f64]) -> (f64, f64) {
    (percentile(values, 0.5), percentile(values, 0.99))
}

pub fn progress(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:<28} [{bar:30}] {pos}/{len} ({per_sec}, {elapsed})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}
