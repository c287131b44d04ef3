//! Reading the repository's files, and what each service binary accepts (from its clap
//! configuration, the same definition that parses its environment).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use serde_json::Value;

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn read(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// One YAML document.
pub fn yaml(relative: &str) -> Value {
    serde_saphyr::from_str(&read(relative)).unwrap_or_else(|error| panic!("{relative}: {error}"))
}

/// Every document of a YAML stream (`---`-separated).
pub fn yaml_documents(relative: &str) -> Vec<Value> {
    serde_saphyr::from_multiple(&read(relative))
        .unwrap_or_else(|error| panic!("{relative}: {error}"))
}

pub fn json(relative: &str) -> Value {
    serde_json::from_str(&read(relative)).unwrap_or_else(|error| panic!("{relative}: {error}"))
}

/// The files under `directory` (relative to the root) whose names end with one of `endings`,
/// relative to the root, sorted.
pub fn files_under(directory: &str, endings: &[&str]) -> Vec<String> {
    fn walk(path: &Path, into: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(path).unwrap().map(Result::unwrap) {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, into);
            } else {
                into.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(&root().join(directory), &mut found);
    let root = root();
    let mut files: Vec<String> = found
        .iter()
        .map(|path| {
            path.strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|path| endings.iter().any(|ending| path.ends_with(ending)))
        .collect();
    files.sort();
    files
}

/// `value[key]` as text, or a panic naming `what`.
pub fn text<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not text: {value}"))
}

/// A service binary of the workspace, with its configuration.
pub struct Binary {
    pub name: &'static str,
    command: clap::Command,
}

/// The four binaries that run as services: the image ships them, compose and Kubernetes run
/// them.
pub fn binaries() -> Vec<Binary> {
    vec![
        Binary {
            name: "ingest",
            command: ingest::IngestConfig::command(),
        },
        Binary {
            name: "validator",
            command: validator::ValidatorConfig::command(),
        },
        Binary {
            name: "sheets-sync",
            command: sheets_sync::SheetsSyncConfig::command(),
        },
        Binary {
            name: "sheets-emulator",
            command: sheets_emulator::EmulatorConfig::command(),
        },
    ]
}

pub fn binary(name: &str) -> Binary {
    binaries()
        .into_iter()
        .find(|binary| binary.name == name)
        .unwrap_or_else(|| panic!("no service binary {name:?}"))
}

/// Read by every binary besides its flags: the log filter of `tracing_subscriber`'s
/// `EnvFilter` (`shared/src/telemetry.rs`).
pub const ALSO_READ_BY_EVERY_BINARY: &[&str] = &["RUST_LOG"];

impl Binary {
    /// Every environment variable the binary reads.
    pub fn accepted_variables(&self) -> BTreeSet<String> {
        self.command
            .get_arguments()
            .filter_map(|arg| arg.get_env())
            .map(|name| name.to_string_lossy().into_owned())
            .chain(
                ALSO_READ_BY_EVERY_BINARY
                    .iter()
                    .map(|name| (*name).to_owned()),
            )
            .collect()
    }

    /// The variable of the address it listens on (`INGEST_LISTEN`, ...).
    pub fn listen_variable(&self) -> String {
        let listen = self
            .command
            .get_arguments()
            .find(|arg| arg.get_id() == "listen")
            .unwrap_or_else(|| panic!("{} has no --listen", self.name));
        listen
            .get_env()
            .unwrap_or_else(|| panic!("{}'s --listen has no variable", self.name))
            .to_string_lossy()
            .into_owned()
    }

    /// Parses `environment` as the binary would (each variable given as its flag, so that the
    /// test does not change its own environment): unknown variables and values the binary
    /// would refuse are errors.
    pub fn parse(&self, environment: &BTreeMap<String, String>) -> Result<(), String> {
        let mut args = vec![self.name.to_owned()];
        for (name, value) in environment {
            if ALSO_READ_BY_EVERY_BINARY.contains(&name.as_str()) {
                continue;
            }
            let arg = self
                .command
                .get_arguments()
                .find(|arg| arg.get_env().is_some_and(|env| env == name.as_str()))
                .ok_or_else(|| format!("{} does not read {name}", self.name))?;
            let long = arg
                .get_long()
                .ok_or_else(|| format!("{name} has no flag"))?;
            args.push(format!("--{long}={value}"));
        }
        self.command
            .clone()
            .try_get_matches_from(&args)
            .map(|_| ())
            .map_err(|error| format!("{} refuses {args:?}: {error}", self.name))
    }
}

/// The port of a `host:port` listen address, checking that it listens on every interface (a
/// container's loopback is unreachable from outside it).
pub fn listen_port(address: &str) -> u16 {
    let (host, port) = address
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{address} is not host:port"));
    assert_eq!(host, "0.0.0.0", "{address} must listen on every interface");
    port.parse().unwrap()
}

/// The metrics the code exports: name -> (kind, label names), from every
/// `metrics::counter!` / `histogram!` / `gauge!` in the workspace's sources.
pub fn exported_metrics() -> BTreeMap<String, (String, BTreeSet<String>)> {
    let mut metrics: BTreeMap<String, (String, BTreeSet<String>)> = BTreeMap::new();
    let sources: Vec<String> = [
        "shared/src",
        "ingest/src",
        "validator/src",
        "sheets-sync/src",
    ]
    .iter()
    .flat_map(|directory| files_under(directory, &[".rs"]))
    .collect();
    assert!(sources.len() > 20, "{sources:?}");
    for source in sources {
        let text = read(&source);
        for kind in ["counter", "histogram", "gauge"] {
            let macro_call = format!("{kind}!(");
            for (at, _) in text.match_indices(&macro_call) {
                let call = macro_arguments(&text[at + macro_call.len()..]);
                let name = call
                    .trim_start()
                    .strip_prefix('"')
                    .and_then(|rest| rest.split('"').next())
                    .unwrap_or_else(|| panic!("{source}: a metric named by a non-literal: {call}"));
                let pieces: Vec<&str> = call.split("=>").collect();
                let labels: BTreeSet<String> = pieces[..pieces.len() - 1]
                    .iter()
                    .map(|piece| {
                        let piece = piece.trim_end().strip_suffix('"').unwrap_or_else(|| {
                            panic!("{source}: a label of {name} that is not a literal: {call}")
                        });
                        piece[piece.rfind('"').unwrap() + 1..].to_owned()
                    })
                    .collect();
                let entry = metrics
                    .entry(name.to_owned())
                    .or_insert_with(|| (kind.to_owned(), BTreeSet::new()));
                assert_eq!(entry.0, kind, "{name} is used as two kinds");
                entry.1.extend(labels);
            }
        }
    }
    metrics
}

/// The text between a macro's `(` (already consumed) and its matching `)`.
fn macro_arguments(text: &str) -> &str {
    let mut depth = 1;
    let mut in_string = false;
    for (index, c) in text.char_indices() {
        match c {
            '"' => in_string = !in_string,
            '(' if !in_string => depth += 1,
            ')' if !in_string => {
                depth -= 1;
                if depth == 0 {
                    return &text[..index];
                }
            }
            _ => {}
        }
    }
    panic!("an unclosed macro call: {text}")
}
