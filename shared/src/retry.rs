//! Retrying, in one place: the delays between attempts ([`Policy`]: truncated exponential
//! backoff with jitter) and the loops that retry until the work is done, the error is one that
//! retrying cannot cure ([`Retriable`]), or shutdown.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use backon::BackoffBuilder;
use tokio_util::sync::CancellationToken;

/// How long to wait between attempts: from `min`, doubling, at most `max`, each delay jittered
/// (so that many clients that failed together do not retry together), never giving up by
/// itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub min: Duration,
    pub max: Duration,
}

impl Policy {
    /// Work that must not be given up on (storing a response, publishing its events) while the
    /// database or the broker is away.
    pub const TRANSIENT: Self = Self::new(Duration::from_millis(100), Duration::from_secs(10));
    /// Connecting to the broker again after the connection was lost.
    pub const BROKER_RECONNECT: Self =
        Self::new(Duration::from_millis(100), Duration::from_secs(5));
    /// Connecting to the database at start.
    pub const DATABASE_CONNECT: Self =
        Self::new(Duration::from_millis(200), Duration::from_secs(5));
    /// A sheet Google refused or did not answer for (Google advises backing off to 32–64 s).
    pub const SHEETS: Self = Self::new(Duration::from_millis(500), Duration::from_secs(60));

    pub const fn new(min: Duration, max: Duration) -> Self {
        Self { min, max }
    }

    /// The delays, one per failed attempt, without end.
    pub fn delays(self) -> Delays {
        Delays {
            inner: backon::ExponentialBuilder::default()
                .with_min_delay(self.min)
                .with_max_delay(self.max)
                .with_factor(2.0)
                .with_jitter()
                .without_max_times()
                .build(),
            max: self.max,
        }
    }

    /// The delay after the `failures`-th failed attempt (1 for the first).
    pub fn delay_after(self, failures: u32) -> Duration {
        let mut delays = self.delays();
        for _ in 1..failures {
            delays.next_delay();
        }
        delays.next_delay()
    }
}

/// The delays of a [`Policy`].
#[derive(Debug)]
pub struct Delays {
    inner: backon::ExponentialBackoff,
    max: Duration,
}

impl Delays {
    /// How long to wait after the next failed attempt.
    pub fn next_delay(&mut self) -> Duration {
        self.inner.next().unwrap_or(self.max)
    }
}

/// An error that can say whether trying again could cure it.
pub trait Retriable: Display {
    /// The same input would fail again however often it is tried (bad data, not a lost
    /// connection): give it back at once, for the caller to set the input aside.
    fn is_permanent(&self) -> bool;
}

impl Retriable for crate::store::StoreError {
    fn is_permanent(&self) -> bool {
        crate::store::StoreError::is_permanent(self)
    }
}

/// How [`retry_transient`] ended.
#[derive(Debug)]
pub enum Retried<T, E> {
    Done(T),
    /// An error that retrying cannot cure (see [`Retriable`]): given back at once.
    Permanent(E),
    Shutdown,
}

/// Retries `operation` with [`Policy::TRANSIENT`] until it succeeds or `shutdown` fires
/// (`None`), whatever the error. For work that must not be given up on, like publishing a
/// stored response's events while the broker restarts.
pub async fn retry_until_shutdown<T, E, F, Fut>(
    what: &str,
    shutdown: &CancellationToken,
    operation: F,
) -> Option<T>
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    match retry(what, shutdown, |_: &E| false, operation).await {
        Retried::Done(value) => Some(value),
        Retried::Permanent(_) | Retried::Shutdown => None,
    }
}

/// Like [`retry_until_shutdown`], but a permanent error ([`Retriable::is_permanent`]) ends
/// the retries and is returned.
pub async fn retry_transient<T, E, F, Fut>(
    what: &str,
    shutdown: &CancellationToken,
    operation: F,
) -> Retried<T, E>
where
    E: Retriable,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    retry(what, shutdown, E::is_permanent, operation).await
}

async fn retry<T, E, F, Fut>(
    what: &str,
    shutdown: &CancellationToken,
    permanent: impl Fn(&E) -> bool,
    mut operation: F,
) -> Retried<T, E>
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut delays = Policy::TRANSIENT.delays();
    let mut attempt = 0u32;
    loop {
        // A first attempt runs to its end, so that a clean shutdown finishes in-flight work.
        // Once it has failed, later attempts give way to shutdown (a query to a stalled
        // database can take long to fail): what they did is rolled back or redelivered.
        let outcome = if attempt == 0 {
            operation().await
        } else {
            tokio::select! {
                _ = shutdown.cancelled() => return Retried::Shutdown,
                outcome = operation() => outcome,
            }
        };
        match outcome {
            Ok(value) => {
                if attempt > 0 {
                    tracing::info!(what, attempts = attempt + 1, "succeeded after retrying");
                }
                return Retried::Done(value);
            }
            Err(error) if permanent(&error) => return Retried::Permanent(error),
            Err(error) => {
                attempt += 1;
                Retrying {
                    what,
                    attempt,
                    error: &error,
                }
                .record();
                let delay = delays.next_delay();
                tokio::select! {
                    _ = shutdown.cancelled() => return Retried::Shutdown,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// A failed attempt that is tried again: counted by operation (`collect_retries_total`) and
/// logged with its error.
struct Retrying<'a, E> {
    what: &'a str,
    attempt: u32,
    error: &'a E,
}

impl<E: Display> Retrying<'_, E> {
    fn record(&self) {
        metrics::counter!("collect_retries_total", "operation" => self.what.to_owned())
            .increment(1);
        tracing::warn!(
            what = self.what,
            attempt = self.attempt,
            error = %self.error,
            "failed; retrying"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_within_the_bounds() {
        let policy = Policy::new(Duration::from_millis(100), Duration::from_secs(1));
        let mut delays = policy.delays();
        // backon's jitter adds up to the delay itself: the n-th delay lies in [d, 2d].
        let expected = [100, 200, 400, 800, 1000, 1000, 1000];
        for (n, millis) in expected.into_iter().enumerate() {
            let delay = delays.next_delay();
            let low = Duration::from_millis(millis);
            assert!(
                delay >= low && delay <= low * 2,
                "delay {n}: {delay:?}, not in [{low:?}, 2×]"
            );
        }
        let third = policy.delay_after(3);
        assert!(third >= Duration::from_millis(400) && third <= Duration::from_millis(800));
    }

    #[derive(Debug)]
    struct Failure(bool);

    impl Display for Failure {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "failure (permanent: {})", self.0)
        }
    }

    impl Retriable for Failure {
        fn is_permanent(&self) -> bool {
            self.0
        }
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_and_permanent_ones_given_back() {
        let shutdown = CancellationToken::new();
        let mut calls = 0;
        let done = retry_transient("test", &shutdown, || {
            calls += 1;
            let outcome = if calls < 3 {
                Err(Failure(false))
            } else {
                Ok(calls)
            };
            async move { outcome }
        })
        .await;
        assert!(matches!(done, Retried::Done(3)), "{done:?}");

        let mut calls = 0;
        let given_back = retry_transient("test", &shutdown, || {
            calls += 1;
            async { Err::<(), _>(Failure(true)) }
        })
        .await;
        assert!(matches!(given_back, Retried::Permanent(Failure(true))));
        assert_eq!(calls, 1);

        // retry_until_shutdown retries even what says it is permanent, until shutdown.
        let stopping = shutdown.clone();
        let mut calls = 0;
        let stopped = retry_until_shutdown("test", &shutdown, || {
            calls += 1;
            if calls == 4 {
                stopping.cancel();
            }
            async { Err::<(), _>(Failure(true)) }
        })
        .await;
        assert_eq!(stopped, None);
        assert_eq!(calls, 4);
    }
}
