use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;

use crate::support::{binaries, read, root};

/// Binaries of the workspace that are tools for developers, not services: not in the image.
const NOT_SHIPPED: &[(&str, &str)] = &[(
    "collect-bench",
    "the benchmark: starts its own services on a developer's machine",
)];

/// Every `[[bin]]` target of the workspace's packages, from `cargo metadata`.
fn workspace_binaries() -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--offline",
            "--format-version",
            "1",
        ])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).unwrap();
    metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|package| package["targets"].as_array().unwrap())
        .filter(|target| target["kind"].as_array().unwrap().contains(&"bin".into()))
        .map(|target| target["name"].as_str().unwrap().to_owned())
        .collect()
}

/// The Dockerfile's instructions, continuation lines joined, comments dropped.
fn instructions() -> Vec<String> {
    let text = read("Dockerfile");
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(start) => {
                current.push_str(start);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                instructions.push(std::mem::take(&mut current));
            }
        }
    }
    instructions
}

#[test]
fn the_image_builds_and_ships_every_service_binary() {
    let all = workspace_binaries();
    let services: BTreeSet<String> = binaries().iter().map(|b| b.name.to_owned()).collect();
    let tools: BTreeSet<String> = NOT_SHIPPED.iter().map(|(n, _)| (*n).to_owned()).collect();
    assert!(all.is_superset(&services), "{all:?}");
    assert_eq!(
        all.difference(&tools).cloned().collect::<BTreeSet<_>>(),
        services,
        "a binary of the workspace is neither a service in the image nor a listed tool"
    );

    let instructions = instructions();
    let build = instructions
        .iter()
        .find(|i| i.starts_with("RUN") && i.contains("cargo build"))
        .expect("a RUN with cargo build");
    assert!(
        build.contains("--release") && build.contains("--locked"),
        "{build}"
    );
    let words: Vec<&str> = build.split_whitespace().collect();
    let built: BTreeSet<String> = words
        .windows(2)
        .filter(|pair| pair[0] == "--bin")
        .map(|pair| pair[1].to_owned())
        .collect();
    assert_eq!(built, services, "--bin of {build}");
    let copied: BTreeSet<String> = words
        .iter()
        .filter_map(|word| word.strip_prefix("target/release/"))
        .map(str::to_owned)
        .collect();
    assert_eq!(copied, services, "copied out of the build stage: {build}");
    let shipped: BTreeSet<String> = instructions
        .iter()
        .filter(|i| i.starts_with("COPY --from=build"))
        .flat_map(|i| {
            i.split_whitespace()
                .skip(2)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter_map(|source| source.strip_prefix("/out/").map(str::to_owned))
        .collect();
    assert_eq!(
        shipped, services,
        "the binaries copied into the runtime image"
    );
}

#[test]
fn the_image_is_multi_stage_small_and_runs_as_a_non_root_user() {
    let instructions = instructions();
    let stages: Vec<&String> = instructions
        .iter()
        .filter(|i| i.starts_with("FROM"))
        .collect();
    assert_eq!(stages.len(), 2, "{stages:?}");
    assert!(stages[0].starts_with("FROM rust:") && stages[0].ends_with("AS build"));
    assert_eq!(stages[1], "FROM debian:bookworm-slim AS runtime");
    let runtime: Vec<&String> = instructions
        .iter()
        .skip_while(|i| !i.starts_with("FROM debian"))
        .collect();
    let user = runtime
        .iter()
        .rev()
        .find(|i| i.starts_with("USER"))
        .expect("the runtime stage sets a USER");
    assert_eq!(user.as_str(), "USER 10001:10001");
    assert!(
        runtime
            .iter()
            .any(|i| i.contains("useradd") && i.contains("--uid 10001")),
        "the user exists"
    );
    // The emulator writes its key under /var/lib/collect: the user must own it.
    assert!(
        runtime
            .iter()
            .any(|i| i.contains("chown 10001:10001 /var/lib/collect"))
    );
    // The build context leaves out the build output.
    let ignored = read(".dockerignore");
    assert!(ignored.lines().any(|line| line.trim() == "target/"));
}
