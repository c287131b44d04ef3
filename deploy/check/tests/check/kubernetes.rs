use std::collections::{BTreeMap, BTreeSet};

use collect_shared::amqp::Topology;
use collect_shared::config::Namespace;
use serde_json::Value;

use crate::support::{binary, files_under, json, listen_port, text, yaml, yaml_documents};

const DIRECTORY: &str = "deploy/kubernetes";

/// Every Kubernetes object of deploy/ (the example Secrets included), by `(kind, name)`.
fn objects() -> BTreeMap<(String, String), Value> {
    let mut objects = BTreeMap::new();
    let files = files_under(DIRECTORY, &[".yaml"])
        .into_iter()
        .chain(files_under("deploy/rabbitmq", &[".yaml"]))
        .filter(|file| !file.ends_with("kustomization.yaml"));
    for file in files {
        for object in yaml_documents(&file) {
            let kind = text(&object["kind"], "kind").to_owned();
            let name = text(&object["metadata"]["name"], "metadata.name").to_owned();
            let previous = objects.insert((kind.clone(), name.clone()), object);
            assert!(previous.is_none(), "{kind} {name} twice");
        }
    }
    objects
}

fn of_kind(kind: &str) -> BTreeMap<String, Value> {
    objects()
        .into_iter()
        .filter(|((k, _), _)| k == kind)
        .map(|((_, name), object)| (name, object))
        .collect()
}

fn container(deployment: &Value) -> &Value {
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(containers.len(), 1, "one container");
    &containers[0]
}

/// A ConfigMap's `data` or a Secret's `stringData`.
fn entries(kind: &str, name: &str) -> BTreeMap<String, String> {
    let object = objects()
        .remove(&(kind.to_owned(), name.to_owned()))
        .unwrap_or_else(|| panic!("no {kind} {name}"));
    let field = if kind == "Secret" {
        "stringData"
    } else {
        "data"
    };
    object[field]
        .as_object()
        .unwrap()
        .iter()
        .map(|(key, value)| (key.clone(), text(value, key).to_owned()))
        .collect()
}

/// The container's environment: its `env` and everything its `envFrom` brings in.
fn environment(deployment: &Value) -> BTreeMap<String, String> {
    let container = container(deployment);
    let mut environment = BTreeMap::new();
    for source in container["envFrom"].as_array().unwrap() {
        let (kind, reference) = match (source.get("configMapRef"), source.get("secretRef")) {
            (Some(reference), None) => ("ConfigMap", reference),
            (None, Some(reference)) => ("Secret", reference),
            _ => panic!("an envFrom of a ConfigMap or a Secret: {source}"),
        };
        for (key, value) in entries(kind, text(&reference["name"], "a name")) {
            assert!(
                environment.insert(key.clone(), value).is_none(),
                "{key} comes twice"
            );
        }
    }
    for variable in container["env"].as_array().unwrap() {
        let name = text(&variable["name"], "env name").to_owned();
        let value = text(&variable["value"], "env value").to_owned();
        assert!(
            environment.insert(name.clone(), value).is_none(),
            "{name} comes twice"
        );
    }
    environment
}

fn namespace() -> Namespace {
    entries("ConfigMap", "collect-common")["COLLECT_NAMESPACE"]
        .parse()
        .unwrap()
}

#[test]
fn every_yaml_file_parses_and_every_object_is_in_the_collect_namespace() {
    let files = files_under("deploy", &[".yaml", ".yml"]);
    assert!(files.len() >= 10, "{files:?}");
    for file in &files {
        let documents = yaml_documents(file);
        assert!(!documents.is_empty(), "{file} is empty");
    }
    yaml("docker-compose.yml");
    json("deploy/rabbitmq/definitions.json");
    let objects = objects();
    assert!(objects.len() >= 20, "{:?}", objects.keys());
    for ((kind, name), object) in &objects {
        assert!(object["apiVersion"].is_string(), "{kind} {name}");
        if kind != "Namespace" {
            assert_eq!(object["metadata"]["namespace"], "collect", "{kind} {name}");
        }
    }
}

#[test]
fn a_deployment_runs_each_service_with_variables_it_accepts() {
    let deployments = of_kind("Deployment");
    assert_eq!(
        deployments
            .keys()
            .map(String::as_str)
            .collect::<BTreeSet<_>>(),
        ["ingest", "validator", "sheets-sync"].into()
    );
    for (name, deployment) in &deployments {
        let container = container(deployment);
        assert_eq!(container["command"], serde_json::json!([name]), "{name}");
        assert_eq!(
            container["image"], "collect",
            "{name}: the image kustomize sets"
        );
        let binary = binary(name);
        let accepted = binary.accepted_variables();
        let environment = environment(deployment);
        for variable in environment.keys() {
            assert!(
                accepted.contains(variable),
                "{name} does not read {variable}; it reads {accepted:?}"
            );
        }
        binary.parse(&environment).unwrap();
        assert!(environment.contains_key("AMQP_URL") && environment.contains_key("DATABASE_URL"));
    }
    let sync = environment(&deployments["sheets-sync"]);
    let key = &sync["GOOGLE_APPLICATION_CREDENTIALS"];
    let mount = &container(&deployments["sheets-sync"])["volumeMounts"][0];
    assert_eq!(
        key,
        &format!("{}/key.json", text(&mount["mountPath"], "mountPath"))
    );
    let volume = &deployments["sheets-sync"]["spec"]["template"]["spec"]["volumes"][0];
    assert_eq!(volume["name"], mount["name"]);
    let secret = text(&volume["secret"]["secretName"], "secretName");
    assert!(entries("Secret", secret).contains_key("key.json"));
}

#[test]
fn deployments_probe_readyz_and_healthz_on_their_listen_port() {
    for (name, deployment) in of_kind("Deployment") {
        let binary = binary(&name);
        let environment = environment(&deployment);
        let port = listen_port(&environment[&binary.listen_variable()]);
        let container = container(&deployment);
        assert_eq!(
            container["ports"],
            serde_json::json!([{"name": "http", "containerPort": port}]),
            "{name}"
        );
        let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
        assert_eq!(annotations["prometheus.io/scrape"], "true", "{name}");
        assert_eq!(
            annotations["prometheus.io/port"],
            port.to_string(),
            "{name}"
        );
        assert_eq!(annotations["prometheus.io/path"], "/metrics", "{name}");
        for (probe, path) in [
            ("readinessProbe", "/readyz"),
            ("livenessProbe", "/healthz"),
            ("startupProbe", "/healthz"),
        ] {
            let get = &container[probe]["httpGet"];
            assert_eq!(get["path"], path, "{name} {probe}");
            assert_eq!(get["port"], "http", "{name} {probe}");
        }
    }
}

#[test]
fn deployments_give_a_stopping_pod_more_time_than_its_drain() {
    // Every service exits within 10 s of SIGTERM (the fault suite checks it).
    const DRAIN_SECONDS: u64 = 10;
    for (name, deployment) in of_kind("Deployment") {
        let grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap_or_else(|| panic!("{name} sets terminationGracePeriodSeconds"));
        let container = container(&deployment);
        let pause = match container["lifecycle"]["preStop"]["exec"]["command"].as_array() {
            Some(command) => {
                assert_eq!(command[0], "sleep", "{name}");
                text(&command[1], "seconds").parse::<u64>().unwrap()
            }
            None => 0,
        };
        assert!(
            grace > pause + DRAIN_SECONDS,
            "{name}: {grace} s for {pause} s of preStop and {DRAIN_SECONDS} s of drain"
        );
        if let Some(timeout) = environment(&deployment).get("COLLECT_SHUTDOWN_TIMEOUT_MS") {
            let timeout: u64 = timeout.parse().unwrap();
            assert!(timeout < DRAIN_SECONDS * 1000, "{name}: {timeout} ms");
        }
    }
    // ingest is behind a Service: it pauses so that endpoints drop it before it stops.
    let ingest = &of_kind("Deployment")["ingest"];
    assert!(container(ingest)["lifecycle"]["preStop"].is_object());
}

/// Bytes of a Kubernetes memory quantity.
fn memory(quantity: &str) -> u64 {
    let units = [("Ki", 1 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30)];
    for (suffix, unit) in units {
        if let Some(number) = quantity.strip_suffix(suffix) {
            return number.parse::<u64>().unwrap() * unit;
        }
    }
    panic!("a memory quantity in Ki, Mi or Gi: {quantity}")
}

/// Millicores of a Kubernetes CPU quantity.
fn cpu(quantity: &str) -> u64 {
    match quantity.strip_suffix('m') {
        Some(millis) => millis.parse().unwrap(),
        None => quantity.parse::<u64>().unwrap() * 1000,
    }
}

#[test]
fn deployments_request_and_limit_cpu_and_memory_and_run_as_the_image_user() {
    for (name, deployment) in of_kind("Deployment") {
        let resources = &container(&deployment)["resources"];
        let quantity = |part: &str, resource: &str| -> String {
            text(
                &resources[part][resource],
                &format!("{name} {part}.{resource}"),
            )
            .to_owned()
        };
        // The services are meant to stay under 64 MB of RSS (the benchmark measures it).
        assert_eq!(memory(&quantity("requests", "memory")), 64 << 20, "{name}");
        assert!(memory(&quantity("limits", "memory")) >= memory(&quantity("requests", "memory")));
        assert!(cpu(&quantity("limits", "cpu")) >= cpu(&quantity("requests", "cpu")));
        let pod = &deployment["spec"]["template"]["spec"]["securityContext"];
        assert_eq!(pod["runAsNonRoot"], true, "{name}");
        assert_eq!(pod["runAsUser"], 10001, "{name}: the Dockerfile's USER");
        let container = &container(&deployment)["securityContext"];
        assert_eq!(container["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(container["readOnlyRootFilesystem"], true, "{name}");
    }
}

#[test]
fn services_select_a_deployment_and_target_its_port() {
    let deployments = of_kind("Deployment");
    let services = of_kind("Service");
    assert_eq!(
        services.keys().collect::<BTreeSet<_>>(),
        deployments.keys().collect::<BTreeSet<_>>()
    );
    for (name, service) in services {
        let deployment = &deployments[&name];
        let labels = deployment["spec"]["template"]["metadata"]["labels"]
            .as_object()
            .unwrap();
        for (label, value) in service["spec"]["selector"].as_object().unwrap() {
            assert_eq!(labels.get(label), Some(value), "{name} selects {label}");
        }
        assert_eq!(
            deployment["spec"]["selector"]["matchLabels"],
            service["spec"]["selector"]
        );
        for port in service["spec"]["ports"].as_array().unwrap() {
            assert_eq!(port["targetPort"], "http", "{name}");
        }
    }
    // ingest's autoscaler and disruption budget point at it.
    let autoscaler = &of_kind("HorizontalPodAutoscaler")["ingest"];
    assert_eq!(autoscaler["spec"]["scaleTargetRef"]["name"], "ingest");
    let budget = &of_kind("PodDisruptionBudget")["ingest"];
    assert_eq!(
        budget["spec"]["selector"]["matchLabels"],
        deployments["ingest"]["spec"]["selector"]["matchLabels"]
    );
}

#[test]
fn keda_scales_each_worker_on_its_own_backlog() {
    let topology = Topology::new(namespace());
    let deployments = of_kind("Deployment");
    let scaled = of_kind("ScaledObject");
    // What each trigger measures: the validator's queue, or the sheet outbox's rows.
    let expected: BTreeMap<String, String> = [
        ("validator".to_owned(), topology.validator_queue()),
        (
            "sheets-sync".to_owned(),
            "SELECT count(*) FROM sheet_outbox".to_owned(),
        ),
    ]
    .into();
    let mut found = BTreeMap::new();
    for (name, object) in &scaled {
        let target = text(&object["spec"]["scaleTargetRef"]["name"], "scaleTargetRef");
        assert!(deployments.contains_key(target), "{name} scales {target}");
        assert!(object["spec"]["minReplicaCount"].as_u64().unwrap() >= 1);
        let triggers = object["spec"]["triggers"].as_array().unwrap();
        assert_eq!(triggers.len(), 1, "{name}");
        let trigger = &triggers[0];
        let metadata = &trigger["metadata"];
        let authentication = text(&trigger["authenticationRef"]["name"], "authenticationRef");
        let authentication = &of_kind("TriggerAuthentication")[authentication];
        let reference = &authentication["spec"]["secretTargetRef"][0];
        let secret = entries("Secret", text(&reference["name"], "secret"));
        let url = &secret[text(&reference["key"], "key")];
        let measured = match text(&trigger["type"], "type") {
            "rabbitmq" => {
                assert_eq!(metadata["protocol"], "amqp");
                assert_eq!(metadata["mode"], "QueueLength");
                text(&metadata["value"], "value").parse::<u32>().unwrap();
                assert_eq!(reference["parameter"], "host");
                assert!(url.starts_with("amqp://"), "{url}");
                text(&metadata["queueName"], "queueName")
            }
            "postgresql" => {
                text(&metadata["targetQueryValue"], "targetQueryValue")
                    .parse::<u32>()
                    .unwrap();
                assert_eq!(reference["parameter"], "connection");
                assert!(url.starts_with("postgres://"), "{url}");
                text(&metadata["query"], "query")
            }
            other => panic!("{name}: a {other} trigger"),
        };
        found.insert(target.to_owned(), measured.to_owned());
    }
    assert_eq!(found, expected);
}

#[test]
fn sheets_sync_replicas_times_their_budget_stay_within_googles_quota() {
    // Google: 60 write requests a minute per user (a service account is one user).
    let budget: u64 = entries("ConfigMap", "collect-sheets-sync")["SHEETS_WRITES_PER_MINUTE"]
        .parse()
        .unwrap();
    let replicas = of_kind("ScaledObject")["sheets-sync"]["spec"]["maxReplicaCount"]
        .as_u64()
        .unwrap();
    assert!(budget * replicas <= 60, "{replicas} x {budget}");
}

#[test]
fn kustomization_applies_every_manifest_but_the_example_secrets() {
    let kustomization = yaml(&format!("{DIRECTORY}/kustomization.yaml"));
    let resources: BTreeSet<String> = kustomization["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| format!("{DIRECTORY}/{}", text(r, "a resource")))
        .collect();
    let files: BTreeSet<String> = files_under(DIRECTORY, &[".yaml"])
        .into_iter()
        .filter(|f| !f.ends_with("kustomization.yaml") && !f.ends_with("secrets.example.yaml"))
        .collect();
    assert_eq!(resources, files);
    assert_eq!(kustomization["images"][0]["name"], "collect");
}

#[test]
fn rabbitmq_runs_as_a_three_node_cluster_with_per_queue_metrics() {
    let cluster = &of_kind("RabbitmqCluster")["collect-rabbitmq"];
    assert_eq!(cluster["spec"]["replicas"], 3);
    let config = text(&cluster["spec"]["rabbitmq"]["additionalConfig"], "config");
    assert!(config.contains("prometheus.return_per_object_metrics = true"));
    assert!(config.contains("cluster_partition_handling = pause_minority"));
    // Deliveries held through a long database outage stay out of N.dead for 30 hours.
    assert!(config.contains("consumer_timeout = 21600000"));
    // The Secret's broker URL names the cluster's Service.
    let url = &entries("Secret", "collect-connections")["AMQP_URL"];
    assert!(url.contains("@collect-rabbitmq.collect.svc:5672/"), "{url}");
}
