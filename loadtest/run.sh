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

. loadtest/serve.sh
serve

./target/release/postrust-loadtest fanout --target compare \
  --url "ws://127.0.0.1:$port/graphql" --database-url "$POSTRUST_DATABASE_URL" \
  --server-pid "$server" "$@"
