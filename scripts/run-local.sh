#!/usr/bin/env bash
# Starts the whole Collect pipeline on this machine, against the local RabbitMQ and PostgreSQL:
# ingest on :8080, validator on :8081, sheets-sync on :8082, and the Sheets emulator on :8090
# (unless GOOGLE_APPLICATION_CREDENTIALS names a real service-account key). Ctrl-C stops
# everything.
# Every variable of the README's configuration table is honoured; logs go to target/local/.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-services.sh

profile=${COLLECT_PROFILE:-debug}
if [ "$profile" = release ]; then cargo build --release --bins; else cargo build --bins; fi

export COLLECT_API_KEYS=${COLLECT_API_KEYS:-dev-key}
export INGEST_LISTEN=${INGEST_LISTEN:-127.0.0.1:8080}
export VALIDATOR_LISTEN=${VALIDATOR_LISTEN:-127.0.0.1:8081}
export SHEETS_SYNC_LISTEN=${SHEETS_SYNC_LISTEN:-127.0.0.1:8082}
logs=target/local
mkdir -p "$logs"
emulator=
if [ -z "${GOOGLE_APPLICATION_CREDENTIALS:-}" ]; then
  emulator=yes
  export SHEETS_EMULATOR_LISTEN=${SHEETS_EMULATOR_LISTEN:-127.0.0.1:8090}
  export SHEETS_EMULATOR_KEY_FILE=${SHEETS_EMULATOR_KEY_FILE:-$PWD/$logs/emulator-service-account.json}
  export SHEETS_DEFAULT_SPREADSHEET_ID=${SHEETS_DEFAULT_SPREADSHEET_ID:-local-spreadsheet}
  export SHEETS_EMULATOR_SPREADSHEETS=${SHEETS_EMULATOR_SPREADSHEETS:-$SHEETS_DEFAULT_SPREADSHEET_ID}
  export SHEETS_API_URL=${SHEETS_API_URL:-http://$SHEETS_EMULATOR_LISTEN/}
fi

pids=()
stop() {
  trap - EXIT INT TERM
  echo; echo "stopping..."
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
}
trap stop EXIT
trap 'stop; exit 0' INT TERM

if [ -n "$emulator" ]; then
  "target/$profile/sheets-emulator" >"$logs/sheets-emulator.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 30); do
    if curl -fsS "http://$SHEETS_EMULATOR_LISTEN/healthz" >/dev/null 2>&1 && [ -s "$SHEETS_EMULATOR_KEY_FILE" ]; then break; fi
    sleep 1
  done
  export GOOGLE_APPLICATION_CREDENTIALS=$SHEETS_EMULATOR_KEY_FILE
fi

for service in ingest validator sheets-sync; do
  "target/$profile/$service" >"$logs/$service.log" 2>&1 &
  pids+=($!)
done

for addr in "$INGEST_LISTEN" "$VALIDATOR_LISTEN" "$SHEETS_SYNC_LISTEN"; do
  for _ in $(seq 60); do
    if curl -fsS "http://$addr/readyz" >/dev/null 2>&1; then break; fi
    # One `kill -0` per process: given several, it succeeds if any one is alive.
    for pid in "${pids[@]}"; do
      if ! kill -0 "$pid" 2>/dev/null; then
        echo "a service exited during start; see $logs/*.log" >&2; tail -n 5 "$logs"/*.log >&2; exit 1
      fi
    done
    sleep 1
  done
  curl -fsS "http://$addr/readyz" >/dev/null || { echo "http://$addr/readyz is not ready; see $logs/" >&2; exit 1; }
done

key=${COLLECT_API_KEYS%%,*}
cat <<MSG
Collect is running (logs in $logs/):
  ingest       http://$INGEST_LISTEN   (API key: $key)
  validator    http://$VALIDATOR_LISTEN/readyz
  sheets-sync  http://$SHEETS_SYNC_LISTEN/readyz
MSG
if [ -n "$emulator" ]; then cat <<MSG
  emulator     http://$SHEETS_EMULATOR_LISTEN (spreadsheet $SHEETS_DEFAULT_SPREADSHEET_ID; a tab as CSV:
               curl http://$SHEETS_EMULATOR_LISTEN/emulator/spreadsheets/$SHEETS_DEFAULT_SPREADSHEET_ID/tabs/household-finance.csv)
MSG
fi
cat <<MSG
Try:
  curl -i http://$INGEST_LISTEN/v1/forms/household-finance/responses \\
    -H 'Authorization: Bearer $key' -H 'Content-Type: application/json' \\
    -d '{"response_id": "r-1", "collector": {"user_id": "u-17"}, "answers": {"monthly_income": 52000}}'
Press Ctrl-C to stop.
MSG

# Stop everything as soon as any service exits.
wait -n "${pids[@]}" || true
echo "a service exited; see $logs/" >&2
exit 1
