# Sourced by the load-test scripts: builds the release binaries, starts a private
# PostgreSQL with the load-test table and the release server on it (with any extra
# `NAME=value` settings given to `serve`), and stops both on exit. Sets `port` and
# `server` (the server's pid) and exports POSTRUST_DATABASE_URL.

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

# serve [NAME=value…]: starts the server and waits until it answers.
serve() {
  port=$(python3 -c 'import random; print(random.randint(20000, 32000))')
  env POSTRUST_LISTEN="127.0.0.1:$port" POSTRUST_LOG=warn \
    POSTRUST_SUBSCRIBE_RATE=0 POSTRUST_MAX_SUBSCRIPTIONS_PER_CONNECTION=0 "$@" \
    ./target/release/postrust &
  server=$!
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
    sleep 0.1
  done
}
