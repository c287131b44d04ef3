#!/usr/bin/env bash
# The benchmark: builds every binary in release, makes sure RabbitMQ, PostgreSQL and MariaDB are
# up, and runs collect-bench, which prints the figures and the ratios against the targets. The
# end-to-end part runs on both engines, PostgreSQL then MySQL/MariaDB (`--engine postgres` for
# one; the ingest and load parts use the first). It installs wrk if it is missing.
# Arguments go to collect-bench (see `target/release/collect-bench --help`), e.g.
#   scripts/bench.sh --responses 20000 --seconds 10
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-services.sh
# The load part drives ingest with wrk (Debian's package).
if ! command -v wrk >/dev/null; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get install -y wrk || { $sudo apt-get update && $sudo apt-get install -y wrk; }
fi
cargo build --release --bins
exec target/release/collect-bench --engine postgres,mysql "$@"
