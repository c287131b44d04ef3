#!/usr/bin/env bash
# The benchmark: builds every binary in release, makes sure RabbitMQ and PostgreSQL are up, and
# runs collect-bench, which prints the figures and the ratios against the targets.
# Arguments go to collect-bench (see `target/release/collect-bench --help`), e.g.
#   scripts/bench.sh --responses 20000 --seconds 10
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-services.sh
cargo build --release --bins
exec target/release/collect-bench "$@"
