use std::collections::{BTreeMap, BTreeSet};

use collect_shared::amqp::Topology;
use collect_shared::messages::{FlagEvent, ResponseMessage, StoredResponse};
use serde_json::Value;
use utoipa::OpenApi;

use crate::support::{files_under, json, read, text, yaml};

const ASYNCAPI: &str = "docs/asyncapi.yaml";

/// The message bodies, and every schema they refer to, as the Rust types generate them.
#[derive(OpenApi)]
#[openapi(components(schemas(ResponseMessage, StoredResponse, FlagEvent)))]
struct WireTypes;

fn generated_schemas() -> serde_json::Map<String, Value> {
    let document = serde_json::to_value(WireTypes::openapi()).unwrap();
    document["components"]["schemas"]
        .as_object()
        .unwrap()
        .clone()
}

fn document() -> Value {
    yaml(ASYNCAPI)
}

/// Numbers compared by value (YAML's `0` and the generator's `0.0` are the same schema).
fn normalised(value: &Value) -> Value {
    match value {
        Value::Number(number) => serde_json::json!(number.as_f64().unwrap()),
        Value::Array(items) => Value::Array(items.iter().map(normalised).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| (key.clone(), normalised(value)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The document's channels by address, with their AMQP binding.
fn channels_by_kind(kind: &str) -> BTreeMap<String, Value> {
    document()["channels"]
        .as_object()
        .unwrap()
        .values()
        .filter(|channel| channel["bindings"]["amqp"]["is"] == kind)
        .map(|channel| {
            (
                text(&channel["address"], "address").to_owned(),
                channel.clone(),
            )
        })
        .collect()
}

/// Every schema of the document is the one the Rust type generates (descriptions included:
/// they come from the doc comments), and every type's schema is in the document; a changed
/// type fails here until the document is updated (the message prints what to paste).
#[test]
fn message_schemas_are_those_the_wire_types_generate() {
    let generated = generated_schemas();
    assert!(generated.len() >= 10, "{:?}", generated.keys());
    let written = document()["components"]["schemas"]
        .as_object()
        .unwrap()
        .clone();
    let generated_names: BTreeSet<&String> = generated.keys().collect();
    let written_names: BTreeSet<&String> = written.keys().collect();
    assert_eq!(written_names, generated_names, "the schemas of {ASYNCAPI}");
    for (name, schema) in &generated {
        assert_eq!(
            normalised(&written[name]),
            normalised(schema),
            "{ASYNCAPI}: components.schemas.{name} differs from the Rust type's; it is now:\n{}",
            serde_saphyr::to_string(schema).unwrap()
        );
    }
}

/// Every exchange and queue of the topology (namespace `collect`) is a channel with its
/// type, flags, arguments and bindings as deploy/rabbitmq/definitions.json has them (and that
/// file is what the services declare: see rabbitmq.rs).
#[test]
fn channels_are_the_topology() {
    let topology = Topology::new("collect".parse().unwrap());
    let definitions = json("deploy/rabbitmq/definitions.json");

    let exchanges = channels_by_kind("routingKey");
    let expected: BTreeSet<String> = [
        topology.responses_exchange(),
        topology.flags_exchange(),
        topology.saved_exchange(),
        topology.dead_exchange(),
    ]
    .into();
    assert_eq!(exchanges.keys().cloned().collect::<BTreeSet<_>>(), expected);
    for declared in definitions["exchanges"].as_array().unwrap() {
        let name = text(&declared["name"], "name");
        let exchange = &exchanges[name]["bindings"]["amqp"]["exchange"];
        assert_eq!(exchange["name"], declared["name"]);
        assert_eq!(exchange["type"], declared["type"], "{name}");
        assert_eq!(exchange["durable"], declared["durable"], "{name}");
        assert_eq!(exchange["autoDelete"], declared["auto_delete"], "{name}");
        assert_eq!(exchange["vhost"], declared["vhost"], "{name}");
    }

    let queues = channels_by_kind("queue");
    let expected: BTreeSet<String> = [
        topology.validator_queue(),
        topology.webhooks_queue(),
        topology.dead_queue(),
    ]
    .into();
    assert_eq!(queues.keys().cloned().collect::<BTreeSet<_>>(), expected);
    for declared in definitions["queues"].as_array().unwrap() {
        let name = text(&declared["name"], "name");
        let channel = &queues[name];
        let queue = &channel["bindings"]["amqp"]["queue"];
        assert_eq!(queue["name"], declared["name"]);
        assert_eq!(queue["durable"], declared["durable"], "{name}");
        assert_eq!(queue["autoDelete"], declared["auto_delete"], "{name}");
        assert_eq!(queue["exclusive"], false, "{name}");
        assert_eq!(queue["vhost"], declared["vhost"], "{name}");
        assert_eq!(
            normalised(&channel["x-queue-arguments"]),
            normalised(&declared["arguments"]),
            "{name}"
        );
        let bound: Vec<Value> = definitions["bindings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|binding| binding["destination"] == declared["name"])
            .map(|binding| {
                serde_json::json!({"exchange": binding["source"], "routingKey": binding["routing_key"]})
            })
            .collect();
        assert_eq!(channel["x-bound-to"], Value::Array(bound), "{name}");
    }
}

/// Each channel carries the message the code publishes there: ResponseMessage on
/// `N.responses` and `N.validator` and StoredResponse on `N.saved` (each alone or gathered in an
/// array), FlagEvent on `N.flags`, dead letters on `N.dead`.
#[test]
fn each_channel_carries_its_message() {
    let document = document();
    let messages = &document["components"]["messages"];
    let payload_of = |address: &str| -> BTreeSet<String> {
        document["channels"]
            .as_object()
            .unwrap()
            .values()
            .filter(|channel| channel["address"] == address)
            .flat_map(|channel| channel["messages"].as_object().unwrap().values())
            .map(|message| {
                let reference = text(&message["$ref"], "$ref");
                let name = reference.strip_prefix("#/components/messages/").unwrap();
                let payload = &messages[name]["payload"];
                match payload.get("$ref") {
                    Some(schema) => text(schema, "$ref").replace("#/components/schemas/", ""),
                    None => format!("{name} (inline)"),
                }
            })
            .collect()
    };
    let set = |names: &[&str]| {
        names
            .iter()
            .map(|n| (*n).to_owned())
            .collect::<BTreeSet<_>>()
    };
    let responses = set(&["ResponseMessage", "Responses (inline)"]);
    assert_eq!(payload_of("collect.responses"), responses);
    assert_eq!(payload_of("collect.validator"), responses);
    assert_eq!(
        payload_of("collect.saved"),
        set(&["StoredResponse", "StoredRows (inline)"])
    );
    assert_eq!(payload_of("collect.flags"), set(&["FlagEvent"]));
    assert_eq!(payload_of("collect.dead"), set(&["DeadLetter (inline)"]));

    // Every operation sends to or receives from a channel of the document, with messages of
    // that channel.
    let operations = document["operations"].as_object().unwrap();
    assert!(operations.len() >= 5);
    for (name, operation) in operations {
        let channel = text(&operation["channel"]["$ref"], "channel");
        let channel = channel.strip_prefix("#/channels/").unwrap();
        assert!(document["channels"].get(channel).is_some(), "{name}");
        for message in operation["messages"].as_array().unwrap() {
            let reference = text(&message["$ref"], "$ref");
            assert!(
                reference.starts_with(&format!("#/channels/{channel}/messages/")),
                "{name}: {reference}"
            );
            let key = reference.rsplit('/').next().unwrap();
            assert!(document["channels"][channel]["messages"].get(key).is_some());
        }
        assert!(["send", "receive"].contains(&text(&operation["action"], "action")));
    }
}

/// The dead letter's headers are those the services set when they set a message aside (every
/// `x-collect-*` header in the code), and RabbitMQ's own `x-death`.
#[test]
fn dead_letter_headers_are_those_the_services_set() {
    let mut set_by_code: BTreeSet<String> = ["shared/src", "validator/src", "sheets-sync/src"]
        .iter()
        .flat_map(|directory| files_under(directory, &[".rs"]))
        .flat_map(|file| {
            read(&file)
                .split('"')
                .skip(1)
                .step_by(2)
                .filter(|literal| literal.starts_with("x-collect-"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(set_by_code.len() >= 3, "{set_by_code:?}");
    set_by_code.insert("x-death".to_owned());
    let headers = &document()["components"]["messages"]["DeadLetter"]["headers"];
    let documented: BTreeSet<String> = headers["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(documented, set_by_code);
}
