#!/usr/bin/env bash
# The benchmark: builds every binary in release, makes sure RabbitMQ, PostgreSQL and MariaDB are
# up, and runs collect-bench, which prints the figures and the ratios against the targets. The
# end-to-end part runs on both engines, PostgreSQL then MySQL/MariaDB (`--engine postgres` for
# one; the ingest part uses the first).
# Arguments go to collect-bench (see `target/release/collect-bench --help`), e.g.
#   scripts/bench.sh --responses 20000 --seconds 10
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-services.sh
cargo build --release --bins
exec target/release/collect-bench --engine postgres,mysql "$@"
