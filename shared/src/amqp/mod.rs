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
pub use topology::{DELIVERY_LIMIT, Topology, TopologyError, bind_exclusive_queue};
