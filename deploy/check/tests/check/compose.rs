use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::support::{binary, listen_port, read, text, yaml};

fn compose() -> Value {
    yaml("docker-compose.yml")
}

/// The variable that switches the services to MySQL/MariaDB (with `--profile mysql`).
const DATABASE_SWITCH: &str = "COLLECT_DATABASE_URL";

/// `value` as compose interpolates it, given the variables `set` in its shell: `${NAME}`,
/// `${NAME:-default}` (the default when unset or empty) and `$$`; anything else is refused.
fn interpolate(value: &str, set: &BTreeMap<&str, &str>) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        let inner = rest
            .strip_prefix('{')
            .and_then(|r| r.split_once('}'))
            .unwrap_or_else(|| panic!("only ${{NAME}} and ${{NAME:-default}}: {value}"));
        let (name, default) = match inner.0.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (inner.0, None),
        };
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'),
            "{value}"
        );
        match set.get(name).filter(|v| !v.is_empty()) {
            Some(given) => out.push_str(given),
            None => {
                out.push_str(default.unwrap_or_else(|| panic!("{name} has no default in {value}")))
            }
        }
        rest = inner.1;
    }
    out.push_str(rest);
    out
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

/// A service's environment as compose gives it when no variable is set in its shell.
fn environment(service: &Value) -> BTreeMap<String, String> {
    environment_with(service, &BTreeMap::new())
}

/// A service's environment as compose gives it with the shell variables `set`.
fn environment_with(service: &Value, set: &BTreeMap<&str, &str>) -> BTreeMap<String, String> {
    service["environment"]
        .as_object()
        .unwrap_or_else(|| panic!("environment as a map: {service}"))
        .iter()
        .map(|(name, value)| {
            let value = match value {
                Value::String(text) => interpolate(text, set),
                other => other.to_string(),
            };
            (name.clone(), value)
        })
        .collect()
}

/// The services of a profile (`None`: those that always run).
fn profile(services: &serde_json::Map<String, Value>, profile: Option<&str>) -> BTreeSet<String> {
    services
        .iter()
        .filter(|(_, service)| match (service.get("profiles"), profile) {
            (None, None) => true,
            (Some(profiles), Some(profile)) => profiles
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p == profile)),
            _ => false,
        })
        .map(|(name, _)| name.clone())
        .collect()
}

#[test]
fn compose_runs_the_whole_pipeline() {
    let names = profile(&services(), None);
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
        // sheets-sync reads the sheet outbox in the database: no broker.
        ("sheets-sync", ["postgres", "sheets-emulator"].into()),
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
        if name == "sheets-sync" {
            assert!(!environment.contains_key("AMQP_URL"), "it needs no broker");
        } else {
            assert_eq!(environment["AMQP_URL"], amqp_url, "{name}");
        }
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

/// `--profile mysql` adds MariaDB, and only that; `COLLECT_DATABASE_URL` (as the file's header
/// gives it) moves the three services that keep state onto it, and each accepts the URL.
#[test]
fn compose_switches_the_services_to_mariadb_with_the_mysql_profile() {
    let services = services();
    let with_profiles: BTreeSet<String> = services
        .iter()
        .filter(|(_, service)| service.get("profiles").is_some())
        .map(|(name, _)| name.clone())
        .collect();
    assert_eq!(with_profiles, ["mariadb".to_owned()].into());
    assert_eq!(
        services["mariadb"]["profiles"],
        serde_json::json!(["mysql"])
    );
    let mariadb = &services["mariadb"];
    let image = text(&mariadb["image"], "image");
    assert!(image.starts_with("mariadb:"), "{image}");
    assert_eq!(
        mariadb["healthcheck"]["test"],
        serde_json::json!(["CMD", "healthcheck.sh", "--connect", "--innodb_initialized"])
    );
    assert_eq!(mariadb["ports"], serde_json::json!(["3306:3306"]));
    assert!(compose()["volumes"].get("mariadb-data").is_some());
    assert_eq!(
        mariadb["volumes"],
        serde_json::json!(["mariadb-data:/var/lib/mysql"])
    );

    let settings = environment(mariadb);
    let url = format!(
        "mysql://root:{}@mariadb:3306/{}",
        settings["MARIADB_ROOT_PASSWORD"], settings["MARIADB_DATABASE"]
    );
    let command = format!("{DATABASE_SWITCH}={url} docker compose --profile mysql up --build");
    assert!(
        read("docker-compose.yml").contains(&command),
        "the header shows how to switch: {command}"
    );
    let set = BTreeMap::from([(DATABASE_SWITCH, url.as_str())]);
    for name in ["ingest", "validator", "sheets-sync"] {
        let environment = environment_with(&services[name], &set);
        assert_eq!(environment["DATABASE_URL"], url, "{name}");
        binary(name).parse(&environment).unwrap();
    }
    // Nothing else moves: the switch is the only variable compose reads from its shell.
    for (name, service) in &services {
        for (variable, value) in service["environment"].as_object().into_iter().flatten() {
            let value = value.as_str().unwrap_or_default();
            if value.contains('$') {
                assert_eq!(
                    (variable.as_str(), value.contains(DATABASE_SWITCH)),
                    ("DATABASE_URL", true),
                    "{name}"
                );
            }
        }
    }
}

#[test]
fn compose_builds_our_services_from_the_dockerfile() {
    for (name, service) in collect_services() {
        assert_eq!(service["build"], ".", "{name} builds the root Dockerfile");
        assert_eq!(service["image"], "collect:local", "{name}");
    }
}
