use std::collections::{BTreeMap, BTreeSet};

use collect_shared::amqp::Topology;
use serde_json::Value;

use crate::support::{exported_metrics, read, text, yaml};

const ALERTS: &str = "deploy/prometheus/alerts.yml";

/// RabbitMQ's own metrics the rules may read: the `rabbitmq_prometheus` plugin's per-queue
/// gauges (with `prometheus.return_per_object_metrics`) and its alarm gauges.
const RABBITMQ_METRICS: &[&str] = &[
    "rabbitmq_queue_messages",
    "rabbitmq_queue_messages_ready",
    "rabbitmq_queue_messages_unacked",
    "rabbitmq_queue_consumers",
    "rabbitmq_alarms_memory_used_watermark",
    "rabbitmq_alarms_free_disk_space_watermark",
];

/// PromQL's functions, aggregations and keywords (what is not a metric name).
const PROMQL_WORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "rate",
    "irate",
    "increase",
    "delta",
    "deriv",
    "histogram_quantile",
    "absent",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
];

fn rules() -> Vec<Value> {
    yaml(ALERTS)["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|group| group["rules"].as_array().unwrap().clone())
        .collect()
}

/// A metric read by an expression: its name and the label names its matchers use, with the
/// values they compare against.
#[derive(Debug)]
struct Selector {
    metric: String,
    matchers: Vec<(String, String)>,
}

/// The metric selectors of a PromQL expression: names outside of label matchers, ranges,
/// strings and grouping lists, that are not PromQL's own words or functions.
fn selectors(expression: &str) -> Vec<Selector> {
    let chars: Vec<char> = expression.chars().collect();
    let mut selectors: Vec<Selector> = Vec::new();
    let mut i = 0;
    let identifier = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    while i < chars.len() {
        let c = chars[i];
        if c == '[' {
            while chars[i] != ']' {
                i += 1;
            }
            i += 1;
        } else if c == '{' {
            let start = i + 1;
            while chars[i] != '}' {
                i += 1;
            }
            let body: String = chars[start..i].iter().collect();
            let matchers = matchers(&body);
            selectors
                .last_mut()
                .unwrap_or_else(|| panic!("label matchers without a metric in {expression}"))
                .matchers
                .extend(matchers);
            i += 1;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && identifier(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let called = chars.get(next) == Some(&'(');
            if [
                "by",
                "without",
                "on",
                "ignoring",
                "group_left",
                "group_right",
            ]
            .contains(&word.as_str())
                && called
            {
                while chars[i] != ')' {
                    i += 1;
                }
                i += 1;
            } else if !called && !PROMQL_WORDS.contains(&word.as_str()) {
                selectors.push(Selector {
                    metric: word,
                    matchers: Vec::new(),
                });
            }
        } else if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    selectors
}

/// `label op "value"` pairs of a matcher list.
fn matchers(body: &str) -> Vec<(String, String)> {
    body.split(',')
        .map(str::trim)
        .filter(|matcher| !matcher.is_empty())
        .map(|matcher| {
            let split = matcher
                .find(['=', '!'])
                .unwrap_or_else(|| panic!("a matcher: {matcher}"));
            let label = matcher[..split].trim().to_owned();
            let value = matcher[split..]
                .trim_start_matches(['=', '!', '~'])
                .trim()
                .trim_matches('"')
                .to_owned();
            (label, value)
        })
        .collect()
}

#[test]
fn the_selector_parser_finds_metrics_labels_and_nothing_else() {
    let found = selectors(
        r#"histogram_quantile(0.99, sum by (le) (rate(a_seconds_bucket{exchange="x", le!="1"}[5m]))) > 1e3
           and on (job) b_total offset 5m or max(c{queue=~"q1|q2"}[10m:1m])"#,
    );
    let names: Vec<&str> = found.iter().map(|s| s.metric.as_str()).collect();
    assert_eq!(names, ["a_seconds_bucket", "b_total", "c"]);
    assert_eq!(
        found[0].matchers,
        [("exchange".into(), "x".into()), ("le".into(), "1".into())]
    );
    assert_eq!(found[2].matchers, [("queue".into(), "q1|q2".into())]);
}

/// Every metric an alert reads is one the code exports (a histogram's `_bucket`, `_sum` and
/// `_count` series included; only `_seconds` histograms have buckets, see telemetry.rs) or
/// one of RabbitMQ's, and every label it matches on is one the code sets.
#[test]
fn alerts_read_only_metrics_that_exist_by_labels_they_have() {
    let exported = exported_metrics();
    let mut read_metrics = BTreeSet::new();
    for rule in rules() {
        let name = text(&rule["alert"], "alert");
        let expression = text(&rule["expr"], "expr");
        for selector in selectors(expression) {
            read_metrics.insert(selector.metric.clone());
            if RABBITMQ_METRICS.contains(&selector.metric.as_str()) {
                continue;
            }
            let (base, series) = [("_bucket", "bucket"), ("_sum", "sum"), ("_count", "count")]
                .iter()
                .find_map(|(suffix, series)| {
                    let base = selector.metric.strip_suffix(suffix)?;
                    (exported.get(base).map(|(kind, _)| kind.as_str()) == Some("histogram"))
                        .then_some((base, *series))
                })
                .unwrap_or((selector.metric.as_str(), "value"));
            let (kind, labels) = exported.get(base).unwrap_or_else(|| {
                panic!(
                    "{name} reads {}, which nothing exports; the code exports {:?}",
                    selector.metric,
                    exported.keys()
                )
            });
            if series == "bucket" {
                assert!(base.ends_with("_seconds"), "{name}: {base} has no buckets");
            }
            if series == "value" {
                assert_ne!(kind, "histogram", "{name}: {base} is a histogram");
            }
            for (label, _) in &selector.matchers {
                assert!(
                    labels.contains(label) || (series == "bucket" && label == "le"),
                    "{name}: {base} has no label {label} (it has {labels:?})"
                );
            }
        }
    }
    assert!(read_metrics.len() >= 10, "{read_metrics:?}");
}

/// Queue names in the rules are the topology's (namespace `collect`), and the dependency
/// names are those `/readyz` checks.
#[test]
fn alerts_name_real_queues_and_dependencies() {
    let topology = Topology::new("collect".parse().unwrap());
    let queues: BTreeSet<String> = [
        topology.validator_queue(),
        topology.webhooks_queue(),
        topology.dead_queue(),
    ]
    .into();
    let dependencies: BTreeSet<&str> = ["broker", "database", "sheets"].into();
    let mut named = BTreeSet::new();
    for rule in rules() {
        for selector in selectors(text(&rule["expr"], "expr")) {
            for (label, value) in &selector.matchers {
                let names = value.split('|');
                match label.as_str() {
                    "queue" => names.for_each(|queue| {
                        assert!(queues.contains(queue), "{}: queue {queue}", rule["alert"]);
                        named.insert(queue.to_owned());
                    }),
                    "dependency" => names.for_each(|dependency| {
                        assert!(dependencies.contains(dependency), "{dependency}");
                    }),
                    _ => {}
                }
            }
        }
    }
    assert_eq!(named, queues, "every queue is watched");
}

#[test]
fn alerts_cover_backlogs_blocked_sheets_dead_letters_errors_and_confirm_latency() {
    let rules = rules();
    let alerts: BTreeMap<&str, &Value> = rules
        .iter()
        .map(|rule| (text(&rule["alert"], "alert"), rule))
        .collect();
    assert_eq!(alerts.len(), rules.len(), "alert names are unique");
    for (name, metric) in [
        ("CollectValidatorBacklogGrowing", "rabbitmq_queue_messages"),
        (
            "CollectSheetsBlocked",
            "collect_sheets_oldest_waiting_seconds",
        ),
        ("CollectDeadLetters", "rabbitmq_queue_messages"),
        ("CollectHttpServerErrors", "collect_http_requests_total"),
        ("CollectSheetsApiErrors", "collect_sheets_api_calls_total"),
        (
            "CollectPublishConfirmSlow",
            "collect_publish_confirm_seconds_bucket",
        ),
        ("CollectPublishFailures", "collect_publish_failures_total"),
    ] {
        let rule = alerts
            .get(name)
            .unwrap_or_else(|| panic!("no alert {name}"));
        let expression = text(&rule["expr"], "expr");
        assert!(
            selectors(expression).iter().any(|s| s.metric == metric),
            "{name} reads {metric}: {expression}"
        );
    }
    for (name, rule) in alerts {
        let severity = text(&rule["labels"]["severity"], "severity");
        assert!(["warning", "critical"].contains(&severity), "{name}");
        assert!(rule["annotations"]["summary"].is_string(), "{name}");
        assert!(rule["annotations"]["description"].is_string(), "{name}");
    }
}

/// The README's metrics table lists exactly what the code exports, with the same kind.
#[test]
fn the_readme_metrics_table_lists_every_exported_metric() {
    let readme = read("README.md");
    let mut listed = BTreeMap::new();
    for line in readme.lines() {
        let Some(row) = line.strip_prefix("| `collect_") else {
            continue;
        };
        let name = format!("collect_{}", row.split(['`', '{']).next().unwrap());
        let kind = row.split('|').nth(1).unwrap().trim().to_owned();
        listed.insert(name, kind);
    }
    let exported: BTreeMap<String, String> = exported_metrics()
        .into_iter()
        .map(|(name, (kind, _))| (name, kind))
        .collect();
    assert_eq!(listed, exported);
}
