#!/usr/bin/env bash
# Makes sure the local RabbitMQ, PostgreSQL and MariaDB answer, starting them if they are down
# (the tests run on both database engines).
# Used by .ci/run and scripts/run-local.sh; safe to run any time.
set -euo pipefail

wait_for() { # description, seconds, command...
  local what=$1 seconds=$2; shift 2
  for _ in $(seq "$seconds"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  echo "error: $what did not come up within ${seconds}s" >&2
  return 1
}

postgres_up() { pg_isready -q -h 127.0.0.1 -p 5432; }
# `ping` succeeds once the server answers, even if it refuses the user.
mariadb_up() { "$(command -v mariadb-admin || command -v mysqladmin)" --protocol=tcp -h 127.0.0.1 -P 3306 -u root --connect-timeout=2 ping >/dev/null 2>&1; }
rabbitmq_up() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null && rabbitmq-diagnostics -q check_running >/dev/null 2>&1; }

if ! postgres_up; then
  echo "PostgreSQL is not answering; starting it"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start || true
fi
wait_for "PostgreSQL on 127.0.0.1:5432" 60 postgres_up

if ! rabbitmq_up; then
  echo "RabbitMQ is not answering; starting it"
  rabbitmq-server -detached || true
fi
wait_for "RabbitMQ on 127.0.0.1:5672" 120 rabbitmq_up

if ! mariadb_up; then
  echo "MariaDB is not answering; starting it"
  # What Debian's init script does, without its maintenance account: the socket directory
  # (gone after a reboot), then the server under its safe wrapper, in a session of its own.
  install -d -m 755 -o mysql -g root /run/mysqld || true
  (setsid "$(command -v mariadbd-safe || command -v mysqld_safe)" >/dev/null 2>&1 &) || true
fi
wait_for "MariaDB on 127.0.0.1:3306" 60 mariadb_up
echo "RabbitMQ, PostgreSQL and MariaDB are up"
