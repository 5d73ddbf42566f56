-- The table the fan-out scenarios subscribe to and write. One row for "one live query, many
-- subscribers" (subscription { loadtestValues { id v } }); more rows for one live query per
-- subscriber (filter: { id: { eq: N } }). It notifies through the docs page's trigger
-- function, created here the same way.
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

DROP TABLE IF EXISTS loadtest_values;
CREATE TABLE loadtest_values (id int PRIMARY KEY, v bigint NOT NULL DEFAULT 0);
INSERT INTO loadtest_values (id) SELECT generate_series(1, 1000);
CREATE TRIGGER loadtest_values_notify
AFTER INSERT OR UPDATE OR DELETE ON loadtest_values
FOR EACH ROW EXECUTE FUNCTION notify_table_change();

-- Clients with tokens (`--jwt-secret`) run as loadtest_user, under a row-level security
-- policy on their `sub`: row 1 (no owner) is everyone's, a row with an owner only theirs.
-- The server's own login (a superuser here) is not subject to it.
ALTER TABLE loadtest_values ADD COLUMN owner text;
DO $$ BEGIN
  CREATE ROLE loadtest_user NOLOGIN;
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
GRANT USAGE ON SCHEMA public TO loadtest_user;
GRANT SELECT ON loadtest_values TO loadtest_user;
ALTER TABLE loadtest_values ENABLE ROW LEVEL SECURITY;
CREATE POLICY loadtest_own_or_shared ON loadtest_values TO loadtest_user
  USING (owner IS NULL OR owner = current_setting('request.jwt.claims', true)::json->>'sub');
