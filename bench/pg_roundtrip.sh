#!/usr/bin/env bash
# Round trips per second of `SELECT $1::int + 1` on one connection: our client, sequential
# and pipelined, next to pgbench with one client running the same statement (extended
# protocol, prepared: what our client sends), on a private cluster of this machine.
#
#   bench/pg_roundtrip.sh [SECONDS] [ROUNDS]   default 5 seconds per measurement, 3 rounds
#
# Ours and pgbench alternate round by round and the median of each is printed, so load
# from other processes on a shared machine hits both alike. Starts the cluster with
# scripts/pg-private and stops it again, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
rounds=${2:-3}

eval "$(scripts/pg-private start)"
pipeline_sql=$(mktemp /tmp/postrust-bench.XXXXXX.sql)
trap 'scripts/pg-private stop "$POSTRUST_PG_DIR"; rm -f "$pipeline_sql"' EXIT
export POSTRUST_DATABASE_URL

# The statement of bench/roundtrip.sql, 100 times in one pgbench pipeline (one Sync).
{
  echo '\set x random(0, 999)'
  echo '\startpipeline'
  for _ in $(seq 100); do echo 'SELECT :x::int + 1;'; done
  echo '\endpipeline'
} >"$pipeline_sql"

# Build first (serialized with other builds on this machine), then measure without cargo
# competing for the cores.
flock /tmp/postrust-cargo.lock cargo bench --bench pg_roundtrip --no-run >&2

tps() {
  pgbench -n -c 1 -j 1 -M prepared -T "$seconds" -f "$1" "$POSTRUST_DATABASE_URL" 2>/dev/null \
    | sed -n 's/^tps = \([0-9.]*\) .*/\1/p'
}

declare -A samples
for round in $(seq "$rounds"); do
  echo "round $round of $rounds" >&2
  ours=$(POSTRUST_BENCH_SECONDS=$seconds cargo bench --bench pg_roundtrip 2>/dev/null)
  for name in sequential pipelined pipelined_tx query_as query_as_no_timeout; do
    samples[$name]+="$(sed -n "s/^$name=//p" <<<"$ours") "
  done
  samples[pg_seq]+="$(tps bench/roundtrip.sql) "
  # The pipeline script runs 100 statements per pgbench transaction.
  samples[pg_pipe]+="$(awk -v t="$(tps "$pipeline_sql")" 'BEGIN { printf "%.0f", t * 100 }') "
done

median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
seq_ours=$(median "${samples[sequential]}")
seq_pg=$(median "${samples[pg_seq]}")
pipe_each=$(median "${samples[pipelined]}")
pipe_ours=$(median "${samples[pipelined_tx]}")
pipe_pg=$(median "${samples[pg_pipe]}")
as_ours=$(median "${samples[query_as]}")
as_bare=$(median "${samples[query_as_no_timeout]}")

echo "statements per second, median of $rounds rounds of ${seconds}s (samples in brackets)"
row() { printf '%-36s %10.0f   [%s]\n' "$1" "$2" "$3"; }
row "ours, sequential" "$seq_ours" "${samples[sequential]% }"
row "pgbench -M prepared -c 1" "$seq_pg" "${samples[pg_seq]% }"
printf '%-36s %10s\n' "  ratio ours / pgbench" "$(ratio "$seq_ours" "$seq_pg")"
row "ours, pipelined, one Sync per 100" "$pipe_ours" "${samples[pipelined_tx]% }"
row "pgbench, \\startpipeline x100" "$pipe_pg" "${samples[pg_pipe]% }"
printf '%-36s %10s\n' "  ratio ours / pgbench" "$(ratio "$pipe_ours" "$pipe_pg")"
row "ours, pipelined, Sync each" "$pipe_each" "${samples[pipelined]% }"
printf '%-36s %10s\n' "  ours pipelined / ours sequential" "$(ratio "$pipe_ours" "$seq_ours")"
row "ours, query_as (role+claims+SQL)" "$as_ours" "${samples[query_as]% }"
row "ours, query_as without a timeout" "$as_bare" "${samples[query_as_no_timeout]% }"
printf '%-36s %10s\n' "  with / without the timeout" "$(ratio "$as_ours" "$as_bare")"
