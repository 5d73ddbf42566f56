#!/usr/bin/env bash
# The two change sources against each other, with the release server as the consumer:
# `POSTRUST_CHANGE_SOURCE=notify` with the project's trigger on the table, and
# `POSTRUST_CHANGE_SOURCE=logical` with no trigger and the table in a publication. For each,
# pgbench commits one-row UPDATEs for SECONDS at 1 and at 8 writers, durably (fsync = on,
# synchronous_commit = on), while the server hears every change. Reported per run:
#
#   - committed UPDATEs per second (pgbench);
#   - the server's CPU, in cores busy over the run (user + system, /proc);
#   - PostgreSQL's CPU per committed transaction (every process of the cluster, the WAL
#     sender's decoding included);
#   - changes heard against commits made (postrust_notifications_total): equal when none
#     was lost;
#   - how long after the last commit the server had heard them all (its lag).
#
# The sources alternate round by round; medians are printed.
#
#   bench/change_source.sh [SECONDS] [ROUNDS]   default 5 seconds, 3 rounds
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
rounds=${2:-3}

cargo build --release --locked --bins >&2
eval "$(scripts/pg-private start)"
server=
stop_server() {
  if [ -n "$server" ]; then
    kill -TERM "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    server=
  fi
}
trap 'stop_server; scripts/pg-private stop "$POSTRUST_PG_DIR"' EXIT
export POSTRUST_DATABASE_URL
url=$POSTRUST_DATABASE_URL
sql() { PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 "$url" "$@"; }

sql -c "ALTER SYSTEM SET wal_level = logical" -c "ALTER SYSTEM SET fsync = on" \
  -c "ALTER SYSTEM SET synchronous_commit = on" >/dev/null
scripts/pg-private halt "$POSTRUST_PG_DIR"
scripts/pg-private start "$POSTRUST_PG_DIR" >/dev/null

sql -f src/triggers/notify.sql -f bench/orders.sql >/dev/null

script=$(mktemp)
trap 'rm -f "$script"; stop_server; scripts/pg-private stop "$POSTRUST_PG_DIR"' EXIT
cat >"$script" <<'PGBENCH'
\set id random(1, 10000)
UPDATE bench_orders SET total = total + 1 WHERE id = :id;
PGBENCH

# use SOURCE: the table's trigger or publication for SOURCE, and the server reading it.
use() {
  stop_server
  sql >/dev/null <<SQL
DROP TRIGGER IF EXISTS postrust_notify_row ON bench_orders;
DROP PUBLICATION IF EXISTS postrust;
$(case $1 in
    notify) echo "CREATE TRIGGER postrust_notify_row AFTER INSERT OR UPDATE OR DELETE ON bench_orders
                  FOR EACH ROW EXECUTE FUNCTION postrust.notify_change('table_change');" ;;
    logical) echo "CREATE PUBLICATION postrust FOR TABLE bench_orders;" ;;
  esac)
SQL
  port=$(python3 -c 'import random; print(random.randint(20000, 32000))')
  env POSTRUST_LISTEN="127.0.0.1:$port" POSTRUST_LOG=warn POSTRUST_SHARDS=2 \
    POSTRUST_CHANGE_SOURCE="$1" ./target/release/postrust &
  server=$!
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
    sleep 0.1
  done
  # The source is in place once the server logs it; a moment is enough on this machine.
  sleep 1
}

heard() {
  curl -sf "http://127.0.0.1:$port/metrics" | awk '$1 == "postrust_notifications_total" { print $2 }'
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$server/stat"; }
# PostgreSQL's CPU: the postmaster's own and its reaped children's, plus its live children's
# (backends, the WAL sender, background processes).
postmaster=$(head -n 1 "$POSTRUST_PG_DIR/data/postmaster.pid")
pg_ticks() {
  local total
  total=$(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$postmaster/stat")
  for child in $(pgrep -P "$postmaster"); do
    total=$((total + $(awk '{ print $14 + $15 }' "/proc/$child/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}

# run SOURCE WRITERS: prints "tps server_cores pg_us_per_commit heard/commits lag_ms".
run() {
  local writers=$2 threads=$2
  [ "$threads" -gt 2 ] && threads=2
  local heard0 ticks0 pg0 out commits tps start lag ticks pg
  heard0=$(heard)
  ticks0=$(cpu_ticks)
  pg0=$(pg_ticks)
  out=$(pgbench -n -M prepared -c "$writers" -j "$threads" -T "$seconds" -f "$script" "$url" 2>/dev/null)
  tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out")
  commits=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
  start=$(date +%s%N)
  while [ $(($(heard) - heard0)) -lt "$commits" ] && [ $(($(date +%s%N) - start)) -lt 30000000000 ]; do
    sleep 0.005
  done
  lag=$((($(date +%s%N) - start) / 1000000))
  ticks=$(($(cpu_ticks) - ticks0))
  pg=$(($(pg_ticks) - pg0))
  local clk
  clk=$(getconf CLK_TCK)
  echo "$tps $(python3 -c "print(round($ticks / $clk / $seconds, 2), round($pg / $clk * 1e6 / max($commits, 1), 1))") $(($(heard) - heard0))/$commits $lag"
}

declare -A samples
for round in $(seq "$rounds"); do
  echo "round $round of $rounds" >&2
  for source in notify logical; do
    use "$source"
    for writers in 1 8; do
      samples[$source.$writers]+="$(run "$source" "$writers" | tr ' ' ',') "
    done
  done
done
stop_server

median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
echo "durable one-row UPDATEs with the server hearing every change, median of $rounds rounds of ${seconds}s"
printf '%-8s %7s %10s %13s %17s %9s   %s\n' source writers "commits/s" "server cores" "PostgreSQL µs/tx" "lag (ms)" \
  "runs (tps,server cores,PostgreSQL µs/tx,heard/commits,lag)"
for source in notify logical; do
  for writers in 1 8; do
    s=${samples[$source.$writers]}
    col() { tr ' ' '\n' <<<"$s" | grep . | cut -d, -f"$1" | tr '\n' ' '; }
    printf '%-8s %7s %10.0f %13s %17s %9s   %s\n' "$source" "$writers" "$(median "$(col 1)")" \
      "$(median "$(col 2)")" "$(median "$(col 3)")" "$(median "$(col 5)")" "${s% }"
  done
done
