#!/usr/bin/env bash
# What TLS costs a round trip to PostgreSQL: our client and pgbench (libpq) on one
# connection, each with sslmode=disable and with sslmode=require, against one private
# cluster with ssl = on and a throwaway self-signed certificate. The four alternate round by
# round, so load from other processes hits them alike; the median of each is printed.
#
#   bench/pg_tls.sh [SECONDS] [ROUNDS]   default 3 seconds per measurement, 3 rounds
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-3}
rounds=${2:-3}

eval "$(scripts/pg-private start)"
trap 'scripts/pg-private stop "$POSTRUST_PG_DIR"' EXIT
data=$POSTRUST_PG_DIR/data
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=localhost -keyout "$data/server.key" -out "$data/server.crt" 2>/dev/null
if [ "$(id -u)" -eq 0 ]; then
  chown postgres: "$data/server.key" "$data/server.crt"
fi
chmod 600 "$data/server.key"
psql -X -q -v ON_ERROR_STOP=1 "$POSTRUST_DATABASE_URL" \
  -c "ALTER SYSTEM SET ssl = on" -c "SELECT pg_reload_conf()" >/dev/null

# Build first (serialized with other builds on this machine), then measure without cargo
# competing for the cores.
flock /tmp/postrust-cargo.lock cargo bench --bench pg_roundtrip --no-run >&2

tps() {
  pgbench -n -c 1 -j 1 -M prepared -T "$seconds" -f bench/roundtrip.sql "$1" 2>/dev/null \
    | sed -n 's/^tps = \([0-9.]*\) .*/\1/p'
}

declare -A samples
for round in $(seq "$rounds"); do
  echo "round $round of $rounds" >&2
  for mode in disable require; do
    url="$POSTRUST_DATABASE_URL?sslmode=$mode"
    ours=$(POSTRUST_DATABASE_URL=$url POSTRUST_BENCH_SECONDS=$seconds \
      cargo bench --bench pg_roundtrip 2>/dev/null)
    for name in sequential pipelined_tx query_as; do
      samples[$name.$mode]+="$(sed -n "s/^$name=//p" <<<"$ours") "
    done
    samples[pgbench.$mode]+="$(tps "$url") "
  done
done

median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
echo "statements per second, median of $rounds rounds of ${seconds}s: sslmode=disable, require, ratio"
for name in sequential pipelined_tx query_as pgbench; do
  plain=$(median "${samples[$name.disable]}")
  tls=$(median "${samples[$name.require]}")
  printf '%-14s %10.0f %10.0f %6.2f   [%s] [%s]\n' "$name" "$plain" "$tls" \
    "$(awk -v a="$tls" -v b="$plain" 'BEGIN { print a / b }')" \
    "${samples[$name.disable]% }" "${samples[$name.require]% }"
done
