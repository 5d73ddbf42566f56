#!/usr/bin/env bash
# Per-user refreshes through the shard's refresh loop, batched per round trip or not
# (bench/refresh.rs), on a private cluster with a row-level security policy: each of
# 10,000 users sees their own note and one note everybody sees.
#
#   bench/refresh.sh [LIVE] [ROUNDS] [BATCHES] [replica]
#
# Default 10000 live queries, 3 rounds, batch sizes "1,16". With `replica`, a streaming
# replica of the cluster is started too and each batch size also runs with reads on it
# (POSTRUST_DB_READ_URL), the CPU split between primary and replica.
set -euo pipefail
cd "$(dirname "$0")/.."
live=${1:-10000}
rounds=${2:-3}
batches=${3:-1,16}
with_replica=${4:-}

eval "$(scripts/pg-private start)"
trap 'scripts/pg-private stop "$POSTRUST_PG_DIR"' EXIT
psql -X -q -v ON_ERROR_STOP=1 "$POSTRUST_DATABASE_URL" <<SQL
CREATE ROLE web_user NOLOGIN;
CREATE TABLE notes (id serial PRIMARY KEY, owner text NOT NULL, body text NOT NULL);
CREATE INDEX ON notes (owner);
INSERT INTO notes (owner, body) SELECT 'u' || i, 'note of u' || i FROM generate_series(0, $live - 1) i;
INSERT INTO notes (owner, body) VALUES ('all', 'shared v0');
ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_or_shared ON notes TO web_user
  USING (owner IN ('all', current_setting('request.jwt.claims', true)::json->>'sub'));
GRANT SELECT ON notes TO web_user;
VACUUM ANALYZE notes;
SQL

primary_dir=$POSTRUST_PG_DIR
primary_pid=$(head -n 1 "$primary_dir/data/postmaster.pid")
read_env=()
if [ "$with_replica" = replica ]; then
  replica=$(scripts/pg-private replica "$POSTRUST_DATABASE_URL")
  replica_dir=$(sed -n 's/^POSTRUST_PG_DIR=//p' <<<"$replica")
  trap 'scripts/pg-private stop "$replica_dir"; scripts/pg-private stop "$primary_dir"' EXIT
  read_env=(
    POSTRUST_BENCH_READ_URL="$(sed -n 's/^POSTRUST_DATABASE_URL=//p' <<<"$replica")"
    POSTRUST_BENCH_REPLICA_PID="$(head -n 1 "$replica_dir/data/postmaster.pid")"
  )
fi

# Build first (serialized with other builds on this machine), then measure without cargo
# competing for the cores.
flock /tmp/postrust-cargo.lock cargo bench --bench refresh --no-run >&2
env POSTRUST_DATABASE_URL="$POSTRUST_DATABASE_URL" POSTRUST_BENCH_LIVE="$live" \
  POSTRUST_BENCH_ROUNDS="$rounds" POSTRUST_BENCH_BATCHES="$batches" \
  POSTRUST_BENCH_PRIMARY_PID="$primary_pid" "${read_env[@]}" \
  cargo bench --bench refresh 2>&1 | grep -v '^ *\(Finished\|Running\|Compiling\)'
