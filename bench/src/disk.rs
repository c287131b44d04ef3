//! How long the disk takes to make a small write durable while a phase runs: a thread appends
//! 4 KB to a file beside the benchmark's binary and calls `fdatasync`, every 20 ms, as a log
//! does (RabbitMQ's and PostgreSQL's are appended to; a growing file's flush also commits the
//! file system's journal, which an overwrite in place would not).
//!
//! Every `202` waits for RabbitMQ's log to be on disk, and every commit for PostgreSQL's WAL, so
//! when the disk stalls (a virtual disk flushing the page cache's dirty pages, say), the whole
//! pipeline waits with it and ingest's latency shows a pause that no process caused. On this
//! project's machines that lives on the same disk as the broker and the database; elsewhere the
//! figure says only what the benchmark's own disk did.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// How often the probe writes.
const EVERY: Duration = Duration::from_millis(20);
/// A flush slower than this is counted as a stall.
pub const STALL: Duration = Duration::from_millis(100);

pub struct DiskProbe {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Histogram<u64>>,
    path: PathBuf,
}

/// What the probe saw, in microseconds.
pub struct Flushes {
    histogram: Histogram<u64>,
}

impl DiskProbe {
    /// Starts probing; `None` when the file cannot be made (the figure is then left out).
    pub fn start(name: &str) -> Option<Self> {
        let dir = std::env::current_exe().ok()?.parent()?.to_path_buf();
        let path = dir.join(format!(".disk-probe-{name}-{}", std::process::id()));
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .ok()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || probe(file, &stopped));
        Some(Self { stop, thread, path })
    }

    pub fn finish(self) -> Flushes {
        self.stop.store(true, Ordering::Relaxed);
        let histogram = self.thread.join().unwrap_or_else(|_| empty());
        let _ = std::fs::remove_file(&self.path);
        Flushes { histogram }
    }
}

fn empty() -> Histogram<u64> {
    Histogram::new(3).expect("three significant figures is a valid histogram")
}

fn probe(file: File, stop: &AtomicBool) -> Histogram<u64> {
    let mut histogram = empty();
    let block = [b'x'; 4096];
    let mut offset = 0;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        if file.write_all_at(&block, offset).is_err() || file.sync_data().is_err() {
            break;
        }
        offset += block.len() as u64;
        let took = started.elapsed();
        let _ = histogram.record(took.as_micros() as u64);
        std::thread::sleep(EVERY.saturating_sub(took));
    }
    histogram
}

impl Flushes {
    /// Flushes slower than [`STALL`].
    pub fn stalls(&self) -> u64 {
        let floor = STALL.as_micros() as u64;
        self.histogram
            .iter_recorded()
            .filter(|value| value.value_iterated_to() > floor)
            .map(|value| value.count_at_value())
            .sum()
    }

    pub fn max_ms(&self) -> f64 {
        self.histogram.max() as f64 / 1000.0
    }

    pub fn describe(&self) -> String {
        if self.histogram.is_empty() {
            return "no flush measured".to_owned();
        }
        format!(
            "4 KB appended and fdatasync'd every {} ms: p50 {:.1} ms, p99 {:.1} ms, max {:.0} ms; {} over {} ms",
            EVERY.as_millis(),
            self.histogram.value_at_quantile(0.5) as f64 / 1000.0,
            self.histogram.value_at_quantile(0.99) as f64 / 1000.0,
            self.max_ms(),
            self.stalls(),
            STALL.as_millis(),
        )
    }
}

/// When the kernel starts writing dirty pages back, as `/proc/sys/vm` says: `None` where
/// those files cannot be read.
pub fn write_back() -> Option<String> {
    let read = |name: &str| -> Option<u64> {
        std::fs::read_to_string(format!("/proc/sys/vm/{name}"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    Some(describe_write_back(
        read("dirty_background_bytes")?,
        read("dirty_background_ratio")?,
        read("dirty_expire_centisecs")?,
    ))
}

/// The kernel's write-back thresholds in words. `background_bytes`, when set, replaces
/// `background_ratio` (a share of the available memory); pages older than `expire_centisecs`
/// are written back whatever the amount.
pub fn describe_write_back(
    background_bytes: u64,
    background_ratio: u64,
    expire_centisecs: u64,
) -> String {
    let from = if background_bytes > 0 {
        format!(
            "once {:.0} MB are dirty (vm.dirty_background_bytes)",
            background_bytes as f64 / 1_048_576.0
        )
    } else {
        format!(
            "once {background_ratio}% of the available memory is dirty (vm.dirty_background_ratio)"
        )
    };
    format!(
        "kernel write-back starts {from} or for pages older than {} s (vm.dirty_expire_centisecs)",
        expire_centisecs as f64 / 100.0
    )
}

#[cfg(test)]
mod tests {
    use super::describe_write_back;

    #[test]
    fn names_the_setting_in_force() {
        assert_eq!(
            describe_write_back(0, 10, 3000),
            "kernel write-back starts once 10% of the available memory is dirty (vm.dirty_background_ratio) or for pages older than 30 s (vm.dirty_expire_centisecs)"
        );
        assert_eq!(
            describe_write_back(8_388_608, 0, 500),
            "kernel write-back starts once 8 MB are dirty (vm.dirty_background_bytes) or for pages older than 5 s (vm.dirty_expire_centisecs)"
        );
    }
}
