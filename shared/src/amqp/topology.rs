//! The spec's AMQP table as code. Every name starts with the namespace.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, ExchangeKind};

use crate::config::Namespace;

/// Deliveries of one message before a quorum queue dead-letters it to `N.dead`. RabbitMQ 3.x
/// has no default, and without one a poison message is redelivered forever.
pub const DELIVERY_LIMIT: i64 = 5;

#[derive(Debug, thiserror::Error)]
#[error("declaring {what} failed: {source}{hint}")]
pub struct TopologyError {
    what: String,
    hint: &'static str,
    #[source]
    source: lapin::Error,
}

/// The names of the exchanges and queues under one namespace, and their declaration.
#[derive(Debug, Clone)]
pub struct Topology {
    namespace: Namespace,
}

impl Topology {
    pub fn new(namespace: Namespace) -> Self {
        Self { namespace }
    }

    fn name(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.namespace)
    }

    /// Topic exchange responses are published to; the routing key is the form id.
    pub fn responses_exchange(&self) -> String {
        self.name("responses")
    }
    /// Quorum queue the validator consumes, bound to `responses` with `#`.
    pub fn validator_queue(&self) -> String {
        self.name("validator")
    }
    /// Topic exchange of flag events; the routing key is `collector.<user_id>`.
    pub fn flags_exchange(&self) -> String {
        self.name("flags")
    }
    /// Quorum queue bound to `flags` with `#`: every flag event is kept here whether or not a
    /// collector's app listens, and ingest's webhook dispatcher consumes it. Because it always
    /// exists, the validator publishes flag events with `mandatory`.
    pub fn webhooks_queue(&self) -> String {
        self.name("webhooks")
    }
    /// Topic exchange of stored rows; the routing key is the form id.
    pub fn saved_exchange(&self) -> String {
        self.name("saved")
    }
    /// The quorum queue sheets-sync consumed, bound to `saved` with `#`, before the validator
    /// wrote the sheet outbox itself. Retired: nothing declares it; the validator drains a
    /// leftover one into the outbox and deletes it.
    pub fn sheets_queue(&self) -> String {
        self.name("sheets")
    }
    /// Fanout exchange that dead letters go to, and the queue that keeps them.
    pub fn dead_exchange(&self) -> String {
        self.name("dead")
    }
    pub fn dead_queue(&self) -> String {
        self.name("dead")
    }

    /// Declares everything, idempotently. Every service declares the whole topology at start,
    /// so a response published before the validator ever ran is still queued, not dropped.
    pub async fn declare(&self, channel: &Channel) -> Result<(), TopologyError> {
        for (exchange, kind) in [
            (self.responses_exchange(), ExchangeKind::Topic),
            (self.flags_exchange(), ExchangeKind::Topic),
            (self.saved_exchange(), ExchangeKind::Topic),
            (self.dead_exchange(), ExchangeKind::Fanout),
        ] {
            let options = ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            };
            channel
                .exchange_declare(
                    exchange.as_str().into(),
                    kind,
                    options,
                    FieldTable::default(),
                )
                .await
                .map_err(|source| TopologyError::new(format!("exchange {exchange}"), source))?;
        }

        // Dead letters are kept on a quorum queue too: they are data someone will replay.
        self.declare_queue(channel, &self.dead_queue(), quorum_arguments())
            .await?;
        self.bind(channel, &self.dead_queue(), &self.dead_exchange(), "")
            .await?;

        let work_queue_arguments = self.work_queue_arguments();
        self.declare_queue(
            channel,
            &self.validator_queue(),
            work_queue_arguments.clone(),
        )
        .await?;
        self.bind(
            channel,
            &self.validator_queue(),
            &self.responses_exchange(),
            "#",
        )
        .await?;
        self.declare_queue(channel, &self.webhooks_queue(), work_queue_arguments)
            .await?;
        self.bind(channel, &self.webhooks_queue(), &self.flags_exchange(), "#")
            .await?;
        Ok(())
    }

    /// A work queue: quorum (replicated, fsynced), a delivery limit, and dead-lettering to
    /// `N.dead` at-least-once (which RabbitMQ allows only with `reject-publish` overflow), so a
    /// poison message is set aside instead of looping, and is not lost on the way.
    fn work_queue_arguments(&self) -> FieldTable {
        let mut arguments = quorum_arguments();
        insert(
            &mut arguments,
            "x-delivery-limit",
            AMQPValue::LongLongInt(DELIVERY_LIMIT),
        );
        insert(
            &mut arguments,
            "x-dead-letter-exchange",
            AMQPValue::LongString(self.dead_exchange().into()),
        );
        insert(
            &mut arguments,
            "x-dead-letter-strategy",
            AMQPValue::LongString("at-least-once".into()),
        );
        insert(
            &mut arguments,
            "x-overflow",
            AMQPValue::LongString("reject-publish".into()),
        );
        arguments
    }

    async fn declare_queue(
        &self,
        channel: &Channel,
        queue: &str,
        arguments: FieldTable,
    ) -> Result<(), TopologyError> {
        let options = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .queue_declare(queue.into(), options, arguments)
            .await
            .map(|_| ())
            .map_err(|source| TopologyError::new(format!("queue {queue}"), source))
    }

    async fn bind(
        &self,
        channel: &Channel,
        queue: &str,
        exchange: &str,
        key: &str,
    ) -> Result<(), TopologyError> {
        channel
            .queue_bind(
                queue.into(),
                exchange.into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|source| {
                TopologyError::new(format!("binding {queue} to {exchange} ({key:?})"), source)
            })
    }
}

impl TopologyError {
    fn new(what: String, source: lapin::Error) -> Self {
        let hint = if source.to_string().contains("PRECONDITION") {
            ". It exists on the broker with other settings than this version of Collect declares: \
             delete it (after moving its messages) or use another COLLECT_NAMESPACE"
        } else {
            ""
        };
        Self { what, hint, source }
    }
}

fn quorum_arguments() -> FieldTable {
    let mut arguments = FieldTable::default();
    insert(
        &mut arguments,
        "x-queue-type",
        AMQPValue::LongString("quorum".into()),
    );
    arguments
}

fn insert(table: &mut FieldTable, key: &str, value: AMQPValue) {
    table.insert(ShortString::from(key), value);
}

/// Declares a queue only this channel's connection uses (named by the broker, exclusive,
/// deleted with the connection) and binds it to `exchange` with `binding_key`: a listener's
/// own copy of what the exchange routes, nothing kept once it goes. Returns the queue's name.
pub async fn bind_exclusive_queue(
    channel: &lapin::Channel,
    exchange: &str,
    binding_key: &str,
) -> Result<lapin::types::ShortString, lapin::Error> {
    let queue = channel
        .queue_declare(
            "".into(),
            lapin::options::QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            queue.name().clone(),
            exchange.into(),
            binding_key.into(),
            lapin::options::QueueBindOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await?;
    Ok(queue.name().clone())
}
