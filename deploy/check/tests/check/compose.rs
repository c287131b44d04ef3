use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::support::{binary, listen_port, text, yaml};

fn compose() -> Value {
    yaml("docker-compose.yml")
}

fn services() -> serde_json::Map<String, Value> {
    compose()["services"].as_object().unwrap().clone()
}

/// The services running one of the workspace's binaries, by binary.
fn collect_services() -> BTreeMap<String, Value> {
    services()
        .into_iter()
        .filter(|(_, service)| service.get("command").is_some())
        .map(|(_, service)| {
            let command = text(&service["command"][0], "a command").to_owned();
            (command, service)
        })
        .collect()
}

fn environment(service: &Value) -> BTreeMap<String, String> {
    service["environment"]
        .as_object()
        .unwrap_or_else(|| panic!("environment as a map: {service}"))
        .iter()
        .map(|(name, value)| {
            let value = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            (name.clone(), value)
        })
        .collect()
}

#[test]
fn compose_runs_the_whole_pipeline() {
    let names: BTreeSet<String> = services().keys().cloned().collect();
    let expected: BTreeSet<String> = [
        "rabbitmq",
        "postgres",
        "sheets-emulator",
        "ingest",
        "validator",
        "sheets-sync",
    ]
    .map(String::from)
    .into();
    assert_eq!(names, expected);
    // Each service of ours runs its own binary, named like the service.
    for (name, service) in services() {
        if let Some(command) = service.get("command") {
            assert_eq!(command, &serde_json::json!([name]), "{name}");
        }
    }
    let binaries: BTreeSet<String> = collect_services().keys().cloned().collect();
    assert_eq!(
        binaries,
        ["ingest", "validator", "sheets-sync", "sheets-emulator"]
            .map(String::from)
            .into()
    );
    assert!(
        text(&services()["rabbitmq"]["image"], "image").contains("management"),
        "RabbitMQ with its management plugin"
    );
}

#[test]
fn compose_gives_each_binary_only_variables_it_accepts_with_values_it_parses() {
    for (name, service) in collect_services() {
        let binary = binary(&name);
        let accepted = binary.accepted_variables();
        let environment = environment(&service);
        for variable in environment.keys() {
            assert!(
                accepted.contains(variable),
                "{name} does not read {variable}; it reads {accepted:?}"
            );
        }
        binary.parse(&environment).unwrap();
    }
}

#[test]
fn compose_publishes_the_listen_ports_and_checks_health_there() {
    for (name, service) in collect_services() {
        let binary = binary(&name);
        let environment = environment(&service);
        let listen = environment
            .get(&binary.listen_variable())
            .unwrap_or_else(|| panic!("{name} sets {}", binary.listen_variable()));
        let port = listen_port(listen);
        let ports: Vec<&str> = service["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| text(p, "a port"))
            .collect();
        assert_eq!(ports, [format!("{port}:{port}")], "{name}");
        let health = &service["healthcheck"]["test"];
        let path = if name == "sheets-emulator" {
            "/healthz" // it has no dependencies to be ready for
        } else {
            "/readyz"
        };
        assert_eq!(
            health,
            &serde_json::json!([
                "CMD",
                "curl",
                "-fsS",
                format!("http://127.0.0.1:{port}{path}")
            ]),
            "{name}"
        );
        // Compose's default stop timeout is 10 s, the services' own limit: give them more.
        assert_eq!(service["stop_grace_period"], "15s", "{name}");
    }
    for (name, service) in services() {
        assert!(
            service["healthcheck"]["test"].is_array(),
            "{name} has a health check"
        );
    }
}

#[test]
fn compose_starts_services_once_what_they_need_is_healthy() {
    let services = services();
    let expected: BTreeMap<&str, BTreeSet<&str>> = [
        ("ingest", ["rabbitmq", "postgres"].into()),
        ("validator", ["rabbitmq", "postgres"].into()),
        (
            "sheets-sync",
            ["rabbitmq", "postgres", "sheets-emulator"].into(),
        ),
    ]
    .into();
    for (name, service) in &services {
        let depends_on = service.get("depends_on").and_then(Value::as_object);
        let Some(wanted) = expected.get(name.as_str()) else {
            assert!(depends_on.is_none(), "{name} depends on nothing");
            continue;
        };
        let depends_on = depends_on.unwrap_or_else(|| panic!("{name} has depends_on"));
        let names: BTreeSet<&str> = depends_on.keys().map(String::as_str).collect();
        assert_eq!(&names, wanted, "{name}");
        for (dependency, condition) in depends_on {
            assert!(services.contains_key(dependency), "{dependency}");
            assert_eq!(
                condition["condition"], "service_healthy",
                "{name} waits for {dependency}"
            );
        }
    }
}

#[test]
fn compose_wires_the_services_to_each_other() {
    let services = services();
    let rabbitmq = environment(&services["rabbitmq"]);
    let postgres = environment(&services["postgres"]);
    let amqp_url = format!(
        "amqp://{}:{}@rabbitmq:5672/%2f",
        rabbitmq["RABBITMQ_DEFAULT_USER"], rabbitmq["RABBITMQ_DEFAULT_PASS"]
    );
    let database_url = format!(
        "postgres://{}:{}@postgres:5432/{}",
        postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"]
    );
    for name in ["ingest", "validator", "sheets-sync"] {
        let environment = environment(&services[name]);
        assert_eq!(environment["AMQP_URL"], amqp_url, "{name}");
        assert_eq!(environment["DATABASE_URL"], database_url, "{name}");
        assert_eq!(environment["COLLECT_NAMESPACE"], "collect", "{name}");
    }
    assert!(!environment(&services["ingest"])["COLLECT_API_KEYS"].is_empty());

    // sheets-sync uses the emulator, with the key the emulator writes into the shared volume.
    let emulator = environment(&services["sheets-emulator"]);
    let sync = environment(&services["sheets-sync"]);
    let port = listen_port(&emulator["SHEETS_EMULATOR_LISTEN"]);
    let emulator_url = format!("http://sheets-emulator:{port}");
    assert_eq!(emulator["SHEETS_EMULATOR_PUBLIC_URL"], emulator_url);
    assert_eq!(sync["SHEETS_API_URL"], format!("{emulator_url}/"));
    assert_eq!(
        sync["GOOGLE_APPLICATION_CREDENTIALS"],
        emulator["SHEETS_EMULATOR_KEY_FILE"]
    );
    assert!(
        emulator["SHEETS_EMULATOR_SPREADSHEETS"]
            .split(',')
            .any(|id| id == sync["SHEETS_DEFAULT_SPREADSHEET_ID"])
    );
    let key_directory = emulator["SHEETS_EMULATOR_KEY_FILE"]
        .rsplit_once('/')
        .unwrap()
        .0
        .to_owned();
    let volume = |service: &str| -> String {
        services[service]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| text(v, "a volume").to_owned())
            .find(|v| v.split(':').nth(1) == Some(key_directory.as_str()))
            .unwrap_or_else(|| panic!("{service} mounts {key_directory}"))
    };
    let written = volume("sheets-emulator");
    let read = volume("sheets-sync");
    assert_eq!(written, format!("emulator-key:{key_directory}"));
    assert_eq!(read, format!("emulator-key:{key_directory}:ro"));
    assert!(compose()["volumes"].get("emulator-key").is_some());
}

#[test]
fn compose_builds_our_services_from_the_dockerfile() {
    for (name, service) in collect_services() {
        assert_eq!(service["build"], ".", "{name} builds the root Dockerfile");
        assert_eq!(service["image"], "collect:local", "{name}");
    }
}
