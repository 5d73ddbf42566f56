-- Postrust realtime change notifications.
--
-- postrust.notify_change(channel) sends one NOTIFY per changed row on `channel`:
--   {"schema": …, "table": …, "operation": "INSERT"|"UPDATE"|"DELETE"|"TRUNCATE",
--    "data": <new row, or the old row on DELETE>, "old": <old row on UPDATE>}
-- When that would pass NOTIFY's 8000-byte payload limit, the rows are cut down to their
-- primary key and "truncated": true is added, so a large row never makes the write fail.
-- The payload is a scheduling hint for the server; it is never shown to clients.
CREATE SCHEMA IF NOT EXISTS postrust;

CREATE OR REPLACE FUNCTION postrust.notify_change() RETURNS trigger
LANGUAGE plpgsql AS $function$
DECLARE
  channel text := coalesce(TG_ARGV[0], 'table_change');
  -- Leaves room under the 8000-byte limit for PostgreSQL's own framing.
  max_bytes constant int := 7900;
  new_row jsonb;
  old_row jsonb;
  pk text[];
  msg text;
BEGIN
  IF TG_LEVEL = 'STATEMENT' THEN
    PERFORM pg_notify(channel, json_build_object(
      'schema', TG_TABLE_SCHEMA, 'table', TG_TABLE_NAME, 'operation', TG_OP)::text);
    RETURN NULL;
  END IF;
  IF TG_OP <> 'DELETE' THEN new_row := to_jsonb(NEW); END IF;
  IF TG_OP <> 'INSERT' THEN old_row := to_jsonb(OLD); END IF;
  msg := json_build_object(
    'schema', TG_TABLE_SCHEMA, 'table', TG_TABLE_NAME, 'operation', TG_OP,
    'data', coalesce(new_row, old_row),
    'old', CASE WHEN TG_OP = 'UPDATE' THEN old_row END)::text;
  IF octet_length(msg) > max_bytes THEN
    SELECT array_agg(a.attname::text) INTO pk
      FROM pg_index i
      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
     WHERE i.indrelid = TG_RELID AND i.indisprimary;
    msg := json_build_object(
      'schema', TG_TABLE_SCHEMA, 'table', TG_TABLE_NAME, 'operation', TG_OP,
      'data', (SELECT jsonb_object_agg(key, value) FROM jsonb_each(coalesce(new_row, old_row))
                WHERE key = ANY (pk)),
      'old', CASE WHEN TG_OP = 'UPDATE' THEN
               (SELECT jsonb_object_agg(key, value) FROM jsonb_each(old_row) WHERE key = ANY (pk))
             END,
      'truncated', true)::text;
    IF octet_length(msg) > max_bytes THEN
      -- Even the key is too large: name the table alone, which refreshes all its readers.
      msg := json_build_object(
        'schema', TG_TABLE_SCHEMA, 'table', TG_TABLE_NAME, 'operation', TG_OP,
        'truncated', true)::text;
    END IF;
  END IF;
  PERFORM pg_notify(channel, msg);
  RETURN NULL;
END;
$function$;
