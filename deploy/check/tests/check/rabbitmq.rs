use std::io::Write;
use std::process::{Command, Stdio};

use collect_shared::amqp::{DELIVERY_LIMIT, Topology};
use collect_shared::config::Namespace;
use collect_testkit::{amqp_url, remove_namespace};
use lapin::{Connection, ConnectionProperties};
use serde_json::Value;

use crate::support::json;

const DEFINITIONS: &str = "deploy/rabbitmq/definitions.json";

/// The namespace the definitions are written for.
const NAMESPACE: &str = "collect";

/// The exchanges, queues and bindings of a definitions document whose names start with
/// `namespace.`, renamed to `to.` (names and the dead-letter exchange argument), each list
/// sorted, so that two documents compare whatever their order.
fn topology_part(definitions: &Value, namespace: &str, to: &str) -> Value {
    let prefix = format!("{namespace}.");
    let rename = |value: &Value| -> Value {
        match value.as_str() {
            Some(name) if name.starts_with(&prefix) => {
                Value::String(format!("{to}.{}", &name[prefix.len()..]))
            }
            _ => value.clone(),
        }
    };
    let mut part = serde_json::Map::new();
    for (list, name_field) in [
        ("exchanges", "name"),
        ("queues", "name"),
        ("bindings", "source"),
    ] {
        let mut items: Vec<Value> = definitions[list]
            .as_array()
            .unwrap_or_else(|| panic!("{list} in {definitions}"))
            .iter()
            .filter(|item| {
                item[name_field]
                    .as_str()
                    .is_some_and(|name| name.starts_with(&prefix))
            })
            .map(|item| {
                let mut item = item.clone();
                for field in ["name", "source", "destination"] {
                    if let Some(value) = item.get(field) {
                        item[field] = rename(value);
                    }
                }
                if let Some(exchange) = item["arguments"].get("x-dead-letter-exchange") {
                    item["arguments"]["x-dead-letter-exchange"] = rename(exchange);
                }
                item
            })
            .collect();
        items.sort_by_key(|item| item.to_string());
        part.insert(list.to_owned(), Value::Array(items));
    }
    Value::Object(part)
}

fn rabbitmqctl(args: &[&str], input: Option<&[u8]>) -> Vec<u8> {
    let program = std::env::var("RABBITMQCTL").unwrap_or_else(|_| "rabbitmqctl".into());
    let mut child = Command::new(&program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| {
            panic!("{program} (RabbitMQ's CLI, beside the test broker) cannot run: {error}")
        });
    if let Some(input) = input {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    drop(child.stdin.take());
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// What the broker holds now, as a definitions document.
fn exported() -> Value {
    serde_json::from_slice(&rabbitmqctl(&["-q", "export_definitions", "-"], None)).unwrap()
}

async fn declare(namespace: &Namespace) {
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    Topology::new(namespace.clone())
        .declare(&channel)
        .await
        .unwrap();
    let _ = connection.close(200, "declared".into()).await;
}

/// The file names what `Topology` names, with the delivery limit the code sets.
#[test]
fn definitions_name_the_exchanges_and_queues_topology_names() {
    let definitions = json(DEFINITIONS);
    let topology = Topology::new(NAMESPACE.parse().unwrap());
    let names = |list: &str| -> Vec<String> {
        let mut names: Vec<String> = definitions[list]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["name"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    };
    let mut exchanges = vec![
        topology.responses_exchange(),
        topology.flags_exchange(),
        topology.saved_exchange(),
        topology.dead_exchange(),
    ];
    exchanges.sort();
    let mut queues = vec![
        topology.validator_queue(),
        topology.webhooks_queue(),
        topology.dead_queue(),
    ];
    queues.sort();
    assert_eq!(names("exchanges"), exchanges);
    assert_eq!(names("queues"), queues);
    for queue in definitions["queues"].as_array().unwrap() {
        assert_eq!(queue["arguments"]["x-queue-type"], "quorum", "{queue}");
        if queue["name"] != topology.dead_queue() {
            assert_eq!(queue["arguments"]["x-delivery-limit"], DELIVERY_LIMIT);
            assert_eq!(
                queue["arguments"]["x-dead-letter-exchange"],
                topology.dead_exchange()
            );
        }
    }
}

/// The services declare their topology on the real broker (in a namespace of this test's
/// own); RabbitMQ's export of it is, renamed, exactly the file: every exchange and its type,
/// every queue and its arguments, every binding.
#[tokio::test]
async fn definitions_are_exactly_what_the_services_declare() {
    let namespace = collect_testkit::namespace();
    declare(&namespace).await;
    let declared = topology_part(&exported(), namespace.as_str(), NAMESPACE);
    remove_namespace(&namespace).await;
    let file = topology_part(&json(DEFINITIONS), NAMESPACE, NAMESPACE);
    assert_eq!(declared["exchanges"].as_array().unwrap().len(), 4);
    assert_eq!(declared["queues"].as_array().unwrap().len(), 3);
    assert_eq!(declared["bindings"].as_array().unwrap().len(), 3);
    assert_eq!(
        file,
        declared,
        "deploy/rabbitmq/definitions.json against the broker's export of what the services declare:\n{}",
        serde_json::to_string_pretty(&declared).unwrap()
    );
}

/// Imported into the broker first (as an operator would, before the services start), the
/// file leaves nothing for the services to change: their own declaration succeeds on top of
/// it (a queue with other arguments would fail with PRECONDITION_FAILED).
#[tokio::test]
async fn imported_definitions_are_accepted_by_the_services() {
    let namespace = collect_testkit::namespace();
    let renamed = topology_part(&json(DEFINITIONS), NAMESPACE, namespace.as_str());
    rabbitmqctl(
        // No file: from standard input (3.10 takes `-` as a file name).
        &["-q", "import_definitions", "--format", "json"],
        Some(renamed.to_string().as_bytes()),
    );
    let imported = topology_part(&exported(), namespace.as_str(), namespace.as_str());
    declare(&namespace).await;
    let after = topology_part(&exported(), namespace.as_str(), namespace.as_str());
    remove_namespace(&namespace).await;
    assert_eq!(
        imported, renamed,
        "the import created everything in the file"
    );
    assert_eq!(after, imported, "the services changed nothing");
}
