#!/usr/bin/env bash
# Round trips per second of `SELECT $1::int + 1` on one connection: our client, sequential
# and pipelined, next to pgbench with one client running the same statement (extended
# protocol, prepared: what our client sends), on a private cluster of this machine.
#
#   bench/pg_roundtrip.sh [SECONDS]     default 10 seconds per measurement
#
# Starts the cluster with scripts/pg-private, prints every number and the ratios, and stops
# the cluster again, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}

eval "$(scripts/pg-private start)"
trap 'scripts/pg-private stop "$POSTRUST_PG_DIR"' EXIT
export POSTRUST_DATABASE_URL

# Build first (serialized with other builds on this machine), then measure without cargo
# competing for the cores.
flock /tmp/postrust-cargo.lock cargo bench --bench pg_roundtrip --no-run >&2

ours=$(POSTRUST_BENCH_SECONDS=$seconds cargo bench --bench pg_roundtrip 2>/dev/null)
value() { sed -n "s/^$1=//p" <<<"$ours"; }
ours_seq=$(value sequential)
ours_pipe=$(value pipelined)
ours_pipe_tx=$(value pipelined_tx)
ours_as=$(value query_as)

tps() {
  pgbench -n -c 1 -j 1 -M prepared -T "$seconds" -f "$1" "$POSTRUST_DATABASE_URL" 2>/dev/null \
    | sed -n 's/^tps = \([0-9.]*\) .*/\1/p'
}
pg_seq=$(tps bench/roundtrip.sql)
# The pipeline script runs 100 statements per pgbench transaction.
pg_pipe=$(awk -v t="$(tps bench/roundtrip_pipeline.sql)" 'BEGIN { printf "%.0f", t * 100 }')

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
printf '%-34s %12s\n' "statements per second" ""
printf '%-34s %12.0f\n' "ours, sequential" "$ours_seq"
printf '%-34s %12.0f\n' "pgbench -M prepared -c 1" "$pg_seq"
printf '%-34s %12s\n' "ratio ours / pgbench" "$(ratio "$ours_seq" "$pg_seq")"
printf '%-34s %12.0f\n' "ours, pipelined, Sync each" "$ours_pipe"
printf '%-34s %12.0f\n' "ours, pipelined, one Sync per 100" "$ours_pipe_tx"
printf '%-34s %12.0f\n' "pgbench, \\startpipeline x100" "$pg_pipe"
printf '%-34s %12s\n' "ratio ours (one Sync) / pgbench" "$(ratio "$ours_pipe_tx" "$pg_pipe")"
printf '%-34s %12s\n' "ours pipelined / ours sequential" "$(ratio "$ours_pipe" "$ours_seq")"
printf '%-34s %12.0f\n' "ours, query_as (role+claims+SQL)" "$ours_as"
