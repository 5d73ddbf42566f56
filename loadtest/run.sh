#!/usr/bin/env bash
# One fan-out comparison, start to finish: a private PostgreSQL with the load-test table,
# the release server on it, then the harness against the floor and against the server in
# the same run (`--target compare`). Extra arguments go to the harness, e.g.
#
#   loadtest/run.sh --connections 10000 --subs-per-conn 1 --writes 20 --interval-ms 200
#   loadtest/run.sh --connections 10000 --writes 40 --interval-ms 250 --churn 3000
#   loadtest/run.sh --connections 1000 --rate 100 --duration-secs 30
#
# Prints the harness's tables and JSON lines (floor, postrust, ratios).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked --bins >&2
eval "$(scripts/pg-private start)"
server=
cleanup() {
  [ -n "$server" ] && kill -TERM "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  scripts/pg-private stop "$POSTRUST_PG_DIR"
}
trap cleanup EXIT
export POSTRUST_DATABASE_URL
PGOPTIONS=--client-min-messages=warning \
  psql -X -q -v ON_ERROR_STOP=1 "$POSTRUST_DATABASE_URL" -f loadtest/schema.sql

port=$(python3 -c 'import random; print(random.randint(20000, 32000))')
POSTRUST_LISTEN="127.0.0.1:$port" POSTRUST_LOG=warn \
  POSTRUST_SUBSCRIBE_RATE=0 POSTRUST_MAX_SUBSCRIPTIONS_PER_CONNECTION=0 \
  ./target/release/postrust &
server=$!
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
  sleep 0.1
done

./target/release/postrust-loadtest fanout --target compare \
  --url "ws://127.0.0.1:$port/graphql" --database-url "$POSTRUST_DATABASE_URL" \
  --server-pid "$server" "$@"
