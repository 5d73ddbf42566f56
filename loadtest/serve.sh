# Sourced by the load-test scripts: builds the release binaries, starts a private
# PostgreSQL with the load-test table and the release server on it (with any extra
# `NAME=value` settings given to `serve`), and stops both on exit. Sets `port` and
# `server` (the server's pid) and exports POSTRUST_DATABASE_URL.
#
# With LOADTEST_CHANGE_SOURCE=logical in the environment, the cluster runs at
# `wal_level = logical`, the table's trigger is dropped for a publication, and the server
# reads changes by logical replication (POSTRUST_CHANGE_SOURCE=logical). With
# LOADTEST_SYNCHRONOUS_COMMIT=on, commits wait for their WAL flush, as by PostgreSQL's
# default; the private cluster's own setting is off, under which a commit reaches a
# replication slot only at the WAL writer's next flush (up to wal_writer_delay, 200 ms).

cargo build --release --locked --bins >&2
eval "$(scripts/pg-private start)"
server=
cleanup() {
  [ -n "$server" ] && kill -TERM "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  scripts/pg-private stop "$POSTRUST_PG_DIR"
}
trap cleanup EXIT
export POSTRUST_DATABASE_URL
source_env=()
if [ "${LOADTEST_CHANGE_SOURCE:-notify}" = logical ]; then
  psql -X -q "$POSTRUST_DATABASE_URL" -c "ALTER SYSTEM SET wal_level = logical"
  scripts/pg-private halt "$POSTRUST_PG_DIR"
  scripts/pg-private start "$POSTRUST_PG_DIR" >/dev/null
  source_env=(POSTRUST_CHANGE_SOURCE=logical)
fi
if [ "${LOADTEST_SYNCHRONOUS_COMMIT:-off}" = on ]; then
  psql -X -q "$POSTRUST_DATABASE_URL" -c "ALTER SYSTEM SET synchronous_commit = on" \
    -c "SELECT pg_reload_conf()" >/dev/null
fi
PGOPTIONS=--client-min-messages=warning \
  psql -X -q -v ON_ERROR_STOP=1 "$POSTRUST_DATABASE_URL" -f loadtest/schema.sql
if [ ${#source_env[@]} -gt 0 ]; then
  psql -X -q -v ON_ERROR_STOP=1 "$POSTRUST_DATABASE_URL" \
    -c "DROP TRIGGER loadtest_values_notify ON loadtest_values" \
    -c "CREATE PUBLICATION postrust FOR TABLE loadtest_values"
fi

# serve [NAME=value…]: starts the server and waits until it answers.
serve() {
  port=$(python3 -c 'import random; print(random.randint(20000, 32000))')
  env POSTRUST_LISTEN="127.0.0.1:$port" POSTRUST_LOG=warn \
    POSTRUST_SUBSCRIBE_RATE=0 POSTRUST_MAX_SUBSCRIPTIONS_PER_CONNECTION=0 \
    "${source_env[@]}" "$@" \
    ./target/release/postrust &
  server=$!
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
    sleep 0.1
  done
}
