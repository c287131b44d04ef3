//! RabbitMQ: the topology of the spec as code, a supervised connection, confirmed publishing.

mod broker;
mod consumer;
pub mod dead_letters;
pub mod gather;
mod publisher;
mod topology;

pub use broker::{Broker, BrokerSettings, BrokerStatus};
pub use consumer::{
    Acks, Batching, Command, Settled, consume_batches, dead_letter, dead_letter_part,
};
pub use publisher::{OutgoingMessage, PublishError, PublishSettings, Publisher};
pub use topology::{DELIVERY_LIMIT, Topology, TopologyError};

/// Retries `operation` with jittered exponential backoff (up to 10 s apart) until it succeeds
/// or `shutdown` fires (`None`). For work that must not be given up on, like storing a
/// response while the database restarts.
pub async fn retry_until_shutdown<T, E, F, Fut>(
    what: &str,
    shutdown: &tokio_util::sync::CancellationToken,
    operation: F,
) -> Option<T>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    match retry_transient(what, shutdown, |_: &E| false, operation).await {
        Retried::Done(value) => Some(value),
        Retried::Permanent(_) | Retried::Shutdown => None,
    }
}

/// How [`retry_transient`] ended.
#[derive(Debug)]
pub enum Retried<T, E> {
    Done(T),
    /// An error that retrying cannot cure (bad data, not a lost connection): given back at
    /// once, for the caller to set the input aside.
    Permanent(E),
    Shutdown,
}

/// Like [`retry_until_shutdown`], but an error for which `permanent` holds ends the retries
/// and is returned.
pub async fn retry_transient<T, E, F, Fut>(
    what: &str,
    shutdown: &tokio_util::sync::CancellationToken,
    permanent: impl Fn(&E) -> bool,
    mut operation: F,
) -> Retried<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    use backon::BackoffBuilder;
    let mut delays = backon::ExponentialBuilder::default()
        .with_min_delay(std::time::Duration::from_millis(100))
        .with_max_delay(std::time::Duration::from_secs(10))
        .with_jitter()
        .without_max_times()
        .build();
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
                metrics::counter!("collect_retries_total", "operation" => what.to_owned())
                    .increment(1);
                tracing::warn!(what, attempt, %error, "failed; retrying");
                let delay = delays.next().unwrap_or(std::time::Duration::from_secs(10));
                tokio::select! {
                    _ = shutdown.cancelled() => return Retried::Shutdown,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}
