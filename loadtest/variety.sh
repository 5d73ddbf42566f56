#!/usr/bin/env bash
# Live queries of every user and every variable against the shared case, in one run: a
# private PostgreSQL with the load-test table (row-level security on `sub`), the release
# server with JWT verification, then the harness against the server four times
# (`--target postrust`), every socket with a token of its own signed by the harness:
#
#   1. `--scenario shared`: every socket the same `sub`, so one live query for all;
#   2. `--scenario per-user`: every socket its own `sub`, so one live query per socket,
#      each refreshed under its own claims when row 1, which all of them see, changes;
#   3. `--scenario distinct --rows 10000`: one live query per row (a variable each) over
#      10,000 rows, every change an UPDATE of all of them, with the docs page's trigger;
#   4. the same after `postrust triggers install` put the project's trigger in its place.
#
# Extra arguments go to every run, e.g.
#
#   loadtest/variety.sh --connections 10000 --workers 2 --sources 4 --writes 20 --interval-ms 1000
#
# Prints the reports, their JSON lines and each run's ratios to the shared one, with its
# deliveries per second at worst: subscriptions / the slowest change's last receipt.
set -euo pipefail
cd "$(dirname "$0")/.."

extra=("$@")
secret=loadtest-secret-of-at-least-32-bytes-0123456789
. loadtest/serve.sh
serve POSTRUST_JWT_SECRET="$secret"

results=()
# run LABEL HARNESS-ARGS…: one run against the server; its JSON line joins the results.
run() {
  local label=$1
  shift
  echo "== $label" >&2
  local out
  out=$(./target/release/postrust-loadtest fanout --target postrust --jwt-secret "$secret" \
    --url "ws://127.0.0.1:$port/graphql" --database-url "$POSTRUST_DATABASE_URL" \
    --server-pid "$server" "$@")
  echo "$out"
  results+=("$label=$(grep '^{"label"' <<<"$out" | tail -n 1)")
}

run shared --scenario shared "${extra[@]}"
run per-user --scenario per-user "${extra[@]}"
# Per variable: a live query per row over 10,000 rows, every change an UPDATE of all of
# them; first with the docs page's trigger (no old row), then with the project's.
psql -X -q "$POSTRUST_DATABASE_URL" \
  -c "INSERT INTO loadtest_values (id) SELECT generate_series(1001, 10000)"
run per-variable-docs-trigger --scenario distinct --rows 10000 "${extra[@]}"
./target/release/postrust triggers install loadtest_values >&2
run per-variable-project-trigger --scenario distinct --rows 10000 "${extra[@]}"

python3 - "${results[@]}" <<'PY'
import json, sys
runs = dict(a.split("=", 1) for a in sys.argv[1:])
runs = {label: json.loads(line) for label, line in runs.items()}
shared = runs["shared"]
# A change reaches every subscription within the run's last receipt at worst.
rate = lambda r: r["subscriptions"] / max(r["max_ns"] / 1e9, 1e-9)
for label, r in runs.items():
    print(json.dumps({
        "run": label,
        "over_shared_p50": round(r["p50_ns"] / max(shared["p50_ns"], 1), 3),
        "over_shared_p99": round(r["p99_ns"] / max(shared["p99_ns"], 1), 3),
        "over_shared_max": round(r["max_ns"] / max(shared["max_ns"], 1), 3),
        "deliveries_per_s_at_worst": round(rate(r)),
        "lost": r["lost"],
        "errors": r["errors"],
    }))
PY
