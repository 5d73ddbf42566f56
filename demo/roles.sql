-- Roles for the demo database (after schema.sql). Postrust connects as `authenticator` and
-- switches to the role a request's JWT names; without a token it uses `web_anon`, if
-- configured. Roles belong to the cluster, so this script tolerates running twice.

DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'web_anon') THEN
    CREATE ROLE web_anon NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'web_user') THEN
    CREATE ROLE web_user NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticator') THEN
    CREATE ROLE authenticator LOGIN NOINHERIT;
  END IF;
END
$$;

GRANT web_anon, web_user TO authenticator;
GRANT USAGE ON SCHEMA public TO web_anon, web_user;

-- Anonymous visitors see the catalogue and the dashboard (views read with their owner's
-- rights, so the tables under them stay hidden).
GRANT SELECT ON products, sales_dashboard, sales_headline TO web_anon;

-- Signed-in users see everything, but of users only names.
GRANT SELECT ON customers, products, orders, order_items, sales_dashboard, sales_headline
  TO web_user;
GRANT SELECT (id, name) ON users TO web_user;
