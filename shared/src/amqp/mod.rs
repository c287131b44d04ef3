//! RabbitMQ: the topology of the spec as code, a supervised connection, confirmed publishing.

mod broker;
mod publisher;
mod topology;

pub use broker::{Broker, BrokerSettings, BrokerStatus};
pub use publisher::{OutgoingMessage, PublishError, PublishSettings, Publisher};
pub use topology::{DELIVERY_LIMIT, Topology, TopologyError};
