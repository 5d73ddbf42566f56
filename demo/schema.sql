-- The demo database: the tables and the view that the product docs page subscribes to.
-- Loaded by the README's demo command and by the integration tests (before data.sql).

CREATE TYPE order_priority AS ENUM ('low', 'normal', 'high');

-- One element of sales_dashboard.top_products.
CREATE TYPE product_sales AS (name text, sales_count bigint);

CREATE TABLE users (
  id serial PRIMARY KEY,
  name text NOT NULL,
  email text NOT NULL UNIQUE,
  updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE users IS 'People who sign in to the back office.';

CREATE TABLE customers (
  id serial PRIMARY KEY,
  name text NOT NULL,
  email text NOT NULL,
  vip boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE products (
  id serial PRIMARY KEY,
  sku uuid NOT NULL UNIQUE,
  name text NOT NULL,
  price numeric(10, 2) NOT NULL,
  weight_kg double precision,
  tags text[] NOT NULL DEFAULT '{}',
  attributes jsonb,
  released_on date
);

CREATE TABLE orders (
  id serial PRIMARY KEY,
  customer_id integer NOT NULL REFERENCES customers (id),
  total numeric(12, 2) NOT NULL,
  status text NOT NULL DEFAULT 'pending'
    CHECK (status IN ('pending', 'paid', 'shipped', 'cancelled')),
  priority order_priority NOT NULL DEFAULT 'normal',
  note text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON COLUMN orders.total IS 'Order total in the shop currency.';

CREATE TABLE order_items (
  id bigserial PRIMARY KEY,
  order_id integer NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
  product_id integer NOT NULL REFERENCES products (id),
  quantity integer NOT NULL CHECK (quantity > 0),
  unit_price numeric(10, 2) NOT NULL
);

CREATE VIEW sales_dashboard AS
SELECT
  (SELECT coalesce(sum(total), 0) FROM orders WHERE status <> 'cancelled') AS total_revenue,
  (SELECT count(*) FROM orders WHERE status <> 'cancelled') AS order_count,
  (SELECT round(coalesce(avg(total), 0), 2) FROM orders WHERE status <> 'cancelled')
    AS average_order_value,
  ARRAY(
    SELECT ROW(p.name, sum(oi.quantity))::product_sales
    FROM order_items oi
    JOIN products p ON p.id = oi.product_id
    JOIN orders o ON o.id = oi.order_id AND o.status <> 'cancelled'
    GROUP BY p.id, p.name
    ORDER BY sum(oi.quantity) DESC, p.name
    LIMIT 5
  ) AS top_products;
-- The directive line serves it as one object (`salesDashboard { totalRevenue }`), as the docs
-- page reads it; the rest of the comment is its GraphQL description.
COMMENT ON VIEW sales_dashboard IS E'Revenue and best sellers over all orders that are not cancelled.\n@postrust single-row';

-- A view on a view: live queries on it depend on the tables under sales_dashboard.
CREATE VIEW sales_headline AS
SELECT total_revenue, order_count FROM sales_dashboard;

-- The docs page's notification function, exactly as written there.
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

CREATE TRIGGER users_notify
AFTER INSERT OR UPDATE OR DELETE ON users
FOR EACH ROW EXECUTE FUNCTION notify_table_change();
CREATE TRIGGER customers_notify
AFTER INSERT OR UPDATE OR DELETE ON customers
FOR EACH ROW EXECUTE FUNCTION notify_table_change();
CREATE TRIGGER products_notify
AFTER INSERT OR UPDATE OR DELETE ON products
FOR EACH ROW EXECUTE FUNCTION notify_table_change();
CREATE TRIGGER orders_notify
AFTER INSERT OR UPDATE OR DELETE ON orders
FOR EACH ROW EXECUTE FUNCTION notify_table_change();
CREATE TRIGGER order_items_notify
AFTER INSERT OR UPDATE OR DELETE ON order_items
FOR EACH ROW EXECUTE FUNCTION notify_table_change();
