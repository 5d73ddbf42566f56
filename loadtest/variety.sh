#!/usr/bin/env bash
# Shared against per-user live queries, in one run: a private PostgreSQL with the load-test
# table (row-level security on `sub`), the release server with JWT verification, then the
# harness against the server twice (`--target postrust`), every socket with a token of its
# own signed by the harness:
#
#   1. `--scenario shared`: every socket the same `sub`, so one live query for all;
#   2. `--scenario per-user`: every socket its own `sub`, so one live query per socket,
#      each refreshed under its own claims when row 1, which all of them see, changes.
#
# Extra arguments go to both runs, e.g.
#
#   loadtest/variety.sh --connections 10000 --workers 2 --sources 4 --writes 20 --interval-ms 1000
#
# Prints both reports, their JSON lines and the per-user run's ratios to the shared one, with
# each run's deliveries per second at worst: subscriptions / the slowest change's last
# receipt.
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

secret=loadtest-secret-of-at-least-32-bytes-0123456789
port=$(python3 -c 'import random; print(random.randint(20000, 32000))')
POSTRUST_LISTEN="127.0.0.1:$port" POSTRUST_LOG=warn POSTRUST_JWT_SECRET=$secret \
  POSTRUST_SUBSCRIBE_RATE=0 POSTRUST_MAX_SUBSCRIPTIONS_PER_CONNECTION=0 \
  ./target/release/postrust &
server=$!
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
  sleep 0.1
done

results=()
for scenario in shared per-user; do
  echo "== $scenario" >&2
  out=$(./target/release/postrust-loadtest fanout --target postrust --scenario "$scenario" \
    --jwt-secret "$secret" --url "ws://127.0.0.1:$port/graphql" \
    --database-url "$POSTRUST_DATABASE_URL" --server-pid "$server" "$@")
  echo "$out"
  results+=("$(grep '^{"label"' <<<"$out" | tail -n 1)")
done

python3 - "${results[@]}" <<'PY'
import json, sys
shared, per_user = (json.loads(a) for a in sys.argv[1:3])
# A change reaches every subscription within the run's last receipt at worst.
rate = lambda r: r["subscriptions"] / max(r["max_ns"] / 1e9, 1e-9)
print(json.dumps({
    "per_user_over_shared_p50": round(per_user["p50_ns"] / max(shared["p50_ns"], 1), 3),
    "per_user_over_shared_p99": round(per_user["p99_ns"] / max(shared["p99_ns"], 1), 3),
    "per_user_over_shared_max": round(per_user["max_ns"] / max(shared["max_ns"], 1), 3),
    "shared_deliveries_per_s": round(rate(shared)),
    "per_user_deliveries_per_s": round(rate(per_user)),
}))
PY
