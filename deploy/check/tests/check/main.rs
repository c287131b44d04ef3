//! Static checks of the deployment files and API documents, in one binary: they cannot run
//! here (no Docker engine, no Kubernetes), so each is compared with what the code accepts,
//! declares and exports. The RabbitMQ definitions are also compared with what the services
//! declare on the real broker.

#![allow(clippy::unwrap_used)]

mod alerts;
mod asyncapi;
mod compose;
mod dockerfile;
mod kubernetes;
mod rabbitmq;
mod support;
