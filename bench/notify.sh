#!/usr/bin/env bash
# The limits of NOTIFY: committed one-row UPDATEs per second (pgbench) on one table with no
# trigger, with the docs page's `notify_table_change()`, with the project's
# `postrust.notify_change()`, and with no trigger but the table in a publication whose
# logical replication slot (pgoutput) `pg_recvlogical` reads as it goes (changes captured
# from the WAL instead), at 1 and at 8 concurrent writers, with one session listening on
# the channel and reading what arrives. The cluster runs with `wal_level = logical` for
# all of them, as a database using logical replication would. Each is measured with durable commits
# (fsync = on, synchronous_commit = on: what a production database does) and with commits
# that wait for no disk (the private cluster's fsync = off, synchronous_commit = off). The
# configurations alternate round by round; the median of each is printed. Then one row of
# about 9,000 bytes is written under each trigger, to show the payload limit.
#
#   bench/notify.sh [SECONDS] [ROUNDS]   default 5 seconds per measurement, 3 rounds
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
rounds=${2:-3}

eval "$(scripts/pg-private start)"
listener=
decoder=
trap '[ -n "$listener" ] && kill "$listener" 2>/dev/null; [ -n "$decoder" ] && kill "$decoder" 2>/dev/null; scripts/pg-private stop "$POSTRUST_PG_DIR"' EXIT
url=$POSTRUST_DATABASE_URL
sql() { PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 "$url" "$@"; }

sql -c "ALTER SYSTEM SET wal_level = logical" >/dev/null
scripts/pg-private halt "$POSTRUST_PG_DIR"
scripts/pg-private start "$POSTRUST_PG_DIR" >/dev/null

sql -f src/triggers/notify.sql >/dev/null
sql >/dev/null <<'SQL'
-- The docs page's trigger function, as written there.
CREATE OR REPLACE FUNCTION notify_table_change()
RETURNS TRIGGER AS $$
BEGIN
  PERFORM pg_notify(
    'table_change',
    json_build_object(
      'table', TG_TABLE_NAME,
      'operation', TG_OP,
      'data', CASE
        WHEN TG_OP = 'DELETE' THEN row_to_json(OLD)
        ELSE row_to_json(NEW)
      END
    )::text
  );
  RETURN COALESCE(NEW, OLD);
END;
$$ LANGUAGE plpgsql;

SQL
sql -f bench/orders.sql >/dev/null

script=$(mktemp)
cat >"$script" <<'PGBENCH'
\set id random(1, 10000)
UPDATE bench_orders SET total = total + 1 WHERE id = :id;
PGBENCH

# The logical decoding consumer: a publication of the table and a pgoutput slot that
# pg_recvlogical reads and confirms as it goes, for the "logical" configuration only.
stop_decoding() {
  if [ -n "$decoder" ]; then
    kill "$decoder" 2>/dev/null || true
    wait "$decoder" 2>/dev/null || true
    decoder=
  fi
  sql -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'bench'" \
    -c "DROP PUBLICATION IF EXISTS bench" >/dev/null
}
start_decoding() {
  sql -c "CREATE PUBLICATION bench FOR TABLE bench_orders" >/dev/null
  pg_recvlogical -d "$url" --slot bench --create-slot -P pgoutput >/dev/null
  pg_recvlogical -d "$url" --slot bench --start -o proto_version=1 -o publication_names=bench \
    -s 1 -F 1 -f /dev/null &
  decoder=$!
}

# One trigger (or none) on the table, or logical decoding of it.
use_trigger() {
  stop_decoding
  if [ "$1" = logical ]; then
    start_decoding
  fi
  sql >/dev/null <<SQL
DROP TRIGGER IF EXISTS docs_notify ON bench_orders;
DROP TRIGGER IF EXISTS postrust_notify_row ON bench_orders;
$(case $1 in
    docs) echo "CREATE TRIGGER docs_notify AFTER INSERT OR UPDATE OR DELETE ON bench_orders
                FOR EACH ROW EXECUTE FUNCTION notify_table_change();" ;;
    project) echo "CREATE TRIGGER postrust_notify_row AFTER INSERT OR UPDATE OR DELETE ON bench_orders
                   FOR EACH ROW EXECUTE FUNCTION postrust.notify_change('table_change');" ;;
  esac)
SQL
}

durability() {
  local value=off
  [ "$1" = durable ] && value=on
  sql -c "ALTER SYSTEM SET fsync = $value" -c "ALTER SYSTEM SET synchronous_commit = $value" \
    -c "SELECT pg_reload_conf()" >/dev/null
  sleep 0.5
}

# A listener that reads what arrives, as the server's LISTEN connection does: psql takes in
# notifications whenever it runs a command.
{
  echo "LISTEN table_change;"
  while sleep 0.05; do echo "SELECT 1;"; done
} | psql -X -q -o /dev/null "$url" >/dev/null 2>&1 &
listener=$!

tps() {
  local writers=$1 threads=$1
  [ "$threads" -gt 2 ] && threads=2
  pgbench -n -M prepared -c "$writers" -j "$threads" -T "$seconds" -f "$script" "$url" \
    2>/dev/null | sed -n 's/^tps = \([0-9.]*\) .*/\1/p'
}

declare -A samples
for round in $(seq "$rounds"); do
  echo "round $round of $rounds" >&2
  for mode in durable nowait; do
    durability "$mode"
    for trigger in none docs project logical; do
      use_trigger "$trigger"
      for writers in 1 8; do
        samples[$mode.$trigger.$writers]+="$(tps "$writers") "
      done
    done
  done
done

median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
echo "committed one-row UPDATEs per second, median of $rounds rounds of ${seconds}s, one listener"
printf '%-8s %-8s %10s %10s   %s\n' commits trigger "1 writer" "8 writers" "samples"
for mode in durable nowait; do
  for trigger in none docs project logical; do
    printf '%-8s %-8s %10.0f %10.0f   [%s] [%s]\n' "$mode" "$trigger" \
      "$(median "${samples[$mode.$trigger.1]}")" "$(median "${samples[$mode.$trigger.8]}")" \
      "${samples[$mode.$trigger.1]% }" "${samples[$mode.$trigger.8]% }"
  done
done

stop_decoding
echo "a row of about 9,000 bytes:"
for trigger in docs project; do
  use_trigger "$trigger"
  if out=$(sql -c "UPDATE bench_orders SET note = repeat('x', 9000) WHERE id = 1" 2>&1); then
    echo "  $trigger trigger: written"
  else
    echo "  $trigger trigger: refused: $(tr '\n' ' ' <<<"$out")"
  fi
done
sql -At -c "SELECT 'notification queue in use after the run: ' || pg_notification_queue_usage()"
rm -f "$script"
